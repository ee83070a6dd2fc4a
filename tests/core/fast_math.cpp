// vitscale::fast::{exp, exp2, tanh, erf} against the double-precision std:: functions: a sweep of float bit
// patterns over the whole range (both signs, subnormals to infinity), ulp-dense sweeps around the points
// where a method changes (branch cuts, overflow and underflow limits), the special values, and the same
// functions evaluated inside a Kokkos kernel on every host space.
#include <support/testing.hpp>

#include <vitscale/core/fast_math.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

namespace vs = vitscale;

namespace {

float float_from_bits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
std::uint32_t bits_of(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// The bounds documented in core/fast_math.hpp.
// (exp, exp2, erf: 1.2e-7; tanh 1.8e-7; the kernel test below uses the loosest.)
constexpr double max_relative_error = 1.8e-7;
constexpr double max_subnormal_error = 0x1p-149;

struct error_record {
  double worst_relative = 0;
  float worst_at = 0;
  std::size_t failures = 0;
  std::size_t checked = 0;
  float first_failure = 0;
};

// One input: finite results within max_relative_error (or max_subnormal_error where the exact result is
// below FLT_MIN), infinite results exactly, NaN for NaN.
template <class Fast, class Exact>
void check_one(float x, const Fast& fast, const Exact& exact, error_record& rec, double bound) {
  const float got = fast(x);
  ++rec.checked;
  bool ok;
  if (std::isnan(x)) {
    ok = std::isnan(got);
  } else {
    const double want = exact(static_cast<double>(x));
    const auto rounded = static_cast<float>(want);
    if (std::isinf(rounded)) {
      ok = got == rounded || std::fabs(got - want) <= bound * std::fabs(want);
    } else if (std::fabs(want) < FLT_MIN) {
      ok = std::fabs(static_cast<double>(got) - want) <= max_subnormal_error;
    } else {
      const double rel = std::fabs(static_cast<double>(got) - want) / std::fabs(want);
      ok = rel <= bound;
      if (rel > rec.worst_relative) {
        rec.worst_relative = rel;
        rec.worst_at = x;
      }
    }
    // Odd functions keep the sign of zero.
    if (x == 0 && exact(-0.0) == 0 && std::signbit(got) != std::signbit(exact(static_cast<double>(x)))) ok = false;
  }
  if (!ok && rec.failures++ == 0) rec.first_failure = x;
}

template <class Fast, class Exact>
void sweep(const char* name, const Fast& fast, const Exact& exact, double bound,
           std::initializer_list<float> boundaries) {
  error_record rec;
  // Every 61st bit pattern: all exponents, both signs, NaNs and infinities included.
  for (std::uint64_t b = 0; b <= 0xffffffffu; b += 61) check_one(float_from_bits(static_cast<std::uint32_t>(b)), fast, exact, rec, bound);
  // Every float within 2^14 ulps of each boundary, and of 0.
  for (float c : boundaries) {
    for (float s : {c, -c}) {
      const std::uint32_t mid = bits_of(s);
      for (std::uint32_t d = 0; d < (1u << 14); ++d) {
        check_one(float_from_bits(mid + d), fast, exact, rec, bound);
        check_one(float_from_bits(mid - d), fast, exact, rec, bound);
      }
    }
  }
  for (float x : {0.0f, -0.0f, 1.0f, -1.0f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                  -std::numeric_limits<float>::quiet_NaN(), FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX,
                  std::numeric_limits<float>::denorm_min()})
    check_one(x, fast, exact, rec, bound);
  MESSAGE(std::string(name) << ": " << rec.checked << " inputs, worst relative error " << rec.worst_relative << " ("
               << rec.worst_relative / 0x1p-24 << " × 2^-24) at " << rec.worst_at);
  INFO(std::string(name) << ": first input out of bounds " << rec.first_failure);
  CHECK(rec.failures == 0);
  CHECK(rec.worst_relative <= bound);
}

}  // namespace

TEST_CASE("fast::exp is within its documented error bound over all floats") {
  sweep("exp", [](float x) { return vs::fast::exp(x); }, [](double x) { return std::exp(x); }, 1.2e-7,
        {0.5f * 0.6931472f, 87.33654f, 88.72283f, 103.9721f, 104.0f, 89.0f, 1.0f});
}

TEST_CASE("fast::exp2 is within its documented error bound over all floats") {
  sweep("exp2", [](float x) { return vs::fast::exp2(x); }, [](double x) { return std::exp2(x); }, 1.2e-7,
        {0.5f, 126.0f, 128.0f, 149.0f, 150.0f, 151.0f, 129.0f});
}

TEST_CASE("fast::tanh is within its documented error bound over all floats") {
  sweep("tanh", [](float x) { return vs::fast::tanh(x); }, [](double x) { return std::tanh(x); }, 1.8e-7,
        {0.625f, 9.0f, 10.0f, 1e-20f});
}

TEST_CASE("fast::erf is within its documented error bound over all floats") {
  sweep("erf", [](float x) { return vs::fast::erf(x); }, [](double x) { return std::erf(x); }, 1.2e-7,
        {0.921875f, 3.92f, 4.0f, 1e-20f});
}

TEST_CASE("fast math saturates and passes NaN through") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(vs::fast::exp(inf) == inf);
  CHECK(vs::fast::exp(-inf) == 0.0f);
  CHECK(vs::fast::exp(89.0f) == inf);
  CHECK(vs::fast::exp(-200.0f) == 0.0f);
  CHECK(vs::fast::exp(0.0f) == 1.0f);
  CHECK(vs::fast::exp2(inf) == inf);
  CHECK(vs::fast::exp2(-inf) == 0.0f);
  CHECK(vs::fast::exp2(-149.0f) == std::numeric_limits<float>::denorm_min());
  CHECK(vs::fast::exp2(127.0f) == 0x1p127f);
  CHECK(vs::fast::exp2(-126.0f) == FLT_MIN);
  CHECK(vs::fast::tanh(inf) == 1.0f);
  CHECK(vs::fast::tanh(-inf) == -1.0f);
  CHECK(vs::fast::tanh(9.1f) == 1.0f);
  CHECK(vs::fast::tanh(-20.0f) == -1.0f);
  CHECK(vs::fast::erf(inf) == 1.0f);
  CHECK(vs::fast::erf(-inf) == -1.0f);
  CHECK(vs::fast::erf(3.92f) == 1.0f);
  CHECK(vs::fast::erf(-5.0f) == -1.0f);
  CHECK(std::signbit(vs::fast::tanh(-0.0f)));
  CHECK(std::signbit(vs::fast::erf(-0.0f)));
  for (float x : {nan, -nan}) {
    CHECK(std::isnan(vs::fast::exp(x)));
    CHECK(std::isnan(vs::fast::exp2(x)));
    CHECK(std::isnan(vs::fast::tanh(x)));
    CHECK(std::isnan(vs::fast::erf(x)));
  }
}

TEST_CASE_TEMPLATE_DEFINE("fast math inside a Kokkos kernel matches the host", Space, fast_math_kernel_id) {
  const int n = 4099;
  vs::test::vec<float, Space> x("x", n), y("y", n);
  auto xh = Kokkos::create_mirror_view(x);
  for (int i = 0; i < n; ++i) xh(i) = -110.0f + 220.0f * static_cast<float>(i) / static_cast<float>(n - 1);
  Kokkos::deep_copy(x, xh);
  const Space space;
  for (int f = 0; f < 4; ++f) {
    Kokkos::parallel_for(
        "fast_math", Kokkos::RangePolicy<Space>(space, 0, n), KOKKOS_LAMBDA(int i) {
          const float v = x(i);
          y(i) = f == 0 ? vs::fast::exp(v) : f == 1 ? vs::fast::exp2(v) : f == 2 ? vs::fast::tanh(v) : vs::fast::erf(v);
        });
    space.fence();
    auto yh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), y);
    std::size_t wrong = 0;
    for (int i = 0; i < n; ++i) {
      const double v = xh(i);
      const double want = f == 0 ? std::exp(v) : f == 1 ? std::exp2(v) : f == 2 ? std::tanh(v) : std::erf(v);
      const double got = yh(i);
      const bool ok = std::isinf(static_cast<float>(want)) ? got == static_cast<float>(want)
                      : std::fabs(want) < FLT_MIN   ? std::fabs(got - want) <= max_subnormal_error
                                                    : std::fabs(got - want) <= max_relative_error * std::fabs(want);
      if (!ok) ++wrong;
    }
    CAPTURE(f);
    CHECK(wrong == 0);
  }
}
VITSCALE_ON_HOST_SPACES(fast_math_kernel_id);

TEST_CASE("exp2_flush (attention's softmax weights) is accurate to a few 1e-7 and exactly 0 below 2^-126") {
  double worst = 0;
  for (int i = -126 * 64; i <= 100 * 64; ++i) {
    const float x = static_cast<float>(i) / 64.0f + 0.00390625f * static_cast<float>(i % 7);
    const double exact = std::exp2(static_cast<double>(x));
    if (x < -126.0f) continue;
    worst = std::max(worst, std::fabs(vs::fast::exp2_flush(x) - exact) / exact);
  }
  CHECK(worst < 3e-7);
  CHECK(vs::fast::exp2_flush(-126.5f) == 0.0f);
  CHECK(vs::fast::exp2_flush(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(vs::fast::exp2_flush(0.0f) == 1.0f);
  CHECK(vs::fast::exp2_flush(-1e30f) == 0.0f);
}
