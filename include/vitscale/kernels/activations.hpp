#pragma once
// GELU, forward and backward, in its two forms (and ReLU, for squeeze-and-excitation's hidden layer):
//
//   gelu_kind::tanh  0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))   big_vision's nn.gelu, jax approximate=True
//   gelu_kind::erf   x·Φ(x) = 0.5·x·(1 + erf(x/√2))                  PyTorch's default, timm
//
// The kind is a compile-time argument. The backward works from the saved pre-activation (the MLP's first
// GEMM output), so the GELU output never has to be kept for it. The bias forms fuse the first MLP layer's
// bias into the activation (y = gelu(x + b)), saving a pass over the [rows, D] tensor; their backward
// recomputes x + b and returns the bias gradient, reduced over rows in a fixed order without atomics.
//
// Storage float or bf16 (double for gradient checks); arithmetic in float, with core/fast_math's exp and erf.

#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <cstddef>
#include <type_traits>

namespace vitscale::kernels {

enum class gelu_kind { tanh, erf };

// gelu(x) of the given kind, in the accumulation type A. In float, the tanh form is evaluated as
// x·σ(2u) = x/(1 + e^{−2u}) (the same function: (1 + tanh u)/2 = σ(2u)), which has no cancellation in the
// negative tail, and exp/erf are core/fast_math's (a few ulp); double uses the library functions.
template <gelu_kind Kind, class A>
KOKKOS_INLINE_FUNCTION A gelu(A x) {
  if constexpr (Kind == gelu_kind::tanh) {
    const A k = static_cast<A>(0.7978845608028654);  // sqrt(2/π)
    const A u = k * (x + static_cast<A>(0.044715) * x * x * x);
    if constexpr (std::is_same<A, float>::value) {
      return x / (1.0f + fast::exp(-2.0f * u));
    } else {
      return A(0.5) * x * (A(1) + kmath::tanh(u));
    }
  } else {
    return A(0.5) * x * (A(1) + detail::erf(x * static_cast<A>(0.7071067811865476)));
  }
}

// d gelu(x) / dx of the given kind.
template <gelu_kind Kind, class A>
KOKKOS_INLINE_FUNCTION A gelu_derivative(A x) {
  if constexpr (Kind == gelu_kind::tanh) {
    const A k = static_cast<A>(0.7978845608028654);
    const A c = static_cast<A>(0.044715);
    if constexpr (std::is_same<A, float>::value) {
      // With s = σ(2u): (1 + t)/2 = s and (1 − t²)/2 = 2·s·(1 − s), where 1 − s = e^{−2u}·s is computed
      // without cancellation. u is kept above −40 so e^{−2u} stays finite (s and 1 − s are then exact to
      // float precision anyway), and the polynomial factor uses x clamped to ±10, beyond which the second
      // term is below 1e−30: no inf·0 for huge |x|. Comparisons written so that NaN passes through.
      const float u = k * (x + c * x * x * x);
      const float e = fast::exp(-2.0f * fast::detail::select(u < -40.0f, -40.0f, u));
      const float s = 1.0f / (1.0f + e);
      const float xc = fast::detail::select(x < -10.0f, -10.0f, fast::detail::select(x > 10.0f, 10.0f, x));
      return s + 2.0f * xc * (s * (e * s)) * k * (1.0f + 3.0f * c * xc * xc);
    } else {
      const A t = kmath::tanh(k * (x + c * x * x * x));
      return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * k * (A(1) + A(3) * c * x * x);
    }
  } else {
    const A cdf = A(0.5) * (A(1) + detail::erf(x * static_cast<A>(0.7071067811865476)));
    const A pdf = static_cast<A>(0.3989422804014327) * detail::exp(A(-0.5) * x * x);  // 1/sqrt(2π)·e^(−x²/2)
    return cdf + x * pdf;
  }
}

// x: [rows, D] -> y: [rows, D] = max(x, 0)  (squeeze-and-excitation's hidden layer; NaN passes through)
template <class ExecSpace, class X, class Y>
void relu_forward(const ExecSpace& space, const X& x, const Y& y) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2>, "relu_forward: x must be a rank-2 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 2>, "relu_forward: y must be a writable rank-2 View");
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents("relu_forward", "y", y, {rows, cols});
  detail::for_each_element(space, "vitscale::relu_forward", rows, cols, KOKKOS_LAMBDA(int i, int j) {
    const A v = static_cast<A>(x(i, j));
    y(i, j) = detail::store_as<T>(v < A(0) ? A(0) : v);
  });
}

// x, dy: [rows, D] -> dx: [rows, D] = dy where x > 0, else 0  (dx may be dy itself; x may be relu's output)
template <class ExecSpace, class X, class DY, class DX>
void relu_backward(const ExecSpace& space, const X& x, const DY& dy, const DX& dx) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<DX>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2> && detail::is_input_view_v<ExecSpace, DY, 2>,
                "relu_backward: x and dy must be rank-2 Views");
  static_assert(detail::is_output_view_v<ExecSpace, DX, 2>, "relu_backward: dx must be a writable rank-2 View");
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents("relu_backward", "dy", dy, {rows, cols});
  ::vitscale::detail::require_extents("relu_backward", "dx", dx, {rows, cols});
  detail::for_each_element(space, "vitscale::relu_backward", rows, cols, KOKKOS_LAMBDA(int i, int j) {
    dx(i, j) = detail::store_as<T>(static_cast<A>(x(i, j)) > A(0) ? static_cast<A>(dy(i, j)) : A(0));
  });
}

// Shape of the workspace gelu_bias_backward needs: [chunks, cols].
inline grad_workspace_shape gelu_bias_backward_workspace(std::size_t rows, std::size_t cols) {
  return {detail::grad_chunk_count(rows), cols};
}

// x: [rows, D] -> y: [rows, D] = scale·gelu(x)  (NFNet's γ-scaled GELU takes scale = γ·β; 1 elsewhere)
template <gelu_kind Kind, class ExecSpace, class X, class Y>
void gelu_forward(const ExecSpace& space, const X& x, const Y& y, float scale = 1.0f) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2>, "gelu_forward: x must be a rank-2 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 2>, "gelu_forward: y must be a writable rank-2 View");
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents("gelu_forward", "y", y, {rows, cols});
  if (scale == 1.0f) {  // kept apart so that the ViT's GELU stays bit-identical to what it was
    detail::for_each_element(space, "vitscale::gelu_forward", rows, cols, KOKKOS_LAMBDA(int i, int j) {
      y(i, j) = detail::store_as<T>(gelu<Kind>(static_cast<A>(x(i, j))));
    });
  } else {
    const A s = static_cast<A>(scale);
    detail::for_each_element(space, "vitscale::gelu_forward_scaled", rows, cols, KOKKOS_LAMBDA(int i, int j) {
      y(i, j) = detail::store_as<T>(s * gelu<Kind>(static_cast<A>(x(i, j))));
    });
  }
}

// x: [rows, D], bias: [D] -> y: [rows, D] = gelu(x + bias)
template <gelu_kind Kind, class ExecSpace, class X, class Bias, class Y>
void gelu_bias_forward(const ExecSpace& space, const X& x, const Bias& bias, const Y& y) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2>, "gelu_bias_forward: x must be a rank-2 View");
  static_assert(detail::is_input_view_v<ExecSpace, Bias, 1>, "gelu_bias_forward: bias must be a rank-1 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 2>, "gelu_bias_forward: y must be a writable rank-2 View");
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents("gelu_bias_forward", "bias", bias, {cols});
  ::vitscale::detail::require_extents("gelu_bias_forward", "y", y, {rows, cols});
  detail::for_each_element(space, "vitscale::gelu_bias_forward", rows, cols, KOKKOS_LAMBDA(int i, int j) {
    y(i, j) = detail::store_as<T>(gelu<Kind>(static_cast<A>(x(i, j)) + static_cast<A>(bias(j))));
  });
}

// x, dy: [rows, D] -> dx: [rows, D] = dy·scale·gelu'(x)  (dx may be dy itself)
template <gelu_kind Kind, class ExecSpace, class X, class DY, class DX>
void gelu_backward(const ExecSpace& space, const X& x, const DY& dy, const DX& dx, float scale = 1.0f) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<DX>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2> && detail::is_input_view_v<ExecSpace, DY, 2>,
                "gelu_backward: x and dy must be rank-2 Views");
  static_assert(detail::is_output_view_v<ExecSpace, DX, 2>, "gelu_backward: dx must be a writable rank-2 View");
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents("gelu_backward", "dy", dy, {rows, cols});
  ::vitscale::detail::require_extents("gelu_backward", "dx", dx, {rows, cols});
  if (scale == 1.0f) {
    detail::for_each_element(space, "vitscale::gelu_backward", rows, cols, KOKKOS_LAMBDA(int i, int j) {
      dx(i, j) = detail::store_as<T>(static_cast<A>(dy(i, j)) * gelu_derivative<Kind>(static_cast<A>(x(i, j))));
    });
  } else {
    const A s = static_cast<A>(scale);
    detail::for_each_element(space, "vitscale::gelu_backward_scaled", rows, cols, KOKKOS_LAMBDA(int i, int j) {
      dx(i, j) = detail::store_as<T>(s * static_cast<A>(dy(i, j)) * gelu_derivative<Kind>(static_cast<A>(x(i, j))));
    });
  }
}

// x, dy: [rows, D], bias: [D] -> dx: [rows, D] = dy·gelu'(x + bias) (dx may be dy itself),
// dbias: [D] = Σ_rows dx, overwritten; workspace: gelu_bias_backward_workspace(rows, D)
template <gelu_kind Kind, class ExecSpace, class X, class Bias, class DY, class DX, class DBias, class Workspace>
void gelu_bias_backward(const ExecSpace& space, const X& x, const Bias& bias, const DY& dy, const DX& dx,
                        const DBias& dbias, const Workspace& workspace) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<DX>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 2> && detail::is_input_view_v<ExecSpace, DY, 2>,
                "gelu_bias_backward: x and dy must be rank-2 Views");
  static_assert(detail::is_input_view_v<ExecSpace, Bias, 1>, "gelu_bias_backward: bias must be a rank-1 View");
  static_assert(detail::is_output_view_v<ExecSpace, DX, 2>, "gelu_bias_backward: dx must be a writable rank-2 View");
  static_assert(detail::is_output_view_v<ExecSpace, DBias, 1>,
                "gelu_bias_backward: dbias must be a writable rank-1 View");
  static_assert(detail::is_accum_view_v<ExecSpace, Workspace, 2, A>,
                "gelu_bias_backward: workspace must be a writable rank-2 View of float (double for double x)");
  constexpr const char* fn = "gelu_bias_backward";
  const std::size_t rows = x.extent(0), cols = x.extent(1);
  ::vitscale::detail::require_extents(fn, "bias", bias, {cols});
  ::vitscale::detail::require_extents(fn, "dy", dy, {rows, cols});
  ::vitscale::detail::require_extents(fn, "dx", dx, {rows, cols});
  ::vitscale::detail::require_extents(fn, "dbias", dbias, {cols});
  const auto ws = gelu_bias_backward_workspace(rows, cols);
  ::vitscale::detail::require_extents(fn, "workspace", workspace, {ws.chunks, ws.cols});

  const int n = static_cast<int>(cols);
  const std::size_t chunks = ws.chunks;
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  // One team per chunk of rows; column j of the chunk's partial bias gradient belongs to one thread.
  Kokkos::parallel_for(
      "vitscale::gelu_bias_backward", policy(space, static_cast<int>(chunks), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) {
        const std::size_t c = static_cast<std::size_t>(member.league_rank());
        const int r0 = static_cast<int>(detail::grad_chunk_begin(c, rows, chunks));
        const int r1 = static_cast<int>(detail::grad_chunk_begin(c + 1, rows, chunks));
        // Rows outer, columns inner: memory is read in order; the partial sums stay in the workspace row.
        detail::row_for(member, n, [&](int j) { workspace(c, j) = 0; });
        member.team_barrier();
        for (int i = r0; i < r1; ++i) {
          detail::row_for(member, n, [&](int j) {
            const A d = static_cast<A>(dy(i, j)) * gelu_derivative<Kind>(static_cast<A>(x(i, j)) +
                                                                         static_cast<A>(bias(j)));
            dx(i, j) = detail::store_as<T>(d);
            workspace(c, j) += d;
          });
        }
      });
  detail::sum_chunks(space, "vitscale::gelu_bias_backward_dbias", workspace, chunks, 0, dbias);
}

}  // namespace vitscale::kernels
