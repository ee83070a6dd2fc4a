#pragma once
// Global average pooling over the patch tokens (after the final norm, as big_vision; timm's global_pool='avg'
// with fc_norm=False).

#include <vitscale/config/activations.hpp>
#include <vitscale/kernels/pooling.hpp>
#include <vitscale/model/heads/pool.hpp>

#include <cstddef>

namespace vitscale::model_detail {

template <class Ctx>
struct pool_head<pooling::gap, Ctx>
    : activations::pool_buffers_for<pooling::gap, typename Ctx::shape, typename Ctx::act_type> {
  using act_type = typename Ctx::act_type;
  template <class T>
  using view2 = typename Ctx::template view2<T>;

  // tokens: [B, N, D] -> pooled: [B, D], the mean over N
  void forward(Ctx& c, act_type* tokens, const view2<act_type>& pooled) const {
    kernels::token_mean_pool_forward(c.space_, c.x3(tokens), 0, pooled);
  }
  // dpooled: [B, D] -> dtokens: [B, N, D] = dpooled / N on every token
  void backward(Ctx& c, act_type*, const view2<act_type>& dpooled, act_type* dtokens) const {
    kernels::token_mean_pool_backward(c.space_, dpooled, 0, c.x3(dtokens));
  }
};

}  // namespace vitscale::model_detail
