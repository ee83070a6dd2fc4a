#pragma once
// What the kernel benchmarks share: the machine's fp32 FMA peak, measured in the same program as the
// kernels so that every "% of peak" is against this machine at this moment.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace vitscale::bench {

// fp32 FMA peak: every thread runs independent chains of fused multiply-adds, enough of them to cover the
// FMA latency on every FMA port.
inline double fma_peak_gflops(int threads) {
  (void)threads;  // without OpenMP the loop runs on the calling thread
  constexpr long iterations = 20'000'000;
  double best = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    double flops = 0;
    const auto start = std::chrono::steady_clock::now();
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads) reduction(+ : flops)
#endif
    {
#if defined(__AVX512F__)
      constexpr int chains = 16, lanes = 16;
      __m512 acc[chains];
      for (int c = 0; c < chains; ++c) acc[c] = _mm512_set1_ps(0.001f * static_cast<float>(c));
      const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
      for (long i = 0; i < iterations / 4; ++i)
        for (int c = 0; c < chains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
      float sink = 0;
      alignas(64) float out[16];  // a store, not _mm512_reduce_add_ps, which trips GCC 12's -Wuninitialized
      for (int c = 0; c < chains; ++c) {
        _mm512_store_ps(out, acc[c]);
        for (float x : out) sink += x;
      }
#elif defined(__AVX2__) && defined(__FMA__)
      constexpr int chains = 16, lanes = 8;
      __m256 acc[chains];
      for (int c = 0; c < chains; ++c) acc[c] = _mm256_set1_ps(0.001f * static_cast<float>(c));
      const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
      for (long i = 0; i < iterations / 4; ++i)
        for (int c = 0; c < chains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
      float sink = 0;
      alignas(32) float out[8];
      for (int c = 0; c < chains; ++c) {
        _mm256_store_ps(out, acc[c]);
        for (float x : out) sink += x;
      }
#else
      constexpr int chains = 16, lanes = 1;
      float acc[chains];
      for (int c = 0; c < chains; ++c) acc[c] = 0.001f * static_cast<float>(c);
      for (long i = 0; i < iterations / 4; ++i)
        for (int c = 0; c < chains; ++c) acc[c] = std::fma(acc[c], 0.999999f, 1e-7f);
      float sink = 0;
      for (float x : acc) sink += x;
#endif
      if (sink == 12345.0f) std::printf(" ");  // keeps the chains alive
      flops += 2.0 * lanes * chains * static_cast<double>(iterations / 4);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, flops / seconds * 1e-9);
  }
  return best;
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
