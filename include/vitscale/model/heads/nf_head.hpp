#pragma once
// The NFNet head unit: timm's final_conv (a 1×1 scaled weight-standardised conv to features channels; absent
// with feature_multiplier 0), final_act (γ-scaled GELU), then ClassifierHead: global average pooling over the
// positions, dropout (training) and the linear classifier head.fc.
//   x: [B, S, S, C] -> features: [B, F] -> logits: [B, classes] (float)

#include <vitscale/kernels/activations.hpp>
#include <vitscale/kernels/dropout.hpp>
#include <vitscale/kernels/pooling.hpp>
#include <vitscale/kernels/reduction.hpp>
#include <vitscale/model/nfnet_context.hpp>

#include <string_view>

namespace vitscale::model_detail {

template <class Ctx>
struct nf_head {
  using T = typename Ctx::act_type;
  using buffer4 = Kokkos::View<T****, Kokkos::LayoutRight, typename Ctx::memory_space>;
  using buffer2 = Kokkos::View<T**, Kokkos::LayoutRight, typename Ctx::memory_space>;
  using view4 = typename Ctx::template view4<T>;
  static constexpr kernels::gelu_kind gelu = kernels::gelu_kind::erf;

  bool has_final_conv = false;
  nf_conv final_conv;
  nf_linear fc;
  int side = 0, in_channels = 0, features = 0, classes = 0;
  buffer4 f, fa;             // the final conv's output (absent without it) and its activation
  buffer2 pooled, dropped, dlogits_;  // the features, the classifier's input (dropout on), the loss gradient
  double dropout = 0.0;               // nfnet::set_regularization

  void bind_layer(const Ctx& c, const nfnet_layer& l, nfnet_padding padding) {
    const std::string_view n = l.name;
    if (n == "final_conv") {
      has_final_conv = true;
      final_conv = nf_conv::bind(c, l, padding);
    } else if (n == "head.global_pool") {
      side = l.in_side;
      features = l.in_channels;
    } else if (n == "head.fc") {
      fc = nf_linear::bind(c, l);
      classes = l.out_channels;
    } else {
      detail::fail("nfnet: the head has no layer named '", n, "'");
    }
  }

  void layout(int batch, int last_channels) {
    in_channels = last_channels;
    const auto u = [](int v) { return static_cast<std::size_t>(v); };
    if (has_final_conv) f = buffer4("vitscale::nfnet_final_conv", u(batch), u(side), u(side), u(features));
    fa = buffer4("vitscale::nfnet_final_act", u(batch), u(side), u(side), u(features));
    pooled = buffer2("vitscale::nfnet_features", u(batch), u(features));
    dropped = buffer2("vitscale::nfnet_dropped_features", u(batch), u(features));
    dlogits_ = buffer2("vitscale::nfnet_dlogits", u(batch), u(classes));
  }

  // x: [B, S, S, C] -> logits: [B, classes]
  bool drops(const nf_masks& m) const { return m.training && dropout > 0; }

  template <class X, class Logits>
  void forward(Ctx& c, const X& x, const Logits& logits, const nf_masks& masks) const {
    const auto& space = c.space();
    if (has_final_conv) final_conv.forward(c, x, f);
    kernels::gelu_forward<gelu>(space, rows_of(has_final_conv ? view4(f) : view4(x)), rows_of(fa),
                                static_cast<float>(Ctx::gamma));
    kernels::token_mean_pool_forward(space, positions_of(fa), 0, pooled);
    if (drops(masks)) {
      kernels::dropout_forward(space, masks.key(nf_head_dropout_site), dropout, pooled, dropped,
                               kernels::dropout_index{masks.first_image, 0, 0, 1, 1, 0});
      fc.forward(c, dropped, logits);
    } else {
      fc.forward(c, pooled, logits);
    }
  }

  // The forward's x, dlogits: [B, classes] (float) -> dx: [B, S, S, C] and the head's gradients; scratch: a buffer
  // of at least B·S·S·features elements
  template <class X, class DLogits, class DX, class Scratch>
  void backward(Ctx& c, const X& x, const DLogits& dlogits, const DX& dx, const Scratch& scratch,
                const nf_masks& masks) const {
    const auto& space = c.space();
    kernels::convert(space, typename Ctx::template view1<const float>(dlogits.data(), dlogits.size()),
                     typename Ctx::template view1<T>(dlogits_.data(), dlogits_.size()));
    // The scratch holds d fa, then d pooled after it.
    const std::size_t act = fa.size();
    typename Ctx::template view2<T> dpooled(scratch.data() + act, pooled.extent(0), pooled.extent(1));
    if (drops(masks)) {
      fc.backward(c, dropped, dlogits_, dpooled);
      kernels::dropout_backward(space, masks.key(nf_head_dropout_site), dropout, dpooled, dpooled,
                                kernels::dropout_index{masks.first_image, 0, 0, 1, 1, 0});
    } else {
      fc.backward(c, pooled, dlogits_, dpooled);
    }
    view4 dfa(scratch.data(), fa.extent(0), fa.extent(1), fa.extent(2), fa.extent(3));
    kernels::token_mean_pool_backward(space, dpooled, 0, positions_of(dfa));
    if (has_final_conv) {
      kernels::gelu_backward<gelu>(space, rows_of(f), rows_of(dfa), rows_of(dfa), static_cast<float>(Ctx::gamma));
      final_conv.backward(c, x, dfa, dx);
    } else {
      kernels::gelu_backward<gelu>(space, rows_of(x), rows_of(dfa), rows_of(dx), static_cast<float>(Ctx::gamma));
    }
  }

  // Elements the backward scratch needs.
  std::size_t scratch_elements(int batch) const {
    return static_cast<std::size_t>(batch) * (std::size_t(side) * side * features + features);
  }
};

}  // namespace vitscale::model_detail
