#pragma once
// Residual connections: y = x + r, and the in-place x += r; and NFNet's scaled residual y = x + α·g·r, with a
// learned scalar gain g (timm's NormFreeBlock: out·skipinit_gain·α + shortcut).
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

// Shape of the workspace scaled_residual_backward needs for `rows` rows: [chunks, 1].
inline grad_workspace_shape scaled_residual_backward_workspace(std::size_t rows) {
  return {detail::grad_chunk_count(rows), 1};
}

// x, r: [rows, D], gain: [1] (empty: 1) -> y: [rows, D] = x + alpha·gain(0)·r  (y may be x)
template <class ExecSpace, class X, class R, class Gain, class Y>
void scaled_residual_add(const ExecSpace& space, const X& x, const R& r, const Gain& gain, double alpha, const Y& y) {
  using A = detail::accum_t<typename Y::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2> && detail::is_input_view_v<ExecSpace, R, 2>,
                "scaled_residual_add: x and r must be rank-2 Views");
  static_assert(detail::is_input_view_v<ExecSpace, Gain, 1>, "scaled_residual_add: gain must be a rank-1 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 2>, "scaled_residual_add: y must be a writable rank-2 View");
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents("scaled_residual_add", "r", r, {rows, cols});
  ::vitscale::detail::require_extents("scaled_residual_add", "y", y, {rows, cols});
  if (gain.extent(0) > 1)
    ::vitscale::detail::fail("scaled_residual_add: gain must hold one element or none, it has ", gain.extent(0));
  const bool has_gain = gain.extent(0) == 1;
  const A a = static_cast<A>(alpha);
  detail::for_each_element(space, "vitscale::scaled_residual_add", rows, cols, KOKKOS_LAMBDA(int i, int j) {
    const A s = has_gain ? a * static_cast<A>(gain(0)) : a;
    y(i, j) = detail::store_as<T>(static_cast<A>(x(i, j)) + s * static_cast<A>(r(i, j)));
  });
}

// r, dy: [rows, D], gain: [1] (empty: 1) -> dr: [rows, D] = alpha·gain(0)·dy (dr may be dy),
// dgain: [1] = alpha·Σ dy·r (empty: skipped), overwritten; workspace: scaled_residual_backward_workspace(rows)
template <class ExecSpace, class R, class Gain, class DY, class DR, class DGain, class Workspace>
void scaled_residual_backward(const ExecSpace& space, const R& r, const Gain& gain, double alpha, const DY& dy,
                              const DR& dr, const DGain& dgain, const Workspace& workspace) {
  using A = detail::accum_t<typename R::value_type>;
  using T = detail::value_t<DR>;
  static_assert(detail::is_input_view_v<ExecSpace, R, 2> && detail::is_input_view_v<ExecSpace, DY, 2>,
                "scaled_residual_backward: r and dy must be rank-2 Views");
  static_assert(detail::is_input_view_v<ExecSpace, Gain, 1>, "scaled_residual_backward: gain must be a rank-1 View");
  static_assert(detail::is_output_view_v<ExecSpace, DR, 2> && detail::is_output_view_v<ExecSpace, DGain, 1>,
                "scaled_residual_backward: dr and dgain must be writable Views of rank 2 and 1");
  static_assert(detail::is_accum_view_v<ExecSpace, Workspace, 2, A>,
                "scaled_residual_backward: workspace must be a writable rank-2 View of float (double for double r)");
  constexpr const char* fn = "scaled_residual_backward";
  const std::size_t rows = r.extent(0), cols = r.extent(1);
  ::vitscale::detail::require_extents(fn, "dy", dy, {rows, cols});
  ::vitscale::detail::require_extents(fn, "dr", dr, {rows, cols});
  if (gain.extent(0) > 1 || dgain.extent(0) != gain.extent(0))
    ::vitscale::detail::fail(fn, ": gain and dgain must both hold one element or both none, they have ",
                             gain.extent(0), " and ", dgain.extent(0));
  const bool has_gain = gain.extent(0) == 1;
  const A a = static_cast<A>(alpha);
  if (has_gain) {  // first: dr may overwrite dy
    const auto ws = scaled_residual_backward_workspace(rows);
    ::vitscale::detail::require_extents(fn, "workspace", workspace, {ws.chunks, ws.cols});
    const std::size_t chunks = ws.chunks;
    const int n = static_cast<int>(cols);
    using policy = Kokkos::TeamPolicy<ExecSpace>;
    Kokkos::parallel_for(
        "vitscale::scaled_residual_backward_dgain", policy(space, static_cast<int>(chunks), Kokkos::AUTO),
        KOKKOS_LAMBDA(const typename policy::member_type& member) {
          const std::size_t c = static_cast<std::size_t>(member.league_rank());
          const std::size_t begin = detail::grad_chunk_begin(c, rows, chunks);
          const std::size_t end = detail::grad_chunk_begin(c + 1, rows, chunks);
          A sum = 0;
          for (std::size_t i = begin; i < end; ++i)
            sum += detail::row_sum<A>(member, n,
                                      [&](int j) { return static_cast<A>(dy(i, j)) * static_cast<A>(r(i, j)); });
          Kokkos::single(Kokkos::PerTeam(member), [&] { workspace(c, 0) = a * sum; });
        });
    detail::sum_chunks(space, "vitscale::scaled_residual_backward_sum", workspace, chunks, 0, dgain);
  }
  detail::for_each_element(space, "vitscale::scaled_residual_backward", rows, cols, KOKKOS_LAMBDA(int i, int j) {
    const A s = has_gain ? a * static_cast<A>(gain(0)) : a;
    dr(i, j) = detail::store_as<T>(s * static_cast<A>(dy(i, j)));
  });
}

}  // namespace vitscale::kernels
