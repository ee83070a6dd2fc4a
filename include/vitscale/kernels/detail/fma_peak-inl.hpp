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
  hn::Vec<decltype(df)> c[12];
  for (int k = 0; k < 12; ++k) c[k] = hn::Set(df, 0.001f * static_cast<float>(k));
  for (std::int64_t i = 0; i < iterations; ++i)
    for (int k = 0; k < 12; ++k) c[k] = hn::MulAdd(c[k], a, b);
  auto sum = c[0];
  for (int k = 1; k < 12; ++k) sum = hn::Add(sum, c[k]);
  *sink = hn::GetLane(hn::SumOfLanes(df, sum));
  return 2.0 * 12.0 * static_cast<double>(hn::Lanes(df)) * static_cast<double>(iterations);
}

// Lanes of a float vector on this target.
inline HWY_NOINLINE int float_lanes() { return static_cast<int>(hn::Lanes(hn::ScalableTag<float>())); }

}  // namespace HWY_NAMESPACE
}  // namespace vitscale::kernels::detail::fma_peak
HWY_AFTER_NAMESPACE();

#endif  // the per-target toggle
