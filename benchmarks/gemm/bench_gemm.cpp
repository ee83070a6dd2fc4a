// GEMM throughput on the host: the machine's fp32 FMA peak, oneDNN and Eigen called directly, and
// vitscale::kernels::gemm through each backend, for the ViT-B/16 and ViT-Ti/16 products at batch 8.
// Prints a table (median of several timed repetitions after a warm-up); never a test.
//
//   OMP_NUM_THREADS=2 OMP_PROC_BIND=false bench_gemm [repetitions]
#include <vitscale/kernels/gemm.hpp>

#include "bench_support.hpp"
#include "tool_runtime.hpp"


#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace vk = vitscale::kernels;
using vitscale::bf16;
using space = Kokkos::DefaultHostExecutionSpace;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median time of `reps` calls after two warm-up calls (which also build and cache oneDNN primitives).
double time_it(int reps, const std::function<void()>& f) {
  f();
  f();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto start = clock_type::now();
    f();
    t.push_back(seconds_since(start));
  }
  return median(t);
}


#if VITSCALE_HAVE_ONEDNN
// oneDNN's matmul as a user would call it: plain row-major tensors, f32 output, no attributes.
struct onednn_direct {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  dnnl::matmul primitive;
  dnnl::memory a, b, c;
  onednn_direct(int m, int k, int n, dnnl::memory::data_type in, void* a_ptr, void* b_ptr, float* c_ptr) {
    using tag = dnnl::memory::format_tag;
    const dnnl::memory::desc ad({m, k}, in, tag::ab), bd({k, n}, in, tag::ab),
        cd({m, n}, dnnl::memory::data_type::f32, tag::ab);
    primitive = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(ad, bd, cd), engine));
    a = dnnl::memory(ad, engine, a_ptr);
    b = dnnl::memory(bd, engine, b_ptr);
    c = dnnl::memory(cd, engine, c_ptr);
  }
  void operator()() {
    primitive.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream.wait();
  }
};
#endif

struct shape {
  const char* model;
  int m, k, n;
};

struct row {
  double onednn = 0, vs_onednn = 0, eigen = 0, vs_eigen = 0, portable = 0;
};

template <class T>
row measure(const shape& s, int reps, const space& exec) {
  Kokkos::View<T**, Kokkos::LayoutRight, Kokkos::HostSpace> a("a", s.m, s.k), b("b", s.k, s.n);
  Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace> c("c", s.m, s.n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (std::size_t i = 0; i < a.span(); ++i) a.data()[i] = u(rng);
  for (std::size_t i = 0; i < b.span(); ++i) b.data()[i] = u(rng);
  const double flops = 2.0 * s.m * s.k * s.n;
  const auto gflops = [&](double t) { return flops / t * 1e-9; };
  row r;
  const auto call = [&](auto backend) {
    return gflops(time_it(reps, [&] {
      vk::gemm(exec, vk::gemm_op::n, vk::gemm_op::n, 1.0f, a, b, 0.0f, c, decltype(backend){});
      exec.fence();
    }));
  };
#if VITSCALE_HAVE_ONEDNN
  // oneDNN itself has no bf16 matmul without AVX-512 (vitscale widens to float there): no direct column then.
  if (std::is_same<T, float>::value || vk::gemm_detail::onednn_has_bf16_matmul()) {
    onednn_direct direct(s.m, s.k, s.n,
                         std::is_same<T, float>::value ? dnnl::memory::data_type::f32 : dnnl::memory::data_type::bf16,
                         a.data(), b.data(), c.data());
    r.onednn = gflops(time_it(reps, direct));
  }
  r.vs_onednn = call(vk::gemm_backend::onednn{});
#endif
  if constexpr (std::is_same<T, float>::value) {  // Eigen has no bf16 GEMM of its own to compare with
    using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const matrix> am(a.data(), s.m, s.k), bm(b.data(), s.k, s.n);
    Eigen::Map<matrix> cm(c.data(), s.m, s.n);
    r.eigen = gflops(time_it(reps, [&] { cm.noalias() = am * bm; }));
  }
  r.vs_eigen = call(vk::gemm_backend::eigen{});
  r.portable = call(vk::gemm_backend::portable{});
  return r;
}

std::string cell(double gflops, double peak) {
  if (gflops <= 0) return "      -      ";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%6.1f (%3.0f%%)", gflops, 100.0 * gflops / peak);
  return buf;
}
std::string ratio(double x, double y) {
  if (x <= 0 || y <= 0) return "    -";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%5.2f", x / y);
  return buf;
}

int bench(int reps) {
  const space exec;
  const int threads = exec.concurrency();
  const double peak = vitscale::bench::fma_peak_gflops(threads);
  std::printf("vitscale GEMM benchmark: %s, %d thread(s), oneDNN %s, median of %d after 2 warm-up calls\n",
              space::name(), threads, vk::gemm_has_onednn ? "yes" : "no", reps);
  std::printf("fp32 FMA peak (%s, %d thread(s)): %.1f GFLOP/s\n\n", vitscale::bench::simd_target().c_str(),
              threads, peak);

  const shape shapes[] = {{"ViT-B/16 qkv", 1576, 768, 2304}, {"ViT-B/16 fc1", 1576, 768, 3072},
                          {"ViT-B/16 fc2", 1576, 3072, 768}, {"ViT-Ti/16 qkv", 1576, 192, 576},
                          {"ViT-Ti/16 fc1", 1576, 192, 768}, {"ViT-Ti/16 fc2", 1576, 768, 192}};
  std::printf("GFLOP/s (%% of fp32 peak); C is float; vs = vitscale::kernels::gemm through that backend\n");
  std::printf("%-14s %-17s %-5s %-13s %-13s %-13s %-13s %-13s  %-9s %-9s %-9s\n", "model", "MxKxN", "in", "oneDNN",
              "vs-oneDNN", "Eigen", "vs-Eigen", "vs-portable", "vsDNN/DNN", "vsEig/Eig", "port/Eig");
  std::vector<row> fp32_rows, bf16_rows;
  for (const shape& s : shapes) {
    char dims[32];
    std::snprintf(dims, sizeof dims, "%dx%dx%d", s.m, s.k, s.n);
    const row f = measure<float>(s, reps, exec);
    const row h = measure<bf16>(s, reps, exec);
    fp32_rows.push_back(f);
    bf16_rows.push_back(h);
    for (int precision = 0; precision < 2; ++precision) {
      const row& r = precision == 0 ? f : h;
      std::printf("%-14s %-17s %-5s %s %s %s %s %s  %-9s %-9s %-9s\n", s.model, dims, precision == 0 ? "fp32" : "bf16",
                  cell(r.onednn, peak).c_str(), cell(r.vs_onednn, peak).c_str(), cell(r.eigen, peak).c_str(),
                  cell(r.vs_eigen, peak).c_str(), cell(r.portable, peak).c_str(), ratio(r.vs_onednn, r.onednn).c_str(),
                  ratio(r.vs_eigen, precision == 0 ? r.eigen : f.eigen).c_str(),
                  ratio(r.portable, precision == 0 ? r.eigen : f.eigen).c_str());
    }
  }
  std::printf("\nbf16 / fp32 inputs (same backend, same shape)\n%-14s %-17s %-9s %-9s %-9s %-9s\n", "model", "MxKxN",
              "oneDNN", "vs-oneDNN", "vs-Eigen", "portable");
  for (std::size_t i = 0; i < fp32_rows.size(); ++i) {
    char dims[32];
    std::snprintf(dims, sizeof dims, "%dx%dx%d", shapes[i].m, shapes[i].k, shapes[i].n);
    const row &f = fp32_rows[i], &h = bf16_rows[i];
    std::printf("%-14s %-17s %-9s %-9s %-9s %-9s\n", shapes[i].model, dims, ratio(h.onednn, f.onednn).c_str(),
                ratio(h.vs_onednn, f.vs_onednn).c_str(), ratio(h.vs_eigen, f.vs_eigen).c_str(),
                ratio(h.portable, f.portable).c_str());
  }
  std::printf("\nbf16 rows: vsEig/Eig and port/Eig compare with Eigen's fp32 GEMM (Eigen has no bf16 GEMM).\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tool::program prog("bench_gemm", "GEMM throughput on the host against the FMA peak, oneDNN and Eigen");
  int reps = 7;
  prog.app.add_option("repetitions", reps, "timed repetitions per cell (the median is printed)");
  return prog.run(argc, argv, [&] { return bench(std::max(1, reps)); });
}
