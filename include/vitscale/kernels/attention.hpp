#pragma once
// Fused softmax attention o = softmax(scale · q · kᵀ) · v per (batch, head), forward and backward, in the
// tiling of FlashAttention-2: the [Nq, Nk] score matrix never reaches memory. A team owns a block of
// queries (forward, dQ) or keys (dK, dV); the other side streams through team scratch in tiles, and the
// softmax is computed online (running maximum and sum) with the log-sum-exp per query saved for backward.
//
// Layout: q: [B, Nq, H, d], k, v: [B, Nk, H, d] with a contiguous head dimension; any other strides are
// accepted, so q, k and v may be subviews of a fused qkv buffer [B, N, 3, H, d] (timm's order). Storage is
// float or vitscale::bf16 (each view on its own); scores, softmax statistics and every sum are float.
//
// Backward is deterministic without atomics: dK and dV are accumulated by the team that owns the key block
// over all query blocks, dQ by the team that owns the query block over all key blocks, each in a fixed order.
// The price is computing the score and dP tiles twice (7 tile products instead of FlashAttention-2's 5).

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/fast_math.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/views.hpp>
#include <vitscale/kernels/detail/host_simd.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vitscale::kernels {

namespace detail {

inline constexpr float attention_log2e = 1.44269504088896340736f;
// The dS fed to dK carries 1 / log2 e: its staged q carries scale · log2 e (scores in base 2).
inline constexpr float attention_dk_factor = 1.0f / attention_log2e;
inline constexpr float attention_ln2 = 0.69314718055994530942f;

template <class T>
inline constexpr bool is_attention_storage_v = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

// Compile-time checks shared by every entry point: a Kokkos View of the given rank, float or bf16, readable
// (and where asked writable) by ExecSpace.
template <class ExecSpace, class View, int Rank, bool Output>
constexpr void static_check_attention_view() {
  static_assert(Kokkos::is_view<View>::value, "attention: arguments must be Kokkos Views");
  static_assert(static_cast<int>(View::rank) == Rank, "attention: a View has the wrong rank (q, k, v, o and "
                                                      "their gradients are [B, N, H, d], lse is [B, H, Nq])");
  using value = typename View::value_type;
  static_assert(is_attention_storage_v<std::remove_const_t<value>>,
                "attention: Views hold float or vitscale::bf16");
  static_assert(!Output || !std::is_const_v<value>, "attention: an output View must not be const");
  static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename View::memory_space>::accessible,
                "attention: a View is not accessible from the execution space");
}

// Tiles. Every tile product is written as "a row of one operand, broadcast, times a 16-lane vector of the
// other": the side a team owns (queries in the forward and dQ passes, keys in the dK/dV pass) is staged once
// per team, transposed into groups of 16 ([group][d][16]), and every streamed row (a key, a value, a query,
// an output gradient) is read as scalars from a plain row-major copy. So no streamed tile is ever
// transposed, the softmax statistics of 16 queries are whole vectors (no horizontal reductions), and the
// accumulators of both products (16 vectors: 16 rows of a score tile, or 16 columns of an output) stay in
// registers across the reduction. A streamed tile's last rows (N = 197 leaves 5 keys) go through products of
// 8, 4, 2 and 1 rows rather than a zero-padded 16, and the softmax and dS steps are whole-vector code too.
// Host teams are one thread and take bigger tiles (the staging is then amortised over more work); device teams
// keep their scratch under 48 KiB.
template <int HeadDim, bool Host>
struct attention_tiling {
  static_assert(HeadDim % 8 == 0 && HeadDim >= 8 && HeadDim <= 256,
                "attention: the head dimension must be a multiple of 8 between 8 and 256 "
                "(ViT presets use 64, 80, 88, 104, 112 and 128)");
  static constexpr int d = HeadDim;
  static constexpr int lanes = 16;  // queries (or keys) per transposed group
  static constexpr int block_q = Host ? 64 : 32;
  // The forward pass's query block is an upper bound: a head's queries are split evenly over as few blocks as
  // fit (so N = 197 is 96 + 101 queries, not 64 + 64 + 64 + 5), and more where the league would otherwise
  // leave threads idle. Every query's result is the same whatever block it falls in.
  static constexpr int forward_block_q = Host ? 128 : 32;
  static constexpr int block_k = Host ? 64 : 32;
  static_assert(block_q % lanes == 0 && block_k % lanes == 0, "tiles hold whole groups");
};

template <class ExecSpace>
inline constexpr bool attention_on_host_v = std::is_same_v<typename ExecSpace::memory_space, Kokkos::HostSpace>;

template <class View>
void require_attention_rows(const char* function, const char* name, const View& v) {
  vitscale::detail::require_contiguous_rows(function, name, v);
}

KOKKOS_FORCEINLINE_FUNCTION int imin(int a, int b) { return a < b ? a : b; }

// A thread's local tile, aligned to a cache line so that its 16-float rows are whole lines.
template <int N>
struct alignas(64) attention_local {
  float x[N];
};
KOKKOS_FORCEINLINE_FUNCTION float fmaxf_(float a, float b) { return a > b ? a : b; }

// The tile operations below are the whole cost of attention. On the host they run Highway code compiled
// for every SIMD target and chosen at run time (detail/attention_simd-inl.hpp, core/simd.hpp); on devices,
// and on the host where Highway is absent or VITSCALE_ATTENTION_PORTABLE_ONLY is defined (to test them
// there), they are the plain loops below. Both sum in the same order.
#if VITSCALE_HOST_SIMD && !defined(VITSCALE_ATTENTION_PORTABLE_ONLY)
template <class ExecSpace>
inline constexpr bool attention_simd_v = attention_on_host_v<ExecSpace>;
#else
template <class ExecSpace>
inline constexpr bool attention_simd_v = false;
#endif

// out[j * 16 + l] = sum_c rows[j * D + c] * t[c * 16 + l] for J rows (row-major, stride D) and a transposed
// group t [D][16]: J score rows of 16 lanes, summed over c in increasing order.
template <int D, int J>
KOKKOS_FORCEINLINE_FUNCTION void attention_lane_product(const float* rows, const float* t, float* out) {
  for (int x = 0; x < 16 * J; ++x) out[x] = 0.0f;
  for (int c = 0; c < D; ++c)
    for (int j = 0; j < J; ++j) {
      const float a = rows[j * D + c];
      for (int l = 0; l < 16; ++l) out[16 * j + l] += a * t[16 * c + l];
    }
}

// attention_lane_product over n rows (n >= 0): whole blocks of 16, then the rest in blocks of 8, 4, 2 and 1,
// so that a tile's last few keys (or queries) cost what they are, not a whole padded block of 16. Each output
// element is the same sum, in the same order, whatever block computed it.
template <int D, bool Simd>
KOKKOS_FORCEINLINE_FUNCTION void attention_lane_products(const float* rows, const float* t, float* out, int n) {
#if VITSCALE_HOST_SIMD
  if constexpr (Simd) {
    attention_simd::call_lane_products(rows, t, out, n, D);
    return;
  }
#endif
  int j = 0;
  for (; j + 16 <= n; j += 16) attention_lane_product<D, 16>(rows + j * D, t, out + 16 * j);
  if (n - j >= 8) {
    attention_lane_product<D, 8>(rows + j * D, t, out + 16 * j);
    j += 8;
  }
  if (n - j >= 4) {
    attention_lane_product<D, 4>(rows + j * D, t, out + 16 * j);
    j += 4;
  }
  if (n - j >= 2) {
    attention_lane_product<D, 2>(rows + j * D, t, out + 16 * j);
    j += 2;
  }
  if (n - j >= 1) attention_lane_product<D, 1>(rows + j * D, t, out + 16 * j);
}

// One online-softmax step of 16 query lanes over n >= 1 score rows s [n][16] (base 2): the running maximum m
// and sum z move to the tile's, s becomes 2^(s - m), and alpha = 2^(m_old - m) is what the output
// accumulated so far must be scaled by. The maximum and the sum run as two interleaved chains (even and odd
// rows, summed at the end) so that neither is one long serial dependency.
template <bool Simd>
KOKKOS_FORCEINLINE_FUNCTION void attention_softmax_step(float* s, int n, float* m, float* z, float* alpha) {
#if VITSCALE_HOST_SIMD
  if constexpr (Simd) {
    attention_simd::call_softmax_step(s, n, m, z, alpha);
    return;
  }
#endif
  for (int l = 0; l < 16; ++l) {
    float m0 = m[l], m1 = m[l];
    int j = 0;
    for (; j + 2 <= n; j += 2) {
      m0 = fmaxf_(m0, s[16 * j + l]);
      m1 = fmaxf_(m1, s[16 * j + 16 + l]);
    }
    if (j < n) m0 = fmaxf_(m0, s[16 * j + l]);
    const float m_new = fmaxf_(m0, m1);
    float z0 = 0.0f, z1 = 0.0f;
    for (j = 0; j + 2 <= n; j += 2) {
      z0 += (s[16 * j + l] = ::vitscale::fast::exp2_flush(s[16 * j + l] - m_new));
      z1 += (s[16 * j + 16 + l] = ::vitscale::fast::exp2_flush(s[16 * j + 16 + l] - m_new));
    }
    if (j < n) z0 += (s[16 * j + l] = ::vitscale::fast::exp2_flush(s[16 * j + l] - m_new));
    alpha[l] = ::vitscale::fast::exp2_flush(m[l] - m_new);
    z[l] = z[l] * alpha[l] + (z0 + z1);
    m[l] = m_new;
  }
}

// Backward, n rows of 16 lanes: p = 2^(p - shift), ds = p · (ds - delta) · factor, with shift and delta
// either per row (shift[i], delta[i]) or, with PerLane, per lane (shift[l], delta[l]) for every row.
template <bool PerLane, bool Simd>
KOKKOS_FORCEINLINE_FUNCTION void attention_ds_rows(float* p, float* ds, int n, const float* shift, const float* delta,
                                                   float factor) {
#if VITSCALE_HOST_SIMD
  if constexpr (Simd) {
    attention_simd::call_ds_rows(p, ds, n, shift, delta, PerLane, factor);
    return;
  }
#endif
  for (int i = 0; i < n; ++i)
    for (int l = 0; l < 16; ++l) {
      const float sh = PerLane ? shift[l] : shift[i], de = PerLane ? delta[l] : delta[i];
      p[16 * i + l] = ::vitscale::fast::exp2_flush(p[16 * i + l] - sh);
      ds[16 * i + l] = p[16 * i + l] * (ds[16 * i + l] - de) * factor;
    }
}

// C columns [c0, c0 + C) of attention_lane_accumulate.
template <int D, int C, bool Scale>
KOKKOS_FORCEINLINE_FUNCTION void attention_lane_accumulate_chunk(float* acc, const float* rows, const float* w,
                                                                 int n, const float* alpha) {
  if constexpr (Scale)
    for (int c = 0; c < C; ++c)
      for (int l = 0; l < 16; ++l) acc[16 * c + l] *= alpha[l];
  for (int j = 0; j < n; ++j) {
    const float* r = rows + j * D;
    for (int c = 0; c < C; ++c)
      for (int l = 0; l < 16; ++l) acc[16 * c + l] += r[c] * w[16 * j + l];
  }
}

// acc[c * 16 + l] = acc[c * 16 + l] (· alpha[l] if Scale) + sum_{j < n} rows[j * D + c] · w[j * 16 + l], in
// increasing j: a transposed group [D][16] accumulating n rows (row-major, stride D) weighted by 16 lanes.
// Columns go in chunks of 16 (and a last one of 8) so that the chunk's accumulators stay in registers.
template <int D, bool Scale, bool Simd>
KOKKOS_FORCEINLINE_FUNCTION void attention_lane_accumulate(float* acc, const float* rows, const float* w, int n,
                                                           const float* alpha) {
#if VITSCALE_HOST_SIMD
  if constexpr (Simd) {
    attention_simd::call_lane_accumulate(acc, rows, w, n, D, Scale ? alpha : nullptr);
    return;
  }
#endif
  constexpr int full = D / 16;
  for (int k = 0; k < full; ++k)
    attention_lane_accumulate_chunk<D, 16, Scale>(acc + 16 * 16 * k, rows + 16 * k, w, n, alpha);
  if constexpr (D % 16 != 0)
    attention_lane_accumulate_chunk<D, D % 16, Scale>(acc + 16 * 16 * full, rows + 16 * full, w, n, alpha);
}

// Stages rows [r0, r0 + n) of x(b, ·, h, :) times factor into a tile of `rows` rows, zero past n: row-major
// [rows][D], or if Transposed in groups of 16 rows [rows / 16][D][16].
template <int D, bool Transposed, class Member, class View>
KOKKOS_FORCEINLINE_FUNCTION void attention_stage(const Member& team, const View& x, int b, int h, int r0, int n,
                                                 int rows, float factor, float* dst) {
  constexpr int stride = Transposed ? 16 : 1;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](int i) {
    float* const out = Transposed ? dst + (i / 16) * D * 16 + i % 16 : dst + i * D;
    if (i < n) {
      const auto* src = &x(b, r0 + i, h, 0);
      for (int c = 0; c < D; ++c) out[c * stride] = factor * static_cast<float>(src[c]);
    } else {
      for (int c = 0; c < D; ++c) out[c * stride] = 0.0f;
    }
  });
}

// The single-tile backward's team scratch (see attention_backward), and whether it fits: host teams have no
// practical limit; GPU teams keep under 48 KiB.
template <int D, int BQ, int BK>
inline constexpr int single_tile_backward_floats = 4 * BK * D + 2 * BQ * D + BK * D + BQ * BK + 2 * BQ;
template <int D, int BQ, int BK, class ExecSpace>
inline constexpr bool single_tile_backward_fits =
    attention_on_host_v<ExecSpace> || single_tile_backward_floats<D, BQ, BK> * sizeof(float) <= 48 * 1024;

// The inverse of a transposed attention_stage: writes rows [r0, r0 + n) of x(b, ·, h, :) from a tile in groups
// of 16 rows [n / 16][D][16] (the layout every owned-side accumulator is kept in).
template <int D, class Member, class View>
KOKKOS_FORCEINLINE_FUNCTION void attention_unstage(const Member& team, const float* src, int n, const View& x, int b,
                                                   int h, int r0) {
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n), [&](int i) {
    const float* col = src + (i / 16) * D * 16 + i % 16;
    auto* dst = &x(b, r0 + i, h, 0);
    for (int c = 0; c < D; ++c) dst[c] = col[c * 16];
  });
}

template <int HeadDim, class QView, class KView, class VView>
void check_attention_inputs(const char* fn, const QView& q, const KView& k, const VView& v) {
  using vitscale::detail::require_extents;
  if (q.extent(3) != static_cast<std::size_t>(HeadDim))
    vitscale::detail::fail(fn, ": q is ", vitscale::detail::extents_string(q), ", its last extent must be the head "
                           "dimension ", HeadDim);
  const std::size_t batch = q.extent(0), heads = q.extent(2), nk = k.extent(1);
  require_extents(fn, "k", k, {batch, nk, heads, static_cast<std::size_t>(HeadDim)});
  require_extents(fn, "v", v, {batch, nk, heads, static_cast<std::size_t>(HeadDim)});
  if (nk == 0 && q.extent(1) > 0) vitscale::detail::fail(fn, ": k and v hold no keys (Nk = 0) for ", q.extent(1),
                                                        " queries");
  require_attention_rows(fn, "q", q);
  require_attention_rows(fn, "k", k);
  require_attention_rows(fn, "v", v);
}

// The types of one execution space's attention kernels and their tiles for one head dimension.
template <class ExecSpace, int HeadDim>
struct attention_kernel_types {
  using tiling = attention_tiling<HeadDim, attention_on_host_v<ExecSpace>>;
  static constexpr bool simd = attention_simd_v<ExecSpace>;
  using policy_t = Kokkos::TeamPolicy<ExecSpace>;
  using member_t = typename policy_t::member_type;
  using scratch_t = Kokkos::View<float*, typename ExecSpace::scratch_memory_space, Kokkos::MemoryUnmanaged>;

  // `league` teams with `floats` floats of team scratch each.
  static policy_t policy(const ExecSpace& space, int league, int floats) {
    policy_t policy(space, league, Kokkos::AUTO);
    policy.set_scratch_size(0, Kokkos::PerTeam(scratch_t::shmem_size(floats)));
    return policy;
  }
};

// A team's (batch, head, block) in a league of [B][H][blocks] teams (the block varies fastest).
struct attention_team_index {
  int b, h, block;
};
KOKKOS_FORCEINLINE_FUNCTION attention_team_index attention_team(int league_rank, int blocks, int n_heads) {
  return {league_rank / blocks / n_heads, (league_rank / blocks) % n_heads, league_rank % blocks};
}

// The rows a team of the backward's dK/dV or dQ pass owns: block `block` of Block rows of (b, h), that is rows
// [r0, r0 + n) of the rows_total keys or queries, in `groups` groups of 16 lanes.
struct attention_owned_rows {
  int b, h, r0, n, groups;
};
template <int Block>
KOKKOS_FORCEINLINE_FUNCTION attention_owned_rows attention_team_rows(int league_rank, int blocks, int n_heads,
                                                                     int rows_total) {
  const attention_team_index at = attention_team(league_rank, blocks, n_heads);
  const int r0 = at.block * Block;
  const int n = imin(Block, rows_total - r0);
  return {at.b, at.h, r0, n, (n + 15) / 16};
}

// The backward's recomputation of one 16-lane group against n streamed rows, the step every backward pass
// starts from: p = rows · t (the scores s), ds = drows · dt (dP), then P = 2^(s - shift) and
// dS = P (dP - delta) · factor (attention_ds_rows; PerLane: shift and delta per lane rather than per row).
//   rows, drows: [n][D] row-major; t, dt: [D][16] transposed group -> p, ds: [n][16]
template <int D, bool PerLane, bool Simd>
KOKKOS_FORCEINLINE_FUNCTION void attention_p_ds(const float* rows, const float* t, const float* drows,
                                                const float* dt, int n, const float* shift, const float* delta,
                                                float factor, float* p, float* ds) {
  attention_lane_products<D, Simd>(rows, t, p, n);
  attention_lane_products<D, Simd>(drows, dt, ds, n);
  attention_ds_rows<PerLane, Simd>(p, ds, n, shift, delta, factor);
}

// ------------------------------------------------------------------------------------------------ forward

// A team per (b, h, block of query groups): the queries staged transposed, pre-scaled to base 2; key and value
// tiles stream through row-major scratch; per group of 16 queries, the scores of a tile, the online softmax
// and o += P·v with o rescaled by 2^(old max - new max). The block is [g0, g0 + groups) of the head's q_groups
// groups of 16 queries, spread evenly over q_blocks blocks.
//   q: [B, Nq, H, d], k, v: [B, Nk, H, d] -> o: [B, Nq, H, d], lse: [B, H, Nq]
template <class Types, class QView, class KView, class VView, class OView, class LseView>
struct attention_forward_pass {
  static constexpr int D = Types::tiling::d, BQ = Types::tiling::forward_block_q, BK = Types::tiling::block_k;
  // qt [BQ/16][D][16] (pre-scaled to base 2), ks, vs [BK][D], ot [BQ/16][D][16], running max and sum [BQ].
  static constexpr int scratch_floats = 2 * BQ * D + 2 * BK * D + 2 * BQ;

  QView q;
  KView k;
  VView v;
  OView o;
  LseView lse;
  int nq, nk, n_heads, q_groups, q_blocks;
  float q_scale;

  KOKKOS_INLINE_FUNCTION void operator()(const typename Types::member_t& team) const {
    constexpr int L = Types::tiling::lanes;
    constexpr bool simd = Types::simd;
    const attention_team_index at = attention_team(team.league_rank(), q_blocks, n_heads);
    const int qb = at.block, h = at.h, b = at.b;
    const int g0 = static_cast<int>(static_cast<long>(qb) * q_groups / q_blocks);
    const int groups = static_cast<int>(static_cast<long>(qb + 1) * q_groups / q_blocks) - g0;
    const int i0 = g0 * L;
    const int n_rows = imin(groups * L, nq - i0);
    typename Types::scratch_t buffer(team.team_scratch(0), scratch_floats);
    float* const qt = buffer.data();
    float* const ks = qt + BQ * D;
    float* const vs = ks + BK * D;
    float* const ot = vs + BK * D;
    float* const row_max = ot + BQ * D;
    float* const row_sum = row_max + BQ;

    attention_stage<D, true>(team, q, b, h, i0, n_rows, groups * L, q_scale, qt);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, groups * L * D), [&](int x) { ot[x] = 0.0f; });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, groups * L), [&](int i) {
      row_max[i] = -1e30f;  // finite, so that the first rescale is 2^(-huge) = 0, not NaN
      row_sum[i] = 0.0f;
    });

    for (int j0 = 0; j0 < nk; j0 += BK) {
      const int n_keys = imin(BK, nk - j0);
      team.team_barrier();  // the previous tile is consumed (and, the first time, q is staged)
      attention_stage<D, false>(team, k, b, h, j0, n_keys, n_keys, 1.0f, ks);
      attention_stage<D, false>(team, v, b, h, j0, n_keys, n_keys, 1.0f, vs);
      team.team_barrier();

      // A group of 16 queries: scores s[j][lane] for the tile's keys, the online softmax per lane, and
      // o += P·v with o rescaled by 2^(old max - new max).
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, groups), [&](int g) {
        attention_local<BK * L> s_local;
        float* const s = s_local.x;
        attention_lane_products<D, simd>(ks, qt + g * D * L, s, n_keys);
        attention_local<L> alpha_local;
        float* const alpha = alpha_local.x;
        attention_softmax_step<simd>(s, n_keys, row_max + g * L, row_sum + g * L, alpha);
        attention_lane_accumulate<D, true, simd>(ot + g * D * L, vs, s, n_keys, alpha);
      });
    }
    team.team_barrier();

    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n_rows), [&](int i) {
      const float inv = 1.0f / row_sum[i];
      const float* o_col = ot + (i / L) * D * L + i % L;
      auto* dst = &o(b, i0 + i, h, 0);
      for (int c = 0; c < D; ++c) dst[c] = o_col[c * L] * inv;
      lse(b, h, i0 + i) = row_max[i] * attention_ln2 + kmath::log(row_sum[i]);
    });
  }
};

// ----------------------------------------------------------------------------------------------- backward
//
// dS_ij = P_ij (dP_ij - delta_i), P_ij = 2^(s_ij - lse_i · log2 e) with s in base 2 (the staged q carries
// scale · log2 e), dP_ij = dout_i · v_j, delta_i = dout_i · o_i. dV_j = Σ_i P_ij dout_i, dK_j = scale Σ_i dS_ij q_i,
// dQ_i = scale Σ_j dS_ij k_j. Passes: delta; then either the single-tile pass (a head that fits one tile each
// way) or the dK/dV pass and the dQ pass.

// What every backward pass reads: the forward's inputs, dout, the saved lse and delta, and the sizes.
template <class QView, class KView, class VView, class DOView, class LseView, class DeltaView>
struct attention_backward_inputs {
  QView q;
  KView k;
  VView v;
  DOView dout;
  LseView lse;
  DeltaView delta;
  int n_heads, nq, nk;
  float scale;
  float q_scale;  // scale · log2 e: q staged for scores in base 2

  // Stages lse (base 2) and delta of rows [i0, i0 + BQ); padding rows get 0 and 0, which with their zero q
  // and dout make dS exactly 0.
  template <int BQ, class Member>
  KOKKOS_INLINE_FUNCTION void stage_stats(const Member& team, int b, int h, int i0, int n_rows, float* lse2,
                                          float* dl) const {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BQ), [&](int i) {
      lse2[i] = i < n_rows ? lse(b, h, i0 + i) * attention_log2e : 0.0f;
      dl[i] = i < n_rows ? delta(b, h, i0 + i) : 0.0f;
    });
  }
};

// delta_i = dout_i · o_i, which equals Σ_j P_ij dP_ij. One work item per (b, i, h).
//   o, dout: [B, Nq, H, d] -> delta: [B, H, Nq]
template <int D, class OView, class DOView, class DeltaView>
struct attention_delta_pass {
  OView o;
  DOView dout;
  DeltaView delta;
  int nq, n_heads;

  KOKKOS_INLINE_FUNCTION void operator()(int idx) const {
    const int h = idx % n_heads;
    const int i = (idx / n_heads) % nq;
    const int b = idx / n_heads / nq;
    const auto* o_row = &o(b, i, h, 0);
    const auto* do_row = &dout(b, i, h, 0);
    float sum = 0.0f;
    for (int c = 0; c < D; ++c) sum += static_cast<float>(o_row[c]) * static_cast<float>(do_row[c]);
    delta(b, h, i) = sum;
  }
};

// A head that fits in one tile each way (nq <= BQ, nk <= BK: the small images of the Fashion-MNIST model,
// MAP pooling's single query over up to BK tokens) is one team's work: the whole dS matrix fits in team
// scratch, so dQ is a product with it rather than a second pass that recomputes P and dP — FlashAttention-2's
// five tile products instead of seven, the inputs staged once instead of twice, and still no atomics.
//   q, dout: [B, Nq, H, d], k, v: [B, Nk, H, d], lse, delta: [B, H, Nq]
//   -> dq: [B, Nq, H, d], dk, dv: [B, Nk, H, d]
template <class Types, class In, class DQView, class DKView, class DVView>
struct attention_single_tile_pass {
  static constexpr int D = Types::tiling::d, BQ = Types::tiling::block_q, BK = Types::tiling::block_k;
  // kt, vt, dkt, dvt [BK/16][D][16]; qs, dos [BQ][D]; ks [BK][D]; dst [BQ/16][BK][16]; lse2, delta [BQ].
  static constexpr int scratch_floats = single_tile_backward_floats<D, BQ, BK>;

  In in;
  DQView dq;
  DKView dk;
  DVView dv;

  KOKKOS_INLINE_FUNCTION void operator()(const typename Types::member_t& team) const {
    constexpr int L = Types::tiling::lanes;
    constexpr bool simd = Types::simd;
    const int nq = in.nq, nk = in.nk, k_groups = (nk + L - 1) / L, q_groups = (nq + L - 1) / L;
    const attention_team_index at = attention_team(team.league_rank(), 1, in.n_heads);
    const int h = at.h, b = at.b;
    typename Types::scratch_t buffer(team.team_scratch(0), scratch_floats);
    float* const kt = buffer.data();
    float* const vt = kt + BK * D;
    float* const dkt = vt + BK * D;
    float* const dvt = dkt + BK * D;
    float* const qs = dvt + BK * D;
    float* const dos = qs + BQ * D;
    float* const ks = dos + BQ * D;
    float* const dst = ks + BK * D;
    float* const lse2 = dst + BQ * BK;
    float* const dl = lse2 + BQ;

    attention_stage<D, true>(team, in.k, b, h, 0, nk, k_groups * L, 1.0f, kt);
    attention_stage<D, true>(team, in.v, b, h, 0, nk, k_groups * L, 1.0f, vt);
    attention_stage<D, false>(team, in.k, b, h, 0, nk, nk, 1.0f, ks);
    attention_stage<D, false>(team, in.q, b, h, 0, nq, nq, in.q_scale, qs);
    attention_stage<D, false>(team, in.dout, b, h, 0, nq, nq, 1.0f, dos);
    in.template stage_stats<BQ>(team, b, h, 0, nq, lse2, dl);
    // The last query group's lanes past nq are read by the dQ products (and discarded): keep them finite.
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BK * L),
                         [&](int x) { dst[(q_groups - 1) * BK * L + x] = 0.0f; });
    team.team_barrier();

    // Per group of 16 keys: P and dS for every query, dV^T and dK^T of the group, and dS (rescaled
    // for dQ) transposed into groups of 16 queries.
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, k_groups), [&](int g) {
      attention_local<BQ * L> p_local;
      float* const p = p_local.x;
      attention_local<BQ * L> ds_local;
      float* const ds = ds_local.x;
      attention_p_ds<D, false, simd>(qs, kt + g * D * L, dos, vt + g * D * L, nq, lse2, dl, attention_dk_factor, p, ds);
      for (int x = 0; x < D * L; ++x) dkt[g * D * L + x] = dvt[g * D * L + x] = 0.0f;
      attention_lane_accumulate<D, false, simd>(dvt + g * D * L, dos, p, nq, nullptr);
      attention_lane_accumulate<D, false, simd>(dkt + g * D * L, qs, ds, nq, nullptr);
      for (int i = 0; i < nq; ++i) {
        float* const col = dst + (i / L) * BK * L + (g * L) * L + i % L;
        // dQ = scale · Σ_j dS_ij k_j, and this dS carries 1 / log2 e: the factor is q_scale.
        for (int l = 0; l < L; ++l) col[l * L] = ds[i * L + l] * in.q_scale;
      }
    });
    team.team_barrier();

    // dQ^T of each group of 16 queries = Σ_j k_j dS_ij, keys in increasing order. q is consumed, so its
    // scratch holds dQ^T [q_groups][D][16].
    float* const dqt = qs;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, q_groups), [&](int g) {
      for (int x = 0; x < D * L; ++x) dqt[g * D * L + x] = 0.0f;
      attention_lane_accumulate<D, false, simd>(dqt + g * D * L, ks, dst + g * BK * L, nk, nullptr);
    });
    team.team_barrier();
    attention_unstage<D>(team, dqt, nq, dq, b, h, 0);
    attention_unstage<D>(team, dkt, nk, dk, b, h, 0);
    attention_unstage<D>(team, dvt, nk, dv, b, h, 0);
  }
};

// dK, dV: a team per (b, h, block of BK keys), over every query block in order. The keys are staged
// transposed in groups of 16 lanes; query rows stream through row-major tiles. Per query row i and key lane:
// P = 2^(s - lse_i), dS = P (dP - delta_i); dV^T += dO_i P, dK^T += q_i dS (in the order of i).
//   q, dout: [B, Nq, H, d], k, v: [B, Nk, H, d], lse, delta: [B, H, Nq] -> dk, dv: [B, Nk, H, d]
template <class Types, class In, class DKView, class DVView>
struct attention_dkdv_pass {
  static constexpr int D = Types::tiling::d, BQ = Types::tiling::block_q, BK = Types::tiling::block_k;
  // kt, vt, dkt, dvt [BK/16][D][16]; qs, dos [BQ][D]; lse2, delta [BQ].
  static constexpr int scratch_floats = 4 * BK * D + 2 * BQ * D + 2 * BQ;

  In in;
  DKView dk;
  DVView dv;
  int k_blocks;

  KOKKOS_INLINE_FUNCTION void operator()(const typename Types::member_t& team) const {
    constexpr int L = Types::tiling::lanes;
    constexpr bool simd = Types::simd;
    const int nq = in.nq;
    const attention_owned_rows keys = attention_team_rows<BK>(team.league_rank(), k_blocks, in.n_heads, in.nk);
    const int h = keys.h, b = keys.b, j0 = keys.r0, n_keys = keys.n, groups = keys.groups;
    typename Types::scratch_t buffer(team.team_scratch(0), scratch_floats);
    float* const kt = buffer.data();
    float* const vt = kt + BK * D;
    float* const dkt = vt + BK * D;
    float* const dvt = dkt + BK * D;
    float* const qs = dvt + BK * D;
    float* const dos = qs + BQ * D;
    float* const lse2 = dos + BQ * D;
    float* const dl = lse2 + BQ;

    attention_stage<D, true>(team, in.k, b, h, j0, n_keys, BK, 1.0f, kt);
    attention_stage<D, true>(team, in.v, b, h, j0, n_keys, BK, 1.0f, vt);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BK * D), [&](int x) { dkt[x] = dvt[x] = 0.0f; });

    for (int i0 = 0; i0 < nq; i0 += BQ) {
      const int n_rows = imin(BQ, nq - i0);
      team.team_barrier();
      attention_stage<D, false>(team, in.q, b, h, i0, n_rows, n_rows, in.q_scale, qs);
      attention_stage<D, false>(team, in.dout, b, h, i0, n_rows, n_rows, 1.0f, dos);
      in.template stage_stats<BQ>(team, b, h, i0, n_rows, lse2, dl);
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, groups), [&](int g) {
        attention_local<BQ * L> p_local;
        float* const p = p_local.x;
        attention_local<BQ * L> ds_local;
        float* const ds = ds_local.x;
        attention_p_ds<D, false, simd>(qs, kt + g * D * L, dos, vt + g * D * L, n_rows, lse2, dl, attention_dk_factor,
                                       p, ds);
        attention_lane_accumulate<D, false, simd>(dvt + g * D * L, dos, p, n_rows, nullptr);
        attention_lane_accumulate<D, false, simd>(dkt + g * D * L, qs, ds, n_rows, nullptr);
      });
    }
    team.team_barrier();
    attention_unstage<D>(team, dkt, n_keys, dk, b, h, j0);
    attention_unstage<D>(team, dvt, n_keys, dv, b, h, j0);
  }
};

// dQ: a team per (b, h, block of BQ queries), over every key block in order; dQ_i = scale Σ_j dS_ij k_j.
// The queries (and dout) are staged transposed in groups of 16 lanes; key and value rows stream through
// row-major tiles, so P and dS come out per key row with lse and delta per lane.
//   q, dout: [B, Nq, H, d], k, v: [B, Nk, H, d], lse, delta: [B, H, Nq] -> dq: [B, Nq, H, d]
template <class Types, class In, class DQView>
struct attention_dq_pass {
  static constexpr int D = Types::tiling::d, BQ = Types::tiling::block_q, BK = Types::tiling::block_k;
  // qt, dot, dqt [BQ/16][D][16]; lse2, delta [BQ]; ks, vs [BK][D].
  static constexpr int scratch_floats = 3 * BQ * D + 2 * BQ + 2 * BK * D;

  In in;
  DQView dq;
  int q_blocks;

  KOKKOS_INLINE_FUNCTION void operator()(const typename Types::member_t& team) const {
    constexpr int L = Types::tiling::lanes;
    constexpr bool simd = Types::simd;
    const int nk = in.nk;
    const attention_owned_rows queries = attention_team_rows<BQ>(team.league_rank(), q_blocks, in.n_heads, in.nq);
    const int h = queries.h, b = queries.b, i0 = queries.r0, n_rows = queries.n, groups = queries.groups;
    typename Types::scratch_t buffer(team.team_scratch(0), scratch_floats);
    float* const qt = buffer.data();
    float* const dot = qt + BQ * D;
    float* const dqt = dot + BQ * D;
    float* const lse2 = dqt + BQ * D;
    float* const dl = lse2 + BQ;
    float* const ks = dl + BQ;
    float* const vs = ks + BK * D;

    attention_stage<D, true>(team, in.q, b, h, i0, n_rows, BQ, in.q_scale, qt);
    attention_stage<D, true>(team, in.dout, b, h, i0, n_rows, BQ, 1.0f, dot);
    in.template stage_stats<BQ>(team, b, h, i0, n_rows, lse2, dl);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BQ * D), [&](int x) { dqt[x] = 0.0f; });
    for (int j0 = 0; j0 < nk; j0 += BK) {
      const int n_keys = imin(BK, nk - j0);
      team.team_barrier();
      attention_stage<D, false>(team, in.k, b, h, j0, n_keys, n_keys, 1.0f, ks);
      attention_stage<D, false>(team, in.v, b, h, j0, n_keys, n_keys, 1.0f, vs);
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, groups), [&](int g) {
        attention_local<BK * L> p_local;
        float* const p = p_local.x;
        attention_local<BK * L> ds_local;
        float* const ds = ds_local.x;
        const float* const lse2_g = lse2 + g * L;
        const float* const dl_g = dl + g * L;
        attention_p_ds<D, true, simd>(ks, qt + g * D * L, vs, dot + g * D * L, n_keys, lse2_g, dl_g, in.scale, p, ds);
        attention_lane_accumulate<D, false, simd>(dqt + g * D * L, ks, ds, n_keys, nullptr);
      });
    }
    team.team_barrier();
    attention_unstage<D>(team, dqt, n_rows, dq, b, h, i0);
  }
};

}  // namespace detail

// q: [B, Nq, H, d], k, v: [B, Nk, H, d] -> o: [B, Nq, H, d], lse: [B, H, Nq] = log sum_j exp(scale · q_i · k_j)
template <int HeadDim, class ExecSpace, class QView, class KView, class VView, class OView, class LseView>
void attention_forward(const ExecSpace& space, const QView& q, const KView& k, const VView& v, const OView& o,
                       const LseView& lse, float scale) {
  using types = detail::attention_kernel_types<ExecSpace, HeadDim>;
  using tiling = typename types::tiling;
  detail::static_check_attention_view<ExecSpace, QView, 4, false>();
  detail::static_check_attention_view<ExecSpace, KView, 4, false>();
  detail::static_check_attention_view<ExecSpace, VView, 4, false>();
  detail::static_check_attention_view<ExecSpace, OView, 4, true>();
  detail::static_check_attention_view<ExecSpace, LseView, 3, true>();
  static_assert(std::is_same_v<typename LseView::value_type, float>, "attention_forward: lse is float");

  constexpr const char* fn = "attention_forward";
  detail::check_attention_inputs<HeadDim>(fn, q, k, v);
  const std::size_t batch = q.extent(0), heads = q.extent(2);
  vitscale::detail::require_extents(fn, "o", o, {batch, q.extent(1), heads, static_cast<std::size_t>(HeadDim)});
  vitscale::detail::require_extents(fn, "lse", lse, {batch, heads, q.extent(1)});
  detail::require_attention_rows(fn, "o", o);

  constexpr int BQ = tiling::forward_block_q, L = tiling::lanes;
  const int nq = static_cast<int>(q.extent(1)), nk = static_cast<int>(k.extent(1));
  const int n_heads = static_cast<int>(heads);
  const int heads_total = static_cast<int>(batch) * n_heads;
  if (heads_total == 0 || nq == 0) return;
  // Groups of 16 queries per head, spread evenly over q_blocks blocks of at most BQ / 16 groups each; at least
  // about four teams per thread of the execution space where the head has groups enough.
  const int q_groups = (nq + L - 1) / L;
  const int wanted_teams = 4 * static_cast<int>(space.concurrency());
  int q_blocks = (q_groups + BQ / L - 1) / (BQ / L);
  if (q_blocks * heads_total < wanted_teams)
    q_blocks = detail::imin(q_groups, (wanted_teams + heads_total - 1) / heads_total);
  const int league = heads_total * q_blocks;
  const float q_scale = scale * detail::attention_log2e;  // scores in base 2: exp(x) = 2^(x·log2 e)

  using pass = detail::attention_forward_pass<types, QView, KView, VView, OView, LseView>;
  Kokkos::parallel_for("vitscale::attention_forward", types::policy(space, league, pass::scratch_floats),
                       pass{q, k, v, o, lse, nq, nk, n_heads, q_groups, q_blocks, q_scale});
}

// q, k, v, o, lse: as attention_forward, dout: [B, Nq, H, d], delta: [B, H, Nq] float workspace
//   -> dq: [B, Nq, H, d], dk, dv: [B, Nk, H, d] (delta is left holding rowsum(dout ∘ o))
template <int HeadDim, class ExecSpace, class QView, class KView, class VView, class OView, class DOView,
          class LseView, class DeltaView, class DQView, class DKView, class DVView>
void attention_backward(const ExecSpace& space, const QView& q, const KView& k, const VView& v, const OView& o,
                        const DOView& dout, const LseView& lse, const DeltaView& delta, const DQView& dq,
                        const DKView& dk, const DVView& dv, float scale) {
  using types = detail::attention_kernel_types<ExecSpace, HeadDim>;
  using tiling = typename types::tiling;
  detail::static_check_attention_view<ExecSpace, QView, 4, false>();
  detail::static_check_attention_view<ExecSpace, KView, 4, false>();
  detail::static_check_attention_view<ExecSpace, VView, 4, false>();
  detail::static_check_attention_view<ExecSpace, OView, 4, false>();
  detail::static_check_attention_view<ExecSpace, DOView, 4, false>();
  detail::static_check_attention_view<ExecSpace, LseView, 3, false>();
  detail::static_check_attention_view<ExecSpace, DeltaView, 3, true>();
  detail::static_check_attention_view<ExecSpace, DQView, 4, true>();
  detail::static_check_attention_view<ExecSpace, DKView, 4, true>();
  detail::static_check_attention_view<ExecSpace, DVView, 4, true>();
  static_assert(std::is_same_v<std::remove_const_t<typename LseView::value_type>, float>,
                "attention_backward: lse is float");
  static_assert(std::is_same_v<typename DeltaView::value_type, float>, "attention_backward: delta is float");

  constexpr const char* fn = "attention_backward";
  detail::check_attention_inputs<HeadDim>(fn, q, k, v);
  const std::size_t batch = q.extent(0), heads = q.extent(2), d = HeadDim;
  const std::size_t nq_ = q.extent(1), nk_ = k.extent(1);
  using vitscale::detail::require_extents;
  require_extents(fn, "o", o, {batch, nq_, heads, d});
  require_extents(fn, "dout", dout, {batch, nq_, heads, d});
  require_extents(fn, "lse", lse, {batch, heads, nq_});
  require_extents(fn, "delta", delta, {batch, heads, nq_});
  require_extents(fn, "dq", dq, {batch, nq_, heads, d});
  require_extents(fn, "dk", dk, {batch, nk_, heads, d});
  require_extents(fn, "dv", dv, {batch, nk_, heads, d});
  detail::require_attention_rows(fn, "o", o);
  detail::require_attention_rows(fn, "dout", dout);
  detail::require_attention_rows(fn, "dq", dq);
  detail::require_attention_rows(fn, "dk", dk);
  detail::require_attention_rows(fn, "dv", dv);

  constexpr int D = tiling::d, BQ = tiling::block_q, BK = tiling::block_k;
  const int nb = static_cast<int>(batch), n_heads = static_cast<int>(heads);
  const int nq = static_cast<int>(nq_), nk = static_cast<int>(nk_);
  if (nb == 0 || n_heads == 0 || (nq == 0 && nk == 0)) return;
  using inputs = detail::attention_backward_inputs<QView, KView, VView, DOView, LseView, DeltaView>;
  const inputs in{q, k, v, dout, lse, delta, n_heads, nq, nk, scale, scale * detail::attention_log2e};

  if (nq > 0) {
    Kokkos::parallel_for("vitscale::attention_backward_delta",
                         Kokkos::RangePolicy<ExecSpace>(space, 0, nb * nq * n_heads),
                         detail::attention_delta_pass<D, OView, DOView, DeltaView>{o, dout, delta, nq, n_heads});
  }

  if (nq > 0 && nk > 0 && nq <= BQ && nk <= BK && detail::single_tile_backward_fits<D, BQ, BK, ExecSpace>) {
    using pass = detail::attention_single_tile_pass<types, inputs, DQView, DKView, DVView>;
    Kokkos::parallel_for("vitscale::attention_backward_single_tile",
                         types::policy(space, nb * n_heads, pass::scratch_floats), pass{in, dq, dk, dv});
    return;
  }
  if (nk > 0) {
    using pass = detail::attention_dkdv_pass<types, inputs, DKView, DVView>;
    const int k_blocks = (nk + BK - 1) / BK;
    Kokkos::parallel_for("vitscale::attention_backward_dkdv",
                         types::policy(space, nb * n_heads * k_blocks, pass::scratch_floats),
                         pass{in, dk, dv, k_blocks});
  }
  if (nq > 0) {
    using pass = detail::attention_dq_pass<types, inputs, DQView>;
    const int q_blocks = (nq + BQ - 1) / BQ;
    Kokkos::parallel_for("vitscale::attention_backward_dq",
                         types::policy(space, nb * n_heads * q_blocks, pass::scratch_floats), pass{in, dq, q_blocks});
  }
}

}  // namespace vitscale::kernels
