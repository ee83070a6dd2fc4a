#pragma once
// The gate of squeeze-and-excitation (Hu et al. 2018), as NFNet applies it after each block's last
// convolution: every channel of every image is scaled by a sigmoid of its excitation logit, times a constant
// gain (timm's NormFreeBlock: attn_gain · SEModule, attn_gain = 2, "to preserve the signal's variance"):
//
//   y(b, p, c) = gain · x(b, p, c) · σ(z(b, c))        x: [B, P, C] (P = H·W, NHWC), z: [B, C]
//
// Backward: dx = gain·dy·σ(z), dz(b, c) = gain·σ(z)·(1 − σ(z))·Σ_p dy(b, p, c)·x(b, p, c), the sum in position
// order. Storage float or bf16 (double for checks); arithmetic in float.

#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <cstddef>

namespace vitscale::kernels {

namespace detail {
template <class A>
KOKKOS_INLINE_FUNCTION A sigmoid(A z) {
  // 1/(1 + e^{−z}) for z ≥ 0, e^{z}/(1 + e^{z}) below: no overflow of e^{−z} for large negative z.
  if (z >= A(0)) return A(1) / (A(1) + exp(-z));
  const A e = exp(z);
  return e / (A(1) + e);
}
}  // namespace detail

// x: [B, P, C], z: [B, C] -> y: [B, P, C] = gain·x·σ(z)  (y may be x itself)
template <class ExecSpace, class X, class Z, class Y>
void channel_gate_forward(const ExecSpace& space, const X& x, const Z& z, double gain, const Y& y) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<Y>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 3>, "channel_gate_forward: x must be a rank-3 View");
  static_assert(detail::is_input_view_v<ExecSpace, Z, 2>, "channel_gate_forward: z must be a rank-2 View");
  static_assert(detail::is_output_view_v<ExecSpace, Y, 3>, "channel_gate_forward: y must be a writable rank-3 View");
  constexpr const char* fn = "channel_gate_forward";
  const std::size_t batch = x.extent(0), positions = x.extent(1), channels = x.extent(2);
  ::vitscale::detail::require_extents(fn, "z", z, {batch, channels});
  ::vitscale::detail::require_extents(fn, "y", y, {batch, positions, channels});
  const int p_count = static_cast<int>(positions), c_count = static_cast<int>(channels);
  const A g = static_cast<A>(gain);
  detail::for_each_row(space, "vitscale::channel_gate_forward", batch * positions,
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int row) {
    const int b = row / p_count, p = row % p_count;
    detail::row_for(member, c_count, [&](int c) {
      y(b, p, c) = detail::store_as<T>(g * static_cast<A>(x(b, p, c)) * detail::sigmoid(static_cast<A>(z(b, c))));
    });
  });
}

// x, dy: [B, P, C], z: [B, C] -> dx: [B, P, C] = gain·dy·σ(z), dz: [B, C] (both overwritten)
template <class ExecSpace, class X, class Z, class DY, class DX, class DZ>
void channel_gate_backward(const ExecSpace& space, const X& x, const Z& z, double gain, const DY& dy, const DX& dx,
                           const DZ& dz) {
  using A = detail::accum_t<typename X::value_type>;
  using T = detail::value_t<DX>;
  using TZ = detail::value_t<DZ>;
  static_assert(detail::is_input_view_v<ExecSpace, X, 3> && detail::is_input_view_v<ExecSpace, DY, 3>,
                "channel_gate_backward: x and dy must be rank-3 Views");
  static_assert(detail::is_input_view_v<ExecSpace, Z, 2>, "channel_gate_backward: z must be a rank-2 View");
  static_assert(detail::is_output_view_v<ExecSpace, DX, 3> && detail::is_output_view_v<ExecSpace, DZ, 2>,
                "channel_gate_backward: dx and dz must be writable Views of rank 3 and 2");
  constexpr const char* fn = "channel_gate_backward";
  const std::size_t batch = x.extent(0), positions = x.extent(1), channels = x.extent(2);
  ::vitscale::detail::require_extents(fn, "z", z, {batch, channels});
  ::vitscale::detail::require_extents(fn, "dy", dy, {batch, positions, channels});
  ::vitscale::detail::require_extents(fn, "dx", dx, {batch, positions, channels});
  ::vitscale::detail::require_extents(fn, "dz", dz, {batch, channels});
  const int p_count = static_cast<int>(positions), c_count = static_cast<int>(channels);
  const A g = static_cast<A>(gain);
  // dz first: dx may alias dy (the caller's in-place backward), and dz needs dy.
  detail::for_each_row(space, "vitscale::channel_gate_backward_dz", batch,
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int b) {
    auto finish = [&](int c, A sum) {
      const A s = detail::sigmoid(static_cast<A>(z(b, c)));
      dz(b, c) = detail::store_as<TZ>(g * s * (A(1) - s) * sum);
    };
    if (detail::contiguous_rows_v<X, DY> && member.team_size() == 1) {
      // Host: a chunk of channels' sums stays in a small array while the positions stream past in order.
      constexpr int chunk = 256;
      for (int c0 = 0; c0 < c_count; c0 += chunk) {
        const int len = c_count - c0 < chunk ? c_count - c0 : chunk;
        A sum[chunk];
        for (int k = 0; k < len; ++k) sum[k] = 0;
        for (int p = 0; p < p_count; ++p) {
          const auto* xp = &x(b, p, c0);
          const auto* dyp = &dy(b, p, c0);
          for (int k = 0; k < len; ++k) sum[k] += static_cast<A>(dyp[k]) * static_cast<A>(xp[k]);
        }
        for (int k = 0; k < len; ++k) finish(c0 + k, sum[k]);
      }
    } else {
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, c_count), [&](int c) {
        A sum = 0;
        for (int p = 0; p < p_count; ++p) sum += static_cast<A>(dy(b, p, c)) * static_cast<A>(x(b, p, c));
        finish(c, sum);
      });
    }
  });
  detail::for_each_row(space, "vitscale::channel_gate_backward_dx", batch * positions,
                       KOKKOS_LAMBDA(const detail::team_member<ExecSpace>& member, int row) {
    const int b = row / p_count, p = row % p_count;
    detail::row_for(member, c_count, [&](int c) {
      dx(b, p, c) = detail::store_as<T>(g * static_cast<A>(dy(b, p, c)) * detail::sigmoid(static_cast<A>(z(b, c))));
    });
  });
}

}  // namespace vitscale::kernels
