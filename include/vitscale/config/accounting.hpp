#pragma once
// Compile-time accounting of a ViT shape: parameters, FLOPs, and the memory of training it.
//
// Conventions (stated once, here):
// - Parameters are counted from the parameter table (tensors.hpp). The *backbone* is the patch embedding,
//   the position embedding without a class-token entry, the blocks and the final norm — no class token,
//   pooling head or classifier — which is what the Scaling ViT paper's table counts.
// - FLOPs are per image, 2 per multiply-add, for every matrix product: the linear maps, the patch embedding
//   and both attention products (q·kᵀ and p·v, also in the MAP head). Elementwise work (norms, softmax,
//   GELU, residual adds) is not counted. Training = forward + backward, where the backward of a product
//   costs two products (input and weight gradient), except the patch embedding, whose input (the image) needs
//   no gradient.
// - Activation memory is what a training step keeps from forward for backward, per image (see
//   activation_elements below); what backward can recompute cheaply (LayerNorm outputs, GELU outputs,
//   dropout masks, the unfolded patches) is not kept. With rematerialisation (rematerialization::blocks) a step
//   keeps the block inputs and one block's activations, and its FLOPs gain one forward of the blocks
//   (flop_counts::training_with); parameters and optimizer state do not change.

#include <vitscale/config/activations.hpp>
#include <vitscale/config/describe.hpp>
#include <vitscale/config/optimizer_state.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/precision.hpp>

#include <cstdint>
#include <type_traits>

namespace vitscale {

struct param_counts {
  std::int64_t cls_token = 0;
  std::int64_t pos_embed = 0;            // the whole learned table, class-token entry included
  std::int64_t pos_embed_cls_entry = 0;  // the part of pos_embed that belongs to the class token
  std::int64_t patch_embed = 0;
  std::int64_t blocks = 0;
  std::int64_t final_norm = 0;
  std::int64_t pool_head = 0;  // the MAP head
  std::int64_t pre_logits = 0;
  std::int64_t classifier = 0;
  std::int64_t backbone = 0;  // patch_embed + pos_embed - pos_embed_cls_entry + blocks + final_norm
  std::int64_t total = 0;     // every trainable parameter
};

struct flop_counts {  // per image
  std::int64_t patch_embed = 0;
  std::int64_t blocks = 0;  // all blocks together, attention products included
  std::int64_t pool_head = 0;
  std::int64_t pre_logits = 0;
  std::int64_t classifier = 0;
  std::int64_t forward = 0;
  std::int64_t training = 0;  // forward + backward
  // A training step's FLOPs with rematerialisation (config/activations.hpp): the blocks' forward once more.
  constexpr std::int64_t training_with(rematerialization r) const {
    return training + (r == rematerialization::blocks ? blocks : 0);
  }
};

namespace detail {
struct param_summer {
  param_counts c{};
  constexpr void add(const tensor_info& t) {
    const std::int64_t n = t.numel();
    switch (t.part) {
      case component::cls_token: c.cls_token += n; break;
      case component::pos_embed: c.pos_embed += n; break;
      case component::patch_embed: c.patch_embed += n; break;
      case component::block: c.blocks += n; break;
      case component::final_norm: c.final_norm += n; break;
      case component::pool_head: c.pool_head += n; break;
      case component::pre_logits: c.pre_logits += n; break;
      case component::classifier: c.classifier += n; break;
    }
    c.total += n;
  }
};
}  // namespace detail

// Each count is defined once, as a constexpr function of a run-time shape descriptor (config/describe.hpp; every
// field known), so that shapes chosen at run time (explore/shape_grid.hpp) are counted by the same lines; the
// Shape templates call it with describe<Shape>().
constexpr param_counts count_params(const shape_descriptor& s, int resolution) {
  detail::param_summer summer;
  detail::visit_tensors(s, summer, resolution);
  param_counts c = summer.c;
  c.pos_embed_cls_entry = s.cls_posemb ? s.width : 0;
  c.backbone = c.patch_embed + c.pos_embed - c.pos_embed_cls_entry + c.blocks + c.final_norm;
  return c;
}

template <class Shape>
constexpr param_counts count_params(int resolution = Shape::resolution) {
  return count_params(describe<Shape>(), resolution);
}

// Forward FLOPs of one encoder block on one image of n tokens, split into the linear maps (qkv or the fused
// in-projection, the out projection(s), MLP in and out) and the two attention products (q·kᵀ and p·v).
// The parallel block fuses the same products, so it counts the same. Exposed so that run-time models
// (explore/step_model.hpp) split the same count rather than writing it again.
constexpr std::int64_t block_linear_flops(std::int64_t n, std::int64_t D, std::int64_t F) {
  return 2 * n * D * (3 * D) + 2 * n * D * D + 2 * 2 * n * D * F;
}
constexpr std::int64_t block_attention_flops(std::int64_t n, std::int64_t D) { return 2 * 2 * n * n * D; }

constexpr flop_counts count_flops(const shape_descriptor& s, int resolution) {
  const std::int64_t D = s.width, F = s.mlp_dim, P = s.patch, C = s.channels;
  const std::int64_t n = s.tokens(resolution);
  const std::int64_t patches = s.patches(resolution);
  flop_counts f{};
  f.patch_embed = 2 * patches * (C * P * P) * D;
  const std::int64_t per_block = block_linear_flops(n, D, F) + block_attention_flops(n, D);
  f.blocks = s.depth * per_block;
  switch (s.pool) {
    case pooling::cls_token:
    case pooling::gap:
    case pooling::gap_fc_norm: break;  // a selection or a mean: no product
    case pooling::map:
      // one probe: q projection, k and v of every token, q·kᵀ and p·v, out projection, MLP on one vector.
      f.pool_head = 2 * D * D + 2 * n * D * (2 * D) + 2 * 2 * n * D + 2 * D * D + 2 * 2 * D * F;
      break;
  }
  f.pre_logits = 2 * std::int64_t(s.pre_logits) * D;
  f.classifier = 2 * std::int64_t(s.features()) * s.classes;
  f.forward = f.patch_embed + f.blocks + f.pool_head + f.pre_logits + f.classifier;
  f.training = 3 * f.forward - f.patch_embed;
  return f;
}

template <class Shape>
constexpr flop_counts count_flops(int resolution = Shape::resolution) {
  return count_flops(describe<Shape>(), resolution);
}

// What a training step keeps from forward for backward, per image, as element counts by storage type:
// counted from the buffers the layer units declare (config/activations.hpp), the declarations the model lays
// out its activation arena from. In words:
//   classic block, per token:  block input (D), q|k|v (3D, before QK-norm), attention output (D),
//                              mid-block residual (D), MLP pre-activation (F)            — act_type
//                              LayerNorm statistics (2 norms), attention log-sum-exp (H),
//                              QK-norm statistics (2 norms per head)                      — float
//   parallel block, per token: block input (D), fused in-projection output (3D + F), attention output (D)
//                              — act_type; LayerNorm statistics, log-sum-exp, QK-norm statistics — float
//   after the blocks:          final-norm input (D per token, act_type) and statistics (float);
//                              gap_fc_norm instead: the last block's output (D per token), the mean of the
//                              tokens (D) — act_type — and fc_norm's statistics (float);
//                              MAP head: k|v of every token (2D per token), probe query, attention output,
//                              residual and MLP pre-activation (3D + F) — act_type; log-sum-exp (H) and
//                              norm statistics — float; pooled features (D), pre-logits output — act_type;
//                              logits (float).
// A LayerNorm keeps mean and reciprocal standard deviation (2 floats per row), or only the latter when
// it does not centre. Scratch (the norm outputs, GELU outputs and unfolded patches that backward recomputes or
// re-reads, and backward's own buffers) is not counted.
template <class Shape>
constexpr activation_elements count_activations(int resolution = Shape::resolution,
                                                rematerialization remat = rematerialization::none) {
  return activations::count_saved<Shape>(static_cast<std::size_t>(Shape::tokens(resolution)), remat);
}
// The same for a run-time descriptor (the same declarations, laid out without the compiled shape's structs).
constexpr activation_elements count_activations(const shape_descriptor& s, int resolution,
                                                rematerialization remat = rematerialization::none) {
  return activations::count_saved(s, static_cast<std::size_t>(s.tokens(resolution)), remat);
}

// Bytes of training a shape under a precision policy with an optimizer (a state layout from
// optimizer_state.hpp), for a batch at a resolution.
struct memory_bytes {
  std::int64_t parameters = 0;
  std::int64_t weight_copy = 0;  // GEMM-precision copy of the weight matrices (policies that keep one)
  std::int64_t gradients = 0;
  std::int64_t optimizer_state = 0;
  std::int64_t activations = 0;
  std::int64_t parameter_ema = 0;  // the optimizer's float EMA of the parameters (options.ema), when kept
  constexpr std::int64_t total() const {
    return parameters + weight_copy + gradients + optimizer_state + activations + parameter_ema;
  }
};

// Whether the optimizer keeps an EMA of the parameters (train/optimizer.hpp: a float per parameter, whatever
// the parameters' type; evaluating with it under a bf16 policy briefly holds a copy of the parameters too,
// which is not counted here).
enum class parameter_ema : bool { off = false, on = true };

// A precision policy's storage sizes as run-time values (core/precision.hpp), for the run-time accounting.
struct precision_bytes {
  int param = 4, grad = 4, act = 4, gemm = 4, state = 4;
  bool keeps_weight_copy = false;

  template <class Policy>
  static constexpr precision_bytes of() {
    static_assert(precision::is_policy_v<Policy>, "precision_bytes::of: the argument must be a vitscale::precision policy");
    precision_bytes b{};
    b.param = int(sizeof(typename Policy::param_type));
    b.grad = int(sizeof(typename Policy::grad_type));
    b.act = int(sizeof(typename Policy::act_type));
    b.gemm = int(sizeof(typename Policy::gemm_type));
    b.state = int(sizeof(typename Policy::state_type));
    b.keeps_weight_copy = Policy::keeps_weight_copy;
    return b;
  }
};

// Bytes of saved activations by storage type under a precision.
constexpr std::int64_t activation_bytes(const activation_elements& a, const precision_bytes& pb) {
  return a.act * std::int64_t(pb.act) + a.f32 * std::int64_t(sizeof(float));
}

constexpr std::int64_t activation_bytes_per_image(const shape_descriptor& s, const precision_bytes& pb,
                                                  int resolution, rematerialization remat = rematerialization::none) {
  return activation_bytes(count_activations(s, resolution, remat), pb);
}

template <class Shape, class Policy>
constexpr std::int64_t activation_bytes_per_image(int resolution = Shape::resolution,
                                                  rematerialization remat = rematerialization::none) {
  static_assert(precision::is_policy_v<Policy>, "the second argument must be a vitscale::precision policy");
  return activation_bytes(count_activations<Shape>(resolution, remat), precision_bytes::of<Policy>());
}

namespace detail {
struct memory_summer {
  precision_bytes pb;
  optim::state_layout_ref optimizer;
  parameter_ema ema;
  memory_bytes m{};
  constexpr void add(const tensor_info& t) {
    m.parameters += t.numel() * std::int64_t(pb.param);
    m.gradients += t.numel() * std::int64_t(pb.grad);
    if (pb.keeps_weight_copy && t.role == tensor_role::weight) m.weight_copy += t.numel() * std::int64_t(pb.gemm);
    m.optimizer_state += optimizer.state_bytes(t, pb.state);
    if (ema == parameter_ema::on) m.parameter_ema += t.numel() * std::int64_t(sizeof(float));
  }
};
}  // namespace detail

// The same for a run-time descriptor, precision and optimizer state layout (optim::state_layout_ref::of<...>()).
constexpr memory_bytes training_memory(const shape_descriptor& s, const precision_bytes& pb,
                                       const optim::state_layout_ref& optimizer, std::int64_t batch, int resolution,
                                       parameter_ema ema = parameter_ema::off,
                                       rematerialization remat = rematerialization::none) {
  detail::memory_summer summer{pb, optimizer, ema};
  detail::visit_tensors(s, summer, resolution);
  memory_bytes m = summer.m;
  m.activations = batch * activation_bytes_per_image(s, pb, resolution, remat);
  return m;
}

// A frozen model's memory (inference, linear probes, few-shot features): its parameters (and a policy's GEMM
// copy of the weights), no gradients, no optimizer state, and the activation arena laid out for inference of
// `batch` images — one block's worth of activations and the forward's scratch, exactly what
// vit::reserve(batch, /*training*/ false) allocates (vit::activation_bytes(); tests/eval/linear_probe.cpp
// checks the equality), counted from the same declarations (config/activations.hpp) with the arena's 64-byte
// alignment of every buffer (core/arena.hpp).
struct inference_memory_bytes {
  std::int64_t parameters = 0;
  std::int64_t weight_copy = 0;
  std::int64_t activations = 0;
  constexpr std::int64_t total() const { return parameters + weight_copy + activations; }
};

namespace detail {
// Bytes an arena_cursor takes for a layout: every buffer on a 64-byte boundary (core/arena.hpp's alignment).
struct arena_byte_counter {
  static constexpr std::int64_t alignment = 64;
  precision_bytes pb;
  std::int64_t offset = 0;
  template <class T, class Use>
  constexpr void operator()(T*&, std::size_t n, Use) {
    offset = (offset + alignment - 1) / alignment * alignment;
    std::int64_t size = std::int64_t(sizeof(T));
    if (std::is_same<T, activations::act_element>::value) size = pb.act;
    if (std::is_same<T, activations::param_element>::value) size = pb.param;
    if (std::is_same<T, activations::gemm_element>::value) size = pb.gemm;
    offset += std::int64_t(n) * size;
  }
};
struct frozen_summer {
  precision_bytes pb;
  inference_memory_bytes m{};
  constexpr void add(const tensor_info& t) {
    m.parameters += t.numel() * std::int64_t(pb.param);
    if (pb.keeps_weight_copy && t.role == tensor_role::weight) m.weight_copy += t.numel() * std::int64_t(pb.gemm);
  }
};
}  // namespace detail

constexpr inference_memory_bytes inference_memory(const shape_descriptor& s, const precision_bytes& pb,
                                                  std::int64_t batch, int resolution) {
  detail::frozen_summer summer{pb};
  detail::visit_tensors(s, summer, resolution);
  activation_geometry g;
  g.images = static_cast<std::size_t>(batch);
  g.tokens = static_cast<std::size_t>(s.tokens(resolution));
  g.patches = static_cast<std::size_t>(s.patches(resolution));
  g.training = false;
  detail::arena_byte_counter counter{pb};
  activations::plan_vit<detail::arena_byte_counter, activations::act_element, activations::param_element,
                        activations::gemm_element>(counter, g, s);
  inference_memory_bytes m = summer.m;
  m.activations = counter.offset;
  return m;
}

template <class Shape, class Policy>
constexpr inference_memory_bytes inference_memory(std::int64_t batch, int resolution = Shape::resolution) {
  static_assert(precision::is_policy_v<Policy>, "the second argument must be a vitscale::precision policy");
  return inference_memory(describe<Shape>(), precision_bytes::of<Policy>(), batch, resolution);
}

template <class Shape, class Policy, class Optimizer>
constexpr memory_bytes training_memory(std::int64_t batch, int resolution = Shape::resolution,
                                       parameter_ema ema = parameter_ema::off,
                                       rematerialization remat = rematerialization::none) {
  static_assert(precision::is_policy_v<Policy>, "the second argument must be a vitscale::precision policy");
  static_assert(optim::is_state_layout_v<Optimizer>,
                "the third argument must be an optimizer state layout such as vitscale::optim::adafactor");
  return training_memory(describe<Shape>(), precision_bytes::of<Policy>(), optim::state_layout_ref::of<Optimizer>(),
                         batch, resolution, ema, remat);
}

}  // namespace vitscale
