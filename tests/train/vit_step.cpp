// A full training step against timm + PyTorch: classic_cls (tests/golden/vit) trained for three AdamW steps on
// its batch by tests/reference/vit_reference.py (PyTorch's AdamW, timm's decay groups: weight matrices and
// the patch kernel decayed, biases, norms, pos_embed and cls_token not) — the same three steps here, with
// vitscale's model, loss and optimizer: every loss and every parameter after the last step.
#include <doctest/doctest.h>
#include <support/spaces.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/model/vit.hpp>
#include <vitscale/train/loss.hpp>
#include <vitscale/train/optimizers.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using namespace vitscale;

namespace {
using classic_cls = vit_shape<2, 32, 2, 64, 4, options<opt::classes<10>, opt::resolution<20>>>;

std::vector<float> read(io::safetensors_reader& f, const std::string& name) {
  std::vector<float> v(static_cast<std::size_t>(f.entry(name).numel()));
  f.read(name, v.data(), v.size());
  return v;
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("three AdamW steps match timm + PyTorch", Space, vit_adamw_steps) {
  const std::string dir = std::string(VITSCALE_TEST_GOLDEN_DIR) + "/vit/";
  io::safetensors_reader start(dir + "classic_cls.safetensors"), want(dir + "classic_cls_adamw.safetensors");
  using model_t = vit<classic_cls, precision::fp32, Space>;
  model_t model(20);
  io::load_parameters(model, dir + "classic_cls.safetensors");

  const auto pixels = read(start, "input.images");
  const auto label_values = read(start, "input.labels");
  const std::size_t batch = label_values.size();
  Kokkos::View<float****, Kokkos::LayoutRight, typename Space::memory_space> images("images", batch, 20, 20, 3);
  Kokkos::View<int*, Kokkos::LayoutRight, typename Space::memory_space> labels("labels", batch);
  Kokkos::View<float**, Kokkos::LayoutRight, typename Space::memory_space> dlogits("dlogits", batch, 10);
  {
    auto hi = Kokkos::create_mirror_view(images);
    auto hl = Kokkos::create_mirror_view(labels);
    std::copy(pixels.begin(), pixels.end(), hi.data());
    for (std::size_t b = 0; b < batch; ++b) hl(b) = static_cast<int>(label_values[b]);
    Kokkos::deep_copy(images, hi);
    Kokkos::deep_copy(labels, hl);
  }

  typename optimizer::adamw<model_t>::options o;
  o.b1 = 0.9;
  o.b2 = 0.999;
  o.eps = 1e-8;
  o.weight_decay = {0.05, 0.05};
  optimizer::adamw<model_t> opt(model, o);
  const double lr = 1e-3;
  for (int k = 0; k < 3; ++k) {
    const double loss = loss::softmax_xent(Space(), model.forward(images), labels, dlogits);
    const double ref = read(want, "adamw.loss." + std::to_string(k))[0];
    INFO("step " << k << ": loss " << loss << ", PyTorch " << ref);
    CHECK(std::abs(loss - ref) <= 1e-5 * std::abs(ref));
    model.backward(dlogits);
    opt.step(lr, lr);  // PyTorch's AdamW: p -= lr·wd·p
  }
  const auto& table = model.parameters().table();
  for (int i = 0; i < int(table.size()); ++i) {
    const std::string name = table[i].full_name();
    const auto got = model.parameter(i), ref = read(want, "adamw." + name);
    // Relative to the change the steps made (not the parameter's size), so the check sees the update.
    const auto before = read(start, name);
    double err = 0, moved = 1e-7;
    // The key rows of the QKV bias get a gradient that is zero in exact arithmetic (softmax ignores a shift
    // shared by all keys); Adam divides that rounding noise by its own size, so those rows move by noise in
    // both implementations and are not compared.
    const bool key_bias = name.size() > 13 && name.compare(name.size() - 13, 13, "attn.qkv.bias") == 0;
    const std::size_t width = static_cast<std::size_t>(table[i].dims[0] / 3);  // rows [q | k | v]
    for (std::size_t j = 0; j < got.size(); ++j) {
      if (key_bias && j >= width && j < 2 * width) continue;
      err = std::max(err, double(std::abs(got[j] - ref[j])));
      moved = std::max(moved, double(std::abs(ref[j] - before[j])));
    }
    INFO(name << ": max error " << err << " against a largest change of " << moved);
    CHECK(err <= 1e-3 * moved);
  }
}
VITSCALE_ON_HOST_SPACES(vit_adamw_steps);
