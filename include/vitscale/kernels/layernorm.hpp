#pragma once
// LayerNorm over the last dimension, forward and backward, in the two variants the seed papers use and the
// two in between:
//
//   Centered, Bias:   y = (x − mean)·rstd·γ + β,  rstd = 1/sqrt(mean((x − mean)²) + eps)   (ViT, timm)
//   !Centered, !Bias: y = x·rstd·γ,               rstd = 1/sqrt(mean(x²) + eps)            (ViT-22B)
//
// The two choices are compile-time template arguments, in the order of config's opt::layer_norm<Centered,
// Bias>, because a model fixes them: layernorm_forward<true, true>(space, ...). Without a bias, the β and
// dβ arguments must be empty Views (e.g. default-constructed); without centering `mean` may be an empty View (it is
// not needed: a non-empty one is written with 0).
//
// Storage float or bf16 (double too, for gradient checks in tests); statistics and every sum in float.
// The saved statistics are float [rows] (double for double storage).

#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <cstddef>

namespace vitscale::kernels {

// Shape of the workspace layernorm_backward needs for `rows` rows of width `cols`: [chunks, (1 + Bias)·cols].
template <bool Bias>
grad_workspace_shape layernorm_backward_workspace(std::size_t rows, std::size_t cols) {
  return {detail::grad_chunk_count(rows), (Bias ? 2 : 1) * cols};
}

namespace detail {
template <bool Bias, class ExecSpace, class Beta>
void check_layernorm_bias(const char* function, const char* name, const Beta& beta, std::size_t cols) {
  if constexpr (Bias) {
    ::vitscale::detail::require_extents(function, name, beta, {cols});
  } else {
    if (beta.extent(0) != 0)
      ::vitscale::detail::fail(function, ": ", name, " must be empty for a LayerNorm without bias, it has ",
                               beta.extent(0), " elements");
  }
}
}  // namespace detail

// x: [rows, D], gamma: [D], beta: [D] (empty without Bias) -> y: [rows, D], mean (or empty, !Centered), rstd: [rows]
template <bool Centered, bool Bias, class ExecSpace, class X, class Gamma, class Beta, class Y, class Mean,
          class Rstd>
void layernorm_forward(const ExecSpace& space, const X& x, const Gamma& gamma, const Beta& beta, const Y& y,
                       const Mean& mean, const Rstd& rstd, double eps) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2>, "layernorm_forward: x must be a rank-2 View");
  static_assert(detail::is_input_view_v<ExecSpace, Gamma, 1> && detail::is_input_view_v<ExecSpace, Beta, 1>,
                "layernorm_forward: gamma and beta must be rank-1 Views");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 2>, "layernorm_forward: y must be a writable rank-2 View");
  static_assert(detail::is_accum_view_v<ExecSpace, Mean, 1, A> && detail::is_accum_view_v<ExecSpace, Rstd, 1, A>,
                "layernorm_forward: mean and rstd must be writable rank-1 Views of float (double for double x)");
  constexpr const char* fn = "layernorm_forward";
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents(fn, "gamma", gamma, {cols});
  detail::check_layernorm_bias<Bias, ExecSpace>(fn, "beta", beta, cols);
  ::vitscale::detail::require_extents(fn, "y", y, {rows, cols});
  if (Centered || mean.size() != 0) ::vitscale::detail::require_extents(fn, "mean", mean, {rows});
  ::vitscale::detail::require_extents(fn, "rstd", rstd, {rows});
  if (cols == 0) ::vitscale::detail::fail(fn, ": x has no columns");
  if (!(eps > 0)) ::vitscale::detail::fail(fn, ": eps must be positive, it is ", eps);

  const int n = static_cast<int>(cols);
  const A inv_n = A(1) / static_cast<A>(n);
  const A epsilon = static_cast<A>(eps);
  const bool save_mean = mean.size() != 0;
  detail::for_each_row(space, "vitscale::layernorm_forward", rows,
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int i) {
    A m = 0;
    if (Centered) m = detail::row_sum<A>(member, n, [&](int j) { return static_cast<A>(x(i, j)); }) * inv_n;
    // Two passes (mean, then squared deviations) rather than E[x²] − E[x]², which cancels badly.
    const A ss = detail::row_sum<A>(member, n, [&](int j) {
      const A d = static_cast<A>(x(i, j)) - m;
      return d * d;
    });
    const A r = A(1) / kmath::sqrt(ss * inv_n + epsilon);
    detail::row_for(member, n, [&](int j) {
      A v = (static_cast<A>(x(i, j)) - m) * r * static_cast<A>(gamma(j));
      if (Bias) v += static_cast<A>(beta(j));
      y(i, j) = detail::store_as<T>(v);
    });
    Kokkos::single(Kokkos::PerTeam(member), [&] {
      if (save_mean) mean(i) = m;
      rstd(i) = r;
    });
  });
}

// x, dy: [rows, D], gamma: [D], mean, rstd: [rows] (from the forward) -> dx: [rows, D],
// dgamma: [D], dbeta: [D] (empty without Bias), overwritten; workspace: layernorm_backward_workspace<Bias>.
template <bool Centered, bool Bias, class ExecSpace, class X, class Gamma, class Mean, class Rstd, class DY,
          class DX, class DGamma, class DBeta, class Workspace>
void layernorm_backward(const ExecSpace& space, const X& x, const Gamma& gamma, const Mean& mean,
                        const Rstd& rstd, const DY& dy, const DX& dx, const DGamma& dgamma, const DBeta& dbeta,
                        const Workspace& workspace) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<DX>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2> && detail::is_input_view_v<ExecSpace, DY, 2>,
                "layernorm_backward: x and dy must be rank-2 Views");
  static_assert(detail::is_input_view_v<ExecSpace, Gamma, 1>, "layernorm_backward: gamma must be a rank-1 View");
  static_assert(detail::is_input_view_v<ExecSpace, Mean, 1> && detail::is_input_view_v<ExecSpace, Rstd, 1>,
                "layernorm_backward: mean and rstd must be rank-1 Views");
  static_assert(detail::is_output_view_v<ExecSpace, DX, 2>, "layernorm_backward: dx must be a writable rank-2 View");
  static_assert(detail::is_output_view_v<ExecSpace, DGamma, 1> && detail::is_output_view_v<ExecSpace, DBeta, 1>,
                "layernorm_backward: dgamma and dbeta must be writable rank-1 Views");
  static_assert(detail::is_accum_view_v<ExecSpace, Workspace, 2, A>,
                "layernorm_backward: workspace must be a writable rank-2 View of float (double for double x)");
  constexpr const char* fn = "layernorm_backward";
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents(fn, "gamma", gamma, {cols});
  if (Centered || mean.size() != 0) ::vitscale::detail::require_extents(fn, "mean", mean, {rows});
  ::vitscale::detail::require_extents(fn, "rstd", rstd, {rows});
  ::vitscale::detail::require_extents(fn, "dy", dy, {rows, cols});
  ::vitscale::detail::require_extents(fn, "dx", dx, {rows, cols});
  ::vitscale::detail::require_extents(fn, "dgamma", dgamma, {cols});
  detail::check_layernorm_bias<Bias, ExecSpace>(fn, "dbeta", dbeta, cols);
  const auto ws = layernorm_backward_workspace<Bias>(rows, cols);
  ::vitscale::detail::require_extents(fn, "workspace", workspace, {ws.chunks, ws.cols});
  if (cols == 0) ::vitscale::detail::fail(fn, ": x has no columns");

  const int n = static_cast<int>(cols);
  const std::size_t chunks = ws.chunks;
  const A inv_n = A(1) / static_cast<A>(n);
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  // One team per chunk of rows: it writes dx row by row and keeps the chunk's dγ, dβ partial sums in its
  // row of the workspace (column j always handled by the same thread, so no two threads share a sum).
  Kokkos::parallel_for(
      "vitscale::layernorm_backward", policy(space, static_cast<int>(chunks), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) {
        const std::size_t c = static_cast<std::size_t>(member.league_rank());
        const int r0 = static_cast<int>(detail::grad_chunk_begin(c, rows, chunks));
        const int r1 = static_cast<int>(detail::grad_chunk_begin(c + 1, rows, chunks));
        detail::row_for(member, n, [&](int j) {
          workspace(c, j) = 0;
          if (Bias) workspace(c, n + j) = 0;
        });
        member.team_barrier();
        for (int i = r0; i < r1; ++i) {
          const A m = Centered ? static_cast<A>(mean(i)) : A(0);
          const A r = static_cast<A>(rstd(i));
          // dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ; without centering the mean(g) term goes.
          A sum_g = 0;
          if (Centered)
            sum_g = detail::row_sum<A>(member, n,
                                       [&](int j) { return static_cast<A>(dy(i, j)) * static_cast<A>(gamma(j)); });
          const A sum_gx = detail::row_sum<A>(member, n, [&](int j) {
            return static_cast<A>(dy(i, j)) * static_cast<A>(gamma(j)) * ((static_cast<A>(x(i, j)) - m) * r);
          });
          const A mean_g = sum_g * inv_n, mean_gx = sum_gx * inv_n;
          if (detail::contiguous_rows_v<X, Gamma, DY, DX, Workspace>) {
            if (member.team_size() == 1) {  // host: plain pointers, so the loop vectorizes
              const auto* xr = &x(i, 0);
              const auto* dyr = &dy(i, 0);
              const auto* gr = &gamma(0);
              auto* dxr = &dx(i, 0);
              A* wg = &workspace(c, 0);
              // Two loops (x̂ recomputed), each with few enough streams that the compiler's run-time
              // alias checks between them stay within its limit.
              for (int j = 0; j < n; ++j) {
                const A xhat = (static_cast<A>(xr[j]) - m) * r;
                const A g = static_cast<A>(dyr[j]) * static_cast<A>(gr[j]);
                dxr[j] = detail::store_as<T>(r * (g - mean_g - xhat * mean_gx));
              }
              for (int j = 0; j < n; ++j) {
                const A d = static_cast<A>(dyr[j]);
                wg[j] += d * ((static_cast<A>(xr[j]) - m) * r);
                if (Bias) wg[n + j] += d;
              }
              continue;
            }
          }
          detail::row_for(member, n, [&](int j) {
            const A xhat = (static_cast<A>(x(i, j)) - m) * r;
            const A d = static_cast<A>(dy(i, j));
            const A g = d * static_cast<A>(gamma(j));
            dx(i, j) = detail::store_as<T>(r * (g - mean_g - xhat * mean_gx));
            workspace(c, j) += d * xhat;
            if (Bias) workspace(c, n + j) += d;
          });
        }
      });
  detail::sum_chunks(space, "vitscale::layernorm_backward_dgamma", workspace, chunks, 0, dgamma);
  if constexpr (Bias) detail::sum_chunks(space, "vitscale::layernorm_backward_dbeta", workspace, chunks, cols, dbeta);
}

}  // namespace vitscale::kernels
