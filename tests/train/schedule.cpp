// Learning-rate schedules against big_vision's create_learning_rate_schedule written in numpy
// (tests/reference/train_reference.py): every step of short schedules and the key steps of long ones;
// the shape of each (zero at step 0, peak at the end of warmup, monotone decay, zero at the end of a
// cooldown); and the parameter and step errors.
#include <support/files.hpp>
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <vitscale/train/schedule.hpp>

namespace vs = vitscale;
namespace sched = vitscale::schedule;

namespace {

nlohmann::json load(const std::string& file) { return vitscale::test::load_golden_json("train", file, "train_reference.py"); }

// Double arithmetic on both sides; the golden values are written with 11 significant digits.
constexpr double rtol = 1e-10;

template <class Schedule>
void check_values(const Schedule& lr, const nlohmann::json& c, double& worst) {
  const auto steps = c["steps"].get<std::vector<std::int64_t>>();
  const auto values = c["values"].get<std::vector<double>>();
  REQUIRE(steps.size() == values.size());
  for (std::size_t k = 0; k < steps.size(); ++k) {
    const double got = lr(steps[k]);
    const double err = std::fabs(got - values[k]);
    INFO("step " << steps[k] << ": got " << got << ", want " << values[k]);
    CHECK(err <= rtol * std::fabs(values[k]) + 1e-16);
    if (values[k] != 0) worst = std::max(worst, err / std::fabs(values[k]));
  }
}

}  // namespace

TEST_CASE("schedules match big_vision's create_learning_rate_schedule") {
  const auto data = load("schedules.json");
  double worst = 0;
  int checked = 0;
  for (const auto& c : data["cases"]) {
    const std::string kind = c["kind"];
    const auto& p = c["params"];
    CAPTURE(kind);
    CAPTURE(p.dump());
    if (kind == "rsqrt") {
      check_values(
          sched::warmup_rsqrt_cooldown{p["peak"], p["warmup"], p["timescale"], p["cooldown"], p["total"], p["shift"]},
          c, worst);
    } else if (kind == "cosine") {
      check_values(sched::warmup_cosine{p["peak"], p["warmup"], p["total"], p["end_value"], p["cooldown"]}, c, worst);
    } else if (kind == "linear") {
      check_values(sched::warmup_linear{p["peak"], p["warmup"], p["total"], p["end_value"], p["cooldown"]}, c, worst);
    } else if (kind == "constant") {
      check_values(sched::warmup_constant{p["peak"], p["warmup"], p["cooldown"], p["total"]}, c, worst);
    } else {
      FAIL("unknown kind " << kind);
    }
    ++checked;
  }
  CHECK(checked == 10);
  MESSAGE("max relative error " << worst);
}

TEST_CASE("schedules ramp up, decay monotonically and cool down to zero") {
  const sched::warmup_rsqrt_cooldown rsqrt{1e-3, 100, 50.0, 200, 1000};
  const sched::warmup_cosine cosine{2e-3, 100, 1000};
  const sched::warmup_linear linear{2e-3, 100, 1000, 1e-4};
  const sched::warmup_constant constant{5e-4, 100, 200, 1000};
  CHECK(rsqrt(0) == 0);
  CHECK(cosine(0) == 0);
  CHECK(linear(0) == 0);
  CHECK(constant(0) == 0);
  CHECK(rsqrt(100) == 1e-3);
  CHECK(cosine(100) == 2e-3);
  CHECK(linear(100) == 2e-3);
  CHECK(constant(100) == 5e-4);
  CHECK(rsqrt(1000) == 0);
  CHECK(constant(1000) == 0);
  CHECK(cosine(1000) == doctest::Approx(0).epsilon(1e-15));
  CHECK(linear(1000) == doctest::Approx(1e-4).epsilon(1e-15));
  // Warmup: strictly increasing; decay: non-increasing to the end.
  for (std::int64_t s = 0; s < 100; ++s) {
    CHECK(rsqrt(s) < rsqrt(s + 1));
    CHECK(cosine(s) < cosine(s + 1));
    CHECK(linear(s) < linear(s + 1));
  }
  for (std::int64_t s = 100; s < 1000; ++s) {
    CHECK(rsqrt(s) >= rsqrt(s + 1));
    CHECK(cosine(s) >= cosine(s + 1));
    CHECK(linear(s) >= linear(s + 1));
    CHECK(constant(s) >= constant(s + 1));
  }
  // rsqrt: 1/sqrt(1 + t/timescale) after warmup, times the cooldown ramp over the last 200 steps.
  CHECK(rsqrt(150) == doctest::Approx(1e-3 / std::sqrt(2.0)).epsilon(1e-14));
  CHECK(rsqrt(900) == doctest::Approx(1e-3 / std::sqrt(1 + 800.0 / 50) * 0.5).epsilon(1e-14));
  // No warmup: the peak at step 0.
  CHECK(sched::warmup_constant{1.0, 0, 0, 10}(0) == 1.0);
}

TEST_CASE("schedules reject bad parameters and steps with a sentence") {
  const sched::warmup_rsqrt_cooldown good{1e-3, 10, 10.0, 20, 100};
  CHECK_THROWS_WITH_AS(good(-1), doctest::Contains("step -1 is outside the schedule's [0, 100]"), vs::error);
  CHECK_THROWS_WITH_AS(good(101), doctest::Contains("step 101 is outside"), vs::error);
  CHECK_NOTHROW(good(100));
  CHECK_THROWS_WITH_AS((sched::warmup_rsqrt_cooldown{1e-3, 60, 10.0, 50, 100}(0)),
                       doctest::Contains("warmup (60) and cooldown (50) together exceed total (100 steps)"), vs::error);
  CHECK_THROWS_WITH_AS((sched::warmup_rsqrt_cooldown{1e-3, 10, 0.0, 20, 100}(0)), doctest::Contains("timescale is 0"),
                       vs::error);
  CHECK_THROWS_WITH_AS((sched::warmup_rsqrt_cooldown{1e-3, 10, 10.0, 20, 100, -1.0}(0)),
                       doctest::Contains("shift is -1"), vs::error);
  CHECK_THROWS_WITH_AS((sched::warmup_cosine{1e-3, 100, 100}(0)),
                       doctest::Contains("warmup (100 steps) must end before total (100 steps)"), vs::error);
  CHECK_THROWS_WITH_AS((sched::warmup_cosine{1e-3, -1, 100}(0)), doctest::Contains("warmup is -1 steps"), vs::error);
  CHECK_THROWS_WITH_AS((sched::warmup_linear{1e-3, 0, 100, 0.0, -5}(0)), doctest::Contains("cooldown is -5 steps"),
                       vs::error);
  CHECK_THROWS_WITH_AS((sched::warmup_linear{1e-3, 0, 100, -1e-3}(0)), doctest::Contains("end_value is -0.001"),
                       vs::error);
  CHECK_THROWS_WITH_AS((sched::warmup_constant{-1.0, 0, 0, 10}(0)), doctest::Contains("peak is -1"), vs::error);
  CHECK_THROWS_WITH_AS((sched::warmup_constant{1.0, 0, 0, 0}(0)), doctest::Contains("total is 0 steps"), vs::error);
  CHECK_THROWS_WITH_AS((sched::warmup_constant{std::nan(""), 0, 0, 10}(0)), doctest::Contains("peak is nan"),
                       vs::error);
}
