// A sharded training step, modelled (include/vitscale/explore/step_model.hpp): ViT-22B on TPU v4 against the
// paper's reported utilisation, for each model-axis size and with and without chunked overlap; then, with
// --gemm-gflops and --link-gbps, a prediction for this machine from measured numbers.
//   step_model
//   step_model --gemm-gflops 480 --peak-gflops 540 --link-gbps 5 --latency-us 20 --images 16 --model 2
#include <vitscale/config/presets.hpp>
#include <vitscale/explore/step_model.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

namespace ex = vitscale::explore;
namespace paper = vitscale::explore::vit22b_paper;

// Any error ends the program with its message and status 1 (the function-try-block), never an abort.
int main(int argc, char** argv) try {
  CLI::App app{"Model of a sharded ViT training step (ViT-22B layout)"};
  double gemm_gflops = 0, peak_gflops = 540, link_gbps = 0, latency_us = 20;
  int images = 16, data = 1, model = 2, chunks = 4;
  app.add_option("--gemm-gflops", gemm_gflops, "measured single-rank GEMM throughput (GFLOP/s); 0: skip");
  app.add_option("--peak-gflops", peak_gflops, "nominal peak per rank (GFLOP/s), MFU's denominator");
  app.add_option("--link-gbps", link_gbps, "measured per-rank ring bandwidth (GB/s)");
  app.add_option("--latency-us", latency_us, "measured latency of one collective call (us)");
  app.add_option("--images", images, "global batch for the measured machine");
  app.add_option("--data", data, "data axis for the measured machine");
  app.add_option("--model", model, "model axis for the measured machine");
  app.add_option("--chunks", chunks, "chunks per model-axis collective for the measured machine");
  CLI11_PARSE(app, argc, argv);

  constexpr ex::step_shape s = ex::step_shape::of<vitscale::presets::vit_22b>(paper::resolution);
  std::printf("ViT-22B on %d TPU v4 chips, %lld images of %d tokens per step; GEMM efficiency %.2f, ring %.0f GB/s,"
              " latency %.0f us\n",
              paper::chips, static_cast<long long>(paper::images), s.tokens, paper::gemm_efficiency,
              paper::ring_bandwidth / 1e9, paper::collective_latency * 1e6);
  std::printf("reported: MFU %.1f%%, %.0f tokens/s per chip\n\n", 100 * paper::reported_mfu,
              paper::reported_tokens_per_second_per_core);
  std::printf("%s %12s\n", ex::step_prediction::table_header().c_str(), "tok/s/chip");
  for (int mp : {2, 4, 8, 16}) {
    for (int k : {1, mp}) {
      const ex::step_prediction r = ex::predict(paper::config(s, mp), paper::tpu_v4(k));
      char label[64];
      std::snprintf(label, sizeof label, "%d x %d, %d chunk%s", paper::chips / mp, mp, k, k == 1 ? "" : "s");
      std::printf("%s %12.0f\n", r.table_row(label).c_str(), r.tokens_per_second_per_chip());
    }
  }
  std::printf("\nmodel axis 16, chunked:\n%s",
              ex::predict(paper::config(s, 16), paper::tpu_v4(16)).to_string().c_str());

  if (gemm_gflops > 0) {
    ex::measured_machine here{};
    here.peak_flops = peak_gflops * 1e9;
    here.gemm_flops_per_second = gemm_gflops * 1e9;
    here.link_bytes_per_second = link_gbps * 1e9;
    here.latency_seconds = latency_us * 1e-6;
    here.chunks = chunks;
    // A model small enough for this machine: ViT-B/16's blocks at 224 px.
    ex::step_config c{};
    c.shape = ex::step_shape::of<vitscale::presets::vit_b16>(224);
    c.images = images;
    c.grid = ex::mesh{data, model};
    c.activation_bytes = 4;  // fp32 here
    std::printf("\nViT-B/16 on this machine (measured numbers):\n%s", ex::predict(c, here).to_string().c_str());
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "step_model: %s\n", e.what());
  return 1;
}
