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
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/views.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vitscale::kernels {

namespace detail {

inline constexpr float attention_log2e = 1.44269504088896340736f;
inline constexpr float attention_ln2 = 0.69314718055994530942f;

// 2^x from a degree-6 polynomial on [-1/2, 1/2] (Cephes' exp2f coefficients) and the exponent bits,
// relative error a few 1e-7. No libm call, so the softmax loops vectorize on the host (expf does not without
// -ffast-math) and the same code runs on GPUs. Returns exactly 0 below 2^-126 (the masked and the
// negligible), infinity above 2^128.
KOKKOS_FORCEINLINE_FUNCTION float fast_exp2(float x) {
  const float xc = x < -127.0f ? -127.0f : (x > 127.0f ? 127.0f : x);
  const int n = static_cast<int>(xc + 127.5f) - 127;  // round to nearest; the sum is positive, so truncation floors
  const float f = xc - static_cast<float>(n);          // in [-1/2, 1/2]
  float p = 1.535336188319500e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const float two_n = bit_cast<float>(static_cast<std::uint32_t>(n + 127) << 23);
  return x < -126.0f ? 0.0f : p * two_n;
}

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

// Tile sizes. 32 queries by 32 keys keeps padding waste low at ViT's odd token counts (197 = 6·32 + 5) while
// a 4-row register block gives the inner products 4 independent accumulators per loaded vector.
template <int HeadDim>
struct attention_tiling {
  static_assert(HeadDim % 8 == 0 && HeadDim >= 8 && HeadDim <= 256,
                "attention: the head dimension must be a multiple of 8 between 8 and 256 "
                "(ViT presets use 64, 80, 88, 104, 112 and 128)");
  static constexpr int d = HeadDim;
  static constexpr int block_q = 64;
  static constexpr int block_k = 32;
  static constexpr int rows = 4;
  static_assert(block_q % rows == 0 && block_k % rows == 0, "tiles hold whole register blocks");
};

template <class View>
void require_attention_rows(const char* function, const char* name, const View& v) {
  vitscale::detail::require_contiguous_rows(function, name, v);
}

KOKKOS_FORCEINLINE_FUNCTION int imin(int a, int b) { return a < b ? a : b; }

// The two tile products below are the whole cost of attention. On host compilers with GNU vector extensions
// they are written on explicit 16-float vectors held in registers across the reduction (the auto-vectorized
// loops keep the accumulators in memory and run at a third of the speed); elsewhere (CUDA, HIP, SYCL device
// code, other compilers) they are plain loops. Both sum in the same order.
#if defined(__GNUC__) && !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__) && \
    !defined(__SYCL_DEVICE_ONLY__)
#define VITSCALE_ATTENTION_VECTOR_EXTENSIONS 1
typedef float attention_vec16 __attribute__((vector_size(64)));
typedef float attention_vec16_u __attribute__((vector_size(64), aligned(4), may_alias));
typedef float attention_vec8 __attribute__((vector_size(32)));
typedef float attention_vec8_u __attribute__((vector_size(32), aligned(4), may_alias));
typedef int attention_ivec16 __attribute__((vector_size(64)));

// fast_exp2 on 16 lanes, the same operations as the scalar one.
inline attention_vec16 fast_exp2(attention_vec16 x) {
  const attention_vec16 zero{}, lo = zero - 127.0f, hi = zero + 127.0f;
  attention_vec16 xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const attention_ivec16 n = __builtin_convertvector(xc + 127.5f, attention_ivec16) - 127;
  const attention_vec16 f = xc - __builtin_convertvector(n, attention_vec16);
  attention_vec16 p = zero + 1.535336188319500e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const attention_vec16 two_n = (attention_vec16)((n + 127) << 23);  // a bit cast between same-size vectors
  return x < zero - 126.0f ? zero : p * two_n;
}
#endif

// s[j] = 2^(s[j] - shift) for j < n_valid, 0 past it.
template <int BK>
KOKKOS_FORCEINLINE_FUNCTION void attention_exp2_row(float (&s)[BK], float shift, int n_valid) {
#if defined(VITSCALE_ATTENTION_VECTOR_EXTENSIONS)
  static_assert(BK % 16 == 0, "key tiles are whole 16-float vectors");
  const attention_ivec16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int v = 0; v < BK / 16; ++v) {
    auto& x = *reinterpret_cast<attention_vec16_u*>(&s[16 * v]);
    const attention_vec16 e = fast_exp2(x - shift);
    x = lane + 16 * v < n_valid ? e : attention_vec16{};
  }
#else
  for (int j = 0; j < BK; ++j) s[j] = j < n_valid ? fast_exp2(s[j] - shift) : 0.0f;
#endif
}

// s[r][j] = sum_c a[r * D + c] * bt[c * BK + j] for R rows of A and a transposed tile [D][BK].
template <int D, int BK, int R>
KOKKOS_FORCEINLINE_FUNCTION void attention_tile_product(const float* a, const float* bt, float (&s)[R][BK]) {
#if defined(VITSCALE_ATTENTION_VECTOR_EXTENSIONS)
  static_assert(BK % 16 == 0, "key tiles are whole 16-float vectors");
  constexpr int NV = BK / 16;
  attention_vec16 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = attention_vec16{};
  for (int c = 0; c < D; ++c) {
    attention_vec16 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = *reinterpret_cast<const attention_vec16_u*>(bt + c * BK + 16 * v);
    for (int r = 0; r < R; ++r) {
      const float a_rc = a[r * D + c];
      for (int v = 0; v < NV; ++v) acc[r][v] += a_rc * b[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) *reinterpret_cast<attention_vec16_u*>(&s[r][16 * v]) = acc[r][v];
#else
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < BK; ++j) s[r][j] = 0.0f;
  for (int c = 0; c < D; ++c) {
    const float* b_row = bt + c * BK;
    for (int r = 0; r < R; ++r) {
      const float a_rc = a[r * D + c];
      for (int j = 0; j < BK; ++j) s[r][j] += a_rc * b_row[j];
    }
  }
#endif
}

// acc[r * D + c] += sum_j w[r][j] * b[j * D + c] over j < n, in increasing j, for R rows kept in scratch.
template <int D, int BK, int R>
KOKKOS_FORCEINLINE_FUNCTION void attention_accumulate(float* acc, const float (&w)[R][BK], const float* b,
                                                      int n) {
#if defined(VITSCALE_ATTENTION_VECTOR_EXTENSIONS)
  static_assert(D % 8 == 0, "head dimensions are whole 8-float vectors");
  constexpr int NV = D / 16;
  constexpr bool tail = D % 16 != 0;
  constexpr int RB = D <= 64 ? 4 : 2;  // rows per register block: at most 16 accumulators
  static_assert(R % RB == 0, "register blocks tile the rows");
  for (int r0 = 0; r0 < R; r0 += RB) {
    attention_vec16 o[RB][NV > 0 ? NV : 1];
    attention_vec8 t[RB];
    for (int r = 0; r < RB; ++r) {
      for (int v = 0; v < NV; ++v) o[r][v] = *reinterpret_cast<const attention_vec16_u*>(acc + (r0 + r) * D + 16 * v);
      if constexpr (tail) t[r] = *reinterpret_cast<const attention_vec8_u*>(acc + (r0 + r) * D + 16 * NV);
    }
    for (int j = 0; j < n; ++j) {
      const float* b_row = b + j * D;
      attention_vec16 bv[NV > 0 ? NV : 1];
      for (int v = 0; v < NV; ++v) bv[v] = *reinterpret_cast<const attention_vec16_u*>(b_row + 16 * v);
      attention_vec8 bt{};
      if constexpr (tail) bt = *reinterpret_cast<const attention_vec8_u*>(b_row + 16 * NV);
      for (int r = 0; r < RB; ++r) {
        const float w_rj = w[r0 + r][j];
        for (int v = 0; v < NV; ++v) o[r][v] += w_rj * bv[v];
        if constexpr (tail) t[r] += w_rj * bt;
      }
    }
    for (int r = 0; r < RB; ++r) {
      for (int v = 0; v < NV; ++v) *reinterpret_cast<attention_vec16_u*>(acc + (r0 + r) * D + 16 * v) = o[r][v];
      if constexpr (tail) *reinterpret_cast<attention_vec8_u*>(acc + (r0 + r) * D + 16 * NV) = t[r];
    }
  }
#else
  float local[R][D];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < D; ++c) local[r][c] = acc[r * D + c];
  for (int j = 0; j < n; ++j) {
    const float* b_row = b + j * D;
    for (int r = 0; r < R; ++r) {
      const float w_rj = w[r][j];
      for (int c = 0; c < D; ++c) local[r][c] += w_rj * b_row[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < D; ++c) acc[r * D + c] = local[r][c];
#endif
}

// One row of a score tile (base 2) through the online softmax: keys at and past n_keys are masked, the new
// running maximum (at least m_old) is returned, s becomes 2^(s - max) and sum its total. Written as
// branch-free loops without a carried sum so that they vectorize; the maximum and the sum fold the two halves
// of the tile first, a fixed order.
template <int BK>
KOKKOS_FORCEINLINE_FUNCTION float attention_exp_row(float (&s)[BK], int n_keys, float m_old, float& sum) {
  static_assert(BK % 2 == 0, "key tiles fold in halves");
  constexpr int H = BK / 2;
  for (int j = 0; j < BK; ++j) s[j] = j < n_keys ? s[j] : -1e30f;
  float half[H];
  for (int j = 0; j < H; ++j) half[j] = s[j] > s[j + H] ? s[j] : s[j + H];
  float m = m_old;
  for (int j = 0; j < H; ++j) m = half[j] > m ? half[j] : m;
  attention_exp2_row<BK>(s, m, n_keys);
  for (int j = 0; j < H; ++j) half[j] = s[j] + s[j + H];
  float total = 0.0f;
  for (int j = 0; j < H; ++j) total += half[j];
  sum = total;
  return m;
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

}  // namespace detail

// q: [B, Nq, H, d], k, v: [B, Nk, H, d] -> o: [B, Nq, H, d], lse: [B, H, Nq] = log sum_j exp(scale · q_i · k_j)
template <int HeadDim, class ExecSpace, class QView, class KView, class VView, class OView, class LseView>
void attention_forward(const ExecSpace& space, const QView& q, const KView& k, const VView& v, const OView& o,
                       const LseView& lse, float scale) {
  using tiling = detail::attention_tiling<HeadDim>;
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

  constexpr int D = tiling::d, BQ = tiling::block_q, BK = tiling::block_k, R = tiling::rows;
  const int nq = static_cast<int>(q.extent(1)), nk = static_cast<int>(k.extent(1));
  const int n_heads = static_cast<int>(heads);
  const int q_blocks = (nq + BQ - 1) / BQ;
  const int league = static_cast<int>(batch) * n_heads * q_blocks;
  if (league == 0) return;

  using policy_t = Kokkos::TeamPolicy<ExecSpace>;
  using member_t = typename policy_t::member_type;
  using scratch_t = Kokkos::View<float*, typename ExecSpace::scratch_memory_space, Kokkos::MemoryUnmanaged>;
  // qs [BQ][D] (pre-scaled to base 2), kt [D][BK] (transposed), vs [BK][D], os [BQ][D], running max and sum.
  constexpr int scratch_floats = BQ * D + D * BK + BK * D + BQ * D + 2 * BQ;
  policy_t policy(space, league, Kokkos::AUTO);
  policy.set_scratch_size(0, Kokkos::PerTeam(scratch_t::shmem_size(scratch_floats)));
  const float q_scale = scale * detail::attention_log2e;  // scores in base 2: exp(x) = 2^(x·log2 e)

  Kokkos::parallel_for(
      "vitscale::attention_forward", policy, KOKKOS_LAMBDA(const member_t& team) {
        const int t = team.league_rank();
        const int qb = t % q_blocks;
        const int h = (t / q_blocks) % n_heads;
        const int b = t / q_blocks / n_heads;
        const int i0 = qb * BQ;
        const int n_rows = detail::imin(BQ, nq - i0);
        scratch_t buffer(team.team_scratch(0), scratch_floats);
        float* const qs = buffer.data();
        float* const kt = qs + BQ * D;
        float* const vs = kt + D * BK;
        float* const os = vs + BK * D;
        float* const row_max = os + BQ * D;
        float* const row_sum = row_max + BQ;

        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BQ), [&](int i) {
          float* q_row = qs + i * D;
          if (i < n_rows) {
            const auto* src = &q(b, i0 + i, h, 0);
            for (int c = 0; c < D; ++c) q_row[c] = q_scale * static_cast<float>(src[c]);
          } else {
            for (int c = 0; c < D; ++c) q_row[c] = 0.0f;
          }
          for (int c = 0; c < D; ++c) os[i * D + c] = 0.0f;
          row_max[i] = -1e30f;  // finite, so that the first rescale is 2^(-huge) = 0, not NaN
          row_sum[i] = 0.0f;
        });

        for (int j0 = 0; j0 < nk; j0 += BK) {
          const int n_keys = detail::imin(BK, nk - j0);
          team.team_barrier();  // the previous tile is consumed (and, the first time, q is staged)
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BK), [&](int j) {
            if (j < n_keys) {
              const auto* k_src = &k(b, j0 + j, h, 0);
              const auto* v_src = &v(b, j0 + j, h, 0);
              for (int c = 0; c < D; ++c) {
                kt[c * BK + j] = static_cast<float>(k_src[c]);
                vs[j * D + c] = static_cast<float>(v_src[c]);
              }
            } else {
              for (int c = 0; c < D; ++c) {
                kt[c * BK + j] = 0.0f;
                vs[j * D + c] = 0.0f;
              }
            }
          });
          team.team_barrier();

          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BQ / R), [&](int g) {
            const int r0 = g * R;
            if (r0 >= n_rows) return;
            float s[R][BK];
            detail::attention_tile_product<D, BK, R>(qs + r0 * D, kt, s);
            for (int r = 0; r < R; ++r) {
              const int i = r0 + r;
              float sum;
              const float m = detail::attention_exp_row<BK>(s[r], n_keys, row_max[i], sum);
              const float alpha = detail::fast_exp2(row_max[i] - m);
              row_sum[i] = row_sum[i] * alpha + sum;
              row_max[i] = m;
              for (int c = 0; c < D; ++c) os[i * D + c] *= alpha;
            }
            detail::attention_accumulate<D, BK, R>(os + r0 * D, s, vs, n_keys);
          });
        }
        team.team_barrier();

        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n_rows), [&](int i) {
          const float inv = 1.0f / row_sum[i];
          auto* dst = &o(b, i0 + i, h, 0);
          for (int c = 0; c < D; ++c) dst[c] = os[i * D + c] * inv;
          lse(b, h, i0 + i) = row_max[i] * detail::attention_ln2 + kmath::log(row_sum[i]);
        });
      });
}

// q, k, v, o, lse: as attention_forward, dout: [B, Nq, H, d], delta: [B, H, Nq] float workspace
//   -> dq: [B, Nq, H, d], dk, dv: [B, Nk, H, d] (delta is left holding rowsum(dout ∘ o))
template <int HeadDim, class ExecSpace, class QView, class KView, class VView, class OView, class DOView,
          class LseView, class DeltaView, class DQView, class DKView, class DVView>
void attention_backward(const ExecSpace& space, const QView& q, const KView& k, const VView& v, const OView& o,
                        const DOView& dout, const LseView& lse, const DeltaView& delta, const DQView& dq,
                        const DKView& dk, const DVView& dv, float scale) {
  using tiling = detail::attention_tiling<HeadDim>;
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

  constexpr int D = tiling::d, BQ = tiling::block_q, BK = tiling::block_k, R = tiling::rows;
  const int nb = static_cast<int>(batch), n_heads = static_cast<int>(heads);
  const int nq = static_cast<int>(nq_), nk = static_cast<int>(nk_);
  if (nb == 0 || n_heads == 0 || (nq == 0 && nk == 0)) return;
  const float q_scale = scale * detail::attention_log2e;
  // dS_ij = P_ij (dP_ij - delta_i); dK_j = scale Σ_i dS_ij q_i. The staged q carries scale·log2 e, so the dS
  // fed to dK carries 1/log2 e instead.
  const float dk_factor = 1.0f / detail::attention_log2e;

  using policy_t = Kokkos::TeamPolicy<ExecSpace>;
  using member_t = typename policy_t::member_type;
  using scratch_t = Kokkos::View<float*, typename ExecSpace::scratch_memory_space, Kokkos::MemoryUnmanaged>;

  // delta_i = dout_i · o_i, which equals Σ_j P_ij dP_ij.
  if (nq > 0) {
    Kokkos::parallel_for(
        "vitscale::attention_backward_delta", Kokkos::RangePolicy<ExecSpace>(space, 0, nb * nq * n_heads),
        KOKKOS_LAMBDA(int idx) {
          const int h = idx % n_heads;
          const int i = (idx / n_heads) % nq;
          const int b = idx / n_heads / nq;
          const auto* o_row = &o(b, i, h, 0);
          const auto* do_row = &dout(b, i, h, 0);
          float sum = 0.0f;
          for (int c = 0; c < D; ++c) sum += static_cast<float>(o_row[c]) * static_cast<float>(do_row[c]);
          delta(b, h, i) = sum;
        });
  }

  // Stages rows [i0, i0 + BQ) of q (scaled to base 2) and dout, their lse (base 2) and delta; padding rows
  // are zero and never produce a probability.
  auto stage_queries = KOKKOS_LAMBDA(const member_t& team, int b, int h, int i0, int n_rows, float* qs, float* dos,
                           float* lse2, float* dl) {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BQ), [&](int i) {
      if (i < n_rows) {
        const auto* q_src = &q(b, i0 + i, h, 0);
        const auto* do_src = &dout(b, i0 + i, h, 0);
        for (int c = 0; c < D; ++c) {
          qs[i * D + c] = q_scale * static_cast<float>(q_src[c]);
          dos[i * D + c] = static_cast<float>(do_src[c]);
        }
        lse2[i] = lse(b, h, i0 + i) * detail::attention_log2e;
        dl[i] = delta(b, h, i0 + i);
      } else {
        for (int c = 0; c < D; ++c) qs[i * D + c] = dos[i * D + c] = 0.0f;
        lse2[i] = 0.0f;
        dl[i] = 0.0f;
      }
    });
  };
  // Stages keys [j0, j0 + BK): k transposed and row-major, v transposed; padding keys are zero.
  auto stage_keys = KOKKOS_LAMBDA(const member_t& team, int b, int h, int j0, int n_keys, float* kt, float* ks, float* vt) {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BK), [&](int j) {
      if (j < n_keys) {
        const auto* k_src = &k(b, j0 + j, h, 0);
        const auto* v_src = &v(b, j0 + j, h, 0);
        for (int c = 0; c < D; ++c) {
          const float kv = static_cast<float>(k_src[c]);
          kt[c * BK + j] = kv;
          ks[j * D + c] = kv;
          vt[c * BK + j] = static_cast<float>(v_src[c]);
        }
      } else {
        for (int c = 0; c < D; ++c) kt[c * BK + j] = ks[j * D + c] = vt[c * BK + j] = 0.0f;
      }
    });
  };
  // For R staged query rows: p[r][j] = P_ij and ds[r][j] = P_ij (dP_ij - delta_i) · factor (0 outside the
  // valid rows and keys).
  auto probabilities = KOKKOS_LAMBDA(const float* qs, const float* dos, const float* lse2, const float* dl, const float* kt,
                           const float* vt, int r0, int n_rows, int n_keys, float factor, float (&p)[R][BK],
                           float (&ds)[R][BK]) {
    detail::attention_tile_product<D, BK, R>(qs + r0 * D, kt, p);
    detail::attention_tile_product<D, BK, R>(dos + r0 * D, vt, ds);
    for (int r = 0; r < R; ++r) {
      const float delta_i = dl[r0 + r];
      detail::attention_exp2_row<BK>(p[r], lse2[r0 + r], r0 + r < n_rows ? n_keys : 0);
      for (int j = 0; j < BK; ++j) ds[r][j] = p[r][j] * (ds[r][j] - delta_i) * factor;
    }
  };

  // dK, dV: a team per (b, h, block of BK keys), over every query block in order.
  if (nk > 0) {
    const int k_blocks = (nk + BK - 1) / BK;
    // kt, vt [D][BK]; ks (unused here but staged by the shared helper), dks, dvs [BK][D]; qs, dos [BQ][D];
    // ps, dss [BQ][BK]; lse2, delta [BQ].
    constexpr int scratch_floats = 2 * D * BK + 3 * BK * D + 2 * BQ * D + 2 * BQ * BK + 2 * BQ;
    policy_t policy(space, nb * n_heads * k_blocks, Kokkos::AUTO);
    policy.set_scratch_size(0, Kokkos::PerTeam(scratch_t::shmem_size(scratch_floats)));
    Kokkos::parallel_for(
        "vitscale::attention_backward_dkdv", policy, KOKKOS_LAMBDA(const member_t& team) {
          const int t = team.league_rank();
          const int kb = t % k_blocks;
          const int h = (t / k_blocks) % n_heads;
          const int b = t / k_blocks / n_heads;
          const int j0 = kb * BK;
          const int n_keys = detail::imin(BK, nk - j0);
          scratch_t buffer(team.team_scratch(0), scratch_floats);
          float* const kt = buffer.data();
          float* const vt = kt + D * BK;
          float* const ks = vt + D * BK;
          float* const dks = ks + BK * D;
          float* const dvs = dks + BK * D;
          float* const qs = dvs + BK * D;
          float* const dos = qs + BQ * D;
          float* const ps = dos + BQ * D;
          float* const dss = ps + BQ * BK;
          float* const lse2 = dss + BQ * BK;
          float* const dl = lse2 + BQ;

          stage_keys(team, b, h, j0, n_keys, kt, ks, vt);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BK * D), [&](int x) { dks[x] = dvs[x] = 0.0f; });

          for (int i0 = 0; i0 < nq; i0 += BQ) {
            const int n_rows = detail::imin(BQ, nq - i0);
            team.team_barrier();
            stage_queries(team, b, h, i0, n_rows, qs, dos, lse2, dl);
            team.team_barrier();
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BQ / R), [&](int g) {
              float p[R][BK], ds[R][BK];
              probabilities(qs, dos, lse2, dl, kt, vt, g * R, n_rows, n_keys, dk_factor, p, ds);
              for (int r = 0; r < R; ++r)
                for (int j = 0; j < BK; ++j) {
                  ps[(g * R + r) * BK + j] = p[r][j];
                  dss[(g * R + r) * BK + j] = ds[r][j];
                }
            });
            team.team_barrier();
            // Key rows are owned by one thread each: dV_j += Σ_i P_ij dO_i, dK_j += Σ_i dS_ij q_i.
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BK / R), [&](int g) {
              const int r0 = g * R;
              if (r0 >= n_keys) return;
              float w[R][BQ];
              for (int r = 0; r < R; ++r)
                for (int i = 0; i < BQ; ++i) w[r][i] = ps[i * BK + r0 + r];
              detail::attention_accumulate<D, BQ, R>(dvs + r0 * D, w, dos, n_rows);
              for (int r = 0; r < R; ++r)
                for (int i = 0; i < BQ; ++i) w[r][i] = dss[i * BK + r0 + r];
              detail::attention_accumulate<D, BQ, R>(dks + r0 * D, w, qs, n_rows);
            });
          }
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n_keys), [&](int j) {
            auto* dk_dst = &dk(b, j0 + j, h, 0);
            auto* dv_dst = &dv(b, j0 + j, h, 0);
            for (int c = 0; c < D; ++c) {
              dk_dst[c] = dks[j * D + c];
              dv_dst[c] = dvs[j * D + c];
            }
          });
        });
  }

  // dQ: a team per (b, h, block of BQ queries), over every key block in order; dQ_i = scale Σ_j dS_ij k_j.
  if (nq > 0) {
    const int q_blocks = (nq + BQ - 1) / BQ;
    // qs, dos, dqs [BQ][D]; lse2, delta [BQ]; kt, vt [D][BK]; ks [BK][D].
    constexpr int scratch_floats = 3 * BQ * D + 2 * BQ + 2 * D * BK + BK * D;
    policy_t policy(space, nb * n_heads * q_blocks, Kokkos::AUTO);
    policy.set_scratch_size(0, Kokkos::PerTeam(scratch_t::shmem_size(scratch_floats)));
    Kokkos::parallel_for(
        "vitscale::attention_backward_dq", policy, KOKKOS_LAMBDA(const member_t& team) {
          const int t = team.league_rank();
          const int qb = t % q_blocks;
          const int h = (t / q_blocks) % n_heads;
          const int b = t / q_blocks / n_heads;
          const int i0 = qb * BQ;
          const int n_rows = detail::imin(BQ, nq - i0);
          scratch_t buffer(team.team_scratch(0), scratch_floats);
          float* const qs = buffer.data();
          float* const dos = qs + BQ * D;
          float* const dqs = dos + BQ * D;
          float* const lse2 = dqs + BQ * D;
          float* const dl = lse2 + BQ;
          float* const kt = dl + BQ;
          float* const vt = kt + D * BK;
          float* const ks = vt + D * BK;

          stage_queries(team, b, h, i0, n_rows, qs, dos, lse2, dl);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BQ * D), [&](int x) { dqs[x] = 0.0f; });
          for (int j0 = 0; j0 < nk; j0 += BK) {
            const int n_keys = detail::imin(BK, nk - j0);
            team.team_barrier();
            stage_keys(team, b, h, j0, n_keys, kt, ks, vt);
            team.team_barrier();
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, BQ / R), [&](int g) {
              const int r0 = g * R;
              if (r0 >= n_rows) return;
              float p[R][BK], ds[R][BK];
              probabilities(qs, dos, lse2, dl, kt, vt, r0, n_rows, n_keys, scale, p, ds);
              detail::attention_accumulate<D, BK, R>(dqs + r0 * D, ds, ks, n_keys);
            });
          }
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n_rows), [&](int i) {
            auto* dst = &dq(b, i0 + i, h, 0);
            for (int c = 0; c < D; ++c) dst[c] = dqs[i * D + c];
          });
        });
  }
}

}  // namespace vitscale::kernels
