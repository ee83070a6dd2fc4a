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

namespace detail {

inline void check_drop_probability(const char* function, double p) {
  if (!(p >= 0.0 && p < 1.0))
    ::vitscale::detail::fail(function, ": the drop probability must be in [0, 1), it is ", p);
}

// out = in·mask/(1 − p) over a [rows, D] tensor; the same code serves forward (x -> y) and backward (dy -> dx).
template <class ExecSpace, class In, class Out>
void apply_dropout(const char* function, const ExecSpace& space, const rng_key& key, double p, const In& in,
                   const Out& out) {
  using A = accum_t<typename In::value_type>;
  using T = value_t<Out>;
  static_assert(is_input_view_v<ExecSpace, In, 2>, "dropout: the input must be a rank-2 View");
  static_assert(is_output_view_v<ExecSpace, Out, 2>, "dropout: the output must be a writable rank-2 View");
  check_drop_probability(function, p);
  const std::size_t rows = in.extent(0), cols = in.extent(1);
  ::vitscale::detail::require_extents(function, "the output", out, {rows, cols});
  if (p == 0.0) {
    for_each_element(space, "vitscale::dropout_identity", rows, cols, KOKKOS_LAMBDA(int i, int j) {
      out(i, j) = store_as<T>(static_cast<A>(in(i, j)));
    });
    return;
  }
  const float threshold = static_cast<float>(p);
  const A scale = static_cast<A>(1.0 / (1.0 - p));  // a multiply per element, not a division
  const std::uint64_t n = cols;
  if constexpr (std::is_same<typename ExecSpace::memory_space, Kokkos::HostSpace>::value) {
    // Host: a row per work item. The row's Philox blocks are drawn sixteen at a time into a small array (a
    // loop of independent calls the compiler can vectorize), then the row is scaled in a unit-stride loop
    // with a select, no division and no per-element index arithmetic.
    constexpr int blocks_per_batch = 16;
    for_each_row(space, "vitscale::dropout", rows, KOKKOS_LAMBDA(const team_member<ExecSpace>&, int i) {
      const std::uint64_t e0 = static_cast<std::uint64_t>(i) * n;  // first element of the row
      const std::uint64_t b_end = (e0 + n + 3) / 4;
      for (std::uint64_t b0 = e0 / 4; b0 < b_end; b0 += blocks_per_batch) {
        std::uint32_t words[4 * blocks_per_batch];
        for (int k = 0; k < blocks_per_batch; ++k) {
          const philox_block block = random_block(key, b0 + static_cast<std::uint64_t>(k));
          for (int w = 0; w < 4; ++w) words[4 * k + w] = block.word[w];
        }
        // Elements 4·b0 .. 4·b0 + 63 of the tensor, clipped to this row.
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
  } else {
    // Devices: one thread per Philox block, i.e. per four consecutive elements.
    const std::uint64_t total = static_cast<std::uint64_t>(rows) * cols;
    const auto blocks = static_cast<std::int64_t>((total + 3) / 4);
    Kokkos::parallel_for(
        "vitscale::dropout", Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(space, 0, blocks),
        KOKKOS_LAMBDA(std::int64_t block) {
          const philox_block words = random_block(key, static_cast<std::uint64_t>(block));
          for (int k = 0; k < 4; ++k) {
            const std::uint64_t e = static_cast<std::uint64_t>(block) * 4 + static_cast<std::uint64_t>(k);
            if (e >= total) break;
            const auto i = static_cast<int>(e / n), j = static_cast<int>(e % n);
            const bool keep = uniform_from_bits(words.word[k]) >= threshold;
            out(i, j) = store_as<T>(keep ? static_cast<A>(in(i, j)) * scale : A(0));
          }
        });
  }
}

// out = in·keep_b/(1 − p) (+ base when Add) over a [B, N, D] tensor.
template <bool Add, class ExecSpace, class Base, class In, class Out>
void apply_drop_path(const char* function, const ExecSpace& space, const rng_key& key, double p, const Base& base,
                     const In& in, const Out& out) {
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
                 const bool keep = random_uniform(key, static_cast<std::uint64_t>(b)) >= threshold;
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

// x: [rows, D] -> y: [rows, D] = x·mask/(1 − p)  (y may be x itself; any tensor viewed as [rows, D])
template <class ExecSpace, class X, class Y>
void dropout_forward(const ExecSpace& space, const rng_key& key, double p, const X& x, const Y& y) {
  detail::apply_dropout("dropout_forward", space, key, p, x, y);
}

// dy: [rows, D] -> dx: [rows, D] = dy·mask/(1 − p), the forward's mask regenerated from the same key
template <class ExecSpace, class DY, class DX>
void dropout_backward(const ExecSpace& space, const rng_key& key, double p, const DY& dy, const DX& dx) {
  detail::apply_dropout("dropout_backward", space, key, p, dy, dx);
}

// x: [B, N, D] -> y: [B, N, D] = x·keep_b/(1 − p), one keep decision per sample b
template <class ExecSpace, class X, class Y>
void drop_path_forward(const ExecSpace& space, const rng_key& key, double p, const X& x, const Y& y) {
  detail::apply_drop_path<false>("drop_path_forward", space, key, p, x, x, y);
}

// dy: [B, N, D] -> dx: [B, N, D] = dy·keep_b/(1 − p), the forward's decisions regenerated from the same key
template <class ExecSpace, class DY, class DX>
void drop_path_backward(const ExecSpace& space, const rng_key& key, double p, const DY& dy, const DX& dx) {
  detail::apply_drop_path<false>("drop_path_backward", space, key, p, dy, dy, dx);
}

// x, r: [B, N, D] -> y: [B, N, D] = x + drop_path(r): a residual join with stochastic depth on the branch r
// (y may be x itself). Its backward: dx = dy, dr = drop_path_backward(dy).
template <class ExecSpace, class X, class R, class Y>
void drop_path_add(const ExecSpace& space, const rng_key& key, double p, const X& x, const R& r, const Y& y) {
  detail::apply_drop_path<true>("drop_path_add", space, key, p, x, r, y);
}

}  // namespace vitscale::kernels
