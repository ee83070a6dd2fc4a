// The model's backward by finite differences, for the layer types the timm comparison does not reach
// (big_vision's pre-logits, a class token without a position entry, the parallel block with a QKV bias,
// dropout and stochastic depth), plus the model's contracts: steady-state training allocates nothing,
// runs are deterministic, bad input is a vitscale::error.
//
// The kernels are float (and bf16) by design, so the model is differentiated in float: the loss
// L = Σ logits ∘ R is summed in double, and each tensor's gradient is checked along a random direction V,
// (L(θ + εV) − L(θ − εV)) / 2ε against ⟨∇L, V⟩, with ε chosen so that rounding (≈1e-7·|L|/ε) and the
// truncation error (≈ε²) both stay near 1e-4 of the derivative.
#include <doctest/doctest.h>
#include <support/spaces.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/model/vit.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using namespace vitscale;

namespace {

template <class Space>
using images_view = Kokkos::View<float****, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Space>
using dlogits_view = Kokkos::View<float**, Kokkos::LayoutRight, typename Space::memory_space>;

template <class Space>
images_view<Space> random_images(int batch, int pixels, int channels, unsigned seed) {
  images_view<Space> images("images", batch, pixels, pixels, channels);
  auto host = Kokkos::create_mirror_view(images);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::size_t k = 0; k < images.size(); ++k) host.data()[k] = normal(rng);
  Kokkos::deep_copy(images, host);
  return images;
}

// Random parameters at activation-preserving scales (not an init scheme: a zero head would hide errors).
template <class Model>
void randomize(Model& model, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const auto& table = model.parameters().table();
  for (int i = 0; i < int(table.size()); ++i) {
    const tensor_info& t = table[i];
    std::vector<float> v(static_cast<std::size_t>(t.numel()));
    for (float& x : v) {
      const double z = normal(rng);
      switch (t.role) {
        case tensor_role::weight: x = float(z / std::sqrt(double(t.matrix_cols()))); break;
        case tensor_role::norm_scale: x = float(1.0 + 0.1 * z); break;
        default: x = float(0.3 * z); break;
      }
    }
    model.set_parameter(i, v.data(), v.size());
  }
}

template <class Space>
struct loss_weights {
  dlogits_view<Space> device;
  std::vector<double> host;
};
template <class Space>
loss_weights<Space> random_loss(int batch, int classes, unsigned seed) {
  loss_weights<Space> r{dlogits_view<Space>("dlogits", batch, classes), {}};
  auto h = Kokkos::create_mirror_view(r.device);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::size_t k = 0; k < r.device.size(); ++k) {
    h.data()[k] = normal(rng);
    r.host.push_back(h.data()[k]);
  }
  Kokkos::deep_copy(r.device, h);
  return r;
}

template <class Model, class Images, class R>
double loss_of(Model& model, const Images& images, const R& r, std::uint32_t step) {
  auto logits = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.forward(images, step));
  double l = 0;
  for (std::size_t k = 0; k < logits.size(); ++k) l += double(logits.data()[k]) * r.host[k];
  return l;
}

template <class Shape, class Space>
void check_gradients_by_differences(const regularization& reg, int pixels) {
  vit<Shape, precision::fp32, Space> model(pixels);
  randomize(model, 7);
  model.set_regularization(reg);
  const int batch = 3;
  auto images = random_images<Space>(batch, pixels, Shape::in_channels, 11);
  auto r = random_loss<Space>(batch, Shape::num_classes, 13);
  const std::uint32_t step = 5;  // the masks of this step, in every evaluation below
  loss_of(model, images, r, step);
  model.backward(r.device);

  std::mt19937 rng(17);
  std::normal_distribution<double> normal(0.0, 1.0);
  const auto& table = model.parameters().table();
  for (int i = 0; i < int(table.size()); ++i) {
    const std::string name = table[i].full_name();
    const std::vector<float> theta = model.parameter(i), grad = model.gradient(i);
    std::vector<double> dir(theta.size());
    double analytic = 0, norm = 0;
    for (std::size_t k = 0; k < dir.size(); ++k) {
      dir[k] = normal(rng);
      analytic += double(grad[k]) * dir[k];
      norm += dir[k] * dir[k];
    }
    const double eps = 2e-3 / std::sqrt(norm / double(dir.size()));
    std::vector<float> moved(theta.size());
    auto at = [&](double s) {
      for (std::size_t k = 0; k < moved.size(); ++k) moved[k] = float(double(theta[k]) + s * dir[k]);
      model.set_parameter(i, moved.data(), moved.size());
      return loss_of(model, images, r, step);
    };
    const double plus = at(eps), minus = at(-eps);
    const double numeric = (plus - minus) / (2 * eps);
    model.set_parameter(i, theta.data(), theta.size());
    // Relative to the size of the whole gradient along V (|∇L|·|V|), so that a tensor whose directional
    // derivative happens to be small is not held to a tighter bound than the rounding allows.
    double gnorm = 0;
    for (float g : grad) gnorm += double(g) * g;
    // Plus the rounding of the float forward itself: a few ulp of |L| per evaluation, divided by 2ε (this
    // is all a gradient that is zero in exact arithmetic, such as a key bias's, can be compared to). 1e-6
    // (about 8 ulp): the key-norm bias's finite difference measured 4.4e-7·(|L+| + |L-|)/2ε in a -O2
    // sanitizer build, whose contractions round differently from the -O3 build's.
    const double scale = std::sqrt(gnorm * norm);
    const double rounding = 1e-6 * (std::abs(plus) + std::abs(minus)) / (2 * eps);
    INFO(name << ": analytic " << analytic << ", finite differences " << numeric << ", rounding " << rounding);
    CHECK(std::abs(analytic - numeric) <= 2e-3 * scale + rounding);
  }
}

template <class... Opts>
using tiny = vit_shape<2, 16, 2, 32, 4, options<opt::classes<5>, opt::resolution<12>, Opts...>>;

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("vit gradients by finite differences", Space, vit_fd) {
  SUBCASE("classic, class token without a position entry (big_vision), pre-logits, tanh GELU, dropout, drop-path") {
    using shape = tiny<opt::cls_posemb<false>, opt::pre_logits<12>, opt::gelu_tanh>;
    check_gradients_by_differences<shape, Space>({0.1, 0.3, 42}, 12);
  }
  SUBCASE("parallel block with a QKV bias and full LayerNorms, GAP, dropout, drop-path") {
    using shape = tiny<opt::parallel_block, opt::pool_gap, opt::qk_norm<>>;
    check_gradients_by_differences<shape, Space>({0.1, 0.3, 43}, 12);
  }
  SUBCASE("parallel block (ViT-22B), sin-cos position embedding, MAP, at a second resolution") {
    using shape = tiny<opt::parallel_block, opt::qkv_bias<false>, opt::qk_norm<>, opt::layer_norm<false, false>,
                       opt::sincos_posemb, opt::pool_map>;
    check_gradients_by_differences<shape, Space>({}, 16);
  }
}
VITSCALE_ON_HOST_SPACES(vit_fd);

TEST_CASE_TEMPLATE_DEFINE("vit: steady-state training allocates nothing and is deterministic", Space, vit_steady) {
  using shape = tiny<opt::pool_map, opt::qk_norm<>>;
  vit<shape, precision::bf16_mixed, Space> model(init::big_vision{3, -1.0f});
  randomize(model, 5);
  model.set_regularization({0.1, 0.1, 9});
  auto images = random_images<Space>(4, 12, 3, 1);
  auto r = random_loss<Space>(4, 5, 2);
  std::vector<std::vector<float>> first;
  for (int step = 0; step < 3; ++step) {
    model.forward(images, 7);
    model.backward(r.device);
    if (step == 0) {
      for (int i = 0; i < int(model.parameters().table().size()); ++i) first.push_back(model.gradient(i));
    } else {
      for (int i = 0; i < int(first.size()); ++i) CHECK(model.gradient(i) == first[i]);  // bit-identical
    }
    model.predict(images);  // inference between steps reuses the training arena
  }
  CHECK(model.activation_allocations() == 1);
  model.reserve(2);  // a smaller batch fits in what is there
  model.forward(random_images<Space>(2, 12, 3, 4));
  CHECK(model.activation_allocations() == 1);
}
VITSCALE_ON_HOST_SPACES(vit_steady);

TEST_CASE_TEMPLATE_DEFINE("vit: bf16_pure runs forward and backward close to fp32", Space, vit_bf16_pure) {
  using shape = tiny<>;
  vit<shape, precision::fp32, Space> ref(12);
  vit<shape, precision::bf16_pure, Space> model(12);
  randomize(ref, 21);
  randomize(model, 21);
  auto images = random_images<Space>(2, 12, 3, 22);
  auto r = random_loss<Space>(2, 5, 23);
  auto a = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), ref.forward(images));
  auto b = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.forward(images));
  double err = 0, scale = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    err = std::max(err, double(std::abs(a.data()[k] - b.data()[k])));
    scale = std::max(scale, double(std::abs(a.data()[k])));
  }
  CHECK(err <= 5e-2 * scale);
  ref.backward(r.device);
  model.backward(r.device);
  for (int i = 0; i < int(ref.parameters().table().size()); ++i) {
    const auto ga = ref.gradient(i), gb = model.gradient(i);
    double e = 0, s = 1e-3;
    for (std::size_t k = 0; k < ga.size(); ++k) {
      e = std::max(e, double(std::abs(ga[k] - gb[k])));
      s = std::max(s, double(std::abs(ga[k])));
    }
    INFO(ref.parameters().table()[i].full_name() << ": bf16_pure vs fp32 gradient error " << e / s);
    CHECK(e <= 0.1 * s);
  }
}
VITSCALE_ON_HOST_SPACES(vit_bf16_pure);

TEST_CASE_TEMPLATE_DEFINE("vit: bad input is a vitscale::error", Space, vit_errors) {
  using shape = tiny<>;
  vit<shape, precision::fp32, Space> model(init::timm{1});
  CHECK_THROWS_AS(model.backward(dlogits_view<Space>("dl", 2, 5)), vitscale::error);  // no forward yet
  CHECK_THROWS_AS(model.forward(random_images<Space>(2, 16, 3, 1)), vitscale::error);  // wrong resolution
  CHECK_THROWS_AS(model.forward(random_images<Space>(2, 12, 1, 1)), vitscale::error);  // wrong channels
  CHECK_THROWS_AS(model.forward(random_images<Space>(0, 12, 3, 1)), vitscale::error);  // empty batch
  model.forward(random_images<Space>(2, 12, 3, 1));
  CHECK_THROWS_AS(model.backward(dlogits_view<Space>("dl", 3, 5)), vitscale::error);  // batch mismatch
  model.predict(random_images<Space>(3, 12, 3, 1));
  CHECK_THROWS_AS(model.backward(dlogits_view<Space>("dl", 3, 5)), vitscale::error);  // predict keeps nothing
  CHECK_THROWS_AS(model.set_resolution(14), vitscale::error);                          // not a multiple of 4
  CHECK_THROWS_AS(model.set_regularization({1.0, 0.0, 0}), vitscale::error);
  std::vector<float> wrong(3);
  CHECK_THROWS_AS(model.set_parameter(0, wrong.data(), wrong.size()), vitscale::error);
}
VITSCALE_ON_HOST_SPACES(vit_errors);

TEST_CASE_TEMPLATE_DEFINE("vit parameters to and from safetensors under timm's names", Space, vit_io) {
  using shape = tiny<>;
  const std::string path = "vit_io_test_" + std::string(Space::name()) + ".safetensors";
  SUBCASE("fp32 round trip, bit for bit, with metadata") {
    vit<shape, precision::fp32, Space> a(init::timm{4}), b(12);
    io::save_parameters(a, path, {{"model", "tiny"}});
    io::load_parameters(b, path);
    for (int i = 0; i < int(a.parameters().table().size()); ++i) CHECK(a.parameter(i) == b.parameter(i));
    CHECK(io::safetensors_reader(path).metadata().at("model") == "tiny");
    CHECK(io::unused_tensors(b, path).empty());
  }
  SUBCASE("bf16 parameters are written as BF16 and come back exactly") {
    vit<shape, precision::bf16_pure, Space> a(init::big_vision{4, -10.0f}), b(12);
    io::save_parameters(a, path);
    CHECK(io::safetensors_reader(path).entry("head.bias").type == io::dtype::bf16);
    io::load_parameters(b, path);
    for (int i = 0; i < int(a.parameters().table().size()); ++i) CHECK(a.parameter(i) == b.parameter(i));
  }
  SUBCASE("a file of another shape: every problem in one error, the model untouched") {
    vit<shape, precision::fp32, Space> a(init::timm{4});
    io::save_parameters(a, path);
    vit<tiny<opt::pool_map, opt::qk_norm<>>, precision::fp32, Space> other(init::timm{5});
    const auto before = other.parameter(0);
    CHECK_THROWS_WITH_AS(io::load_parameters(other, path), doctest::Contains("missing: attn_pool.latent"),
                         vitscale::error);
    CHECK(other.parameter(0) == before);
    vit<shape, precision::fp32, Space> larger(16);
    CHECK_THROWS_WITH_AS(io::load_parameters(larger, path), doctest::Contains("pos_embed: the file has [1, 10, 16]"),
                         vitscale::error);
  }
  std::remove(path.c_str());
}
VITSCALE_ON_HOST_SPACES(vit_io);
