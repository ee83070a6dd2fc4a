#pragma once
// The scaled weight-standardised convolution, NFNet's only convolution: timm's ScaledStdConv2d (PyTorch's
// symmetric padding) and ScaledStdConv2dSame (TensorFlow's "SAME" padding, which the DeepMind-compatible
// dm_nfnet_* models use). Its parameters are timm's: weight [O, I/groups, K, K], gain [O, 1, 1, 1], bias [O].
//
//   forward:  ŵ = standardise(weight)·gain·gamma/sqrt(fan_in)  (kernels/weight_standardization.hpp)
//             y = conv(x, ŵ) + bias                            (kernels/conv2d.hpp)
//   backward: dŵ, dbias from the convolution's weight gradient, dx from its data gradient with the same ŵ,
//             then dweight, dgain through the standardisation.
// ŵ is in the convolution's operand type (x's: float, or bf16 under a bf16 policy), computed from the float
// master weight on every forward and kept, with the standardisation's statistics, for backward.
//   x: [B, H, W, I] -> y: [B, Ho, Wo, O]

#include <vitscale/config/nfnet_walk.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/kernels/conv2d.hpp>
#include <vitscale/kernels/weight_standardization.hpp>

#include <cmath>
#include <cstddef>

namespace vitscale::model_detail {

// What fixes one convolution: channels, square kernel, stride, groups, padding (nfnet_padding::same is
// ScaledStdConv2dSame, ::symmetric ScaledStdConv2d), and the standardisation's
// gamma (NFNet-F: 1, the activation carries γ) and eps (timm's NfCfg.std_conv_eps: 1e-5).
struct std_conv_spec {
  int in_channels, out_channels, kernel, stride, groups;
  nfnet_padding padding = nfnet_padding::same;
  double gamma = 1.0;
  double eps = 1e-5;

  constexpr int fan_in() const { return in_channels / groups * kernel * kernel; }
  // timm: scale = gamma · fan_in^(−1/2)
  double scale() const { return gamma / std::sqrt(static_cast<double>(fan_in())); }
  // The convolution's geometry for an in_h × in_w input ("SAME" padding depends on it).
  constexpr kernels::conv2d_geometry geometry(int in_h, int in_w) const {
    return padding == nfnet_padding::same ? kernels::conv2d_same(kernel, stride, in_h, in_w, groups)
                                         : kernels::conv2d_symmetric(kernel, stride, groups);
  }
};

namespace std_conv_detail {
// A contiguous [O, I/g, K, K] View seen as the [O, fan_in] rows the standardisation works on.
template <class V>
auto weight_rows(const V& v) {
  using T = typename V::value_type;
  using rows_view =
      Kokkos::View<T**, Kokkos::LayoutRight, typename V::memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  if (!v.span_is_contiguous())
    ::vitscale::detail::fail("std_conv: a weight View must be contiguous, its extents are ",
                             ::vitscale::detail::extents_string(v));
  const std::size_t rows = v.extent(0);
  return rows_view(v.data(), rows, rows == 0 ? 0 : v.size() / rows);
}
}  // namespace std_conv_detail

// weight: [O, I/g, K, K], gain: [O], bias: [O] (empty: none), x: [B, H, W, I] -> y: [B, Ho, Wo, O];
// w_hat: [O, I/g, K, K] (x's type), mean, rstd: [O] (float): kept for std_conv_backward
template <class ExecSpace, class Weight, class Gain, class Bias, class X, class WHat, class Stats, class Y>
void std_conv_forward(const ExecSpace& space, const std_conv_spec& spec, const Weight& weight, const Gain& gain,
                      const Bias& bias, const X& x, const WHat& w_hat, const Stats& mean, const Stats& rstd,
                      const Y& y) {
  kernels::weight_standardization_forward(space, std_conv_detail::weight_rows(weight), gain, spec.scale(), spec.eps,
                                          std_conv_detail::weight_rows(w_hat), mean, rstd);
  const auto geometry = spec.geometry(static_cast<int>(x.extent(1)), static_cast<int>(x.extent(2)));
  kernels::conv2d_forward(space, geometry, x, w_hat, bias, y);
}

// The forward's x, weight, gain, w_hat, mean, rstd and dy: [B, Ho, Wo, O] -> dx: [B, H, W, I] + beta_dx·dx (empty:
// not wanted, e.g. for the stem's image), dweight: [O, I/g, K, K], dgain: [O], dbias: [O] (empty: no bias),
// overwritten; dw_hat: [O, I/g, K, K] float scratch
template <class ExecSpace, class Weight, class Gain, class X, class WHat, class Stats, class DY, class DX,
          class DWHat, class DWeight, class DGain, class DBias>
void std_conv_backward(const ExecSpace& space, const std_conv_spec& spec, const Weight& weight, const Gain& gain,
                       const X& x, const WHat& w_hat, const Stats& mean, const Stats& rstd, const DY& dy,
                       const DX& dx, const DWHat& dw_hat, const DWeight& dweight, const DGain& dgain,
                       const DBias& dbias, float beta_dx = 0.0f) {
  const auto geometry = spec.geometry(static_cast<int>(x.extent(1)), static_cast<int>(x.extent(2)));
  kernels::conv2d_backward_weights(space, geometry, x, dy, dw_hat, dbias);
  if (dx.size() != 0) kernels::conv2d_backward_data(space, geometry, dy, w_hat, dx, beta_dx);
  kernels::weight_standardization_backward(space, std_conv_detail::weight_rows(weight), gain, spec.scale(), mean, rstd,
                                           std_conv_detail::weight_rows(dw_hat), std_conv_detail::weight_rows(dweight), dgain);
}

}  // namespace vitscale::model_detail
