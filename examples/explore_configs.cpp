// explore_configs: every preset of the seed papers with its size, cost and the memory of training it,
// all computed at compile time from the shape (nothing is allocated); with options, the device-budget
// questions (explore/shape_grid.hpp, explore/compute.hpp), from the same accounting at run time.
//
//   explore_configs [--resolution 224] [--batch 1]
//   explore_configs --device-memory 16 [--optimizer adam,adafactor] [--precision bf16-mixed] [--mesh 1x1]
//       [--remat none,blocks]
//       which presets fit a device of 16 GiB with each optimizer (the Scaling ViT paper's comparison), and with
//       block rematerialisation
//   explore_configs --images-seen 4e9 [--mfu 0.4]
//       training compute of each preset for that many images, in device-hours on each named device
//   explore_configs --grid --depth 12,24 --width 768,1024 --mlp 3072,4096 --heads 12,16 [--patch 16]
//       [--device H100] [--device-memory GIB] [--efficiency 0.5] [--mesh DxM] [--remat none,blocks] [--csv grid.csv]
//       the shape grid: parameters, FLOPs, memory per device, fits, predicted step time and MFU
#include <vitscale/explore/shape_grid.hpp>
#include <vitscale/vit.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

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

namespace ex = vitscale::explore;

template <class... Shapes>
std::vector<std::pair<std::string, vs::shape_descriptor>> preset_descriptors(vs::type_list<Shapes...>) {
  return {{std::string(vs::presets::name<Shapes>()), vs::describe<Shapes>()}...};
}

// Per preset and optimizer: memory per device and whether it fits (the Scaling ViT paper's comparison).
void fits_table(const ex::grid_spec& spec) {
  std::printf("\nTraining memory per device (GiB) on %s, %.1f GiB, mesh %dx%d, global batch %lld (%lld per device), "
              "%d px:\n%-10s %9s",
              std::string(spec.accelerator->name).c_str(), spec.device_memory > 0 ? gib(std::int64_t(spec.device_memory)) : gib(std::int64_t(spec.accelerator->memory_bytes)),
              spec.grid.data, spec.grid.model, static_cast<long long>(spec.batch),
              static_cast<long long>(spec.batch / spec.grid.chips()), spec.resolution, "model", "params(M)");
  const bool remat_axis = spec.remats.size() > 1 || spec.remats[0] != vs::rematerialization::none;
  for (ex::precision_kind p : spec.precisions)
    for (ex::optimizer_kind o : spec.optimizers)
      for (vs::rematerialization m : spec.remats) {
        std::string label = std::string(ex::to_string(o)) + " " + ex::to_string(p);
        if (remat_axis) label += m == vs::rematerialization::blocks ? " remat" : " keep";
        std::printf(" %24s", label.c_str());
      }
  std::printf("\n");
  for (const auto& [name, d] : preset_descriptors(vs::presets::all{})) {
    if (spec.resolution % d.patch != 0 || (spec.grid.model > 1 && d.block != vs::block_kind::parallel)) continue;
    std::printf("%-10s %9.1f", name.c_str(), vs::count_params(d, spec.resolution).total / 1e6);
    for (ex::precision_kind p : spec.precisions)
      for (ex::optimizer_kind o : spec.optimizers)
        for (vs::rematerialization m : spec.remats) {
          const ex::grid_point g = ex::evaluate(d, p, o, spec, m);
          std::printf(" %14.2f %-9s", gib(g.memory.total()), g.fits ? "fits" : "too big");
        }
    std::printf("\n");
  }
  std::printf("Per device: parameters, gradients, GEMM weight copy, optimizer state (adam: two moments in the state "
              "type;\nadafactor: bf16 momentum, factored second moment), activations kept for backward (%s).\n",
              remat_axis ? "keep: every block's; remat: the block inputs and one block's, recomputed in backward"
                         : "every block's; --remat blocks recomputes them in backward");
}

// Training compute of each preset for `images` images: FLOPs and device-hours on each named device at `mfu`.
void compute_table(double images, int resolution, double mfu) {
  std::printf("\nTraining compute for %.4g images at %d px (forward + backward as the accounting counts it), "
              "device-hours at MFU %.2f in bf16:\n%-10s %12s",
              images, resolution, mfu, "model", "FLOPs");
  for (const ex::device* dev : ex::devices::all) std::printf(" %12s", std::string(dev->name).c_str());
  std::printf("\n");
  for (const auto& [name, d] : preset_descriptors(vs::presets::all{})) {
    if (resolution % d.patch != 0) continue;
    const double flops = ex::training_flops_per_image(vs::count_flops(d, resolution)) * images;
    std::printf("%-10s %12.4g", name.c_str(), flops);
    for (const ex::device* dev : ex::devices::all)
      std::printf(" %12.4g", ex::device_hours(flops, *dev, ex::numeric::bf16, mfu));
    std::printf("\n");
  }
}

void grid_table(const ex::grid_spec& spec, const std::string& csv_path) {
  const ex::grid_result r = ex::explore_grid(spec);
  std::printf("\nShape grid, patch %d at %d px, global batch %lld, mesh %dx%d on %s (%.1f GiB), GEMM efficiency "
              "%.2f (%zu points; %d shapes skipped: heads do not divide the width)\n",
              spec.base.patch, spec.resolution, static_cast<long long>(spec.batch), spec.grid.data, spec.grid.model,
              std::string(spec.accelerator->name).c_str(),
              gib(std::int64_t(spec.device_memory > 0 ? spec.device_memory : spec.accelerator->memory_bytes)),
              spec.efficiency, r.points.size(), r.skipped);
  std::printf("%5s %5s %6s %5s %10s %10s %-11s %-12s %-6s %10s %-7s %10s %6s\n", "depth", "width", "mlp", "heads",
              "params(M)", "GFLOPs", "precision", "optimizer", "remat", "GiB/dev", "fits", "step s", "MFU %");
  for (const ex::grid_point& g : r.points)
    std::printf("%5d %5d %6d %5d %10.1f %10.1f %-11s %-12s %-6s %10.2f %-7s %10.4g %6.1f\n", g.shape.depth,
                g.shape.width, g.shape.mlp_dim, *g.shape.heads, g.params.total / 1e6, g.flops.forward / 1e9,
                ex::to_string(g.precision), ex::to_string(g.optimizer), vs::to_string(g.remat), gib(g.memory.total()),
                g.fits ? "yes" : "no", g.step.step_seconds, 100 * g.step.mfu);
  if (!csv_path.empty()) {
    std::ofstream out(csv_path);
    if (!out) vs::detail::fail("cannot write '", csv_path, "'");
    ex::write_csv(out, r);
    if (!out) vs::detail::fail("writing '", csv_path, "' failed");
    std::printf("wrote %s\n", csv_path.c_str());
  }
}

ex::mesh parse_mesh(const std::string& s) {
  const auto x = s.find('x');
  int d = 0, m = 0;
  try {
    if (x == std::string::npos) throw std::invalid_argument(s);
    d = std::stoi(s.substr(0, x));
    m = std::stoi(s.substr(x + 1));
  } catch (const std::exception&) {
    vs::detail::fail("--mesh '", s, "' is not DATAxMODEL (e.g. 8x1)");
  }
  if (d < 1 || m < 1) vs::detail::fail("--mesh '", s, "': both axes must be at least 1");
  return ex::mesh{d, m};
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
  double device_memory_gib = 0, images_seen = 0, mfu = 0.4, efficiency = 0.5;
  std::string device_name = "H100", mesh_text = "1x1", csv_path;
  std::vector<std::string> optimizers{"adam", "adafactor"}, precisions{"bf16-mixed"};
  bool grid = false;
  std::vector<int> depths{12}, widths{768}, mlps{3072}, heads{12};
  int patch = 16;
  app.add_option("--device-memory", device_memory_gib,
                 "memory per device in GiB: which presets fit it with each --optimizer (default: the --device's)")
      ->check(CLI::PositiveNumber);
  app.add_option("--device", device_name, "device: H100, A100, MI250X, TPU-v3, TPU-v3-core, TPU-v4");
  app.add_option("--optimizer", optimizers, "adam, adam-bf16m, adafactor, sgd-momentum, lion")->delimiter(',');
  app.add_option("--precision", precisions, "fp32, bf16-mixed, bf16-pure")->delimiter(',');
  std::vector<std::string> remats{"none"};
  app.add_option("--remat", remats, "none (keep every block's activations), blocks (recompute them in backward: "
                                    "one block's activations, one more forward of the blocks)")->delimiter(',');
  app.add_option("--mesh", mesh_text, "devices as DATAxMODEL (the model axis splits parallel blocks only)");
  app.add_option("--images-seen", images_seen, "training compute of each preset for this many images")
      ->check(CLI::PositiveNumber);
  app.add_option("--mfu", mfu, "assumed model-FLOPs utilisation for --images-seen")->check(CLI::Range(1e-6, 1.0));
  app.add_flag("--grid", grid, "explore a grid of shapes (--depth, --width, --mlp, --heads, --patch)");
  app.add_option("--depth", depths, "grid: depths")->delimiter(',');
  app.add_option("--width", widths, "grid: widths")->delimiter(',');
  app.add_option("--mlp", mlps, "grid: MLP widths")->delimiter(',');
  app.add_option("--heads", heads, "grid: numbers of heads")->delimiter(',');
  app.add_option("--patch", patch, "grid: patch size")->check(CLI::PositiveNumber);
  app.add_option("--efficiency", efficiency, "grid: assumed GEMM efficiency of the step model")
      ->check(CLI::Range(1e-6, 1.0));
  app.add_option("--csv", csv_path, "grid: write the points to this CSV file");
  CLI11_PARSE(app, argc, argv);

  ex::grid_spec spec;
  spec.accelerator = &ex::find_device(device_name);
  spec.device_memory = device_memory_gib * 1024.0 * 1024.0 * 1024.0;
  spec.grid = parse_mesh(mesh_text);
  spec.resolution = resolution;
  spec.batch = batch;
  spec.efficiency = efficiency;
  spec.optimizers.clear();
  for (const std::string& o : optimizers) spec.optimizers.push_back(ex::parse_optimizer(o));
  spec.precisions.clear();
  for (const std::string& p : precisions) spec.precisions.push_back(ex::parse_precision(p));
  spec.remats.clear();
  for (const std::string& r : remats) spec.remats.push_back(ex::parse_remat(r));
  if (spec.remats.empty()) vs::detail::fail("--remat needs at least one of none, blocks");
  if (grid) {
    spec.depths = depths, spec.widths = widths, spec.mlp_dims = mlps, spec.heads = heads;
    spec.base.patch = patch;
    grid_table(spec, csv_path);
    return 0;
  }

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
  if (device_memory_gib > 0 || app.count("--device") > 0 || app.count("--remat") > 0) fits_table(spec);
  if (images_seen > 0) compute_table(images_seen, resolution, mfu);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "explore_configs: %s\n", e.what());
  return 1;
}
