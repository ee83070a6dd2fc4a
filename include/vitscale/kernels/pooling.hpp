#pragma once
// Average pooling, forward and backward:
// - over tokens (the GAP head of AugReg and big_vision's pool_type='gap'; an NHWC image [B, H, W, C] is the
//   same thing as [B, H·W, C] tokens, so this is also a ConvNet's global pooling). Prefix tokens (a class
//   token, registers) are skipped: tokens [first, N) are averaged.
// - over windows of an NHWC image (avg_pool2d): PyTorch's AvgPool2d(window, stride, padding=0,
//   ceil_mode=True, count_include_pad=False), which NFNet's downsampling shortcut uses (timm's DownsampleAvg,
//   window = stride = 2): a last window that hangs over the edge is kept and averages what it covers.
// Storage float or bf16 (double for checks); sums in float, in a fixed order.

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

// Output extent of avg_pool2d along one axis of `in` pixels: ceil((in − window)/stride) + 1, less one where the
// last window would start past the input (PyTorch's ceil_mode rule).
constexpr int avg_pool2d_out(int in, int window, int stride) {
  const int span = in - window;
  const int out = (span >= 0 ? (span + stride - 1) / stride : -((-span) / stride)) + 1;
  return (out - 1) * stride >= in ? out - 1 : out;
}

namespace detail {
template <class Small, class Large>
void check_avg_pool2d(const char* fn, const char* small_name, const Small& small, const Large& large, int window,
                      int stride) {
  if (window < 1 || stride < 1)
    ::vitscale::detail::fail(fn, ": window and stride must be positive, they are ", window, " and ", stride);
  if (large.extent(1) == 0 || large.extent(2) == 0)
    ::vitscale::detail::fail(fn, ": the image is empty (", large.extent(1), "x", large.extent(2), ")");
  const int ho = avg_pool2d_out(static_cast<int>(large.extent(1)), window, stride);
  const int wo = avg_pool2d_out(static_cast<int>(large.extent(2)), window, stride);
  ::vitscale::detail::require_extents(fn, small_name, small,
                                      {large.extent(0), std::size_t(ho), std::size_t(wo), large.extent(3)});
}
}  // namespace detail

// x: [B, H, W, C] -> y: [B, Ho, Wo, C], Ho = avg_pool2d_out(H, window, stride): the mean of each window's pixels
// inside the image
template <class ExecSpace, class X, class Y>
void avg_pool2d_forward(const ExecSpace& space, int window, int stride, const X& x, const Y& y) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 4>, "avg_pool2d_forward: x must be a rank-4 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 4>, "avg_pool2d_forward: y must be a writable rank-4 View");
  detail::check_avg_pool2d("avg_pool2d_forward", "y", y, x, window, stride);
  const int h = static_cast<int>(x.extent(1)), w = static_cast<int>(x.extent(2)), c = static_cast<int>(x.extent(3));
  const int ho = static_cast<int>(y.extent(1)), wo = static_cast<int>(y.extent(2));
  detail::for_each_row(space, "vitscale::avg_pool2d_forward", y.extent(0) * y.extent(1) * y.extent(2),
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int row) {
    const int b = row / (ho * wo), i = row / wo % ho, j = row % wo;
    const int i0 = i * stride, j0 = j * stride;
    const int i1 = i0 + window < h ? i0 + window : h, j1 = j0 + window < w ? j0 + window : w;
    const A inv_count = A(1) / static_cast<A>((i1 - i0) * (j1 - j0));
    detail::row_for(member, c, [&](int ch) {
      A sum = 0;
      for (int u = i0; u < i1; ++u)
        for (int v = j0; v < j1; ++v) sum += static_cast<A>(x(b, u, v, ch));
      y(b, i, j, ch) = detail::store_as<T>(sum * inv_count);
    });
  });
}

// dy: [B, Ho, Wo, C] -> dx: [B, H, W, C]: each pixel gets dy/count of every window that covers it (overwritten)
template <class ExecSpace, class DY, class DX>
void avg_pool2d_backward(const ExecSpace& space, int window, int stride, const DY& dy, const DX& dx) {
  using A = detail::accum_t<typename DY::value_type>;
  using T = detail::value_t<DX>;
  static_assert(detail::is_input_view_v<ExecSpace, DY, 4>, "avg_pool2d_backward: dy must be a rank-4 View");
  static_assert(detail::is_output_view_v<ExecSpace, DX, 4>, "avg_pool2d_backward: dx must be a writable rank-4 View");
  detail::check_avg_pool2d("avg_pool2d_backward", "dy", dy, dx, window, stride);
  const int h = static_cast<int>(dx.extent(1)), w = static_cast<int>(dx.extent(2)), c = static_cast<int>(dx.extent(3));
  const int ho = static_cast<int>(dy.extent(1)), wo = static_cast<int>(dy.extent(2));
  // A gather (each input pixel sums the windows that cover it, in window order): no atomics.
  detail::for_each_row(space, "vitscale::avg_pool2d_backward", dx.extent(0) * dx.extent(1) * dx.extent(2),
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int row) {
    const int b = row / (h * w), u = row / w % h, v = row % w;
    // Windows i with i·stride ≤ u < i·stride + window.
    const int ia = u - window + 1 <= 0 ? 0 : (u - window + 1 + stride - 1) / stride;
    const int ib = u / stride < ho - 1 ? u / stride : ho - 1;
    const int ja = v - window + 1 <= 0 ? 0 : (v - window + 1 + stride - 1) / stride;
    const int jb = v / stride < wo - 1 ? v / stride : wo - 1;
    detail::row_for(member, c, [&](int ch) {
      A sum = 0;
      for (int i = ia; i <= ib; ++i) {
        const int i0 = i * stride, i1 = i0 + window < h ? i0 + window : h;
        for (int j = ja; j <= jb; ++j) {
          const int j0 = j * stride, j1 = j0 + window < w ? j0 + window : w;
          sum += static_cast<A>(dy(b, i, j, ch)) / static_cast<A>((i1 - i0) * (j1 - j0));
        }
      }
      dx(b, u, v, ch) = detail::store_as<T>(sum);
    });
  });
}

}  // namespace vitscale::kernels
