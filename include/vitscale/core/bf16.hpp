#pragma once
// bfloat16: the upper 16 bits of an IEEE-754 binary32 (1 sign, 8 exponent, 7 mantissa bits).
//
// A plain 2-byte value type usable inside Kokkos kernels on every backend (no intrinsics, no host-only
// calls). Conversion from float rounds to nearest, ties to even; infinities stay infinite; a NaN stays a
// NaN with its sign (made quiet, so that rounding can never turn it into an infinity). Conversion to float
// is exact. Arithmetic happens in float: `a + b` is a float, and storing it back into a bf16 rounds once.

#include <vitscale/core/kokkos_compat.hpp>

#include <cstdint>
#include <type_traits>

namespace vitscale {

struct bf16 {
  std::uint16_t bits;

  bf16() = default;
  KOKKOS_FORCEINLINE_FUNCTION bf16(float value) : bits(round_from_float(value)) {}  // NOLINT: implicit on purpose

  KOKKOS_FORCEINLINE_FUNCTION operator float() const {  // NOLINT: implicit on purpose
    return bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
  }

  static KOKKOS_FORCEINLINE_FUNCTION bf16 from_bits(std::uint16_t raw) {
    bf16 value;
    value.bits = raw;
    return value;
  }

  // float -> bf16 bits, round to nearest even. Branch-free (both results computed, one selected with a
  // mask) so that loops storing bf16 vectorize; the result is the same as branching on NaN first.
  static KOKKOS_FORCEINLINE_FUNCTION std::uint16_t round_from_float(float value) {
    const std::uint32_t u = bit_cast<std::uint32_t>(value);
    const std::uint32_t lsb = (u >> 16) & 1u;                // ties go to the even neighbour
    const std::uint32_t rounded = (u + 0x7fffu + lsb) >> 16;  // overflow to infinity is correct RNE
    const std::uint32_t quiet = (u >> 16) | 0x0040u;         // NaN: keep sign and high payload, set quiet bit
    // All ones for a NaN, else zero. (A NaN with its payload only in the low half would otherwise round
    // into an infinity, or a negative one wrap to +0.)
    const std::uint32_t nan = 0u - static_cast<std::uint32_t>((u & 0x7fffffffu) > 0x7f800000u);
    return static_cast<std::uint16_t>((quiet & nan) | (rounded & ~nan));
  }

  KOKKOS_FORCEINLINE_FUNCTION bf16& operator+=(float other) { return *this = float(*this) + other; }
  KOKKOS_FORCEINLINE_FUNCTION bf16& operator-=(float other) { return *this = float(*this) - other; }
  KOKKOS_FORCEINLINE_FUNCTION bf16& operator*=(float other) { return *this = float(*this) * other; }
  KOKKOS_FORCEINLINE_FUNCTION bf16& operator/=(float other) { return *this = float(*this) / other; }
};

static_assert(sizeof(bf16) == 2, "bf16 must be exactly two bytes");
static_assert(std::is_trivially_copyable<bf16>::value, "bf16 must be trivially copyable");
static_assert(std::is_standard_layout<bf16>::value, "bf16 must be standard layout");

// Bit-exact identity: the same 16 bits (two NaNs with different payloads are different here).
KOKKOS_FORCEINLINE_FUNCTION bool same_bits(bf16 a, bf16 b) { return a.bits == b.bits; }

}  // namespace vitscale
