// Token mean pooling (GAP), skipping prefix tokens, and avg_pool2d (PyTorch's AvgPool2d with ceil_mode): forward
// and backward against a double reference in float and bf16, poisoned outputs, and shape and argument errors.
#include <support/errors.hpp>
#include <support/testing.hpp>

#include <vitscale/kernels/pooling.hpp>

#include <algorithm>
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

// ------------------------------------------------------------------ avg_pool2d (NFNet's downsampling shortcut)

namespace {

template <class T, class Space>
using ten4 = Kokkos::View<T****, Kokkos::LayoutRight, typename Space::memory_space>;

// PyTorch's AvgPool2d(window, stride, ceil_mode=True, count_include_pad=False), written out in double.
std::vector<double> avg_pool2d_ref(const std::vector<double>& x, int batch, int h, int w, int c, int window,
                                   int stride) {
  const int ho = vk::avg_pool2d_out(h, window, stride), wo = vk::avg_pool2d_out(w, window, stride);
  std::vector<double> y(std::size_t(batch) * ho * wo * c, 0.0);
  for (int b = 0; b < batch; ++b)
    for (int i = 0; i < ho; ++i)
      for (int j = 0; j < wo; ++j)
        for (int ch = 0; ch < c; ++ch) {
          double sum = 0;
          int count = 0;
          for (int u = i * stride; u < std::min(i * stride + window, h); ++u)
            for (int v = j * stride; v < std::min(j * stride + window, w); ++v, ++count)
              sum += x[((std::size_t(b) * h + u) * w + v) * c + ch];
          y[((std::size_t(b) * ho + i) * wo + j) * c + ch] = sum / count;
        }
  return y;
}

template <class T, class Space>
void check_avg_pool2d(int batch, int h, int w, int c, int window, int stride, double tol) {
  CAPTURE(h);
  CAPTURE(w);
  CAPTURE(c);
  CAPTURE(window);
  CAPTURE(stride);
  INFO("storage " << std::string(vs::test::type_name<T>()));
  const int ho = vk::avg_pool2d_out(h, window, stride), wo = vk::avg_pool2d_out(w, window, stride);
  std::mt19937 rng(static_cast<unsigned>(h * 100 + w * 10 + c + window));
  ten4<T, Space> x("x", batch, h, w, c), dx("dx", batch, h, w, c), y("y", batch, ho, wo, c), dy("dy", batch, ho, wo, c);
  const auto xs = vs::test::fill_random(x, rng, -1.0, 2.0);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  vs::test::poison(y);
  vs::test::poison(dx);
  const Space space;
  vk::avg_pool2d_forward(space, window, stride, x, y);
  vk::avg_pool2d_backward(space, window, stride, dy, dx);
  space.fence();
  vs::test::check_close(vs::test::read(y), avg_pool2d_ref(xs, batch, h, w, c, window, stride), tol, "y");
  // The backward is the transpose of the forward: <dy, pool(e_k)> for each input element k, with the forward's
  // reference applied to unit images.
  std::vector<double> want_dx(xs.size(), 0.0), unit(xs.size(), 0.0);
  for (std::size_t k = 0; k < xs.size(); ++k) {
    unit[k] = 1.0;
    const auto pooled = avg_pool2d_ref(unit, batch, h, w, c, window, stride);
    for (std::size_t m = 0; m < pooled.size(); ++m) want_dx[k] += pooled[m] * dys[m];
    unit[k] = 0.0;
  }
  vs::test::check_close(vs::test::read(dx), want_dx, tol, "dx");
}

}  // namespace

TEST_CASE("avg_pool2d's output extents follow PyTorch's ceil_mode rule") {
  // Values printed by torch.nn.AvgPool2d(window, stride, ceil_mode=True) on the same input sizes.
  CHECK(vk::avg_pool2d_out(8, 2, 2) == 4);
  CHECK(vk::avg_pool2d_out(7, 2, 2) == 4);
  CHECK(vk::avg_pool2d_out(3, 2, 2) == 2);
  CHECK(vk::avg_pool2d_out(2, 2, 2) == 1);
  CHECK(vk::avg_pool2d_out(1, 2, 2) == 1);
  CHECK(vk::avg_pool2d_out(8, 3, 2) == 4);
  CHECK(vk::avg_pool2d_out(2, 3, 2) == 1);
}

TEST_CASE("avg_pool2d gives PyTorch's values on a 7x7 and a 3x3 ramp") {
  // torch.nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)(torch.arange(H*H).view(1, 1, H, H)):
  // the first output row for H = 7 is 4, 6, 8, 9.5 (the last window holds two pixels); for H = 3, 2, 3.5, 6.5, 8.
  using Space = Kokkos::DefaultHostExecutionSpace;
  for (auto [h, want] : {std::pair<int, std::vector<float>>{7, {4.0f, 6.0f, 8.0f, 9.5f}}, {3, {2.0f, 3.5f, 6.5f, 8.0f}}}) {
    ten4<float, Space> x("x", 1, h, h, 1), y("y", 1, (h + 1) / 2, (h + 1) / 2, 1);
    for (int k = 0; k < h * h; ++k) x(0, k / h, k % h, 0) = float(k);
    vk::avg_pool2d_forward(Space(), 2, 2, x, y);
    Space().fence();
    for (std::size_t k = 0; k < want.size(); ++k) CHECK(y.data()[k] == want[k]);
  }
}

TEST_CASE_TEMPLATE_DEFINE("avg_pool2d matches a double reference of PyTorch's AvgPool2d", Space, avg_pool2d_id) {
  constexpr double fp32_tol = 1e-6;  // at most 9 terms
  constexpr double bf16_tol = 1e-2;  // one rounding of each output, 2^-8 relative
  // NFNet's 2×2 stride-2 windows on even and odd images (the 7×7 of a 28-px model after its stem), and a
  // 3×3 stride-2 window, whose windows overlap, on an odd image.
  for (auto [h, w, c, window, stride] : {std::tuple<int, int, int, int, int>{8, 8, 5, 2, 2}, {7, 5, 3, 2, 2},
                                         {1, 3, 4, 2, 2}, {9, 7, 2, 3, 2}}) {
    check_avg_pool2d<float, Space>(2, h, w, c, window, stride, fp32_tol);
    check_avg_pool2d<vs::bf16, Space>(2, h, w, c, window, stride, bf16_tol);
  }
}
VITSCALE_ON_HOST_SPACES(avg_pool2d_id);

TEST_CASE("avg_pool2d rejects bad windows and shapes with a sentence") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  ten4<float, Space> x("x", 2, 7, 7, 3), y("y", 2, 4, 4, 3), y_floor("y_floor", 2, 3, 3, 3), empty("empty", 2, 0, 7, 3);
  const Space s;
  CHECK_NOTHROW(vk::avg_pool2d_forward(s, 2, 2, x, y));
  CHECK_ERROR(vk::avg_pool2d_forward(s, 2, 2, x, y_floor), "avg_pool2d_forward", "y");  // floor mode's size
  CHECK_ERROR(vk::avg_pool2d_forward(s, 0, 2, x, y), "window and stride must be positive");
  CHECK_ERROR(vk::avg_pool2d_forward(s, 2, 2, empty, y), "empty");
  CHECK_ERROR(vk::avg_pool2d_backward(s, 2, 2, y_floor, x), "avg_pool2d_backward", "dy");
  s.fence();
}
