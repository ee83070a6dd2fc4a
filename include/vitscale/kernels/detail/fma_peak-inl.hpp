// The fp32 fused multiply-add peak of one thread on one Highway target: the yardstick every benchmark's
// "% of peak" is measured against (examples/bench_support.hpp). Per-target header; see host_simd.hpp.
//
// Twelve independent chains of vector FMAs: enough to cover the FMA latency on every FMA port of current
// x86 and Arm cores (2 ports × 4 cycles = 8 chains on Zen 3/4 and Intel; Neoverse V1 has 4 ports × 4 cycles
// for 128-bit vectors, which 12 chains do not quite cover, so the figure there is a lower bound), and with the
// two operands still within the 16 vector registers of AVX2 (16 chains spill there: 57 instead of 95 GFLOP/s
// per Zen 3 core).

#if defined(VITSCALE_KERNELS_FMA_PEAK_INL_) == defined(HWY_TARGET_TOGGLE)
#ifdef VITSCALE_KERNELS_FMA_PEAK_INL_
#undef VITSCALE_KERNELS_FMA_PEAK_INL_
#else
#define VITSCALE_KERNELS_FMA_PEAK_INL_
#endif

#include <hwy/highway.h>

#include <cstdint>

HWY_BEFORE_NAMESPACE();
namespace vitscale::kernels::detail::fma_peak {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Runs `iterations` rounds of 12 vector FMAs; returns the floating-point operations done (2 per lane per FMA).
// `sink` receives a sum of the results so that nothing is optimised away.
inline HWY_NOINLINE double fma_chains(std::int64_t iterations, float* sink) {
  const hn::ScalableTag<float> df;
  const auto a = hn::Set(df, 0.999999f), b = hn::Set(df, 1e-7f);
  auto c0 = hn::Set(df, 0.000f), c1 = hn::Set(df, 0.001f), c2 = hn::Set(df, 0.002f), c3 = hn::Set(df, 0.003f);
  auto c4 = hn::Set(df, 0.004f), c5 = hn::Set(df, 0.005f), c6 = hn::Set(df, 0.006f), c7 = hn::Set(df, 0.007f);
  auto c8 = hn::Set(df, 0.008f), c9 = hn::Set(df, 0.009f), c10 = hn::Set(df, 0.010f), c11 = hn::Set(df, 0.011f);
  for (std::int64_t i = 0; i < iterations; ++i) {
    c0 = hn::MulAdd(c0, a, b);
    c1 = hn::MulAdd(c1, a, b);
    c2 = hn::MulAdd(c2, a, b);
    c3 = hn::MulAdd(c3, a, b);
    c4 = hn::MulAdd(c4, a, b);
    c5 = hn::MulAdd(c5, a, b);
    c6 = hn::MulAdd(c6, a, b);
    c7 = hn::MulAdd(c7, a, b);
    c8 = hn::MulAdd(c8, a, b);
    c9 = hn::MulAdd(c9, a, b);
    c10 = hn::MulAdd(c10, a, b);
    c11 = hn::MulAdd(c11, a, b);
  }
  const auto sum = hn::Add(hn::Add(hn::Add(hn::Add(c0, c1), hn::Add(c2, c3)), hn::Add(hn::Add(c4, c5), hn::Add(c6, c7))),
                           hn::Add(hn::Add(c8, c9), hn::Add(c10, c11)));
  *sink = hn::GetLane(hn::SumOfLanes(df, sum));
  return 2.0 * 12.0 * static_cast<double>(hn::Lanes(df)) * static_cast<double>(iterations);
}

// Lanes of a float vector on this target.
inline HWY_NOINLINE int float_lanes() { return static_cast<int>(hn::Lanes(hn::ScalableTag<float>())); }

}  // namespace HWY_NAMESPACE
}  // namespace vitscale::kernels::detail::fma_peak
HWY_AFTER_NAMESPACE();

#endif  // the per-target toggle
