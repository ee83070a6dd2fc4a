#pragma once
// Scaled weight standardisation (Brock et al. 2021, "Characterizing signal propagation to close the performance
// gap in unnormalized ResNets"), the weight transform of every NFNet convolution, forward and backward.
//
// A convolution's weight [O, Cin/g, KH, KW] is seen as O rows of fan_in = Cin/g·KH·KW. Each row is
// standardised and scaled by a learned per-output-channel gain:
//
//   ŵ(o, k) = gain(o) · scale · (w(o, k) − mean_o) · rstd_o,   rstd_o = 1/sqrt(var_o + eps),
//   scale = gamma / sqrt(fan_in)
//
// with the biased variance, eps inside the square root: timm's ScaledStdConv2d / ScaledStdConv2dSame, which
// compute this as F.batch_norm over the weight viewed as [1, O, fan_in] with weight = gain·scale (the NFNet
// models use gamma = 1 with the activation's γ applied to the activation instead, eps = 1e-5). DeepMind's
// Haiku WSConv2D puts eps differently (max(var·fan_in, eps)); timm's form is the one followed here because
// timm is the oracle.
//
// Storage of w, gain and dŵ float (the master weights) or double (gradient checks); ŵ float, bf16 or double
// — the convolution's operand type; every sum in float (double for double), in a fixed order: one team per
// row, so results do not depend on the thread count. The statistics (mean, rstd: [O]) are saved by forward
// for backward.

#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <cstddef>

namespace vitscale::kernels {

namespace detail {
template <class W, class Gain>
void check_weight_standardization(const char* fn, const W& w, const Gain& gain, double scale) {
  ::vitscale::detail::require_extents(fn, "gain", gain, {w.extent(0)});
  if (w.extent(1) == 0) ::vitscale::detail::fail(fn, ": the weight has no fan-in (w is [", w.extent(0), ", 0])");
  if (!(scale > 0)) ::vitscale::detail::fail(fn, ": scale must be positive, it is ", scale);
}
}  // namespace detail

// w: [O, K], gain: [O] -> w_hat: [O, K] = gain·scale·(w − mean)·rstd; mean, rstd: [O] saved for backward
template <class ExecSpace, class W, class Gain, class WHat, class Mean, class Rstd>
void weight_standardization_forward(const ExecSpace& space, const W& w, const Gain& gain, double scale, double eps,
                                    const WHat& w_hat, const Mean& mean, const Rstd& rstd) {
  using A = detail::accum_t<typename W::value_type>;
  using T = detail::value_t<WHat>;
  static_assert(detail::is_input_view_v<ExecSpace, W, 2>, "weight_standardization_forward: w must be a rank-2 View");
  static_assert(detail::is_input_view_v<ExecSpace, Gain, 1>,
                "weight_standardization_forward: gain must be a rank-1 View");
  static_assert(detail::is_output_view_v<ExecSpace, WHat, 2>,
                "weight_standardization_forward: w_hat must be a writable rank-2 View");
  static_assert(detail::is_accum_view_v<ExecSpace, Mean, 1, A> && detail::is_accum_view_v<ExecSpace, Rstd, 1, A>,
                "weight_standardization_forward: mean and rstd must be writable rank-1 Views of float (double for "
                "double w)");
  constexpr const char* fn = "weight_standardization_forward";
  const std::size_t rows = w.extent(0), cols = w.extent(1);
  detail::check_weight_standardization(fn, w, gain, scale);
  ::vitscale::detail::require_extents(fn, "w_hat", w_hat, {rows, cols});
  ::vitscale::detail::require_extents(fn, "mean", mean, {rows});
  ::vitscale::detail::require_extents(fn, "rstd", rstd, {rows});
  if (!(eps > 0)) ::vitscale::detail::fail(fn, ": eps must be positive, it is ", eps);
  const int n = static_cast<int>(cols);
  const A inv_n = A(1) / static_cast<A>(n), epsilon = static_cast<A>(eps), s = static_cast<A>(scale);
  detail::for_each_row(space, "vitscale::weight_standardization_forward", rows,
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int o) {
    const A m = detail::row_sum<A>(member, n, [&](int k) { return static_cast<A>(w(o, k)); }) * inv_n;
    const A ss = detail::row_sum<A>(member, n, [&](int k) {  // two passes: no E[w²] − E[w]² cancellation
      const A d = static_cast<A>(w(o, k)) - m;
      return d * d;
    });
    const A r = A(1) / kmath::sqrt(ss * inv_n + epsilon);
    const A g = static_cast<A>(gain(o)) * s * r;
    detail::row_for(member, n, [&](int k) { w_hat(o, k) = detail::store_as<T>((static_cast<A>(w(o, k)) - m) * g); });
    Kokkos::single(Kokkos::PerTeam(member), [&] {
      mean(o) = m;
      rstd(o) = r;
    });
  });
}

// w: [O, K], gain, mean, rstd: [O], dw_hat: [O, K] -> dw: [O, K] = ∂L/∂w + beta·dw,
// dgain: [O] = ∂L/∂gain + beta·dgain  (beta = 0: the outputs are never read)
template <class ExecSpace, class W, class Gain, class Mean, class Rstd, class DWHat, class DW, class DGain>
void weight_standardization_backward(const ExecSpace& space, const W& w, const Gain& gain, double scale,
                                     const Mean& mean, const Rstd& rstd, const DWHat& dw_hat, const DW& dw,
                                     const DGain& dgain, float beta = 0.0f) {
  using A = detail::accum_t<typename W::value_type>;
  using T = detail::value_t<DW>;
  using TG = detail::value_t<DGain>;
  static_assert(detail::is_input_view_v<ExecSpace, W, 2> && detail::is_input_view_v<ExecSpace, DWHat, 2>,
                "weight_standardization_backward: w and dw_hat must be rank-2 Views");
  static_assert(detail::is_input_view_v<ExecSpace, Gain, 1> && detail::is_input_view_v<ExecSpace, Mean, 1> &&
                    detail::is_input_view_v<ExecSpace, Rstd, 1>,
                "weight_standardization_backward: gain, mean and rstd must be rank-1 Views");
  static_assert(detail::is_output_view_v<ExecSpace, DW, 2> && detail::is_output_view_v<ExecSpace, DGain, 1>,
                "weight_standardization_backward: dw and dgain must be writable Views of rank 2 and 1");
  constexpr const char* fn = "weight_standardization_backward";
  const std::size_t rows = w.extent(0), cols = w.extent(1);
  detail::check_weight_standardization(fn, w, gain, scale);
  ::vitscale::detail::require_extents(fn, "mean", mean, {rows});
  ::vitscale::detail::require_extents(fn, "rstd", rstd, {rows});
  ::vitscale::detail::require_extents(fn, "dw_hat", dw_hat, {rows, cols});
  ::vitscale::detail::require_extents(fn, "dw", dw, {rows, cols});
  ::vitscale::detail::require_extents(fn, "dgain", dgain, {rows});
  const int n = static_cast<int>(cols);
  const A inv_n = A(1) / static_cast<A>(n), s = static_cast<A>(scale), b = static_cast<A>(beta);
  const bool accumulate = beta != 0.0f;
  detail::for_each_row(space, "vitscale::weight_standardization_backward", rows,
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int o) {
    // With x̂ = (w − mean)·rstd and ŵ = gain·scale·x̂: ∂L/∂gain = scale·Σ dŵ·x̂, and, as in LayerNorm's
    // backward with g = gain·scale·dŵ, ∂L/∂w = rstd·(g − mean(g) − x̂·mean(g·x̂)).
    const A m = static_cast<A>(mean(o)), r = static_cast<A>(rstd(o)), gs = static_cast<A>(gain(o)) * s;
    const A sum_d = detail::row_sum<A>(member, n, [&](int k) { return static_cast<A>(dw_hat(o, k)); });
    const A sum_dx = detail::row_sum<A>(
        member, n, [&](int k) { return static_cast<A>(dw_hat(o, k)) * ((static_cast<A>(w(o, k)) - m) * r); });
    const A mean_g = gs * sum_d * inv_n, mean_gx = gs * sum_dx * inv_n;
    detail::row_for(member, n, [&](int k) {
      const A xhat = (static_cast<A>(w(o, k)) - m) * r;
      A v = r * (gs * static_cast<A>(dw_hat(o, k)) - mean_g - xhat * mean_gx);
      if (accumulate) v += b * static_cast<A>(dw(o, k));
      dw(o, k) = detail::store_as<T>(v);
    });
    Kokkos::single(Kokkos::PerTeam(member), [&] {
      A v = s * sum_dx;
      if (accumulate) v += b * static_cast<A>(dgain(o));
      dgain(o) = detail::store_as<TG>(v);
    });
  });
}

}  // namespace vitscale::kernels
