// Accounting: parameter counts and FLOPs pinned for every preset against numbers the library did not
// compute — the Scaling ViT paper's table, and timm measured by tests/reference/preset_counts.py
// (tests/golden/preset_counts.json) — and memory checked against layouts written out by hand.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <vitscale/vit.hpp>

#include <fstream>
#include <string>

namespace vs = vitscale;
namespace pr = vitscale::presets;
using namespace vitscale::opt;

// The Scaling ViT paper's backbone counts (its table of shapes), exact.
static_assert(pr::vit_b16::params().backbone == 85'797'120);
static_assert(pr::vit_giant14::params().backbone == 1'011'199'616);
static_assert(pr::vit_gigantic14::params().backbone == 1'842'772'352);

namespace {

const nlohmann::json& oracle() {
  static const nlohmann::json data = [] {
    const std::string path = std::string(VITSCALE_TEST_GOLDEN_DIR) + "/preset_counts.json";
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot open " << path);
    return nlohmann::json::parse(in);
  }();
  return data;
}

template <class S>
void check_against_timm() {
  const std::string name(pr::name<S>());
  INFO(name);
  const auto& o = oracle().at("presets").at(name);
  const auto& p = o.at("params");
  constexpr vs::param_counts c = S::params();
  CHECK(c.cls_token == p.at("cls_token").get<std::int64_t>());
  CHECK(c.pos_embed == p.at("pos_embed").get<std::int64_t>());
  CHECK(c.patch_embed == p.at("patch_embed").get<std::int64_t>());
  CHECK(c.blocks == p.at("blocks").get<std::int64_t>());
  CHECK(c.final_norm == p.at("final_norm").get<std::int64_t>());
  CHECK(c.pool_head == p.at("pool_head").get<std::int64_t>());
  CHECK(c.classifier == p.at("classifier").get<std::int64_t>());
  CHECK(c.pre_logits == 0);
  CHECK(c.total == p.at("total").get<std::int64_t>());
  CHECK(S::flops().forward == o.at("forward_flops").get<std::int64_t>());
}

template <class... S>
void check_all(vs::type_list<S...>) {
  (check_against_timm<S>(), ...);
}

}  // namespace

TEST_CASE("every preset's parameters and forward FLOPs at 224 px equal timm's") {
  CHECK(oracle().at("resolution").get<int>() == 224);
  check_all(pr::all{});
}

TEST_CASE("counts follow the resolution and the model's options") {
  using b16 = pr::vit_b16;
  // timm's vit_base_patch16_384: the position table grows from 197 to 577 rows.
  CHECK(b16::params(384).total == 86'567'656 + (577 - 197) * 768);
  CHECK(b16::params(384).backbone == 85'797'120 + (576 - 196) * 768);
  // Without the class token's position entry (big_vision) the backbone is unchanged, the total loses D.
  CHECK(b16::with<cls_posemb<false>>::params().backbone == 85'797'120);
  CHECK(b16::with<cls_posemb<false>>::params().total == 86'567'656 - 768);
  // Sin-cos position embeddings have no parameters.
  CHECK(b16::with<sincos_posemb>::params().total == 86'567'656 - 197 * 768);
  // Ten classes instead of a thousand.
  CHECK(b16::with<classes<10>>::params().classifier == 768 * 10 + 10);
  // Pre-logits: a D x R layer with bias, and the classifier reads R.
  constexpr auto pl = b16::with<pre_logits<512>>::params();
  CHECK(pl.pre_logits == 768 * 512 + 512);
  CHECK(pl.classifier == 512 * 1000 + 1000);
}

TEST_CASE("FLOPs at another resolution and in training") {
  using b16 = pr::vit_b16;
  const std::int64_t D = 768, F = 3072, n = 577, L = 12;
  const std::int64_t per_block = n * (3 * D * D + D * D + 2 * D * F) * 2 + 2 * (n * n * D) * 2;
  const std::int64_t patches = 576 * (3 * 16 * 16) * D * 2;
  const std::int64_t head = D * 1000 * 2;
  constexpr auto f = b16::flops(384);
  CHECK(f.blocks == L * per_block);
  CHECK(f.patch_embed == patches);
  CHECK(f.forward == L * per_block + patches + head);
  // Backward is two products per product, except that the image needs no gradient.
  CHECK(f.training == 3 * f.forward - patches);
}

// A tiny shape whose memory is worked out by hand below, tensor by tensor.
//   D = 64, F = 128, 2 blocks, patch 16 at 32 px: 4 patches + class token = 5 tokens, 10 classes.
using tiny = vs::vit_shape<2, 64, 4, 128, 16, vs::options<resolution<32>, classes<10>>>;

TEST_CASE("training memory of a tiny shape, worked out by hand") {
  constexpr std::int64_t D = 64, F = 128, C = 10, n = 5;
  // weights: patch 64x768, per block qkv 192x64, proj 64x64, fc1 128x64, fc2 64x128; head 10x64
  constexpr std::int64_t patch_w = D * 768;
  constexpr std::int64_t block_w = 3 * D * D + D * D + F * D + D * F;
  constexpr std::int64_t weights = patch_w + 2 * block_w + C * D;
  // everything else: cls, pos (5 rows), patch bias, per block 2 norms (4D) + biases (3D + D + F + D), final norm, head bias
  constexpr std::int64_t others = D + n * D + D + 2 * (4 * D + 3 * D + D + F + D) + 2 * D + C;
  constexpr std::int64_t P = weights + others;
  static_assert(tiny::params().total == P);

  // fp32 + Adam: parameters, gradients and two moments, all 4 bytes.
  constexpr auto adam = vs::training_memory<tiny, vs::precision::fp32, vs::optim::adam>(3);
  CHECK(adam.parameters == 4 * P);
  CHECK(adam.gradients == 4 * P);
  CHECK(adam.weight_copy == 0);
  CHECK(adam.optimizer_state == 8 * P);

  // Activations per image (accounting.hpp): per block 5 tokens x (6D + F) act values and
  // 5 x (2 + 2 + 4 heads) floats; final norm 5 x D + 5 x 2; pooled features D; 10 logits.
  constexpr std::int64_t act = 2 * n * (6 * D + F) + n * D + D;
  constexpr std::int64_t f32 = 2 * n * (2 + 2 + 4) + n * 2 + C;
  CHECK(adam.activations == 3 * (4 * act + 4 * f32));
  CHECK(adam.total() == 16 * P + 3 * (4 * act + 4 * f32));

  // bf16-mixed + Adafactor: fp32 master and gradients, a bf16 copy of the weights, bf16 activations;
  // state = bf16 first moment + fp32 second moment, factored where the matrix view is >= 32 both ways:
  // patch (64 x 768), qkv, proj, fc1, fc2 are factored; head (10 x 64), pos_embed (5 x 64) and vectors not.
  constexpr auto ada = vs::training_memory<tiny, vs::precision::bf16_mixed, vs::optim::adafactor>(3);
  constexpr std::int64_t factored_stats = (64 + 768) + 2 * ((192 + 64) + (64 + 64) + (128 + 64) + (64 + 128));
  constexpr std::int64_t whole = P - patch_w - 2 * block_w;  // second moment kept element by element
  CHECK(ada.parameters == 4 * P);
  CHECK(ada.gradients == 4 * P);
  CHECK(ada.weight_copy == 2 * weights);
  CHECK(ada.optimizer_state == 2 * P + 4 * (factored_stats + whole));
  CHECK(ada.activations == 3 * (2 * act + 4 * f32));

  // bf16 throughout + SGD-momentum: everything 2 bytes, no copy.
  constexpr auto sgd = vs::training_memory<tiny, vs::precision::bf16_pure, vs::optim::sgd_momentum>(1);
  CHECK(sgd.parameters == 2 * P);
  CHECK(sgd.gradients == 2 * P);
  CHECK(sgd.weight_copy == 0);
  CHECK(sgd.optimizer_state == 2 * P);
}

TEST_CASE("activations of the parallel block, QK-norm and the MAP head, by hand") {
  using s = tiny::with<parallel_block, qk_norm<>, layer_norm<false, false>, pool_map>;
  constexpr std::int64_t D = 64, F = 128, H = 4, n = 4;  // no class token with MAP
  // per block: x, fused in-projection (3D + F), attention output; 1 norm statistic (no centring),
  // H log-sum-exps, 2 x H QK-norm statistics
  constexpr std::int64_t act = 2 * n * (5 * D + F) + n * D + (n * 2 * D + 3 * D + F) + D;
  constexpr std::int64_t f32 = 2 * n * (1 + H + 2 * H) + n * 1 + (H + 1) + 10;
  constexpr auto a = vs::count_activations<s>();
  CHECK(a.act == act);
  CHECK(a.f32 == f32);
  CHECK(vs::activation_bytes_per_image<s, vs::precision::bf16_mixed>() == 2 * act + 4 * f32);
}

TEST_CASE("optimizer state relative to the parameters (ViT-B/16, fp32 state)") {
  using b16 = pr::vit_b16;
  using fp32 = vs::precision::fp32;
  constexpr std::int64_t param_bytes = 4 * 86'567'656;
  constexpr auto adam = vs::training_memory<b16, fp32, vs::optim::adam>(1).optimizer_state;
  constexpr auto adam_bf16 = vs::training_memory<b16, fp32, vs::optim::adam_bf16_momentum>(1).optimizer_state;
  constexpr auto ada = vs::training_memory<b16, fp32, vs::optim::adafactor>(1).optimizer_state;
  CHECK(adam == 2 * param_bytes);
  CHECK(adam_bf16 * 2 == 3 * param_bytes);  // 1.5x
  // Adafactor: half the parameter bytes for the bf16 first moment, plus a little.
  CHECK(ada > param_bytes / 2);
  CHECK(ada < param_bytes / 2 + param_bytes / 50);
}
