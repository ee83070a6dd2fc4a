// The model end to end: forward (inference: predict) and training step (forward + backward; the optimizer
// step is not included) images/s for ViT-B/16 and ViT-Ti/16 at 224 px, fp32 and bf16_mixed, on the
// default host execution space, with the model FLOP utilisation against the machine's fp32 FMA peak
// measured in the same run. The peer (PyTorch + timm, ONNX Runtime) is bench_vit_torch.py, beside it.
//
// FLOPs are config/accounting.hpp's (2 per multiply-add, attention products included; a training step is
// 3× forward less the patch embedding's input gradient), the same formula bench_vit_torch.py uses; train-remat's
// MFU counts the same model FLOPs, so its recomputed forward shows as a lower MFU.
//
//   OMP_NUM_THREADS=2 OMP_PROC_BIND=false ./bench_vit                         all rows, one process
//   OMP_NUM_THREADS=2 OMP_PROC_BIND=false ./bench_vit --model b16 --precision fp32 --mode train --batch 8
//                                                    one row, with the process's peak memory
#include <vitscale/vit.hpp>

#include "bench_support.hpp"
#include "fmnist_model.hpp"
#include "tool_runtime.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

using space = Kokkos::DefaultHostExecutionSpace;
using clock_type = std::chrono::steady_clock;
namespace vs = vitscale;

// Resident set size now and its peak, in MiB (Linux /proc).
double rss_mib(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(std::string(field).size())) / 1024.0;
  return 0;
}

struct options {
  std::vector<std::string> models{"b16", "ti16"};
  std::vector<std::string> precisions{"fp32", "bf16"};
  std::vector<std::string> modes{"forward", "train"};
  std::vector<int> batches{};  // empty: b16 at 1 and 8, ti16 at 8, fmnist at 128
  double min_time = 10.0;
  int warmup = 2;
};

template <class Shape, class Policy>
void run(const char* model_name, const char* precision_name, const std::string& mode, int batch, double peak,
         const options& o, bool report_memory) {
  const double rss_before = rss_mib("VmRSS:");
  vs::vit<Shape, Policy, space> model(vs::init::big_vision{0, 0.0f});
  const bool train = mode == "train" || mode == "train-remat";
  const auto remat = mode == "train-remat" ? vs::rematerialization::blocks : vs::rematerialization::none;
  model.set_rematerialization(remat);
  model.reserve(batch, train);
  constexpr int px = Shape::resolution;
  Kokkos::View<float****, Kokkos::LayoutRight, space::memory_space> images("images", batch, px, px,
                                                                          Shape::in_channels);
  Kokkos::View<float**, Kokkos::LayoutRight, space::memory_space> dlogits("dlogits", batch, Shape::num_classes);
  {
    auto hi = Kokkos::create_mirror_view(images);
    auto hd = Kokkos::create_mirror_view(dlogits);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (std::size_t k = 0; k < images.size(); ++k) hi.data()[k] = normal(rng);
    for (std::size_t k = 0; k < dlogits.size(); ++k) hd.data()[k] = 1e-3f * normal(rng);
    Kokkos::deep_copy(images, hi);
    Kokkos::deep_copy(dlogits, hd);
  }
  auto step = [&] {
    if (train) {
      model.forward(images);
      model.backward(dlogits);
    } else {
      model.predict(images);
    }
    Kokkos::fence();
  };
  for (int i = 0; i < o.warmup; ++i) step();
  std::vector<double> times;
  const auto start = clock_type::now();
  while (times.size() < 3 || std::chrono::duration<double>(clock_type::now() - start).count() < o.min_time) {
    const auto t0 = clock_type::now();
    step();
    times.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double t = times[times.size() / 2];
  const auto f = Shape::flops(px);
  const double flops = double(train ? f.training : f.forward) * batch;
  const double gflops = flops / t * 1e-9;
  std::printf("%-9s %-9s %-5s %-11s %5d %9.2f %9.1f %8.1f %6.1f%%", "vitscale", model_name, precision_name,
              mode.c_str(), batch, batch / t, t * 1e3, gflops, 100.0 * gflops / peak);
  if (report_memory)
    std::printf(" %9.0f %9.0f", rss_mib("VmHWM:") - rss_before, rss_mib("VmHWM:"));
  // The arena against what the accounting says a step keeps (config/accounting.hpp; the arena adds the scratch).
  const double kept = train ? double(vs::training_memory<Shape, Policy, vs::optim::sgd_momentum>(
                                         batch, px, vs::parameter_ema::off, remat).activations)
                            : 0.0;
  std::printf("   act arena %.1f MiB (kept for backward, accounting: %.1f MiB), %zu iters\n",
              model.activation_bytes() / 1048576.0, kept / 1048576.0, times.size());
  std::fflush(stdout);
}

template <class Shape>
void run_precisions(const char* name, const std::string& mode, int batch, double peak, const options& o, bool mem) {
  for (const auto& p : o.precisions) {
    if (p == "fp32") run<Shape, vs::precision::fp32>(name, "fp32", mode, batch, peak, o, mem);
    else if (p == "bf16") run<Shape, vs::precision::bf16_mixed>(name, "bf16", mode, batch, peak, o, mem);
    else vs::detail::fail("unknown precision '", p, "' (fp32, bf16)");
  }
}

}  // namespace

int main(int argc, char** argv) {
  tool::program prog("bench_vit", "vitscale ViT forward / training-step benchmark");
  CLI::App& app = prog.app;
  options o;
  app.add_option("--model", o.models, "b16, ti16, fmnist (the Fashion-MNIST example's model, 28 px)");
  app.add_option("--precision", o.precisions, "fp32, bf16 (bf16_mixed)");
  app.add_option("--mode", o.modes, "forward (inference), train (forward + backward), train-remat (the same with "
                                    "block rematerialisation; MFU counts model FLOPs, not the recomputation)");
  app.add_option("--batch", o.batches, "batch sizes (default: b16 at 1 and 8, ti16 at 8, fmnist at 128)");
  app.add_option("--min-time", o.min_time, "seconds per row at least (after warm-up)");
  app.add_option("--warmup", o.warmup, "warm-up iterations");
  return prog.run(argc, argv, [&] {
    const double peak = vitscale::bench::fma_peak_gflops();
    const bool single =
        o.models.size() * o.precisions.size() * o.modes.size() * std::max<std::size_t>(o.batches.size(), 1) == 1;
    std::printf("vitscale %d.%d, Kokkos %s, %d threads, fp32 FMA peak %.1f GFLOP/s (measured now, SIMD target %s)\n",
                VITSCALE_VERSION_MAJOR, VITSCALE_VERSION_MINOR, space::name(), space().concurrency(), peak,
                vitscale::bench::simd_target().c_str());
    std::printf("%-9s %-9s %-5s %-11s %5s %9s %9s %8s %7s%s\n", "engine", "model", "prec", "mode", "batch", "images/s",
                "ms/iter", "GFLOP/s", "MFU", single ? "  peakΔMiB  peak MiB" : "");
    for (const auto& mode : o.modes)
      if (mode != "forward" && mode != "train" && mode != "train-remat")
        vs::detail::fail("unknown mode '", mode, "' (forward, train, train-remat)");
    for (const auto& m : o.models)
      for (const auto& mode : o.modes) {
        std::vector<int> batches = o.batches;
        if (batches.empty())
          batches = m == "b16" ? std::vector<int>{1, 8} : m == "fmnist" ? std::vector<int>{128} : std::vector<int>{8};
        for (int b : batches) {
          if (m == "b16") run_precisions<vs::presets::vit_b16>("ViT-B/16", mode, b, peak, o, single);
          else if (m == "ti16") run_precisions<vs::presets::vit_ti16>("ViT-Ti/16", mode, b, peak, o, single);
          else if (m == "fmnist") run_precisions<fmnist_vit>("FMNIST", mode, b, peak, o, single);
          else vs::detail::fail("unknown model '", m, "' (b16, ti16, fmnist)");
        }
      }
    return 0;
  });
}
