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

// What a layout is planned for.
struct activation_geometry {
  std::size_t images = 0;   // B: this rank's images
  std::size_t tokens = 0;   // N
  std::size_t patches = 0;  // Np
  bool training = false;    // a training layout keeps every block's activations and backward's scratch
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

// The policy's act_type, while counting (so that fp32 policies, whose act_type is float, still count apart).
struct act_element {};

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

// A LayerNorm's statistics over `rows` rows: the mean only when it centres.
template <class Shape, class Plan>
constexpr void norm_statistics(Plan& p, float*& mean, float*& rstd, std::size_t rows) {
  p(mean, Shape::norm_centered ? rows : 0, buffer_use::saved);
  p(rstd, rows, buffer_use::saved);
}

// What one block keeps (training: one set per block; inference: one set for all). The classic block
// (model/layers/classic_block.hpp) and the parallel block (model/layers/parallel_block.hpp) share it; on a
// model axis of m ranks a parallel block's buffers hold m times the rows and 1/m of the columns, the same size.
template <class Shape, class Act>
struct block {
  static constexpr bool parallel = Shape::block == block_kind::parallel;
  static constexpr std::size_t D = Shape::width, F = Shape::mlp_dim, H = Shape::heads;
  static constexpr std::size_t qkv_cols = parallel ? F + 3 * D : 3 * D;

  float *ln1_mean = nullptr, *ln1_rstd = nullptr;  // [rows] the (input) norm's statistics
  Act* qkv = nullptr;  // classic: [rows, 3D]; parallel: [rows, F + 3D] ([MLP | q | k | v]), before QK-norm
  float *q_mean = nullptr, *q_rstd = nullptr, *k_mean = nullptr, *k_rstd = nullptr;  // [B, N, H] QK-norm's
  Act* o = nullptr;                                // [rows, D] attention output
  float* lse = nullptr;                            // [B, H, N] attention's log-sum-exp
  Act* x_mid = nullptr;                            // classic: x + attention branch [rows, D]
  float *ln2_mean = nullptr, *ln2_rstd = nullptr;  // classic: the MLP norm's statistics [rows]
  Act* h = nullptr;                                // classic: MLP pre-activation [rows, F] (training)

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& g) {
    const std::size_t r = g.rows();
    norm_statistics<Shape>(p, ln1_mean, ln1_rstd, r);
    p(qkv, r * qkv_cols, buffer_use::saved);
    if (Shape::qk_norm) {
      norm_statistics<Shape>(p, q_mean, q_rstd, r * H);
      norm_statistics<Shape>(p, k_mean, k_rstd, r * H);
    }
    p(o, r * D, buffer_use::saved);
    p(lse, r * H, buffer_use::saved);
    if (!parallel) {
      p(x_mid, r * D, buffer_use::saved);
      norm_statistics<Shape>(p, ln2_mean, ln2_rstd, r);
      if (g.training) p(h, r * F, buffer_use::saved);
    }
  }
};

// The scratch every block shares, and on a model axis the gathered rows and partial sums.
template <class Shape, class Act, class Param>
struct block_scratch {
  static constexpr std::size_t D = Shape::width, F = Shape::mlp_dim, H = Shape::heads;
  static constexpr std::size_t qkv_cols = block<Shape, Act>::qkv_cols;

  Act *t = nullptr, *qkn = nullptr, *g = nullptr, *ybr = nullptr, *xn = nullptr;
  Param* fused_bias = nullptr;  // parallel block without a QKV bias: [mlp_bias | 0]
  // model axis: the block's gathered rows, partial sums and their reduce-scattered local rows
  Act *t_all = nullptr, *dy_all = nullptr;
  float *part = nullptr, *rsum = nullptr;
  // backward
  Act *dx = nullptr, *dbr = nullptr, *dt = nullptr, *dln = nullptr, *dout = nullptr, *du = nullptr;
  Act *dg = nullptr, *dqkn = nullptr;
  float *delta = nullptr, *ws = nullptr, *qk_tmp = nullptr;

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& geo) {
    constexpr auto s = buffer_use::scratch;
    const std::size_t r = geo.rows();
    p(t, r * D, s);
    if (Shape::qk_norm) p(qkn, r * 2 * D, s);
    p(g, r * F, s);
    p(ybr, r * D, s);
    p(xn, r * D, s);
    if (Shape::block == block_kind::parallel && !Shape::qkv_bias) p(fused_bias, qkv_cols, s);
    if (geo.ranks > 1) {
      p(t_all, geo.ranks * r * D, s);
      p(part, geo.ranks * r * D, s);
      p(rsum, r * D, s);
      if (geo.training) p(dy_all, geo.ranks * r * D, s);
    }
    if (geo.training) {
      p(dx, r * D, s);
      p(dbr, r * D, s);
      p(dt, r * D, s);
      p(dln, r * D, s);
      p(dout, r * D, s);
      p(du, r * std::max(qkv_cols, 2 * D), s);
      p(dg, r * F, s);
      if (Shape::qk_norm) p(dqkn, r * 2 * D, s);
      p(delta, r * H, s);
      p(ws, geo.workspace_floats, s);
      p(qk_tmp, 4 * std::size_t(Shape::head_dim), s);
    }
  }
};

// The residual stream and the final norm on every token: x[l] enters block l; x[depth] is the final norm's
// input (training). Inference keeps two slots and alternates.
template <class Shape, class Act>
struct stream {
  std::array<Act*, Shape::depth + 1> x{};
  std::array<block<Shape, Act>, Shape::depth> blocks{};
  float *fn_mean = nullptr, *fn_rstd = nullptr;  // [rows] the final norm's statistics (Shape::token_norm)

  template <class Plan>
  constexpr void plan_blocks(Plan& p, const activation_geometry& g) {
    const std::size_t x_slots = g.training ? Shape::depth + 1 : 2, block_slots = g.training ? Shape::depth : 1;
    for (std::size_t i = 0; i < x_slots; ++i) p(x[i], g.rows() * std::size_t(Shape::width), buffer_use::saved);
    for (std::size_t i = 0; i < block_slots; ++i) blocks[i].plan(p, g);
    if (Shape::token_norm) norm_statistics<Shape>(p, fn_mean, fn_rstd, g.rows());
  }
};

// The pooling heads (model/heads/*.hpp). The class token and GAP keep nothing.
struct no_buffers {
  template <class Plan>
  constexpr void plan(Plan&, const activation_geometry&) {}
};

template <class Shape, class Act>
struct gap_fc_norm_buffers {
  static constexpr std::size_t D = Shape::width;
  Act* mean = nullptr;                      // [B, D] the mean of the tokens, fc_norm's input
  float *ln_mean = nullptr, *ln_rstd = nullptr;  // [B] fc_norm's statistics
  Act* dmean = nullptr;                     // [B, D] (training)

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& g) {
    const std::size_t B = g.images;
    p(mean, B * D, buffer_use::saved);
    norm_statistics<Shape>(p, ln_mean, ln_rstd, B);
    if (g.training) p(dmean, B * D, buffer_use::scratch);
  }
};

template <class Shape, class Act>
struct map_buffers {
  static constexpr std::size_t D = Shape::width, F = Shape::mlp_dim, H = Shape::heads;
  // saved: [B,D] [rows,2D] [B,D] [B,D] [B,F]; [B,H] [B] [B]
  Act *q = nullptr, *kv = nullptr, *o = nullptr, *y = nullptr, *h = nullptr;
  float *lse = nullptr, *ln_mean = nullptr, *ln_rstd = nullptr;
  // scratch: [D] the latent in act_type, [B,D] LN(y), [B,F]; backward's
  Act *probe = nullptr, *z = nullptr, *g = nullptr;
  Act *dg = nullptr, *dz = nullptr, *dy = nullptr, *dout = nullptr, *dq = nullptr, *dq_sum = nullptr;

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& geo) {
    constexpr auto saved = buffer_use::saved, s = buffer_use::scratch;
    const std::size_t B = geo.images;
    p(q, B * D, saved);
    p(kv, geo.rows() * 2 * D, saved);
    p(o, B * D, saved);
    p(lse, B * H, saved);
    p(y, B * D, saved);
    norm_statistics<Shape>(p, ln_mean, ln_rstd, B);
    p(h, B * F, saved);
    p(probe, D, s);
    p(z, B * D, s);
    p(g, B * F, s);
    if (geo.training) {
      p(dg, B * F, s);
      p(dz, B * D, s);
      p(dy, B * D, s);
      p(dout, B * D, s);
      p(dq, B * D, s);
      p(dq_sum, D, s);
    }
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

// The classifier (model/heads/classifier.hpp): the pooled vector, pre-logits and logits, and their gradients.
template <class Shape, class Act>
struct classifier_buffers {
  static constexpr std::size_t D = Shape::width, pre_width = Shape::pre_logits, classes = Shape::num_classes;
  static constexpr std::size_t features = Shape::features;
  Act *pooled = nullptr, *pre = nullptr;  // [B, D], [B, P]
  float* logits = nullptr;                // [B, classes]
  Act *dl = nullptr, *dfeat = nullptr, *dpooled = nullptr;  // training

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& g) {
    const std::size_t B = g.images;
    p(pooled, B * D, buffer_use::saved);
    if (pre_width > 0) p(pre, B * pre_width, buffer_use::saved);
    p(logits, B * classes, buffer_use::saved);
    if (g.training) {
      p(dl, B * classes, buffer_use::scratch);
      p(dfeat, B * features, buffer_use::scratch);
      p(dpooled, B * D, buffer_use::scratch);
    }
  }
};

// The patch embedding (model/layers/patch_embedding.hpp): the unfolded patches stay until backward (the images
// are not kept), but they are a copy of the input rather than an activation, so the accounting leaves them out.
template <class Shape, class Act, class Gemm>
struct embedding_buffers {
  static constexpr std::size_t D = Shape::width;
  static constexpr std::size_t K = std::size_t(Shape::in_channels) * Shape::patch * Shape::patch;
  Gemm* patches = nullptr;  // [B·Np, K]
  Act* ptok = nullptr;      // [B·Np, D] the projected patches; backward: their gradient

  template <class Plan>
  constexpr void plan(Plan& p, const activation_geometry& g) {
    p(patches, g.images * g.patches * K, buffer_use::scratch);
    p(ptok, g.images * g.patches * D, buffer_use::scratch);
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

// What a training step of one image keeps from forward for backward, counted from the declarations above.
template <class Shape>
constexpr activation_elements count_saved(std::size_t tokens) {
  stream<Shape, act_element> s{};
  pool_buffers<Shape, act_element> pool{};
  classifier_buffers<Shape, act_element> head{};
  embedding_buffers<Shape, act_element, act_element> embed{};
  block_scratch<Shape, act_element, act_element> scratch{};
  activation_geometry g;
  g.images = 1;
  g.tokens = tokens;
  g.training = true;
  saved_counter counter;
  plan_vit(counter, g, s, pool, head, embed, scratch);
  return counter.saved;
}

}  // namespace activations
}  // namespace vitscale
