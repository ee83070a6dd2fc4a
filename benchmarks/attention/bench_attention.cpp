// Fused attention (vitscale::kernels::attention_forward / attention_backward) on the default host execution
// space, against the machine's fp32 FMA peak measured here and an unfused per-head Eigen peer (S = Q·Kᵀ with
// Eigen's GEMM, a row softmax, O = P·V; backward likewise through the N×N matrices), in the same run.
//
// FLOPs counted: forward 4·B·H·Nq·Nk·d (the two products), backward 2.5× that (the five products of
// FlashAttention-2's backward), whatever an implementation actually executes; vitscale's deterministic
// backward recomputes two products and executes 7/5 of what is counted.
//
//   OMP_NUM_THREADS=2 OMP_PROC_BIND=false ./bench_attention [repeats]
#include <vitscale/kernels/attention.hpp>

#include "bench_support.hpp"
#include "tool_runtime.hpp"

// GCC 12 reports its own AVX-512 intrinsics (_mm512_undefined_* inside Eigen's packet code, inlined here) as
// possibly uninitialised; the warning is about the compiler's header, not this program.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using clock_type = std::chrono::steady_clock;
using space = Kokkos::DefaultHostExecutionSpace;
using vitscale::bf16;

// Median wall time of `repeats` runs after one warm-up run, in seconds.
double time_median(int repeats, const std::function<void()>& run) {
  run();
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const auto start = clock_type::now();
    run();
    t.push_back(std::chrono::duration<double>(clock_type::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using head_map = Eigen::Map<row_matrix, 0, Eigen::OuterStride<>>;

// The per-head matrix [N, d] of a [B, N, H, d] buffer.
head_map head(float* base, int b, int h, int n, int heads, int d) {
  return head_map(base + (static_cast<std::size_t>(b) * n * heads + h) * d, n, d, Eigen::OuterStride<>(heads * d));
}

void row_softmax(row_matrix& s) {
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    auto row = s.row(i);
    row = (row.array() - row.maxCoeff()).exp();
    row /= row.sum();
  }
}

struct problem {
  int batch, heads, n, d;
  double forward_flops() const { return 4.0 * batch * heads * double(n) * n * d; }
};

template <class T>
struct fused_buffers {
  Kokkos::View<T****, Kokkos::LayoutRight, space::memory_space> q, k, v, o, dout, dq, dk, dv;
  Kokkos::View<float***, Kokkos::LayoutRight, space::memory_space> lse, delta;
  explicit fused_buffers(const problem& p, const std::vector<float> (&src)[4])
      : q("q", p.batch, p.n, p.heads, p.d), k("k", p.batch, p.n, p.heads, p.d), v("v", p.batch, p.n, p.heads, p.d),
        o("o", p.batch, p.n, p.heads, p.d), dout("dout", p.batch, p.n, p.heads, p.d),
        dq("dq", p.batch, p.n, p.heads, p.d), dk("dk", p.batch, p.n, p.heads, p.d),
        dv("dv", p.batch, p.n, p.heads, p.d), lse("lse", p.batch, p.heads, p.n), delta("delta", p.batch, p.heads, p.n) {
    for (std::size_t i = 0; i < src[0].size(); ++i) {
      q.data()[i] = T(src[0][i]);
      k.data()[i] = T(src[1][i]);
      v.data()[i] = T(src[2][i]);
      dout.data()[i] = T(src[3][i]);
    }
  }
};

struct row {
  std::string what;
  double seconds, gflops;
};

template <int D, class T>
std::pair<row, row> bench_fused(const problem& p, const std::vector<float> (&src)[4], int repeats, const char* type) {
  fused_buffers<T> f(p, src);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const space exec;
  const double tf = time_median(repeats, [&] {
    vitscale::kernels::attention_forward<D>(exec, f.q, f.k, f.v, f.o, f.lse, scale);
    exec.fence();
  });
  const double tb = time_median(repeats, [&] {
    vitscale::kernels::attention_backward<D>(exec, f.q, f.k, f.v, f.o, f.dout, f.lse, f.delta, f.dq, f.dk, f.dv,
                                             scale);
    exec.fence();
  });
  return {{std::string("vitscale fused, ") + type, tf, p.forward_flops() / tf * 1e-9},
          {std::string("vitscale fused, ") + type, tb, 2.5 * p.forward_flops() / tb * 1e-9}};
}

std::pair<row, row> bench_eigen(const problem& p, std::vector<float> (&src)[4], int repeats) {
  const std::size_t size = src[0].size();
  std::vector<float> o(size), dq(size), dk(size), dv(size);
  const float scale = 1.0f / std::sqrt(static_cast<float>(p.d));
  const int pairs = p.batch * p.heads;
  auto forward = [&] {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (int bh = 0; bh < pairs; ++bh) {
      const int b = bh / p.heads, h = bh % p.heads;
      row_matrix s = scale * head(src[0].data(), b, h, p.n, p.heads, p.d) *
                     head(src[1].data(), b, h, p.n, p.heads, p.d).transpose();
      row_softmax(s);
      head(o.data(), b, h, p.n, p.heads, p.d).noalias() = s * head(src[2].data(), b, h, p.n, p.heads, p.d);
    }
  };
  auto backward = [&] {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (int bh = 0; bh < pairs; ++bh) {
      const int b = bh / p.heads, h = bh % p.heads;
      auto q = head(src[0].data(), b, h, p.n, p.heads, p.d), k = head(src[1].data(), b, h, p.n, p.heads, p.d),
           v = head(src[2].data(), b, h, p.n, p.heads, p.d), dout = head(src[3].data(), b, h, p.n, p.heads, p.d);
      row_matrix s = scale * q * k.transpose();  // P recomputed, as a memory-saving unfused backward would
      row_softmax(s);
      head(dv.data(), b, h, p.n, p.heads, p.d).noalias() = s.transpose() * dout;
      row_matrix dp = dout * v.transpose();
      const Eigen::VectorXf delta = (dp.array() * s.array()).rowwise().sum();
      dp = (s.array() * (dp.array().colwise() - delta.array())) * scale;
      head(dq.data(), b, h, p.n, p.heads, p.d).noalias() = dp * k;
      head(dk.data(), b, h, p.n, p.heads, p.d).noalias() = dp.transpose() * q;
    }
  };
  const double tf = time_median(repeats, forward);
  const double tb = time_median(repeats, backward);
  // The backward above executes 6 products (P is recomputed); it is credited with the same 2.5× as the others.
  return {{"Eigen unfused (fp32)", tf, p.forward_flops() / tf * 1e-9},
          {"Eigen unfused (fp32)", tb, 2.5 * p.forward_flops() / tb * 1e-9}};
}

int bench(int repeats) {
  int threads = 1;
#if defined(_OPENMP)
  threads = omp_get_max_threads();
#endif
  const double peak = vitscale::bench::fma_peak_gflops();
  std::printf("vitscale attention benchmark: %s, %d OpenMP thread(s), Kokkos %d, median of %d runs\n",
              space::name(), threads, KOKKOS_VERSION, repeats);
  std::printf("fp32 FMA peak measured here: %.0f GFLOP/s; SIMD target %s\n", peak,
              vitscale::bench::simd_target().c_str());
  std::printf("FLOPs: forward 4*B*H*N*N*d, backward 2.5x forward\n\n");
  std::printf("| B | H | N | d | pass | implementation | ms | GFLOP/s | %% of peak | vs Eigen |\n");
  std::printf("|---|---|---|---|---|---|---:|---:|---:|---:|\n");

  // ViT-B/16 at 224 and 384 px, and the Fashion-MNIST example's model (examples/train.cpp: 49 tokens,
  // 4 heads of 32, batch 128), whose small heads stress the per-tile overheads rather than the products.
  for (const problem p : {problem{8, 12, 197, 64}, problem{8, 12, 577, 64}, problem{128, 4, 49, 32}}) {
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> src[4];
    for (auto& s : src) {
      s.resize(std::size_t(p.batch) * p.n * p.heads * p.d);
      for (auto& x : s) x = dist(rng);
    }
    const auto eigen = bench_eigen(p, src, repeats);
    const bool d64 = p.d == 64;
    const auto f32 = d64 ? bench_fused<64, float>(p, src, repeats, "fp32") : bench_fused<32, float>(p, src, repeats, "fp32");
    const auto b16 = d64 ? bench_fused<64, bf16>(p, src, repeats, "bf16 storage")
                         : bench_fused<32, bf16>(p, src, repeats, "bf16 storage");
    auto print = [&](const char* pass, const row& r, const row& peer) {
      std::printf("| %d | %d | %d | %d | %s | %s | %.2f | %.1f | %.1f%% | %.2fx |\n", p.batch, p.heads, p.n, p.d,
                  pass, r.what.c_str(), r.seconds * 1e3, r.gflops, 100.0 * r.gflops / peak, r.gflops / peer.gflops);
    };
    print("forward", f32.first, eigen.first);
    print("forward", b16.first, eigen.first);
    print("forward", eigen.first, eigen.first);
    print("backward", f32.second, eigen.second);
    print("backward", b16.second, eigen.second);
    print("backward", eigen.second, eigen.second);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tool::program prog("bench_attention", "fused attention against an unfused Eigen peer and the FMA peak");
  int repeats = 5;
  prog.app.add_option("repeats", repeats, "timed runs per row (the median is printed)");
  return prog.run(argc, argv, [&] { return bench(std::max(1, repeats)); });
}
