#pragma once
// The NFNet stem unit: timm's deep_quad stem, four 3×3 scaled weight-standardised convolutions (stem/8, stem/4,
// stem/2 and stem channels; strides 2, 1, 1, 2) with γ-scaled GELU between them (timm's act2..act4; none after
// the last: the first block's pre-activation follows).
//   images: [B, H, W, C] -> y: [B, H/4, W/4, stem]  (SAME padding: each stride-2 conv gives ceil(side/2))

#include <vitscale/kernels/activations.hpp>
#include <vitscale/kernels/reduction.hpp>
#include <vitscale/model/nfnet_context.hpp>

#include <array>

namespace vitscale::model_detail {

template <class Ctx>
struct nf_stem {
  using T = typename Ctx::act_type;
  using buffer = Kokkos::View<T****, Kokkos::LayoutRight, typename Ctx::memory_space>;
  static constexpr kernels::gelu_kind gelu = kernels::gelu_kind::erf;  // timm's nn.GELU

  std::array<nf_conv, 4> conv;
  std::array<int, 4> side{};  // output side of each conv
  int in_side = 0;
  // Saved for backward: the image in the operand type, each conv's output (pre-activation) and activation.
  buffer image, pre[3], act[3];

  void bind(const Ctx& c, const nfnet_layer& l, int i, nfnet_padding padding) {
    conv[i] = nf_conv::bind(c, l, padding);
    side[i] = l.out_side;
    if (i == 0) in_side = l.in_side;
  }

  void layout(int batch) {
    const auto u = [](int v) { return static_cast<std::size_t>(v); };
    image = buffer("vitscale::nfnet_stem_image", u(batch), u(in_side), u(in_side), u(conv[0].spec.in_channels));
    for (int i = 0; i < 3; ++i) {
      const auto s = u(side[i]), ch = u(conv[i].spec.out_channels);
      pre[i] = buffer("vitscale::nfnet_stem_pre", u(batch), s, s, ch);
      act[i] = buffer("vitscale::nfnet_stem_act", u(batch), s, s, ch);
    }
  }

  // images: [B, H, W, C] (float) -> y: [B, side, side, stem]
  template <class Images, class Y>
  void forward(Ctx& c, const Images& images, const Y& y) const {
    const auto& space = c.space();
    kernels::convert(space, typename Ctx::template view1<const float>(images.data(), images.size()),
                     typename Ctx::template view1<T>(image.data(), image.size()));
    for (int i = 0; i < 3; ++i) {
      conv[i].forward(c, i == 0 ? image : act[i - 1], pre[i]);
      kernels::gelu_forward<gelu>(space, rows_of(pre[i]), rows_of(act[i]), static_cast<float>(Ctx::gamma));
    }
    conv[3].forward(c, act[2], y);
  }

  // dy: [B, side, side, stem] -> every stem gradient; scratch: two buffers of at least the largest stem
  // activation's elements (dy itself is not kept)
  template <class DY, class Scratch>
  void backward(Ctx& c, const DY& dy, const Scratch& s0, const Scratch& s1) const {
    const auto& space = c.space();
    using view4 = typename Ctx::template view4<T>;
    auto like = [](const Scratch& s, const buffer& b) {
      return view4(s.data(), b.extent(0), b.extent(1), b.extent(2), b.extent(3));
    };
    view4 d = like(s0, act[2]);
    conv[3].backward(c, act[2], dy, d);
    for (int i = 2; i >= 0; --i) {
      kernels::gelu_backward<gelu>(space, rows_of(pre[i]), rows_of(d), rows_of(d), static_cast<float>(Ctx::gamma));
      if (i == 0) {
        conv[0].backward(c, image, d, view4());  // the image needs no gradient
      } else {
        view4 next = like(d.data() == s0.data() ? s1 : s0, act[i - 1]);
        conv[i].backward(c, act[i - 1], d, next);
        d = next;
      }
    }
  }
};

}  // namespace vitscale::model_detail
