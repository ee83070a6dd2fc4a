// Fashion-MNIST on a data × model mesh of MPI ranks: a small ViT with ViT-22B's parallel block (QK-norm, no
// QKV bias), trained from scratch with the block sharded as ViT-22B shards it. The same program on one rank
// is the unsharded run it must match:
//
//   mpirun -np 1 build/examples/train_sharded --epochs 1                              the whole model
//   mpirun -np 4 --oversubscribe build/examples/train_sharded --data 2 --model 2 --epochs 1
//
// Every rank reads the data set and draws the same global batches (one seed); rank (d, j) of the mesh trains
// on its quarter of each batch: images [(d·model + j)·local, ... + local) with local = batch / ranks. After
// backward, shard::gradient_reducer has averaged the gradients over the mesh (the gradient of the global
// batch's mean loss; posted block by block during backward), and AdamW steps each rank's shard. Rank 0 prints the mean loss and the test accuracy.
//
// Checkpoints: with --save-every N every rank writes its shard of the model and of the optimizer's state, and
// the training state, to its own file, <checkpoint stem>.rank<r>-of-<ranks>.safetensors (io/checkpoint.hpp:
// atomically, the file before kept as .prev); --resume <the same path> continues on the same mesh. A
// non-finite gradient stops every rank at the same step (the optimizer's check is collective on the model
// axis, and the gradients are reduced over the data axis before it), before anything is applied or saved.
// SIGINT or SIGTERM on any rank: every rank finishes the step (the ranks agree on it through one all-reduce per
// step), saves, and exits with status 75. Under mpirun, signal the ranks themselves (`pkill -TERM
// train_sharded`): mpirun forwards a signal sent to it, but may kill the ranks before they have saved.
#include <vitscale/data/batches.hpp>
#include <vitscale/data/idx.hpp>
#include <vitscale/io/checkpoint.hpp>
#include <vitscale/io/files.hpp>
#include <vitscale/model/vit.hpp>
#include <vitscale/shard/mesh.hpp>
#include <vitscale/shard/mpi.hpp>
#include <vitscale/shard/training.hpp>
#include <vitscale/train/loss.hpp>
#include <vitscale/train/optimizers.hpp>
#include <vitscale/train/schedule.hpp>

#include "tool_runtime.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace vs = vitscale;
using namespace vitscale::opt;
using space = Kokkos::DefaultHostExecutionSpace;
// The main example's model (examples/fmnist_model.hpp) with ViT-22B's block instead of the classic one.
using shape = vs::vit_shape<4, 128, 4, 256, 4,
                            vs::options<parallel_block, qkv_bias<false>, qk_norm<>, pool_gap, classes<10>, channels<1>,
                                        resolution<28>>>;
using model_t = vs::vit<shape, vs::precision::fp32, space>;

struct settings {
  int data = 1, model = 1, epochs = 1, batch = 128, chunks = 2, warmup = 200;
  double lr = 1e-3, weight_decay = 0.05;
  std::uint64_t seed = 0;
  std::string data_dir = vs::data::fashion_mnist_default_dir;
  long max_steps = 0;   // 0: all epochs
  long save_every = 0;  // 0: only when stopped by a signal
  std::string train_checkpoint = "sharded_state.safetensors";
  std::string resume;
  bool overwrite = false;
};

// Rank r's file of a checkpoint of `ranks` ranks: <stem>.rank<r>-of-<ranks><extension>.
std::string rank_file(const std::string& path, int rank, int ranks) {
  const std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + ".rank" + std::to_string(rank) + "-of-" + std::to_string(ranks) +
                             p.extension().string()))
      .string();
}

template <class View>
auto rows(const View& v, int first, int count) {
  return Kokkos::subview(v, std::make_pair(first, first + count), Kokkos::ALL(), Kokkos::ALL(), Kokkos::ALL());
}

// Test accuracy: every rank classifies its share of each evaluation batch, the counts are summed.
double evaluate(model_t& model, vs::communicator& world, const vs::data::dataset& test,
                const vs::data::normalization& norm) {
  const int ranks = world.size(), global = 400 * ranks;
  vs::data::batcher batches(test, {global, 0, false, false, norm});
  float correct = 0;
  for (int done = 0; done < test.size(); done += global) {
    const vs::data::batch b = batches.next();
    const int n = b.size() / ranks;  // the test set's 10000 images split evenly for 1, 2 and 4 ranks
    const int first = world.rank() * n;
    auto logits = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.predict(rows(b.images, first, n)));
    for (int i = 0; i < n; ++i) {
      int best = 0;
      for (int c = 1; c < shape::num_classes; ++c)
        if (logits(i, c) > logits(i, best)) best = c;
      correct += best == b.labels(first + i) ? 1.0f : 0.0f;
    }
  }
  float total = 0;
  world.all_reduce(&correct, &total, 1, "test accuracy");
  return 100.0 * total / test.size();
}

int run(vs::communicator& world, const settings& s) {
  const vs::shard::mesh_communicators mesh = vs::shard::make_mesh(world, s.data, s.model);
  const int ranks = world.size();
  if (s.batch % ranks != 0)
    vs::detail::fail("train_sharded: the batch (", s.batch, ") must be a multiple of the ranks (", ranks, ")");
  const int local = s.batch / ranks, first_image = world.rank() * local;
  const bool lead = world.rank() == 0;

  const vs::data::dataset train = vs::data::load_fashion_mnist(s.data_dir, vs::data::split::train);
  const vs::data::dataset test = vs::data::load_fashion_mnist(s.data_dir, vs::data::split::test);
  const vs::data::normalization norm = vs::data::pixel_statistics(train.images);

  model_t model(vs::init::timm{s.seed}, shape::resolution, space(), vs::model_parallel{mesh.model_axis.get(), s.chunks});
  typename vs::optimizer::adamw<model_t>::options o;
  o.weight_decay = {s.weight_decay, s.weight_decay};
  vs::optimizer::adamw<model_t> opt(model, o);
  vs::shard::gradient_reducer<model_t> reducer(model, world, *mesh.data_axis, 1.0 / ranks);

  // This rank's checkpoint: checked writable, never replacing another run's silently, resumed on the same mesh.
  const std::string mesh_text = std::to_string(s.data) + "x" + std::to_string(s.model);
  const std::string mine = rank_file(s.train_checkpoint, world.rank(), ranks);
  const std::string resume = s.resume.empty() ? std::string() : rank_file(s.resume, world.rank(), ranks);
  vs::io::check_writable(mine, "this rank's training checkpoint");
  std::error_code ec;
  if (std::filesystem::exists(mine, ec) && !s.overwrite &&
      !(!resume.empty() && std::filesystem::equivalent(resume, mine, ec)))
    vs::detail::fail("the training checkpoint '", mine, "' exists already and this run does not continue it: pass "
                     "--resume ", s.train_checkpoint, ", another --train-checkpoint, or --overwrite");
  vs::io::training_state state;
  state.data_seed = state.augment_seed = s.seed;
  if (!resume.empty()) {
    state = vs::io::load_checkpoint(resume, model, opt);
    const auto it = state.metadata.find("mesh");
    if (it == state.metadata.end() || it->second != mesh_text)
      vs::detail::fail("'", resume, "' was saved on a ", it == state.metadata.end() ? "?" : it->second,
                       " mesh (data x model); this run's is ", mesh_text);
  }
  // Every rank must continue from the same step (the files of one save, not of two).
  std::vector<std::int64_t> steps(std::size_t(ranks), 0);
  world.all_gather(&state.step, steps.data(), 1, "resumed steps");
  for (int r = 0; r < ranks; ++r)
    if (steps[std::size_t(r)] != state.step)
      vs::detail::fail("the ranks' checkpoints are of different steps: rank ", r, "'s of step ", steps[std::size_t(r)],
                       ", this rank's of step ", state.step, " (a save that did not finish on every rank: each file's "
                       "previous one is kept as .prev)");
  vs::data::batcher batches(train, {s.batch, state.data_seed, true, true, norm}, state.data);
  const std::int64_t per_epoch = batches.batches_per_epoch(), schedule_steps = per_epoch * s.epochs;
  const std::int64_t total = s.max_steps > 0 ? std::min<std::int64_t>(schedule_steps, s.max_steps) : schedule_steps;
  vs::schedule::warmup_cosine lr{s.lr, s.warmup, schedule_steps};
  Kokkos::View<float**, Kokkos::LayoutRight, space::memory_space> dlogits("dlogits", local, shape::num_classes);
  if (lead) {
    if (!resume.empty())
      std::printf("resumed from %s (one file per rank) at step %lld\n", s.resume.c_str(),
                  static_cast<long long>(state.step));
    std::printf("mesh %dx%d (data x model), %d images per rank of a global batch of %d, %lld steps\n", s.data, s.model,
                local, s.batch, static_cast<long long>(total));
    std::fflush(stdout);  // at once, also where stdout is a pipe: the line says the run has started
  }

  std::int64_t step = state.step;
  const auto save = [&] {
    state.step = step;
    state.data = batches.position();
    state.metadata = {{"mesh", mesh_text}, {"rank", std::to_string(world.rank())}};
    vs::io::save_checkpoint(mine, model, opt, state);
  };
  const tool::graceful_stop stop;
  const auto start = std::chrono::steady_clock::now();
  const std::int64_t first = step;
  double loss_sum = 0, last_loss = 0;
  int window = 0;
  while (step < total) {
    const vs::data::batch b = batches.next();
    const auto labels = Kokkos::subview(b.labels, std::make_pair(first_image, first_image + local));
    const double loss = vs::loss::softmax_xent(
        space(), model.forward(rows(b.images, first_image, local), std::uint32_t(step)), labels, dlogits);
    model.backward(dlogits, &reducer);  // each block's gradients are summed while the blocks before it run
    reducer.finish();
    try {
      opt.step(lr(step), lr(step));
    } catch (const vs::non_finite_error& e) {
      vs::detail::fail("step ", step, ": ", e.reason(),
                       "; nothing was saved after it. Lower the learning rate (--lr)");
    }
    const double lr_used = lr(step);
    ++step;
    loss_sum += loss;
    ++window;
    if (step % 50 == 0 || step == total) {
      float mine_loss = float(loss_sum / window), mean = 0;
      world.all_reduce(&mine_loss, &mean, 1, "mean loss");
      loss_sum = 0;
      window = 0;
      last_loss = mean / ranks;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (lead)
        std::printf("step %lld/%lld  loss %.4f  lr %.2e  %.0f images/s\n", static_cast<long long>(step),
                    static_cast<long long>(total), last_loss, lr_used, double(step - first) * s.batch / seconds);
    }
    // A signal on any rank stops every rank after this step.
    float stop_here = stop.requested() ? 1.0f : 0.0f, stops = 0;
    world.all_reduce(&stop_here, &stops, 1, "graceful stop");
    if (stops > 0) {
      save();
      if (lead)
        std::printf("stopped by a signal after step %lld: every rank's state is saved; continue with --resume %s\n",
                    static_cast<long long>(step), s.train_checkpoint.c_str());
      std::fflush(stdout);
      return tool::exit_stopped;
    }
    if (s.save_every > 0 && (step % s.save_every == 0 || step == total)) save();
    if (step % per_epoch == 0) {
      const double accuracy = evaluate(model, world, test, norm);
      if (lead) std::printf("epoch %lld: test accuracy %.2f%%\n", static_cast<long long>(step / per_epoch), accuracy);
    }
  }
  if (lead) std::printf("trained to step %lld; last mean loss %.6f\n", static_cast<long long>(step), last_loss);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  tool::program prog("train_sharded", "Fashion-MNIST on a data x model mesh of MPI ranks (ViT-22B's sharded "
                                      "parallel block)");
  prog.wants_passive_wait();  // ranks share cores when oversubscribed
  CLI::App& app = prog.app;
  app.add_option("--data", s.data, "ranks on the data axis");
  app.add_option("--model", s.model, "ranks on the model axis (divides the 4 heads)");
  app.add_option("--epochs", s.epochs, "epochs");
  app.add_option("--batch", s.batch, "global batch (a multiple of the ranks)");
  app.add_option("--lr", s.lr, "peak learning rate (warmup, then cosine)");
  app.add_option("--warmup", s.warmup, "warm-up steps");
  app.add_option("--chunks", s.chunks, "pieces each model-axis collective is cut into");
  app.add_option("--seed", s.seed, "initialisation and data order");
  app.add_option("--data-dir", s.data_dir, "Fashion-MNIST's IDX files");
  app.add_option("--max-steps", s.max_steps, "stop after this many steps, the schedule unchanged");
  app.add_option("--save-every", s.save_every, "save every rank's training state every this many steps and at the "
                                               "end (0: only when stopped by a signal)");
  app.add_option("--train-checkpoint", s.train_checkpoint, "the training checkpoint's path; each rank writes "
                                                           "<stem>.rank<r>-of-<ranks>.safetensors");
  app.add_option("--resume", s.resume, "continue from this checkpoint (the --train-checkpoint path of the run "
                                       "that saved it, on the same mesh)");
  app.add_flag("--overwrite", s.overwrite, "replace existing checkpoint files this run does not --resume");
  return prog.run_mpi(argc, argv, [&](vs::communicator& world) { return run(world, s); });
}
