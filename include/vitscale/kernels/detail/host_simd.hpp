#pragma once
// vitscale's host SIMD kernels, compiled for every Highway target this translation unit builds
// (host_simd-inl.hpp lists their per-target headers) and dispatched at run time to the best target the CPU
// runs and VITSCALE_SIMD_TARGET allows (core/simd.hpp). The kernels' headers include this one where
// VITSCALE_HOST_SIMD is 1 and call the call_* functions below.
//
// Highway 1.0.3 compiles one hwy/foreach_target.h per translation unit, and only when it comes before
// <hwy/highway.h>: a program that uses Highway itself must include vitscale's headers first and cannot have a
// foreach_target.h of its own in the same file (put its own dynamic-dispatch code in another file).

#include <vitscale/core/simd.hpp>

#if VITSCALE_HOST_SIMD

#if defined(HWY_HIGHWAY_INCLUDED) || defined(HIGHWAY_HWY_FOREACH_TARGET_H_)
#error "vitscale: include vitscale's headers before <hwy/highway.h> and <hwy/foreach_target.h> (Highway 1.0.3 compiles the targets of only one foreach_target.h per file, and only when highway.h comes after it)"
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "vitscale/kernels/detail/host_simd-inl.hpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/highway.h>
#include <vitscale/kernels/detail/host_simd-inl.hpp>

#if HWY_ONCE
namespace vitscale::kernels::detail {

namespace host_simd {
// Checks, once per process, that a target compiled here is among those the CPU (and VITSCALE_SIMD_TARGET)
// allows, so that a cap below every compiled target is an error, not a crash.
inline void ready() {
  static const bool ok = [] {
    ::vitscale::simd::apply_environment();
    return (::vitscale::simd::supported_target_bits() & HWY_TARGETS) != 0;
  }();
  if (!ok)
    ::vitscale::detail::fail("host SIMD kernels: no target compiled into this program runs here (VITSCALE_SIMD_TARGET "
                             "caps below all of them?); compiled: ", HWY_TARGETS, ", allowed: ",
                             ::vitscale::simd::supported_target_bits());
}

HWY_EXPORT(compiled_target);
// The target the host SIMD kernels run now (a Highway target bit; simd::target_name names it).
inline std::int64_t call_target() {
  ready();
  return HWY_DYNAMIC_DISPATCH(compiled_target)();
}
}  // namespace host_simd

namespace attention_simd {

HWY_EXPORT(lane_products);
HWY_EXPORT(softmax_step);
HWY_EXPORT(ds_rows);
HWY_EXPORT(lane_accumulate);

inline void call_lane_products(const float* rows, const float* t, float* out, int n, int d) {
  host_simd::ready();
  HWY_DYNAMIC_DISPATCH(lane_products)(rows, t, out, n, d);
}
inline void call_softmax_step(float* s, int n, float* m, float* z, float* alpha) {
  host_simd::ready();
  HWY_DYNAMIC_DISPATCH(softmax_step)(s, n, m, z, alpha);
}
inline void call_ds_rows(float* p, float* ds, int n, const float* shift, const float* delta, bool per_lane,
                         float factor) {
  host_simd::ready();
  HWY_DYNAMIC_DISPATCH(ds_rows)(p, ds, n, shift, delta, per_lane ? 1 : 0, factor);
}
inline void call_lane_accumulate(float* acc, const float* rows, const float* w, int n, int d, const float* alpha) {
  host_simd::ready();
  HWY_DYNAMIC_DISPATCH(lane_accumulate)(acc, rows, w, n, d, alpha);
}

}  // namespace attention_simd

namespace fma_peak {
HWY_EXPORT(fma_chains);
HWY_EXPORT(float_lanes);
// See fma_peak-inl.hpp: floating-point operations done by `iterations` rounds of 12 FMA chains on this thread.
inline double call_fma_chains(std::int64_t iterations, float* sink) {
  host_simd::ready();
  return HWY_DYNAMIC_DISPATCH(fma_chains)(iterations, sink);
}
inline int call_float_lanes() {
  host_simd::ready();
  return HWY_DYNAMIC_DISPATCH(float_lanes)();
}
}  // namespace fma_peak
}  // namespace vitscale::kernels::detail
#endif  // HWY_ONCE

#endif  // VITSCALE_HOST_SIMD
