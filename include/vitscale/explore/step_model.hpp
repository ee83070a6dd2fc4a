#pragma once
// A model of one sharded training step: FLOPs, bytes on each mesh axis, compute and communication time,
// the part of communication that chunking hides, step time and MFU, per chip.
//
// The layout modelled is ViT-22B's (Dehghani et al. 2023) as this library shards it:
// - Devices form a mesh data × model. The global batch is split over the data axis; inside a data group the
//   residual stream is split over the model axis by images (each model rank holds B/(d·m) images between
//   blocks). Embedding, final norm, pooling, head and loss run on those local images with replicated
//   parameters.
// - In a block, each input product (qkv and MLP-in; fused into one in the parallel block) is split over the
//   model axis by output features: its input, the LayerNorm output of the group's T tokens, is all-gathered.
//   Each output product (attention-out, MLP-out) is split by input features: its partial output [T, D] is
//   reduce-scattered. Per such pair and step: forward = all-gather [T, D] + reduce-scatter [T, D];
//   backward = all-gather of the output gradient, all-gather of the LayerNorm output again (recomputed, not
//   stored) and reduce-scatter of the input gradient. A parallel block has one pair, a classic block two.
//   Gathers move activation-type elements, reduce-scatters fp32 partial sums.
// - Gradients: sharded tensors are all-reduced over the data axis; replicated ones (norms, out biases,
//   embedding, head) over the model axis and then over the data axis.
//
// Time (per chip; every formula is per chip and per step):
// - compute: GEMM FLOPs / (peak · gemm_efficiency), attention FLOPs / (peak · attention_efficiency).
//   Elementwise work (norms, softmax, GELU, the optimizer) is not timed: the model is optimistic by that much.
// - a ring collective over p ranks moves (p−1)/p of the full buffer per chip (all-gather, reduce-scatter)
//   or 2(p−1)/p (all-reduce), at the axis's link bandwidth, plus `latency` per call.
// - overlap: each collective is cut into k chunks; a chunk's gather overlaps the GEMM of the previous chunk
//   (or a chunk's reduce-scatter the GEMM of the next). With c the time of one chunk's collective and g the
//   GEMM it pairs with, the pipeline takes c + (k−1)·max(c, g/k) + g, so the exposed part is
//   c + (k−1)·max(0, c − g/k): the first gather (last reduce-scatter) is never hidden, and k = 1 hides
//   nothing. Pairings: forward gather → in-product; out-product → forward reduce-scatter; backward
//   output-gradient gather → both out-product gradients (2 GEMMs); LayerNorm re-gather → in-product weight
//   gradient; in-product input gradient → backward reduce-scatter.
// - the gradient all-reduce of a block overlaps the backward of the blocks before it, up to their compute
//   time; the last block to finish backward (block 0) and the non-block parameters are exposed.
// - the two axes are assumed to use separate links (no contention), as on a 2-D or 3-D torus.
//
// MFU counts model FLOPs as this library's accounting does (config/accounting.hpp): every matrix product,
// attention products included, training = 3 × forward (minus the patch embedding's input gradient), no
// rematerialisation — ViT-22B's convention. Without rematerialisation no product is recomputed (only LayerNorm,
// whose FLOPs are not counted), so executed FLOPs equal model FLOPs; with it (step_config::remat) each block's
// forward runs again in backward — its products and its forward collectives — which costs time but adds no
// model FLOPs, so MFU falls by the recomputation's share.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vitscale/config/accounting.hpp>
#include <vitscale/config/describe.hpp>
#include <vitscale/config/options.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/error.hpp>

namespace vitscale {
namespace explore {

// A transformer's shape in run-time numbers: enough to describe a model that has no preset, or one too
// large to instantiate. Counts are for the whole model; FLOPs are forward FLOPs for one image.
struct step_shape {
  int depth = 1;
  int width = 1;  // D
  int heads = 1;
  int mlp_dim = 1;  // F
  int tokens = 1;   // sequence length through the encoder, per image
  block_kind block = block_kind::parallel;

  std::int64_t block_params = 0;          // every parameter of every block
  std::int64_t block_sharded_params = 0;  // the part split over the model axis (weights, in-product biases)
  std::int64_t other_params = 0;          // embedding, final norm, pooling head, classifier: replicated

  std::int64_t block_linear_flops = 0;     // forward, per image, all blocks: the linear maps
  std::int64_t block_attention_flops = 0;  // forward, per image, all blocks: q·kᵀ and p·v
  std::int64_t other_forward_flops = 0;    // per image: patch embedding, head (run on local images)
  std::int64_t other_training_flops = 0;   // per image, forward + backward of the same

  constexpr int head_dim() const { return width / heads; }
  constexpr std::int64_t params() const { return block_params + other_params; }
  // Training FLOPs per image, the count MFU is taken against.
  constexpr std::int64_t training_flops_per_image() const {
    return 3 * (block_linear_flops + block_attention_flops) + other_training_flops;
  }

  // A bare encoder by numbers: blocks only (no embedding or head: give other_* by hand if they matter).
  // Parameters: the weight matrices (all sharded) plus LayerNorm scales and biases and the linear maps'
  // biases, as a ViT with biases has them; FLOPs from the library's accounting.
  static constexpr step_shape encoder(int depth, int width, int heads, int mlp_dim, int tokens,
                                      block_kind block = block_kind::parallel) {
    if (depth < 1 || width < 1 || heads < 1 || mlp_dim < 1 || tokens < 1)
      vitscale::detail::fail("step_shape::encoder: depth, width, heads, MLP width and tokens must be positive (got ",
                             depth, ", ", width, ", ", heads, ", ", mlp_dim, ", ", tokens, ")");
    if (width % heads != 0)
      vitscale::detail::fail("step_shape::encoder: width ", width, " is not a multiple of the number of heads ", heads);
    step_shape s{};
    s.depth = depth, s.width = width, s.heads = heads, s.mlp_dim = mlp_dim, s.tokens = tokens, s.block = block;
    const std::int64_t D = width, F = mlp_dim, L = depth;
    const std::int64_t matrices = D * (3 * D) + D * D + 2 * D * F;
    const std::int64_t in_biases = 3 * D + F;                                                 // split with outputs
    const std::int64_t replicated = (block == block_kind::parallel ? 2 * D : 4 * D) + 2 * D;  // norms, out biases
    s.block_sharded_params = L * (matrices + in_biases);
    s.block_params = L * (matrices + in_biases + replicated);
    s.block_linear_flops = L * vitscale::block_linear_flops(tokens, D, F);
    s.block_attention_flops = L * vitscale::block_attention_flops(tokens, D);
    return s;
  }

  // The same numbers from a shape (a run-time descriptor, every field known), through its parameter table and
  // FLOP count (config/accounting.hpp).
  static constexpr step_shape of(const shape_descriptor& d, int resolution) {
    const int tokens = d.tokens(resolution);
    step_shape s = encoder(d.depth, d.width, d.known_heads(), d.mlp_dim, tokens, d.block);
    const param_counts p = count_params(d, resolution);
    // Products split by output features carry their bias with them; output products' biases are added once,
    // after the reduce-scatter, so they stay replicated.
    struct sharded_sum {
      std::int64_t n = 0;
      constexpr void add(const tensor_info& t) {
        if (t.part != component::block) return;
        const bool in_bias = t.name == std::string_view("attn.qkv.bias") ||
                             t.name == std::string_view("mlp.fc1.bias") || t.name == std::string_view("in_proj.bias") ||
                             t.name == std::string_view("mlp_bias");
        if (t.role == tensor_role::weight || (t.role == tensor_role::bias && in_bias)) n += t.numel();
      }
    } sharded;
    vitscale::detail::visit_tensors(d, sharded, resolution);
    s.block_params = p.blocks;
    s.block_sharded_params = sharded.n;
    s.other_params = p.total - p.blocks;
    const flop_counts f = count_flops(d, resolution);
    // count_flops gives the blocks as one number; the attention products are split out with the same formula
    // it uses, and the linear maps are the rest.
    s.block_attention_flops = std::int64_t(d.depth) * vitscale::block_attention_flops(tokens, d.width);
    s.block_linear_flops = f.blocks - s.block_attention_flops;
    s.other_forward_flops = f.forward - f.blocks;
    s.other_training_flops = f.training - 3 * f.blocks;
    return s;
  }

  // The same from a compile-time shape.
  template <class Shape>
  static constexpr step_shape of(int resolution = Shape::resolution) {
    return of(describe<Shape>(), resolution);
  }
};

struct mesh {
  int data = 1;   // d: replicas of the model, each with B/d images
  int model = 1;  // m: ranks sharing one replica's blocks
  constexpr int chips() const { return data * model; }
};

// What a chip can do. Bandwidths are what one chip sustains in a ring collective along that axis
// (for a bidirectional torus ring: both directions of the links the axis uses).
struct machine {
  double peak_flops = 0;            // per chip, in the GEMM precision
  double gemm_efficiency = 1;       // achieved fraction of peak in the block GEMMs and the rest
  double attention_efficiency = 0;  // the same for the attention products; 0: as gemm_efficiency
  double model_link_bandwidth = 0;  // bytes/s per chip along the model axis
  double data_link_bandwidth = 0;   // bytes/s per chip along the data axis
  double collective_latency = 0;    // seconds per collective call (each chunk is a call)
  int chunks = 1;                   // overlap granularity of the model-axis collectives

  constexpr double gemm_rate() const { return peak_flops * gemm_efficiency; }
  constexpr double attention_rate() const {
    return peak_flops * (attention_efficiency > 0 ? attention_efficiency : gemm_efficiency);
  }
};

// Numbers measured on a machine, turned into a machine description: MFU is then relative to `peak_flops`
// and the GEMM efficiency is measured / peak. Both axes use the same measured link (shared memory MPI).
struct measured_machine {
  double peak_flops = 0;                  // the chip's (or the process's cores') nominal peak
  double gemm_flops_per_second = 0;       // measured single-rank GEMM throughput on block-sized products
  double attention_flops_per_second = 0;  // measured attention throughput; 0: as the GEMMs
  double link_bytes_per_second = 0;       // measured per-rank bandwidth of a ring all-gather
  double latency_seconds = 0;             // measured time of a tiny collective
  int chunks = 1;

  constexpr machine to_machine() const {
    if (!(peak_flops > 0) || !(gemm_flops_per_second > 0))
      vitscale::detail::fail("measured_machine: peak and measured GEMM throughput must be positive (got ", peak_flops,
                             " and ", gemm_flops_per_second, " FLOP/s)");
    machine m{};
    m.peak_flops = peak_flops;
    m.gemm_efficiency = gemm_flops_per_second / peak_flops;
    m.attention_efficiency = attention_flops_per_second > 0 ? attention_flops_per_second / peak_flops : 0;
    m.model_link_bandwidth = link_bytes_per_second;
    m.data_link_bandwidth = link_bytes_per_second;
    m.collective_latency = latency_seconds;
    m.chunks = chunks;
    return m;
  }
};

struct step_config {
  step_shape shape{};
  std::int64_t images = 1;  // global batch per step
  mesh grid{};
  int activation_bytes = 2;  // element of a gathered activation or activation gradient
  int gradient_bytes = 4;    // element of a parameter gradient in the data-axis all-reduce
  int reduction_bytes = 4;   // element of a reduce-scattered partial sum
  // Rematerialisation (config/activations.hpp): backward runs each block's forward again first — its products
  // and, on a model axis, its two collectives per sub-block. Model FLOPs (MFU's numerator) do not count it.
  rematerialization remat = rematerialization::none;
};

// Everything per chip and per step unless the name says otherwise.
struct step_prediction {
  int chips = 1;
  std::int64_t images = 0;
  std::int64_t tokens = 0;  // global, per step

  double model_flops = 0;  // the whole mesh: images × training FLOPs per image (MFU's numerator)
  double gemm_flops = 0;   // block linear maps
  double attention_flops = 0;
  double other_flops = 0;  // embedding and head on the local images
  constexpr double flops() const { return gemm_flops + attention_flops + other_flops; }

  double model_axis_bytes = 0;  // sent (= received) by one chip
  double data_axis_bytes = 0;

  double gemm_seconds = 0;
  double attention_seconds = 0;
  double other_seconds = 0;
  constexpr double compute_seconds() const { return gemm_seconds + attention_seconds + other_seconds; }

  // Communication, end to end as if nothing overlapped, in two streams: the blocks' activation collectives
  // (model axis), and gradient synchronisation (data axis, plus the model-axis all-reduce of replicated
  // tensors' gradients, whose bytes are counted in model_axis_bytes).
  double model_comm_seconds = 0;
  double gradient_comm_seconds = 0;
  double model_exposed_seconds = 0;
  double gradient_exposed_seconds = 0;
  constexpr double comm_seconds() const { return model_comm_seconds + gradient_comm_seconds; }
  constexpr double exposed_seconds() const { return model_exposed_seconds + gradient_exposed_seconds; }
  constexpr double hidden_seconds() const { return comm_seconds() - exposed_seconds(); }

  double step_seconds = 0;
  double mfu = 0;  // model_flops / (step_seconds · chips · peak)

  constexpr double images_per_second() const { return step_seconds > 0 ? images / step_seconds : 0; }
  constexpr double tokens_per_second_per_chip() const { return step_seconds > 0 ? tokens / step_seconds / chips : 0; }

  // A labelled multi-line summary.
  std::string to_string() const {
    char buf[1536];
    std::snprintf(buf, sizeof buf,
                  "chips %d, %lld images (%lld tokens) per step\n"
                  "FLOPs per chip    %.4g (block GEMMs %.4g, attention %.4g, rest %.4g); model FLOPs %.4g\n"
                  "bytes per chip    model axis %.4g, data axis %.4g\n"
                  "compute           %.6g s (GEMMs %.6g, attention %.6g, rest %.6g)\n"
                  "communication     activations %.6g s (exposed %.6g), gradients %.6g s (exposed %.6g)\n"
                  "hidden            %.6g s of %.6g s\n"
                  "step              %.6g s, %.4g images/s, %.4g tokens/s per chip, MFU %.2f%%\n",
                  chips, static_cast<long long>(images), static_cast<long long>(tokens), flops(), gemm_flops,
                  attention_flops, other_flops, model_flops, model_axis_bytes, data_axis_bytes, compute_seconds(),
                  gemm_seconds, attention_seconds, other_seconds, model_comm_seconds, model_exposed_seconds,
                  gradient_comm_seconds, gradient_exposed_seconds, hidden_seconds(), comm_seconds(), step_seconds,
                  images_per_second(), tokens_per_second_per_chip(), 100 * mfu);
    return buf;
  }

  // One row of a table; `table_header` names the columns.
  static std::string table_header() {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-24s %7s %10s %10s %10s %10s %10s %10s %7s", "configuration", "chips", "compute s",
                  "act. s", "exp. act", "grad s", "exp. grad", "step s", "MFU %");
    return buf;
  }
  std::string table_row(std::string_view label) const {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-24.*s %7d %10.4g %10.4g %10.4g %10.4g %10.4g %10.4g %7.2f",
                  static_cast<int>(label.size()), label.data(), chips, compute_seconds(), model_comm_seconds,
                  model_exposed_seconds, gradient_comm_seconds, gradient_exposed_seconds, step_seconds, 100 * mfu);
    return buf;
  }
};

namespace detail {

// Per-chip bytes of ring collectives over p ranks on a buffer of `bytes` (the whole gathered or reduced
// tensor): all-gather and reduce-scatter (p−1)/p, all-reduce 2(p−1)/p.
constexpr double ring_gather_bytes(double bytes, int p) { return p > 1 ? bytes * (p - 1) / p : 0.0; }
constexpr double ring_all_reduce_bytes(double bytes, int p) { return p > 1 ? 2 * bytes * (p - 1) / p : 0.0; }

// Time of a collective moving `bytes` per chip as `calls` calls.
constexpr double collective_seconds(double bytes, int calls, double bandwidth, double latency) {
  if (bytes <= 0) return 0.0;
  return calls * latency + bytes / bandwidth;
}

// Exposed time of a collective of total time `comm` cut into k chunks, pipelined against a GEMM of total
// time `gemm`: c + (k−1)·max(0, c − g/k), with c = comm / k.
constexpr double exposed_chunked(double comm, double gemm, int k) {
  if (comm <= 0) return 0.0;
  const double c = comm / k, g = gemm / k;
  return c + (k - 1) * std::max(0.0, c - g);
}

}  // namespace detail

// The prediction for one step of `config` on `m`.
constexpr step_prediction predict(const step_config& config, const machine& m) {
  const step_shape& s = config.shape;
  const int d = config.grid.data, mp = config.grid.model, chips = config.grid.chips();
  if (d < 1 || mp < 1)
    vitscale::detail::fail("predict: mesh axes must be at least 1 (got data ", d, ", model ", mp, ")");
  if (config.images < 1 || config.images % chips != 0)
    vitscale::detail::fail("predict: the batch of ", config.images, " images does not split evenly over ", chips,
                           " chips (each model rank holds B/(data·model) images between blocks)");
  if (s.heads % mp != 0 || s.mlp_dim % mp != 0)
    vitscale::detail::fail("predict: ", s.heads, " heads and MLP width ", s.mlp_dim,
                           " must both split over a model axis of ", mp);
  if (!(m.peak_flops > 0) || !(m.gemm_efficiency > 0))
    vitscale::detail::fail("predict: the machine needs a positive peak and GEMM efficiency");
  if (m.chunks < 1) vitscale::detail::fail("predict: chunks must be at least 1 (got ", m.chunks, ")");
  if ((mp > 1 && !(m.model_link_bandwidth > 0)) || (d > 1 && !(m.data_link_bandwidth > 0)))
    vitscale::detail::fail("predict: a mesh axis longer than 1 needs a positive link bandwidth");
  if (config.activation_bytes < 1 || config.gradient_bytes < 1 || config.reduction_bytes < 1)
    vitscale::detail::fail("predict: element sizes must be positive");

  step_prediction r{};
  r.chips = chips;
  r.images = config.images;
  r.tokens = config.images * s.tokens;
  r.model_flops = double(config.images) * double(s.training_flops_per_image());

  // FLOPs: the blocks' work is split over every chip; the rest runs on each chip's local images.
  const double local_images = double(config.images) / chips;
  const bool remat = config.remat == rematerialization::blocks;
  const double block_passes = remat ? 4.0 : 3.0;  // forward, backward's two products, the recomputed forward
  r.gemm_flops = local_images * block_passes * double(s.block_linear_flops);
  r.attention_flops = local_images * block_passes * double(s.block_attention_flops);
  r.other_flops = local_images * double(s.other_training_flops);
  r.gemm_seconds = r.gemm_flops / m.gemm_rate();
  r.attention_seconds = r.attention_flops / m.attention_rate();
  r.other_seconds = r.other_flops / m.gemm_rate();

  // Model axis, per block. T = the data group's tokens; one pair of products per sub-block.
  const double T = double(config.images) / d * s.tokens;
  const double D = s.width, F = s.mlp_dim, L = s.depth;
  const double gather = detail::ring_gather_bytes(T * D * config.activation_bytes, mp);
  const double scatter = detail::ring_gather_bytes(T * D * config.reduction_bytes, mp);
  const int k = m.chunks;
  const double t_gather = detail::collective_seconds(gather, k, m.model_link_bandwidth, m.collective_latency);
  const double t_scatter = detail::collective_seconds(scatter, k, m.model_link_bandwidth, m.collective_latency);
  // (FLOPs of the input product, of the output product) per sub-block, forward, per chip.
  struct pair_flops {
    double in, out;
  };
  pair_flops pairs[2]{};
  int n_pairs = 0;
  if (s.block == block_kind::parallel) {
    pairs[n_pairs++] = {2 * T * D * (3 * D + F) / mp, 2 * T * (D + F) * D / mp};
  } else {
    pairs[n_pairs++] = {2 * T * D * (3 * D) / mp, 2 * T * D * D / mp};
    pairs[n_pairs++] = {2 * T * D * F / mp, 2 * T * F * D / mp};
  }
  double block_exposed = 0, block_comm = 0, block_bytes = 0;
  for (int i = 0; i < n_pairs; ++i) {
    const double g_in = pairs[i].in / m.gemm_rate(), g_out = pairs[i].out / m.gemm_rate();
    const double forward_exposed = detail::exposed_chunked(t_gather, g_in, k)       // gather -> in-product
                                   + detail::exposed_chunked(t_scatter, g_out, k);  // out-product -> reduce-scatter
    const int forwards = remat ? 2 : 1;
    block_bytes += forwards * (gather + scatter) + 2 * gather + scatter;
    block_comm += forwards * (t_gather + t_scatter) + 2 * t_gather + t_scatter;
    block_exposed += forwards * forward_exposed
                     + detail::exposed_chunked(t_gather, 2 * g_out, k)  // dY gather -> both out gradients
                     + detail::exposed_chunked(t_gather, g_in, k)       // LN re-gather -> in weight gradient
                     + detail::exposed_chunked(t_scatter, g_in, k);     // in input gradient -> reduce-scatter
  }
  r.model_axis_bytes = L * block_bytes;
  r.model_comm_seconds = L * block_comm;
  r.model_exposed_seconds = L * block_exposed;

  // Gradients. Sharded block tensors: all-reduce over the data axis. Replicated tensors: over the model axis
  // (partial sums of different images), then over the data axis.
  const double gb = config.gradient_bytes;
  const double sharded_per_block = double(s.block_sharded_params) / L / mp * gb;
  const double replicated_per_block = double(s.block_params - s.block_sharded_params) / L * gb;
  const double other = double(s.other_params) * gb;
  const double block_data_bytes =
      detail::ring_all_reduce_bytes(sharded_per_block, d) + detail::ring_all_reduce_bytes(replicated_per_block, d);
  const double block_model_bytes = detail::ring_all_reduce_bytes(replicated_per_block, mp);
  const double other_data_bytes = detail::ring_all_reduce_bytes(other, d);
  const double other_model_bytes = detail::ring_all_reduce_bytes(other, mp);
  r.data_axis_bytes = L * block_data_bytes + other_data_bytes;
  r.model_axis_bytes += L * block_model_bytes + other_model_bytes;
  const int calls = 1;  // one all-reduce per tensor group; not chunked
  const double t_block_sync =
      detail::collective_seconds(block_data_bytes, calls, m.data_link_bandwidth, m.collective_latency) +
      detail::collective_seconds(block_model_bytes, calls, m.model_link_bandwidth, m.collective_latency);
  const double t_other_sync =
      detail::collective_seconds(other_data_bytes, calls, m.data_link_bandwidth, m.collective_latency) +
      detail::collective_seconds(other_model_bytes, calls, m.model_link_bandwidth, m.collective_latency);
  // A block's backward compute (with its recomputed forward), which the next block's gradient sync hides behind.
  const double t_block_backward = ((block_passes - 1) / block_passes) * (r.gemm_seconds + r.attention_seconds) / L;
  r.gradient_comm_seconds = L * t_block_sync + t_other_sync;
  r.gradient_exposed_seconds =
      t_block_sync > 0 ? t_block_sync + (L - 1) * std::max(0.0, t_block_sync - t_block_backward) + t_other_sync
                       : t_other_sync;

  r.step_seconds = r.compute_seconds() + r.model_exposed_seconds + r.gradient_exposed_seconds;
  r.mfu = r.model_flops / (r.step_seconds * chips * m.peak_flops);
  return r;
}

// The same from measured numbers (see measured_machine).
constexpr step_prediction predict(const step_config& config, const measured_machine& measured) {
  return predict(config, measured.to_machine());
}

// ViT-22B's published training run and the TPU v4 numbers used to model it, with where each comes from.
// What the paper reports (Dehghani et al. 2023, arXiv:2302.05442, section 3 "Training infrastructure and
// efficiency"; quoted from the paper as read before, not re-read here — the stored copies this was written
// against did not include that section's text):
//   reported_tokens_per_second_per_core = 1.15k tokens/s per TPU v4 core, forward + backward;
//   reported_mfu = 54.9 % model FLOPs utilisation (PaLM: 46.2 %; ViT-e, data-parallel, same hardware: 44.0 %).
// The two are consistent with each other under this library's FLOP count of the encoder (1150 tokens/s ×
// 3 × 48 blocks' forward FLOPs per token / 275 TFLOP/s = 54.93 %) when a "core" is one chip (a v4 chip's
// two TensorCores act as one device): tests/explore/step_model.cpp checks that, and it pins the FLOP
// convention the paper uses (encoder only, attention products included, no rematerialisation).
// The run: 1024 TPU v4 chips (secondary source: The Decoder, "trained on 1,024 TPU-v4 chips"; not verified in
// the paper text here); global batch 65,536 images (recalled from the paper's section 4.1, "batch size
// 65k"; NOT verified here); 224 px, patch 14, 256 tokens, width 6144, depth 48, 48 heads, MLP 24576 (the
// preset). The mesh shape (model-axis size) is NOT known here: the prediction is given for several.
// TPU v4: 275 TFLOP/s bf16 per chip (cloud.google.com/tpu/docs/v4, "Peak compute per chip 275 teraflops
// (bf16 or int8)"); ICI 400 Gb/s = 50 GB/s per link and direction (glennklockwood.com/garden/processors/TPUv4,
// a secondary source), six links per chip in a 3-D torus: a bidirectional ring along one torus dimension
// gives a chip 2 × 50 GB/s, used for both mesh axes (the data axis may span two dimensions and get more;
// its traffic is small here). Collective latency 10 µs per call: an assumption, not a measurement.
// GEMM efficiency 0.63: not reported for ViT-22B. The nearest published TPU v4 number is Google's MLPerf
// v1.1 open-division 480B/200B transformers, 63 % of peak counting rematerialised FLOPs for the whole step
// (cloud.google.com/blog/topics/tpus/google-showcases-cloud-tpu-v4-pods-for-large-model-training); since
// that includes communication and elementwise work, the GEMMs themselves ran at 63 % or more. It is the
// input the prediction depends on most (MFU scales almost linearly with it).
namespace vit22b_paper {
inline constexpr double reported_mfu = 0.549;
inline constexpr double reported_tokens_per_second_per_core = 1150;
inline constexpr int chips = 1024;
inline constexpr std::int64_t images = 65536;
inline constexpr int resolution = 224;
inline constexpr double tpu_v4_peak_flops = 275e12;
inline constexpr double ici_link_bandwidth = 50e9;  // bytes/s, one link, one direction
inline constexpr double ring_bandwidth = 2 * ici_link_bandwidth;
inline constexpr double collective_latency = 10e-6;  // assumed
inline constexpr double gemm_efficiency = 0.63;      // MLPerf v1.1 TPU v4, a lower bound (see above)

// The run on a mesh (chips / model) × model, bf16 gathers, fp32 reductions and gradients.
constexpr step_config config(const step_shape& shape, int model_axis) {
  step_config c{};
  c.shape = shape;
  c.images = images;
  c.grid = mesh{chips / model_axis, model_axis};
  c.activation_bytes = 2;
  c.gradient_bytes = 4;
  c.reduction_bytes = 4;
  return c;
}
// TPU v4 with the model-axis collectives chunked once per ring step (chunks = model axis), as a
// collective matmul ("asynchronous parallel linear operations") does.
constexpr machine tpu_v4(int chunks, double efficiency = gemm_efficiency) {
  machine m{};
  m.peak_flops = tpu_v4_peak_flops;
  m.gemm_efficiency = efficiency;
  m.model_link_bandwidth = ring_bandwidth;
  m.data_link_bandwidth = ring_bandwidth;
  m.collective_latency = collective_latency;
  m.chunks = chunks;
  return m;
}
}  // namespace vit22b_paper

}  // namespace explore
}  // namespace vitscale
