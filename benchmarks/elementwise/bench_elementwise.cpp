// The row-wise kernels at ViT-B/16 batch-8 shapes (rows = 8·197 = 1576 tokens of D = 768; the MLP's
// hidden D = 3072; attention probabilities 8·12·197 rows of 197) on the default host execution space, in
// fp32 and bf16, as GB/s of the tensors each kernel must read and write, and as % of the memory bandwidth
// a STREAM-like copy and triad reach in the same run (these are memory-bound kernels: 100% is the goal).
//
// Bytes counted: every [rows, D] tensor read or written once (parameters, statistics and workspaces are
// too small to matter), whatever a kernel actually re-reads from cache.
//
// Each kernel cycles through enough copies of its tensors (at least cycle_bytes of each, several times the
// last-level cache) that every call finds its inputs in memory, not in cache, and pays for writing back its
// outputs, as the STREAM reference does; otherwise [rows, D] tensors of a few MB stay cached between calls
// and rates above the memory bandwidth come out.
//
//   OMP_NUM_THREADS=2 OMP_PROC_BIND=false ./bench_elementwise [repeats]
#include <vitscale/kernels/activations.hpp>
#include <vitscale/kernels/dropout.hpp>
#include <vitscale/kernels/layernorm.hpp>
#include <vitscale/kernels/pooling.hpp>
#include <vitscale/kernels/residual.hpp>
#include <vitscale/kernels/softmax.hpp>

#include "tool_runtime.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using space = Kokkos::DefaultHostExecutionSpace;
namespace vk = vitscale::kernels;
using vitscale::bf16;

template <class T>
using mat = Kokkos::View<T**, Kokkos::LayoutRight, space::memory_space>;
template <class T>
using ten3 = Kokkos::View<T***, Kokkos::LayoutRight, space::memory_space>;
template <class T>
using vec = Kokkos::View<T*, Kokkos::LayoutRight, space::memory_space>;

// Median wall time of `repeats` runs, in seconds. run(k) works on copy k of `copies` copies of its tensors;
// the copies are used in turn, starting after one warm-up pass over all of them.
double time_median(int repeats, int copies, const std::function<void(int)>& run) {
  for (int k = 0; k < copies; ++k) run(k);
  space().fence();
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const auto start = clock_type::now();
    run(r % copies);
    space().fence();
    t.push_back(std::chrono::duration<double>(clock_type::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
double time_median(int repeats, const std::function<void()>& run) {
  return time_median(repeats, 1, [&](int) { run(); });
}

// How many bytes of each tensor a benchmark cycles through: 1 GiB, far beyond the last-level cache a CPU
// reports, since a copy a few times that size can still run above the DRAM rate (benchmarks/RESULTS.md,
// "Machine notes moved out of the code").
constexpr double cycle_bytes = 1024.0 * 1024 * 1024;

int copies_for(double tensor_bytes) { return std::max(2, static_cast<int>(cycle_bytes / tensor_bytes) + 1); }

// `copies` copies of a [rows, cols] tensor, filled with the same random values.
template <class T>
std::vector<mat<T>> copies_of(const char* label, int copies, std::size_t rows, std::size_t cols, unsigned seed,
                              float lo = -2.0f, float hi = 2.0f);

template <class V>
void fill(const V& v, unsigned seed, float lo = -2.0f, float hi = 2.0f) {
  using T = typename V::non_const_value_type;
  auto host = Kokkos::create_mirror_view(v);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (std::size_t k = 0; k < v.span(); ++k) host.data()[k] = static_cast<T>(dist(rng));
  Kokkos::deep_copy(v, host);
}

template <class T>
std::vector<mat<T>> copies_of(const char* label, int copies, std::size_t rows, std::size_t cols, unsigned seed,
                              float lo, float hi) {
  std::vector<mat<T>> out;
  for (int k = 0; k < copies; ++k) {
    out.emplace_back(std::string(label) + std::to_string(k), rows, cols);
    if (k == 0)
      fill(out[0], seed, lo, hi);
    else
      Kokkos::deep_copy(out[k], out[0]);
  }
  return out;
}

struct row {
  std::string name;
  double bytes;
  double seconds;
};

double bandwidth_gbs = 0;

void print(const row& r) {
  const double gbs = r.bytes / r.seconds * 1e-9;
  std::printf("%-34s %9.1f us %8.1f GB/s %6.1f %%\n", r.name.c_str(), r.seconds * 1e6, gbs,
              100.0 * gbs / bandwidth_gbs);
}

// STREAM-like copy (2 streams) and triad (3 streams) over float arrays much larger than the caches.
void measure_bandwidth(int repeats) {
  const int n = 1 << 26;  // 256 MiB per array
  vec<float> a("a", n), b("b", n), c("c", n);
  fill(b, 1);
  fill(c, 2);
  const double copy = time_median(repeats, [&] {
    Kokkos::parallel_for("copy", Kokkos::RangePolicy<space>(0, n), KOKKOS_LAMBDA(int i) { a(i) = b(i); });
  });
  const double triad = time_median(repeats, [&] {
    Kokkos::parallel_for("triad", Kokkos::RangePolicy<space>(0, n),
                         KOKKOS_LAMBDA(int i) { a(i) = b(i) + 3.0f * c(i); });
  });
  const double copy_gbs = 2.0 * 4 * n / copy * 1e-9, triad_gbs = 3.0 * 4 * n / triad * 1e-9;
  bandwidth_gbs = std::max(copy_gbs, triad_gbs);
  std::printf("memory bandwidth: copy %.1f GB/s, triad %.1f GB/s; %% below is of %.1f GB/s\n\n", copy_gbs,
              triad_gbs, bandwidth_gbs);
}

template <class T>
void bench_precision(const char* tname, int repeats) {
  const std::size_t tokens = 197, batch = 8, rows = batch * tokens, d = 768, hidden = 3072;
  const std::size_t srows = batch * 12 * tokens, sd = tokens;
  const double e = sizeof(T);
  const double td = static_cast<double>(rows * d) * e, th = static_cast<double>(rows * hidden) * e,
               ts = static_cast<double>(srows * sd) * e;
  auto name = [&](const char* k) { return std::string(k) + " " + tname; };
  std::vector<row> out;
  const space s;
  {
    const int nc = copies_for(td);
    auto x = copies_of<T>("x", nc, rows, d, 3), y = copies_of<T>("y", nc, rows, d, 12),
         dy = copies_of<T>("dy", nc, rows, d, 4), dx = copies_of<T>("dx", nc, rows, d, 13);
    vec<T> gamma("gamma", d), beta("beta", d), dgamma("dgamma", d), dbeta("dbeta", d);
    vec<float> mean("mean", rows), rstd("rstd", rows);
    const auto lws = vk::layernorm_backward_workspace<true>(rows, d);
    mat<float> lnws("lnws", lws.chunks, lws.cols);
    fill(gamma, 5);
    fill(beta, 6);
    out.push_back({name("layernorm forward"), 2 * td, time_median(repeats, nc, [&](int k) {
                     vk::layernorm_forward<true, true>(s, x[k], gamma, beta, y[k], mean, rstd, 1e-6);
                   })});
    out.push_back({name("layernorm backward"), 3 * td, time_median(repeats, nc, [&](int k) {
                     vk::layernorm_backward<true, true>(s, x[k], gamma, mean, rstd, dy[k], dx[k], dgamma, dbeta,
                                                        lnws);
                   })});
    out.push_back({name("residual add"), 3 * td,
                   time_median(repeats, nc, [&](int k) { vk::residual_add(s, x[k], dy[k], y[k]); })});
    const vitscale::rng_key key{42, 7, 3};
    out.push_back({name("dropout forward p=0.1"), 2 * td,
                   time_median(repeats, nc, [&](int k) { vk::dropout_forward(s, key, 0.1, x[k], y[k]); })});
    out.push_back({name("dropout backward p=0.1"), 2 * td,
                   time_median(repeats, nc, [&](int k) { vk::dropout_backward(s, key, 0.1, dy[k], dx[k]); })});
    auto t3 = [&](const mat<T>& m) { return ten3<T>(m.data(), batch, tokens, d); };
    out.push_back({name("drop_path_add p=0.1"), 3 * td, time_median(repeats, nc, [&](int k) {
                     vk::drop_path_add(s, key, 0.1, t3(x[k]), t3(dx[k]), t3(y[k]));
                   })});
    mat<T> pooled("pooled", batch, d);
    fill(pooled, 14);
    out.push_back({name("token mean pool forward"), td, time_median(repeats, nc, [&](int k) {
                     vk::token_mean_pool_forward(s, t3(x[k]), 1, pooled);
                   })});
    out.push_back({name("token mean pool backward"), td, time_median(repeats, nc, [&](int k) {
                     vk::token_mean_pool_backward(s, pooled, 1, t3(dx[k]));
                   })});
  }
  {
    const int nc = copies_for(th);
    auto h = copies_of<T>("h", nc, rows, hidden, 7, -4.0f, 4.0f), hy = copies_of<T>("hy", nc, rows, hidden, 15),
         hdy = copies_of<T>("hdy", nc, rows, hidden, 8), hdx = copies_of<T>("hdx", nc, rows, hidden, 16);
    vec<T> hb("hb", hidden), hdb("hdb", hidden);
    const auto gws = vk::gelu_bias_backward_workspace(rows, hidden);
    mat<float> gw("gw", gws.chunks, gws.cols);
    fill(hb, 9, -0.5f, 0.5f);
    using vk::gelu_kind;
    out.push_back({name("gelu tanh forward"), 2 * th, time_median(repeats, nc, [&](int k) {
                     vk::gelu_forward<gelu_kind::tanh>(s, h[k], hy[k]);
                   })});
    out.push_back({name("gelu tanh backward"), 3 * th, time_median(repeats, nc, [&](int k) {
                     vk::gelu_backward<gelu_kind::tanh>(s, h[k], hdy[k], hdx[k]);
                   })});
    out.push_back({name("gelu tanh+bias forward"), 2 * th, time_median(repeats, nc, [&](int k) {
                     vk::gelu_bias_forward<gelu_kind::tanh>(s, h[k], hb, hy[k]);
                   })});
    out.push_back({name("gelu tanh+bias backward"), 3 * th, time_median(repeats, nc, [&](int k) {
                     vk::gelu_bias_backward<gelu_kind::tanh>(s, h[k], hb, hdy[k], hdx[k], hdb, gw);
                   })});
    out.push_back({name("gelu erf forward"), 2 * th, time_median(repeats, nc, [&](int k) {
                     vk::gelu_forward<gelu_kind::erf>(s, h[k], hy[k]);
                   })});
    out.push_back({name("gelu erf backward"), 3 * th, time_median(repeats, nc, [&](int k) {
                     vk::gelu_backward<gelu_kind::erf>(s, h[k], hdy[k], hdx[k]);
                   })});
  }
  {
    const int nc = copies_for(ts);
    auto sx = copies_of<T>("sx", nc, srows, sd, 10, -8.0f, 8.0f), sy = copies_of<T>("sy", nc, srows, sd, 17),
         sdy = copies_of<T>("sdy", nc, srows, sd, 11), sdx = copies_of<T>("sdx", nc, srows, sd, 18);
    out.push_back({name("softmax forward"), 2 * ts,
                   time_median(repeats, nc, [&](int k) { vk::softmax_forward(s, sx[k], sy[k]); })});
    out.push_back({name("softmax backward"), 3 * ts,
                   time_median(repeats, nc, [&](int k) { vk::softmax_backward(s, sy[k], sdy[k], sdx[k]); })});
  }
  for (const auto& r : out) print(r);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  tool::program prog("bench_elementwise", "row-wise kernels against the memory bandwidth measured in the same run");
  int repeats = 20;
  prog.app.add_option("repeats", repeats, "timed runs per kernel (the median is printed)");
  return prog.run(argc, argv, [&] {
    repeats = std::max(1, repeats);
    std::printf("vitscale row-wise kernels, ViT-B/16 batch 8, %s with %d threads, median of %d runs\n",
                space::name(), space().concurrency(), repeats);
    measure_bandwidth(repeats);
    std::printf("%-34s %12s %13s %8s\n", "kernel", "time", "rate", "of bw");
    bench_precision<float>("fp32", repeats);
    bench_precision<bf16>("bf16", repeats);
    return 0;
  });
}
