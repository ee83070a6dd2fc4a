// ViT-22B's sharded parallel block on every mesh of up to 4 ranks, as threads of this process (the MPI run
// of the same check is tests/shard/sharded_vit_mpi.cpp): logits, every gradient and the parameters after a
// few optimizer steps equal the whole model's (sharded_check.hpp), with dropout and drop-path too.
#include <doctest/doctest.h>
#include <shard/sharded_check.hpp>
#include <support/errors.hpp>
#include <support/spaces.hpp>
#include <vitscale/shard/in_process.hpp>

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <vector>

using namespace vitscale;

namespace {
using namespace vitscale::opt;
// ViT-22B's block: parallel, QK-norm, no QKV bias (an MLP bias), MAP head; 4 heads so that 4 ranks split them.
using parallel_map =
    vit_shape<2, 32, 4, 64, 4, options<parallel_block, pool_map, qkv_bias<false>, qk_norm<>, classes<10>, resolution<16>>>;
// The other variant of the input product's bias, and GAP.
using parallel_gap = vit_shape<1, 32, 4, 96, 4, options<parallel_block, pool_gap, qkv_bias<true>, classes<7>, resolution<12>>>;
// An MLP narrower than the width: Adafactor normalises mlp_out's column statistic, which the split cuts.
using narrow_mlp = vit_shape<1, 32, 4, 16, 4, options<parallel_block, pool_gap, qkv_bias<true>, classes<7>, resolution<12>>>;

constexpr int steps = 3;

template <class Shape, class Space>
void check_meshes(test::optimizer_kind kind, int chunks, regularization reg = {}) {
  const int images = 8;  // 2 per rank on 4 ranks: two chunks of one image each
  const auto batch = test::make_batch(images, Shape::resolution, Shape::num_classes, 7);
  const auto whole = test::run_whole<Shape, Space>(batch, kind, steps, 3, reg);
  if (kind == test::optimizer_kind::sgd_clipped) {  // the clipping acts, so the sharded norms are checked
    const auto clip = test::clipping_on<Shape>(whole, Shape::resolution);
    INFO("AGC clipped " << clip.agc_units << " of " << clip.units << " units; norm after AGC " << clip.norm_after_agc);
    CHECK(clip.agc_units > 0);
    CHECK(clip.agc_units < clip.units);
    CHECK(clip.norm_after_agc > test::global_norm_max);
  }
  for (auto [data, model] : {std::pair{1, 1}, std::pair{1, 2}, std::pair{2, 1}, std::pair{2, 2}, std::pair{1, 4}}) {
    std::vector<test::mesh_errors> errors(static_cast<std::size_t>(data * model));
    shard::run_in_process(data * model, [&](communicator& world) {
      errors[static_cast<std::size_t>(world.rank())] =
          test::run_mesh<Shape, Space>(world, data, model, chunks, batch, whole, kind, steps, 3, reg);
    });
    if (reg.dropout > 0 || reg.drop_path > 0) {
      test::mesh_errors worst;
      for (const auto& e : errors) {
        worst.logits = std::max(worst.logits, e.logits);
        worst.grads = std::max(worst.grads, e.grads);
        worst.params = std::max(worst.params, e.params);
      }
      MESSAGE("dropout " << reg.dropout << ", drop-path " << reg.drop_path << ", mesh " << data << "x" << model
                         << ": logits " << worst.logits << ", gradients " << worst.grads << ", parameters "
                         << worst.params << " (worst relative errors over the ranks)");
    }
    for (std::size_t r = 0; r < errors.size(); ++r) {
      const auto& e = errors[r];
      INFO(std::string(test::name_of(kind)) << ", mesh " << data << "x" << model << ", rank " << r << ", chunks " << chunks << ": logits " << e.logits
                   << ", gradients " << e.grads << " (" << e.worst_grad << "), parameters " << e.params << " ("
                   << e.worst_param << ")");
      CHECK(e.logits <= 1e-5);
      CHECK(e.grads <= 1e-5);
      CHECK(e.params <= 1e-5);
      // what the block communicated: 2 collectives per block forward, 3 backward, each in chunks
      if (model > 1) CHECK(e.collectives > 0);
      if (model == 1) CHECK(e.collectives == 0);
    }
  }
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("sharded parallel block equals the whole model on every mesh", Space, sharded_vit_meshes) {
  SUBCASE("MAP, QK-norm, MLP bias; SGD-momentum; two chunks") {
    check_meshes<parallel_map, Space>(test::optimizer_kind::sgd_momentum, 2);
  }
  SUBCASE("MAP, QK-norm, MLP bias; AdamW; one chunk") {
    check_meshes<parallel_map, Space>(test::optimizer_kind::adamw, 1);
  }
  SUBCASE("GAP, QKV bias; AdamW; four chunks (two used)") {
    check_meshes<parallel_gap, Space>(test::optimizer_kind::adamw, 4);
  }
  SUBCASE("MAP, QK-norm; SGD-momentum after AGC and global-norm clipping") {
    check_meshes<parallel_map, Space>(test::optimizer_kind::sgd_clipped, 2);
  }
  SUBCASE("MAP, QK-norm; Adafactor with block-RMS clipping") {
    check_meshes<parallel_map, Space>(test::optimizer_kind::adafactor, 2);
  }
  SUBCASE("narrow MLP; Adafactor (a normalised statistic along the split)") {
    check_meshes<narrow_mlp, Space>(test::optimizer_kind::adafactor, 1);
  }
  SUBCASE("MAP, QK-norm, MLP bias; dropout and drop-path; SGD-momentum; two chunks") {
    // Every rank draws the whole model's masks: its images' by their global index, its MLP units' by theirs.
    check_meshes<parallel_map, Space>(test::optimizer_kind::sgd_momentum, 2, regularization{0.1, 0.2, 11});
  }
}
VITSCALE_ON_HOST_SPACES(sharded_vit_meshes);

TEST_CASE("dropout and drop-path masks follow the global image index (regularization::first_image)") {
  // The second data group of a 2x1 and of a 2x2 mesh (images 4 .. 7 of 8), one training forward: with
  // first_image = 4 its logits are the whole model's for those images; left at 0 it draws the masks of
  // images 0 .. 3 instead, and the logits differ by far more than rounding.
  using Space = Kokkos::DefaultHostExecutionSpace;
  const regularization reg{0.1, 0.2, 11};
  const auto batch = test::make_batch(8, parallel_map::resolution, parallel_map::num_classes, 7);
  const auto logits_of = [](auto& model, const auto& images) {
    const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.forward(images, 0));
    return std::vector<float>(h.data(), h.data() + h.size());
  };
  std::vector<float> whole;
  {
    vit<parallel_map, precision::fp32, Space> model(init::timm{3}, parallel_map::resolution);
    model.set_regularization(reg);
    whole = logits_of(model, test::device_batch<Space>(batch, 0, 8).images);
  }
  const std::size_t classes = parallel_map::num_classes;
  for (int model_ranks : {1, 2}) {
    const int local = 4 / model_ranks;
    std::vector<double> with(static_cast<std::size_t>(model_ranks)), without(with.size());
    shard::run_in_process(model_ranks, [&](communicator& axis) {
      const int j = axis.rank();
      vit<parallel_map, precision::fp32, Space> model(init::timm{3}, parallel_map::resolution, Space(),
                                                    model_parallel{&axis, 2});
      const test::device_batch<Space> in(batch, 4 + j * local, local);
      const std::vector<float> want(whole.begin() + static_cast<std::ptrdiff_t>((4 + j * local) * classes),
                                    whole.begin() + static_cast<std::ptrdiff_t>((4 + (j + 1) * local) * classes));
      regularization r = reg;
      r.first_image = 4;
      model.set_regularization(r);
      with[static_cast<std::size_t>(j)] = test::relative_error(logits_of(model, in.images), want);
      model.set_regularization(reg);
      without[static_cast<std::size_t>(j)] = test::relative_error(logits_of(model, in.images), want);
    });
    for (std::size_t j = 0; j < with.size(); ++j) {
      INFO("2x" << model_ranks << " mesh, data group 1, model rank " << j << ": logits with first_image "
                << with[j] << ", without " << without[j]);
      CHECK(with[j] <= 1e-5);
      CHECK(without[j] > 1e-2);
    }
  }
  // A classic block (data parallel only) keys its sites, the MLP hidden activation included, the same way.
  using classic = vit_shape<2, 32, 4, 64, 4, options<opt::classes<10>, opt::resolution<16>>>;
  vit<classic, precision::fp32, Space> full(init::timm{3}, classic::resolution);
  vit<classic, precision::fp32, Space> part(init::timm{3}, classic::resolution);
  full.set_regularization(reg);
  const std::vector<float> all = logits_of(full, test::device_batch<Space>(batch, 0, 8).images);
  const std::vector<float> want(all.begin() + static_cast<std::ptrdiff_t>(4 * classes), all.end());
  const test::device_batch<Space> in(batch, 4, 4);
  regularization r = reg;
  r.first_image = 4;
  part.set_regularization(r);
  const double with = test::relative_error(logits_of(part, in.images), want);
  part.set_regularization(reg);
  const double without = test::relative_error(logits_of(part, in.images), want);
  INFO("classic block, data group 1 of 2: logits with first_image " << with << ", without " << without);
  CHECK(with <= 1e-5);
  CHECK(without > 1e-2);
}

TEST_CASE("rematerialisation on a model axis: the same logits and gradients, bit for bit") {
  // Each rank of a 2-rank model axis trains its shard twice, keeping every block's activations and
  // rematerialising them, with dropout and drop-path: the recomputed forward repeats the block's collectives
  // (each rank's shard is a function of the same gathered rows), so nothing may differ.
  using Space = Kokkos::DefaultHostExecutionSpace;
  const auto batch = test::make_batch(4, parallel_map::resolution, parallel_map::num_classes, 7);
  std::vector<int> differing(2, -1);
  std::vector<std::size_t> kept_bytes(2), remat_bytes(2);
  shard::run_in_process(2, [&](communicator& axis) {
    const int j = axis.rank();
    const test::device_batch<Space> in(batch, 2 * j, 2);
    const auto train = [&](rematerialization r, std::vector<std::vector<float>>& out) {
      vit<parallel_map, precision::fp32, Space> model(init::timm{3}, parallel_map::resolution, Space(),
                                                    model_parallel{&axis, 2});
      model.set_regularization({0.1, 0.2, 11});
      model.set_rematerialization(r);
      const auto logits = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.forward(in.images, 4));
      out.emplace_back(logits.data(), logits.data() + logits.size());
      auto dl = Kokkos::create_mirror_view(in.dlogits);
      for (std::size_t k = 0; k < dl.size(); ++k) dl.data()[k] = float(k % 7) - 3.0f;
      Kokkos::deep_copy(in.dlogits, dl);
      model.backward(in.dlogits);
      for (int i = 0; i < int(model.parameters().table().size()); ++i) out.push_back(model.gradient(i));
      return model.activation_bytes();
    };
    std::vector<std::vector<float>> kept, remat;
    kept_bytes[static_cast<std::size_t>(j)] = train(rematerialization::none, kept);
    remat_bytes[static_cast<std::size_t>(j)] = train(rematerialization::blocks, remat);
    int n = 0;
    for (std::size_t i = 0; i < kept.size(); ++i) n += kept[i] != remat[i];
    differing[static_cast<std::size_t>(j)] = n;
  });
  for (std::size_t j = 0; j < 2; ++j) {
    INFO("model rank " << j << ": " << differing[j] << " of the logits and gradient tensors differ; arena "
                       << kept_bytes[j] << " -> " << remat_bytes[j] << " bytes");
    CHECK(differing[j] == 0);
    CHECK(remat_bytes[j] < kept_bytes[j]);
  }
}

TEST_CASE("what cannot be sharded says so") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  // A classic block, heads that do not divide, a bad chunk count: errors with a sentence.
  std::vector<std::string> messages(2);
  shard::run_in_process(2, [&](communicator& world) {
    auto& msg = messages[static_cast<std::size_t>(world.rank())];
    using classic = vit_shape<1, 32, 4, 64, 4, options<classes<10>, resolution<16>>>;
    msg += test::error_of([&] { vit<classic, precision::fp32, Space> m(16, Space(), model_parallel{&world, 1}); });
    using odd = vit_shape<1, 30, 3, 60, 4, options<parallel_block, classes<10>, resolution<16>>>;
    msg += "|" + test::error_of([&] { vit<odd, precision::fp32, Space> m(16, Space(), model_parallel{&world, 1}); });
    vit<parallel_map, precision::fp32, Space> m(16, Space(), model_parallel{&world, 1});
    msg += "|" + test::error_of([&] { vit<parallel_map, precision::fp32, Space> bad(16, Space(), model_parallel{&world, 0}); });
  });
  for (const auto& msg : messages) {
    INFO(msg);
    CHECK(msg.find("classic blocks") != std::string::npos);
    CHECK(msg.find("multiples of 2") != std::string::npos);
    CHECK(msg.find("chunks must be in [1, 16]") != std::string::npos);
  }
}
