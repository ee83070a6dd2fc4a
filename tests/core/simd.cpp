// core/simd.hpp: target names, the targets this CPU supports, and the VITSCALE_SIMD_TARGET cap's parser.
#include <doctest/doctest.h>
#include <vitscale/core/simd.hpp>

#include <algorithm>
#include <cstdlib>
#include <string>

#if VITSCALE_HOST_SIMD
TEST_CASE("simd: target names round-trip, in any case, and an unknown name is 0") {
  // Highway names the targets of the architecture it was built for.
  CHECK(vitscale::simd::target_named(vitscale::simd::target_name(HWY_STATIC_TARGET)) == HWY_STATIC_TARGET);
#if HWY_ARCH_X86
  CHECK(vitscale::simd::target_named("avx2") == HWY_AVX2);
  CHECK(vitscale::simd::target_named("Sse4") == HWY_SSE4);
  CHECK(vitscale::simd::target_name(HWY_AVX2) == "AVX2");
#elif HWY_ARCH_ARM_A64
  CHECK(vitscale::simd::target_named("neon") == HWY_NEON);
#endif
  CHECK(vitscale::simd::target_named("avx9") == 0);
  CHECK(vitscale::simd::target_named("") == 0);
}

TEST_CASE("simd: the supported targets include this program's static target and a portable one") {
  const auto names = vitscale::simd::supported_targets();
  REQUIRE_FALSE(names.empty());
  const auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  // Without a VITSCALE_SIMD_TARGET cap, the target this file was compiled for runs here.
  if (std::getenv("VITSCALE_SIMD_TARGET") == nullptr) CHECK(has(vitscale::simd::target_name(HWY_STATIC_TARGET)));
  CHECK((has("SCALAR") || has("EMU128")));
  // Best first: the names come in increasing bit order.
  for (std::size_t i = 1; i < names.size(); ++i)
    CHECK(vitscale::simd::target_named(names[i - 1]) < vitscale::simd::target_named(names[i]));
}
#else
TEST_CASE("simd: without Highway no SIMD target is reported") { CHECK(vitscale::simd::supported_targets().empty()); }
#endif
