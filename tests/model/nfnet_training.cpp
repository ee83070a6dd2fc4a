// The NFNet trained: its timm initialisation; dropout and stochastic depth against finite differences; and the NFNet
// recipe's optimizer on it — three steps of SGD with Nesterov momentum and adaptive gradient
// clipping (λ = 0.01, DeepMind's unit-wise norms, the classifier spared) on the tiny timm model's batch, against
// PyTorch's torch.optim.SGD with the same clipping (tests/reference/nfnet_reference.py,
// tests/golden/nfnet/tiny_sgd_agc.safetensors).
#include <doctest/doctest.h>
#include <support/spaces.hpp>
#include <support/testing.hpp>

#include <vitscale/io/safetensors.hpp>
#include <vitscale/model/nfnet.hpp>
#include <vitscale/train/loss.hpp>
#include <vitscale/train/sgd_momentum.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace vs = vitscale;

namespace {

using tiny = vs::nfnet_shape<vs::nfnet_depths<1, 2, 1, 1>, vs::nfnet_channels<16, 32, 48, 64>,
                             vs::nfnet_options<vs::nfopt::stem_channels<16>, vs::nfopt::group_width<8>,
                                               vs::nfopt::classes<10>, vs::nfopt::resolution<36>>>;

std::vector<float> read(vs::io::safetensors_reader& f, const std::string& name) {
  std::vector<float> v(static_cast<std::size_t>(f.entry(name).numel()));
  f.read(name, v.data(), v.size());
  return v;
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("nfnet trains with SGD-Nesterov and AGC as PyTorch with DeepMind's clipping does", Space,
                          nfnet_sgd_agc_id) {
  const std::string dir = std::string(VITSCALE_TEST_GOLDEN_DIR) + "/nfnet/";
  vs::io::safetensors_reader start(dir + "tiny.safetensors"), want(dir + "tiny_sgd_agc.safetensors");
  using model_t = vs::nfnet<tiny, vs::precision::fp32, Space>;
  model_t model;
  for (int i = 0; i < model.parameters().count; ++i) {
    const auto v = read(start, model.parameters().info(i).full_name());
    model.set_parameter(i, v.data(), v.size());
  }
  using memory = typename Space::memory_space;
  Kokkos::View<float****, Kokkos::LayoutRight, memory> images("images", 2, 36, 36, 3);
  Kokkos::View<int*, Kokkos::LayoutRight, memory> labels("labels", 2);
  Kokkos::View<float**, Kokkos::LayoutRight, memory> dlogits("dlogits", 2, 10);
  {
    const auto pixels = read(start, "input.images"), label_values = read(start, "input.labels");
    auto hi = Kokkos::create_mirror_view(images);
    auto hl = Kokkos::create_mirror_view(labels);
    std::copy(pixels.begin(), pixels.end(), hi.data());
    for (int b = 0; b < 2; ++b) hl(b) = static_cast<int>(label_values[std::size_t(b)]);
    Kokkos::deep_copy(images, hi);
    Kokkos::deep_copy(labels, hl);
  }
  typename vs::optimizer::sgd_momentum<model_t>::options o;
  o.momentum = 0.9;
  o.nesterov = true;
  o.clip.agc = 0.01;
  vs::optimizer::sgd_momentum<model_t> opt(model, o);
  for (int k = 0; k < 3; ++k) {
    vs::loss::softmax_xent(Space(), model.forward(images), labels, dlogits);
    model.backward(dlogits);
    opt.step(0.05);
  }
  Space().fence();
  const auto& params = model.parameters();
  for (int i = 0; i < params.count; ++i) {
    const std::string name = params.info(i).full_name();
    const auto got = vs::test::read(params.vector(i));
    const auto ref = read(want, name), before = read(start, name);
    // Relative to how far the steps moved the tensor (not to its size), so that the check sees the update.
    double err = 0, moved = 1e-9;
    for (std::size_t k = 0; k < ref.size(); ++k) {
      err = std::max(err, std::abs(got[k] - double(ref[k])));
      moved = std::max(moved, std::abs(double(ref[k]) - double(before[k])));
    }
    INFO(name << ": largest error " << err << ", largest move " << moved);
    CHECK(err <= 1e-3 * moved + 1e-6);
  }
}
VITSCALE_ON_HOST_SPACES(nfnet_sgd_agc_id);

TEST_CASE("nfnet's timm initialisation: kaiming-normal convs, N(0, 0.01²) classifier, unit gains, zero skip gains") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  const vs::nfnet<tiny, vs::precision::fp32, Space> a(vs::init::timm{3}), b(vs::init::timm{3}), c(vs::init::timm{4});
  const auto& p = a.parameters();
  CHECK(vs::test::read(p.all()) == vs::test::read(b.parameters().all()));  // reproducible from the seed
  CHECK(vs::test::read(p.all()) != vs::test::read(c.parameters().all()));
  for (int i = 0; i < p.count; ++i) {
    const auto& t = p.info(i);
    const auto v = vs::test::read(p.vector(i));
    INFO(t.full_name());
    double sum = 0, sq = 0;
    for (double x : v) sum += x, sq += x * x;
    const double n = double(v.size()), mean = sum / n, std = std::sqrt(sq / n - mean * mean);
    switch (t.role) {
      case vs::nfnet_role::conv_weight:
      case vs::nfnet_role::se_weight:
        if (n >= 1000) CHECK(std == doctest::Approx(1 / std::sqrt(double(t.dims[1] * t.dims[2] * t.dims[3]))).epsilon(0.1));
        break;
      case vs::nfnet_role::linear_weight: CHECK(std == doctest::Approx(0.01).epsilon(0.15)); break;
      case vs::nfnet_role::gain: CHECK((mean == 1.0 && std == 0.0)); break;
      case vs::nfnet_role::bias:
      case vs::nfnet_role::skip_gain: CHECK((mean == 0.0 && std == 0.0)); break;
    }
  }
}

TEST_CASE_TEMPLATE_DEFINE("nfnet's dropout and stochastic depth: backward is the derivative of the masked forward",
                          Space, nfnet_regularization_id) {
  // The tiny timm model (random gains and skip gains, so every branch counts), batch 2, with stochastic depth
  // 0.5 on the last block (0.125, 0.25, 0.375 before it) and dropout 0.4: L = Σ logits·probe. A central difference
  // along a random direction of all parameters, in float, against the gradient's projection on it.
  const std::string dir = std::string(VITSCALE_TEST_GOLDEN_DIR) + "/nfnet/";
  vs::io::safetensors_reader start(dir + "tiny.safetensors");
  using model_t = vs::nfnet<tiny, vs::precision::fp32, Space>;
  model_t model;
  for (int i = 0; i < model.parameters().count; ++i) {
    const auto v = read(start, model.parameters().info(i).full_name());
    model.set_parameter(i, v.data(), v.size());
  }
  vs::regularization reg;
  reg.dropout = 0.4;
  reg.drop_path = 0.5;
  reg.seed = 11;
  model.set_regularization(reg);
  using memory = typename Space::memory_space;
  Kokkos::View<float****, Kokkos::LayoutRight, memory> images("images", 2, 36, 36, 3);
  Kokkos::View<float**, Kokkos::LayoutRight, memory> probe("probe", 2, 10);
  std::mt19937 rng(5);
  vs::test::fill_random(images, rng, -1.0, 1.0);
  const auto ps = vs::test::fill_random(probe, rng, -1.0, 1.0);
  auto loss = [&](std::uint32_t step) {
    const auto l = vs::test::read(model.forward(images, step));
    double s = 0;
    for (std::size_t k = 0; k < l.size(); ++k) s += l[k] * ps[k];
    return s;
  };
  // The masks: a step draws the same ones every time, another step others, and predict() none.
  const double l7 = loss(7);
  CHECK(loss(7) == l7);
  CHECK(loss(8) != l7);
  const auto plain = vs::test::read(model.predict(images));
  model.set_regularization(vs::regularization{});
  CHECK(vs::test::read(model.forward(images)) == plain);
  model.set_regularization(reg);

  loss(7);
  model.backward(probe);
  Space().fence();
  const auto g = vs::test::read(model.gradients().all());
  const auto p0 = vs::test::read(model.parameters().all());
  std::vector<double> dir_v(p0.size());
  std::normal_distribution<double> normal;
  for (auto& d : dir_v) d = normal(rng);
  double gv = 0;
  for (std::size_t k = 0; k < g.size(); ++k) gv += g[k] * dir_v[k];
  auto at = [&](double h) {
    std::vector<float> moved(p0.size());
    for (std::size_t k = 0; k < p0.size(); ++k) moved[k] = float(p0[k] + h * dir_v[k]);
    auto host = Kokkos::create_mirror_view(model.parameters().all());
    std::copy(moved.begin(), moved.end(), host.data());
    Kokkos::deep_copy(model.parameters().all(), host);
    return loss(7);
  };
  const double h = 1e-3;
  const double numeric = (at(h) - at(-h)) / (2 * h);
  INFO("directional derivative: backward " << gv << ", central difference " << numeric);
  CHECK(std::abs(gv - numeric) <= 2e-2 * std::abs(numeric));
  // Without the masks in backward the projection would be far off: dropping is not a small perturbation.
  model.set_regularization(vs::regularization{});
  at(0.0);
  model.backward(probe);
  Space().fence();
  const auto g_plain = vs::test::read(model.gradients().all());
  double gv_plain = 0;
  for (std::size_t k = 0; k < g_plain.size(); ++k) gv_plain += g_plain[k] * dir_v[k];
  CHECK(std::abs(gv_plain - numeric) > 2e-2 * std::abs(numeric));
}
VITSCALE_ON_HOST_SPACES(nfnet_regularization_id);
