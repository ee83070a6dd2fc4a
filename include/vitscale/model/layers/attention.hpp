#pragma once
// The attention step of both block kinds, on a block's saved q|k|v columns: QK-norm (ViT-22B) into scratch when
// the shape has it, then the fused kernel (kernels/attention.hpp); and its backward. On a model axis this rank
// holds its heads of the group's gathered rows (ctx.bheads).
//   q|k|v: columns [col, col + 3·D/m) of a [rows·m, stride] buffer -> o: [rows·m, D/m], lse: [B·m, H/m, N]

#include <vitscale/kernels/attention.hpp>
#include <vitscale/kernels/qk_norm.hpp>

#include <cmath>
#include <cstddef>
#include <type_traits>

namespace vitscale::model_detail {

// The QK-norm tensors of one block (-1: the shape has no QK-norm, or no norm bias).
struct qk_norm_index {
  int q_w = -1, q_b = -1, k_w = -1, k_b = -1;
};

template <class Ctx, class Q, class K, class QN, class KN>
void qk_norm_forward(Ctx& c, const qk_norm_index& ix, const typename Ctx::block_buffers& b, const Q& q, const K& k,
                     const QN& qn, const KN& kn) {
  constexpr bool centered = Ctx::centered;
  typename Ctx::template view3<float> no_mean;
  kernels::qk_norm_forward<Ctx::head_dim, centered>(c.space_, q, c.vec(ix.q_w), c.vec(ix.q_b), qn,
                                                    centered ? c.bstats(b.q_mean) : no_mean, c.bstats(b.q_rstd),
                                                    static_cast<float>(Ctx::norm_eps));
  kernels::qk_norm_forward<Ctx::head_dim, centered>(c.space_, k, c.vec(ix.k_w), c.vec(ix.k_b), kn,
                                                    centered ? c.bstats(b.k_mean) : no_mean, c.bstats(b.k_rstd),
                                                    static_cast<float>(Ctx::norm_eps));
}

// The attention of a block on its saved q|k|v (columns `col` of a [rows, stride] buffer) into b.o and b.lse.
template <class Ctx>
void block_attention_forward(Ctx& c, const qk_norm_index& ix, const typename Ctx::block_buffers& b, std::size_t col,
                             std::size_t stride) {
  constexpr int hd = Ctx::head_dim;
  const std::size_t aw = c.aw();
  auto q = c.bheads(b.qkv, col, stride), k = c.bheads(b.qkv, col + aw, stride), v = c.bheads(b.qkv, col + 2 * aw, stride);
  auto o = c.bheads(b.o, 0, aw);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  if constexpr (Ctx::shape::qk_norm) {
    auto qn = c.bheads(c.s_.qkn, 0, 2 * aw), kn = c.bheads(c.s_.qkn, aw, 2 * aw);
    qk_norm_forward(c, ix, b, q, k, qn, kn);
    kernels::attention_forward<hd>(c.space_, qn, kn, v, o, c.blse(b.lse), scale);
  } else {
    kernels::attention_forward<hd>(c.space_, q, k, v, o, c.blse(b.lse), scale);
  }
}

// dy: the gradient of a QK-norm's output -> dx, its input's; the norm's parameter gradients (reduced in float,
// rounded once into the gradient type).
template <class Ctx, class X, class DY, class DX>
void qk_norm_backward(Ctx& c, int w, int bias, const X& x, float* mean, float* rstd, const DY& dy, const DX& dx) {
  constexpr int hd = Ctx::head_dim;
  constexpr bool centered = Ctx::centered, norm_bias = Ctx::norm_bias;
  typename Ctx::template view3<float> no_mean;
  auto m = centered ? c.bstats(mean) : no_mean;
  if constexpr (std::is_same<typename Ctx::grad_type, float>::value) {
    kernels::qk_norm_backward<hd, centered>(c.space_, x, c.vec(w), m, c.bstats(rstd), dy, dx, c.gvec(w), c.gvec(bias));
  } else {
    typename Ctx::template view1<float> ds(c.s_.qk_tmp, hd),
        db(norm_bias ? c.s_.qk_tmp + hd : nullptr, norm_bias ? hd : 0);
    kernels::qk_norm_backward<hd, centered>(c.space_, x, c.vec(w), m, c.bstats(rstd), dy, dx, ds, db);
    kernels::convert(c.space_, ds, c.gvec(w));
    if (norm_bias) kernels::convert(c.space_, db, c.gvec(bias));
  }
}

// Backward of block_attention_forward: dO in s_.dout -> dq, dk, dv into columns `col` of the [rows, stride]
// buffer s_.du; QK-norm's parameter gradients.
template <class Ctx>
void block_attention_backward(Ctx& c, const qk_norm_index& ix, const typename Ctx::block_buffers& b, std::size_t col,
                              std::size_t stride) {
  constexpr int hd = Ctx::head_dim;
  const std::size_t aw = c.aw();
  auto q = c.bheads(b.qkv, col, stride), k = c.bheads(b.qkv, col + aw, stride), v = c.bheads(b.qkv, col + 2 * aw, stride);
  auto o = c.bheads(b.o, 0, aw), dout = c.bheads(c.s_.dout, 0, aw);
  auto dq = c.bheads(c.s_.du, col, stride), dk = c.bheads(c.s_.du, col + aw, stride),
       dv = c.bheads(c.s_.du, col + 2 * aw, stride);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  if constexpr (Ctx::shape::qk_norm) {
    auto qn = c.bheads(c.s_.qkn, 0, 2 * aw), kn = c.bheads(c.s_.qkn, aw, 2 * aw);
    qk_norm_forward(c, ix, b, q, k, qn, kn);
    auto dqn = c.bheads(c.s_.dqkn, 0, 2 * aw), dkn = c.bheads(c.s_.dqkn, aw, 2 * aw);
    kernels::attention_backward<hd>(c.space_, qn, kn, v, o, dout, c.blse(b.lse), c.blse(c.s_.delta), dqn, dkn, dv,
                                    scale);
    qk_norm_backward(c, ix.q_w, ix.q_b, q, b.q_mean, b.q_rstd, dqn, dq);
    qk_norm_backward(c, ix.k_w, ix.k_b, k, b.k_mean, b.k_rstd, dkn, dk);
  } else {
    kernels::attention_backward<hd>(c.space_, q, k, v, o, dout, c.blse(b.lse), c.blse(c.s_.delta), dq, dk, dv, scale);
  }
}

}  // namespace vitscale::model_detail
