#pragma once
// Collective checks shared by the in-process and the MPI communicator tests: every collective, blocking and
// non-blocking, against sums and gathers computed directly from each rank's random inputs (every rank can
// recompute every other rank's input from its seed).

#include <doctest/doctest.h>
#include <vitscale/core/communicator.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace vitscale::test {

// Rank r's input for the collective with tag t: n random floats in [-1, 1).
inline std::vector<float> rank_input(int rank, int tag, std::size_t n) {
  std::mt19937 gen(static_cast<std::uint32_t>(1000003 * rank + 7919 * tag + 17));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(gen);
  return v;
}

// Σ over ranks of rank_input(·, tag, n), in double.
inline std::vector<double> rank_sum(int ranks, int tag, std::size_t n) {
  std::vector<double> s(n, 0.0);
  for (int r = 0; r < ranks; ++r) {
    const auto v = rank_input(r, tag, n);
    for (std::size_t i = 0; i < n; ++i) s[i] += v[i];
  }
  return s;
}

// float sums of at most 4 terms of magnitude < 1, in any order: a few ulps of 4.
constexpr double sum_tolerance = 4e-6;

// Returns the number of mismatching elements (CHECKs inside report the first few).
inline int check_sum(const float* got, const std::vector<double>& want, std::size_t offset, std::size_t n) {
  int bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::fabs(got[i] - want[offset + i]) > sum_tolerance) {
      if (bad++ < 3) CHECK(got[i] == doctest::Approx(want[offset + i]).epsilon(1e-5));
    }
  }
  return bad;
}

// Every collective of `comm` with `n` elements, blocking and non-blocking; `tag` keeps inputs distinct.
inline void check_collectives(communicator& comm, std::size_t n, int tag) {
  const int p = comm.size(), r = comm.rank();
  INFO(comm.describe() << ", n = " << n);

  {  // all_gather, typed (floats) and blocking
    const auto mine = rank_input(r, tag, n);
    std::vector<float> all(p * n + 1, 42.0f);  // one guard element past the end
    comm.all_gather(mine.data(), all.data(), n);
    int bad = 0;
    for (int q = 0; q < p; ++q) {
      const auto theirs = rank_input(q, tag, n);
      for (std::size_t i = 0; i < n; ++i) bad += all[q * n + i] != theirs[i];
    }
    CHECK(bad == 0);
    CHECK(all[p * n] == 42.0f);
  }
  {  // all_gather of bytes of an odd size, non-blocking
    std::vector<unsigned char> mine(n + 3);
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = static_cast<unsigned char>(r * 31 + i * 7 + tag);
    std::vector<unsigned char> all(p * mine.size());
    request q = comm.iall_gather_bytes(mine.data(), all.data(), mine.size());
    q.wait();
    CHECK_FALSE(q.pending());
    int bad = 0;
    for (int s = 0; s < p; ++s)
      for (std::size_t i = 0; i < mine.size(); ++i)
        bad += all[s * mine.size() + i] != static_cast<unsigned char>(s * 31 + i * 7 + tag);
    CHECK(bad == 0);
  }
  {  // reduce_scatter, blocking
    const auto mine = rank_input(r, tag + 1, p * n);
    std::vector<float> out(n + 1, 42.0f);
    comm.reduce_scatter(mine.data(), out.data(), n);
    CHECK(check_sum(out.data(), rank_sum(p, tag + 1, p * n), r * n, n) == 0);
    CHECK(out[n] == 42.0f);
  }
  {  // all_reduce, out of place and in place
    const auto mine = rank_input(r, tag + 2, n);
    std::vector<float> out(n);
    comm.all_reduce(mine.data(), out.data(), n);
    const auto want = rank_sum(p, tag + 2, n);
    CHECK(check_sum(out.data(), want, 0, n) == 0);
    auto inplace = mine;
    comm.all_reduce(inplace.data(), inplace.data(), n);
    CHECK(check_sum(inplace.data(), want, 0, n) == 0);
  }
  {  // several outstanding requests, waited out of order, and a send buffer reused right after its wait
    auto a = rank_input(r, tag + 3, n);
    const auto b = rank_input(r, tag + 4, p * n);
    const auto c = rank_input(r, tag + 5, n);
    std::vector<float> b_out(n), c_all(p * n);
    request ra = comm.iall_reduce(a.data(), a.data(), n);
    request rb = comm.ireduce_scatter(b.data(), b_out.data(), n);
    request rc = comm.iall_gather(c.data(), c_all.data(), n);
    rc.wait();
    rb.wait();
    ra.wait();
    CHECK(check_sum(a.data(), rank_sum(p, tag + 3, n), 0, n) == 0);
    CHECK(check_sum(b_out.data(), rank_sum(p, tag + 4, p * n), r * n, n) == 0);
    int bad = 0;
    for (int q = 0; q < p; ++q) {
      const auto theirs = rank_input(q, tag + 5, n);
      for (std::size_t i = 0; i < n; ++i) bad += c_all[q * n + i] != theirs[i];
    }
    CHECK(bad == 0);
    // Requests dropped without wait() are waited by their destructors.
    std::vector<float> d = rank_input(r, tag + 6, n);
    { request rd = comm.iall_reduce(d.data(), d.data(), n); }
    CHECK(check_sum(d.data(), rank_sum(p, tag + 6, n), 0, n) == 0);
  }
  comm.barrier();
}

// Row and column groups of a rows × cols layout of `comm` (size rows·cols): split and run the collectives in
// each, then a nested split of the rows by parity of the column.
inline void check_splits(communicator& comm, int rows, int tag) {
  const int p = comm.size(), r = comm.rank();
  const int cols = p / rows;
  const int row = r / cols, col = r % cols;
  auto row_comm = comm.split(row, col);
  auto col_comm = comm.split(col, row);
  CHECK(row_comm->size() == cols);
  CHECK(row_comm->rank() == col);
  CHECK(col_comm->size() == rows);
  CHECK(col_comm->rank() == row);
  // The row's ranks are world ranks row·cols ..: the sum of world ranks over the row says so.
  float mine = static_cast<float>(r), sum = 0;
  row_comm->all_reduce(&mine, &sum, 1);
  CHECK(sum == doctest::Approx(cols * (row * cols) + cols * (cols - 1) / 2.0));
  col_comm->all_reduce(&mine, &sum, 1);
  CHECK(sum == doctest::Approx(rows * col + cols * rows * (rows - 1) / 2.0));
  check_collectives(*row_comm, 7, tag + 10 * row);
  check_collectives(*col_comm, 5, tag + 100 + 10 * col);
  // Reversed keys reverse the order.
  auto reversed = comm.split(0, p - r);
  CHECK(reversed->rank() == p - 1 - r);
  // A split of a split.
  auto nested = row_comm->split(col % 2, 0);
  CHECK(nested->size() == (cols + 1 - col % 2) / 2);
  check_collectives(*nested, 3, tag + 1000);
}

}  // namespace vitscale::test
