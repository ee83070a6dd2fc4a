#pragma once
// Host SIMD with run-time dispatch, through Google Highway: the hand-vectorised host kernels are compiled
// once per instruction set (AVX-512, AVX2, SSE4 and a portable fallback on x86 — EMU128, or SCALAR where GCC
// is older than 12.3; NEON on Arm) and the
// best one the CPU runs is chosen when a kernel is first called. So a binary built without -march=native runs
// vector code on every CPU, and one built on an AVX-512 machine still runs on an AVX2 one.
//
// VITSCALE_HOST_SIMD is 1 where this is on: Highway was found (CMake defines VITSCALE_HAVE_HWY) and the
// compiler is a host compiler (not the CUDA/HIP/SYCL device pass, nor nvcc/hipcc at all: their host pass
// would have to parse Highway's target pragmas). Where it is 0 the kernels run their portable loops.
//
// The environment variable VITSCALE_SIMD_TARGET caps the target (a Highway target name, any case: AVX3_DL,
// AVX3, AVX2, SSE4, EMU128, NEON, ...): the kernels then run the best compiled target that is not better than
// it. It is read at the first kernel call. Tests use scoped_target to run every compiled target in turn.
// vitscale's own tests and benchmarks define HWY_COMPILE_ALL_ATTAINABLE, so that every target is compiled
// whatever -march says; a user's program compiles those at or above its -march baseline (Highway's default).
//
// SVE targets are not compiled (HWY_DISABLED_TARGETS, unless the includer defines it): the kernels keep
// arrays of accumulator vectors, which SVE's sizeless types do not allow; SVE CPUs run the NEON code.

#include <vitscale/core/error.hpp>

#if defined(VITSCALE_HAVE_HWY) && VITSCALE_HAVE_HWY && !defined(__CUDACC__) && !defined(__HIPCC__) && \
    !defined(__SYCL_DEVICE_ONLY__) && !defined(SYCL_LANGUAGE_VERSION)
#define VITSCALE_HOST_SIMD 1
#else
#define VITSCALE_HOST_SIMD 0
#endif

#include <cstdint>
#include <string>
#include <vector>

#if VITSCALE_HOST_SIMD
#ifndef HWY_DISABLED_TARGETS
// Left out besides SVE, to save compile time: SSSE3 (SSE4 runs wherever it would matter) and AVX3_DL (the
// float kernels use nothing of it over AVX3; also, Highway 1.0.3 with HWY_COMPILE_ALL_ATTAINABLE and an
// -march that has AVX3_DL stops with "best baseline should be included in dynamic targets").
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_SSSE3 | HWY_AVX3_DL)
#endif
#include <hwy/targets.h>

#include <cctype>
#include <cstdlib>
#include <mutex>
#endif

namespace vitscale::simd {

#if VITSCALE_HOST_SIMD

// Highway's name of a target bit ("AVX2", "EMU128", ...).
inline std::string target_name(std::int64_t target) { return hwy::TargetName(target); }

// The target bit called `name` (any case), or 0.
inline std::int64_t target_named(std::string name) {
  for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  for (int bit = 0; bit < 63; ++bit) {
    const std::int64_t t = std::int64_t{1} << bit;
    const char* n = hwy::TargetName(t);
    if (n != nullptr && name == n) return t;
  }
  return 0;
}

// hwy::SupportedTargets(), without its side effect: in Highway 1.0.3 it points the dispatch at every target
// the CPU has, ignoring DisableTargets (so a capped run would go back to the best target); this points it at
// what it returns.
inline std::int64_t supported_target_bits() {
  const std::int64_t t = hwy::SupportedTargets();
  hwy::GetChosenTarget().Update(t);
  return t;
}

// Applies VITSCALE_SIMD_TARGET once per program (every kernel calls this before dispatching; the cost after
// the first call is a check of a flag). Targets are ordered by bit, lower bits better, so capping at T
// disables every bit below T.
inline void apply_environment() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("VITSCALE_SIMD_TARGET");
    if (env == nullptr || *env == '\0') return;
    const std::int64_t t = target_named(env);
    if (t == 0)
      ::vitscale::detail::fail("VITSCALE_SIMD_TARGET=", env, " names no SIMD target; use one of the names "
                               "vitscale::simd::supported_targets() lists (e.g. AVX3, AVX2, SSE4, EMU128, NEON)");
    hwy::DisableTargets(t - 1);
  });
}

// The targets this CPU supports (after the VITSCALE_SIMD_TARGET cap), best first, as Highway names them;
// which of them a kernel can run also depends on what its translation unit compiled (HWY_TARGETS).
inline std::vector<std::string> supported_targets() {
  apply_environment();
  std::vector<std::string> names;
  const std::int64_t supported = supported_target_bits();
  for (int bit = 0; bit < 63; ++bit)
    if (supported & (std::int64_t{1} << bit)) names.push_back(target_name(std::int64_t{1} << bit));
  return names;
}

// While alive, the kernels run `target` (one that the CPU supports and the caller compiled): for tests.
class scoped_target {
 public:
  explicit scoped_target(std::int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ~scoped_target() { hwy::SetSupportedTargetsForTest(0); }
  scoped_target(const scoped_target&) = delete;
  scoped_target& operator=(const scoped_target&) = delete;
};

#else

inline void apply_environment() {}
inline std::vector<std::string> supported_targets() { return {}; }

#endif

}  // namespace vitscale::simd
