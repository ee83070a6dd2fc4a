#pragma once
// What the kernel benchmarks share: the machine's fp32 FMA peak, measured in the same program as the
// kernels so that every "% of peak" is against this machine at this moment.

#include <vitscale/kernels/detail/host_simd.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace vitscale::bench {

// fp32 FMA peak of `threads` threads: each runs 12 independent chains of vector FMAs on the SIMD target the
// kernels run (kernels/detail/fma_peak-inl.hpp; VITSCALE_SIMD_TARGET caps both alike), enough chains to
// cover the FMA latency on every FMA port and few enough to stay in AVX2's 16 registers. Best of 3.
inline double fma_peak_gflops(int threads) {
  (void)threads;  // without OpenMP the loop runs on the calling thread
  constexpr std::int64_t iterations = 20'000'000;
  double best = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    double flops = 0;
    const auto start = std::chrono::steady_clock::now();
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads) reduction(+ : flops)
#endif
    {
      float sink = 0;
#if VITSCALE_HOST_SIMD
      flops += ::vitscale::kernels::detail::fma_peak::call_fma_chains(iterations, &sink);
#else
      float acc[12];
      for (int c = 0; c < 12; ++c) acc[c] = 0.001f * static_cast<float>(c);
      for (std::int64_t i = 0; i < iterations; ++i)
        for (int c = 0; c < 12; ++c) acc[c] = std::fma(acc[c], 0.999999f, 1e-7f);
      for (float x : acc) sink += x;
      flops += 2.0 * 12 * static_cast<double>(iterations);
#endif
      if (sink == 12345.0f) std::printf(" ");  // keeps the chains alive
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, flops / seconds * 1e-9);
  }
  return best;
}

// The SIMD target the host kernels run (Highway's name) and its float lanes, for the benchmarks' headers.
inline std::string simd_target() {
#if VITSCALE_HOST_SIMD
  return ::vitscale::simd::target_name(::vitscale::kernels::detail::host_simd::call_target()) + " (" +
         std::to_string(::vitscale::kernels::detail::fma_peak::call_float_lanes()) + " float lanes)";
#else
  return "portable loops (no Highway)";
#endif
}

// The OpenMP pool's size (1 without OpenMP).
inline int host_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline double fma_peak_gflops() { return fma_peak_gflops(host_threads()); }

}  // namespace vitscale::bench
