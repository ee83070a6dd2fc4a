// explore_configs: every preset of the seed papers with its size, cost and the memory of training it,
// all computed at compile time from the shape (nothing is allocated).
//
//   explore_configs [--resolution 224] [--batch 1]
#include <vitscale/vit.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

namespace vs = vitscale;

namespace {

double gib(std::int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

template <class Shape, class Policy, class Optimizer>
double training_gib(std::int64_t batch, int resolution) {
  return gib(vs::training_memory<Shape, Policy, Optimizer>(batch, resolution).total());
}

template <class Shape>
void row(std::int64_t batch, int resolution) {
  using fp32 = vs::precision::fp32;
  using mixed = vs::precision::bf16_mixed;
  const std::string name(vs::presets::name<Shape>());
  if (resolution % Shape::patch != 0) {
    std::printf("%-10s (%d px is not a multiple of its patch size %d)\n", name.c_str(), resolution, Shape::patch);
    return;
  }
  const vs::param_counts p = Shape::params(resolution);
  const vs::flop_counts f = Shape::flops(resolution);
  std::printf("%-10s %5d %5d %5d %6d %5d %7d %10.1f %10.1f %10.1f %9.2f %9.2f %9.2f %9.2f\n",
              name.c_str(), Shape::depth, Shape::width, Shape::heads,
              Shape::mlp_dim, Shape::patch, Shape::tokens(resolution), p.total / 1e6, p.backbone / 1e6,
              f.forward / 1e9, training_gib<Shape, fp32, vs::optim::adam>(batch, resolution),
              training_gib<Shape, fp32, vs::optim::adafactor>(batch, resolution),
              training_gib<Shape, mixed, vs::optim::adam>(batch, resolution),
              training_gib<Shape, mixed, vs::optim::adafactor>(batch, resolution));
}

template <class... Shapes>
void table(vs::type_list<Shapes...>, std::int64_t batch, int resolution) {
  (row<Shapes>(batch, resolution), ...);
}

}  // namespace

// Any error ends the program with its message and status 1 (the function-try-block), never an abort.
int main(int argc, char** argv) try {
  CLI::App app{"The seed papers' ViT presets: parameters, FLOPs and training memory"};
  int resolution = 224;
  std::int64_t batch = 1;
  app.add_option("-r,--resolution", resolution,
                 "image side in pixels; presets whose patch size does not divide it are skipped (224 and 448 suit all)")
      ->check(CLI::PositiveNumber);
  app.add_option("-b,--batch", batch, "images per training step")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  std::printf("vitscale %d.%d.%d — presets at %d px; training memory at batch %lld "
              "(parameters, gradients, optimizer state, activations kept for backward)\n\n",
              VITSCALE_VERSION_MAJOR, VITSCALE_VERSION_MINOR, VITSCALE_VERSION_PATCH, resolution,
              static_cast<long long>(batch));
  std::printf("%-10s %5s %5s %5s %6s %5s %7s %10s %10s %10s %9s %9s %9s %9s\n", "model", "depth", "width", "heads",
              "mlp", "patch", "tokens", "params(M)", "backbone", "GFLOPs", "Adam", "Adafact.", "Adam", "Adafact.");
  std::printf("%-10s %5s %5s %5s %6s %5s %7s %10s %10s %10s %19s %19s\n", "", "", "", "", "", "", "", "", "(M)",
              "forward", "fp32 (GiB)", "bf16-mixed (GiB)");
  table(vs::presets::all{}, batch, resolution);
  std::printf("\nGFLOPs: 2 per multiply-add of every matrix product, attention included. Backbone: patch and\n"
              "position embeddings (no class-token entry), blocks and final norm, as the Scaling ViT table.\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "explore_configs: %s\n", e.what());
  return 1;
}
