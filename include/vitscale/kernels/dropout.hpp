#pragma once
// Dropout and stochastic depth (drop-path), forward and backward, with masks drawn from the counter-based
// Philox generator of core/random.hpp.
//
// Nothing is stored between forward and backward: the mask is a pure function of the rng_key (seed, step,
// stream = the tensor id of this dropout site) and the element's position, so the backward regenerates it.
// Element (i, j) of a [rows, D] tensor draws u = random_uniform(key, i·D + j) and is kept when u ≥ p; kept
// values are scaled by 1/(1 − p) so the expectation is unchanged. Drop-path draws one u per sample b of a
// [B, N, D] tensor (random_uniform(key, b)) and keeps or zeroes the whole sample. p = 0 is the identity;
// p must lie in [0, 1), otherwise vitscale::error. Storage float or bf16 (double for checks).
//
// A tensor that is a piece of a bigger one (a data-parallel rank's images, a model rank's columns of the MLP
// hidden activation, rows gathered from several ranks) passes a dropout_index, which says where each of its
// elements sits in the whole tensor, and a drop-path first_sample: the piece then draws exactly the numbers
// the whole tensor would draw there, so a sharded model applies the unsharded model's masks.

#include <vitscale/core/random.hpp>
#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vitscale::kernels {

// Whether dropout with probability p keeps element `index` (row-major position) of the tensor `key` names.
KOKKOS_INLINE_FUNCTION bool dropout_keeps(const rng_key& key, float p, std::uint64_t index) {
  return random_uniform(key, index) >= p;
}

// Whether drop-path with probability p keeps sample `b` of the batch `key` names.
KOKKOS_INLINE_FUNCTION bool drop_path_keeps(const rng_key& key, float p, std::uint64_t b) {
  return random_uniform(key, b) >= p;
}

// Where the elements of a [rows, cols] tensor sit in the whole tensor whose row-major index keys the mask:
// element (i, j) draws index base(i) + j, with
//     base(i) = (first_row + whole_row(i))·stride + col_offset.
// whole_row is the identity unless `ranks` > 1: the rows are then gathered chunk-major, then rank-major
// (model/sharded_linear.hpp), from `ranks` ranks that each hold `rank_rows` consecutive rows of the whole
// tensor cut into `chunks` chunks, so gathered row i of chunk c, rank k, row q within the chunk is row
// k·rank_rows + c·(rank_rows/chunks) + q. The default, {0, 0, 0, 1, 1, 0}, is the plain i·cols + j.
// The elements of one row stay consecutive indices, so a kernel still draws four of them per Philox call.
struct dropout_index {
  std::uint64_t first_row = 0;   // the whole tensor's row of row 0 (gathered: of rank 0's first row)
  std::uint64_t stride = 0;      // elements per row of the whole tensor (0: the tensor's own cols)
  std::uint64_t col_offset = 0;  // the whole tensor's column of column 0
  std::uint64_t ranks = 1;       // > 1: gathered rows, as above
  std::uint64_t chunks = 1;
  std::uint64_t rank_rows = 0;   // rows each rank contributes (ranks · rank_rows = the tensor's rows)

  KOKKOS_INLINE_FUNCTION std::uint64_t whole_row(std::uint64_t i) const {
    if (ranks <= 1) return i;
    const std::uint64_t q = rank_rows / chunks;  // rows per rank per chunk
    const std::uint64_t c = i / (ranks * q), within = i % (ranks * q);
    return within / q * rank_rows + c * q + within % q;
  }
  // The index drawn by element (i, 0); stride must be resolved (non-zero): see resolved().
  KOKKOS_INLINE_FUNCTION std::uint64_t base(std::uint64_t i) const {
    return (first_row + whole_row(i)) * stride + col_offset;
  }
  // This index with stride 0 replaced by `cols`.
  dropout_index resolved(std::uint64_t cols) const {
    dropout_index r = *this;
    if (r.stride == 0) r.stride = cols;
    return r;
  }
};

namespace detail {

inline void check_drop_probability(const char* function, double p) {
  if (!(p >= 0.0 && p < 1.0))
    ::vitscale::detail::fail(function, ": the drop probability must be in [0, 1), it is ", p);
}

// A dropout_index that fits a [rows, cols] tensor, with its stride resolved; otherwise vitscale::error.
inline dropout_index checked_index(const char* function, const dropout_index& index, std::size_t rows,
                                   std::size_t cols) {
  const dropout_index r = index.resolved(cols);
  if (r.col_offset + cols > r.stride)
    ::vitscale::detail::fail(function, ": columns ", r.col_offset, " to ", r.col_offset + cols,
                             " do not fit in rows of ", r.stride, " elements (dropout_index.stride)");
  if (r.ranks > 1) {
    if (r.chunks < 1 || r.rank_rows % r.chunks != 0 || r.rank_rows / r.chunks == 0 || r.ranks * r.rank_rows != rows)
      ::vitscale::detail::fail(function, ": gathered rows of ", r.ranks, " ranks × ", r.rank_rows, " rows in ",
                               r.chunks, " chunks do not make the tensor's ", rows,
                               " rows (each rank's rows must split into equal, non-empty chunks)");
  }
  return r;
}

// Host: a row per work item. The row's Philox blocks are drawn sixteen at a time into a small array (a loop
// of independent calls the compiler can vectorize), then the row is scaled in a unit-stride loop with a
// select, no division and no per-element index arithmetic. `index` is resolved.
template <class ExecSpace, class In, class Out>
void dropout_rows(const ExecSpace& space, const rng_key& key, double p, const dropout_index& index, const In& in,
                  const Out& out) {
  using A = accum_t<typename In::value_type>;
  using T = value_t<Out>;
  const float threshold = static_cast<float>(p);
  const A scale = static_cast<A>(1.0 / (1.0 - p));  // a multiply per element, not a division
  const std::uint64_t n = in.extent(1);
  constexpr int blocks_per_batch = 16;
  for_each_row(space, "vitscale::dropout", in.extent(0), KOKKOS_LAMBDA(const team_member<ExecSpace>&, int i) {
    const std::uint64_t e0 = index.base(static_cast<std::uint64_t>(i));  // the index of the row's element 0
    const std::uint64_t b_end = (e0 + n + 3) / 4;
    for (std::uint64_t b0 = e0 / 4; b0 < b_end; b0 += blocks_per_batch) {
      std::uint32_t words[4 * blocks_per_batch];
      for (int k = 0; k < blocks_per_batch; ++k) {
        const philox_block block = random_block(key, b0 + static_cast<std::uint64_t>(k));
        for (int w = 0; w < 4; ++w) words[4 * k + w] = block.word[w];
      }
      // Indices 4·b0 .. 4·b0 + 63, clipped to this row.
      const std::uint64_t first = 4 * b0;
      const int j0 = first > e0 ? static_cast<int>(first - e0) : 0;
      const std::uint64_t last = first + 4 * blocks_per_batch - e0;
      const int j1 = last < n ? static_cast<int>(last) : static_cast<int>(n);
      const std::uint32_t* row_words = words + (e0 + static_cast<std::uint64_t>(j0) - first);
      for (int j = j0; j < j1; ++j) {
        const bool keep = uniform_from_bits(row_words[j - j0]) >= threshold;
        const A v = static_cast<A>(in(i, j)) * scale;
        out(i, j) = store_as<T>(keep ? v : A(0));
      }
    }
  });
}

// Devices: one thread per Philox block, i.e. per four elements with consecutive indices, row by row: row i's
// elements are the indices [base(i), base(i) + cols), in the blocks base(i)/4 .. base(i)/4 + cols/4 + 1, and a
// thread whose block holds none of them does nothing. Used on host spaces only by the tests. `index` is
// resolved.
template <class ExecSpace, class In, class Out>
void dropout_blocks(const ExecSpace& space, const rng_key& key, double p, const dropout_index& index, const In& in,
                    const Out& out) {
  using A = accum_t<typename In::value_type>;
  using T = value_t<Out>;
  using policy = Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>;
  const float threshold = static_cast<float>(p);
  const A scale = static_cast<A>(1.0 / (1.0 - p));
  const std::uint64_t rows = in.extent(0), n = in.extent(1);
  const std::uint64_t per_row = (n + 3) / 4 + 1;  // blocks a row of n consecutive indices can touch
  const auto threads = static_cast<std::int64_t>(rows * per_row);
  Kokkos::parallel_for(
      "vitscale::dropout", policy(space, 0, threads), KOKKOS_LAMBDA(std::int64_t t) {
        const std::uint64_t i = static_cast<std::uint64_t>(t) / per_row;
        const std::uint64_t e0 = index.base(i);  // the row's run [e0, e0 + n)
        const std::uint64_t b = e0 / 4 + static_cast<std::uint64_t>(t) % per_row;
        if (4 * b >= e0 + n) return;
        const philox_block words = random_block(key, b);
        for (int k = 0; k < 4; ++k) {
          const std::uint64_t e = 4 * b + static_cast<std::uint64_t>(k);
          if (e < e0 || e >= e0 + n) continue;
          const auto ii = static_cast<int>(i), j = static_cast<int>(e - e0);
          const bool keep = uniform_from_bits(words.word[k]) >= threshold;
          out(ii, j) = store_as<T>(keep ? static_cast<A>(in(ii, j)) * scale : A(0));
        }
      });
}

// out = in·mask/(1 − p) over a [rows, D] tensor placed in the whole tensor by `index`; the same code serves
// forward (x -> y) and backward (dy -> dx).
template <class ExecSpace, class In, class Out>
void apply_dropout(const char* function, const ExecSpace& space, const rng_key& key, double p, const In& in,
                   const Out& out, const dropout_index& index) {
  using A = accum_t<typename In::value_type>;
  using T = value_t<Out>;
  static_assert(is_input_view_v<ExecSpace, In, 2>, "dropout: the input must be a rank-2 View");
  static_assert(is_output_view_v<ExecSpace, Out, 2>, "dropout: the output must be a writable rank-2 View");
  check_drop_probability(function, p);
  const std::size_t rows = in.extent(0), cols = in.extent(1);
  ::vitscale::detail::require_extents(function, "the output", out, {rows, cols});
  const dropout_index resolved = checked_index(function, index, rows, cols);
  if (p == 0.0) {
    for_each_element(space, "vitscale::dropout_identity", rows, cols, KOKKOS_LAMBDA(int i, int j) {
      out(i, j) = store_as<T>(static_cast<A>(in(i, j)));
    });
    return;
  }
  if constexpr (std::is_same<typename ExecSpace::memory_space, Kokkos::HostSpace>::value)
    dropout_rows(space, key, p, resolved, in, out);
  else
    dropout_blocks(space, key, p, resolved, in, out);
}

// out = in·keep_b/(1 − p) (+ base when Add) over a [B, N, D] tensor whose sample b is first_sample + b of
// the whole batch.
template <bool Add, class ExecSpace, class Base, class In, class Out>
void apply_drop_path(const char* function, const ExecSpace& space, const rng_key& key, double p, const Base& base,
                     const In& in, const Out& out, std::uint64_t first_sample) {
  using A = accum_t<typename In::value_type>;
  using T = value_t<Out>;
  static_assert(is_input_view_v<ExecSpace, In, 3>, "drop_path: the input must be a rank-3 View");
  static_assert(is_output_view_v<ExecSpace, Out, 3>, "drop_path: the output must be a writable rank-3 View");
  check_drop_probability(function, p);
  const std::size_t batch = in.extent(0), tokens = in.extent(1), cols = in.extent(2);
  ::vitscale::detail::require_extents(function, "the output", out, {batch, tokens, cols});
  if constexpr (Add) {
    static_assert(is_input_view_v<ExecSpace, Base, 3>, "drop_path_add: x must be a rank-3 View");
    ::vitscale::detail::require_extents(function, "x", base, {batch, tokens, cols});
  }
  const float threshold = static_cast<float>(p);
  const A scale = static_cast<A>(1.0 / (1.0 - p));
  const int n = static_cast<int>(tokens), d = static_cast<int>(cols);
  for_each_row(space, "vitscale::drop_path", batch * tokens,
               KOKKOS_LAMBDA(const team_member<ExecSpace>& member, int row) {
                 const int b = row / n, t = row % n;
                 const bool keep = random_uniform(key, first_sample + static_cast<std::uint64_t>(b)) >= threshold;
                 const A factor = keep ? scale : A(0);
                 if (contiguous_rows_v<Base, In, Out>) {
                   if (member.team_size() == 1 && d > 0) {  // host: plain pointers, so the loop vectorizes
                     const auto* src = &in(b, t, 0);
                     const auto* add = &base(b, t, 0);
                     auto* dst = &out(b, t, 0);
                     for (int j = 0; j < d; ++j) {
                       A v = static_cast<A>(src[j]) * factor;
                       if (Add) v += static_cast<A>(add[j]);
                       dst[j] = store_as<T>(v);
                     }
                     return;
                   }
                 }
                 row_for(member, d, [&](int j) {
                   A v = static_cast<A>(in(b, t, j)) * factor;
                   if (Add) v += static_cast<A>(base(b, t, j));
                   out(b, t, j) = store_as<T>(v);
                 });
               });
}

}  // namespace detail

// x: [rows, D] -> y: [rows, D] = x·mask/(1 − p)  (y may be x itself; any tensor viewed as [rows, D]).
// `index` places x in a whole tensor whose mask it takes (dropout_index above; default: x is the whole tensor).
template <class ExecSpace, class X, class Y>
void dropout_forward(const ExecSpace& space, const rng_key& key, double p, const X& x, const Y& y,
                     const dropout_index& index = {}) {
  detail::apply_dropout("dropout_forward", space, key, p, x, y, index);
}

// dy: [rows, D] -> dx: [rows, D] = dy·mask/(1 − p), the forward's mask regenerated from the same key and index
template <class ExecSpace, class DY, class DX>
void dropout_backward(const ExecSpace& space, const rng_key& key, double p, const DY& dy, const DX& dx,
                      const dropout_index& index = {}) {
  detail::apply_dropout("dropout_backward", space, key, p, dy, dx, index);
}

// x: [B, N, D] -> y: [B, N, D] = x·keep_b/(1 − p), one keep decision per sample b, drawn as sample
// first_sample + b of the whole batch
template <class ExecSpace, class X, class Y>
void drop_path_forward(const ExecSpace& space, const rng_key& key, double p, const X& x, const Y& y,
                       std::uint64_t first_sample = 0) {
  detail::apply_drop_path<false>("drop_path_forward", space, key, p, x, x, y, first_sample);
}

// dy: [B, N, D] -> dx: [B, N, D] = dy·keep_b/(1 − p), the forward's decisions regenerated from the same key
// and first_sample
template <class ExecSpace, class DY, class DX>
void drop_path_backward(const ExecSpace& space, const rng_key& key, double p, const DY& dy, const DX& dx,
                        std::uint64_t first_sample = 0) {
  detail::apply_drop_path<false>("drop_path_backward", space, key, p, dy, dy, dx, first_sample);
}

// x, r: [B, N, D] -> y: [B, N, D] = x + drop_path(r): a residual join with stochastic depth on the branch r
// (y may be x itself). Its backward: dx = dy, dr = drop_path_backward(dy) with the same first_sample.
template <class ExecSpace, class X, class R, class Y>
void drop_path_add(const ExecSpace& space, const rng_key& key, double p, const X& x, const R& r, const Y& y,
                   std::uint64_t first_sample = 0) {
  detail::apply_drop_path<true>("drop_path_add", space, key, p, x, r, y, first_sample);
}

}  // namespace vitscale::kernels
