#pragma once
// The model against timm on one golden file: logits, loss, features, tokens and every parameter gradient.

#include <model/golden.hpp>

namespace vitscale::test {

// The shapes of tests/reference/vit_reference.py: depth 2, width 32, 2 heads (head dim 16), MLP 64,
// patch 4, 20 px (5×5 patches), 3 channels, 10 classes.
template <class... Opts>
using small_vit = vit_shape<2, 32, 2, 64, 4, options<opt::classes<10>, opt::resolution<20>, Opts...>>;

using classic_cls = small_vit<>;
using classic_gap = small_vit<opt::pool_gap, opt::gelu_tanh>;
using classic_map = small_vit<opt::pool_map, opt::qk_norm<>>;
using classic_gap_fcnorm = small_vit<opt::pool_gap_fc_norm>;
using parallel_map = small_vit<opt::parallel_block, opt::qkv_bias<false>, opt::qk_norm<>, opt::layer_norm<false, false>,
                               opt::pool_map>;
using sincos_cls = small_vit<opt::sincos_posemb>;

// Tolerances, relative to each tensor's largest reference value: fp32 end to end, and bf16 activations and
// GEMM inputs (8 significant bits; gradients pass through two more roundings than logits).
template <class Policy>
struct timm_tolerance;
template <>
struct timm_tolerance<precision::fp32> {
  static constexpr double output = 1e-4, gradient = 1e-4, fused = 1e-5;
};
template <>
struct timm_tolerance<precision::bf16_mixed> {
  static constexpr double output = 2e-2, gradient = 3e-2, fused = 2e-2;  // measured: 6e-3, 2.2e-2
};

template <class Shape, class Policy, class Space>
void check_against_timm(const std::string& variant, int run_resolution = 0) {
  using tol = timm_tolerance<Policy>;
  golden g(variant);
  vit<Shape, Policy, Space> model(Shape::resolution);
  io::load_parameters(model, g.file.path());  // timm's names, shapes checked
  if (run_resolution != 0) {
    model.set_resolution(run_resolution);  // timm's default: bicubic, antialiased, class-token entry kept
    const int pe = model.parameters().index("pos_embed");
    check_close(model.parameter(pe), g.get("resampled.pos_embed"), 1e-5, "resampled pos_embed");
  }
  auto images = load_images<Space>(g);

  const auto logits = to_host(model.forward(images));
  check_close(logits, g.get("output.logits"), tol::output, "logits");

  // The loss from our logits (softmax cross-entropy, in double), against timm's.
  const auto labels = g.get("input.labels");
  const std::size_t batch = labels.size(), classes = Shape::num_classes;
  double loss = 0;
  for (std::size_t b = 0; b < batch; ++b) {
    double m = -INFINITY, z = 0;
    for (std::size_t c = 0; c < classes; ++c) m = std::max(m, double(logits[b * classes + c]));
    for (std::size_t c = 0; c < classes; ++c) z += std::exp(double(logits[b * classes + c]) - m);
    loss += m + std::log(z) - double(logits[b * classes + std::size_t(labels[b])]);
  }
  loss /= double(batch);
  const double want_loss = g.get("output.loss")[0];
  INFO("loss " << loss << " vs timm " << want_loss);
  CHECK(std::abs(loss - want_loss) <= tol::output * std::max(1.0, std::abs(want_loss)));

  // Backward from timm's dlogits.
  const auto dl = g.get("output.dlogits");
  Kokkos::View<float**, Kokkos::LayoutRight, typename Space::memory_space> dlogits("dlogits", batch, classes);
  auto dl_host = Kokkos::create_mirror_view(dlogits);
  std::copy(dl.begin(), dl.end(), dl_host.data());
  Kokkos::deep_copy(dlogits, dl_host);
  model.backward(dlogits);

  const auto& table = model.parameters().table();
  double scale = 0;  // the largest reference gradient: the floor for gradients that are zero up to rounding
  for (const auto& t : table)
    for (float v : g.get("grad." + t.full_name())) scale = std::max(scale, double(std::abs(v)));
  for (int i = 0; i < int(table.size()); ++i) {
    const std::string name = table[i].full_name();
    check_close(model.gradient(i), g.get("grad." + name), tol::gradient, "grad." + name, 1e-2 * scale);
  }

  // Inference after training: the same logits (up to the fused bias + GELU epilogue of inference, which in
  // bf16 rounds once where training rounds the pre-activation it keeps), and timm's features.
  const auto again = to_host(model.predict(images));
  check_close(again, logits, tol::fused, "predict() vs forward()");
  check_close(again, g.get("output.logits"), tol::output, "predict() logits");
  const auto f = model.features(images);
  check_close(to_host(f.tokens), g.get("output.tokens"), tol::output, "tokens");
  check_close(to_host(f.pooled), g.get("output.features"), tol::output, "pooled features");
}

}  // namespace vitscale::test
