// The counter-based generator (Philox-4x32-10 against Random123's known answers), dropout and drop-path:
// the mask is the documented function of (seed, step, stream, position), the keep rate is 1 − p within a
// statistical bound, the same key gives the same mask and a different step, stream or seed another,
// backward applies the forward's mask, p = 0 is the identity, and bad probabilities and shapes throw. A piece
// of a tensor (rows, columns, rows gathered from ranks; a range of samples) placed by its dropout_index or
// first_sample draws exactly the whole tensor's mask there.
#include <support/testing.hpp>

#include <vitscale/core/random.hpp>
#include <vitscale/kernels/dropout.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
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

// The whole tensor's row of gathered row i (chunk-major, then rank-major), written out the slow way:
// chunk c holds rank 0's rows c·q .. c·q + q − 1, then rank 1's, ...
std::size_t gathered_to_whole(std::size_t i, std::size_t ranks, std::size_t chunks, std::size_t rank_rows) {
  const std::size_t q = rank_rows / chunks;
  for (std::size_t c = 0; c < chunks; ++c)
    for (std::size_t k = 0; k < ranks; ++k)
      for (std::size_t r = 0; r < q; ++r, --i)
        if (i == 0) return k * rank_rows + c * q + r;
  return ~std::size_t(0);
}

// A piece of a [R, W] tensor — its rows whole_row(i) (given), columns c0 .. c0 + cols − 1 — dropped out with
// the dropout_index that places it, by the public kernels (the host path) and by the device algorithm run on
// the host space, equals the same elements of the whole tensor dropped out with the plain index: bit for bit,
// forward and backward.
template <class T, class Space>
void check_piece(const char* what, const std::vector<std::size_t>& whole_rows, std::size_t c0, std::size_t cols,
                 const vk::dropout_index& index) {
  INFO(what << ", storage " << std::string(vs::test::type_name<T>()));
  const std::size_t R = 37, W = 50;
  const double p = 0.3;
  std::mt19937 rng(5);
  mat<T, Space> x("x", R, W), y("y", R, W), dx("dx", R, W);
  vs::test::fill_random(x, rng, 0.25, 2.0);
  const vs::rng_key key{77, 3, 12};
  const Space space;
  vk::dropout_forward(space, key, p, x, y);
  vk::dropout_backward(space, key, p, x, dx);
  space.fence();
  const auto ys = vs::test::read(y), dxs = vs::test::read(dx);

  const std::size_t rows = whole_rows.size();
  mat<T, Space> piece("piece", rows, cols), out("out", rows, cols);
  {
    const auto xh = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), x);
    auto ph = Kokkos::create_mirror_view(piece);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < cols; ++j) ph(i, j) = xh(whole_rows[i], c0 + j);
    Kokkos::deep_copy(piece, ph);
  }
  std::vector<double> want(rows * cols), want_back(rows * cols);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      want[i * cols + j] = ys[whole_rows[i] * W + c0 + j];
      want_back[i * cols + j] = dxs[whole_rows[i] * W + c0 + j];
    }
  const auto resolved = vk::detail::checked_index("test", index, rows, cols);
  for (int algorithm = 0; algorithm < 2; ++algorithm) {
    CAPTURE(algorithm);  // 0: the kernels' host path; 1: the device algorithm, on this host space
    for (int backward = 0; backward < 2; ++backward) {
      CAPTURE(backward);
      vs::test::poison(out);
      if (algorithm == 1)
        vk::detail::dropout_blocks(space, key, p, resolved, piece, out);
      else if (backward == 1)
        vk::dropout_backward(space, key, p, piece, out, index);
      else
        vk::dropout_forward(space, key, p, piece, out, index);
      space.fence();
      const auto got = vs::test::read(out);
      std::size_t wrong = 0;
      for (std::size_t k = 0; k < got.size(); ++k) wrong += !(got[k] == (backward ? want_back[k] : want[k]));
      CHECK(wrong == 0);
    }
  }
}

std::vector<std::size_t> row_range(std::size_t first, std::size_t count) {
  std::vector<std::size_t> r(count);
  for (std::size_t i = 0; i < count; ++i) r[i] = first + i;
  return r;
}

template <class T, class Space>
void check_pieces() {
  vk::dropout_index plain;
  check_piece<T, Space>("the whole tensor", row_range(0, 37), 0, 50, plain);
  vk::dropout_index rows;
  rows.first_row = 5;
  check_piece<T, Space>("rows 5 .. 15", row_range(5, 11), 0, 50, rows);
  vk::dropout_index block = rows;
  block.stride = 50;
  block.col_offset = 7;
  check_piece<T, Space>("rows 5 .. 15, columns 7 .. 19", row_range(5, 11), 7, 13, block);
  vk::dropout_index last_cols;
  last_cols.first_row = 36;
  last_cols.stride = 50;
  last_cols.col_offset = 25;
  check_piece<T, Space>("row 36, columns 25 .. 49", row_range(36, 1), 25, 25, last_cols);
  // Gathered rows, columns 7 .. 19: 3 ranks of 4 rows in 2 chunks from row 3 on, 2 ranks of 5 rows in one
  // chunk, 4 ranks of 8 rows in 4 chunks from row 1 on.
  using layout = std::array<std::size_t, 4>;  // ranks, chunks, rows per rank, first row
  for (auto [ranks, chunks, rank_rows, first] : {layout{3, 2, 4, 3}, layout{2, 1, 5, 0}, layout{4, 4, 8, 1}}) {
    vk::dropout_index g;
    g.first_row = first;
    g.stride = 50;
    g.col_offset = 7;
    g.ranks = ranks;
    g.chunks = chunks;
    g.rank_rows = rank_rows;
    std::vector<std::size_t> whole(ranks * rank_rows);
    for (std::size_t i = 0; i < whole.size(); ++i) {
      whole[i] = first + gathered_to_whole(i, ranks, chunks, rank_rows);
      CHECK(g.whole_row(i) + first == whole[i]);
    }
    const std::string what = "gathered rows of " + std::to_string(ranks) + " ranks × " + std::to_string(rank_rows) +
                             " rows in " + std::to_string(chunks) + " chunks";
    check_piece<T, Space>(what.c_str(), whole, 7, 13, g);
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("a piece of a tensor placed by a dropout_index draws the whole tensor's mask there", Space,
                          dropout_index_id) {
  check_pieces<float, Space>();
  check_pieces<vs::bf16, Space>();
  // Indices that do not fit the tensor are errors, not silently overlapping masks.
  mat<float, Space> x("x", 6, 10), y("y", 6, 10);
  const Space s;
  vk::dropout_index narrow;
  narrow.stride = 12;
  narrow.col_offset = 3;
  CHECK_THROWS_AS(vk::dropout_forward(s, vs::rng_key{}, 0.1, x, y, narrow), vs::error);
  vk::dropout_index gathered;
  gathered.ranks = 2;
  gathered.chunks = 2;
  gathered.rank_rows = 3;  // 3 rows do not split into 2 chunks
  CHECK_THROWS_AS(vk::dropout_backward(s, vs::rng_key{}, 0.1, x, y, gathered), vs::error);
  gathered.rank_rows = 4;  // 2 × 4 rows, the tensor has 6
  gathered.chunks = 1;
  CHECK_THROWS_AS(vk::dropout_forward(s, vs::rng_key{}, 0.1, x, y, gathered), vs::error);
  gathered.ranks = 3;
  gathered.rank_rows = 2;
  vk::dropout_forward(s, vs::rng_key{}, 0.1, x, y, gathered);  // 3 × 2 rows: fits
  s.fence();
}
VITSCALE_ON_HOST_SPACES(dropout_index_id);

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

TEST_CASE_TEMPLATE_DEFINE("drop-path on samples first_sample .. of a batch makes the whole batch's decisions", Space,
                          drop_path_offset_id) {
  const std::size_t B = 40, n = 3, d = 5, first = 17, b = 12;
  const double p = 0.4;
  std::mt19937 rng(3);
  ten3<float, Space> x("x", B, n, d), r("r", B, n, d), y("y", B, n, d), sum("sum", B, n, d), dx("dx", B, n, d);
  vs::test::fill_random(x, rng, 0.25, 2.0);
  vs::test::fill_random(r, rng, -2.0, -0.25);
  const vs::rng_key key{4, 8, 15};
  const Space space;
  vk::drop_path_forward(space, key, p, x, y);
  vk::drop_path_add(space, key, p, x, r, sum);
  vk::drop_path_backward(space, key, p, x, dx);
  const std::pair<std::size_t, std::size_t> part{first, first + b};
  ten3<float, Space> xp("xp", b, n, d), rp("rp", b, n, d), yp("yp", b, n, d), sump("sump", b, n, d),
      dxp("dxp", b, n, d);
  Kokkos::deep_copy(space, xp, Kokkos::subview(x, part, Kokkos::ALL(), Kokkos::ALL()));
  Kokkos::deep_copy(space, rp, Kokkos::subview(r, part, Kokkos::ALL(), Kokkos::ALL()));
  vk::drop_path_forward(space, key, p, xp, yp, first);
  vk::drop_path_add(space, key, p, xp, rp, sump, first);
  vk::drop_path_backward(space, key, p, xp, dxp, first);
  space.fence();
  const auto slice = [&](const ten3<float, Space>& whole) {
    const auto all = vs::test::read(whole);
    return std::vector<double>(all.begin() + static_cast<std::ptrdiff_t>(first * n * d),
                               all.begin() + static_cast<std::ptrdiff_t>((first + b) * n * d));
  };
  CHECK(vs::test::read(yp) == slice(y));
  CHECK(vs::test::read(sump) == slice(sum));
  CHECK(vs::test::read(dxp) == slice(dx));
  // Both decisions occur among the piece's samples, and they are not those of samples 0 .. b − 1.
  std::size_t kept = 0, same_as_first = 0;
  for (std::size_t s = 0; s < b; ++s) {
    const bool keep = vk::drop_path_keeps(key, static_cast<float>(p), first + s);
    kept += keep;
    same_as_first += keep == vk::drop_path_keeps(key, static_cast<float>(p), s);
  }
  CHECK(kept > 0);
  CHECK(kept < b);
  CHECK(same_as_first < b);
}
VITSCALE_ON_HOST_SPACES(drop_path_offset_id);

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
