#pragma once
// gemm_backend::portable: a Kokkos TeamPolicy kernel for any execution space. Tiles of A and B in team
// scratch (converted to float there), register blocks of C in each thread, the epilogue fused in the store;
// each element's sum runs over k in an order that depends on the shapes only. The contract is at the top of
// kernels/gemm.hpp.

#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/kernels/detail/gemm_problem.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vitscale::kernels::gemm_detail {

// Tile sizes: BM×BN of C per team, BK of the inner dimension per step, MR×NR registers per thread.
// On the host a team is one thread that walks all its register blocks: 6 rows × 32 floats is 12 zmm (or 24
// ymm) accumulators fed by 6 broadcasts and 2 (4) loads per k; the packed tiles (96 KB of A, 256 KB of B)
// stay in L2 and are reused by 8 and 16 register blocks. On devices one register block per thread.
template <class ExecSpace, bool Host = std::is_same<typename ExecSpace::memory_space, Kokkos::HostSpace>::value>
struct portable_tiles {
  static constexpr int bm = 96, bn = 256, bk = 256, mr = 6, nr = 32, team = 1;
};
template <class ExecSpace>
struct portable_tiles<ExecSpace, false> {
  static constexpr int bm = 64, bn = 64, bk = 16, mr = 4, nr = 4, team = (bm / mr) * (bn / nr);
};

// Team scratch holds, per k step, op(A)'s tile as MR-row panels ([bm/mr][bk][mr]) and op(B)'s as NR-column
// panels ([bn/nr][bk][nr]), both converted to float, so that a register block reads two contiguous streams;
// plus the float accumulators of the whole C tile ([bm][bn]) between k steps.
template <class ExecSpace, class TA, class TBias, class TC>
struct portable_kernel {
  using tiles = portable_tiles<ExecSpace>;
  using member = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  static constexpr int bm = tiles::bm, bn = tiles::bn, bk = tiles::bk, mr = tiles::mr, nr = tiles::nr;
  static_assert(bm % mr == 0 && bn % nr == 0, "portable gemm: tiles must hold whole register blocks");
  static constexpr std::size_t scratch_floats = std::size_t(bm) * bn + std::size_t(bk) * (bm + bn);

  problem p;
  const TA* a;
  const TA* b;
  const TBias* bias;
  TC* c;
  std::int64_t tiles_m, tiles_n;

  KOKKOS_INLINE_FUNCTION void operator()(const member& team) const {
    const std::int64_t league = team.league_rank();
    const std::int64_t per_item = tiles_m * tiles_n;
    const std::int64_t item = league / per_item;
    const std::int64_t m0 = (league % per_item) / tiles_n * bm, n0 = (league % per_item) % tiles_n * bn;
    const TA* ai = a + item * p.sa;
    const TA* bi = b + item * p.sb;
    TC* ci = c + item * p.sc;
    float* cs = static_cast<float*>(team.team_scratch(0).get_shmem(sizeof(float) * scratch_floats));
    float* as = cs + bm * bn;
    float* bs = as + bk * bm;
    const int rows = static_cast<int>(p.m - m0 < bm ? p.m - m0 : bm);
    const int cols = static_cast<int>(p.n - n0 < bn ? p.n - n0 : bn);
    // Only register blocks that touch C are computed; the rows and columns they cover past C are zeros.
    const int panels_m = (rows + mr - 1) / mr, panels_n = (cols + nr - 1) / nr;
    const int rows_padded = panels_m * mr, cols_padded = panels_n * nr;

    if (p.k == 0) {
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, bm * bn), [&](int i) { cs[i] = 0.0f; });
    }
    for (std::int64_t k0 = 0; k0 < p.k; k0 += bk) {
      const int kl = static_cast<int>(p.k - k0 < bk ? p.k - k0 : bk);
      if (p.op_a == gemm_op::n) {  // stored rows are rows of op(A): read along k
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows_padded), [&](int i) {
          float* dst = as + (i / mr) * bk * mr + i % mr;
          if (i < rows) {
            const TA* src = ai + (m0 + i) * p.lda + k0;
            for (int kk = 0; kk < kl; ++kk) dst[kk * mr] = static_cast<float>(src[kk]);
          } else {
            for (int kk = 0; kk < kl; ++kk) dst[kk * mr] = 0.0f;
          }
        });
      } else {  // stored rows are columns of op(A): read along m
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kl), [&](int kk) {
          const TA* src = ai + (k0 + kk) * p.lda + m0;
          for (int i = 0; i < rows_padded; ++i)
            as[(i / mr) * bk * mr + kk * mr + i % mr] = i < rows ? static_cast<float>(src[i]) : 0.0f;
        });
      }
      if (p.op_b == gemm_op::n) {  // stored rows are rows of op(B): contiguous runs of nr
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kl), [&](int kk) {
          const TA* src = bi + (k0 + kk) * p.ldb + n0;
          for (int jb = 0; jb < panels_n; ++jb) {
            float* dst = bs + (jb * bk + kk) * nr;
            const TA* s = src + jb * nr;
            if ((jb + 1) * nr <= cols) {
              for (int j = 0; j < nr; ++j) dst[j] = static_cast<float>(s[j]);
            } else {
              for (int j = 0; j < nr; ++j) dst[j] = jb * nr + j < cols ? static_cast<float>(s[j]) : 0.0f;
            }
          }
        });
      } else {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, cols_padded), [&](int j) {
          float* dst = bs + (j / nr) * bk * nr + j % nr;
          if (j < cols) {
            const TA* src = bi + (n0 + j) * p.ldb + k0;
            for (int kk = 0; kk < kl; ++kk) dst[kk * nr] = static_cast<float>(src[kk]);
          } else {
            for (int kk = 0; kk < kl; ++kk) dst[kk * nr] = 0.0f;
          }
        });
      }
      team.team_barrier();
      const bool first = k0 == 0;
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, panels_m * panels_n), [&](int blk) {
        const int ib = blk % panels_m, jb = blk / panels_m;  // consecutive blocks share a B panel
        const int i0 = ib * mr, j0 = jb * nr;
        float acc[mr][nr];
        for (int i = 0; i < mr; ++i)
          for (int j = 0; j < nr; ++j) acc[i][j] = first ? 0.0f : cs[(i0 + i) * bn + j0 + j];
        const float* ap = as + ib * bk * mr;
        const float* bp = bs + jb * bk * nr;
        for (int kk = 0; kk < kl; ++kk) {
          for (int i = 0; i < mr; ++i) {
            const float av = ap[kk * mr + i];
            for (int j = 0; j < nr; ++j) acc[i][j] = gemm_detail::fma(av, bp[kk * nr + j], acc[i][j]);
          }
        }
        for (int i = 0; i < mr; ++i)
          for (int j = 0; j < nr; ++j) cs[(i0 + i) * bn + j0 + j] = acc[i][j];
      });
      team.team_barrier();
    }
    // Epilogue, fused in the store; only the part of the tile inside C is written.
    const float alpha = p.alpha, beta = p.beta;
    const gemm_epilogue ep = p.epilogue;
    const std::int64_t ldc = p.ldc;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](int i) {
      TC* out = ci + (m0 + i) * ldc + n0;
      const float* acc = cs + i * bn;
      for (int j = 0; j < cols; ++j) {
        float v = alpha * acc[j];
        if (bias) v += static_cast<float>(bias[n0 + j]);
        v = activate(ep, v);
        if (beta != 0.0f) v += beta * static_cast<float>(out[j]);
        out[j] = v;
      }
    });
  }
};

template <class ExecSpace, class TA, class TBias, class TC>
void run_portable(const ExecSpace& space, const problem& p, const TA* a, const TA* b, const TBias* bias, TC* c) {
  using kernel = portable_kernel<ExecSpace, TA, TBias, TC>;
  const std::int64_t tiles_m = (p.m + kernel::bm - 1) / kernel::bm, tiles_n = (p.n + kernel::bn - 1) / kernel::bn;
  const std::int64_t league = p.batch * tiles_m * tiles_n;
  if (league > 2147483647)
    ::vitscale::detail::fail("gemm: the portable kernel supports at most 2^31 - 1 tiles, the problem has ", league);
  const kernel functor{p, a, b, bias, c, tiles_m, tiles_n};
  Kokkos::TeamPolicy<ExecSpace> policy(space, static_cast<int>(league), portable_tiles<ExecSpace>::team);
  Kokkos::parallel_for("vitscale::gemm::portable",
                       policy.set_scratch_size(0, Kokkos::PerTeam(sizeof(float) * kernel::scratch_floats)), functor);
}

}  // namespace vitscale::kernels::gemm_detail
