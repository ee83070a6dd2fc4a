#pragma once
// Branch-free float exp, exp2, tanh and erf for the element-wise kernels, callable inside Kokkos kernels on
// every backend. Library exp/tanh/erf are scalar calls that stop a host loop from vectorizing; these are a
// handful of multiply-adds, integer ops and selects, so a loop over them vectorizes, and on GPUs they avoid
// the slow paths of the libm versions. Only float: double code keeps vitscale::kmath.
//
// Maximum errors over all float inputs, measured against the double-precision std:: function by
// tests/kernels/fast_math.cpp (which sweeps every 61st float bit pattern, plus ulp-dense sweeps of the
// branch boundaries), with fused or unfused multiply-adds:
//
//   fast::exp(x)   relative error < 1.2e-7 (2 ulp; measured 8.3e-8) where the result is a normal float (x ≥ −87.33);
//                  absolute error ≤ 2^-149 (the smallest subnormal) below; exp(x) = +inf for x > 88.7228,
//                  0 for x < −103.97, exp(−inf) = 0, exp(+inf) = +inf.
//   fast::exp2(x)  the same bounds on 2^x (measured 8.8e-8) (normal results for x ≥ −126, +inf above 128, 0 below −150).
//                  Meets attention's softmax need (< 3e-7 relative over x ≤ 0) including subnormal results.
//   fast::tanh(x)  relative error < 1.8e-7 everywhere (3 ulp; measured 1.4e-7), tanh(±0) = ±0, exactly ±1 for |x| ≥ 9.1 and ±inf.
//   fast::erf(x)   relative error < 1.2e-7 everywhere (2 ulp; measured 8.3e-8), erf(±0) = ±0, exactly ±1 for |x| ≥ 3.92 and ±inf.
//
// NaN in gives NaN out for all four. The methods: Cody–Waite reduction x = n·ln2 + r and Cephes' degree-6
// polynomial for e^r, with the scale 2^n applied as two factors so subnormal results come out right;
// Cephes' odd polynomial for tanh on |x| < 0.625 and 1 − 2/(e^{2|x|} + 1) above; N. Juffa's erff (an odd
// polynomial below 0.921875, 1 − e^{−p(|x|)} above).

#include <vitscale/core/kokkos_compat.hpp>

#include <cstdint>

namespace vitscale::fast {

namespace detail {

// The float whose bit pattern is `bits`.
KOKKOS_FORCEINLINE_FUNCTION float from_bits(std::uint32_t bits) { return ::vitscale::bit_cast<float>(bits); }
KOKKOS_FORCEINLINE_FUNCTION std::uint32_t to_bits(float x) { return ::vitscale::bit_cast<std::uint32_t>(x); }

// Adding 1.5·2^23 to a float of magnitude < 2^22 rounds it to an integer k (round to nearest even) and
// leaves k in the low mantissa bits of the sum.
constexpr float round_shift = 12582912.0f;
KOKKOS_FORCEINLINE_FUNCTION int round_shift_integer(float shifted) {
  return static_cast<int>(to_bits(shifted)) - 0x4b400000;
}

// c ? a : b as a bitwise select of two values already computed. GCC turns a ?: whose arms are computed only
// for it into a vector select only where the ISA has masked operations (AVX-512): under the default
// -ftrapping-math it may not evaluate an arm's arithmetic for lanes that did not take it, so on AVX2, SSE and
// NEON the whole loop stayed scalar (GELU 9–11× slower on an AVX2 build than on an AVX-512 one). Integer
// and/or of both arms has no such restriction; the result is the same value, bit for bit.
KOKKOS_FORCEINLINE_FUNCTION float select(bool c, float a, float b) {
  const std::uint32_t m = 0u - static_cast<std::uint32_t>(c);
  return from_bits((to_bits(a) & m) | (to_bits(b) & ~m));
}

// p·2^n for n in [−152, 130], as two scalings by normal powers of two, so that a result in the subnormal
// range is rounded once and one above the float range becomes +inf.
KOKKOS_FORCEINLINE_FUNCTION float scale_by_pow2(float p, int n) {
  const int n1 = n / 2, n2 = n - n1;
  return p * from_bits(static_cast<std::uint32_t>(n1 + 127) << 23) *
         from_bits(static_cast<std::uint32_t>(n2 + 127) << 23);
}

// e^r for |r| ≤ ln2/2 (+ a rounding margin): Cephes expf's polynomial, 1 + r + r²·p(r).
KOKKOS_FORCEINLINE_FUNCTION float exp_reduced(float r) {
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * (r * r) + r + 1.0f;
}

KOKKOS_FORCEINLINE_FUNCTION float abs(float x) { return from_bits(to_bits(x) & 0x7fffffffu); }

// |magnitude| with the sign of `sign`.
KOKKOS_FORCEINLINE_FUNCTION float with_sign_of(float magnitude, float sign) {
  return from_bits((to_bits(magnitude) & 0x7fffffffu) | (to_bits(sign) & 0x80000000u));
}

}  // namespace detail

// e^x (bounds in the header comment).
KOKKOS_INLINE_FUNCTION float exp(float x) {
  // The comparisons send NaN to the lower bound, so every step below is defined; it is restored at the end.
  // Every comparison is evaluated unconditionally (no nested ?:): under the default -ftrapping-math a
  // comparison that only runs on one branch keeps GCC from turning the branches into vector selects.
  const float x_lo = detail::select(x > -104.0f, x, -104.0f);
  const float xc = detail::select(x_lo < 89.0f, x_lo, 89.0f);
  // n = round(x/ln2) by adding 1.5·2^23, which leaves n in the low mantissa bits (no float-to-int
  // conversion: GCC will not vectorize one that follows a select under -ftrapping-math).
  const float shifted = xc * 1.44269504088896341f + detail::round_shift;
  const float fn = shifted - detail::round_shift;
  const int n = detail::round_shift_integer(shifted);
  // r = x − n·ln2 with ln2 split in two (the first part has few bits, so fn·C1 is exact).
  const float r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;
  const float y = detail::scale_by_pow2(detail::exp_reduced(r), n);
  return detail::select(x == x, y, x);
}

// 2^x (bounds in the header comment).
KOKKOS_INLINE_FUNCTION float exp2(float x) {
  const float x_lo = detail::select(x > -151.0f, x, -151.0f);
  const float xc = detail::select(x_lo < 129.0f, x_lo, 129.0f);
  const float shifted = xc + detail::round_shift;  // round to nearest, as in exp
  const float fn = shifted - detail::round_shift;
  const int n = detail::round_shift_integer(shifted);
  const float f = xc - fn;  // exact, |f| ≤ 1/2
  const float y = detail::scale_by_pow2(detail::exp_reduced(f * 0.693147180559945309f), n);
  return detail::select(x == x, y, x);
}

// tanh(x) (bounds in the header comment).
KOKKOS_INLINE_FUNCTION float tanh(float x) {
  const float a = detail::abs(x);
  // Small |x|: x + x³·q(x²), no cancellation near 0.
  const float z = x * x;
  float q = -5.70498872745e-3f;
  q = q * z + 2.06390887954e-2f;
  q = q * z - 5.37397155531e-2f;
  q = q * z + 1.33314422036e-1f;
  q = q * z - 3.33332819422e-1f;
  const float small = detail::with_sign_of(q * z * x + x, x);  // keeps tanh(−0) = −0
  // Large |x|: 1 − 2/(e^{2|x|} + 1); beyond 10 the float result is 1 anyway.
  const float ac = detail::select(a < 10.0f, a, 10.0f);
  const float large = detail::with_sign_of(1.0f - 2.0f / (fast::exp(ac + ac) + 1.0f), x);
  const float y = detail::select(a < 0.625f, small, large);
  return detail::select(x == x, y, x);
}

// erf(x) (bounds in the header comment).
KOKKOS_INLINE_FUNCTION float erf(float x) {
  const float s = x * x;
  // |x| < 0.921875: x + x·p(x²).
  float p = -0x1.3a1a82p-11f;
  p = p * s + 0x1.473f48p-08f;
  p = p * s - 0x1.b68bd2p-06f;
  p = p * s + 0x1.ce1a46p-04f;
  p = p * s - 0x1.8126e0p-02f;
  p = p * s + 0x1.06eba6p-03f;
  const float small = p * x + x;
  // Otherwise 1 − e^{−t·(1 + r(t))}, t = |x|; erf is 1 in float from 3.92 on.
  const float a = detail::abs(x);
  const float t = detail::select(a < 4.0f, a, 4.0f);
  const float tt = t * t;
  float r = 0x1.222900p-16f * t - 0x1.91d2ccp-12f;
  const float u = 0x1.fd1336p-09f * t - 0x1.8d6300p-06f;
  r = r * tt + u;
  r = r * t + 0x1.b55cb0p-4f;
  r = r * t + 0x1.450aa0p-1f;
  r = r * t + 0x1.079d0cp-3f;
  r = r * t + t;
  const float large = detail::with_sign_of(1.0f - fast::exp(-r), x);
  const float y = detail::select(a < 0.921875f, small, large);
  return detail::select(x == x, y, x);
}

// 2^x for softmax weights, cheaper than exp2: a degree-6 polynomial on [-1/2, 1/2] (Cephes' exp2f
// coefficients) and the exponent bits, relative error a few 1e-7 for x in [-126, 127]; exactly 0 below
// -126 (masked and negligible weights: subnormals are flushed), infinity above 128; no NaN handling.
// attention.hpp has the same operations on 16 host lanes.
KOKKOS_FORCEINLINE_FUNCTION float exp2_flush(float x) {
  const float xc = detail::select(x < -127.0f, -127.0f, detail::select(x > 127.0f, 127.0f, x));
  const int n = static_cast<int>(xc + 127.5f) - 127;  // round to nearest; the sum is positive, so truncation floors
  const float f = xc - static_cast<float>(n);          // in [-1/2, 1/2]
  float p = 1.535336188319500e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const float two_n = ::vitscale::bit_cast<float>(static_cast<std::uint32_t>(n + 127) << 23);
  return detail::select(x < -126.0f, 0.0f, p * two_n);
}

}  // namespace vitscale::fast
