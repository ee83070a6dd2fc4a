#pragma once
// What the row-wise kernels (norms, activations, softmax, residual, dropout, pooling) share: the
// accumulation type, compile-time checks on the Views they are given, the row launch, and the fixed-order
// reduction of parameter gradients over rows.
//
// Views are template parameters rather than one alias, so that a caller's View<float**> and
// View<const bf16**, LayoutRight, HostSpace> both bind without conversions; what is required of them
// (rank, element type, memory the execution space can reach) is a static_assert, and shapes are checked
// at run time with vitscale::detail::require_extents.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/fast_math.hpp>
#include <vitscale/core/views.hpp>

#include <cstddef>
#include <type_traits>

namespace vitscale::kernels {

// The shape [chunks, cols] of a float workspace in which a parameter gradient is reduced over rows (see
// param_grad_chunks below); what layernorm_backward_workspace, gelu_bias_backward_workspace and
// column_sum_workspace return.
struct grad_workspace_shape {
  std::size_t chunks;
  std::size_t cols;
};

}  // namespace vitscale::kernels

namespace vitscale::kernels::detail {

// Accumulation is float for float and bf16 storage. double storage (used by tests to check gradients by
// finite differences against the kernels themselves) accumulates in double.
template <class T>
using accum_t = std::conditional_t<std::is_same<std::remove_cv_t<T>, double>::value, double, float>;

template <class T>
constexpr bool is_storage_v = std::is_same<std::remove_cv_t<T>, float>::value ||
                              std::is_same<std::remove_cv_t<T>, ::vitscale::bf16>::value ||
                              std::is_same<std::remove_cv_t<T>, double>::value;

// A View of rank `Rank` holding float, bf16 or double, in memory `ExecSpace` can access.
template <class ExecSpace, class View, unsigned Rank>
constexpr bool is_input_view_v = [] {
  if constexpr (Kokkos::is_view<View>::value) {
    return static_cast<unsigned>(View::rank) == Rank && is_storage_v<typename View::value_type> &&
           Kokkos::SpaceAccessibility<ExecSpace, typename View::memory_space>::accessible;
  } else {
    return false;
  }
}();

// The same, and writable.
template <class ExecSpace, class View, unsigned Rank>
constexpr bool is_output_view_v = [] {
  if constexpr (is_input_view_v<ExecSpace, View, Rank>) {
    return !std::is_const<typename View::value_type>::value;
  } else {
    return false;
  }
}();

// A writable View of the accumulation type `Accum` (saved statistics, gradient workspaces).
template <class ExecSpace, class View, unsigned Rank, class Accum>
constexpr bool is_accum_view_v = [] {
  if constexpr (is_output_view_v<ExecSpace, View, Rank>) {
    return std::is_same<typename View::value_type, Accum>::value;
  } else {
    return false;
  }
}();

template <class View>
using value_t = typename View::non_const_value_type;

// Whether every View's last dimension is contiguous, known at compile time (LayoutRight; any rank-1 View
// but a strided one). Host loops over such rows index a plain pointer to the row, which compilers vectorize
// where the same loop through View accesses is not (the View's handle is reloaded, bf16 loads defeat the
// address analysis).
template <class... Views>
constexpr bool contiguous_rows_v =
    ((std::is_same<typename Views::array_layout, Kokkos::LayoutRight>::value ||
      (Views::rank == 1 && std::is_same<typename Views::array_layout, Kokkos::LayoutLeft>::value)) &&
     ...);

// Rounds (or widens) an accumulator into a storage element.
template <class T, class A>
KOKKOS_FORCEINLINE_FUNCTION T store_as(A value) {
  if constexpr (std::is_same<T, ::vitscale::bf16>::value) {
    return T(static_cast<float>(value));
  } else {
    return static_cast<T>(value);
  }
}

// Per-element exp, tanh, erf in the accumulation type: core/fast_math's branch-free versions for float
// (a few ulp, and they let host loops vectorize), the library's for double (gradient checks).
template <class A>
KOKKOS_FORCEINLINE_FUNCTION A exp(A x) {
  if constexpr (std::is_same<A, float>::value) {
    return ::vitscale::fast::exp(x);
  } else {
    return ::vitscale::kmath::exp(x);
  }
}
template <class A>
KOKKOS_FORCEINLINE_FUNCTION A erf(A x) {
  if constexpr (std::is_same<A, float>::value) {
    return ::vitscale::fast::erf(x);
  } else {
    return ::vitscale::kmath::erf(x);
  }
}

// Parameter gradients (LayerNorm's dγ, dβ; a bias gradient) are reduced over rows in two passes without
// atomics: rows are cut into at most this many contiguous chunks, each chunk's sum goes into its row of
// a caller-provided workspace, and a second pass adds the chunks in order. The cut depends only on the
// number of rows, so the result is bit-identical for any thread count.
constexpr std::size_t param_grad_chunks = 64;

inline std::size_t grad_chunk_count(std::size_t rows) {
  return rows < param_grad_chunks ? (rows == 0 ? 1 : rows) : param_grad_chunks;
}

// First row of chunk `c` of `chunks` over `rows` rows (chunk c covers [begin(c), begin(c + 1))).
KOKKOS_INLINE_FUNCTION std::size_t grad_chunk_begin(std::size_t c, std::size_t rows, std::size_t chunks) {
  return c * rows / chunks;
}

template <class ExecSpace>
using team_member = typename Kokkos::TeamPolicy<ExecSpace>::member_type;

// Runs f(member, row) for every row, one team per row; inner loops use TeamThreadRange over the columns,
// which on the host is a plain loop in column order.
// Inside the kernels' lambdas, compile-time choices are plain `if`s, not `if constexpr`: nvcc rejects an
// extended __host__ __device__ lambda that first captures a variable inside an `if constexpr` branch.
template <class ExecSpace, class F>
void for_each_row(const ExecSpace& space, const char* label, std::size_t rows, const F& f) {
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  Kokkos::parallel_for(
      label, policy(space, static_cast<int>(rows), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) { f(member, member.league_rank()); });
}

// Σ_j term(j) over one row, j in [0, n), by the calling team. A team of one thread (every host backend)
// keeps eight partial sums in a fixed lane order, which breaks the add-latency chain of a single sum and
// lets the compiler vectorize; larger teams (GPUs) use the team reduction. Either way the order depends
// only on n and the team size, so results are reproducible.
template <class A, class Member, class Term>
KOKKOS_INLINE_FUNCTION A row_sum(const Member& member, int n, const Term& term) {
  if (member.team_size() == 1) {
    A lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
      for (int l = 0; l < 8; ++l) lane[l] += term(j + l);
    for (int l = 0; j < n; ++j, ++l) lane[l] += term(j);
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
  }
  A sum = 0;
  Kokkos::parallel_reduce(Kokkos::TeamThreadRange(member, n), [&](int j, A& s) { s += term(j); }, sum);
  return sum;
}

// f(j) for every j in [0, n) by the calling team. A team of one thread (every host backend) runs a plain
// unit-stride loop the compiler can vectorize (TeamThreadRange's loop has a run-time stride); larger teams
// split the range.
template <class Member, class F>
KOKKOS_INLINE_FUNCTION void row_for(const Member& member, int n, const F& f) {
  if (member.team_size() == 1) {
    for (int j = 0; j < n; ++j) f(j);
  } else {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, n), f);
  }
}

// max_j value(j) over one row, j in [0, n), n > 0, by the calling team.
template <class A, class Member, class Value>
KOKKOS_INLINE_FUNCTION A row_max(const Member& member, int n, const Value& value) {
  if (member.team_size() == 1) {
    // Eight running maxima, as in row_sum, so the loop vectorizes without reassociating anything.
    const A first = value(0);
    A lane[8] = {first, first, first, first, first, first, first, first};
    int j = 0;
    for (; j + 8 <= n; j += 8)
      for (int l = 0; l < 8; ++l) {
        const A v = value(j + l);
        lane[l] = v > lane[l] ? v : lane[l];
      }
    for (int l = 0; j < n; ++j, ++l) {
      const A v = value(j);
      lane[l] = v > lane[l] ? v : lane[l];
    }
    A m = lane[0];
    for (int l = 1; l < 8; ++l) m = lane[l] > m ? lane[l] : m;
    return m;
  }
  A m;
  Kokkos::parallel_reduce(
      Kokkos::TeamThreadRange(member, n),
      [&](int j, A& acc) {
        const A v = value(j);
        if (v > acc) acc = v;
      },
      Kokkos::Max<A>(m));
  return m;
}

// Runs f(row, col) for every element of a [rows, cols] tensor.
template <class ExecSpace, class F>
void for_each_element(const ExecSpace& space, const char* label, std::size_t rows, std::size_t cols,
                      const F& f) {
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  const int n = static_cast<int>(cols);
  Kokkos::parallel_for(
      label, policy(space, static_cast<int>(rows), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) {
        const int i = member.league_rank();
        row_for(member, n, [&](int j) { f(i, j); });
      });
}

// out(j) = Σ_c workspace(c, offset + j), c in order: the second, fixed-order pass of a parameter gradient.
template <class ExecSpace, class Workspace, class Out>
void sum_chunks(const ExecSpace& space, const char* label, const Workspace& workspace, std::size_t chunks,
                std::size_t offset, const Out& out) {
  using A = typename Workspace::non_const_value_type;
  using T = value_t<Out>;
  const int n = static_cast<int>(out.extent(0));
  const int nc = static_cast<int>(chunks);
  const int off = static_cast<int>(offset);
  Kokkos::parallel_for(
      label, Kokkos::RangePolicy<ExecSpace>(space, 0, n), KOKKOS_LAMBDA(int j) {
        A sum = 0;
        for (int c = 0; c < nc; ++c) sum += workspace(c, off + j);
        out(j) = store_as<T>(sum);
      });
}

}  // namespace vitscale::kernels::detail
