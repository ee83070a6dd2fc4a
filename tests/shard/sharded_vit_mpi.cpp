// ViT-22B's sharded parallel block under mpirun (tests/shard/shard.cmake runs this with 1, 2 and 4 ranks):
// every mesh the ranks can form, against the whole model that each rank also trains on the whole batch
// (sharded_check.hpp), with and without dropout and drop-path. The in-process run of the same check is
// sharded_vit.cpp.
#include <doctest/doctest.h>
#include <shard/sharded_check.hpp>
#include <vitscale/shard/mpi.hpp>

#include <string>

using namespace vitscale;

namespace {
using namespace vitscale::opt;
using parallel_map =
    vit_shape<2, 32, 4, 64, 4, options<parallel_block, pool_map, qkv_bias<false>, qk_norm<>, classes<10>, resolution<16>>>;
}  // namespace

TEST_CASE("sharded parallel block over MPI ranks equals the whole model on every mesh") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  auto world = shard::mpi_communicator::world();
  const int p = world->size();
  const int images = 8;  // 2 per rank on 4 ranks
  REQUIRE(images % p == 0);
  const auto batch = test::make_batch(images, parallel_map::resolution, parallel_map::num_classes, 7);
  for (auto kind : {test::optimizer_kind::sgd_momentum, test::optimizer_kind::adamw, test::optimizer_kind::sgd_clipped,
                    test::optimizer_kind::adafactor}) {
    const auto whole = test::run_whole<parallel_map, Space>(batch, kind, 3, 3);
    for (int model = 1; model <= p; ++model) {
      if (p % model != 0) continue;
      const int data = p / model;
      const auto e = test::run_mesh<parallel_map, Space>(*world, data, model, 2, batch, whole, kind, 3, 3);
      INFO("mesh " << data << "x" << model << ", rank " << world->rank() << ", "
                   << std::string(test::name_of(kind)) << ": logits " << e.logits
                   << ", gradients " << e.grads << " (" << e.worst_grad << "), parameters " << e.params << " ("
                   << e.worst_param << ")");
      CHECK(e.logits <= 1e-5);
      CHECK(e.grads <= 1e-5);
      CHECK(e.params <= 1e-5);
      CHECK((e.collectives > 0) == (model > 1));
      if (world->rank() == 0)
        MESSAGE("mesh " << data << "x" << model << ", " << std::string(test::name_of(kind)) << ": logits " << e.logits << ", gradients " << e.grads
                        << ", parameters " << e.params << " (worst relative errors on rank 0)");
    }
  }
}

TEST_CASE("sharded parallel block over MPI ranks with dropout and drop-path draws the whole model's masks") {
  // Each rank sets first_image to its data group's first image (run_mesh) and the model adds its place on the
  // model axis: every mesh applies the masks the whole model draws on the whole batch.
  using Space = Kokkos::DefaultHostExecutionSpace;
  auto world = shard::mpi_communicator::world();
  const int p = world->size();
  const int images = 8;
  REQUIRE(images % p == 0);
  const auto batch = test::make_batch(images, parallel_map::resolution, parallel_map::num_classes, 7);
  const regularization reg{0.1, 0.2, 11};
  const auto kind = test::optimizer_kind::sgd_momentum;
  const auto whole = test::run_whole<parallel_map, Space>(batch, kind, 3, 3, reg);
  for (int model = 1; model <= p; ++model) {
    if (p % model != 0) continue;
    const int data = p / model;
    const auto e = test::run_mesh<parallel_map, Space>(*world, data, model, 2, batch, whole, kind, 3, 3, reg);
    INFO("mesh " << data << "x" << model << ", rank " << world->rank() << ", SGD-momentum, dropout 0.1, drop-path 0.2"
                 << ": logits " << e.logits << ", gradients " << e.grads << " (" << e.worst_grad << "), parameters "
                 << e.params << " (" << e.worst_param << ")");
    CHECK(e.logits <= 1e-5);
    CHECK(e.grads <= 1e-5);
    CHECK(e.params <= 1e-5);
    CHECK((e.collectives > 0) == (model > 1));
    if (world->rank() == 0)
      MESSAGE("dropout and drop-path, mesh " << data << "x" << model << ": logits " << e.logits << ", gradients "
                                             << e.grads << ", parameters " << e.params
                                             << " (worst relative errors on rank 0)");
  }
}
