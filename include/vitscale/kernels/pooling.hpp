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
  detail::for_each_element(space, "vitscale::token_mean_pool_forward", batch, cols, KOKKOS_LAMBDA(int b, int j) {
    A sum = 0;
    for (int t = t0; t < n; ++t) sum += static_cast<A>(x(b, t, j));
    y(b, j) = detail::store_as<T>(sum * inv_count);
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
                         detail::row_for(member, d, [&](int j) {
                           dx(b, t, j) = detail::store_as<T>(t < t0 ? A(0) : static_cast<A>(dy(b, j)) * inv_count);
                         });
                       });
}

}  // namespace vitscale::kernels
