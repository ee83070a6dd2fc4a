#pragma once
// The classic pre-LN block (ViT, Scaling ViT, AugReg; timm's Block):
//   x_mid = x + attn(LN1(x));  x_out = x_mid + fc2(gelu(fc1(LN2(x_mid))))
// with dropout and stochastic depth on each branch (model/layers/residual.hpp) in training.
//   x: [B, N, D] -> x_out: [B, N, D]

#include <vitscale/config/tensors.hpp>
#include <vitscale/kernels/activations.hpp>
#include <vitscale/kernels/dropout.hpp>
#include <vitscale/kernels/layernorm.hpp>
#include <vitscale/kernels/residual.hpp>
#include <vitscale/model/layers/attention.hpp>
#include <vitscale/model/layers/residual.hpp>
#include <vitscale/model/linear.hpp>

#include <cstddef>

namespace vitscale::model_detail {

// A classic block's tensors in the table (timm's names; -1 where the shape has none).
struct classic_block_index {
  int norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  qk_norm_index qk;
};

// Block 0's, resolved in a constant expression: a name the shape does not have does not compile.
template <class Shape>
constexpr classic_block_index classic_block_tensors() {
  constexpr bool nb = Shape::norm_bias;
  const auto t = [](const char* name) { return tensor_index<Shape>(0, name); };
  classic_block_index i{t("norm1.weight"), nb ? t("norm1.bias") : -1, t("attn.qkv.weight"),
                        Shape::qkv_bias ? t("attn.qkv.bias") : -1, t("attn.proj.weight"), t("attn.proj.bias"),
                        t("norm2.weight"), nb ? t("norm2.bias") : -1, t("mlp.fc1.weight"), t("mlp.fc1.bias"),
                        t("mlp.fc2.weight"), t("mlp.fc2.bias"), {}};
  if (Shape::qk_norm)
    i.qk = {t("attn.q_norm.weight"), nb ? t("attn.q_norm.bias") : -1, t("attn.k_norm.weight"),
            nb ? t("attn.k_norm.bias") : -1};
  return i;
}

template <class Ctx>
struct classic_block {
  using shape = typename Ctx::shape;
  using act_type = typename Ctx::act_type;
  using index = classic_block_index;
  static constexpr int D = Ctx::D, F = Ctx::F;
  static constexpr auto gelu = Ctx::gelu;
  static constexpr index first = classic_block_tensors<shape>();

  // Block l's tensors: block 0's, moved by l blocks (every block has the same tensors, in order).
  static index at(int l) {
    const int n = l * block_tensor_count<shape>();
    const auto m = [n](int i) { return i < 0 ? i : i + n; };
    const index f = first;
    return {m(f.norm1_w), m(f.norm1_b), m(f.qkv_w), m(f.qkv_b), m(f.proj_w), m(f.proj_b), m(f.norm2_w),
            m(f.norm2_b), m(f.fc1_w), m(f.fc1_b), m(f.fc2_w), m(f.fc2_b),
            {m(f.qk.q_w), m(f.qk.q_b), m(f.qk.k_w), m(f.qk.k_b)}};
  }

  // x_in (block l's input) -> x_out; keeps block l's activations (ctx.saved(l))
  static void forward(Ctx& c, int l, act_type* x_in, act_type* x_out) {
    const index bi = at(l);
    const auto& b = c.saved(l);
    const std::size_t r = c.rows();
    auto t = c.m2(c.s_.t, r, D);
    c.norm_forward(bi.norm1_w, bi.norm1_b, c.m2(x_in, r, D), t, b.ln1_mean, b.ln1_rstd, r);
    linear_forward(c.space_, t, c.weight(bi.qkv_w), c.vec(bi.qkv_b), c.m2(b.qkv, r, 3 * D));
    block_attention_forward(c, bi.qk, b, 0, 3 * D);
    linear_forward(c.space_, c.m2(b.o, r, D), c.weight(bi.proj_w), c.vec(bi.proj_b), c.m2(c.s_.ybr, r, D));
    residual_join(c, l, 0, x_in, b.x_mid);

    c.norm_forward(bi.norm2_w, bi.norm2_b, c.m2(b.x_mid, r, D), t, b.ln2_mean, b.ln2_rstd, r);
    auto g = c.m2(c.s_.g, r, F);
    if (c.train_) {
      auto h = c.m2(b.h, r, F);
      linear_forward(c.space_, t, c.weight(bi.fc1_w), c.vec(bi.fc1_b), h);
      kernels::gelu_forward<gelu>(c.space_, h, g);
      if (c.dropout_on())
        kernels::dropout_forward(c.space_, c.key(Ctx::dropout_site(l, 1)), c.reg_.dropout, g, g, c.hidden_index());
    } else {
      linear_forward(c.space_, t, c.weight(bi.fc1_w), c.vec(bi.fc1_b), g, Ctx::bias_gelu);
    }
    linear_forward(c.space_, g, c.weight(bi.fc2_w), c.vec(bi.fc2_b), c.m2(c.s_.ybr, r, D));
    residual_join(c, l, 1, b.x_mid, x_out);
  }

  // s_.dx: the gradient of block l's output -> of its input (x_in, recomputing what it needs), in place;
  // block l's parameter gradients.
  static void backward(Ctx& c, int l, act_type* x_in) {
    const index bi = at(l);
    const auto& b = c.saved(l);
    const std::size_t r = c.rows();
    constexpr bool centered = Ctx::centered, norm_bias = Ctx::norm_bias;
    auto dx = c.m2(c.s_.dx, r, D), t = c.m2(c.s_.t, r, D), dt = c.m2(c.s_.dt, r, D), dln = c.m2(c.s_.dln, r, D);
    {  // MLP branch
      auto dy = branch_gradient(c, l, 1);
      c.norm_forward(bi.norm2_w, bi.norm2_b, c.m2(b.x_mid, r, D), t, b.ln2_mean, b.ln2_rstd, r);
      auto h = c.m2(b.h, r, F), g = c.m2(c.s_.g, r, F), dg = c.m2(c.s_.dg, r, F);
      kernels::gelu_forward<gelu>(c.space_, h, g);
      const bool dropout = c.reg_.dropout > 0;
      if (dropout)
        kernels::dropout_forward(c.space_, c.key(Ctx::dropout_site(l, 1)), c.reg_.dropout, g, g, c.hidden_index());
      linear_backward(c.space_, g, c.weight(bi.fc2_w), dy, c.gmat(bi.fc2_w), c.gvec(bi.fc2_b), dg,
                      c.sum_workspace(r, D));
      if (dropout)
        kernels::dropout_backward(c.space_, c.key(Ctx::dropout_site(l, 1)), c.reg_.dropout, dg, dg, c.hidden_index());
      kernels::gelu_backward<gelu>(c.space_, h, dg, dg);
      linear_backward(c.space_, t, c.weight(bi.fc1_w), dg, c.gmat(bi.fc1_w), c.gvec(bi.fc1_b), dt,
                      c.sum_workspace(r, F));
      kernels::layernorm_backward<centered, norm_bias>(c.space_, c.m2(b.x_mid, r, D), c.vec(bi.norm2_w),
                                                       c.norm_mean(b.ln2_mean, r), c.f1(b.ln2_rstd, r), dt, dln,
                                                       c.gvec(bi.norm2_w), c.gvec(bi.norm2_b),
                                                       c.template ln_workspace<norm_bias>(r, D));
      kernels::residual_accumulate(c.space_, dx, dln);
    }
    {  // attention branch
      auto dy = branch_gradient(c, l, 0);
      linear_backward(c.space_, c.m2(b.o, r, D), c.weight(bi.proj_w), dy, c.gmat(bi.proj_w), c.gvec(bi.proj_b),
                      c.m2(c.s_.dout, r, D), c.sum_workspace(r, D));
      block_attention_backward(c, bi.qk, b, 0, 3 * D);
      c.norm_forward(bi.norm1_w, bi.norm1_b, c.m2(x_in, r, D), t, b.ln1_mean, b.ln1_rstd, r);
      linear_backward(c.space_, t, c.weight(bi.qkv_w), c.m2(c.s_.du, r, 3 * D), c.gmat(bi.qkv_w), c.gvec(bi.qkv_b),
                      dt, c.sum_workspace(r, 3 * D));
      kernels::layernorm_backward<centered, norm_bias>(c.space_, c.m2(x_in, r, D), c.vec(bi.norm1_w),
                                                       c.norm_mean(b.ln1_mean, r), c.f1(b.ln1_rstd, r), dt, dln,
                                                       c.gvec(bi.norm1_w), c.gvec(bi.norm1_b),
                                                       c.template ln_workspace<norm_bias>(r, D));
      kernels::residual_accumulate(c.space_, dx, dln);
    }
  }
};

}  // namespace vitscale::model_detail
