#pragma once
// The class-token head: the final state of the prepended class token is the image's representation.

#include <vitscale/config/activations.hpp>
#include <vitscale/model/heads/passes.hpp>
#include <vitscale/model/heads/pool.hpp>

#include <cstddef>

namespace vitscale::model_detail {

template <class Ctx>
struct pool_head<pooling::cls_token, Ctx>
    : activations::pool_buffers_for<pooling::cls_token, typename Ctx::shape, typename Ctx::act_type> {
  using act_type = typename Ctx::act_type;
  template <class T>
  using view2 = typename Ctx::template view2<T>;

  // tokens: [B, N, D] -> pooled: [B, D] = tokens(:, 0, :)
  void forward(Ctx& c, act_type* tokens, const view2<act_type>& pooled) const {
    select_token(c.space_, c.x3(tokens), 0, pooled);
  }
  // dpooled: [B, D] -> dtokens: [B, N, D], dpooled on the class token's row, 0 elsewhere
  void backward(Ctx& c, act_type*, const view2<act_type>& dpooled, act_type* dtokens) const {
    select_token_backward(c.space_, dpooled, 0, c.x3(dtokens));
  }
};

}  // namespace vitscale::model_detail
