#pragma once
// Runs a check once per SIMD target that this test program compiled (HWY_COMPILE_ALL_ATTAINABLE, set for
// every test by cmake/vitscale_target_defaults.cmake) and the CPU runs, with the kernels held to that target
// (vitscale::simd::scoped_target), so that an AVX-512 machine also checks the AVX2, SSE4 and portable code:
//
//   vitscale::test::for_each_simd_target([&](const std::string& target) { ... checks ... });
//
// Under each target it first checks that the kernels' dispatch really moved there. Without Highway
// (VITSCALE_HOST_SIMD 0) the check runs once, on the portable loops.

#include <doctest/doctest.h>
#include <vitscale/kernels/detail/host_simd.hpp>

#include <cstdint>
#include <string>

namespace vitscale::test {

template <class Check>
void for_each_simd_target(Check&& check) {
#if VITSCALE_HOST_SIMD
  vitscale::simd::apply_environment();
  for (const std::int64_t target : hwy::SupportedAndGeneratedTargets()) {
    const vitscale::simd::scoped_target scope(target);
    const std::string name = vitscale::simd::target_name(target);
    CAPTURE(name);
    REQUIRE(vitscale::simd::target_name(vitscale::kernels::detail::host_simd::call_target()) == name);
    check(name);
  }
#else
  check(std::string("portable"));
#endif
}

}  // namespace vitscale::test
