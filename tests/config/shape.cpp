// vit_shape: option resolution, geometry at run-time resolutions, and the parameter table's layout.
#include <doctest/doctest.h>
#include <vitscale/vit.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace vs = vitscale;
using namespace vitscale::opt;

// ---- defaults are timm's / the original ViT's
using plain = vs::vit_shape<2, 64, 4, 96, 8>;
static_assert(plain::block == vs::block_kind::classic && plain::pool == vs::pooling::cls_token);
static_assert(!plain::qk_norm && plain::qkv_bias && plain::norm_centered && plain::norm_bias);
static_assert(plain::posemb == vs::posemb_kind::learned && plain::class_token && plain::cls_posemb);
static_assert(plain::num_classes == 1000 && plain::in_channels == 3 && plain::resolution == 224);
static_assert(plain::head_dim == 16 && plain::features == 64 && plain::pre_logits == 0);

// ---- every option, and later options overriding earlier ones (how presets are rebound)
using tuned = plain::with<parallel_block, qk_norm<>, qkv_bias<false>, layer_norm<false, false>, pool_map,
                          sincos_posemb, classes<10>, channels<1>, resolution<32>, pre_logits<48>>;
static_assert(tuned::block == vs::block_kind::parallel && tuned::pool == vs::pooling::map);
static_assert(tuned::qk_norm && !tuned::qkv_bias && !tuned::norm_centered && !tuned::norm_bias);
static_assert(tuned::posemb == vs::posemb_kind::sincos2d && !tuned::class_token && !tuned::cls_posemb);
static_assert(tuned::num_classes == 10 && tuned::in_channels == 1 && tuned::resolution == 32);
static_assert(tuned::pre_logits == 48 && tuned::features == 48);
using back = tuned::with<classic_block, qk_norm<false>, pool_cls, learned_posemb>;
static_assert(back::block == vs::block_kind::classic && !back::qk_norm && back::class_token && back::cls_posemb);
static_assert(std::is_same_v<plain::with<>, plain>);

// ---- the class token's position entry: timm has one, big_vision does not
static_assert(plain::with<cls_posemb<false>>::class_token && !plain::with<cls_posemb<false>>::cls_posemb);
static_assert(!plain::with<pool_gap>::class_token && !plain::with<pool_gap>::cls_posemb);

// ---- timm's GAP then fc_norm: the same parameters as GAP's final norm, named fc_norm, after the pooling
using fc_normed = plain::with<pool_gap_fc_norm>;
static_assert(!fc_normed::class_token && !fc_normed::token_norm && plain::with<pool_gap>::token_norm);
static_assert(fc_normed::params().total == plain::with<pool_gap>::params().total &&
              fc_normed::params().final_norm == plain::with<pool_gap>::params().final_norm);
static_assert(vs::tensor_table<fc_normed>()[vs::tensor_count<fc_normed>() - 4].name == std::string_view("fc_norm.weight"));
// Parameter indices resolved in constant expressions (a misspelt name is a compile_fail test).
static_assert(vs::tensor_index<fc_normed>(-1, "fc_norm.weight") == vs::tensor_count<fc_normed>() - 4);
static_assert(vs::block_tensor_count<plain>() == 12 &&
              vs::tensor_index<plain>(1, "norm1.weight") == vs::tensor_index<plain>(0, "norm1.weight") + 12,
              "a classic block with biases has 12 tensors, contiguous per block");
static_assert(vs::count_activations<fc_normed>().f32 < vs::count_activations<plain::with<pool_gap>>().f32,
              "fc_norm keeps the statistics of one vector per image, the final norm those of every token");

TEST_CASE("tokens, grid and position-embedding rows follow the run-time resolution") {
  using b16 = vs::presets::vit_b16;
  CHECK(b16::grid() == 14);
  CHECK(b16::patches() == 196);
  CHECK(b16::tokens() == 197);
  CHECK(b16::posemb_entries() == 197);
  CHECK(b16::tokens(384) == 577);
  CHECK(b16::posemb_entries(384) == 577);
  CHECK(b16::with<cls_posemb<false>>::posemb_entries(384) == 576);
  CHECK(b16::with<pool_gap>::tokens(384) == 576);
  CHECK(b16::with<sincos_posemb>::posemb_entries() == 0);
  using small = vs::vit_shape<6, 192, 3, 768, 4, vs::options<resolution<28>, channels<1>, classes<10>>>;
  CHECK(small::tokens() == 50);
  CHECK(small::tokens(4) == 2);
  static_assert(small::tokens() == 50, "usable in constant expressions");
}

TEST_CASE("a resolution that is not a positive multiple of the patch is a vitscale::error") {
  using b16 = vs::presets::vit_b16;
  CHECK_THROWS_WITH_AS(b16::tokens(225), "vitscale: resolution 225 px is not a positive multiple of the patch size 16",
                       vs::error);
  CHECK_THROWS_AS(b16::grid(0), vs::error);
  CHECK_THROWS_AS(b16::params(8), vs::error);
  CHECK_THROWS_AS(b16::flops(-16), vs::error);
}

namespace {
template <class Table>
std::vector<std::string> names_of_block(int block, const Table& table) {
  std::vector<std::string> out;
  for (const auto& t : table)
    if (t.block == block) out.push_back(std::string(t.name));
  return out;
}
}  // namespace

TEST_CASE("the parameter table of a classic block uses timm's names, order and (out, in) shapes") {
  using s = plain::with<qk_norm<>, classes<10>>;
  constexpr auto table = vs::tensor_table<s>(32);
  static_assert(static_cast<int>(table.size()) == vs::tensor_count<s>());
  CHECK(table[0].full_name() == "cls_token");
  CHECK(table[1].full_name() == "pos_embed");
  CHECK(table[1].dims[1] == 4 * 4 + 1);  // 32 px / patch 8 = 4x4 patches, plus the class token's entry
  CHECK(table[2].full_name() == "patch_embed.proj.weight");
  CHECK((table[2].dims == std::array<std::int64_t, 4>{64, 3, 8, 8}));
  CHECK(table[2].matrix_rows() == 64);
  CHECK(table[2].matrix_cols() == 3 * 8 * 8);
  CHECK(table[3].full_name() == "patch_embed.proj.bias");
  CHECK(names_of_block(1, table) ==
        std::vector<std::string>{"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                 "attn.q_norm.weight", "attn.q_norm.bias", "attn.k_norm.weight",
                                 "attn.k_norm.bias", "attn.proj.weight", "attn.proj.bias", "norm2.weight",
                                 "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"});
  const auto& qkv = table[4 + 2];
  CHECK(qkv.full_name() == "blocks.0.attn.qkv.weight");
  CHECK(qkv.rank == 2);
  CHECK(qkv.dims[0] == 3 * 64);
  CHECK(qkv.dims[1] == 64);
  CHECK(qkv.role == vs::tensor_role::weight);
  CHECK(table[4 + 4].dims[0] == 16);  // q_norm over the head dimension
  const auto& head_w = table[table.size() - 2];
  CHECK(head_w.full_name() == "head.weight");
  CHECK(head_w.dims[0] == 10);
  CHECK(head_w.part == vs::component::classifier);
  CHECK(table[table.size() - 3].full_name() == "norm.bias");
  CHECK(table[0].matrix_rows() == 64);  // [1, 1, D] seen as a vector
  CHECK(table[0].matrix_cols() == 1);
}

TEST_CASE("the parameter table of ViT-22B's parallel block matches timm's ParallelScalingBlock") {
  using s = vs::vit_shape<1, 64, 4, 256, 8,
                          vs::options<parallel_block, qk_norm<>, qkv_bias<false>, layer_norm<false, false>,
                                      pool_map, classes<10>, resolution<32>>>;
  constexpr auto table = vs::tensor_table<s>();
  CHECK(names_of_block(0, table) ==
        std::vector<std::string>{"in_norm.weight", "in_proj.weight", "mlp_bias", "q_norm.weight", "k_norm.weight",
                                 "attn_out_proj.weight", "attn_out_proj.bias", "mlp_out_proj.weight",
                                 "mlp_out_proj.bias"});
  std::vector<std::string> rest;
  for (const auto& t : table)
    if (t.block < 0) rest.push_back(t.full_name());
  CHECK(rest == std::vector<std::string>{"pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                                         "norm.weight", "attn_pool.latent", "attn_pool.q.weight", "attn_pool.q.bias",
                                         "attn_pool.kv.weight", "attn_pool.kv.bias", "attn_pool.proj.weight",
                                         "attn_pool.proj.bias", "attn_pool.norm.weight", "attn_pool.mlp.fc1.weight",
                                         "attn_pool.mlp.fc1.bias", "attn_pool.mlp.fc2.weight",
                                         "attn_pool.mlp.fc2.bias", "head.weight", "head.bias"});
  for (const auto& t : table) {
    if (t.full_name() == "blocks.0.in_proj.weight") {
      CHECK(t.dims[0] == 256 + 3 * 64);  // [mlp hidden | q | k | v] rows
      CHECK(t.dims[1] == 64);
    }
    if (t.full_name() == "pos_embed") CHECK(t.dims[1] == 16);  // no class token, no extra entry
  }
  // With a QKV bias the fused input product carries one bias over all its rows instead of mlp_bias.
  constexpr auto biased = vs::tensor_table<s::with<qkv_bias<true>>>();
  CHECK(biased[5].full_name() == "blocks.0.in_proj.bias");
  CHECK(biased[5].dims[0] == 256 + 3 * 64);
}

TEST_CASE("pre-logits, channels and sin-cos position embedding shape the table") {
  using s = plain::with<sincos_posemb, pool_gap, pre_logits<32>, channels<1>, classes<5>>;
  constexpr auto table = vs::tensor_table<s>();
  CHECK(table[0].full_name() == "patch_embed.proj.weight");  // no class token, no learned table
  CHECK(table[0].dims[1] == 1);
  CHECK(table[table.size() - 4].full_name() == "pre_logits.fc.weight");
  CHECK(table[table.size() - 4].dims[0] == 32);
  CHECK(table[table.size() - 2].dims[1] == 32);  // the classifier reads the pre-logits
}
