#pragma once
// The classifier after the pooling: big_vision's optional tanh pre-logits layer, then the linear head.
//   pooled: [B, D] -> pre = tanh(pooled·Wpᵀ + bp): [B, P] (with pre-logits) -> logits = features·Whᵀ + bh: [B, classes]
// It owns the pooled vector (the pooling head writes it) and the logits (float).

#include <vitscale/config/activations.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/model/heads/passes.hpp>
#include <vitscale/model/linear.hpp>

#include <cstddef>

namespace vitscale::model_detail {

template <class Ctx>
struct classifier : activations::classifier_buffers<typename Ctx::shape, typename Ctx::act_type> {
  using shape = typename Ctx::shape;
  using act_type = typename Ctx::act_type;
  template <class T>
  using view2 = typename Ctx::template view2<T>;
  static constexpr int D = Ctx::D, pre_width = shape::pre_logits, classes = shape::num_classes;
  static constexpr int features = shape::features;  // the linear head's input width
  static constexpr int pre_w = pre_width > 0 ? tensor_index<shape>(-1, "pre_logits.fc.weight") : -1;
  static constexpr int pre_b = pre_width > 0 ? tensor_index<shape>(-1, "pre_logits.fc.bias") : -1;
  static constexpr int head_w = tensor_index<shape>(-1, "head.weight");
  static constexpr int head_b = tensor_index<shape>(-1, "head.bias");

  // Its buffers (pooled, pre, logits; their gradients): activations::classifier_buffers.
  using buffers = activations::classifier_buffers<shape, act_type>;
  using buffers::pooled, buffers::pre, buffers::logits, buffers::dl, buffers::dfeat, buffers::dpooled;

  // The classifier's input: the pre-logits output, or the pooled vector.
  act_type* input() const { return pre_width > 0 ? pre : pooled; }

  // pooled (written by the pooling head) -> logits
  void forward(Ctx& c, std::size_t B) const {
    view2<const act_type> in = c.m2(pooled, B, D);
    if constexpr (pre_width > 0) {
      auto p = c.m2(pre, B, pre_width);
      linear_forward(c.space_, in, c.weight(pre_w), c.vec(pre_b), p);
      tanh_inplace(c.space_, p);
      in = p;
    }
    linear_forward(c.space_, in, c.weight(head_w), c.vec(head_b), view2<float>(logits, B, classes));
  }

  // dlogits: [B, classes] float -> the gradient of the pooled vector [B, D] (returned); the head's and the
  // pre-logits layer's gradients.
  template <class DLogits>
  view2<act_type> backward(Ctx& c, const DLogits& dlogits, std::size_t B) const {
    auto dlv = c.m2(dl, B, classes);
    convert_rows(c.space_, dlogits, dlv);
    auto df = c.m2(dfeat, B, features);
    linear_backward(c.space_, c.m2(input(), B, features), c.weight(head_w), dlv, c.gmat(head_w), c.gvec(head_b), df,
                    c.sum_workspace(B, classes));
    if constexpr (pre_width > 0) {
      auto dp = c.m2(dpooled, B, D);
      tanh_backward_inplace(c.space_, c.m2(pre, B, pre_width), df);
      linear_backward(c.space_, c.m2(pooled, B, D), c.weight(pre_w), df, c.gmat(pre_w), c.gvec(pre_b), dp,
                      c.sum_workspace(B, pre_width));
      return dp;
    } else {
      return df;
    }
  }
};

}  // namespace vitscale::model_detail
