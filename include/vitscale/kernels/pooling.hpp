#pragma once
// Global average pooling over tokens (the GAP head of AugReg and big_vision's pool_type='gap'), forward and
// backward. Prefix tokens (a class token, registers) are skipped: tokens [first, N) are averaged.
// Storage float or bf16 (double for checks); the sum over tokens in float, in token order.

#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <cstddef>

namespace vitscale::kernels {

namespace detail {
inline void check_pool_first(const char* function, std::size_t first, std::size_t tokens) {
  if (first >= tokens)
    ::vitscale::detail::fail(function, ": first pooled token ", first, " leaves no token to pool out of ", tokens);
}
}  // namespace detail

// x: [B, N, D] -> y: [B, D] = mean of x(b, first:N, :)
template <class ExecSpace, class X, class Y>
void token_mean_pool_forward(const ExecSpace& space, const X& x, std::size_t first, const Y& y) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 3>, "token_mean_pool_forward: x must be a rank-3 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 2>,
                "token_mean_pool_forward: y must be a writable rank-2 View");
  const std::size_t batch = x.extent(0), tokens = x.extent(1), cols = x.extent(2);
  detail::check_pool_first("token_mean_pool_forward", first, tokens);
  ::vitscale::detail::require_extents("token_mean_pool_forward", "y", y, {batch, cols});
  const int t0 = static_cast<int>(first), n = static_cast<int>(tokens);
  const A inv_count = A(1) / static_cast<A>(tokens - first);
  const int d = static_cast<int>(cols);
  detail::for_each_row(space, "vitscale::token_mean_pool_forward", batch,
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int b) {
    if (detail::contiguous_rows_v<X, Y> && member.team_size() == 1) {
      // Host: the sums of a chunk of columns stay in a small array while the tokens' rows stream past in
      // order, so memory is read contiguously and the inner loop vectorizes; the sum per column is still
      // taken in token order.
      constexpr int chunk = 256;
      for (int j0 = 0; j0 < d; j0 += chunk) {
        const int len = d - j0 < chunk ? d - j0 : chunk;
        A sum[chunk];
        for (int k = 0; k < len; ++k) sum[k] = 0;
        for (int t = t0; t < n; ++t) {
          const auto* xt = &x(b, t, j0);
          for (int k = 0; k < len; ++k) sum[k] += static_cast<A>(xt[k]);
        }
        auto* yb = &y(b, j0);
        for (int k = 0; k < len; ++k) yb[k] = detail::store_as<T>(sum[k] * inv_count);
      }
    } else {
      // Devices: a thread per column; neighbouring threads read neighbouring columns of each token.
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, d), [&](int j) {
        A sum = 0;
        for (int t = t0; t < n; ++t) sum += static_cast<A>(x(b, t, j));
        y(b, j) = detail::store_as<T>(sum * inv_count);
      });
    }
  });
}

// dy: [B, D] -> dx: [B, N, D] = dy/(N − first) on tokens first..N−1, 0 on the skipped prefix tokens
template <class ExecSpace, class DY, class DX>
void token_mean_pool_backward(const ExecSpace& space, const DY& dy, std::size_t first, const DX& dx) {
  using A = detail::accum_t<typename DY::value_type>;
  using T = detail::value_t<DX>;
  static_assert(detail::is_input_view_v<ExecSpace, DY, 2>, "token_mean_pool_backward: dy must be a rank-2 View");
  static_assert(detail::is_output_view_v<ExecSpace, DX, 3>,
                "token_mean_pool_backward: dx must be a writable rank-3 View");
  const std::size_t batch = dx.extent(0), tokens = dx.extent(1), cols = dx.extent(2);
  detail::check_pool_first("token_mean_pool_backward", first, tokens);
  ::vitscale::detail::require_extents("token_mean_pool_backward", "dy", dy, {batch, cols});
  const int t0 = static_cast<int>(first), n = static_cast<int>(tokens), d = static_cast<int>(cols);
  const A inv_count = A(1) / static_cast<A>(tokens - first);
  detail::for_each_row(space, "vitscale::token_mean_pool_backward", batch * tokens,
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int row) {
                         const int b = row / n, t = row % n;
                         if (detail::contiguous_rows_v<DY, DX>) {
                           if (member.team_size() == 1 && d > 0) {  // host: plain pointers, so the loop vectorizes
                             auto* out = &dx(b, t, 0);
                             const auto* in = &dy(b, 0);
                             if (t < t0)
                               for (int j = 0; j < d; ++j) out[j] = detail::store_as<T>(A(0));
                             else
                               for (int j = 0; j < d; ++j)
                                 out[j] = detail::store_as<T>(static_cast<A>(in[j]) * inv_count);
                             return;
                           }
                         }
                         if (t < t0)
                           detail::row_for(member, d, [&](int j) { dx(b, t, j) = detail::store_as<T>(A(0)); });
                         else
                           detail::row_for(member, d, [&](int j) {
                             dx(b, t, j) = detail::store_as<T>(static_cast<A>(dy(b, j)) * inv_count);
                           });
                       });
}

}  // namespace vitscale::kernels
