#pragma once
// Column sums (the gradient of a bias shared by every row) and type conversion, the two small passes the
// model needs between its larger kernels.
//
// column_sum reduces rows in the fixed two-pass order of the other parameter gradients (rows cut into at
// most 64 contiguous chunks by their count alone, then the chunks added in order): bit-identical for any
// thread count, no atomics. Storage float or bf16 (double for checks); sums in float.

#include <vitscale/kernels/detail/elementwise_common.hpp>

namespace vitscale::kernels {

// Shape of the workspace column_sum needs: [chunks, cols] of float.
inline grad_workspace_shape column_sum_workspace(std::size_t rows, std::size_t cols) {
  return {detail::grad_chunk_count(rows), cols};
}

// x: [rows, D] -> y: [D] = Σ_rows x, overwritten; workspace: column_sum_workspace(rows, D)
template <class ExecSpace, class X, class Y, class Workspace>
void column_sum(const ExecSpace& space, const X& x, const Y& y, const Workspace& workspace) {
  using A = detail::accum_t<typename X::value_type>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2>, "column_sum: x must be a rank-2 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 1>, "column_sum: y must be a writable rank-1 View");
  static_assert(detail::is_accum_view_v<ExecSpace, Workspace, 2, A>,
                "column_sum: workspace must be a writable rank-2 View of float (double for double x)");
  constexpr const char* fn = "column_sum";
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents(fn, "y", y, {cols});
  const auto ws = column_sum_workspace(rows, cols);
  if (workspace.extent(0) < ws.chunks || workspace.extent(1) < ws.cols)
    ::vitscale::detail::fail(fn, ": workspace is ", ::vitscale::detail::extents_string(workspace),
                             ", at least [", ws.chunks, ", ", ws.cols, "] is needed");
  const std::size_t chunks = ws.chunks;
  const int n = static_cast<int>(cols);
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  Kokkos::parallel_for(
      "vitscale::column_sum_chunks", policy(space, static_cast<int>(chunks), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) {
        const std::size_t c = static_cast<std::size_t>(member.league_rank());
        const std::size_t begin = detail::grad_chunk_begin(c, rows, chunks);
        const std::size_t end = detail::grad_chunk_begin(c + 1, rows, chunks);
        detail::row_for(member, n, [&](int j) { workspace(c, j) = A(0); });
        for (std::size_t i = begin; i < end; ++i)
          detail::row_for(member, n, [&](int j) { workspace(c, j) += static_cast<A>(x(i, j)); });
      });
  detail::sum_chunks(space, "vitscale::column_sum", workspace, chunks, 0, y);
}

// x: [n] -> y: [n] = x converted (rounded to nearest even into bf16, widened into float)
template <class ExecSpace, class X, class Y>
void convert(const ExecSpace& space, const X& x, const Y& y) {
  using T = detail::value_t<Y>;
  using A = detail::accum_t<typename X::value_type>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 1>, "convert: x must be a rank-1 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 1>, "convert: y must be a writable rank-1 View");
  ::vitscale::detail::require_extents("convert", "y", y, {x.extent(0)});
  Kokkos::parallel_for(
      "vitscale::convert", Kokkos::RangePolicy<ExecSpace>(space, 0, x.extent(0)),
      KOKKOS_LAMBDA(std::size_t i) { y(i) = detail::store_as<T>(static_cast<A>(x(i))); });
}

}  // namespace vitscale::kernels
