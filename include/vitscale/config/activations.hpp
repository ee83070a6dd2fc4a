#pragma once
// The activation arena's declarations: for each layer unit, the buffers it keeps from forward for backward
// (saved) and the scratch it works in, with their sizes for a batch. One declaration serves twice:
// - the model lays out its arena from it (model/vit.hpp, with an arena_cursor as the planner), and the layer
//   units derive from these structs, so each buffer is a member by name at its use sites;
// - the accounting counts what a training step keeps (count_activations in config/accounting.hpp, with a
//   counting planner in a constant expression).
// A buffer added here is allocated and counted; there is no second list to keep in step.
//
// A planner is called once per buffer, in layout order:
//   p(slot, elements, use)   slot: a T* member; use: buffer_use::saved or buffer_use::scratch
// A unit declares its buffers in `plan(planner, geometry)`; backward-only scratch only when g.training.
// Buffers of size 0 (a statistic a norm without centring does not keep) are declared all the same, so that a
// slot is never left dangling; a kernel receives them as empty views.

#include <vitscale/config/describe.hpp>
#include <vitscale/config/options.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vitscale {

enum class buffer_use {
  saved,   // written in forward, read in backward: what the accounting counts
  scratch  // lives within one pass (or is recomputed in backward)
};

// Activation rematerialisation, as big_vision's vit.py trains its large models (each encoder block wrapped in
// nn.remat, policy "nothing_saveable" by default): a training step keeps only each block's input (the residual
// stream) and, in backward, runs each block's forward again from its saved input, just before the block's
// backward, into one set of block activations shared by all blocks. Memory: one block's activations
// instead of depth of them; compute: one more forward of the blocks per step. A run-time choice of the model
// (vit::set_rematerialization), counted by the accounting (config/accounting.hpp).
enum class rematerialization : bool {
  none = false,  // keep every block's activations from forward
  blocks = true  // keep the block inputs; recompute each block's activations in backward
};

constexpr const char* to_string(rematerialization r) { return r == rematerialization::blocks ? "blocks" : "none"; }

// What a layout is planned for.
struct activation_geometry {
  std::size_t images = 0;   // B: this rank's images
  std::size_t tokens = 0;   // N
  std::size_t patches = 0;  // Np
  bool training = false;    // a training layout keeps every block's activations and backward's scratch
  rematerialization remat = rematerialization::none;  // training: with blocks, one block's activations only
  std::size_t ranks = 1;    // ranks on the model axis (parallel blocks; model/sharded_linear.hpp)
  std::size_t workspace_floats = 0;  // the parameter-gradient reductions' workspace (kernels' chunking)
  constexpr std::size_t rows() const { return images * tokens; }
};

// Elements by storage type, as the accounting reports them.
struct activation_elements {
  std::int64_t act = 0;  // elements stored in the policy's act_type
  std::int64_t f32 = 0;  // elements stored in float
};

namespace activations {

// The policy's act_type, while counting (so that fp32 policies, whose act_type is float, still count apart);
// its param_type and gemm_type likewise (buffers of those types are scratch: the byte count of an arena needs
// them, the saved-activation count does not).
struct act_element {};
struct param_element {};
struct gemm_element {};

// The counting planner: the saved elements, by storage type.
struct saved_counter {
  activation_elements saved{};
  template <class T>
  constexpr void operator()(T*&, std::size_t n, buffer_use use) {
    if (use != buffer_use::saved) return;
    static_assert(std::is_same<T, float>::value || std::is_same<T, act_element>::value,
                  "a saved activation is stored in act_type or float");
    if (std::is_same<T, float>::value)
      saved.f32 += static_cast<std::int64_t>(n);
    else
      saved.act += static_cast<std::int64_t>(n);
  }
};

// Each unit's buffers are declared once, by a plan_* function of the shape's run-time descriptor
// (config/describe.hpp) and the unit's slots (its pointer members). The Shape-templated structs below (what the
// model's units derive from) call them with describe<Shape>(); the run-time accounting (count_saved of a
// descriptor) calls them with any descriptor, so a shape that is never compiled is counted by the same lines.

// A LayerNorm's statistics over `rows` rows: the mean only when it centres.
template <class Plan>
constexpr void norm_statistics(Plan& p, const shape_descriptor& s, float*& mean, float*& rstd, std::size_t rows) {
  p(mean, s.known_norm_centered() ? rows : 0, buffer_use::saved);
  p(rstd, rows, buffer_use::saved);
}
template <class Shape, class Plan>
constexpr void norm_statistics(Plan& p, float*& mean, float*& rstd, std::size_t rows) {
  norm_statistics(p, describe<Shape>(), mean, rstd, rows);
}

// Columns of the saved input product: classic [q|k|v] = 3D; parallel [MLP | q | k | v] = F + 3D.
constexpr std::size_t qkv_columns(const shape_descriptor& s) {
  return s.block == block_kind::parallel ? std::size_t(s.mlp_dim) + 3 * std::size_t(s.width) : 3 * std::size_t(s.width);
}

// What one block keeps (training: one set per block; inference: one set for all). The classic block
// (model/layers/classic_block.hpp) and the parallel block (model/layers/parallel_block.hpp) share it; on a
// model axis of m ranks a parallel block's buffers hold m times the rows and 1/m of the columns, the same size.
template <class Act>
struct block_slots {
  float *ln1_mean = nullptr, *ln1_rstd = nullptr;  // [rows] the (input) norm's statistics
  Act* qkv = nullptr;  // classic: [rows, 3D]; parallel: [rows, F + 3D] ([MLP | q | k | v]), before QK-norm
  float *q_mean = nullptr, *q_rstd = nullptr, *k_mean = nullptr, *k_rstd = nullptr;  // [B, N, H] QK-norm's
  Act* o = nullptr;                                // [rows, D] attention output
  float* lse = nullptr;                            // [B, H, N] attention's log-sum-exp
  Act* x_mid = nullptr;                            // classic: x + attention branch [rows, D]
  float *ln2_mean = nullptr, *ln2_rstd = nullptr;  // classic: the MLP norm's statistics [rows]
  Act* h = nullptr;                                // classic: MLP pre-activation [rows, F] (training)
};

template <class Plan, class Slots>
constexpr void plan_block(Plan& p, const activation_geometry& g, const shape_descriptor& s, Slots& b) {
  const std::size_t r = g.rows(), D = s.width, F = s.mlp_dim, H = s.known_heads();
  norm_statistics(p, s, b.ln1_mean, b.ln1_rstd, r);
  p(b.qkv, r * qkv_columns(s), buffer_use::saved);
  if (s.qk_norm) {
    norm_statistics(p, s, b.q_mean, b.q_rstd, r * H);
    norm_statistics(p, s, b.k_mean, b.k_rstd, r * H);
  }
  p(b.o, r * D, buffer_use::saved);
  p(b.lse, r * H, buffer_use::saved);
  if (s.block != block_kind::parallel) {
    p(b.x_mid, r * D, buffer_use::saved);
    norm_statistics(p, s, b.ln2_mean, b.ln2_rstd, r);
    if (g.training) p(b.h, r * F, buffer_use::saved);
  }
}

template <class Shape, class Act>
struct block : block_slots<Act> {
  static constexpr bool parallel = Shape::block == block_kind::parallel;
  static constexpr std::size_t D = Shape::width, F = Shape::mlp_dim, H = Shape::heads;
  static constexpr std::size_t qkv_cols = qkv_columns(describe<Shape>());

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& g) {
    plan_block(p, g, describe<Shape>(), *this);
  }
};

// The scratch every block shares, and on a model axis the gathered rows and partial sums.
template <class Act, class Param>
struct block_scratch_slots {
  Act *t = nullptr, *qkn = nullptr, *g = nullptr, *ybr = nullptr, *xn = nullptr;
  Param* fused_bias = nullptr;  // parallel block without a QKV bias: [mlp_bias | 0]
  // model axis: the block's gathered rows, partial sums and their reduce-scattered local rows
  Act *t_all = nullptr, *dy_all = nullptr;
  float *part = nullptr, *rsum = nullptr;
  // backward
  Act *dx = nullptr, *dbr = nullptr, *dt = nullptr, *dln = nullptr, *dout = nullptr, *du = nullptr;
  Act *dg = nullptr, *dqkn = nullptr;
  float *delta = nullptr, *ws = nullptr, *qk_tmp = nullptr;
};

template <class Plan, class Slots>
constexpr void plan_block_scratch(Plan& p, const activation_geometry& geo, const shape_descriptor& sd, Slots& b) {
  constexpr auto s = buffer_use::scratch;
  const std::size_t r = geo.rows(), D = sd.width, F = sd.mlp_dim, H = sd.known_heads();
  const std::size_t qkv_cols = qkv_columns(sd);
  p(b.t, r * D, s);
  if (sd.qk_norm) p(b.qkn, r * 2 * D, s);
  p(b.g, r * F, s);
  p(b.ybr, r * D, s);
  p(b.xn, r * D, s);
  if (sd.block == block_kind::parallel && !sd.qkv_bias) p(b.fused_bias, qkv_cols, s);
  if (geo.ranks > 1) {
    p(b.t_all, geo.ranks * r * D, s);
    p(b.part, geo.ranks * r * D, s);
    p(b.rsum, r * D, s);
    if (geo.training) p(b.dy_all, geo.ranks * r * D, s);
  }
  if (geo.training) {
    p(b.dx, r * D, s);
    p(b.dbr, r * D, s);
    p(b.dt, r * D, s);
    p(b.dln, r * D, s);
    p(b.dout, r * D, s);
    p(b.du, r * std::max(qkv_cols, 2 * D), s);
    p(b.dg, r * F, s);
    if (sd.qk_norm) p(b.dqkn, r * 2 * D, s);
    p(b.delta, r * H, s);
    p(b.ws, geo.workspace_floats, s);
    p(b.qk_tmp, 4 * std::size_t(sd.head_dim()), s);
  }
}

template <class Shape, class Act, class Param>
struct block_scratch : block_scratch_slots<Act, Param> {
  static constexpr std::size_t D = Shape::width, F = Shape::mlp_dim, H = Shape::heads;
  static constexpr std::size_t qkv_cols = block<Shape, Act>::qkv_cols;

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& geo) {
    plan_block_scratch(p, geo, describe<Shape>(), *this);
  }
};

// The residual stream and the final norm on every token: x[l] enters block l; x[depth] is the final norm's
// input (training). Inference keeps two slots and alternates; training keeps every slot, and one set of block
// activations per block, or one set for all with rematerialisation. x_slot(i) and block_slot(i) give the i-th
// residual slot and block's slots.
template <class Plan, class XSlot, class BlockSlot>
constexpr void plan_stream(Plan& p, const activation_geometry& g, const shape_descriptor& s, XSlot&& x_slot,
                           BlockSlot&& block_slot, float*& fn_mean, float*& fn_rstd) {
  const std::size_t depth = std::size_t(s.depth);
  const std::size_t x_slots = g.training ? depth + 1 : 2;
  const std::size_t block_slots = g.training && g.remat == rematerialization::none ? depth : 1;
  for (std::size_t i = 0; i < x_slots; ++i) p(x_slot(i), g.rows() * std::size_t(s.width), buffer_use::saved);
  for (std::size_t i = 0; i < block_slots; ++i) plan_block(p, g, s, block_slot(i));
  if (s.token_norm()) norm_statistics(p, s, fn_mean, fn_rstd, g.rows());
}

template <class Shape, class Act>
struct stream {
  std::array<Act*, Shape::depth + 1> x{};
  std::array<block<Shape, Act>, Shape::depth> blocks{};
  float *fn_mean = nullptr, *fn_rstd = nullptr;  // [rows] the final norm's statistics (Shape::token_norm)

  template <class Plan>
  constexpr void plan_blocks(Plan& p, const activation_geometry& g) {
    plan_stream(
        p, g, describe<Shape>(), [this](std::size_t i) -> Act*& { return x[i]; },
        [this](std::size_t i) -> block<Shape, Act>& { return blocks[i]; }, fn_mean, fn_rstd);
  }
};

// The pooling heads (model/heads/*.hpp). The class token and GAP keep nothing.
struct no_buffers {
  template <class Plan>
  constexpr void plan(Plan&, const activation_geometry&) {}
};

template <class Act>
struct gap_fc_norm_slots {
  Act* mean = nullptr;                           // [B, D] the mean of the tokens, fc_norm's input
  float *ln_mean = nullptr, *ln_rstd = nullptr;  // [B] fc_norm's statistics
  Act* dmean = nullptr;                          // [B, D] (training)
};

template <class Plan, class Slots>
constexpr void plan_gap_fc_norm(Plan& p, const activation_geometry& g, const shape_descriptor& s, Slots& b) {
  const std::size_t B = g.images, D = s.width;
  p(b.mean, B * D, buffer_use::saved);
  norm_statistics(p, s, b.ln_mean, b.ln_rstd, B);
  if (g.training) p(b.dmean, B * D, buffer_use::scratch);
}

template <class Shape, class Act>
struct gap_fc_norm_buffers : gap_fc_norm_slots<Act> {
  static constexpr std::size_t D = Shape::width;

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& g) {
    plan_gap_fc_norm(p, g, describe<Shape>(), *this);
  }
};

template <class Act>
struct map_slots {
  // saved: [B,D] [rows,2D] [B,D] [B,D] [B,F]; [B,H] [B] [B]
  Act *q = nullptr, *kv = nullptr, *o = nullptr, *y = nullptr, *h = nullptr;
  float *lse = nullptr, *ln_mean = nullptr, *ln_rstd = nullptr;
  // scratch: [D] the latent in act_type, [B,D] LN(y), [B,F]; backward's
  Act *probe = nullptr, *z = nullptr, *g = nullptr;
  Act *dg = nullptr, *dz = nullptr, *dy = nullptr, *dout = nullptr, *dq = nullptr, *dq_sum = nullptr;
};

template <class Plan, class Slots>
constexpr void plan_map(Plan& p, const activation_geometry& geo, const shape_descriptor& sd, Slots& b) {
  constexpr auto saved = buffer_use::saved, s = buffer_use::scratch;
  const std::size_t B = geo.images, D = sd.width, F = sd.mlp_dim, H = sd.known_heads();
  p(b.q, B * D, saved);
  p(b.kv, geo.rows() * 2 * D, saved);
  p(b.o, B * D, saved);
  p(b.lse, B * H, saved);
  p(b.y, B * D, saved);
  norm_statistics(p, sd, b.ln_mean, b.ln_rstd, B);
  p(b.h, B * F, saved);
  p(b.probe, D, s);
  p(b.z, B * D, s);
  p(b.g, B * F, s);
  if (geo.training) {
    p(b.dg, B * F, s);
    p(b.dz, B * D, s);
    p(b.dy, B * D, s);
    p(b.dout, B * D, s);
    p(b.dq, B * D, s);
    p(b.dq_sum, D, s);
  }
}

template <class Shape, class Act>
struct map_buffers : map_slots<Act> {
  static constexpr std::size_t D = Shape::width, F = Shape::mlp_dim, H = Shape::heads;

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& geo) {
    plan_map(p, geo, describe<Shape>(), *this);
  }
};

// The pooling head's buffers, one specialisation per pooling value: a value without one does not compile.
template <pooling Kind, class Shape, class Act>
struct pool_buffers_for;
template <class Shape, class Act>
struct pool_buffers_for<pooling::cls_token, Shape, Act> : no_buffers {};
template <class Shape, class Act>
struct pool_buffers_for<pooling::gap, Shape, Act> : no_buffers {};
template <class Shape, class Act>
struct pool_buffers_for<pooling::gap_fc_norm, Shape, Act> : gap_fc_norm_buffers<Shape, Act> {};
template <class Shape, class Act>
struct pool_buffers_for<pooling::map, Shape, Act> : map_buffers<Shape, Act> {};
template <class Shape, class Act>
using pool_buffers = pool_buffers_for<Shape::pool, Shape, Act>;

// The same choice at run time: the pooling head's buffers of any descriptor.
template <class Plan, class Act>
constexpr void plan_pool(Plan& p, const activation_geometry& g, const shape_descriptor& s) {
  switch (s.pool) {
    case pooling::cls_token:
    case pooling::gap: break;  // no_buffers
    case pooling::gap_fc_norm: {
      gap_fc_norm_slots<Act> b{};
      plan_gap_fc_norm(p, g, s, b);
      break;
    }
    case pooling::map: {
      map_slots<Act> b{};
      plan_map(p, g, s, b);
      break;
    }
  }
}

// The classifier (model/heads/classifier.hpp): the pooled vector, pre-logits and logits, and their gradients.
template <class Act>
struct classifier_slots {
  Act *pooled = nullptr, *pre = nullptr;  // [B, D], [B, P]
  float* logits = nullptr;                // [B, classes]
  Act *dl = nullptr, *dfeat = nullptr, *dpooled = nullptr;  // training
};

template <class Plan, class Slots>
constexpr void plan_classifier(Plan& p, const activation_geometry& g, const shape_descriptor& s, Slots& b) {
  const std::size_t B = g.images, D = s.width, pre_width = std::size_t(s.pre_logits), classes = s.classes;
  const std::size_t features = std::size_t(s.features());
  p(b.pooled, B * D, buffer_use::saved);
  if (pre_width > 0) p(b.pre, B * pre_width, buffer_use::saved);
  p(b.logits, B * classes, buffer_use::saved);
  if (g.training) {
    p(b.dl, B * classes, buffer_use::scratch);
    p(b.dfeat, B * features, buffer_use::scratch);
    p(b.dpooled, B * D, buffer_use::scratch);
  }
}

template <class Shape, class Act>
struct classifier_buffers : classifier_slots<Act> {
  static constexpr std::size_t D = Shape::width, pre_width = Shape::pre_logits, classes = Shape::num_classes;
  static constexpr std::size_t features = Shape::features;

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& g) {
    plan_classifier(p, g, describe<Shape>(), *this);
  }
};

// The patch embedding (model/layers/patch_embedding.hpp): the unfolded patches stay until backward (the images
// are not kept), but they are a copy of the input rather than an activation, so the accounting leaves them out.
template <class Act, class Gemm>
struct embedding_slots {
  Gemm* patches = nullptr;  // [B·Np, K]
  Act* ptok = nullptr;      // [B·Np, D] the projected patches; backward: their gradient
};

template <class Plan, class Slots>
constexpr void plan_embedding(Plan& p, const activation_geometry& g, const shape_descriptor& s, Slots& b) {
  const std::size_t D = s.width, K = std::size_t(s.channels) * s.patch * s.patch;
  p(b.patches, g.images * g.patches * K, buffer_use::scratch);
  p(b.ptok, g.images * g.patches * D, buffer_use::scratch);
}

template <class Shape, class Act, class Gemm>
struct embedding_buffers : embedding_slots<Act, Gemm> {
  static constexpr std::size_t D = Shape::width;
  static constexpr std::size_t K = std::size_t(Shape::in_channels) * Shape::patch * Shape::patch;

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& g) {
    plan_embedding(p, g, describe<Shape>(), *this);
  }
};

// The whole ViT's layout, in arena order: the stream and the blocks, the pooling head, the classifier, the
// patch embedding, the blocks' shared scratch. The model passes its units (which derive from the structs
// above); the accounting passes the structs themselves.
template <class Plan, class Stream, class Pool, class Head, class Embed, class Scratch>
constexpr void plan_vit(Plan& p, const activation_geometry& g, Stream& stream, Pool& pool, Head& head, Embed& embed,
                        Scratch& scratch) {
  stream.plan_blocks(p, g);
  pool.plan(p, g);
  head.plan(p, g);
  embed.plan(p, g);
  scratch.plan(p, g);
}

// The same order for a run-time descriptor, through the same plan_* declarations (with one slot set reused
// for every block: a counting planner does not keep the pointers). Act, Param and Gemm stand for the policy's
// act_type, param_type and gemm_type (tags while counting: act_element, param_element, gemm_element).
template <class Plan, class Act, class Param = Act, class Gemm = Act>
constexpr void plan_vit(Plan& p, const activation_geometry& g, const shape_descriptor& s) {
  Act* x = nullptr;
  block_slots<Act> b{};
  float *fn_mean = nullptr, *fn_rstd = nullptr;
  plan_stream(
      p, g, s, [&x](std::size_t) -> Act*& { return x; }, [&b](std::size_t) -> block_slots<Act>& { return b; },
      fn_mean, fn_rstd);
  plan_pool<Plan, Act>(p, g, s);
  classifier_slots<Act> head{};
  plan_classifier(p, g, s, head);
  embedding_slots<Act, Gemm> embed{};
  plan_embedding(p, g, s, embed);
  block_scratch_slots<Act, Param> scratch{};
  plan_block_scratch(p, g, s, scratch);
}

// What a training step of one image keeps from forward for backward, counted from the declarations above:
// for any descriptor (every field known), and for a compiled shape through its own structs.
constexpr activation_elements count_saved(const shape_descriptor& s, std::size_t tokens,
                                         rematerialization remat = rematerialization::none) {
  activation_geometry g;
  g.images = 1;
  g.tokens = tokens;
  g.training = true;
  g.remat = remat;
  saved_counter counter;
  plan_vit<saved_counter, act_element>(counter, g, s);
  return counter.saved;
}

template <class Shape>
constexpr activation_elements count_saved(std::size_t tokens, rematerialization remat = rematerialization::none) {
  stream<Shape, act_element> s{};
  pool_buffers<Shape, act_element> pool{};
  classifier_buffers<Shape, act_element> head{};
  embedding_buffers<Shape, act_element, act_element> embed{};
  block_scratch<Shape, act_element, act_element> scratch{};
  activation_geometry g;
  g.images = 1;
  g.tokens = tokens;
  g.training = true;
  g.remat = remat;
  saved_counter counter;
  plan_vit(counter, g, s, pool, head, embed, scratch);
  return counter.saved;
}

}  // namespace activations
}  // namespace vitscale
