// Residual add and accumulate, and NFNet's scaled residual (x + α·gain·r, backward with the gain's gradient):
// against a double reference in float, bf16 and mixed storage, in place, poisoned outputs, and shape errors.
#include <support/testing.hpp>

#include <vitscale/kernels/residual.hpp>

#include <random>
#include <vector>

namespace vs = vitscale;
namespace vk = vitscale::kernels;
using vs::test::mat;

namespace {

// x in X storage plus r in R storage into Y storage; one rounding of an exactly representable-in-float sum.
template <class X, class R, class Y, class Space>
void check_add(std::size_t rows, std::size_t cols, double tol) {
  CAPTURE(rows);
  CAPTURE(cols);
  INFO("x " << std::string(vs::test::type_name<X>()) << ", r " << std::string(vs::test::type_name<R>()) << ", y " << std::string(vs::test::type_name<Y>()));
  std::mt19937 rng(static_cast<unsigned>(rows * 7 + cols));
  mat<X, Space> x("x", rows, cols);
  mat<R, Space> r("r", rows, cols);
  mat<Y, Space> y("y", rows, cols), acc("acc", rows, cols);
  const auto xs = vs::test::fill_random(x, rng, -2.0, 2.0);
  const auto rs = vs::test::fill_random(r, rng, -2.0, 2.0);
  const auto accs = vs::test::fill_random(acc, rng, -2.0, 2.0);
  vs::test::poison(y);
  const Space space;
  vk::residual_add(space, x, r, y);
  vk::residual_accumulate(space, acc, r);
  space.fence();
  std::vector<double> want(xs.size()), want_acc(xs.size());
  for (std::size_t k = 0; k < xs.size(); ++k) {
    want[k] = xs[k] + rs[k];
    want_acc[k] = accs[k] + rs[k];
  }
  // Relative to each element only: a sum near zero must be near zero too (atol 1e-7 for cancellation in float).
  vs::test::check_close(vs::test::read(y), want, tol, "x + r", 1e-7);
  vs::test::check_close(vs::test::read(acc), want_acc, tol, "acc += r", 1e-7);
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("residual add and accumulate match a double reference", Space, residual_reference_id) {
  constexpr double fp32_tol = 1e-7;  // one float rounding, 2^-24 relative
  constexpr double bf16_tol = 4e-3;  // one bf16 rounding, 2^-8 relative
  for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{197, 192}, {3, 768}, {1, 50}, {257, 3}}) {
    check_add<float, float, float, Space>(rows, cols, fp32_tol);
    check_add<vs::bf16, vs::bf16, vs::bf16, Space>(rows, cols, bf16_tol);
    check_add<vs::bf16, float, float, Space>(rows, cols, fp32_tol);  // bf16 stream, float branch
  }
}
VITSCALE_ON_HOST_SPACES(residual_reference_id);

TEST_CASE_TEMPLATE_DEFINE("residual add works in place", Space, residual_inplace_id) {
  std::mt19937 rng(41);
  mat<float, Space> x("x", 13, 50), r("r", 13, 50);
  const auto xs = vs::test::fill_random(x, rng, -1.0, 1.0);
  const auto rs = vs::test::fill_random(r, rng, -1.0, 1.0);
  const Space space;
  vk::residual_add(space, x, r, x);
  space.fence();
  std::vector<double> want(xs.size());
  for (std::size_t k = 0; k < xs.size(); ++k) want[k] = xs[k] + rs[k];
  vs::test::check_close(vs::test::read(x), want, 1e-7, "x = x + r", 1e-7);
}
VITSCALE_ON_HOST_SPACES(residual_inplace_id);

TEST_CASE_TEMPLATE_DEFINE("residual rejects mismatched shapes", Space, residual_shapes_id) {
  mat<float, Space> x("x", 4, 6), y("y", 4, 6), wide("wide", 4, 7), tall("tall", 5, 6);
  const Space s;
  CHECK_THROWS_AS(vk::residual_add(s, x, wide, y), vs::error);
  CHECK_THROWS_AS(vk::residual_add(s, x, y, tall), vs::error);
  CHECK_THROWS_AS(vk::residual_accumulate(s, x, tall), vs::error);
  CHECK_THROWS_WITH_AS(vk::residual_accumulate(s, x, wide), "vitscale: residual_accumulate: r is [4, 7], expected [4, 6]",
                       vs::error);
  s.fence();
}
VITSCALE_ON_HOST_SPACES(residual_shapes_id);

// ------------------------------------------------------------- NFNet's scaled residual y = x + alpha·gain·r

TEST_CASE_TEMPLATE_DEFINE("scaled residual matches a double reference, with and without a gain", Space,
                          scaled_residual_id) {
  using vs::test::vec;
  for (const std::size_t rows : {std::size_t(1), std::size_t(7), std::size_t(300)}) {  // past the 64 chunks
    CAPTURE(rows);
    const std::size_t cols = 13;
    const double alpha = 0.2;
    std::mt19937 rng(static_cast<unsigned>(rows));
    mat<float, Space> x("x", rows, cols), r("r", rows, cols), y("y", rows, cols), dy("dy", rows, cols),
        dr("dr", rows, cols);
    vec<float, Space> gain("gain", 1), dgain("dgain", 1), none;
    const auto ws = vk::scaled_residual_backward_workspace(rows);
    mat<float, Space> workspace("workspace", ws.chunks, ws.cols);
    const auto xs = vs::test::fill_random(x, rng, -2.0, 2.0);
    const auto rs = vs::test::fill_random(r, rng, -2.0, 2.0);
    const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
    const auto gs = vs::test::fill_random(gain, rng, 0.5, 1.5);
    vs::test::poison(y);
    vs::test::poison(dr);
    vs::test::poison(dgain);
    const Space space;
    vk::scaled_residual_add(space, x, r, gain, alpha, y);
    vk::scaled_residual_backward(space, r, gain, alpha, dy, dr, dgain, workspace);
    space.fence();
    std::vector<double> want_y(xs.size()), want_dr(xs.size());
    double want_dgain = 0;
    for (std::size_t k = 0; k < xs.size(); ++k) {
      want_y[k] = xs[k] + alpha * gs[0] * rs[k];
      want_dr[k] = alpha * gs[0] * dys[k];
      want_dgain += alpha * dys[k] * rs[k];
    }
    vs::test::check_close(vs::test::read(y), want_y, 1e-6, "y");
    vs::test::check_close(vs::test::read(dr), want_dr, 1e-6, "dr");
    vs::test::check_close(vs::test::read(dgain), {want_dgain}, 1e-5, "dgain", 1e-6 * double(rows));
    // Without a gain (empty Views): y = x + alpha·r, dr = alpha·dy, nothing else written.
    vk::scaled_residual_add(space, x, r, none, alpha, y);
    vk::scaled_residual_backward(space, r, none, alpha, dy, dr, none, workspace);
    space.fence();
    for (std::size_t k = 0; k < xs.size(); ++k) {
      want_y[k] = xs[k] + alpha * rs[k];
      want_dr[k] = alpha * dys[k];
    }
    vs::test::check_close(vs::test::read(y), want_y, 1e-6, "y without gain");
    vs::test::check_close(vs::test::read(dr), want_dr, 1e-6, "dr without gain");
    // A gain of two elements, or a gain without its gradient, is a mistake.
    vec<float, Space> two("two", 2);
    CHECK_THROWS_AS(vk::scaled_residual_add(space, x, r, two, alpha, y), vs::error);
    CHECK_THROWS_AS(vk::scaled_residual_backward(space, r, gain, alpha, dy, dr, none, workspace), vs::error);
  }
}
VITSCALE_ON_HOST_SPACES(scaled_residual_id);
