#pragma once
// Multihead attention pooling (timm's AttentionPoolLatent = big_vision's MAPHead): a learned probe attends over
// the tokens, no residual around the attention, then y + MLP(LN(y)):
//   q = latent·Wqᵀ + bq (once, shared by the batch); k|v = tokens·Wkvᵀ + bkv
//   y = proj(attention(q, k, v)); pooled = y + fc2(gelu(fc1(LN(y))))

#include <vitscale/config/activations.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/kernels/activations.hpp>
#include <vitscale/kernels/attention.hpp>
#include <vitscale/kernels/gemm.hpp>
#include <vitscale/kernels/layernorm.hpp>
#include <vitscale/kernels/reduction.hpp>
#include <vitscale/kernels/residual.hpp>
#include <vitscale/model/heads/passes.hpp>
#include <vitscale/model/heads/pool.hpp>
#include <vitscale/model/linear.hpp>

#include <cmath>
#include <cstddef>

namespace vitscale::model_detail {

template <class Ctx>
struct pool_head<pooling::map, Ctx>
    : activations::pool_buffers_for<pooling::map, typename Ctx::shape, typename Ctx::act_type> {
  using shape = typename Ctx::shape;
  using act_type = typename Ctx::act_type;
  using grad_type = typename Ctx::grad_type;
  template <class T>
  using view1 = typename Ctx::template view1<T>;
  template <class T>
  using view2 = typename Ctx::template view2<T>;
  static constexpr int D = Ctx::D, F = Ctx::F, head_dim = Ctx::head_dim;
  static constexpr auto gelu = Ctx::gelu;

  // Parameters, by timm's names.
  static constexpr int latent = tensor_index<shape>(-1, "attn_pool.latent");
  static constexpr int q_w = tensor_index<shape>(-1, "attn_pool.q.weight");
  static constexpr int q_b = tensor_index<shape>(-1, "attn_pool.q.bias");
  static constexpr int kv_w = tensor_index<shape>(-1, "attn_pool.kv.weight");
  static constexpr int kv_b = tensor_index<shape>(-1, "attn_pool.kv.bias");
  static constexpr int proj_w = tensor_index<shape>(-1, "attn_pool.proj.weight");
  static constexpr int proj_b = tensor_index<shape>(-1, "attn_pool.proj.bias");
  static constexpr int norm_w = tensor_index<shape>(-1, "attn_pool.norm.weight");
  static constexpr int norm_b = shape::norm_bias ? tensor_index<shape>(-1, "attn_pool.norm.bias") : -1;
  static constexpr int fc1_w = tensor_index<shape>(-1, "attn_pool.mlp.fc1.weight");
  static constexpr int fc1_b = tensor_index<shape>(-1, "attn_pool.mlp.fc1.bias");
  static constexpr int fc2_w = tensor_index<shape>(-1, "attn_pool.mlp.fc2.weight");
  static constexpr int fc2_b = tensor_index<shape>(-1, "attn_pool.mlp.fc2.bias");

  // Its buffers (saved: q, kv, o, y, h, lse and the norm's statistics; scratch): activations::map_buffers.
  using buffers = activations::pool_buffers_for<pooling::map, shape, act_type>;
  using buffers::q, buffers::kv, buffers::o, buffers::y, buffers::h, buffers::lse, buffers::ln_mean, buffers::ln_rstd;
  using buffers::probe, buffers::z, buffers::g, buffers::dg, buffers::dz, buffers::dy, buffers::dout, buffers::dq,
      buffers::dq_sum;

  // tokens: [B, N, D] -> pooled: [B, D]
  void forward(Ctx& c, act_type* tokens, const view2<act_type>& pooled) const {
    const std::size_t r = c.rows(), B = pooled.extent(0), n = c.tokens_;
    auto lat = c.m2(probe, 1, D);
    kernels::convert(c.space_, c.vec(latent), view1<act_type>(probe, D));
    auto qz = c.m2(z, 1, D);  // the probe's query, once, then one copy per image
    linear_forward(c.space_, lat, c.weight(q_w), c.vec(q_b), qz);
    broadcast_row(c.space_, view1<act_type>(z, D), c.m2(q, B, D));
    linear_forward(c.space_, c.m2(tokens, r, D), c.weight(kv_w), c.vec(kv_b), c.m2(kv, r, 2 * D));
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    kernels::attention_forward<head_dim>(c.space_, c.heads(q, 0, D, 1), c.heads(kv, 0, 2 * D, n),
                                         c.heads(kv, D, 2 * D, n), c.heads(o, 0, D, 1), c.lse3(lse, 1), scale);
    auto yv = c.m2(y, B, D);
    linear_forward(c.space_, c.m2(o, B, D), c.weight(proj_w), c.vec(proj_b), yv);
    auto zv = c.m2(z, B, D);
    c.norm_forward(norm_w, norm_b, yv, zv, ln_mean, ln_rstd, B);
    auto gv = c.m2(g, B, F);
    if (c.train_) {
      auto hv = c.m2(h, B, F);
      linear_forward(c.space_, zv, c.weight(fc1_w), c.vec(fc1_b), hv);
      kernels::gelu_forward<gelu>(c.space_, hv, gv);
    } else {
      linear_forward(c.space_, zv, c.weight(fc1_w), c.vec(fc1_b), gv, Ctx::bias_gelu);
    }
    Kokkos::deep_copy(c.space_, pooled, yv);
    linear_forward(c.space_, gv, c.weight(fc2_w), c.vec(fc2_b), pooled, kernels::gemm_epilogue::bias, 1.0f);
  }

  // dpooled: [B, D] -> dtokens: [B, N, D]; every attn_pool.* gradient. Uses the model's shared scratch du
  // ([rows, 2D] for d k|v) and delta.
  void backward(Ctx& c, act_type* tokens, const view2<act_type>& dpooled, act_type* dtokens) const {
    const std::size_t r = c.rows(), B = dpooled.extent(0), n = c.tokens_;
    auto yv = c.m2(y, B, D), zv = c.m2(z, B, D), hv = c.m2(h, B, F), gv = c.m2(g, B, F);
    c.norm_forward(norm_w, norm_b, yv, zv, ln_mean, ln_rstd, B);
    kernels::gelu_forward<gelu>(c.space_, hv, gv);
    auto dgv = c.m2(dg, B, F);
    linear_backward(c.space_, gv, c.weight(fc2_w), dpooled, c.gmat(fc2_w), c.gvec(fc2_b), dgv, c.sum_workspace(B, D));
    kernels::gelu_backward<gelu>(c.space_, hv, dgv, dgv);
    auto dzv = c.m2(dz, B, D);
    linear_backward(c.space_, zv, c.weight(fc1_w), dgv, c.gmat(fc1_w), c.gvec(fc1_b), dzv, c.sum_workspace(B, F));
    auto dyv = c.m2(dy, B, D);
    kernels::layernorm_backward<Ctx::centered, Ctx::norm_bias>(c.space_, yv, c.vec(norm_w), c.norm_mean(ln_mean, B),
                                                               c.f1(ln_rstd, B), dzv, dyv, c.gvec(norm_w),
                                                               c.gvec(norm_b),
                                                               c.template ln_workspace<Ctx::norm_bias>(B, D));
    kernels::residual_accumulate(c.space_, dyv, dpooled);
    auto doutv = c.m2(dout, B, D);
    linear_backward(c.space_, c.m2(o, B, D), c.weight(proj_w), dyv, c.gmat(proj_w), c.gvec(proj_b), doutv,
                    c.sum_workspace(B, D));
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    act_type* du = c.s_.du;
    kernels::attention_backward<head_dim>(c.space_, c.heads(q, 0, D, 1), c.heads(kv, 0, 2 * D, n),
                                          c.heads(kv, D, 2 * D, n), c.heads(o, 0, D, 1), c.heads(dout, 0, D, 1),
                                          c.lse3(lse, 1), c.lse3(c.s_.delta, 1), c.heads(dq, 0, D, 1),
                                          c.heads(du, 0, 2 * D, n), c.heads(du, D, 2 * D, n), scale);
    // q = latent·Wqᵀ + bq is shared by the batch: its gradient is the batch sum of the per-image ones.
    auto dqv = c.m2(dq, B, D);
    view1<act_type> dqs(dq_sum, D);
    kernels::column_sum(c.space_, dqv, dqs, c.sum_workspace(B, D));
    kernels::column_sum(c.space_, dqv, c.gvec(q_b), c.sum_workspace(B, D));
    auto dq1 = c.m2(dq_sum, 1, D);
    kernels::gemm(c.space_, kernels::gemm_op::t, kernels::gemm_op::n, 1.0f, dq1, c.m2(probe, 1, D), 0.0f,
                  c.gmat(q_w));
    kernels::gemm(c.space_, kernels::gemm_op::n, kernels::gemm_op::n, 1.0f, dq1, c.weight(q_w), 0.0f,
                  view2<grad_type>(c.grads_.vector(latent).data(), 1, D));
    linear_backward(c.space_, c.m2(tokens, r, D), c.weight(kv_w), c.m2(du, r, 2 * D), c.gmat(kv_w), c.gvec(kv_b),
                    c.m2(dtokens, r, D), c.sum_workspace(r, 2 * D));
  }
};

}  // namespace vitscale::model_detail
