#pragma once
// Shape exploration (Scaling ViT §3.6): a grid over depth, width, MLP width and heads at a patch size, with a
// resolution, a global batch, precisions, optimizers and a device mesh, reporting for each point the parameters,
// FLOPs, training memory per device and whether it fits a device's memory, and the step model's step time and
// MFU. Every number comes from the run-time accounting (config/accounting.hpp on a shape_descriptor: the same
// functions the compile-time shapes use), so no shape needs to be compiled.
//
// Memory per device on a mesh data × model: parameters, gradients, the weight copy and the optimizer state are
// replicated over the data axis and split over the model axis exactly as config/sharding.hpp splits ViT-22B's
// parallel block (a classic block cannot be split: model axis 1); activations are those of B/(data·model)
// images (between blocks each model rank holds that many images; inside a parallel block its buffers hold
// model × the rows and 1/model of the columns, the same size). Rematerialisation is an axis of the grid
// (rematerialization::blocks keeps the block inputs and one block's activations, and the step model adds the
// recomputed forward to the step time); no ZeRO-style sharding of the optimizer state.

#include <vitscale/config/accounting.hpp>
#include <vitscale/config/describe.hpp>
#include <vitscale/config/sharding.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/precision.hpp>
#include <vitscale/explore/compute.hpp>
#include <vitscale/explore/step_model.hpp>

#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace vitscale {
namespace explore {

// The precision policies and optimizer state layouts, as run-time choices.
enum class precision_kind { fp32, bf16_mixed, bf16_pure };
enum class optimizer_kind { adam, adam_bf16_momentum, adafactor, sgd_momentum, lion };

constexpr precision_bytes bytes_of(precision_kind p) {
  switch (p) {
    case precision_kind::fp32: return precision_bytes::of<precision::fp32>();
    case precision_kind::bf16_mixed: return precision_bytes::of<precision::bf16_mixed>();
    case precision_kind::bf16_pure: return precision_bytes::of<precision::bf16_pure>();
  }
  return {};
}
constexpr numeric gemm_numeric(precision_kind p) { return bytes_of(p).gemm == 2 ? numeric::bf16 : numeric::fp32; }

constexpr optim::state_layout_ref layout_of(optimizer_kind o) {
  switch (o) {
    case optimizer_kind::adam: return optim::state_layout_ref::of<optim::adam>();
    case optimizer_kind::adam_bf16_momentum: return optim::state_layout_ref::of<optim::adam_bf16_momentum>();
    case optimizer_kind::adafactor: return optim::state_layout_ref::of<optim::adafactor>();
    case optimizer_kind::sgd_momentum: return optim::state_layout_ref::of<optim::sgd_momentum>();
    case optimizer_kind::lion: return optim::state_layout_ref::of<optim::lion>();
  }
  return {};
}

constexpr const char* to_string(precision_kind p) {
  switch (p) {
    case precision_kind::fp32: return "fp32";
    case precision_kind::bf16_mixed: return "bf16-mixed";
    case precision_kind::bf16_pure: return "bf16-pure";
  }
  return "?";
}
constexpr const char* to_string(optimizer_kind o) {
  switch (o) {
    case optimizer_kind::adam: return "adam";
    case optimizer_kind::adam_bf16_momentum: return "adam-bf16m";
    case optimizer_kind::adafactor: return "adafactor";
    case optimizer_kind::sgd_momentum: return "sgd-momentum";
    case optimizer_kind::lion: return "lion";
  }
  return "?";
}

inline precision_kind parse_precision(std::string_view s) {
  for (precision_kind p : {precision_kind::fp32, precision_kind::bf16_mixed, precision_kind::bf16_pure})
    if (s == to_string(p)) return p;
  vitscale::detail::fail("unknown precision '", std::string(s), "'; known: fp32, bf16-mixed, bf16-pure");
}
inline optimizer_kind parse_optimizer(std::string_view s) {
  for (optimizer_kind o : {optimizer_kind::adam, optimizer_kind::adam_bf16_momentum, optimizer_kind::adafactor,
                           optimizer_kind::sgd_momentum, optimizer_kind::lion})
    if (s == to_string(o)) return o;
  vitscale::detail::fail("unknown optimizer '", std::string(s),
                         "'; known: adam, adam-bf16m (Adam with a bf16 first moment), adafactor (bf16 momentum, "
                         "factored second moment), sgd-momentum, lion");
}
inline rematerialization parse_remat(std::string_view s) {
  for (rematerialization r : {rematerialization::none, rematerialization::blocks})
    if (s == to_string(r)) return r;
  vitscale::detail::fail("unknown rematerialisation '", std::string(s),
                         "'; known: none (keep every block's activations), blocks (recompute them in backward)");
}


// Training memory per device of `d` on `grid` for a global batch (see the top of this file).
inline memory_bytes training_memory_per_device(const shape_descriptor& d, precision_kind precision,
                                               optimizer_kind optimizer, std::int64_t batch, int resolution,
                                               const mesh& grid, rematerialization remat = rematerialization::none) {
  if (grid.data < 1 || grid.model < 1)
    vitscale::detail::fail("mesh axes must be at least 1 (got data ", grid.data, ", model ", grid.model, ")");
  if (batch < 1 || batch % grid.chips() != 0)
    vitscale::detail::fail("the batch of ", batch, " images does not split evenly over ", grid.chips(), " devices");
  if (grid.model > 1 && (d.block != block_kind::parallel || d.known_heads() % grid.model != 0 ||
                         d.mlp_dim % grid.model != 0))
    vitscale::detail::fail("a model axis of ", grid.model, " splits ViT-22B's parallel block by heads and MLP units: "
                           "it needs a parallel block and heads (", d.known_heads(), ") and MLP width (", d.mlp_dim,
                           ") divisible by it");
  struct sharded_memory {
    const shape_descriptor* shape;
    model_shard shard;
    vitscale::detail::memory_summer inner;
    void add(const tensor_info& t) { inner.add(shard_tensor(shard_split_of(*shape, t), t, shard)); }
  } sink{&d, model_shard{grid.model, 0}, vitscale::detail::memory_summer{bytes_of(precision), layout_of(optimizer), parameter_ema::off}};
  vitscale::detail::visit_tensors(d, sink, resolution);
  memory_bytes m = sink.inner.m;
  m.activations = batch / grid.chips() * activation_bytes_per_image(d, bytes_of(precision), resolution, remat);
  return m;
}

// One point of the grid.
struct grid_point {
  shape_descriptor shape{};
  int resolution = 0;
  std::int64_t batch = 0;  // global
  mesh grid{};
  precision_kind precision = precision_kind::bf16_mixed;
  optimizer_kind optimizer = optimizer_kind::adafactor;
  rematerialization remat = rematerialization::none;
  param_counts params{};
  flop_counts flops{};          // per image
  memory_bytes memory{};        // per device
  double device_memory = 0;     // bytes
  bool fits = false;            // memory.total() <= device_memory
  step_prediction step{};       // per step, the whole mesh
};

// What a grid spans. Each list is an axis; a shape whose width the heads do not divide is skipped (counted).
struct grid_spec {
  std::vector<int> depths{12};
  std::vector<int> widths{768};
  std::vector<int> mlp_dims{3072};
  std::vector<int> heads{12};
  std::vector<precision_kind> precisions{precision_kind::bf16_mixed};
  std::vector<optimizer_kind> optimizers{optimizer_kind::adafactor};
  std::vector<rematerialization> remats{rematerialization::none};
  shape_descriptor base = describe_base();  // everything else of the shape (patch, pooling, classes, ...)
  int resolution = 224;
  std::int64_t batch = 1;  // global
  mesh grid{};
  const device* accelerator = &devices::h100;
  double device_memory = 0;  // bytes; 0: the device's
  double efficiency = 0.5;   // assumed GEMM efficiency for the step model (its MFU on one device)

  // A ViT-B/16-like descriptor with every field known: class-token pooling, learned position embedding, 1000
  // classes, 3 channels.
  static shape_descriptor describe_base() {
    shape_descriptor d{};
    d.depth = 12, d.width = 768, d.heads = 12, d.mlp_dim = 3072, d.patch = 16, d.channels = 3, d.classes = 1000;
    d.norm_centered = true, d.cls_posemb = true, d.mlp_activation = activation::gelu_erf, d.resolution = 224;
    return d;
  }
};

// One point: every figure for shape `d` under the rest of `spec` (its lists ignored).
inline grid_point evaluate(const shape_descriptor& d, precision_kind precision, optimizer_kind optimizer,
                           const grid_spec& spec, rematerialization remat = rematerialization::none) {
  d.check();
  if (spec.accelerator == nullptr) vitscale::detail::fail("shape grid: no device given");
  if (spec.device_memory < 0) vitscale::detail::fail("shape grid: device memory must be >= 0, got ", spec.device_memory);
  grid_point g{};
  g.shape = d;
  g.resolution = spec.resolution;
  g.batch = spec.batch;
  g.grid = spec.grid;
  g.precision = precision;
  g.optimizer = optimizer;
  g.remat = remat;
  g.params = count_params(d, spec.resolution);
  g.flops = count_flops(d, spec.resolution);
  g.memory = training_memory_per_device(d, precision, optimizer, spec.batch, spec.resolution, spec.grid, remat);
  g.device_memory = spec.device_memory > 0 ? spec.device_memory : spec.accelerator->memory_bytes;
  g.fits = double(g.memory.total()) <= g.device_memory;
  if (spec.grid.chips() > 1 && !(spec.accelerator->link_bytes_per_second > 0))
    vitscale::detail::fail("shape grid: a mesh of ", spec.grid.chips(), " devices needs a link bandwidth, and ",
                           std::string(spec.accelerator->name), " has none here");
  step_config c{};
  c.shape = step_shape::of(d, spec.resolution);
  c.images = spec.batch;
  c.grid = spec.grid;
  const precision_bytes pb = bytes_of(precision);
  c.activation_bytes = pb.act;
  c.gradient_bytes = pb.grad;
  c.reduction_bytes = 4;
  c.remat = remat;
  g.step = predict(c, machine_of(*spec.accelerator, gemm_numeric(precision), spec.efficiency));
  return g;
}

struct grid_result {
  std::vector<grid_point> points;
  int skipped = 0;  // shapes whose width is not a multiple of the heads
};

// The whole grid, depth-major (depth, width, MLP, heads, precision, optimizer, rematerialisation).
inline grid_result explore_grid(const grid_spec& spec) {
  for (const auto* axis : {&spec.depths, &spec.widths, &spec.mlp_dims, &spec.heads})
    if (axis->empty()) vitscale::detail::fail("shape grid: every axis (depth, width, MLP, heads) needs a value");
  if (spec.precisions.empty() || spec.optimizers.empty() || spec.remats.empty())
    vitscale::detail::fail("shape grid: at least one precision, one optimizer and one rematerialisation choice");
  grid_result r;
  for (int depth : spec.depths)
    for (int width : spec.widths)
      for (int mlp : spec.mlp_dims)
        for (int heads : spec.heads) {
          shape_descriptor d = spec.base;
          d.depth = depth, d.width = width, d.mlp_dim = mlp, d.heads = heads;
          if (heads >= 1 && width >= 1 && width % heads != 0) {
            ++r.skipped;
            continue;
          }
          for (precision_kind p : spec.precisions)
            for (optimizer_kind o : spec.optimizers)
              for (rematerialization m : spec.remats) r.points.push_back(evaluate(d, p, o, spec, m));
        }
  return r;
}

// CSV for a plot script: one header line, one row per point; memory in bytes, time in seconds.
inline std::string csv_header() {
  return "depth,width,mlp_dim,heads,patch,resolution,tokens,batch,mesh_data,mesh_model,precision,optimizer,"
         "remat,params,backbone_params,forward_flops_per_image,training_flops_per_image,mem_parameters,mem_weight_copy,"
         "mem_gradients,mem_optimizer_state,mem_activations,mem_total_per_device,device_memory,fits,step_seconds,mfu";
}
inline std::string csv_row(const grid_point& g) {
  char buf[640];
  const memory_bytes& m = g.memory;
  std::snprintf(buf, sizeof buf,
                "%d,%d,%d,%d,%d,%d,%d,%lld,%d,%d,%s,%s,%s,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%.0f,%d,%.6g,%.6g",
                g.shape.depth, g.shape.width, g.shape.mlp_dim, g.shape.known_heads(), g.shape.patch, g.resolution,
                g.shape.tokens(g.resolution), static_cast<long long>(g.batch), g.grid.data, g.grid.model,
                to_string(g.precision), to_string(g.optimizer), to_string(g.remat), static_cast<long long>(g.params.total),
                static_cast<long long>(g.params.backbone), static_cast<long long>(g.flops.forward),
                static_cast<long long>(g.flops.training), static_cast<long long>(m.parameters),
                static_cast<long long>(m.weight_copy), static_cast<long long>(m.gradients),
                static_cast<long long>(m.optimizer_state), static_cast<long long>(m.activations),
                static_cast<long long>(m.total()), g.device_memory, g.fits ? 1 : 0, g.step.step_seconds, g.step.mfu);
  return buf;
}
inline void write_csv(std::ostream& out, const grid_result& r) {
  out << csv_header() << '\n';
  for (const grid_point& g : r.points) out << csv_row(g) << '\n';
}

}  // namespace explore
}  // namespace vitscale
