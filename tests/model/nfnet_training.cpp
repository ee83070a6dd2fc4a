// The NFNet recipe's optimizer on the NFNet: three steps of SGD with Nesterov momentum and adaptive gradient
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
