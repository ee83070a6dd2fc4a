#pragma once
// Compute bookkeeping: training FLOPs from the accounting × images seen, and the device-hours they cost on
// named accelerators at an assumed model-FLOPs utilisation (MFU), or through the step model
// (explore/step_model.hpp) where a mesh and its links matter.
//
// The FLOP convention is the accounting's (config/accounting.hpp): 2 per multiply-add of every matrix
// product, attention products included, elementwise work not counted. Training uses the accounting's own
// training figure, flop_counts::training = forward + backward, where the backward of every product costs two
// products except the patch embedding's (the image needs no gradient): 3 × forward − patch embedding. It is not
// 3 × forward; the difference is the patch embedding's input gradient (0.4 % of ViT-B/16's training FLOPs).
// With rematerialisation (vit::set_rematerialization) a step also runs the blocks' forward again:
// flop_counts::training_with(rematerialization::blocks) = training + blocks. That is work the hardware does
// (what device-hours cost), not model FLOPs: MFU's numerator stays flop_counts::training, as ViT-22B and PaLM
// count it (their "hardware FLOPs utilisation" is the one with the recomputation).
//
// For a training loop: keep the images seen so far and call
//   vitscale::explore::cumulative_training_flops(Shape::flops(resolution), images_seen)
// (or training_flops_per_image + multiply); its result is the `compute` column a scaling-law fit
// (explore/scaling_law.hpp) takes.

#include <vitscale/config/accounting.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/explore/step_model.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace vitscale {
namespace explore {

// The arithmetic a run's GEMMs use: the precision policy's gemm_type (bf16 for bf16_mixed and bf16_pure).
enum class numeric { bf16, fp32 };

constexpr const char* to_string(numeric n) { return n == numeric::bf16 ? "bf16" : "fp32"; }

// An accelerator as its vendor's data sheet gives it. Peaks are dense (no structured sparsity), per device as
// a framework sees it; 0 where the data sheet gives no figure (asking for it is an error).
struct device {
  std::string_view name;
  double peak_bf16_flops = 0;  // matrix units, bf16 inputs
  double peak_fp32_flops = 0;  // fp32 arithmetic (not TF32)
  double memory_bytes = 0;     // on-package HBM per device
  double link_bytes_per_second = 0;  // per device, both directions of its links to peers; 0: not given here

  constexpr double peak_flops(numeric n) const {
    const double p = n == numeric::bf16 ? peak_bf16_flops : peak_fp32_flops;
    if (!(p > 0))
      vitscale::detail::fail("device ", std::string(name), ": its data sheet gives no dense ", to_string(n),
                             " peak; use the other precision or give a peak by hand");
    return p;
  }
};

namespace devices {
constexpr double GiB = 1024.0 * 1024.0 * 1024.0;
// NVIDIA H100 SXM5 80 GB. NVIDIA H100 Tensor Core GPU data sheet (nvidia.com/en-us/data-center/h100): BF16
// Tensor Core 1,979 TFLOPS "with sparsity", dense is half: 989.4 TFLOP/s; FP32 67 TFLOP/s; 80 GB HBM3;
// NVLink 900 GB/s.
inline constexpr device h100{"H100", 989.4e12, 67e12, 80 * GiB, 900e9};
// NVIDIA A100 SXM4 80 GB. NVIDIA A100 Tensor Core GPU data sheet (nvidia.com/en-us/data-center/a100): BF16
// Tensor Core 312 TFLOP/s (624 with sparsity); FP32 19.5 TFLOP/s; 80 GB HBM2e; NVLink 600 GB/s.
inline constexpr device a100{"A100", 312e12, 19.5e12, 80 * GiB, 600e9};
// AMD Instinct MI250X (one OAM module: two GCDs, which ROCm shows as two GPUs of 64 GB each; halve both peaks
// and memory for one GCD). AMD Instinct MI250X data sheet (amd.com/en/products/accelerators/instinct/mi200/
// mi250x.html): peak BF16 383 TFLOP/s; peak FP32 matrix 95.7 TFLOP/s (vector 47.9); 128 GB HBM2e.
// Infinity Fabric bandwidth between modules depends on the node's wiring: not given here.
inline constexpr device mi250x{"MI250X", 383e12, 95.7e12, 128 * GiB, 0};
// Google Cloud TPU v3, one chip (two TensorCores). cloud.google.com/tpu/docs/v3: 123 TFLOP/s bf16 per chip,
// 32 GiB HBM per chip (16 GiB per TensorCore). The MXUs multiply in bf16; no fp32 peak is published.
inline constexpr device tpu_v3{"TPU v3", 123e12, 0, 32 * GiB, 0};
// One TPU v3 TensorCore: what JAX shows as a device on v3 and what the Scaling ViT paper's 16 GB refers to.
inline constexpr device tpu_v3_core{"TPU v3 core", 61.5e12, 0, 16 * GiB, 0};
// Google Cloud TPU v4, one chip (megacore: one device). cloud.google.com/tpu/docs/v4: 275 TFLOP/s bf16 per
// chip, 32 GiB HBM. Link bandwidth: explore/step_model.hpp's vit22b_paper::ring_bandwidth (a secondary source).
inline constexpr device tpu_v4{"TPU v4", 275e12, 0, 32 * GiB, vit22b_paper::ring_bandwidth};

inline constexpr std::array<const device*, 6> all = {&h100, &a100, &mi250x, &tpu_v3, &tpu_v3_core, &tpu_v4};
}  // namespace devices

// The named device ("H100", "a100", "tpu-v4", "TPU v3 core": case, spaces, '-' and '_' ignored); an error
// listing the names otherwise.
inline const device& find_device(std::string_view name) {
  auto key = [](std::string_view s) {
    std::string k;
    for (char c : s)
      if (c != ' ' && c != '-' && c != '_') k += char(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return k;
  };
  std::string known;
  for (const device* d : devices::all) {
    if (key(d->name) == key(name)) return *d;
    known += (known.empty() ? "" : ", ") + std::string(d->name);
  }
  vitscale::detail::fail("unknown device '", std::string(name), "'; known: ", known);
}

// Training FLOPs per image (forward + backward, the accounting's figure, and the blocks' forward again when
// rematerialising; see the top of this file).
constexpr double training_flops_per_image(const flop_counts& f, rematerialization r = rematerialization::none) {
  return double(f.training_with(r));
}

// Cumulative training FLOPs after `images_seen` images (images_seen >= 0). What a metrics CSV's compute
// column holds after each step.
constexpr double cumulative_training_flops(const flop_counts& f, std::int64_t images_seen,
                                           rematerialization r = rematerialization::none) {
  if (images_seen < 0) vitscale::detail::fail("cumulative_training_flops: images seen must be >= 0, got ", images_seen);
  return training_flops_per_image(f, r) * double(images_seen);
}

// Device-hours to execute `flops` on `d` in `n` arithmetic at model-FLOPs utilisation `mfu` (0 < mfu <= 1):
// flops / (peak · mfu) / 3600. Summed over devices: k devices take 1/k of the wall time each.
constexpr double device_hours(double flops, const device& d, numeric n, double mfu) {
  if (!(mfu > 0) || mfu > 1) vitscale::detail::fail("device_hours: the MFU must be in (0, 1], got ", mfu);
  if (!(flops >= 0)) vitscale::detail::fail("device_hours: FLOPs must be >= 0, got ", flops);
  return flops / (d.peak_flops(n) * mfu) / 3600.0;
}

// The step model's machine for a device: its data-sheet peak, `efficiency` as the GEMM efficiency (the MFU it
// would reach with nothing but GEMMs), and its link bandwidth on both mesh axes.
constexpr machine machine_of(const device& d, numeric n, double efficiency, int chunks = 1) {
  if (!(efficiency > 0) || efficiency > 1)
    vitscale::detail::fail("machine_of: the efficiency must be in (0, 1], got ", efficiency);
  machine m{};
  m.peak_flops = d.peak_flops(n);
  m.gemm_efficiency = efficiency;
  m.model_link_bandwidth = d.link_bytes_per_second;
  m.data_link_bandwidth = d.link_bytes_per_second;
  m.collective_latency = vit22b_paper::collective_latency;  // an assumption (see step_model.hpp)
  m.chunks = chunks;
  return m;
}

// A run's compute and cost through the step model: `steps` steps of `config` on `m`.
struct run_cost {
  double model_flops = 0;   // steps × images × training FLOPs per image
  double wall_hours = 0;    // steps × predicted step time
  double device_hours = 0;  // wall_hours × chips
  double mfu = 0;           // the step model's prediction
};

constexpr run_cost predict_run(const step_config& config, const machine& m, std::int64_t steps) {
  if (steps < 0) vitscale::detail::fail("predict_run: steps must be >= 0, got ", steps);
  const step_prediction p = predict(config, m);
  run_cost r{};
  r.model_flops = double(steps) * p.model_flops;
  r.wall_hours = double(steps) * p.step_seconds / 3600.0;
  r.device_hours = r.wall_hours * p.chips;
  r.mfu = p.mfu;
  return r;
}

}  // namespace explore
}  // namespace vitscale
