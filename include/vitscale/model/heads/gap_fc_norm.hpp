#pragma once
// timm's GAP head with fc_norm (global_pool='avg', the norm after the pooling; the model then has no final norm
// on the tokens): pooled = LN(mean over the tokens), with the tensors fc_norm.weight / fc_norm.bias.

#include <vitscale/config/activations.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/kernels/layernorm.hpp>
#include <vitscale/kernels/pooling.hpp>
#include <vitscale/model/heads/pool.hpp>

#include <cstddef>

namespace vitscale::model_detail {

template <class Ctx>
struct pool_head<pooling::gap_fc_norm, Ctx>
    : activations::pool_buffers_for<pooling::gap_fc_norm, typename Ctx::shape, typename Ctx::act_type> {
  using shape = typename Ctx::shape;
  using act_type = typename Ctx::act_type;
  template <class T>
  using view2 = typename Ctx::template view2<T>;
  static constexpr int D = Ctx::D;
  static constexpr int w = tensor_index<shape>(-1, "fc_norm.weight");
  static constexpr int b = shape::norm_bias ? tensor_index<shape>(-1, "fc_norm.bias") : -1;

  // Its buffers (the mean of the tokens and fc_norm's statistics, saved): activations::gap_fc_norm_buffers.
  using buffers = activations::pool_buffers_for<pooling::gap_fc_norm, shape, act_type>;
  using buffers::mean, buffers::ln_mean, buffers::ln_rstd, buffers::dmean;

  // tokens: [B, N, D] (the last block's output) -> pooled: [B, D] = LN(mean over N)
  void forward(Ctx& c, act_type* tokens, const view2<act_type>& pooled) const {
    const std::size_t B = pooled.extent(0);
    auto m = c.m2(mean, B, D);
    kernels::token_mean_pool_forward(c.space_, c.x3(tokens), 0, m);
    c.norm_forward(w, b, m, pooled, ln_mean, ln_rstd, B);
  }
  // dpooled: [B, D] -> dtokens: [B, N, D]; fc_norm's gradients
  void backward(Ctx& c, act_type*, const view2<act_type>& dpooled, act_type* dtokens) const {
    const std::size_t B = dpooled.extent(0);
    auto dm = c.m2(dmean, B, D);
    kernels::layernorm_backward<Ctx::centered, Ctx::norm_bias>(c.space_, c.m2(mean, B, D), c.vec(w), c.norm_mean(ln_mean, B),
                                                               c.f1(ln_rstd, B), dpooled, dm, c.gvec(w), c.gvec(b),
                                                               c.template ln_workspace<Ctx::norm_bias>(B, D));
    kernels::token_mean_pool_backward(c.space_, dm, 0, c.x3(dtokens));
  }
};

}  // namespace vitscale::model_detail
