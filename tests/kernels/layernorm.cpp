// LayerNorm (centered or not, with or without bias): forward and backward against a double reference in
// float and bf16, gradients against finite differences of the kernel itself in double, bit-identical
// parameter gradients across runs, poisoned outputs, and shape errors.
#include <support/testing.hpp>

#include <vitscale/kernels/layernorm.hpp>

#include <cmath>
#include <random>
#include <vector>

namespace vs = vitscale;
namespace vk = vitscale::kernels;
using vs::test::mat;
using vs::test::vec;

namespace {

constexpr double eps = 1e-6;  // big_vision / timm ViT

struct ln_reference {
  std::vector<double> y, mean, rstd, dx, dgamma, dbeta;
};

// The textbook formulas in double, from the values the kernels actually read.
ln_reference reference(bool centered, bool bias, std::size_t rows, std::size_t cols, const std::vector<double>& x,
                       const std::vector<double>& gamma, const std::vector<double>& beta,
                       const std::vector<double>& dy) {
  ln_reference r{std::vector<double>(rows * cols), std::vector<double>(rows), std::vector<double>(rows),
                 std::vector<double>(rows * cols), std::vector<double>(cols, 0.0), std::vector<double>(cols, 0.0)};
  for (std::size_t i = 0; i < rows; ++i) {
    const double* xi = &x[i * cols];
    double m = 0;
    if (centered) {
      for (std::size_t j = 0; j < cols; ++j) m += xi[j];
      m /= cols;
    }
    double var = 0;
    for (std::size_t j = 0; j < cols; ++j) var += (xi[j] - m) * (xi[j] - m);
    var /= cols;
    const double rs = 1 / std::sqrt(var + eps);
    r.mean[i] = m;
    r.rstd[i] = rs;
    double mean_g = 0, mean_gx = 0;
    for (std::size_t j = 0; j < cols; ++j) {
      const double xhat = (xi[j] - m) * rs;
      r.y[i * cols + j] = xhat * gamma[j] + (bias ? beta[j] : 0.0);
      const double g = dy[i * cols + j] * gamma[j];
      mean_g += g / cols;
      mean_gx += g * xhat / cols;
      r.dgamma[j] += dy[i * cols + j] * xhat;
      r.dbeta[j] += dy[i * cols + j];
    }
    for (std::size_t j = 0; j < cols; ++j) {
      const double xhat = (xi[j] - m) * rs;
      const double g = dy[i * cols + j] * gamma[j];
      r.dx[i * cols + j] = rs * (g - (centered ? mean_g : 0.0) - xhat * mean_gx);
    }
  }
  return r;
}

// Storage T for activations, float for parameters and their gradients (the bf16_mixed policy's choice).
template <bool Centered, bool Bias, class T, class Space>
void check_against_reference(std::size_t rows, std::size_t cols, double tol) {
  CAPTURE(rows);
  CAPTURE(cols);
  INFO("centered " << Centered << ", bias " << Bias << ", storage " << std::string(vs::test::type_name<T>()));
  std::mt19937 rng(static_cast<unsigned>(rows * 1000 + cols));
  mat<T, Space> x("x", rows, cols), y("y", rows, cols), dy("dy", rows, cols), dx("dx", rows, cols);
  vec<float, Space> gamma("gamma", cols), beta("beta", Bias ? cols : 0), mean("mean", rows), rstd("rstd", rows);
  vec<float, Space> dgamma("dgamma", cols), dbeta("dbeta", Bias ? cols : 0);
  const auto ws_shape = vk::layernorm_backward_workspace<Bias>(rows, cols);
  mat<float, Space> workspace("workspace", ws_shape.chunks, ws_shape.cols);

  // An offset and a spread that differ per row make centering matter.
  const auto xs = vs::test::fill_random(x, rng, -1.5, 2.5);
  const auto gs = vs::test::fill_random(gamma, rng, 0.5, 1.5);
  const auto bs = Bias ? vs::test::fill_random(beta, rng, -0.5, 0.5) : std::vector<double>(cols, 0.0);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  for (auto v : {y, dx}) vs::test::poison(v);
  for (auto v : {mean, rstd, dgamma}) vs::test::poison(v);
  if (Bias) vs::test::poison(dbeta);
  vs::test::poison(workspace);

  const Space space;
  vk::layernorm_forward<Centered, Bias>(space, x, gamma, beta, y, mean, rstd, eps);
  vk::layernorm_backward<Centered, Bias>(space, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, workspace);
  space.fence();

  const auto want = reference(Centered, Bias, rows, cols, xs, gs, bs, dys);
  vs::test::check_close(vs::test::read(y), want.y, tol, "y");
  vs::test::check_close(vs::test::read(mean), want.mean, 1e-5, "mean", 1e-6);  // statistics are float
  vs::test::check_close(vs::test::read(rstd), want.rstd, 1e-5, "rstd");
  vs::test::check_close(vs::test::read(dx), want.dx, tol, "dx");
  vs::test::check_close(vs::test::read(dgamma), want.dgamma, 1e-5, "dgamma");  // float parameters
  if (Bias) vs::test::check_close(vs::test::read(dbeta), want.dbeta, 1e-5, "dbeta");
}

template <bool Centered, bool Bias, class Space>
void check_kind() {
  constexpr double fp32_tol = 1e-5;  // float storage, float accumulation
  constexpr double bf16_tol = 1e-2;  // bf16 storage: one rounding of the output, 2^-8 relative
  for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{197, 192}, {3, 768}, {1, 50}, {50, 257}}) {
    check_against_reference<Centered, Bias, float, Space>(rows, cols, fp32_tol);
    check_against_reference<Centered, Bias, vs::bf16, Space>(rows, cols, bf16_tol);
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("layernorm forward and backward match a double reference", Space, ln_reference_id) {
  SUBCASE("centered, bias (ViT)") { check_kind<true, true, Space>(); }
  SUBCASE("not centered, no bias (ViT-22B)") { check_kind<false, false, Space>(); }
  SUBCASE("centered, no bias") { check_kind<true, false, Space>(); }
  SUBCASE("not centered, bias") { check_kind<false, true, Space>(); }
}
VITSCALE_ON_HOST_SPACES(ln_reference_id);

namespace {

// The kernels in double storage; the loss is L = Σ w·y for a random w, so dL/dy = w.
template <bool Centered, bool Bias, class Space>
void check_finite_differences() {
  INFO("centered " << Centered << ", bias " << Bias);
  const std::size_t rows = 3, cols = 50;
  std::mt19937 rng(7);
  mat<double, Space> x("x", rows, cols), y("y", rows, cols), w("w", rows, cols), dx("dx", rows, cols);
  vec<double, Space> gamma("gamma", cols), beta("beta", Bias ? cols : 0), mean("mean", rows), rstd("rstd", rows);
  vec<double, Space> dgamma("dgamma", cols), dbeta("dbeta", Bias ? cols : 0);
  const auto ws_shape = vk::layernorm_backward_workspace<Bias>(rows, cols);
  mat<double, Space> workspace("workspace", ws_shape.chunks, ws_shape.cols);
  vs::test::fill_random(x, rng, -1.5, 2.5);
  vs::test::fill_random(gamma, rng, 0.5, 1.5);
  if (Bias) vs::test::fill_random(beta, rng, -0.5, 0.5);
  const auto ws = vs::test::fill_random(w, rng, -1.0, 1.0);
  const Space space;

  auto loss = [&] {
    vk::layernorm_forward<Centered, Bias>(space, x, gamma, beta, y, mean, rstd, eps);
    space.fence();
    const auto ys = vs::test::read(y);
    double l = 0;
    for (std::size_t k = 0; k < ys.size(); ++k) l += ws[k] * ys[k];
    return l;
  };
  loss();
  vk::layernorm_backward<Centered, Bias>(space, x, gamma, mean, rstd, w, dx, dgamma, dbeta, workspace);
  space.fence();

  // Central differences: truncation ~h², round-off ~1e-16/h; both far below the tolerance.
  constexpr double h = 1e-5, fd_tol = 1e-6;
  auto numeric_gradient = [&](const auto& v) { return vs::test::numeric_gradient(v, loss, h); };
  vs::test::check_close(vs::test::read(dx), numeric_gradient(x), fd_tol, "dx vs finite differences");
  vs::test::check_close(vs::test::read(dgamma), numeric_gradient(gamma), fd_tol, "dgamma vs finite differences");
  if (Bias) vs::test::check_close(vs::test::read(dbeta), numeric_gradient(beta), fd_tol, "dbeta vs finite differences");
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("layernorm gradients match finite differences in double", Space, ln_fd_id) {
  check_finite_differences<true, true, Space>();
  check_finite_differences<false, false, Space>();
}
VITSCALE_ON_HOST_SPACES(ln_fd_id);

TEST_CASE_TEMPLATE_DEFINE("layernorm backward is bit-identical from run to run", Space, ln_determinism_id) {
  const std::size_t rows = 197 * 3, cols = 768;
  std::mt19937 rng(11);
  mat<float, Space> x("x", rows, cols), y("y", rows, cols), dy("dy", rows, cols), dx("dx", rows, cols);
  vec<float, Space> gamma("gamma", cols), beta("beta", cols), mean("mean", rows), rstd("rstd", rows);
  vec<float, Space> dgamma("dgamma", cols), dbeta("dbeta", cols);
  const auto ws_shape = vk::layernorm_backward_workspace<true>(rows, cols);
  mat<float, Space> workspace("workspace", ws_shape.chunks, ws_shape.cols);
  vs::test::fill_random(x, rng, -1.5, 2.5);
  vs::test::fill_random(gamma, rng, 0.5, 1.5);
  vs::test::fill_random(beta, rng, -0.5, 0.5);
  vs::test::fill_random(dy, rng, -1.0, 1.0);
  const Space space;
  vk::layernorm_forward<true, true>(space, x, gamma, beta, y, mean, rstd, eps);
  std::vector<unsigned char> first[3];
  for (int run = 0; run < 2; ++run) {
    vs::test::poison(dx);
    vs::test::poison(dgamma);
    vs::test::poison(dbeta);
    vk::layernorm_backward<true, true>(space, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, workspace);
    space.fence();
    const std::vector<unsigned char> now[3] = {vs::test::bytes(dx), vs::test::bytes(dgamma), vs::test::bytes(dbeta)};
    if (run == 0) {
      for (int k = 0; k < 3; ++k) first[k] = now[k];
    } else {
      CHECK(now[0] == first[0]);
      CHECK(now[1] == first[1]);
      CHECK(now[2] == first[2]);
    }
  }
}
VITSCALE_ON_HOST_SPACES(ln_determinism_id);

// A norm that does not centre needs no mean: the model keeps none (config/activations.hpp). With an empty one
// the results are the same bits; a centring norm still requires it.
TEST_CASE_TEMPLATE_DEFINE("layernorm without centring takes an empty mean", Space, ln_empty_mean_id) {
  const std::size_t rows = 37, cols = 96;
  std::mt19937 rng(5);
  mat<float, Space> x("x", rows, cols), dy("dy", rows, cols);
  mat<float, Space> y1("y1", rows, cols), y2("y2", rows, cols), dx1("dx1", rows, cols), dx2("dx2", rows, cols);
  vec<float, Space> gamma("gamma", cols), mean("mean", rows), rstd1("rstd1", rows), rstd2("rstd2", rows);
  vec<float, Space> dgamma1("dgamma1", cols), dgamma2("dgamma2", cols), none;
  const auto ws_shape = vk::layernorm_backward_workspace<false>(rows, cols);
  mat<float, Space> workspace("workspace", ws_shape.chunks, ws_shape.cols);
  vs::test::fill_random(x, rng, -1.5, 2.5);
  vs::test::fill_random(gamma, rng, 0.5, 1.5);
  vs::test::fill_random(dy, rng, -1.0, 1.0);
  const Space s;
  vk::layernorm_forward<false, false>(s, x, gamma, none, y1, mean, rstd1, eps);
  vk::layernorm_forward<false, false>(s, x, gamma, none, y2, none, rstd2, eps);
  vk::layernorm_backward<false, false>(s, x, gamma, mean, rstd1, dy, dx1, dgamma1, none, workspace);
  vk::layernorm_backward<false, false>(s, x, gamma, none, rstd2, dy, dx2, dgamma2, none, workspace);
  s.fence();
  CHECK(vs::test::bytes(y1) == vs::test::bytes(y2));
  CHECK(vs::test::bytes(rstd1) == vs::test::bytes(rstd2));
  CHECK(vs::test::bytes(dx1) == vs::test::bytes(dx2));
  CHECK(vs::test::bytes(dgamma1) == vs::test::bytes(dgamma2));
  vec<float, Space> beta("beta", cols), dbeta("dbeta", cols);
  const auto ws_c = vk::layernorm_backward_workspace<true>(rows, cols);
  mat<float, Space> workspace_c("workspace", ws_c.chunks, ws_c.cols);
  auto fwd = [&](auto... args) { vk::layernorm_forward<true, true>(s, args...); };
  auto bwd = [&](auto... args) { vk::layernorm_backward<true, true>(s, args...); };
  CHECK_THROWS_AS(fwd(x, gamma, beta, y1, none, rstd1, eps), vs::error);
  CHECK_THROWS_AS(bwd(x, gamma, none, rstd1, dy, dx1, dgamma1, dbeta, workspace_c), vs::error);
}
VITSCALE_ON_HOST_SPACES(ln_empty_mean_id);

TEST_CASE_TEMPLATE_DEFINE("layernorm rejects mismatched shapes and bad arguments", Space, ln_shapes_id) {
  const std::size_t rows = 5, cols = 8;
  mat<float, Space> x("x", rows, cols), y("y", rows, cols), dy("dy", rows, cols), dx("dx", rows, cols);
  vec<float, Space> gamma("gamma", cols), beta("beta", cols), mean("mean", rows), rstd("rstd", rows);
  vec<float, Space> dgamma("dgamma", cols), dbeta("dbeta", cols), none;
  const auto ws_shape = vk::layernorm_backward_workspace<true>(rows, cols);
  mat<float, Space> workspace("workspace", ws_shape.chunks, ws_shape.cols);
  mat<float, Space> y_bad("y", rows, cols + 1), ws_bad("ws", ws_shape.chunks, cols);
  vec<float, Space> gamma_bad("gamma", cols - 1), rows_bad("stat", rows + 1);
  const Space s;
  auto fwd = [&](auto... args) { vk::layernorm_forward<true, true>(s, args...); };
  auto fwd_rms = [&](auto... args) { vk::layernorm_forward<false, false>(s, args...); };
  CHECK_NOTHROW(fwd(x, gamma, beta, y, mean, rstd, eps));
  CHECK_THROWS_AS(fwd(x, gamma_bad, beta, y, mean, rstd, eps), vs::error);
  CHECK_THROWS_AS(fwd(x, gamma, gamma_bad, y, mean, rstd, eps), vs::error);
  CHECK_THROWS_AS(fwd(x, gamma, beta, y_bad, mean, rstd, eps), vs::error);
  CHECK_THROWS_AS(fwd(x, gamma, beta, y, rows_bad, rstd, eps), vs::error);
  CHECK_THROWS_AS(fwd(x, gamma, beta, y, mean, rows_bad, eps), vs::error);
  CHECK_THROWS_AS(fwd(x, gamma, beta, y, mean, rstd, 0.0), vs::error);
  // Without a bias, a β is a mistake, not something to ignore.
  CHECK_NOTHROW(fwd_rms(x, gamma, none, y, mean, rstd, eps));
  CHECK_THROWS_AS(fwd_rms(x, gamma, beta, y, mean, rstd, eps), vs::error);
  CHECK_THROWS_WITH_AS(fwd(x, gamma, beta, y_bad, mean, rstd, eps),
                       "vitscale: layernorm_forward: y is [5, 9], expected [5, 8]", vs::error);

  auto bwd = [&](auto... args) { vk::layernorm_backward<true, true>(s, args...); };
  auto bwd_rms = [&](auto... args) { vk::layernorm_backward<false, false>(s, args...); };
  CHECK_NOTHROW(bwd(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, workspace));
  CHECK_THROWS_AS(bwd(x, gamma_bad, mean, rstd, dy, dx, dgamma, dbeta, workspace), vs::error);
  CHECK_THROWS_AS(bwd(x, gamma, rows_bad, rstd, dy, dx, dgamma, dbeta, workspace), vs::error);
  CHECK_THROWS_AS(bwd(x, gamma, mean, rows_bad, dy, dx, dgamma, dbeta, workspace), vs::error);
  CHECK_THROWS_AS(bwd(x, gamma, mean, rstd, y_bad, dx, dgamma, dbeta, workspace), vs::error);
  CHECK_THROWS_AS(bwd(x, gamma, mean, rstd, dy, y_bad, dgamma, dbeta, workspace), vs::error);
  CHECK_THROWS_AS(bwd(x, gamma, mean, rstd, dy, dx, gamma_bad, dbeta, workspace), vs::error);
  CHECK_THROWS_AS(bwd(x, gamma, mean, rstd, dy, dx, dgamma, gamma_bad, workspace), vs::error);
  CHECK_THROWS_AS(bwd(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, ws_bad), vs::error);
  // Without a bias the workspace is [chunks, D] and a dβ is a mistake.
  mat<float, Space> ws_rms("ws", ws_shape.chunks, cols);
  CHECK_NOTHROW(bwd_rms(x, gamma, mean, rstd, dy, dx, dgamma, none, ws_rms));
  CHECK_THROWS_AS(bwd_rms(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, ws_rms), vs::error);
  CHECK_THROWS_AS(bwd_rms(x, gamma, mean, rstd, dy, dx, dgamma, none, workspace), vs::error);
  s.fence();
}
VITSCALE_ON_HOST_SPACES(ln_shapes_id);
