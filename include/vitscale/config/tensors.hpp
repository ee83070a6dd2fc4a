#pragma once
// The parameter table: every trainable tensor of a shape, in one fixed order, with its name, dimensions and
// role. It is the one layout that everything mirroring the parameters shares — the parameter arena,
// gradients, optimizer moments, checkpoints, shards — and the source of the parameter counts.
//
// Names and logical shapes are timm's (the most used implementation, and our numerical oracle):
// `blocks.3.attn.qkv.weight` is [3·width, width] (out, in). The patch embedding is timm's conv kernel
// [width, channels, patch, patch], which is the [width, channels·patch²] matrix applied to unfolded patches.
// The final norm is `norm` on every token before pooling (big_vision; timm's default, and timm's GAP with
// fc_norm=False), or, for pooling::gap_fc_norm, timm's `fc_norm` on the pooled vector (global_pool='avg' with
// fc_norm on, where timm's `norm` is an Identity).

#include <vitscale/config/describe.hpp>
#include <vitscale/config/options.hpp>
#include <vitscale/config/tensor_extents.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace vitscale {

// Which part of the model a tensor belongs to (the parameter-count breakdown follows these).
enum class component {
  cls_token, pos_embed, patch_embed, block, final_norm, pool_head, pre_logits, classifier,
};

enum class tensor_role {
  weight,      // a matrix of a linear map (or the patch-embedding kernel): decayed, factored by Adafactor
  bias,        // a bias of a linear map
  norm_scale,  // a LayerNorm scale
  norm_bias,   // a LayerNorm bias
  embedding,   // the learned position embedding
  token,       // the class token or the MAP probe
};

struct tensor_info {
  std::string_view name;  // timm's name; for a block's tensor, the part after "blocks.<block>."
  int block;              // index of the encoder block, or -1
  component part;
  tensor_role role;
  int rank;
  std::array<std::int64_t, 4> dims;

  constexpr std::int64_t numel() const { return detail::extents_numel(dims, rank); }
  // The tensor as a matrix (config/tensor_extents.hpp): [first non-unit dimension, everything else].
  constexpr std::int64_t matrix_rows() const { return detail::extents_matrix_rows(dims, rank); }
  constexpr std::int64_t matrix_cols() const { return numel() / matrix_rows(); }

  std::string full_name() const {
    return block < 0 ? std::string(name) : "blocks." + std::to_string(block) + "." + std::string(name);
  }
};

namespace detail {

// Walks the table of the shape `s` describes (every field known) in order, handing each tensor to
// sink.add(). One walk serves counting, filling and summing, for compiled shapes (through describe<Shape>())
// and run-time descriptors alike.
template <class Sink>
constexpr void visit_tensors(const shape_descriptor& s, Sink& sink, int resolution) {
  const std::int64_t D = s.width;
  const std::int64_t F = s.mlp_dim;
  const std::int64_t hd = s.head_dim();
  const bool nb = s.norm_bias;
  auto add = [&sink](std::string_view name, int block, component part, tensor_role role,
                     std::array<std::int64_t, 4> dims, int rank) {
    sink.add(tensor_info{name, block, part, role, rank, dims});
  };
  auto vec = [&](std::string_view name, int block, component part, tensor_role role, std::int64_t n) {
    add(name, block, part, role, {n, 1, 1, 1}, 1);
  };
  auto mat = [&](std::string_view name, int block, component part, std::int64_t out, std::int64_t in) {
    add(name, block, part, tensor_role::weight, {out, in, 1, 1}, 2);
  };
  auto norm = [&](std::string_view scale, std::string_view bias, int block, component part, std::int64_t n) {
    vec(scale, block, part, tensor_role::norm_scale, n);
    if (nb) vec(bias, block, part, tensor_role::norm_bias, n);
  };

  if (s.class_token()) add("cls_token", -1, component::cls_token, tensor_role::token, {1, 1, D, 1}, 3);
  if (s.posemb == posemb_kind::learned)
    add("pos_embed", -1, component::pos_embed, tensor_role::embedding, {1, s.posemb_entries(resolution), D, 1}, 3);
  add("patch_embed.proj.weight", -1, component::patch_embed, tensor_role::weight,
      {D, s.channels, s.patch, s.patch}, 4);
  vec("patch_embed.proj.bias", -1, component::patch_embed, tensor_role::bias, D);

  for (int b = 0; b < s.depth; ++b) {
    constexpr component blk = component::block;
    if (s.block == block_kind::classic) {
      norm("norm1.weight", "norm1.bias", b, blk, D);
      mat("attn.qkv.weight", b, blk, 3 * D, D);
      if (s.qkv_bias) vec("attn.qkv.bias", b, blk, tensor_role::bias, 3 * D);
      if (s.qk_norm) {
        norm("attn.q_norm.weight", "attn.q_norm.bias", b, blk, hd);
        norm("attn.k_norm.weight", "attn.k_norm.bias", b, blk, hd);
      }
      mat("attn.proj.weight", b, blk, D, D);
      vec("attn.proj.bias", b, blk, tensor_role::bias, D);
      norm("norm2.weight", "norm2.bias", b, blk, D);
      mat("mlp.fc1.weight", b, blk, F, D);
      vec("mlp.fc1.bias", b, blk, tensor_role::bias, F);
      mat("mlp.fc2.weight", b, blk, D, F);
      vec("mlp.fc2.bias", b, blk, tensor_role::bias, D);
    } else {
      // timm's ParallelScalingBlock: in_proj rows are [mlp hidden | q | k | v]; without a QKV bias only the
      // MLP part of the fused input product has a bias (mlp_bias). Both output products keep their biases.
      norm("in_norm.weight", "in_norm.bias", b, blk, D);
      mat("in_proj.weight", b, blk, F + 3 * D, D);
      if (s.qkv_bias)
        vec("in_proj.bias", b, blk, tensor_role::bias, F + 3 * D);
      else
        vec("mlp_bias", b, blk, tensor_role::bias, F);
      if (s.qk_norm) {
        norm("q_norm.weight", "q_norm.bias", b, blk, hd);
        norm("k_norm.weight", "k_norm.bias", b, blk, hd);
      }
      mat("attn_out_proj.weight", b, blk, D, D);
      vec("attn_out_proj.bias", b, blk, tensor_role::bias, D);
      mat("mlp_out_proj.weight", b, blk, D, F);
      vec("mlp_out_proj.bias", b, blk, tensor_role::bias, D);
    }
  }

  // The final norm: on every token (`norm`), or on the pooled vector (timm's `fc_norm`, gap_fc_norm).
  if (s.token_norm())
    norm("norm.weight", "norm.bias", -1, component::final_norm, D);
  else
    norm("fc_norm.weight", "fc_norm.bias", -1, component::final_norm, D);

  if (s.pool == pooling::map) {
    // timm's AttentionPoolLatent = big_vision's MAPHead: probe, q / kv / out projections with biases,
    // LayerNorm, MLP of the model's width; the norm follows the model's norm option.
    constexpr component head = component::pool_head;
    add("attn_pool.latent", -1, head, tensor_role::token, {1, 1, D, 1}, 3);
    mat("attn_pool.q.weight", -1, head, D, D);
    vec("attn_pool.q.bias", -1, head, tensor_role::bias, D);
    mat("attn_pool.kv.weight", -1, head, 2 * D, D);
    vec("attn_pool.kv.bias", -1, head, tensor_role::bias, 2 * D);
    mat("attn_pool.proj.weight", -1, head, D, D);
    vec("attn_pool.proj.bias", -1, head, tensor_role::bias, D);
    norm("attn_pool.norm.weight", "attn_pool.norm.bias", -1, head, D);
    mat("attn_pool.mlp.fc1.weight", -1, head, F, D);
    vec("attn_pool.mlp.fc1.bias", -1, head, tensor_role::bias, F);
    mat("attn_pool.mlp.fc2.weight", -1, head, D, F);
    vec("attn_pool.mlp.fc2.bias", -1, head, tensor_role::bias, D);
  }

  if (s.pre_logits > 0) {
    mat("pre_logits.fc.weight", -1, component::pre_logits, s.pre_logits, D);
    vec("pre_logits.fc.bias", -1, component::pre_logits, tensor_role::bias, s.pre_logits);
  }
  mat("head.weight", -1, component::classifier, s.classes, s.features());
  vec("head.bias", -1, component::classifier, tensor_role::bias, s.classes);
}

// The same walk for a compiled shape.
template <class Shape, class Sink>
constexpr void visit_tensors(Sink& sink, int resolution) {
  visit_tensors(describe<Shape>(), sink, resolution);
}

struct tensor_counter {
  int count = 0;
  constexpr void add(const tensor_info&) { ++count; }
};

template <std::size_t N>
struct tensor_filler {
  std::array<tensor_info, N> table{};
  std::size_t next = 0;
  constexpr void add(const tensor_info& t) { table[next++] = t; }
};

}  // namespace detail

// Number of parameter tensors of a shape (independent of the resolution).
template <class Shape>
constexpr int tensor_count() {
  detail::tensor_counter counter;
  detail::visit_tensors<Shape>(counter, Shape::resolution);
  return counter.count;
}

// The parameter table of a shape at an image resolution (only the position embedding depends on it).
template <class Shape>
constexpr std::array<tensor_info, tensor_count<Shape>()> tensor_table(int resolution = Shape::resolution) {
  detail::tensor_filler<tensor_count<Shape>()> filler;
  detail::visit_tensors<Shape>(filler, resolution);
  return filler.table;
}

namespace detail {
// Not constexpr: reached in a constant expression only when no tensor has the name, which then does not compile.
inline int no_tensor_named(std::string_view) { return -1; }
}  // namespace detail

// The index in the table of tensor `name` of block `block` (-1: outside the blocks), for use in constant
// expressions: a name the shape does not have (misspelt, or of another shape) does not compile there.
// Write `Shape::qkv_bias ? tensor_index<Shape>(l, "attn.qkv.bias") : -1` for a tensor only some shapes have.
template <class Shape>
constexpr int tensor_index(int block, std::string_view name) {
  constexpr auto table = tensor_table<Shape>();
  for (std::size_t i = 0; i < table.size(); ++i)
    if (table[i].block == block && table[i].name == name) return static_cast<int>(i);
  return detail::no_tensor_named(name);
}

// Tensors per block: every block has the same ones, contiguous and in the same order in the table, so block l's
// tensor is block 0's index + l·block_tensor_count.
template <class Shape>
constexpr int block_tensor_count() {
  constexpr auto table = tensor_table<Shape>();
  int n = 0;
  for (const tensor_info& t : table) n += t.block == 0 ? 1 : 0;
  return n;
}

}  // namespace vitscale
