#pragma once
// ViT-22B's parallel block (timm's ParallelScalingBlock): one LayerNorm, one input product for
// [MLP hidden | q | k | v], attention and GELU side by side, two output products summed into one branch:
//   [h | q | k | v] = in_proj(LN(x));  x_out = x + attn_out(attn(q, k, v)) + mlp_out(gelu(h))
// Without a QKV bias only the MLP part of the input product has one (mlp_bias). The output product is two GEMMs
// accumulating into one output (the FLOPs of ViT-22B's single product over [attention | MLP]).
//
// On a model axis of m ranks (config/sharding.hpp, model/sharded_linear.hpp) each rank holds 1/m of the heads and
// MLP units and 1/m of the images between blocks: LN(x) of the local rows is all-gathered into the group's rows,
// in_proj runs on them chunk by chunk as they arrive, attention and GELU run on this rank's columns, and the two
// output products' partial sums are reduce-scattered back to the local rows chunk by chunk; their biases are
// added once, after the sum. Backward mirrors it.
//   x: [B, N, D] -> x_out: [B, N, D]

#include <vitscale/config/tensors.hpp>
#include <vitscale/kernels/activations.hpp>
#include <vitscale/kernels/dropout.hpp>
#include <vitscale/kernels/gemm.hpp>
#include <vitscale/kernels/layernorm.hpp>
#include <vitscale/kernels/reduction.hpp>
#include <vitscale/kernels/residual.hpp>
#include <vitscale/model/heads/passes.hpp>
#include <vitscale/model/layers/attention.hpp>
#include <vitscale/model/layers/residual.hpp>
#include <vitscale/model/linear.hpp>
#include <vitscale/model/sharded_linear.hpp>

#include <cstddef>

namespace vitscale::model_detail {

// A parallel block's tensors in the table (timm's names; -1 where the shape has none).
struct parallel_block_index {
  int norm_w, norm_b, in_w, in_b, mlp_bias, attn_out_w, attn_out_b, mlp_out_w, mlp_out_b;
  qk_norm_index qk;
};

// Block 0's, resolved in a constant expression: a name the shape does not have does not compile.
template <class Shape>
constexpr parallel_block_index parallel_block_tensors() {
  constexpr bool nb = Shape::norm_bias;
  const auto t = [](const char* name) { return tensor_index<Shape>(0, name); };
  parallel_block_index i{t("in_norm.weight"), nb ? t("in_norm.bias") : -1, t("in_proj.weight"),
                         Shape::qkv_bias ? t("in_proj.bias") : -1, Shape::qkv_bias ? -1 : t("mlp_bias"),
                         t("attn_out_proj.weight"), t("attn_out_proj.bias"), t("mlp_out_proj.weight"),
                         t("mlp_out_proj.bias"), {}};
  if (Shape::qk_norm)
    i.qk = {t("q_norm.weight"), nb ? t("q_norm.bias") : -1, t("k_norm.weight"), nb ? t("k_norm.bias") : -1};
  return i;
}

template <class Ctx>
struct parallel_block {
  using shape = typename Ctx::shape;
  using act_type = typename Ctx::act_type;
  using param_type = typename Ctx::param_type;
  using grad_type = typename Ctx::grad_type;
  using index = parallel_block_index;
  template <class T>
  using view1 = typename Ctx::template view1<T>;
  template <class T>
  using view2 = typename Ctx::template view2<T>;
  static constexpr int D = Ctx::D, F = Ctx::F;
  static constexpr auto gelu = Ctx::gelu;
  static constexpr index first = parallel_block_tensors<shape>();

  // Block l's tensors: block 0's, moved by l blocks.
  static index at(int l) {
    const int n = l * block_tensor_count<shape>();
    const auto m = [n](int i) { return i < 0 ? i : i + n; };
    const index f = first;
    return {m(f.norm_w), m(f.norm_b), m(f.in_w), m(f.in_b), m(f.mlp_bias), m(f.attn_out_w), m(f.attn_out_b),
            m(f.mlp_out_w), m(f.mlp_out_b), {m(f.qk.q_w), m(f.qk.q_b), m(f.qk.k_w), m(f.qk.k_b)}};
  }

  // The input product's bias: in_proj.bias, or [mlp_bias | 0] without a QKV bias.
  static view1<const param_type> fused_bias(Ctx& c, const index& bi) {
    if constexpr (shape::qkv_bias) {
      return c.vec(bi.in_b);
    } else {
      view1<param_type> out(c.s_.fused_bias, c.in_width());
      zero_extend(c.space_, c.vec(bi.mlp_bias), out);
      return out;
    }
  }
  // The MLP columns [0, F/m) of a [rows·m, in_width] buffer.
  static typename Ctx::template strided2<act_type> mlp_part(const Ctx& c, act_type* u) {
    return typename Ctx::template strided2<act_type>(u, Kokkos::LayoutStride(c.brows(), c.in_width(), c.fl(), 1));
  }

  // x_in (block l's input) -> x_out; keeps block l's activations (ctx.saved(l)). One path with and without a
  // model axis: the row exchange (model/sharded_linear.hpp) gathers and reduce-scatters on one, and hands over
  // the local rows as they are without.
  //   x_in: [B, N, D] -> LN -> in_proj over the group's rows: [m·B·N, F/m + 3D/m] -> attention | GELU ->
  //   attn_out + mlp_out, summed over the axis: [B, N, D] -> x_out = x_in + that
  static void forward(Ctx& c, int l, act_type* x_in, act_type* x_out) {
    const index bi = at(l);
    const auto& b = c.saved(l);
    const auto rows = c.exchange();
    const std::size_t r = c.rows(), br = c.brows(), width = c.in_width();
    c.norm_forward(bi.norm_w, bi.norm_b, c.m2(x_in, r, D), c.m2(c.s_.t, r, D), b.ln1_mean, b.ln1_rstd, r);
    auto u = c.m2(b.qkv, br, width);
    const auto bias = fused_bias(c, bi);
    rows.gather(c.s_.t, D, c.s_.t_all, [&](std::size_t, auto rows_k, act_type* t_all) {
      linear_forward(c.space_, Ctx::row_range(c.m2(t_all, br, D), rows_k), c.weight(bi.in_w), bias,
                     Ctx::row_range(u, rows_k));
    });
    block_attention_forward(c, bi.qk, b, c.fl(), width);
    auto g = c.m2(c.s_.g, br, c.fl());
    kernels::gelu_forward<gelu>(c.space_, mlp_part(c, b.qkv), g);
    if (c.dropout_on())
      kernels::dropout_forward(c.space_, c.key(Ctx::dropout_site(l, 1)), c.reg_.dropout, g, g, c.hidden_index());
    auto o = c.m2(b.o, br, c.aw());
    auto y = c.m2(c.s_.ybr, r, D);
    // The two output products into one output; their biases once (on an axis: after the sum).
    rows.reduce(
        y, c.s_.part, c.s_.rsum,
        [&](std::size_t, auto rows_k, const auto& out, bool once) {
          const view1<const param_type> none;
          auto out_k = Ctx::row_range(out, rows_k);
          linear_forward(c.space_, Ctx::row_range(o, rows_k), c.weight(bi.attn_out_w), once ? c.vec(bi.attn_out_b) : none,
                         out_k);
          linear_forward(c.space_, Ctx::row_range(g, rows_k), c.weight(bi.mlp_out_w), once ? c.vec(bi.mlp_out_b) : none,
                         out_k, kernels::gemm_epilogue::bias, 1.0f);
        },
        [&](const auto& sum) { add_two_biases(c.space_, sum, c.vec(bi.attn_out_b), c.vec(bi.mlp_out_b), y); });
    residual_join(c, l, 0, x_in, x_out);
  }

  // s_.dx: the gradient of block l's output -> of its input x_in, in place; block l's parameter gradients.
  static void backward(Ctx& c, int l, act_type* x_in) {
    using kernels::gemm_op;
    const index bi = at(l);
    const auto& b = c.saved(l);
    const auto rows = c.exchange();
    constexpr bool centered = Ctx::centered, norm_bias = Ctx::norm_bias;
    const std::size_t r = c.rows(), br = c.brows(), width = c.in_width();
    auto dx = c.m2(c.s_.dx, r, D), dt = c.m2(c.s_.dt, r, D), dln = c.m2(c.s_.dln, r, D);
    auto dy = branch_gradient(c, l, 0);
    auto g = c.m2(c.s_.g, br, c.fl()), dg = c.m2(c.s_.dg, br, c.fl());
    kernels::gelu_forward<gelu>(c.space_, mlp_part(c, b.qkv), g);
    const bool dropout = c.reg_.dropout > 0;
    if (dropout)
      kernels::dropout_forward(c.space_, c.key(Ctx::dropout_site(l, 1)), c.reg_.dropout, g, g, c.hidden_index());
    auto o = c.m2(b.o, br, c.aw()), dout = c.m2(c.s_.dout, br, c.aw());
    // The output products: both biases add to one output, so they share a gradient.
    kernels::column_sum(c.space_, dy, c.gvec(bi.attn_out_b), c.sum_workspace(r, D));
    Kokkos::deep_copy(c.space_, c.gvec(bi.mlp_out_b), c.gvec(bi.attn_out_b));
    rows.gather(dy.data(), D, c.s_.dy_all, [&](std::size_t k, auto rows_k, act_type* dy_all) {
      const float acc = k == 0 ? 0.0f : 1.0f;  // the weight gradients sum over the chunks
      auto dy_k = Ctx::row_range(c.m2(dy_all, br, D), rows_k);
      kernels::gemm(c.space_, gemm_op::t, gemm_op::n, 1.0f, dy_k, Ctx::row_range(o, rows_k), acc, c.gmat(bi.attn_out_w));
      kernels::gemm(c.space_, gemm_op::n, gemm_op::n, 1.0f, dy_k, c.weight(bi.attn_out_w), 0.0f,
                    Ctx::row_range(dout, rows_k));
      kernels::gemm(c.space_, gemm_op::t, gemm_op::n, 1.0f, dy_k, Ctx::row_range(g, rows_k), acc, c.gmat(bi.mlp_out_w));
      kernels::gemm(c.space_, gemm_op::n, gemm_op::n, 1.0f, dy_k, c.weight(bi.mlp_out_w), 0.0f,
                    Ctx::row_range(dg, rows_k));
    });
    if (dropout)
      kernels::dropout_backward(c.space_, c.key(Ctx::dropout_site(l, 1)), c.reg_.dropout, dg, dg, c.hidden_index());
    auto du_mlp = mlp_part(c, c.s_.du);
    kernels::gelu_backward<gelu>(c.space_, mlp_part(c, b.qkv), dg, du_mlp);
    block_attention_backward(c, bi.qk, b, c.fl(), width);
    // The input product, on LN(x) recomputed.
    c.norm_forward(bi.norm_w, bi.norm_b, c.m2(x_in, r, D), c.m2(c.s_.t, r, D), b.ln1_mean, b.ln1_rstd, r);
    auto du = c.m2(c.s_.du, br, width);
    rows.gather(c.s_.t, D, c.s_.t_all, [&](std::size_t k, auto rows_k, act_type* t_all) {
      kernels::gemm(c.space_, gemm_op::t, gemm_op::n, 1.0f, Ctx::row_range(du, rows_k),
                    Ctx::row_range(c.m2(t_all, br, D), rows_k), k == 0 ? 0.0f : 1.0f, c.gmat(bi.in_w));
    });
    if constexpr (shape::qkv_bias)
      kernels::column_sum(c.space_, du, c.gvec(bi.in_b), c.sum_workspace(br, width));
    else
      kernels::column_sum(c.space_, du_mlp, c.gvec(bi.mlp_bias), c.sum_workspace(br, c.fl()));
    rows.reduce(
        dt, c.s_.part, c.s_.rsum,
        [&](std::size_t, auto rows_k, const auto& out, bool) {
          kernels::gemm(c.space_, gemm_op::n, gemm_op::n, 1.0f, Ctx::row_range(du, rows_k), c.weight(bi.in_w), 0.0f,
                        Ctx::row_range(out, rows_k));
        },
        [&](const auto& sum) {
          kernels::convert(c.space_, view1<float>(sum.data(), r * D), view1<act_type>(dt.data(), r * D));
        });
    kernels::layernorm_backward<centered, norm_bias>(c.space_, c.m2(x_in, r, D), c.vec(bi.norm_w),
                                                     c.norm_mean(b.ln1_mean, r), c.f1(b.ln1_rstd, r), dt, dln,
                                                     c.gvec(bi.norm_w), c.gvec(bi.norm_b),
                                                     c.template ln_workspace<norm_bias>(r, D));
    kernels::residual_accumulate(c.space_, dx, dln);
  }
};

}  // namespace vitscale::model_detail
