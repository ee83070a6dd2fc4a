// bf16: conversion checked bit-exactly against an independent reference, on the host and inside kernels.
#include <doctest/doctest.h>
#include <support/spaces.hpp>
#include <vitscale/core/bf16.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using vitscale::bf16;

namespace {

std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_float_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
bool bits_are_nan(std::uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0; }

// The value of a bf16 bit pattern from its fields, in double (infinity as +-2^128, which is where
// round-to-nearest-even puts the overflow threshold). Independent of the library's bit shifting.
double decode(std::uint16_t b) {
  const int sign = (b >> 15) ? -1 : 1;
  const int exponent = (b >> 7) & 0xff;
  const int mantissa = b & 0x7f;
  if (exponent == 0) return sign * std::ldexp(mantissa, -126 - 7);
  if (exponent == 255) return sign * std::ldexp(1.0, 128);  // only called on infinity
  return sign * std::ldexp(128 + mantissa, exponent - 127 - 7);
}

// Round-to-nearest-even of a finite float by comparing distances to its two bf16 neighbours.
std::uint16_t reference_round(float f) {
  const std::uint32_t u = float_bits(f);
  const std::uint16_t toward_zero = static_cast<std::uint16_t>(u >> 16);
  if ((u & 0xffffu) == 0) return toward_zero;
  const std::uint16_t away = static_cast<std::uint16_t>(toward_zero + 1);  // next magnitude, maybe infinity
  const double x = f;
  const double d_zero = std::fabs(x - decode(toward_zero));
  const double d_away = std::fabs(decode(away) - x);
  if (d_zero < d_away) return toward_zero;
  if (d_away < d_zero) return away;
  return (toward_zero & 1u) == 0 ? toward_zero : away;
}

// The floats the rounding tests use: every upper half with low halves at and around the rounding points.
std::vector<float> rounding_inputs() {
  std::vector<float> out;
  std::mt19937 rng(12345);
  const std::uint32_t lows[] = {0x0000, 0x0001, 0x3fff, 0x7ffe, 0x7fff, 0x8000, 0x8001, 0xbfff, 0xfffe, 0xffff};
  for (std::uint32_t hi = 0; hi < 0x10000; ++hi) {
    for (std::uint32_t lo : lows) out.push_back(from_float_bits(hi << 16 | lo));
    out.push_back(from_float_bits(hi << 16 | (rng() & 0xffff)));
  }
  return out;
}

}  // namespace

TEST_CASE("bf16 is two bytes and converts every one of its 65,536 values to float exactly and back") {
  static_assert(sizeof(bf16) == 2);
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float f = bf16::from_bits(bits);
    const bf16 back = f;
    if (bits_are_nan(bits)) {
      REQUIRE(std::isnan(f));
      // A NaN stays a NaN of the same sign; its payload's high bits survive and it becomes quiet.
      REQUIRE(back.bits == (bits | 0x0040u));
    } else {
      REQUIRE(back.bits == bits);
      const bool infinite = (bits & 0x7fffu) == 0x7f80u;
      if (infinite)
        REQUIRE(std::isinf(f));
      else
        REQUIRE(static_cast<double>(f) == decode(bits));
    }
  }
}

TEST_CASE("float -> bf16 rounds to nearest, ties to even, over every binade") {
  for (float f : rounding_inputs()) {
    const std::uint32_t u = float_bits(f);
    const bf16 b = f;
    if (std::isnan(f)) {
      REQUIRE(bits_are_nan(b.bits));
      REQUIRE((b.bits >> 15) == (u >> 31));
    } else if (std::isinf(f)) {
      REQUIRE(b.bits == (u >> 16));
    } else {
      INFO("float bits 0x" << std::hex << u);
      REQUIRE(b.bits == reference_round(f));
    }
  }
}

TEST_CASE("bf16 edge cases") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(bf16(0.0f).bits == 0x0000);
  CHECK(bf16(-0.0f).bits == 0x8000);
  CHECK(bf16(1.0f).bits == 0x3f80);
  CHECK(bf16(-2.0f).bits == 0xc000);
  CHECK(bf16(inf).bits == 0x7f80);
  CHECK(bf16(-inf).bits == 0xff80);
  // The largest float rounds up to infinity; the largest bf16 stays.
  CHECK(bf16(std::numeric_limits<float>::max()).bits == 0x7f80);
  CHECK(bf16(from_float_bits(0x7f7f0000)).bits == 0x7f7f);
  // Just below the overflow threshold (max bf16 + half an ulp) stays finite; the threshold itself ties to
  // even, which is infinity.
  CHECK(bf16(from_float_bits(0x7f7f7fff)).bits == 0x7f7f);
  CHECK(bf16(from_float_bits(0x7f7f8000)).bits == 0x7f80);
  // NaN whose payload sits only in the low half must not become infinity.
  CHECK(bits_are_nan(bf16(from_float_bits(0x7f800001)).bits));
  CHECK(bits_are_nan(bf16(from_float_bits(0xff800001)).bits));
  CHECK((bf16(from_float_bits(0xff800001)).bits >> 15) == 1);
  CHECK(bits_are_nan(bf16(std::numeric_limits<float>::quiet_NaN()).bits));
  // Subnormals: the smallest float subnormal rounds to zero, the smallest bf16 subnormal is exact.
  CHECK(bf16(std::numeric_limits<float>::denorm_min()).bits == 0x0000);
  CHECK(bf16(from_float_bits(0x00010000)).bits == 0x0001);
  CHECK(bf16(std::numeric_limits<float>::min()).bits == 0x0080);
  // Ties: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 and goes to the even one (1);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6 and goes to the even one (1 + 2^-6).
  CHECK(bf16(1.0f + 0x1p-8f).bits == 0x3f80);
  CHECK(bf16(1.0f + 3 * 0x1p-8f).bits == 0x3f82);
  CHECK(bf16(1.0f + 0x1p-8f + 0x1p-20f).bits == 0x3f81);
}

TEST_CASE("branch-free float -> bf16 agrees with the branching definition on a sweep of all floats") {
  // The definition: a NaN keeps its sign and high payload and is made quiet; anything else rounds to
  // nearest even by adding 0x7fff plus the kept half's lowest bit. Every 257th float covers every binade
  // and sign with scattered low halves, NaNs (quiet, signalling, payload only in the low half) included.
  auto branching = [](std::uint32_t u) -> std::uint16_t {
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
    return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  };
  std::uint64_t mismatches = 0;
  for (std::uint64_t u = 0; u <= 0xffffffffu; u += 257) {
    const auto bits = static_cast<std::uint32_t>(u);
    mismatches += bf16::round_from_float(from_float_bits(bits)) != branching(bits);
  }
  for (std::uint32_t u : {0x7f800001u, 0xff800001u, 0x7fffffffu, 0xffffffffu, 0x7fc00000u, 0xffc00000u,
                          0x7f80ffffu, 0xff80ffffu, 0x7fbfffffu, 0xffbfffffu})
    mismatches += bf16::round_from_float(from_float_bits(u)) != branching(u);
  CHECK(mismatches == 0);
  // A negative NaN with all low bits set would wrap around to +0 without the NaN case.
  CHECK(bf16(from_float_bits(0xffffffffu)).bits == 0xffffu);
}

TEST_CASE("bf16 arithmetic happens in float and rounds once on store") {
  bf16 a = 1.0f;
  const bf16 b = 0x1p-8f;
  CHECK(float(a + b) == 1.0f + 0x1p-8f);  // the sum itself is a float
  a += b;                                 // stored: rounds to even
  CHECK(a.bits == 0x3f80);
  a *= 3.0f;
  CHECK(float(a) == 3.0f);
  a -= 0.5f;
  CHECK(float(a) == 2.5f);
  a /= 2.0f;
  CHECK(float(a) == 1.25f);
  CHECK(bf16(2.0f) > bf16(1.0f));
  CHECK(vitscale::same_bits(bf16(1.5f), bf16::from_bits(0x3fc0)));
}

TEST_CASE_TEMPLATE_DEFINE("bf16 converts inside Kokkos kernels exactly as on the host", Space, bf16_kernel) {
  using memory = typename Space::memory_space;
  const std::vector<float> inputs = rounding_inputs();
  const auto n = static_cast<int>(inputs.size());

  Kokkos::View<float*, Kokkos::HostSpace> in_host("in", n);
  for (int i = 0; i < n; ++i) in_host(i) = inputs[i];
  auto in = Kokkos::create_mirror_view_and_copy(memory(), in_host);
  Kokkos::View<bf16*, memory> rounded("rounded", n);
  Kokkos::View<float*, memory> widened("widened", 0x10000);

  Kokkos::parallel_for(
      "round", Kokkos::RangePolicy<Space>(0, n), KOKKOS_LAMBDA(int i) { rounded(i) = in(i); });
  Kokkos::parallel_for(
      "widen", Kokkos::RangePolicy<Space>(0, 0x10000),
      KOKKOS_LAMBDA(int i) { widened(i) = bf16::from_bits(static_cast<std::uint16_t>(i)); });
  Space().fence();

  auto rounded_host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), rounded);
  auto widened_host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), widened);
  int mismatches = 0;
  for (int i = 0; i < n; ++i) mismatches += rounded_host(i).bits != bf16(inputs[i]).bits;
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const float host = bf16::from_bits(static_cast<std::uint16_t>(b));
    mismatches += std::memcmp(&host, &widened_host(b), 4) != 0;
  }
  CHECK(mismatches == 0);
}
VITSCALE_ON_HOST_SPACES(bf16_kernel);
