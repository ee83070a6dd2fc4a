// ViT-22B's sharded training step on a data × model mesh of MPI ranks: step time, bytes communicated per
// step, the fraction of the model axis' communication hidden behind the products, and memory per rank.
//
// The model is a ViT-22B-shaped stack scaled down to fit this machine: the same head width (128), MLP ratio
// (4·width), parallel block with QK-norm and no QKV bias; width 512 and 4 heads (ViT-22B: 6144 and 48),
// 256 tokens per image as ViT-22B at 224 px with patch 14 (here 64 px with patch 4), depth 2.
//
//   mpirun -np 4 --oversubscribe ./bench_shard --data 2 --model 2 --images 4 --steps 5
//
// --images is the images per rank; the global batch is images × ranks. Every rank runs OMP_NUM_THREADS
// threads; oversubscribing cores makes ranks share them.
//
// Hidden communication. The model axis' collectives (2 per block forward, 3 per block backward, each cut in
// chunks) run on the communicator's own thread while the products compute. The time a rank spends blocked
// waiting for them is the part that was not hidden. The same collectives are then replayed alone, with no
// products between them: that is what they cost. hidden = 1 − waited / alone.
//
// Gradients. With --overlap-gradients 1 (the default) each block's gradients are summed over the mesh as soon
// as backward has them (shard::gradient_reducer), and "gradient reduce" is the wait left after backward;
// with 0 the whole sum runs after backward.
#include <vitscale/explore/step_model.hpp>
#include <vitscale/model/vit.hpp>
#include <vitscale/shard/mesh.hpp>
#include <vitscale/shard/mpi.hpp>
#include <vitscale/shard/training.hpp>
#include <vitscale/train/loss.hpp>
#include <vitscale/train/optimizers.hpp>

#include "tool_runtime.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

namespace vs = vitscale;
using namespace vitscale::opt;
using space = Kokkos::DefaultHostExecutionSpace;
using clock_type = std::chrono::steady_clock;
using shape = vs::vit_shape<2, 512, 4, 2048, 4,
                            vs::options<parallel_block, pool_gap, qkv_bias<false>, qk_norm<>, classes<1000>, resolution<64>>>;
using model_t = vs::vit<shape, vs::precision::fp32, space>;

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

struct settings {
  int data = 1, model = 1, images = 4, steps = 5, warmup = 1, chunks = 4;
  int overlap_gradients = 1;
  double gflops = 0;         // a rank's measured training throughput (from a 1x1 run): enables the prediction
  double peak_gflops = 270;  // a rank's nominal fp32 peak, for the MFU (benchmarks/RESULTS.md: where 270 is from)
};

// The model axis' collectives of one training step, alone: per block, forward all-gather + reduce-scatter,
// backward two all-gathers and a reduce-scatter, of the same sizes and chunks as the model's.
double replay_model_axis(vs::communicator& axis, std::size_t local_rows, std::size_t chunks) {
  const std::size_t m = static_cast<std::size_t>(axis.size()), D = shape::width;
  std::vector<float> local(local_rows * D, 1.0f), gathered(m * local_rows * D), sum(local_rows * D);
  const vs::model_detail::row_chunks rc{local_rows, chunks, m};
  auto nothing = [](std::size_t) {};
  const auto t = clock_type::now();
  for (int l = 0; l < shape::depth; ++l) {
    vs::model_detail::gather_rows(space(), axis, rc, local.data(), D, gathered.data(), nullptr, nothing);
    vs::model_detail::reduce_scatter_rows(space(), axis, rc, gathered.data(), D, sum.data(), nullptr, nothing);
    vs::model_detail::gather_rows(space(), axis, rc, local.data(), D, gathered.data(), nullptr, nothing);
    vs::model_detail::gather_rows(space(), axis, rc, local.data(), D, gathered.data(), nullptr, nothing);
    vs::model_detail::reduce_scatter_rows(space(), axis, rc, gathered.data(), D, sum.data(), nullptr, nothing);
  }
  return seconds_since(t);
}

struct step_result {
  double step = 0, forward = 0, backward = 0, reduce = 0, optimizer = 0, waited = 0, alone = 0;
  std::size_t model_bytes = 0, data_bytes = 0, collectives = 0;
  double memory_mib = 0, arena_mib = 0;
};

step_result run(vs::communicator& world, const settings& s) {
  const int rank = world.rank();
  const vs::shard::mesh_communicators mesh = vs::shard::make_mesh(world, s.data, s.model);
  vs::communicator& model_axis = *mesh.model_axis;
  vs::communicator& data_axis = *mesh.data_axis;
  model_t model(vs::init::big_vision{0, 0.0f}, shape::resolution, space(), vs::model_parallel{&model_axis, s.chunks});
  typename vs::optimizer::adamw<model_t>::options o;
  o.weight_decay = {0.0001, 0.0001};
  vs::optimizer::adamw<model_t> opt(model, o);

  using mem = space::memory_space;
  Kokkos::View<float****, Kokkos::LayoutRight, mem> images("images", s.images, shape::resolution, shape::resolution, 3);
  Kokkos::View<int*, Kokkos::LayoutRight, mem> labels("labels", s.images);
  Kokkos::View<float**, Kokkos::LayoutRight, mem> dlogits("dlogits", s.images, shape::num_classes);
  {
    std::mt19937 gen(static_cast<std::uint32_t>(rank));
    std::uniform_real_distribution<float> u(-1, 1);
    auto hi = Kokkos::create_mirror_view(images);
    for (std::size_t i = 0; i < hi.size(); ++i) hi.data()[i] = u(gen);
    Kokkos::deep_copy(images, hi);
    auto hl = Kokkos::create_mirror_view(labels);
    for (int i = 0; i < s.images; ++i) hl(i) = static_cast<int>(gen() % shape::num_classes);
    Kokkos::deep_copy(labels, hl);
  }

  // Gradient all-reduce bytes: the replicated tensors over the world, the sharded ones over the data axis.
  std::size_t replicated = 0, sharded = 0;
  for (const auto& t : model.parameters().table())
    (vs::shard_split_of<shape>(t).sharded() ? sharded : replicated) += static_cast<std::size_t>(t.numel());
  const std::size_t data_bytes = (world.size() > 1 ? replicated : 0) * 4 + (data_axis.size() > 1 ? sharded : 0) * 4;

  step_result r;
  const double scale = 1.0 / world.size();
  vs::shard::gradient_reducer<model_t> reducer(model, world, data_axis, scale);
  for (int k = 0; k < s.warmup + s.steps; ++k) {
    if (k == s.warmup) {
      model.communication().reset();
      world.barrier("end of warm-up");
      r = step_result{};
    }
    const auto t0 = clock_type::now();
    auto logits = model.forward(images, static_cast<std::uint32_t>(k));
    vs::loss::softmax_xent(space(), logits, labels, dlogits);
    space().fence();
    const auto t1 = clock_type::now();
    // overlapped: the sums posted block by block during backward, and "reduce" is what is left after it
    model.backward(dlogits, s.overlap_gradients ? &reducer : nullptr);
    space().fence();
    const auto t2 = clock_type::now();
    if (s.overlap_gradients)
      reducer.finish();
    else
      vs::shard::reduce_gradients(model, world, data_axis, scale);
    space().fence();
    const auto t3 = clock_type::now();
    opt.step(1e-4);
    space().fence();
    const auto t4 = clock_type::now();
    auto d = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    r.forward += d(t0, t1), r.backward += d(t1, t2), r.reduce += d(t2, t3), r.optimizer += d(t3, t4);
    r.step += d(t0, t4);
  }
  const double n = s.steps;
  r.forward /= n, r.backward /= n, r.reduce /= n, r.optimizer /= n, r.step /= n;
  r.waited = model.communication().wait_seconds / n;
  r.model_bytes = model.communication().bytes / static_cast<std::size_t>(s.steps);
  r.collectives = model.communication().collectives / static_cast<std::size_t>(s.steps);
  r.data_bytes = data_bytes;
  if (model_axis.size() > 1) {
    const std::size_t rows = static_cast<std::size_t>(s.images) * shape::tokens(shape::resolution);
    const std::size_t chunks = vs::model_detail::chunks_for(s.images, s.chunks);
    replay_model_axis(model_axis, rows, chunks);  // warm-up
    double best = 1e30;
    for (int k = 0; k < 3; ++k) best = std::min(best, replay_model_axis(model_axis, rows, chunks));
    r.alone = best;
  }
  r.arena_mib = (model.parameters().size() * 4.0 + model.gradients().size() * 4.0 + opt.state_bytes() +
                 model.activation_capacity()) / (1024.0 * 1024.0);
  r.memory_mib = peak_rss_mib();
  return r;
}

// Runs the step on every rank; rank 0 prints the slowest rank's times and the largest memory.
int bench(vs::communicator& world, const settings& s) {
  const step_result r = run(world, s);
  std::vector<float> mine{float(r.step), float(r.forward), float(r.backward), float(r.reduce), float(r.optimizer),
                          float(r.waited), float(r.alone), float(r.memory_mib), float(r.arena_mib)};
  std::vector<float> all(mine.size() * world.size());
  world.all_gather(mine.data(), all.data(), mine.size(), "step timings");
  if (world.rank() == 0) {
    auto worst = [&](std::size_t f) {
      float w = 0;
      for (int q = 0; q < world.size(); ++q) w = std::max(w, all[q * mine.size() + f]);
      return w;
    };
    const double images = double(s.images) * world.size();
    const double hidden = r.alone > 0 ? std::max(0.0, 1.0 - double(worst(5)) / double(worst(6))) : 0.0;
    std::printf("mesh %dx%d (data x model), %d images/rank, %d chunks, shape D=%d H=%d F=%d depth %d, %d tokens\n",
                s.data, s.model, s.images, int(vs::model_detail::chunks_for(s.images, s.chunks)), shape::width,
                shape::heads, shape::mlp_dim, shape::depth, int(shape::tokens(shape::resolution)));
    std::printf("step %.3f s (forward %.3f, backward %.3f, gradient reduce %.3f%s, optimizer %.3f): %.1f images/s\n",
                worst(0), worst(1), worst(2), worst(3), s.overlap_gradients ? " left after backward" : "",
                worst(4), images / worst(0));
    std::printf("model axis: %zu collectives, %.2f MiB sent per rank per step; waited %.4f s, alone %.4f s: "
                "%.0f%% hidden\n",
                r.collectives, r.model_bytes / 1048576.0, worst(5), worst(6), 100 * hidden);
    std::printf("data axis: %.2f MiB gradient all-reduce payload per rank per step\n", r.data_bytes / 1048576.0);
    // The model of the same step (explore/step_model.hpp): this run's compute rate, and the link bandwidth
    // of the model axis' collectives replayed alone.
    namespace ex = vs::explore;
    ex::step_config config;
    config.shape = ex::step_shape::of<shape>(shape::resolution);
    config.images = static_cast<std::int64_t>(images);
    config.grid = {s.data, s.model};
    config.activation_bytes = 4;
    const double flops_per_rank = config.shape.training_flops_per_image() * images / world.size();
    std::printf("training FLOPs per rank per step %.3g: %.1f GFLOP/s per rank\n", flops_per_rank,
                flops_per_rank / worst(0) / 1e9);
    if (s.gflops > 0) {
      ex::measured_machine mm;
      mm.peak_flops = s.peak_gflops * 1e9;
      mm.gemm_flops_per_second = s.gflops * 1e9;
      mm.chunks = int(vs::model_detail::chunks_for(s.images, s.chunks));
      mm.link_bytes_per_second = 1e12;
      const double wire = ex::predict(config, mm).model_axis_bytes;
      if (worst(6) > 0) mm.link_bytes_per_second = wire / double(worst(6));
      const ex::step_prediction p = ex::predict(config, mm);
      std::printf("model (%.1f GFLOP/s, model-axis link %.2f GB/s from the replay): step %.3f s = compute %.3f + "
                  "exposed communication %.4f (model axis %.4f of %.4f, gradients %.4f); measured %.3f s (%.2fx)\n",
                  s.gflops, mm.link_bytes_per_second / 1e9, p.step_seconds, p.compute_seconds(),
                  p.exposed_seconds(), p.model_exposed_seconds, p.model_comm_seconds, p.gradient_exposed_seconds,
                  worst(0), worst(0) / p.step_seconds);
    }
    std::printf("memory per rank: %.1f MiB in arenas (parameters, gradients, AdamW state, activations), "
                "peak RSS %.1f MiB\n",
                worst(8), worst(7));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  tool::program prog("bench_shard", "ViT-22B's sharded training step over MPI ranks");
  CLI::App& app = prog.app;
  app.add_option("--data", s.data, "ranks on the data axis");
  app.add_option("--model", s.model, "ranks on the model axis");
  app.add_option("--images", s.images, "images per rank");
  app.add_option("--steps", s.steps, "timed steps");
  app.add_option("--chunks", s.chunks, "pieces each model-axis collective is cut into");
  app.add_option("--overlap-gradients", s.overlap_gradients,
                 "1: sum the gradients over the mesh during backward, block by block; 0: after it");
  app.add_option("--gflops", s.gflops, "a rank's training GFLOP/s measured alone (the 1x1 run prints it): "
                                       "predicts this mesh's step with explore/step_model.hpp");
  app.add_option("--peak-gflops", s.peak_gflops, "a rank's nominal peak, for the MFU");
  return prog.run_mpi(argc, argv, [&](vs::communicator& world) { return bench(world, s); });
}
