#pragma once
// QK-norm (ViT-22B): a LayerNorm over the head dimension applied to q and to k before attention, forward and
// backward. Each of q and k has its own learned scale [d] and optional bias [d]; Centered = false is
// ViT-22B's form (no mean subtracted, so rstd = 1 / sqrt(mean(x²) + eps)), Centered = true is a full
// LayerNorm. Views are [B, N, H, d] with a contiguous head dimension and any other strides, so q and k may
// be subviews of a fused qkv buffer; storage float or vitscale::bf16, statistics and sums in float.
//
// The forward pass saves the per-row mean and rstd; backward reduces dscale and dbias over all rows with
// one team per column, in a fixed row order (no atomics): bit-identical run to run for a given team size.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/views.hpp>

#include <cstddef>
#include <type_traits>

namespace vitscale::kernels {

namespace detail {

template <class ExecSpace, class View, int Rank, bool Output>
constexpr void static_check_qk_norm_view() {
  static_assert(Kokkos::is_view<View>::value, "qk_norm: arguments must be Kokkos Views");
  static_assert(static_cast<int>(View::rank) == Rank,
                "qk_norm: a View has the wrong rank (x, y, dy, dx are [B, N, H, d], scale and bias [d], "
                "mean and rstd [B, N, H])");
  using value = std::remove_const_t<typename View::value_type>;
  static_assert(std::is_same_v<value, float> || std::is_same_v<value, bf16>,
                "qk_norm: Views hold float or vitscale::bf16");
  static_assert(!Output || !std::is_const_v<typename View::value_type>, "qk_norm: an output View must not be const");
  static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename View::memory_space>::accessible,
                "qk_norm: a View is not accessible from the execution space");
}

template <int HeadDim, bool Centered, class X, class Mean, class Rstd>
void check_qk_norm_rows(const char* fn, const X& x, const Mean& mean, const Rstd& rstd) {
  if (x.extent(3) != static_cast<std::size_t>(HeadDim))
    vitscale::detail::fail(fn, ": x is ", vitscale::detail::extents_string(x),
                           ", its last extent must be the head dimension ", HeadDim);
  vitscale::detail::require_contiguous_rows(fn, "x", x);
  const std::size_t b = x.extent(0), n = x.extent(1), h = x.extent(2);
  vitscale::detail::require_extents(fn, "rstd", rstd, {b, n, h});
  // Without centering the mean is never used; an empty view is accepted for it.
  if (Centered || mean.size() != 0) vitscale::detail::require_extents(fn, "mean", mean, {b, n, h});
}

}  // namespace detail

// x: [B, N, H, d], scale: [d], bias: [d] or empty -> y: [B, N, H, d], mean, rstd: [B, N, H] (mean may be empty
// and stays unwritten when !Centered); y = (x - mean) · rstd · scale + bias over the head dimension
template <int HeadDim, bool Centered, class ExecSpace, class XView, class ScaleView, class BiasView, class YView,
          class MeanView, class RstdView>
void qk_norm_forward(const ExecSpace& space, const XView& x, const ScaleView& scale, const BiasView& bias,
                     const YView& y, const MeanView& mean, const RstdView& rstd, float eps = 1e-6f) {
  static_assert(HeadDim > 0, "qk_norm: the head dimension must be positive");
  detail::static_check_qk_norm_view<ExecSpace, XView, 4, false>();
  detail::static_check_qk_norm_view<ExecSpace, ScaleView, 1, false>();
  detail::static_check_qk_norm_view<ExecSpace, BiasView, 1, false>();
  detail::static_check_qk_norm_view<ExecSpace, YView, 4, true>();
  detail::static_check_qk_norm_view<ExecSpace, MeanView, 3, true>();
  detail::static_check_qk_norm_view<ExecSpace, RstdView, 3, true>();
  static_assert(std::is_same_v<typename MeanView::value_type, float> &&
                    std::is_same_v<typename RstdView::value_type, float>,
                "qk_norm_forward: mean and rstd are float");

  constexpr const char* fn = "qk_norm_forward";
  constexpr int D = HeadDim;
  detail::check_qk_norm_rows<HeadDim, Centered>(fn, x, mean, rstd);
  const std::size_t nb = x.extent(0), nn = x.extent(1), nh = x.extent(2);
  vitscale::detail::require_extents(fn, "y", y, {nb, nn, nh, static_cast<std::size_t>(D)});
  vitscale::detail::require_contiguous_rows(fn, "y", y);
  vitscale::detail::require_extents(fn, "scale", scale, {static_cast<std::size_t>(D)});
  if (bias.size() != 0) vitscale::detail::require_extents(fn, "bias", bias, {static_cast<std::size_t>(D)});
  const bool has_bias = bias.size() != 0;
  const bool save_mean = mean.size() != 0;
  const int n = static_cast<int>(nn), h_count = static_cast<int>(nh);
  const int rows = static_cast<int>(nb * nn * nh);

  Kokkos::parallel_for(
      "vitscale::qk_norm_forward", Kokkos::RangePolicy<ExecSpace>(space, 0, rows), KOKKOS_LAMBDA(int r) {
        const int h = r % h_count;
        const int t = (r / h_count) % n;
        const int b = r / h_count / n;
        const auto* src = &x(b, t, h, 0);
        float mu = 0.0f;
        if (Centered) {
          for (int c = 0; c < D; ++c) mu += static_cast<float>(src[c]);
          mu /= static_cast<float>(D);
        }
        float var = 0.0f;
        for (int c = 0; c < D; ++c) {
          const float centred = static_cast<float>(src[c]) - mu;
          var += centred * centred;
        }
        const float rs = 1.0f / kmath::sqrt(var / static_cast<float>(D) + eps);
        auto* dst = &y(b, t, h, 0);
        for (int c = 0; c < D; ++c) {
          const float value = (static_cast<float>(src[c]) - mu) * rs * static_cast<float>(scale(c));
          dst[c] = has_bias ? value + static_cast<float>(bias(c)) : value;
        }
        if (save_mean) mean(b, t, h) = mu;
        rstd(b, t, h) = rs;
      });
}

// x, scale, mean, rstd: as qk_norm_forward, dy: [B, N, H, d] -> dx: [B, N, H, d], dscale: [d], dbias: [d] or
// empty (not computed)
template <int HeadDim, bool Centered, class ExecSpace, class XView, class ScaleView, class MeanView,
          class RstdView, class DYView, class DXView, class DScaleView, class DBiasView>
void qk_norm_backward(const ExecSpace& space, const XView& x, const ScaleView& scale, const MeanView& mean,
                      const RstdView& rstd, const DYView& dy, const DXView& dx, const DScaleView& dscale,
                      const DBiasView& dbias) {
  detail::static_check_qk_norm_view<ExecSpace, XView, 4, false>();
  detail::static_check_qk_norm_view<ExecSpace, ScaleView, 1, false>();
  detail::static_check_qk_norm_view<ExecSpace, MeanView, 3, false>();
  detail::static_check_qk_norm_view<ExecSpace, RstdView, 3, false>();
  detail::static_check_qk_norm_view<ExecSpace, DYView, 4, false>();
  detail::static_check_qk_norm_view<ExecSpace, DXView, 4, true>();
  detail::static_check_qk_norm_view<ExecSpace, DScaleView, 1, true>();
  detail::static_check_qk_norm_view<ExecSpace, DBiasView, 1, true>();
  static_assert(std::is_same_v<typename DScaleView::value_type, float> &&
                    std::is_same_v<typename DBiasView::value_type, float>,
                "qk_norm_backward: dscale and dbias are float (parameter gradients)");

  constexpr const char* fn = "qk_norm_backward";
  constexpr int D = HeadDim;
  detail::check_qk_norm_rows<HeadDim, Centered>(fn, x, mean, rstd);
  const std::size_t nb = x.extent(0), nn = x.extent(1), nh = x.extent(2), d = D;
  vitscale::detail::require_extents(fn, "scale", scale, {d});
  vitscale::detail::require_extents(fn, "dy", dy, {nb, nn, nh, d});
  vitscale::detail::require_extents(fn, "dx", dx, {nb, nn, nh, d});
  vitscale::detail::require_extents(fn, "dscale", dscale, {d});
  if (dbias.size() != 0) vitscale::detail::require_extents(fn, "dbias", dbias, {d});
  vitscale::detail::require_contiguous_rows(fn, "dy", dy);
  vitscale::detail::require_contiguous_rows(fn, "dx", dx);
  const bool want_dbias = dbias.size() != 0;
  const int n = static_cast<int>(nn), h_count = static_cast<int>(nh);
  const int rows = static_cast<int>(nb * nn * nh);

  // dx = rstd · (g - mean(g) - x̂ · mean(g · x̂)) with g = dy · scale (no mean(g) term without centering).
  Kokkos::parallel_for(
      "vitscale::qk_norm_backward_dx", Kokkos::RangePolicy<ExecSpace>(space, 0, rows), KOKKOS_LAMBDA(int r) {
        const int h = r % h_count;
        const int t = (r / h_count) % n;
        const int b = r / h_count / n;
        const auto* x_row = &x(b, t, h, 0);
        const auto* dy_row = &dy(b, t, h, 0);
        const float mu = Centered ? mean(b, t, h) : 0.0f;
        const float rs = rstd(b, t, h);
        float g_mean = 0.0f, gx_mean = 0.0f;
        for (int c = 0; c < D; ++c) {
          const float g = static_cast<float>(dy_row[c]) * static_cast<float>(scale(c));
          g_mean += g;
          gx_mean += g * (static_cast<float>(x_row[c]) - mu) * rs;
        }
        g_mean = Centered ? g_mean / static_cast<float>(D) : 0.0f;
        gx_mean /= static_cast<float>(D);
        auto* dst = &dx(b, t, h, 0);
        for (int c = 0; c < D; ++c) {
          const float g = static_cast<float>(dy_row[c]) * static_cast<float>(scale(c));
          const float xhat = (static_cast<float>(x_row[c]) - mu) * rs;
          dst[c] = rs * (g - g_mean - xhat * gx_mean);
        }
      });

  // dscale_c = Σ_rows dy · x̂, dbias_c = Σ_rows dy: a team per column, rows reduced in the team's fixed order.
  using policy_t = Kokkos::TeamPolicy<ExecSpace>;
  using member_t = typename policy_t::member_type;
  Kokkos::parallel_for(
      "vitscale::qk_norm_backward_dscale", policy_t(space, D, Kokkos::AUTO), KOKKOS_LAMBDA(const member_t& team) {
        const int c = team.league_rank();
        float ds = 0.0f, db = 0.0f;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, rows),
            [&](int r, float& acc) {
              const int h = r % h_count;
              const int t = (r / h_count) % n;
              const int b = r / h_count / n;
              const float mu = Centered ? mean(b, t, h) : 0.0f;
              acc += static_cast<float>(dy(b, t, h, c)) * (static_cast<float>(x(b, t, h, c)) - mu) * rstd(b, t, h);
            },
            ds);
        if (want_dbias)
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, rows),
              [&](int r, float& acc) {
                const int h = r % h_count;
                const int t = (r / h_count) % n;
                const int b = r / h_count / n;
                acc += static_cast<float>(dy(b, t, h, c));
              },
              db);
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          dscale(c) = ds;
          if (want_dbias) dbias(c) = db;
        });
      });
}

}  // namespace vitscale::kernels
