// Softmax over the last dimension: forward (including logits that would overflow without the max
// subtraction) and backward against a double reference in float and bf16, the gradient against finite
// differences of the kernel itself in double, in-place use, poisoned outputs, and shape errors.
#include <support/testing.hpp>

#include <vitscale/kernels/softmax.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace vs = vitscale;
namespace vk = vitscale::kernels;
using vs::test::mat;

namespace {

std::vector<double> softmax_ref(std::size_t rows, std::size_t cols, const std::vector<double>& x) {
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < rows; ++i) {
    const double m = *std::max_element(x.begin() + i * cols, x.begin() + (i + 1) * cols);
    double s = 0;
    for (std::size_t j = 0; j < cols; ++j) s += std::exp(x[i * cols + j] - m);
    for (std::size_t j = 0; j < cols; ++j) y[i * cols + j] = std::exp(x[i * cols + j] - m) / s;
  }
  return y;
}

template <class T, class Space>
void check_against_reference(std::size_t rows, std::size_t cols, double lo, double hi, double tol) {
  CAPTURE(rows);
  CAPTURE(cols);
  CAPTURE(hi);
  INFO("storage " << std::string(vs::test::type_name<T>()));
  std::mt19937 rng(static_cast<unsigned>(rows * 17 + cols));
  mat<T, Space> x("x", rows, cols), y("y", rows, cols), dy("dy", rows, cols), dx("dx", rows, cols);
  const auto xs = vs::test::fill_random(x, rng, lo, hi);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  vs::test::poison(y);
  vs::test::poison(dx);
  const Space space;
  vk::softmax_forward(space, x, y);
  space.fence();
  const auto want_y = softmax_ref(rows, cols, xs);
  const auto ys = vs::test::read(y);
  vs::test::check_close(ys, want_y, tol, "y");

  // The backward from the y it is given (the stored, possibly rounded forward output).
  vk::softmax_backward(space, y, dy, dx);
  space.fence();
  std::vector<double> want_dx(xs.size());
  for (std::size_t i = 0; i < rows; ++i) {
    double dot = 0;
    for (std::size_t j = 0; j < cols; ++j) dot += dys[i * cols + j] * ys[i * cols + j];
    for (std::size_t j = 0; j < cols; ++j) want_dx[i * cols + j] = ys[i * cols + j] * (dys[i * cols + j] - dot);
  }
  vs::test::check_close(vs::test::read(dx), want_dx, tol, "dx");
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("softmax forward and backward match a double reference", Space, softmax_reference_id) {
  constexpr double fp32_tol = 1e-5;  // float storage, float arithmetic
  constexpr double bf16_tol = 1e-2;  // bf16 storage: one rounding of the output, 2^-8 relative
  for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{197, 197}, {3, 768}, {1, 50}, {50, 1}}) {
    check_against_reference<float, Space>(rows, cols, -4.0, 4.0, fp32_tol);
    check_against_reference<vs::bf16, Space>(rows, cols, -4.0, 4.0, bf16_tol);
  }
  // exp(120) overflows float: only a max-subtracted softmax gets these rows right.
  check_against_reference<float, Space>(5, 257, 60.0, 120.0, fp32_tol);
  check_against_reference<vs::bf16, Space>(5, 257, -120.0, -60.0, bf16_tol);
}
VITSCALE_ON_HOST_SPACES(softmax_reference_id);

TEST_CASE_TEMPLATE_DEFINE("softmax works in place", Space, softmax_inplace_id) {
  const std::size_t rows = 9, cols = 50;
  std::mt19937 rng(23);
  mat<float, Space> x("x", rows, cols), dy("dy", rows, cols);
  const auto xs = vs::test::fill_random(x, rng, -3.0, 3.0);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  const Space space;
  vk::softmax_forward(space, x, x);
  space.fence();
  const auto want = softmax_ref(rows, cols, xs);
  vs::test::check_close(vs::test::read(x), want, 1e-5, "in-place y");
  vk::softmax_backward(space, x, dy, dy);
  space.fence();
  std::vector<double> want_dx(xs.size());
  for (std::size_t i = 0; i < rows; ++i) {
    double dot = 0;
    for (std::size_t j = 0; j < cols; ++j) dot += dys[i * cols + j] * want[i * cols + j];
    for (std::size_t j = 0; j < cols; ++j) want_dx[i * cols + j] = want[i * cols + j] * (dys[i * cols + j] - dot);
  }
  vs::test::check_close(vs::test::read(dy), want_dx, 1e-5, "in-place dx");
}
VITSCALE_ON_HOST_SPACES(softmax_inplace_id);

TEST_CASE_TEMPLATE_DEFINE("softmax gradient matches finite differences in double", Space, softmax_fd_id) {
  const std::size_t rows = 3, cols = 50;
  constexpr double h = 1e-5, fd_tol = 1e-6;  // truncation ~h², round-off ~1e-16/h
  std::mt19937 rng(29);
  mat<double, Space> x("x", rows, cols), y("y", rows, cols), w("w", rows, cols), dx("dx", rows, cols);
  vs::test::fill_random(x, rng, -3.0, 3.0);
  const auto ws = vs::test::fill_random(w, rng, -1.0, 1.0);
  const Space space;
  auto loss = [&] {
    vk::softmax_forward(space, x, y);
    space.fence();
    const auto ys = vs::test::read(y);
    double l = 0;
    for (std::size_t k = 0; k < ys.size(); ++k) l += ws[k] * ys[k];
    return l;
  };
  loss();
  vk::softmax_backward(space, y, w, dx);
  space.fence();
  const std::vector<double> numeric = vs::test::numeric_gradient(x, loss, h);
  vs::test::check_close(vs::test::read(dx), numeric, fd_tol, "dx vs finite differences");
}
VITSCALE_ON_HOST_SPACES(softmax_fd_id);

TEST_CASE_TEMPLATE_DEFINE("softmax rejects mismatched shapes", Space, softmax_shapes_id) {
  mat<float, Space> x("x", 4, 6), y("y", 4, 6), bad("bad", 4, 7), empty("empty", 4, 0);
  const Space s;
  CHECK_THROWS_AS(vk::softmax_forward(s, x, bad), vs::error);
  CHECK_THROWS_AS(vk::softmax_forward(s, empty, empty), vs::error);
  CHECK_THROWS_AS(vk::softmax_backward(s, x, bad, y), vs::error);
  CHECK_THROWS_AS(vk::softmax_backward(s, x, y, bad), vs::error);
  s.fence();
}
VITSCALE_ON_HOST_SPACES(softmax_shapes_id);
