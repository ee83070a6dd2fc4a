// Position embeddings on the host: big_vision's sin-cos table and timm's resampling (bicubic and bilinear,
// antialias on and off) against golden values from numpy / PyTorch 1.13 + timm
// (tests/reference/posemb_reference.py), a constant table staying constant, and the errors.
#include <support/files.hpp>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <vitscale/model/posemb.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace vs = vitscale;

namespace {

nlohmann::json load(const std::string& file) { return vitscale::test::load_golden_json("posemb", file, "posemb_reference.py"); }

double max_abs_diff(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (std::size_t k = 0; k < got.size(); ++k) worst = std::max(worst, std::fabs(double(got[k]) - want[k]));
  return worst;
}

// Float storage of values O(1): 1e-5 covers float rounding of the result and PyTorch's float arithmetic.
constexpr double tolerance = 1e-5;

}  // namespace

TEST_CASE("posemb_sincos_2d matches big_vision's formula") {
  const auto data = load("sincos.json");
  double worst = 0;
  for (const auto& table : data["tables"]) {
    const int h = table["h"], w = table["w"], width = table["width"];
    const auto want = table["values"].get<std::vector<double>>();
    std::vector<float> got(static_cast<std::size_t>(h * w * width), std::nanf(""));
    vs::posemb_sincos_2d(h, w, width, got.data(), data["temperature"].get<double>());
    const double err = max_abs_diff(got, want);
    INFO(h << "x" << w << " width " << width << ": max abs error " << err);
    CHECK(err < tolerance);
    worst = std::max(worst, err);
  }
  MESSAGE("posemb_sincos_2d: max abs error against numpy " << worst);

  // The first row is (x, y) = (0, 0): sines 0, cosines 1; ω_0 = 1, the last frequency 1/temperature.
  std::vector<float> t(3 * 2 * 16);
  vs::posemb_sincos_2d(3, 2, 16, t.data());
  for (int i = 0; i < 4; ++i) {
    CHECK(t[i] == 0.0f);
    CHECK(t[4 + i] == 1.0f);
    CHECK(t[8 + i] == 0.0f);
    CHECK(t[12 + i] == 1.0f);
  }
  // Row 1 is (x, y) = (1, 0), row 2 is (0, 1).
  CHECK(t[16 + 0] == doctest::Approx(std::sin(1.0)));
  CHECK(t[16 + 3] == doctest::Approx(std::sin(1e-4)));
  CHECK(t[32 + 8] == doctest::Approx(std::sin(1.0)));
  CHECK(t[32 + 0] == 0.0f);
}

TEST_CASE("resample_posemb matches timm's resample_abs_pos_embed (PyTorch 1.13)") {
  const auto data = load("resample.json");
  double worst[2][2] = {{0, 0}, {0, 0}};  // [bicubic?][antialias?]
  int checked = 0;
  for (const auto& source : data["sources"]) {
    const int prefix = source["prefix"], old_h = source["old_h"], old_w = source["old_w"], width = source["width"];
    const auto in = source["values"].get<std::vector<float>>();
    REQUIRE(in.size() == static_cast<std::size_t>((prefix + old_h * old_w) * width));
    for (const auto& c : source["cases"]) {
      const int new_h = c["new_h"], new_w = c["new_w"];
      const std::string mode = c["mode"];
      const bool aa = c["antialias"];
      const auto kind = mode == "bicubic" ? vs::interpolation::bicubic : vs::interpolation::bilinear;
      const auto want = c["values"].get<std::vector<double>>();
      std::vector<float> got(static_cast<std::size_t>((prefix + new_h * new_w) * width), std::nanf(""));
      vs::resample_posemb(in.data(), prefix, old_h, old_w, width, got.data(), new_h, new_w, kind, aa);
      const double err = max_abs_diff(got, want);
      INFO(source["name"].get<std::string>() << " " << old_h << "x" << old_w << " -> " << new_h << "x" << new_w
                                             << " " << mode << " antialias " << aa << ": max abs error " << err);
      CHECK(err < tolerance);
      for (int k = 0; k < prefix * width; ++k) CHECK(got[k] == in[k]);  // the class token, untouched
      double& w = worst[kind == vs::interpolation::bicubic][aa];
      w = std::max(w, err);
      ++checked;
    }
  }
  CHECK(checked == 4 * 4 + 3 * 4);
  MESSAGE("resample_posemb max abs error against PyTorch: bicubic aa " << worst[1][1] << ", bicubic " << worst[1][0]
                                                                       << ", bilinear aa " << worst[0][1]
                                                                       << ", bilinear " << worst[0][0]);
}

TEST_CASE("resample_posemb: the same grid is a copy, and a constant table stays constant") {
  std::vector<float> in((2 + 5 * 7) * 3);
  for (std::size_t k = 0; k < in.size(); ++k) in[k] = std::sin(0.37f * static_cast<float>(k)) + 0.1f;
  std::vector<float> out(in.size());
  vs::resample_posemb(in.data(), 2, 5, 7, 3, out.data(), 5, 7, vs::interpolation::bicubic);
  CHECK(out == in);

  std::vector<float> flat((1 + 7 * 5) * 4, 0.625f);
  flat[0] = -3.0f;
  const std::pair<int, int> sizes[] = {{11, 3}, {2, 13}, {1, 1}, {7, 9}};
  for (auto kind : {vs::interpolation::bilinear, vs::interpolation::bicubic})
    for (bool aa : {false, true})
      for (auto size : sizes) {
        std::vector<float> r((1 + size.first * size.second) * 4);
        vs::resample_posemb(flat.data(), 1, 7, 5, 4, r.data(), size.first, size.second, kind, aa);
        CHECK(r[0] == -3.0f);
        for (std::size_t k = 4; k < r.size(); ++k) CHECK(r[k] == doctest::Approx(0.625).epsilon(1e-6));
      }
}

TEST_CASE("position-embedding functions reject bad arguments with vitscale::error") {
  std::vector<float> buf(4096);
  CHECK_THROWS_AS(vs::posemb_sincos_2d(4, 4, 30, buf.data()), vs::error);  // not a multiple of 4
  CHECK_THROWS_AS(vs::posemb_sincos_2d(4, 4, 4, buf.data()), vs::error);   // one frequency: 0/0 in big_vision
  CHECK_THROWS_AS(vs::posemb_sincos_2d(0, 4, 8, buf.data()), vs::error);
  CHECK_THROWS_AS(vs::posemb_sincos_2d(4, -1, 8, buf.data()), vs::error);
  CHECK_THROWS_AS(vs::posemb_sincos_2d(4, 4, 8, buf.data(), 0.0), vs::error);
  CHECK_THROWS_AS(vs::posemb_sincos_2d(4, 4, 8, nullptr), vs::error);
  CHECK_THROWS_WITH_AS(vs::posemb_sincos_2d(2, 2, 10, buf.data()),
                       doctest::Contains("multiple of 4"), vs::error);

  std::vector<float> in(17 * 8), out(37 * 8);
  const auto bic = vs::interpolation::bicubic;
  CHECK_THROWS_AS(vs::resample_posemb(in.data(), -1, 4, 4, 8, out.data(), 6, 6, bic), vs::error);
  CHECK_THROWS_AS(vs::resample_posemb(in.data(), 1, 0, 4, 8, out.data(), 6, 6, bic), vs::error);
  CHECK_THROWS_AS(vs::resample_posemb(in.data(), 1, 4, 4, 8, out.data(), 6, 0, bic), vs::error);
  CHECK_THROWS_AS(vs::resample_posemb(in.data(), 1, 4, 4, 0, out.data(), 6, 6, bic), vs::error);
  CHECK_THROWS_AS(vs::resample_posemb(nullptr, 1, 4, 4, 8, out.data(), 6, 6, bic), vs::error);
  CHECK_THROWS_AS(vs::resample_posemb(buf.data(), 1, 4, 4, 8, buf.data() + 8, 6, 6, bic), vs::error);  // overlap
  CHECK_NOTHROW(vs::resample_posemb(buf.data(), 1, 4, 4, 8, buf.data() + 17 * 8, 6, 6, bic));            // adjacent
}
