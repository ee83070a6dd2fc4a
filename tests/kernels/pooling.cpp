// Token mean pooling (GAP), skipping prefix tokens: forward and backward against a double reference in
// float and bf16, poisoned outputs, and shape and argument errors.
#include <support/testing.hpp>

#include <vitscale/kernels/pooling.hpp>

#include <random>
#include <tuple>
#include <vector>

namespace vs = vitscale;
namespace vk = vitscale::kernels;
using vs::test::mat;
using vs::test::ten3;

namespace {

template <class T, class Space>
void check_pool(std::size_t batch, std::size_t tokens, std::size_t cols, std::size_t first, double tol) {
  CAPTURE(batch);
  CAPTURE(tokens);
  CAPTURE(cols);
  CAPTURE(first);
  INFO("storage " << std::string(vs::test::type_name<T>()));
  std::mt19937 rng(static_cast<unsigned>(batch * 1000 + tokens * 10 + cols + first));
  ten3<T, Space> x("x", batch, tokens, cols), dx("dx", batch, tokens, cols);
  mat<T, Space> y("y", batch, cols), dy("dy", batch, cols);
  const auto xs = vs::test::fill_random(x, rng, -1.0, 3.0);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  vs::test::poison(y);
  vs::test::poison(dx);
  const Space space;
  vk::token_mean_pool_forward(space, x, first, y);
  vk::token_mean_pool_backward(space, dy, first, dx);
  space.fence();
  const double count = static_cast<double>(tokens - first);
  std::vector<double> want_y(batch * cols, 0.0), want_dx(xs.size());
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t t = 0; t < tokens; ++t)
      for (std::size_t j = 0; j < cols; ++j) {
        const std::size_t k = (b * tokens + t) * cols + j;
        if (t >= first) want_y[b * cols + j] += xs[k] / count;
        want_dx[k] = t >= first ? dys[b * cols + j] / count : 0.0;
      }
  vs::test::check_close(vs::test::read(y), want_y, tol, "y");
  const auto dxs = vs::test::read(dx);
  vs::test::check_close(dxs, want_dx, tol, "dx");
  // Skipped tokens get exactly zero gradient, not merely a small one.
  std::size_t nonzero = 0;
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t t = 0; t < first; ++t)
      for (std::size_t j = 0; j < cols; ++j) nonzero += dxs[(b * tokens + t) * cols + j] != 0.0;
  CHECK(nonzero == 0);
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("token mean pooling matches a double reference", Space, pool_reference_id) {
  constexpr double fp32_tol = 1e-5;  // float storage, float sums over at most 257 tokens
  constexpr double bf16_tol = 1e-2;  // bf16 storage: one rounding of the output, 2^-8 relative
  for (auto [batch, tokens, cols, first] : {std::tuple<std::size_t, std::size_t, std::size_t, std::size_t>{3, 197, 192, 1},
                                            {2, 257, 50, 0}, {1, 1, 768, 0}, {5, 50, 3, 4}}) {
    check_pool<float, Space>(batch, tokens, cols, first, fp32_tol);
    check_pool<vs::bf16, Space>(batch, tokens, cols, first, bf16_tol);
  }
}
VITSCALE_ON_HOST_SPACES(pool_reference_id);

TEST_CASE_TEMPLATE_DEFINE("token mean pooling over widths that are not a multiple of the host column chunk", Space,
                          pool_chunk_id) {
  constexpr double fp32_tol = 1e-5;  // as above
  constexpr double bf16_tol = 1e-2;
  using shape = std::tuple<std::size_t, std::size_t, std::size_t, std::size_t>;  // batch, tokens, cols, first
  for (auto [batch, tokens, cols, first] : {shape{2, 17, 601, 2}, shape{1, 5, 257, 1}, shape{3, 9, 255, 0}}) {
    check_pool<float, Space>(batch, tokens, cols, first, fp32_tol);
    check_pool<vs::bf16, Space>(batch, tokens, cols, first, bf16_tol);
  }
}
VITSCALE_ON_HOST_SPACES(pool_chunk_id);

TEST_CASE_TEMPLATE_DEFINE("token mean pooling rejects bad shapes and prefixes", Space, pool_shapes_id) {
  ten3<float, Space> x("x", 2, 5, 4);
  mat<float, Space> y("y", 2, 4), wide("wide", 2, 5), tall("tall", 3, 4);
  const Space s;
  CHECK_NOTHROW(vk::token_mean_pool_forward(s, x, 4, y));
  CHECK_THROWS_AS(vk::token_mean_pool_forward(s, x, 5, y), vs::error);  // nothing left to pool
  CHECK_THROWS_AS(vk::token_mean_pool_forward(s, x, 0, wide), vs::error);
  CHECK_THROWS_AS(vk::token_mean_pool_forward(s, x, 0, tall), vs::error);
  CHECK_NOTHROW(vk::token_mean_pool_backward(s, y, 1, x));
  CHECK_THROWS_AS(vk::token_mean_pool_backward(s, y, 5, x), vs::error);
  CHECK_THROWS_AS(vk::token_mean_pool_backward(s, wide, 0, x), vs::error);
  CHECK_THROWS_AS(vk::token_mean_pool_backward(s, tall, 0, x), vs::error);
  s.fence();
}
VITSCALE_ON_HOST_SPACES(pool_shapes_id);
