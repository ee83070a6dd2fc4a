#pragma once
// Residual connections: y = x + r, and the in-place x += r.
//
// The backward of y = x + r hands dy unchanged to both branches, so it needs no kernel of its own: where
// the two gradients meet again (the residual stream), the branch's gradient is added with
// residual_accumulate(dx_stream, dx_branch). The sum is taken in float and rounded once into the storage
// type (float or bf16; double for checks); x, r and y may have different storage types.

#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <cstddef>

namespace vitscale::kernels {

// x, r: [rows, D] -> y: [rows, D] = x + r  (y may be x or r itself)
template <class ExecSpace, class X, class R, class Y>
void residual_add(const ExecSpace& space, const X& x, const R& r, const Y& y) {
  using A = detail::accum_t<typename Y::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2> && detail::is_input_view_v<ExecSpace, R, 2>,
                "residual_add: x and r must be rank-2 Views");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 2>, "residual_add: y must be a writable rank-2 View");
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents("residual_add", "r", r, {rows, cols});
  ::vitscale::detail::require_extents("residual_add", "y", y, {rows, cols});
  detail::for_each_element(space, "vitscale::residual_add", rows, cols, KOKKOS_LAMBDA(int i, int j) {
    y(i, j) = detail::store_as<T>(static_cast<A>(x(i, j)) + static_cast<A>(r(i, j)));
  });
}

// x: [rows, D] += r: [rows, D]
template <class ExecSpace, class X, class R>
void residual_accumulate(const ExecSpace& space, const X& x, const R& r) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<X>;
  static_assert(detail::is_output_view_v<ExecSpace, X, 2>,
                "residual_accumulate: x must be a writable rank-2 View");
  static_assert(detail::is_input_view_v<ExecSpace, R, 2>, "residual_accumulate: r must be a rank-2 View");
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents("residual_accumulate", "r", r, {rows, cols});
  detail::for_each_element(space, "vitscale::residual_accumulate", rows, cols, KOKKOS_LAMBDA(int i, int j) {
    x(i, j) = detail::store_as<T>(static_cast<A>(x(i, j)) + static_cast<A>(r(i, j)));
  });
}

}  // namespace vitscale::kernels
