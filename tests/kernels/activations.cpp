// GELU (tanh approximation and exact erf form), with and without a fused bias: forward and backward against
// a double reference in float and bf16, the derivative against finite differences of the kernel itself in
// double, poisoned outputs, and shape errors.
#include <support/testing.hpp>

#include <vitscale/kernels/activations.hpp>

#include <cmath>
#include <random>
#include <vector>

namespace vs = vitscale;
namespace vk = vitscale::kernels;
using vk::gelu_kind;
using vs::test::mat;
using vs::test::vec;

namespace {

const double pi = std::acos(-1.0);

double gelu_ref(gelu_kind kind, double x) {
  if (kind == gelu_kind::tanh) return 0.5 * x * (1 + std::tanh(std::sqrt(2 / pi) * (x + 0.044715 * x * x * x)));
  return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
}

double gelu_derivative_ref(gelu_kind kind, double x) {
  if (kind == gelu_kind::tanh) {
    const double k = std::sqrt(2 / pi), u = k * (x + 0.044715 * x * x * x);
    const double sech2 = 1 / (std::cosh(u) * std::cosh(u));
    return 0.5 * (1 + std::tanh(u)) + 0.5 * x * sech2 * k * (1 + 3 * 0.044715 * x * x);
  }
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-x * x / 2) / std::sqrt(2 * pi);
}

template <gelu_kind Kind, class T, class Space>
void check_against_reference(std::size_t rows, std::size_t cols, double tol) {
  CAPTURE(rows);
  CAPTURE(cols);
  INFO("kind " << (Kind == gelu_kind::tanh ? "tanh" : "erf") << ", storage " << std::string(vs::test::type_name<T>()));
  std::mt19937 rng(static_cast<unsigned>(rows * 31 + cols));
  mat<T, Space> x("x", rows, cols), y("y", rows, cols), yb("yb", rows, cols), dy("dy", rows, cols);
  mat<T, Space> dx("dx", rows, cols), dxb("dxb", rows, cols);
  vec<float, Space> bias("bias", cols), dbias("dbias", cols);
  const auto ws_shape = vk::gelu_bias_backward_workspace(rows, cols);
  mat<float, Space> workspace("workspace", ws_shape.chunks, ws_shape.cols);
  // [-5, 5) reaches both saturated tails and the curved middle.
  const auto xs = vs::test::fill_random(x, rng, -5.0, 5.0);
  const auto bs = vs::test::fill_random(bias, rng, -1.0, 1.0);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  for (auto v : {y, yb, dx, dxb}) vs::test::poison(v);
  vs::test::poison(dbias);

  const Space space;
  vk::gelu_forward<Kind>(space, x, y);
  vk::gelu_bias_forward<Kind>(space, x, bias, yb);
  vk::gelu_backward<Kind>(space, x, dy, dx);
  vk::gelu_bias_backward<Kind>(space, x, bias, dy, dxb, dbias, workspace);
  space.fence();

  std::vector<double> want_y(rows * cols), want_yb(rows * cols), want_dx(rows * cols), want_dxb(rows * cols);
  std::vector<double> want_dbias(cols, 0.0);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      const std::size_t k = i * cols + j;
      want_y[k] = gelu_ref(Kind, xs[k]);
      want_yb[k] = gelu_ref(Kind, xs[k] + bs[j]);
      want_dx[k] = dys[k] * gelu_derivative_ref(Kind, xs[k]);
      want_dxb[k] = dys[k] * gelu_derivative_ref(Kind, xs[k] + bs[j]);
      want_dbias[j] += want_dxb[k];
    }
  vs::test::check_close(vs::test::read(y), want_y, tol, "gelu(x)");
  vs::test::check_close(vs::test::read(yb), want_yb, tol, "gelu(x + bias)");
  vs::test::check_close(vs::test::read(dx), want_dx, tol, "dx");
  vs::test::check_close(vs::test::read(dxb), want_dxb, tol, "dx with bias");
  // dbias is summed in float from unrounded products whatever the storage: float's tolerance.
  vs::test::check_close(vs::test::read(dbias), want_dbias, 1e-5, "dbias");
}

template <gelu_kind Kind, class Space>
void check_kind() {
  constexpr double fp32_tol = 1e-5;  // float storage, float arithmetic
  constexpr double bf16_tol = 1e-2;  // bf16 storage: one rounding of the output, 2^-8 relative
  for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{197, 192}, {3, 768}, {1, 50}, {257, 3}}) {
    check_against_reference<Kind, float, Space>(rows, cols, fp32_tol);
    check_against_reference<Kind, vs::bf16, Space>(rows, cols, bf16_tol);
  }
}

}  // namespace

TEST_CASE("the GELU reference formulas give the published values") {
  // jax.nn.gelu(1.0, approximate=True) and torch.nn.functional.gelu(torch.tensor(1.0)).
  CHECK(gelu_ref(gelu_kind::tanh, 1.0) == doctest::Approx(0.8411919906082768).epsilon(1e-14));
  CHECK(gelu_ref(gelu_kind::erf, 1.0) == doctest::Approx(0.8413447460685429).epsilon(1e-14));
  CHECK(vk::gelu<gelu_kind::tanh>(1.0) == doctest::Approx(0.8411919906082768).epsilon(1e-14));
  CHECK(vk::gelu<gelu_kind::erf>(-1.0) == doctest::Approx(-0.15865525393145707).epsilon(1e-14));
}

TEST_CASE_TEMPLATE_DEFINE("gelu forward and backward match a double reference", Space, gelu_reference_id) {
  SUBCASE("tanh approximation (big_vision)") { check_kind<gelu_kind::tanh, Space>(); }
  SUBCASE("exact erf form (PyTorch)") { check_kind<gelu_kind::erf, Space>(); }
}
VITSCALE_ON_HOST_SPACES(gelu_reference_id);

namespace {

// The kernels in double storage. GELU is element-wise, so one forward at x + h and one at x − h give the
// whole derivative; the bias gradient of L = Σ w·gelu(x + b) needs a pair of forwards per column.
template <gelu_kind Kind, class Space>
void check_finite_differences() {
  INFO("kind " << (Kind == gelu_kind::tanh ? "tanh" : "erf"));
  const std::size_t rows = 7, cols = 50;
  constexpr double h = 1e-5, fd_tol = 1e-7;  // truncation ~h², round-off ~1e-16/h
  std::mt19937 rng(3);
  mat<double, Space> x("x", rows, cols), xp("x+h", rows, cols), xm("x-h", rows, cols), w("w", rows, cols);
  mat<double, Space> yp("yp", rows, cols), ym("ym", rows, cols), dx("dx", rows, cols), dxb("dxb", rows, cols);
  vec<double, Space> bias("bias", cols), dbias("dbias", cols);
  const auto ws_shape = vk::gelu_bias_backward_workspace(rows, cols);
  mat<double, Space> workspace("workspace", ws_shape.chunks, ws_shape.cols);
  const auto xs = vs::test::fill_random(x, rng, -4.0, 4.0);
  const auto bs = vs::test::fill_random(bias, rng, -1.0, 1.0);
  const auto ws = vs::test::fill_random(w, rng, -1.0, 1.0);
  auto xp_host = Kokkos::create_mirror_view(xp);
  auto xm_host = Kokkos::create_mirror_view(xm);
  for (std::size_t k = 0; k < xs.size(); ++k) {
    xp_host.data()[k] = xs[k] + h;
    xm_host.data()[k] = xs[k] - h;
  }
  Kokkos::deep_copy(xp, xp_host);
  Kokkos::deep_copy(xm, xm_host);

  const Space space;
  vk::gelu_forward<Kind>(space, xp, yp);
  vk::gelu_forward<Kind>(space, xm, ym);
  vk::gelu_backward<Kind>(space, x, w, dx);
  vk::gelu_bias_backward<Kind>(space, x, bias, w, dxb, dbias, workspace);
  space.fence();
  const auto yps = vs::test::read(yp), yms = vs::test::read(ym);
  std::vector<double> numeric(xs.size());
  for (std::size_t k = 0; k < xs.size(); ++k) numeric[k] = ws[k] * (yps[k] - yms[k]) / (2 * h);
  vs::test::check_close(vs::test::read(dx), numeric, fd_tol, "dx vs finite differences");

  std::vector<double> numeric_dbias(cols);
  auto bias_host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), bias);
  auto loss = [&] {
    vk::gelu_bias_forward<Kind>(space, x, bias, yp);
    space.fence();
    const auto ys = vs::test::read(yp);
    double l = 0;
    for (std::size_t k = 0; k < ys.size(); ++k) l += ws[k] * ys[k];
    return l;
  };
  for (std::size_t j = 0; j < cols; ++j) {
    bias_host(j) = bs[j] + h;
    Kokkos::deep_copy(bias, bias_host);
    const double up = loss();
    bias_host(j) = bs[j] - h;
    Kokkos::deep_copy(bias, bias_host);
    const double down = loss();
    bias_host(j) = bs[j];
    Kokkos::deep_copy(bias, bias_host);
    numeric_dbias[j] = (up - down) / (2 * h);
  }
  vs::test::check_close(vs::test::read(dbias), numeric_dbias, fd_tol, "dbias vs finite differences");
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("gelu gradients match finite differences in double", Space, gelu_fd_id) {
  check_finite_differences<gelu_kind::tanh, Space>();
  check_finite_differences<gelu_kind::erf, Space>();
}
VITSCALE_ON_HOST_SPACES(gelu_fd_id);

TEST_CASE_TEMPLATE_DEFINE("gelu bias gradient is bit-identical from run to run", Space, gelu_determinism_id) {
  const std::size_t rows = 197 * 4, cols = 384;
  std::mt19937 rng(5);
  mat<float, Space> x("x", rows, cols), dy("dy", rows, cols), dx("dx", rows, cols);
  vec<float, Space> bias("bias", cols), dbias("dbias", cols);
  const auto ws_shape = vk::gelu_bias_backward_workspace(rows, cols);
  mat<float, Space> workspace("workspace", ws_shape.chunks, ws_shape.cols);
  vs::test::fill_random(x, rng, -3.0, 3.0);
  vs::test::fill_random(bias, rng, -1.0, 1.0);
  vs::test::fill_random(dy, rng, -1.0, 1.0);
  const Space space;
  vk::gelu_bias_backward<gelu_kind::tanh>(space, x, bias, dy, dx, dbias, workspace);
  space.fence();
  const auto first = vs::test::bytes(dbias);
  vs::test::poison(dbias);
  vk::gelu_bias_backward<gelu_kind::tanh>(space, x, bias, dy, dx, dbias, workspace);
  space.fence();
  CHECK(vs::test::bytes(dbias) == first);
}
VITSCALE_ON_HOST_SPACES(gelu_determinism_id);

TEST_CASE_TEMPLATE_DEFINE("gelu rejects mismatched shapes", Space, gelu_shapes_id) {
  const std::size_t rows = 4, cols = 6;
  mat<float, Space> x("x", rows, cols), y("y", rows, cols), bad("bad", rows + 1, cols);
  vec<float, Space> bias("bias", cols), bias_bad("bias", cols + 1), dbias("dbias", cols);
  const auto ws_shape = vk::gelu_bias_backward_workspace(rows, cols);
  mat<float, Space> ws("ws", ws_shape.chunks, ws_shape.cols), ws_bad("ws", ws_shape.chunks + 1, cols);
  const Space s;
  constexpr auto k = gelu_kind::erf;
  CHECK_THROWS_AS(vk::gelu_forward<k>(s, x, bad), vs::error);
  CHECK_THROWS_AS(vk::gelu_bias_forward<k>(s, x, bias_bad, y), vs::error);
  CHECK_THROWS_AS(vk::gelu_bias_forward<k>(s, x, bias, bad), vs::error);
  CHECK_THROWS_AS(vk::gelu_backward<k>(s, x, bad, y), vs::error);
  CHECK_THROWS_AS(vk::gelu_backward<k>(s, x, y, bad), vs::error);
  auto bias_bwd = [&](auto... args) { vk::gelu_bias_backward<k>(s, args...); };
  CHECK_NOTHROW(bias_bwd(x, bias, y, y, dbias, ws));
  CHECK_THROWS_AS(bias_bwd(x, bias_bad, y, y, dbias, ws), vs::error);
  CHECK_THROWS_AS(bias_bwd(x, bias, bad, y, dbias, ws), vs::error);
  CHECK_THROWS_AS(bias_bwd(x, bias, y, bad, dbias, ws), vs::error);
  CHECK_THROWS_AS(bias_bwd(x, bias, y, y, bias_bad, ws), vs::error);
  CHECK_THROWS_AS(bias_bwd(x, bias, y, y, dbias, ws_bad), vs::error);
  s.fence();
}
VITSCALE_ON_HOST_SPACES(gelu_shapes_id);

TEST_CASE_TEMPLATE_DEFINE("scaled gelu is the scale times gelu, forward and backward", Space, gelu_scaled_id) {
  // NFNet's γ-scaled GELU with the block's β folded in: scale = γ·β (γ = 1.7015043497085571, timm's
  // _nonlin_gamma['gelu']).
  const std::size_t rows = 37, cols = 29;
  const float scale = 1.7015043497085571f * 0.9f;
  std::mt19937 rng(11);
  mat<float, Space> x("x", rows, cols), y("y", rows, cols), dy("dy", rows, cols), dx("dx", rows, cols);
  const auto xs = vs::test::fill_random(x, rng, -5.0, 5.0);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  vs::test::poison(y);
  vs::test::poison(dx);
  const Space space;
  vk::gelu_forward<gelu_kind::erf>(space, x, y, scale);
  vk::gelu_backward<gelu_kind::erf>(space, x, dy, dx, scale);
  space.fence();
  std::vector<double> want_y(xs.size()), want_dx(xs.size());
  for (std::size_t k = 0; k < xs.size(); ++k) {
    want_y[k] = double(scale) * gelu_ref(gelu_kind::erf, xs[k]);
    want_dx[k] = double(scale) * dys[k] * gelu_derivative_ref(gelu_kind::erf, xs[k]);
  }
  vs::test::check_close(vs::test::read(y), want_y, 1e-5, "y");
  vs::test::check_close(vs::test::read(dx), want_dx, 1e-5, "dx");
}
VITSCALE_ON_HOST_SPACES(gelu_scaled_id);

TEST_CASE_TEMPLATE_DEFINE("relu forward and backward, NaN passing through", Space, relu_id) {
  const std::size_t rows = 5, cols = 13;
  std::mt19937 rng(12);
  mat<float, Space> x("x", rows, cols), y("y", rows, cols), dy("dy", rows, cols), dx("dx", rows, cols);
  auto xs = vs::test::fill_random(x, rng, -2.0, 2.0);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  {
    auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    h(0, 0) = std::nanf("");
    h(0, 1) = 0.0f;  // relu'(0) = 0, as PyTorch's threshold_backward
    Kokkos::deep_copy(x, h);
    xs[0] = std::nan("");
    xs[1] = 0.0;
  }
  const Space space;
  vk::relu_forward(space, x, y);
  vk::relu_backward(space, x, dy, dx);
  space.fence();
  const auto ys = vs::test::read(y), dxs = vs::test::read(dx);
  CHECK(std::isnan(ys[0]));
  for (std::size_t k = 1; k < xs.size(); ++k) {
    CHECK(ys[k] == (xs[k] > 0 ? xs[k] : 0.0));
    CHECK(dxs[k] == (xs[k] > 0 ? dys[k] : 0.0));
  }
  mat<float, Space> bad("bad", rows + 1, cols);
  CHECK_THROWS_AS(vk::relu_forward(space, x, bad), vs::error);
  CHECK_THROWS_AS(vk::relu_backward(space, x, bad, dx), vs::error);
}
VITSCALE_ON_HOST_SPACES(relu_id);
