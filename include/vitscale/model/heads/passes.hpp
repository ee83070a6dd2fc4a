#pragma once
// The small passes of the model's head: the class token's row, the tanh of big_vision's pre-logits layer,
// and copying one row to every batch element (the MAP probe's query).

#include <vitscale/kernels/detail/elementwise_common.hpp>

namespace vitscale::model_detail {

// x: [B, N, D] -> y: [B, D] = x(:, token, :)
template <class ExecSpace, class X, class Y>
void select_token(const ExecSpace& space, const X& x, int token, const Y& y) {
  using T = typename Y::non_const_value_type;
  const int d = static_cast<int>(x.extent(2));
  kernels::detail::for_each_row(space, "vitscale::select_token", x.extent(0),
                                KOKKOS_LAMBDA(const kernels::detail::team_member<ExecSpace>& member, int b) {
                                  kernels::detail::row_for(member, d, [&](int j) {
                                    y(b, j) = kernels::detail::store_as<T>(static_cast<float>(x(b, token, j)));
                                  });
                                });
}

// dy: [B, D] -> dx: [B, N, D] = dy on row `token`, 0 elsewhere
template <class ExecSpace, class DY, class DX>
void select_token_backward(const ExecSpace& space, const DY& dy, int token, const DX& dx) {
  using T = typename DX::non_const_value_type;
  const int n = static_cast<int>(dx.extent(1)), d = static_cast<int>(dx.extent(2));
  kernels::detail::for_each_row(space, "vitscale::select_token_backward", dx.extent(0) * dx.extent(1),
                                KOKKOS_LAMBDA(const kernels::detail::team_member<ExecSpace>& member, int row) {
                                  const int b = row / n, t = row % n;
                                  kernels::detail::row_for(member, d, [&](int j) {
                                    dx(b, t, j) = kernels::detail::store_as<T>(
                                        t == token ? static_cast<float>(dy(b, j)) : 0.0f);
                                  });
                                });
}

// y: [rows, D] = tanh(y), in place
template <class ExecSpace, class Y>
void tanh_inplace(const ExecSpace& space, const Y& y) {
  using T = typename Y::non_const_value_type;
  kernels::detail::for_each_element(space, "vitscale::tanh", y.extent(0), y.extent(1),
                                    KOKKOS_LAMBDA(int i, int j) {
                                      y(i, j) = kernels::detail::store_as<T>(
                                          ::vitscale::kmath::tanh(static_cast<float>(y(i, j))));
                                    });
}

// y = tanh(z), dy: [rows, D] -> dz = dy·(1 − y²), in place of dy
template <class ExecSpace, class Y, class DY>
void tanh_backward_inplace(const ExecSpace& space, const Y& y, const DY& dy) {
  using T = typename DY::non_const_value_type;
  kernels::detail::for_each_element(space, "vitscale::tanh_backward", y.extent(0), y.extent(1),
                                    KOKKOS_LAMBDA(int i, int j) {
                                      const float v = static_cast<float>(y(i, j));
                                      dy(i, j) = kernels::detail::store_as<T>(static_cast<float>(dy(i, j)) *
                                                                             (1.0f - v * v));
                                    });
}

// row: [D] -> y: [B, D], every row a copy of `row` (converted to y's type)
template <class ExecSpace, class Row, class Y>
void broadcast_row(const ExecSpace& space, const Row& row, const Y& y) {
  using T = typename Y::non_const_value_type;
  kernels::detail::for_each_element(space, "vitscale::broadcast_row", y.extent(0), y.extent(1),
                                    KOKKOS_LAMBDA(int i, int j) {
                                      y(i, j) = kernels::detail::store_as<T>(static_cast<float>(row(j)));
                                    });
}

// x: [rows, D] -> y: [rows, D], converted to y's type (the loss gradient into the activation type)
template <class ExecSpace, class X, class Y>
void convert_rows(const ExecSpace& space, const X& x, const Y& y) {
  using T = typename Y::non_const_value_type;
  kernels::detail::for_each_element(space, "vitscale::convert_rows", y.extent(0), y.extent(1),
                                    KOKKOS_LAMBDA(int i, int j) {
                                      y(i, j) = kernels::detail::store_as<T>(static_cast<float>(x(i, j)));
                                    });
}

// prefix: [n], out: [m >= n] -> out = [prefix | 0 ...] (the parallel block's input-product bias when only
// the MLP part of it has one)
template <class ExecSpace, class Prefix, class Out>
void zero_extend(const ExecSpace& space, const Prefix& prefix, const Out& out) {
  using T = typename Out::non_const_value_type;
  const std::size_t n = prefix.extent(0);
  Kokkos::parallel_for(
      "vitscale::zero_extend", Kokkos::RangePolicy<ExecSpace>(space, 0, out.extent(0)), KOKKOS_LAMBDA(std::size_t j) {
        out(j) = kernels::detail::store_as<T>(j < n ? static_cast<float>(prefix(j)) : 0.0f);
      });
}

}  // namespace vitscale::model_detail
