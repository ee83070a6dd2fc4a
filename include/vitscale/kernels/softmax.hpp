#pragma once
// Softmax over the last dimension, forward and backward.
//
// The forward subtracts the row maximum before exponentiating, so no finite input overflows; the row sum is
// at least 1 and never underflows. The backward needs only the forward's output:
// dx = y ∘ (dy − Σ_j dy_j·y_j). Storage float or bf16 (double for checks); arithmetic in float.

#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <cstddef>
#include <type_traits>

namespace vitscale::kernels {

// x: [rows, D] -> y: [rows, D], y(i, :) = softmax(x(i, :))  (y may be x itself)
template <class ExecSpace, class X, class Y>
void softmax_forward(const ExecSpace& space, const X& x, const Y& y) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2>, "softmax_forward: x must be a rank-2 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 2>, "softmax_forward: y must be a writable rank-2 View");
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents("softmax_forward", "y", y, {rows, cols});
  if (cols == 0) ::vitscale::detail::fail("softmax_forward: x has no columns");
  const int n = static_cast<int>(cols);
  detail::for_each_row(
      space, "vitscale::softmax_forward", rows, KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int i) {
        const A peak = detail::row_max<A>(member, n, [&](int j) { return static_cast<A>(x(i, j)); });
        if (std::is_same<T, A>::value) {
          // Output in the accumulation type: the exponentials go into y as they are summed, then y is
          // scaled in place (one exp per element, and the same values as computing them twice). Each
          // element's x is read before its own y is written, so an in-place y is safe.
          const A sum = detail::row_sum<A>(member, n, [&](int j) {
            const A v = detail::exp(static_cast<A>(x(i, j)) - peak);
            y(i, j) = v;
            return v;
          });
          const A inv_sum = A(1) / sum;
          member.team_barrier();
          detail::row_for(member, n, [&](int j) { y(i, j) *= inv_sum; });
        } else {
          // bf16 output: the exponentials are recomputed rather than stored, so that y is rounded once.
          const A sum =
              detail::row_sum<A>(member, n, [&](int j) { return detail::exp(static_cast<A>(x(i, j)) - peak); });
          const A inv_sum = A(1) / sum;
          // Every thread has read its x(i, j) twice already; the barrier keeps an in-place y from
          // overwriting an x another thread of the team still has to read in the reductions above.
          member.team_barrier();
          detail::row_for(member, n, [&](int j) {
            y(i, j) = detail::store_as<T>(detail::exp(static_cast<A>(x(i, j)) - peak) * inv_sum);
          });
        }
      });
}

// y, dy: [rows, D] -> dx: [rows, D] = y ∘ (dy − rowsum(dy ∘ y))  (dx may be dy itself)
template <class ExecSpace, class Y, class DY, class DX>
void softmax_backward(const ExecSpace& space, const Y& y, const DY& dy, const DX& dx) {
  using A = detail::accum_t<typename Y::value_type>;
  using T = detail::value_t<DX>;
  static_assert(detail::is_input_view_v<ExecSpace, Y, 2> && detail::is_input_view_v<ExecSpace, DY, 2>,
                "softmax_backward: y and dy must be rank-2 Views");
  static_assert(detail::is_output_view_v<ExecSpace, DX, 2>, "softmax_backward: dx must be a writable rank-2 View");
  const std::size_t rows = y.extent(0), cols = y.extent(1);
  ::vitscale::detail::require_extents("softmax_backward", "dy", dy, {rows, cols});
  ::vitscale::detail::require_extents("softmax_backward", "dx", dx, {rows, cols});
  const int n = static_cast<int>(cols);
  detail::for_each_row(
      space, "vitscale::softmax_backward", rows, KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int i) {
        const A dot = detail::row_sum<A>(
            member, n, [&](int j) { return static_cast<A>(dy(i, j)) * static_cast<A>(y(i, j)); });
        member.team_barrier();
        detail::row_for(member, n, [&](int j) {
          dx(i, j) = detail::store_as<T>(static_cast<A>(y(i, j)) * (static_cast<A>(dy(i, j)) - dot));
        });
      });
}

}  // namespace vitscale::kernels
