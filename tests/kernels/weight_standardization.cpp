// Scaled weight standardisation (NFNet's ScaledStdConv2d): forward and backward against a double reference of
// timm's formula, float master weights with a float or bf16 standardised weight, the backward against finite
// differences of the kernel itself in double, accumulation (beta), poisoned outputs and argument errors.
#include <support/errors.hpp>
#include <support/testing.hpp>

#include <vitscale/kernels/weight_standardization.hpp>

#include <cmath>
#include <random>
#include <vector>

namespace vs = vitscale;
namespace vk = vitscale::kernels;
using vs::test::mat;
using vs::test::vec;

namespace {

// timm: F.batch_norm(w.view(1, O, K), weight = gain·scale, training, eps): the biased variance, eps inside.
struct reference {
  std::vector<double> w_hat, dw, dgain;
};
reference standardize_ref(const std::vector<double>& w, const std::vector<double>& gain,
                          const std::vector<double>& dw_hat, std::size_t rows, std::size_t cols, double scale,
                          double eps) {
  reference r{std::vector<double>(rows * cols), std::vector<double>(rows * cols), std::vector<double>(rows)};
  for (std::size_t o = 0; o < rows; ++o) {
    double m = 0, v = 0;
    for (std::size_t k = 0; k < cols; ++k) m += w[o * cols + k];
    m /= double(cols);
    for (std::size_t k = 0; k < cols; ++k) v += (w[o * cols + k] - m) * (w[o * cols + k] - m);
    const double rs = 1 / std::sqrt(v / double(cols) + eps), gs = gain[o] * scale;
    double sum_g = 0, sum_gx = 0;
    for (std::size_t k = 0; k < cols; ++k) {
      const double xhat = (w[o * cols + k] - m) * rs, g = gs * dw_hat[o * cols + k];
      r.w_hat[o * cols + k] = gs * xhat;
      sum_g += g;
      sum_gx += g * xhat;
      r.dgain[o] += scale * dw_hat[o * cols + k] * xhat;
    }
    for (std::size_t k = 0; k < cols; ++k) {
      const double xhat = (w[o * cols + k] - m) * rs;
      r.dw[o * cols + k] = rs * (gs * dw_hat[o * cols + k] - sum_g / double(cols) - xhat * sum_gx / double(cols));
    }
  }
  return r;
}

template <class THat, class Space>
void check_standardization(std::size_t rows, std::size_t cols, double tol_fwd, double tol_bwd) {
  CAPTURE(rows);
  CAPTURE(cols);
  INFO("w_hat storage " << std::string(vs::test::type_name<THat>()));
  std::mt19937 rng(static_cast<unsigned>(rows * 131 + cols));
  mat<float, Space> w("w", rows, cols), dw_hat("dw_hat", rows, cols), dw("dw", rows, cols);
  mat<THat, Space> w_hat("w_hat", rows, cols);
  vec<float, Space> gain("gain", rows), dgain("dgain", rows), mean("mean", rows), rstd("rstd", rows);
  // Weights off centre (mean 0.3) so that the centring matters.
  const auto ws = vs::test::fill_random(w, rng, -0.7, 1.3);
  const auto gs = vs::test::fill_random(gain, rng, 0.5, 2.0);
  const auto ds = vs::test::fill_random(dw_hat, rng, -1.0, 1.0);
  vs::test::poison(w_hat);
  vs::test::poison(dw);
  vs::test::poison(dgain);
  const double scale = 1.0 / std::sqrt(double(cols)), eps = 1e-5;
  const Space space;
  vk::weight_standardization_forward(space, w, gain, scale, eps, w_hat, mean, rstd);
  vk::weight_standardization_backward(space, w, gain, scale, mean, rstd, dw_hat, dw, dgain);
  space.fence();
  const auto want = standardize_ref(ws, gs, ds, rows, cols, scale, eps);
  vs::test::check_close(vs::test::read(w_hat), want.w_hat, tol_fwd, "w_hat");
  // A fan-in of one standardises to zero whatever w is, so the exact dw is 0; the kernel's is the rounding of
  // g − mean(g) (an FMA keeps the product's low bits) times rstd = 1/sqrt(eps) ≈ 316: judged absolutely.
  const double dw_atol = cols == 1 ? 1e-4 : -1;
  vs::test::check_close(vs::test::read(dw), want.dw, tol_bwd, "dw", dw_atol);
  vs::test::check_close(vs::test::read(dgain), want.dgain, tol_bwd, "dgain");

  // beta = 1 adds to what is there (a gradient arena accumulating over micro-batches).
  vk::weight_standardization_backward(space, w, gain, scale, mean, rstd, dw_hat, dw, dgain, 1.0f);
  space.fence();
  std::vector<double> twice_dw(want.dw), twice_dgain(want.dgain);
  for (auto& v : twice_dw) v *= 2;
  for (auto& v : twice_dgain) v *= 2;
  vs::test::check_close(vs::test::read(dw), twice_dw, tol_bwd, "dw accumulated", dw_atol);
  vs::test::check_close(vs::test::read(dgain), twice_dgain, tol_bwd, "dgain accumulated");
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("weight standardisation matches a double reference of timm's ScaledStdConv2d", Space,
                          ws_reference_id) {
  constexpr double fp32_fwd = 1e-5, fp32_bwd = 2e-5;  // float sums over a fan-in of at most 1152
  constexpr double bf16_fwd = 1e-2;                    // one rounding of the standardised weight, 2^-8 relative
  // Fan-ins of NFNet's convolutions: a 3×3 grouped conv (128·9 = 1152), the stem's first (3·9 = 27), a 1×1
  // (odd 50), a single input (1), and an odd number of output channels.
  for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{5, 1152}, {16, 27}, {3, 50}, {7, 1}, {1, 9}}) {
    check_standardization<float, Space>(rows, cols, fp32_fwd, fp32_bwd);
    check_standardization<vs::bf16, Space>(rows, cols, bf16_fwd, fp32_bwd);
  }
}
VITSCALE_ON_HOST_SPACES(ws_reference_id);

TEST_CASE_TEMPLATE_DEFINE("weight standardisation's backward is the derivative of its forward (double)", Space,
                          ws_fd_id) {
  const std::size_t rows = 3, cols = 12;
  std::mt19937 rng(7);
  mat<double, Space> w("w", rows, cols), w_hat("w_hat", rows, cols), probe("probe", rows, cols);
  mat<double, Space> dw("dw", rows, cols);
  vec<double, Space> gain("gain", rows), dgain("dgain", rows), mean("mean", rows), rstd("rstd", rows);
  vs::test::fill_random(w, rng, -1.0, 2.0);
  vs::test::fill_random(gain, rng, 0.5, 2.0);
  const auto ps = vs::test::fill_random(probe, rng, -1.0, 1.0);
  const double scale = 0.4, eps = 1e-3;  // a large eps, so that its place in the formula matters
  const Space space;
  // L = Σ probe·ŵ, so dL/dŵ = probe.
  auto loss = [&] {
    vk::weight_standardization_forward(space, w, gain, scale, eps, w_hat, mean, rstd);
    space.fence();
    const auto h = vs::test::read(w_hat);
    double l = 0;
    for (std::size_t k = 0; k < h.size(); ++k) l += ps[k] * h[k];
    return l;
  };
  loss();
  vk::weight_standardization_backward(space, w, gain, scale, mean, rstd, probe, dw, dgain);
  space.fence();
  vs::test::check_close(vs::test::read(dw), vs::test::numeric_gradient(w, loss, 1e-6), 1e-7, "dw");
  vs::test::check_close(vs::test::read(dgain), vs::test::numeric_gradient(gain, loss, 1e-6), 1e-7, "dgain");
}
VITSCALE_ON_HOST_SPACES(ws_fd_id);

TEST_CASE("weight standardisation rejects inconsistent arguments with a sentence") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  mat<float, Space> w("w", 4, 9), w_hat("w_hat", 4, 9), empty_w("empty", 4, 0), empty_hat("empty_hat", 4, 0);
  vec<float, Space> gain("gain", 4), short_gain("short", 3), mean("mean", 4), rstd("rstd", 4);
  const Space space;
  CHECK_ERROR(vk::weight_standardization_forward(space, w, short_gain, 1.0, 1e-5, w_hat, mean, rstd),
                       "gain");
  CHECK_ERROR(vk::weight_standardization_forward(space, empty_w, gain, 1.0, 1e-5, empty_hat, mean, rstd),
                       "no fan-in");
  CHECK_ERROR(vk::weight_standardization_forward(space, w, gain, 0.0, 1e-5, w_hat, mean, rstd),
                       "scale must be positive");
  CHECK_ERROR(vk::weight_standardization_forward(space, w, gain, 1.0, 0.0, w_hat, mean, rstd),
                       "eps must be positive");
}
