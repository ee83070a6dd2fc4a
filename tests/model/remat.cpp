// Rematerialisation (vit::set_rematerialization, config/activations.hpp): training that keeps only the block
// inputs and recomputes each block's activations in backward gives bit-identical logits and gradients to
// training that keeps them all — with dropout and drop-path, whose masks backward must draw again — for the
// classic and the parallel block in fp32 and bf16; its arena is smaller by what the accounting predicts, and
// its FLOPs larger by one forward of the blocks.
#include <doctest/doctest.h>
#include <support/spaces.hpp>
#include <vitscale/config/accounting.hpp>
#include <vitscale/config/presets.hpp>
#include <vitscale/model/vit.hpp>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

using namespace vitscale;

namespace {

// A device View of the given extents, filled with normal draws.
template <class Space, class DataType, class... Extents>
Kokkos::View<DataType, Kokkos::LayoutRight, typename Space::memory_space> random_view(unsigned seed, Extents... n) {
  Kokkos::View<DataType, Kokkos::LayoutRight, typename Space::memory_space> v("random", std::size_t(n)...);
  auto h = Kokkos::create_mirror_view(v);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::size_t k = 0; k < v.size(); ++k) h.data()[k] = normal(rng);
  Kokkos::deep_copy(v, h);
  return v;
}
template <class Space>
auto images_of(int batch, int pixels, int channels, unsigned seed) {
  return random_view<Space, float****>(seed, batch, pixels, pixels, channels);
}
template <class Space>
auto dlogits_of(int batch, int classes, unsigned seed) {
  return random_view<Space, float**>(seed, batch, classes);
}

template <class View>
std::vector<float> host_copy(const View& v) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  return std::vector<float>(h.data(), h.data() + h.size());
}

// Two models from the same initialisation, one rematerialising: two training steps (different masks) and an
// inference in between; every logit and gradient equal bit for bit; the arenas as the accounting says.
template <class Shape, class Policy, class Space>
void check_remat(const regularization& reg) {
  constexpr int batch = 3;
  const int res = Shape::resolution;
  vit<Shape, Policy, Space> keep(init::timm{5}, res), remat(init::timm{5}, res);
  remat.set_rematerialization(rematerialization::blocks);
  CHECK(remat.rematerialization_setting() == rematerialization::blocks);
  keep.set_regularization(reg);
  remat.set_regularization(reg);
  const auto images = images_of<Space>(batch, res, Shape::in_channels, 1);
  const auto dlogits = dlogits_of<Space>(batch, Shape::num_classes, 2);
  for (std::uint32_t step : {3u, 4u}) {
    const std::vector<float> a = host_copy(keep.forward(images, step)), b = host_copy(remat.forward(images, step));
    CHECK(a == b);
    keep.backward(dlogits);
    remat.backward(dlogits);
    const int tensors = int(keep.parameters().table().size());
    int differing = 0;
    for (int i = 0; i < tensors; ++i)
      if (keep.gradient(i) != remat.gradient(i)) {
        ++differing;
        MESSAGE("step " << step << ": " << keep.parameters().table()[i].full_name() << " differs");
      }
    CHECK(differing == 0);
    CHECK(host_copy(keep.predict(images)) == host_copy(remat.predict(images)));
  }

  // Memory: the saving the accounting predicts, up to the arena's 64-byte alignment of each buffer (at most
  // 16 buffers per block set), and the arena was laid out once.
  keep.reserve(batch);
  remat.reserve(batch);
  const std::int64_t measured = std::int64_t(keep.activation_bytes()) - std::int64_t(remat.activation_bytes());
  const std::int64_t predicted =
      training_memory<Shape, Policy, optim::sgd_momentum>(batch, res).activations -
      training_memory<Shape, Policy, optim::sgd_momentum>(batch, res, parameter_ema::off, rematerialization::blocks)
          .activations;
  INFO("arena saving " << measured << " bytes, predicted " << predicted);
  CHECK(predicted > 0);
  CHECK(measured >= predicted);
  CHECK(measured - predicted <= 64 * 16 * (Shape::depth - 1));
  CHECK(remat.activation_allocations() == 1);
  // FLOPs: one more forward of the blocks.
  constexpr flop_counts f = Shape::flops();
  static_assert(f.training_with(rematerialization::blocks) == f.training + f.blocks);
  static_assert(f.training_with(rematerialization::none) == f.training);
}

template <class... Opts>
using small = vit_shape<3, 16, 2, 32, 4, options<opt::classes<5>, opt::resolution<12>, Opts...>>;

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("rematerialised training equals training that keeps every block's activations", Space,
                          vit_remat) {
  const regularization reg{0.1, 0.3, 42};
  SUBCASE("classic block, class token, pre-logits, tanh GELU, dropout and drop-path; fp32") {
    check_remat<small<opt::pre_logits<12>, opt::gelu_tanh>, precision::fp32, Space>(reg);
  }
  SUBCASE("classic block, MAP, QK-norm, dropout and drop-path; bf16_mixed") {
    check_remat<small<opt::pool_map, opt::qk_norm<>>, precision::bf16_mixed, Space>(reg);
  }
  SUBCASE("parallel block (ViT-22B: no QKV bias, QK-norm, RMS norm), GAP + fc_norm, dropout and drop-path; fp32") {
    check_remat<small<opt::parallel_block, opt::qkv_bias<false>, opt::qk_norm<>, opt::layer_norm<false, false>,
                      opt::pool_gap_fc_norm>,
                precision::fp32, Space>(reg);
  }
  SUBCASE("parallel block with a QKV bias, GAP, no regularisation; bf16_mixed") {
    check_remat<small<opt::parallel_block, opt::pool_gap>, precision::bf16_mixed, Space>({});
  }
}
VITSCALE_ON_HOST_SPACES(vit_remat);

TEST_CASE_TEMPLATE_DEFINE("rematerialisation is a run-time switch of one model", Space, vit_remat_switch) {
  using shape = small<opt::pool_gap>;
  vit<shape, precision::fp32, Space> model(init::timm{7});
  const auto images = images_of<Space>(4, 12, 3, 3);
  const auto dlogits = dlogits_of<Space>(4, 5, 4);
  model.forward(images, 1);
  model.backward(dlogits);
  std::vector<std::vector<float>> kept;
  for (int i = 0; i < int(model.parameters().table().size()); ++i) kept.push_back(model.gradient(i));
  const std::size_t full = model.activation_bytes();

  // Switching lays the arena out again at the next call: what backward needs is gone until a new forward.
  model.set_rematerialization(rematerialization::blocks);
  CHECK_THROWS_AS(model.backward(dlogits), vitscale::error);
  model.forward(images, 1);
  CHECK(model.activation_bytes() < full);
  CHECK(model.activation_allocations() == 1);  // the smaller layout fits in what is there
  model.backward(dlogits);
  for (int i = 0; i < int(kept.size()); ++i) CHECK(model.gradient(i) == kept[i]);

  model.set_rematerialization(rematerialization::none);
  model.forward(images, 1);
  CHECK(model.activation_bytes() == full);
  model.backward(dlogits);
  for (int i = 0; i < int(kept.size()); ++i) CHECK(model.gradient(i) == kept[i]);
}
VITSCALE_ON_HOST_SPACES(vit_remat_switch);

TEST_CASE("the accounting of rematerialisation: one block's activations instead of depth of them") {
  using b16 = presets::vit_b16;
  constexpr auto none = count_activations<b16>();
  constexpr auto remat = count_activations<b16>(b16::resolution, rematerialization::blocks);
  constexpr auto d = describe<b16>();
  // What one block keeps per image (classic block: 197 tokens, q|k|v, attention output, mid residual and MLP
  // pre-activation in act_type; two LayerNorms' statistics and the log-sum-exp in float).
  constexpr std::int64_t n = 197, D = 768, F = 3072, H = 12;
  constexpr std::int64_t block_act = n * (3 * D + D + D + F), block_f32 = n * (2 + 2 + H);
  static_assert(none.act - remat.act == (b16::depth - 1) * block_act);
  static_assert(none.f32 - remat.f32 == (b16::depth - 1) * block_f32);
  // The run-time descriptor counts the same.
  static_assert(count_activations(d, 224, rematerialization::blocks).act == remat.act);
  static_assert(count_activations(d, 224, rematerialization::blocks).f32 == remat.f32);
  CHECK(remat.act < none.act / 4);
}
