// The counter-based generator (Philox-4x32-10 against Random123's known answers), dropout and drop-path:
// the mask is the documented function of (seed, step, stream, position), the keep rate is 1 − p within a
// statistical bound, the same key gives the same mask and a different step, stream or seed another,
// backward applies the forward's mask, p = 0 is the identity, and bad probabilities and shapes throw.
#include <support/testing.hpp>

#include <vitscale/core/random.hpp>
#include <vitscale/kernels/dropout.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace vs = vitscale;
namespace vk = vitscale::kernels;
using vs::test::mat;
using vs::test::ten3;

TEST_CASE("philox4x32-10 reproduces Random123's known-answer vectors") {
  struct kat {
    vs::philox_block counter;
    std::uint32_t key0, key1;
    vs::philox_block expected;
  };
  // Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter, key, result.
  const kat vectors[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const kat& v : vectors) {
    const vs::philox_block out = vs::philox4x32_10(v.counter, v.key0, v.key1);
    for (int k = 0; k < 4; ++k) CHECK(out.word[k] == v.expected.word[k]);
  }
}

TEST_CASE("random_uniform is on [0, 1), maps the key and index into the counter as documented, and is uniform") {
  const vs::rng_key key{0x0123456789abcdefull, 17, 5};
  // Element 4·b + k is word k of the block with counter (b low, b high, step, stream) under the seed.
  const std::uint64_t index = (std::uint64_t{3} << 32 | 9) * 4 + 2;
  const vs::philox_block words = vs::philox4x32_10({{9, 3, 17, 5}}, 0x89abcdefu, 0x01234567u);
  CHECK(vs::random_uniform(key, index) == static_cast<float>(words.word[2] >> 8) * 0x1p-24f);
  CHECK(vs::uniform_from_bits(0) == 0.0f);
  CHECK(vs::uniform_from_bits(0xffffffffu) < 1.0f);
  // Mean 1/2 and variance 1/12 over 2^20 draws (bounds about 6 standard errors).
  const int n = 1 << 20;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double u = vs::random_uniform(key, static_cast<std::uint64_t>(i));
    sum += u;
    sum_sq += u * u;
  }
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  CHECK(std::fabs(mean - 0.5) < 6 * std::sqrt(1.0 / 12 / n));
  CHECK(std::fabs(var - 1.0 / 12) < 6 * std::sqrt(1.0 / 180 / n));
}

namespace {

template <class T, class Space>
void check_dropout(std::size_t rows, std::size_t cols, double p) {
  CAPTURE(rows);
  CAPTURE(cols);
  CAPTURE(p);
  INFO("storage " << std::string(vs::test::type_name<T>()));
  std::mt19937 rng(static_cast<unsigned>(rows + cols));
  mat<T, Space> x("x", rows, cols), y("y", rows, cols), y2("y2", rows, cols), dy("dy", rows, cols),
      dx("dx", rows, cols);
  // Inputs bounded away from zero, so that a zero output means a dropped element.
  auto xs = vs::test::fill_random(x, rng, 0.25, 2.0);
  auto dys = vs::test::fill_random(dy, rng, -2.0, -0.25);
  for (auto v : {y, y2, dx}) vs::test::poison(v);
  const vs::rng_key key{42, 1000, 7};
  const Space space;
  vk::dropout_forward(space, key, p, x, y);
  vk::dropout_backward(space, key, p, dy, dx);
  space.fence();
  const auto ys = vs::test::read(y), dxs = vs::test::read(dx);
  const double scale = 1 / (1 - p);
  // bf16 storage rounds the scaled value once; float storage too (the scale is applied in float).
  const double tol = sizeof(T) == 2 ? 4e-3 : 2e-7;
  std::size_t kept = 0, wrong = 0, unwritten = 0;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const bool keep = vk::dropout_keeps(key, static_cast<float>(p), k);
    kept += keep;
    unwritten += std::isnan(ys[k]) || std::isnan(dxs[k]);
    const double want_y = keep ? xs[k] * scale : 0.0, want_dx = keep ? dys[k] * scale : 0.0;
    wrong += !(std::fabs(ys[k] - want_y) <= tol * std::fabs(want_y));
    wrong += !(std::fabs(dxs[k] - want_dx) <= tol * std::fabs(want_dx));
  }
  CHECK(unwritten == 0);
  CHECK(wrong == 0);
  // The keep rate within 5 standard errors of 1 − p (only meaningful with many elements).
  const double n = static_cast<double>(xs.size());
  if (n >= 10000) CHECK(std::fabs(kept / n - (1 - p)) < 5 * std::sqrt(p * (1 - p) / n));

  // Same key: the same bits. Another step, stream or seed: another mask.
  vk::dropout_forward(space, key, p, x, y2);
  space.fence();
  CHECK(vs::test::bytes(y2) == vs::test::bytes(y));
  if (n >= 10000) {
    for (const vs::rng_key other : {vs::rng_key{42, 1001, 7}, vs::rng_key{42, 1000, 8}, vs::rng_key{43, 1000, 7}}) {
      vk::dropout_forward(space, other, p, x, y2);
      space.fence();
      const auto y2s = vs::test::read(y2);
      std::size_t differ = 0;
      for (std::size_t k = 0; k < xs.size(); ++k) differ += (y2s[k] == 0.0) != (ys[k] == 0.0);
      // Two independent masks disagree on a fraction 2p(1 − p) of elements.
      CHECK(std::fabs(differ / n - 2 * p * (1 - p)) < 5 * std::sqrt(2 * p * (1 - p) / n));
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("dropout applies the documented mask, at the expected rate, forward and backward", Space,
                          dropout_id) {
  for (double p : {0.1, 0.5}) {
    check_dropout<float, Space>(197, 768, p);
    check_dropout<vs::bf16, Space>(197, 768, p);
    check_dropout<float, Space>(3, 50, p);  // rows not a multiple of the four elements per Philox call
    check_dropout<vs::bf16, Space>(1, 1, p);
  }
  check_dropout<float, Space>(257, 192, 0.9);
}
VITSCALE_ON_HOST_SPACES(dropout_id);

TEST_CASE_TEMPLATE_DEFINE("dropout with p = 0 is the identity; p outside [0, 1) and bad shapes throw", Space,
                          dropout_args_id) {
  std::mt19937 rng(1);
  mat<float, Space> x("x", 7, 50), y("y", 7, 50), bad("bad", 7, 51);
  vs::test::fill_random(x, rng, -1.0, 1.0);
  vs::test::poison(y);
  const Space s;
  const vs::rng_key key{1, 2, 3};
  vk::dropout_forward(s, key, 0.0, x, y);
  s.fence();
  CHECK(vs::test::bytes(y) == vs::test::bytes(x));
  for (double p : {1.0, -0.1, 1.5, std::nan("")}) {
    CAPTURE(p);
    CHECK_THROWS_AS(vk::dropout_forward(s, key, p, x, y), vs::error);
    CHECK_THROWS_AS(vk::dropout_backward(s, key, p, x, y), vs::error);
  }
  CHECK_THROWS_AS(vk::dropout_forward(s, key, 0.1, x, bad), vs::error);
  CHECK_THROWS_AS(vk::dropout_backward(s, key, 0.1, bad, y), vs::error);
  s.fence();
}
VITSCALE_ON_HOST_SPACES(dropout_args_id);

namespace {

template <class T, class Space>
void check_drop_path(std::size_t batch, std::size_t tokens, std::size_t cols, double p) {
  CAPTURE(batch);
  CAPTURE(tokens);
  CAPTURE(cols);
  CAPTURE(p);
  INFO("storage " << std::string(vs::test::type_name<T>()));
  std::mt19937 rng(static_cast<unsigned>(batch + tokens + cols));
  ten3<T, Space> x("x", batch, tokens, cols), r("r", batch, tokens, cols), y("y", batch, tokens, cols),
      sum("sum", batch, tokens, cols), dy("dy", batch, tokens, cols), dx("dx", batch, tokens, cols);
  const auto xs = vs::test::fill_random(x, rng, 0.25, 2.0);
  const auto rs = vs::test::fill_random(r, rng, -2.0, -0.25);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  for (auto v : {y, sum, dx}) vs::test::poison(v);
  const vs::rng_key key{9, 5, 11};
  const Space space;
  vk::drop_path_forward(space, key, p, x, y);
  vk::drop_path_add(space, key, p, x, r, sum);
  vk::drop_path_backward(space, key, p, dy, dx);
  space.fence();
  const double scale = 1 / (1 - p);
  std::vector<double> want_y(xs.size()), want_sum(xs.size()), want_dx(xs.size());
  std::size_t kept = 0;
  for (std::size_t b = 0; b < batch; ++b) {
    const bool keep = vk::drop_path_keeps(key, static_cast<float>(p), b);
    kept += keep;
    for (std::size_t k = b * tokens * cols; k < (b + 1) * tokens * cols; ++k) {
      want_y[k] = keep ? xs[k] * scale : 0.0;
      want_sum[k] = xs[k] + (keep ? rs[k] * scale : 0.0);
      want_dx[k] = keep ? dys[k] * scale : 0.0;
    }
  }
  const double tol = sizeof(T) == 2 ? 4e-3 : 2e-7;  // one rounding of the output
  vs::test::check_close(vs::test::read(y), want_y, tol, "drop_path(x)", 0.0);
  vs::test::check_close(vs::test::read(sum), want_sum, tol, "x + drop_path(r)", 1e-6);
  vs::test::check_close(vs::test::read(dx), want_dx, tol, "backward", 0.0);
  const double n = static_cast<double>(batch);
  if (batch >= 1000) CHECK(std::fabs(kept / n - (1 - p)) < 5 * std::sqrt(p * (1 - p) / n));
  if (batch >= 5) {
    CHECK(kept > 0);  // both outcomes occur, so the per-sample structure is exercised
    CHECK(kept < batch);
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("drop-path keeps or drops whole samples, forward, fused with the residual, and backward",
                          Space, drop_path_id) {
  check_drop_path<float, Space>(9, 197, 50, 0.5);
  check_drop_path<vs::bf16, Space>(9, 197, 50, 0.5);
  check_drop_path<float, Space>(8192, 1, 3, 0.2);  // many samples for the keep rate
  check_drop_path<float, Space>(1, 1, 768, 0.3);
}
VITSCALE_ON_HOST_SPACES(drop_path_id);

TEST_CASE_TEMPLATE_DEFINE("drop-path rejects bad probabilities and shapes", Space, drop_path_args_id) {
  ten3<float, Space> x("x", 2, 3, 4), y("y", 2, 3, 4), bad("bad", 2, 4, 4);
  const Space s;
  const vs::rng_key key{};
  vk::drop_path_forward(s, key, 0.0, x, y);
  CHECK_THROWS_AS(vk::drop_path_forward(s, key, 1.0, x, y), vs::error);
  CHECK_THROWS_AS(vk::drop_path_backward(s, key, -0.5, x, y), vs::error);
  CHECK_THROWS_AS(vk::drop_path_add(s, key, 1.0, x, x, y), vs::error);
  CHECK_THROWS_AS(vk::drop_path_forward(s, key, 0.1, x, bad), vs::error);
  CHECK_THROWS_AS(vk::drop_path_backward(s, key, 0.1, bad, y), vs::error);
  CHECK_THROWS_AS(vk::drop_path_add(s, key, 0.1, bad, x, y), vs::error);
  CHECK_THROWS_AS(vk::drop_path_add(s, key, 0.1, x, bad, y), vs::error);
  s.fence();
}
VITSCALE_ON_HOST_SPACES(drop_path_args_id);
