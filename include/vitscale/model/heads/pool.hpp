#pragma once
// The pooling heads, one unit per vitscale::pooling value, each in its own header:
//
//   cls_token.hpp    the class token's row                          (timm global_pool='token')
//   gap.hpp          the mean of the patch tokens                   (timm global_pool='avg', fc_norm=False)
//   gap_fc_norm.hpp  the mean of the tokens, then a norm (fc_norm)  (timm global_pool='avg' with fc_norm)
//   map.hpp          multihead attention pooling                    (big_vision's MAPHead, timm's 'map')
//
// A unit pool_head<Kind, Ctx> (Ctx: model_detail::layer_context) declares its parameters (compile-time indices
// into the shape's table), the activations it keeps and its scratch (by deriving from their declaration,
// activations::pool_buffers_for<Kind, …> in config/activations.hpp), and its forward and backward side by side:
//   forward(ctx, tokens, pooled)                 tokens: [B, N, D] -> pooled: [B, D]
//   backward(ctx, tokens, dpooled, dtokens)      dpooled: [B, D] -> dtokens: [B, N, D] (overwritten), and
//                                                 its parameters' gradients
// `tokens` are the final norm's output where the shape normalises every token (Shape::token_norm), else the
// last block's output. The primary template has no definition: a pooling value without a unit does not compile.

#include <vitscale/config/options.hpp>

namespace vitscale::model_detail {

template <pooling Kind, class Ctx>
struct pool_head;

}  // namespace vitscale::model_detail

#include <vitscale/model/heads/cls_token.hpp>
#include <vitscale/model/heads/gap.hpp>
#include <vitscale/model/heads/gap_fc_norm.hpp>
#include <vitscale/model/heads/map.hpp>
