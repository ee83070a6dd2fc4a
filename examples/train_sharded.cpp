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
#include <vitscale/data/batches.hpp>
#include <vitscale/data/idx.hpp>
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
#include <string>
#include <utility>

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
};

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
  world.all_reduce(&correct, &total, 1);
  return 100.0 * total / test.size();
}

int run(vs::communicator& world, const settings& s) {
  const vs::shard::mesh_communicators mesh = vs::shard::make_mesh(world, s.data, s.model);
  const int ranks = world.size();
  if (s.batch % ranks != 0)
    vs::detail::fail("train_sharded: the batch (", s.batch, ") must be a multiple of the ranks (", ranks, ")");
  const int local = s.batch / ranks, first = world.rank() * local;
  const bool lead = world.rank() == 0;

  const vs::data::dataset train = vs::data::load_fashion_mnist(s.data_dir, vs::data::split::train);
  const vs::data::dataset test = vs::data::load_fashion_mnist(s.data_dir, vs::data::split::test);
  const vs::data::normalization norm = vs::data::pixel_statistics(train.images);
  vs::data::batcher batches(train, {s.batch, s.seed, true, true, norm});
  const std::int64_t per_epoch = train.size() / s.batch, total = per_epoch * s.epochs;

  model_t model(vs::init::timm{s.seed}, shape::resolution, space(), vs::model_parallel{mesh.model_axis.get(), s.chunks});
  typename vs::optimizer::adamw<model_t>::options o;
  o.weight_decay = {s.weight_decay, s.weight_decay};
  vs::optimizer::adamw<model_t> opt(model, o);
  vs::shard::gradient_reducer<model_t> reducer(model, world, *mesh.data_axis, 1.0 / ranks);
  vs::schedule::warmup_cosine lr{s.lr, s.warmup, total};
  Kokkos::View<float**, Kokkos::LayoutRight, space::memory_space> dlogits("dlogits", local, shape::num_classes);
  if (lead)
    std::printf("mesh %dx%d (data x model), %d images per rank of a global batch of %d, %lld steps\n", s.data, s.model,
                local, s.batch, static_cast<long long>(total));

  const auto start = std::chrono::steady_clock::now();
  double loss_sum = 0;
  int window = 0;
  for (std::int64_t step = 0; step < total; ++step) {
    const vs::data::batch b = batches.next();
    const auto labels = Kokkos::subview(b.labels, std::make_pair(first, first + local));
    const double loss = vs::loss::softmax_xent(space(), model.forward(rows(b.images, first, local), std::uint32_t(step)),
                                               labels, dlogits);
    model.backward(dlogits, &reducer);  // each block's gradients are summed while the blocks before it run
    reducer.finish();
    opt.step(lr(step), lr(step));
    loss_sum += loss;
    ++window;
    if ((step + 1) % 50 == 0 || step + 1 == total) {
      float mine = float(loss_sum / window), mean = 0;
      world.all_reduce(&mine, &mean, 1);
      loss_sum = 0;
      window = 0;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (lead)
        std::printf("step %lld/%lld  loss %.4f  lr %.2e  %.0f images/s\n", static_cast<long long>(step + 1),
                    static_cast<long long>(total), mean / ranks, lr(step), (step + 1) * double(s.batch) / seconds);
    }
    if ((step + 1) % per_epoch == 0) {
      const double accuracy = evaluate(model, world, test, norm);
      if (lead)
        std::printf("epoch %lld: test accuracy %.2f%%\n", static_cast<long long>((step + 1) / per_epoch), accuracy);
    }
  }
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
  return prog.run_mpi(argc, argv, [&](vs::communicator& world) { return run(world, s); });
}
