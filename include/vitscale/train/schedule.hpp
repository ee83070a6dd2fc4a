#pragma once
// Learning-rate schedules of the seed papers, as big_vision's utils.create_learning_rate_schedule defines
// them: pure functions of the step (no state), so a resumed run gets the same rate from the step alone.
//
// Every schedule is a decay d(step) times two ramps:
//   warmup   min(1, step / warmup)                 linear from 0 at step 0 to 1 at step `warmup`
//   cooldown min(1, (total − step) / cooldown)     linear from 1 at `total − cooldown` to 0 at `total`
// (a ramp of 0 steps is 1). The decays, with progress p = clamp((step − warmup) / (total − warmup), 0, 1):
//   constant  peak
//   rsqrt     peak / sqrt(1 + (step + shift − warmup) / timescale) from `warmup` on, and
//             peak / sqrt(1 + shift / timescale) during warmup (the ViT-G / big_vision "rsqrt")
//   cosine    end + (peak − end)·(1 + cos(π·p)) / 2   (big_vision's has end = 0)
//   linear    end + (peak − end)·(1 − p)
// Steps run from 0 to `total` (where a cooldown reaches 0); a step outside, or parameters big_vision would
// reject or divide by zero on, are a vitscale::error.
//
// Aggregates, so C++17 code writes them positionally: schedule::warmup_rsqrt_cooldown{1e-3, 10'000, 10'000,
// 50'000, 1'000'000} (peak, warmup, timescale, cooldown, total).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vitscale/core/error.hpp>

namespace vitscale::schedule {

namespace detail {

// What every schedule requires of its common parameters.
inline void check_common(const char* name, double peak, std::int64_t warmup, std::int64_t cooldown,
                         std::int64_t total) {
  using ::vitscale::detail::fail;
  if (!(std::isfinite(peak) && peak >= 0)) fail(name, ": peak is ", peak, ", expected a finite value ≥ 0");
  if (total < 1) fail(name, ": total is ", total, " steps, expected at least 1");
  if (warmup < 0) fail(name, ": warmup is ", warmup, " steps, expected 0 or more");
  if (cooldown < 0) fail(name, ": cooldown is ", cooldown, " steps, expected 0 or more");
  if (warmup >= total) fail(name, ": warmup (", warmup, " steps) must end before total (", total, " steps)");
  if (warmup + cooldown > total)
    fail(name, ": warmup (", warmup, ") and cooldown (", cooldown, ") together exceed total (", total, " steps)");
}

inline void check_end(const char* name, double end_value) {
  if (!(std::isfinite(end_value) && end_value >= 0))
    ::vitscale::detail::fail(name, ": end_value is ", end_value, ", expected a finite value ≥ 0");
}

inline void check_step(const char* name, std::int64_t step, std::int64_t total) {
  if (step < 0 || step > total)
    ::vitscale::detail::fail(name, ": step ", step, " is outside the schedule's [0, ", total, "]");
}

// Fraction of the decay phase done at `step`, in [0, 1].
inline double progress(std::int64_t step, std::int64_t warmup, std::int64_t total) {
  const double p = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
  return std::min(1.0, std::max(0.0, p));
}

// The decay value times the warmup and cooldown ramps.
inline double ramps(double value, std::int64_t step, std::int64_t warmup, std::int64_t cooldown, std::int64_t total) {
  if (warmup > 0) value *= std::min(1.0, static_cast<double>(step) / static_cast<double>(warmup));
  if (cooldown > 0) value *= std::min(1.0, static_cast<double>(total - step) / static_cast<double>(cooldown));
  return value;
}

}  // namespace detail

// Linear warmup to `peak`, constant, then a linear cooldown to 0 over the last `cooldown` steps of `total`.
struct warmup_constant {
  double peak;
  std::int64_t warmup;
  std::int64_t cooldown;
  std::int64_t total;

  double operator()(std::int64_t step) const {
    const char* name = "schedule::warmup_constant";
    detail::check_common(name, peak, warmup, cooldown, total);
    detail::check_step(name, step, total);
    return detail::ramps(peak, step, warmup, cooldown, total);
  }
};

// Linear warmup, reciprocal-square-root decay with `timescale` (and big_vision's optional `shift`, which
// continues a decay begun elsewhere), then a linear cooldown to 0: the ViT-G paper's schedule.
struct warmup_rsqrt_cooldown {
  double peak;
  std::int64_t warmup;
  double timescale;
  std::int64_t cooldown;
  std::int64_t total;
  double shift = 0;

  double operator()(std::int64_t step) const {
    const char* name = "schedule::warmup_rsqrt_cooldown";
    detail::check_common(name, peak, warmup, cooldown, total);
    if (!(std::isfinite(timescale) && timescale > 0))
      ::vitscale::detail::fail(name, ": timescale is ", timescale, " steps, expected a finite value > 0");
    if (!(std::isfinite(shift) && shift >= 0))
      ::vitscale::detail::fail(name, ": shift is ", shift, " steps, expected a finite value ≥ 0");
    detail::check_step(name, step, total);
    const double since = step >= warmup ? static_cast<double>(step - warmup) + shift : shift;
    return detail::ramps(peak / std::sqrt(1 + since / timescale), step, warmup, cooldown, total);
  }
};

// Linear warmup, then cosine decay from `peak` to `end_value` at `total` (and an optional linear cooldown).
struct warmup_cosine {
  double peak;
  std::int64_t warmup;
  std::int64_t total;
  double end_value = 0;
  std::int64_t cooldown = 0;

  double operator()(std::int64_t step) const {
    const char* name = "schedule::warmup_cosine";
    detail::check_common(name, peak, warmup, cooldown, total);
    detail::check_end(name, end_value);
    detail::check_step(name, step, total);
    const double pi = 3.141592653589793238462643383279502884;
    const double p = detail::progress(step, warmup, total);
    return detail::ramps(end_value + (peak - end_value) * 0.5 * (1 + std::cos(pi * p)), step, warmup, cooldown, total);
  }
};

// Linear warmup, then linear decay from `peak` to `end_value` at `total` (and an optional linear cooldown).
struct warmup_linear {
  double peak;
  std::int64_t warmup;
  std::int64_t total;
  double end_value = 0;
  std::int64_t cooldown = 0;

  double operator()(std::int64_t step) const {
    const char* name = "schedule::warmup_linear";
    detail::check_common(name, peak, warmup, cooldown, total);
    detail::check_end(name, end_value);
    detail::check_step(name, step, total);
    const double p = detail::progress(step, warmup, total);
    return detail::ramps(end_value + (peak - end_value) * (1 - p), step, warmup, cooldown, total);
  }
};

}  // namespace vitscale::schedule
