// Losses on every host space: softmax cross-entropy with integer labels (label smoothing 0 and 0.1) and
// with soft targets, and sigmoid cross-entropy, against PyTorch's values in float64
// (tests/reference/train_reference.py), logits up to ±80 included; the gradient against central
// differences of a double host formula; bit-identical repeats; and the errors.
#include <support/files.hpp>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <support/testing.hpp>
#include <vector>
#include <vitscale/train/loss.hpp>

namespace vs = vitscale;
using vs::test::mat;
using vs::test::vec;

namespace {

nlohmann::json load(const std::string& file) { return vitscale::test::load_golden_json("train", file, "train_reference.py"); }

template <class Space>
mat<float, Space> matrix_from(const std::vector<double>& values, std::size_t rows, std::size_t cols) {
  REQUIRE(values.size() == rows * cols);
  mat<float, Space> m("m", rows, cols);
  auto host = Kokkos::create_mirror_view(m);
  for (std::size_t k = 0; k < values.size(); ++k) host.data()[k] = static_cast<float>(values[k]);
  Kokkos::deep_copy(m, host);
  return m;
}

template <class Space>
vec<int, Space> labels_from(const std::vector<int>& values) {
  vec<int, Space> v("labels", values.size());
  auto host = Kokkos::create_mirror_view(v);
  for (std::size_t k = 0; k < values.size(); ++k) host(k) = values[k];
  Kokkos::deep_copy(v, host);
  return v;
}

double max_abs_diff(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    if (std::isnan(got[k])) return INFINITY;
    worst = std::max(worst, std::fabs(got[k] - want[k]));
  }
  return worst;
}

// Float logits, double per-row sums: the loss is good to a few float ulps of the largest logit term
// (|z| ≤ 80: 80·6e-8 ≈ 5e-6) relative to its own size; gradients (entries of (p − q)/B, at most 1) are
// float, with fast::exp's 1.2e-7 relative error; with soft targets p is scaled by the row's target mass
// Σ_c y (up to 11 in the multi-hot row), and so is its error.
constexpr double loss_rtol = 2e-7;
constexpr double loss_atol = 1e-6;
constexpr double grad_atol = 1.5e-7;

// Double host formulas of the three losses (batch means), for finite differences.
double softmax_hard_ref(const std::vector<double>& z, const std::vector<int>& labels, std::size_t c, double eps) {
  const std::size_t b = labels.size();
  double total = 0;
  for (std::size_t i = 0; i < b; ++i) {
    const double* row = z.data() + i * c;
    const double m = *std::max_element(row, row + c);
    double s = 0, qz = 0;
    for (std::size_t j = 0; j < c; ++j) {
      s += std::exp(row[j] - m);
      const double q = (1 - eps) * (static_cast<int>(j) == labels[i] ? 1.0 : 0.0) + eps / static_cast<double>(c);
      qz += q * row[j];
    }
    total += m + std::log(s) - qz;
  }
  return total / static_cast<double>(b);
}

double softmax_soft_ref(const std::vector<double>& z, const std::vector<double>& y, std::size_t b, std::size_t c) {
  double total = 0;
  for (std::size_t i = 0; i < b; ++i) {
    const double* row = z.data() + i * c;
    const double m = *std::max_element(row, row + c);
    double s = 0;
    for (std::size_t j = 0; j < c; ++j) s += std::exp(row[j] - m);
    for (std::size_t j = 0; j < c; ++j) total -= y[i * c + j] * (row[j] - m - std::log(s));
  }
  return total / static_cast<double>(b);
}

double sigmoid_ref(const std::vector<double>& z, const std::vector<double>& y, std::size_t b) {
  double total = 0;
  for (std::size_t k = 0; k < z.size(); ++k) {
    const double log_p = -std::log1p(std::exp(-std::fabs(z[k]))) + std::min(z[k], 0.0);  // log σ(z)
    const double log_not_p = log_p - z[k];                                               // log σ(−z)
    total -= y[k] * log_p + (1 - y[k]) * log_not_p;
  }
  return total / static_cast<double>(b);
}

template <class F>
std::vector<double> central_differences(std::vector<double> z, F&& loss, double h) {
  std::vector<double> g(z.size());
  for (std::size_t k = 0; k < z.size(); ++k) {
    const double saved = z[k];
    z[k] = saved + h;
    const double up = loss(z);
    z[k] = saved - h;
    const double down = loss(z);
    z[k] = saved;
    g[k] = (up - down) / (2 * h);
  }
  return g;
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("losses match PyTorch in float64, logits up to ±80 included", Space, loss_golden_id) {
  const auto data = load("losses.json");
  double worst_loss = 0, worst_grad = 0;
  for (const auto& c : data["cases"]) {
    const std::string name = c["name"];
    const std::size_t b = c["batch"], n = c["classes"];
    CAPTURE(name);
    const auto logits = matrix_from<Space>(c["logits"].get<std::vector<double>>(), b, n);
    const auto labels = labels_from<Space>(c["labels"].get<std::vector<int>>());
    mat<float, Space> dlogits("dlogits", b, n);
    const auto check = [&](const char* what, double loss, const nlohmann::json& want, double grad_scale = 1) {
      INFO(std::string(what));
      const double want_loss = want["loss"];
      const double loss_err = std::fabs(loss - want_loss);
      const double grad_err = max_abs_diff(vs::test::read(dlogits), want["dlogits"].get<std::vector<double>>());
      INFO("loss " << loss << " want " << want_loss << "; max |Δdlogits| " << grad_err);
      CHECK(loss_err <= loss_rtol * std::fabs(want_loss) + loss_atol);
      CHECK(grad_err <= grad_atol * grad_scale);
      worst_loss = std::max(worst_loss, loss_err);
      worst_grad = std::max(worst_grad, grad_err);
    };
    for (const char* key : {"hard_eps0.0", "hard_eps0.1"}) {
      vs::test::poison(dlogits);
      const double loss =
          vs::loss::softmax_xent(Space(), logits, labels, dlogits, c[key]["label_smoothing"].get<double>());
      check(key, loss, c[key]);
    }
    const auto soft_values = c["soft"]["targets"].get<std::vector<double>>();
    const auto soft = matrix_from<Space>(soft_values, b, n);
    double max_mass = 1;
    for (std::size_t i = 0; i < b; ++i) {
      double mass = 0;
      for (std::size_t j = 0; j < n; ++j) mass += soft_values[i * n + j];
      max_mass = std::max(max_mass, mass);
    }
    vs::test::poison(dlogits);
    check("soft targets", vs::loss::softmax_xent(Space(), logits, soft, dlogits), c["soft"], max_mass);
    const auto y = matrix_from<Space>(c["sigmoid"]["targets"].get<std::vector<double>>(), b, n);
    vs::test::poison(dlogits);
    check("sigmoid", vs::loss::sigmoid_xent(Space(), logits, y, dlogits), c["sigmoid"]);
  }
  MESSAGE("max |Δloss| " << worst_loss << ", max |Δdlogits| " << worst_grad);
}
VITSCALE_ON_HOST_SPACES(loss_golden_id);

TEST_CASE_TEMPLATE_DEFINE("loss gradients match central differences of the double formulas", Space, loss_fd_id) {
  const std::size_t b = 3, n = 11;
  std::mt19937 rng(7);
  mat<float, Space> logits("logits", b, n), dlogits("dlogits", b, n), soft("soft", b, n), y("y", b, n);
  const auto z = vs::test::fill_random(logits, rng, -6.0, 6.0);
  const auto soft_values = vs::test::fill_random(soft, rng, 0.0, 0.4);  // rows need not sum to one
  const auto y_values = vs::test::fill_random(y, rng, 0.0, 1.0);
  const std::vector<int> label_values = {4, 0, 10};
  const auto labels = labels_from<Space>(label_values);
  // h = 1e-4 in double: truncation error ~h²·|f'''| ≈ 1e-8, far below the float gradient's own error.
  const double h = 1e-4, tol = 5e-7;
  for (double eps : {0.0, 0.1}) {
    CAPTURE(eps);
    const double loss = vs::loss::softmax_xent(Space(), logits, labels, dlogits, eps);
    CHECK(loss == doctest::Approx(softmax_hard_ref(z, label_values, n, eps)).epsilon(1e-7));
    const auto fd = central_differences(
        z, [&](const std::vector<double>& v) { return softmax_hard_ref(v, label_values, n, eps); }, h);
    CHECK(max_abs_diff(vs::test::read(dlogits), fd) <= tol);
  }
  {
    const double loss = vs::loss::softmax_xent(Space(), logits, soft, dlogits);
    CHECK(loss == doctest::Approx(softmax_soft_ref(z, soft_values, b, n)).epsilon(1e-7));
    const auto fd = central_differences(
        z, [&](const std::vector<double>& v) { return softmax_soft_ref(v, soft_values, b, n); }, h);
    CHECK(max_abs_diff(vs::test::read(dlogits), fd) <= tol);
  }
  {
    const double loss = vs::loss::sigmoid_xent(Space(), logits, y, dlogits);
    CHECK(loss == doctest::Approx(sigmoid_ref(z, y_values, b)).epsilon(1e-7));
    const auto fd = central_differences(
        z, [&](const std::vector<double>& v) { return sigmoid_ref(v, y_values, b); }, h);
    CHECK(max_abs_diff(vs::test::read(dlogits), fd) <= tol);
  }
}
VITSCALE_ON_HOST_SPACES(loss_fd_id);

TEST_CASE_TEMPLATE_DEFINE("losses are bit-identical when repeated and in place", Space, loss_repeat_id) {
  const std::size_t b = 257, n = 50;
  std::mt19937 rng(3);
  mat<float, Space> logits("logits", b, n), dlogits("dlogits", b, n), y("y", b, n);
  vs::test::fill_random(logits, rng, -20.0, 20.0);
  vs::test::fill_random(y, rng, 0.0, 1.0);
  std::vector<int> label_values(b);
  for (std::size_t i = 0; i < b; ++i) label_values[i] = static_cast<int>((i * 7) % n);
  const auto labels = labels_from<Space>(label_values);
  const double first = vs::loss::softmax_xent(Space(), logits, labels, dlogits, 0.1);
  const auto first_grad = vs::test::bytes(dlogits);
  CHECK(vs::loss::softmax_xent(Space(), logits, labels, dlogits, 0.1) == first);
  CHECK(vs::test::bytes(dlogits) == first_grad);
  const double sig = vs::loss::sigmoid_xent(Space(), logits, y, dlogits);
  CHECK(vs::loss::sigmoid_xent(Space(), logits, y, dlogits) == sig);
  CHECK(std::isfinite(first));
  CHECK(std::isfinite(sig));
  // In place: dlogits the logits' own memory gives the same loss and gradient.
  const auto sig_grad = vs::test::bytes(dlogits);
  mat<float, Space> in_place("in_place", b, n);
  Kokkos::deep_copy(in_place, logits);
  CHECK(vs::loss::sigmoid_xent(Space(), in_place, y, in_place) == sig);
  CHECK(vs::test::bytes(in_place) == sig_grad);
  Kokkos::deep_copy(in_place, logits);
  CHECK(vs::loss::softmax_xent(Space(), in_place, labels, in_place, 0.1) == first);
  CHECK(vs::test::bytes(in_place) == first_grad);
}
VITSCALE_ON_HOST_SPACES(loss_repeat_id);

TEST_CASE_TEMPLATE_DEFINE("losses reject bad labels, shapes and smoothing", Space, loss_errors_id) {
  const std::size_t b = 4, n = 5;
  std::mt19937 rng(1);
  mat<float, Space> logits("logits", b, n), dlogits("dlogits", b, n), targets("targets", b, n);
  vs::test::fill_random(logits, rng, -1.0, 1.0);
  vs::test::fill_random(targets, rng, 0.0, 1.0);
  const auto good = labels_from<Space>({0, 1, 2, 4});
  CHECK_NOTHROW(vs::loss::softmax_xent(Space(), logits, good, dlogits));
  CHECK_THROWS_WITH_AS(vs::loss::softmax_xent(Space(), logits, labels_from<Space>({0, 1, 5, 2}), dlogits),
                       doctest::Contains("labels(2) is 5, expected a class index in [0, 5)"), vs::error);
  CHECK_THROWS_WITH_AS(vs::loss::softmax_xent(Space(), logits, labels_from<Space>({0, -1, 0, 2}), dlogits),
                       doctest::Contains("labels(1) is -1"), vs::error);
  CHECK_THROWS_WITH_AS(vs::loss::softmax_xent(Space(), logits, labels_from<Space>({0, 1, 2}), dlogits),
                       doctest::Contains("labels is [3], expected [4]"), vs::error);
  CHECK_THROWS_WITH_AS(vs::loss::softmax_xent(Space(), logits, good, dlogits, 1.5),
                       doctest::Contains("label_smoothing is 1.5"), vs::error);
  CHECK_THROWS_WITH_AS(vs::loss::softmax_xent(Space(), logits, good, dlogits, -0.1), doctest::Contains("[0, 1]"),
                       vs::error);
  mat<float, Space> wrong("wrong", b, n + 1), empty("empty", 0, n);
  CHECK_THROWS_WITH_AS(vs::loss::softmax_xent(Space(), logits, good, wrong),
                       doctest::Contains("dlogits is [4, 6], expected [4, 5]"), vs::error);
  CHECK_THROWS_WITH_AS(vs::loss::softmax_xent(Space(), logits, wrong, dlogits),
                       doctest::Contains("targets is [4, 6], expected [4, 5]"), vs::error);
  CHECK_THROWS_WITH_AS(vs::loss::sigmoid_xent(Space(), logits, wrong, dlogits),
                       doctest::Contains("sigmoid_xent: targets is [4, 6]"), vs::error);
  CHECK_THROWS_WITH_AS(vs::loss::sigmoid_xent(Space(), logits, targets, wrong), doctest::Contains("dlogits"),
                       vs::error);
  CHECK_THROWS_WITH_AS(vs::loss::sigmoid_xent(Space(), empty, empty, empty),
                       doctest::Contains("logits is [0, 5], expected a batch"), vs::error);
}
VITSCALE_ON_HOST_SPACES(loss_errors_id);
