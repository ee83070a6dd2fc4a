// Every per-target header of vitscale's host SIMD kernels, compiled once per Highway target by
// kernels/detail/host_simd.hpp (Highway 1.0.3 allows one hwy/foreach_target.h per translation unit, so all of
// vitscale's targets go through this one file). No include guard: each pass must see the headers.
#include <vitscale/kernels/detail/attention_simd-inl.hpp>
#include <vitscale/kernels/detail/fma_peak-inl.hpp>

// The target of each pass itself: what a dispatched call runs now (tests check that a cap moved it;
// benchmarks print it).
#if defined(VITSCALE_KERNELS_HOST_SIMD_INL_) == defined(HWY_TARGET_TOGGLE)
#ifdef VITSCALE_KERNELS_HOST_SIMD_INL_
#undef VITSCALE_KERNELS_HOST_SIMD_INL_
#else
#define VITSCALE_KERNELS_HOST_SIMD_INL_
#endif
#include <hwy/highway.h>

#include <cstdint>

HWY_BEFORE_NAMESPACE();
namespace vitscale::kernels::detail::host_simd {
namespace HWY_NAMESPACE {
inline HWY_NOINLINE std::int64_t compiled_target() { return HWY_TARGET; }
}  // namespace HWY_NAMESPACE
}  // namespace vitscale::kernels::detail::host_simd
HWY_AFTER_NAMESPACE();
#endif
