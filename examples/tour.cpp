// The README's tour of the API, compiled with the examples so that it stays true.
#include <vitscale/vit.hpp>

#include <cstdio>
#include <exception>

namespace vs = vitscale;

// A shape: depth, width, heads, MLP width, patch — plus structural options as tags.
using shape = vs::vit_shape<12, 384, 6, 1536, 16,
                            vs::options<vs::opt::pool_map, vs::opt::qk_norm<>, vs::opt::classes<10>>>;
// The seed papers' models: vit_ti16, vit_s16, vit_b16, vit_b32, vit_l16, vit_h14,
// vit_giant14 (g/14), vit_gigantic14 (G/14), vit_e14, vit_22b — rebound with ::with<...>.
using b16_gap = vs::presets::vit_b16::with<vs::opt::pool_gap, vs::opt::classes<10>>;

// Invalid shapes do not compile, at the line that writes them:
//   using bad = vs::vit_shape<12, 770, 12, 3072, 16>;
//   error: static assertion failed: vit_shape: width must be a multiple of the number of heads ...

// Accounting is constexpr; the resolution is a run-time argument everywhere (default per shape).
static_assert(vs::presets::vit_b16::params().backbone == 85'797'120);  // the Scaling ViT table
static_assert(vs::presets::vit_gigantic14::params().backbone == 1'842'772'352);

// Any error ends the program with its message and status 1 (the function-try-block), never an abort.
int main(int argc, char** argv) try {
  Kokkos::ScopeGuard kokkos(argc, argv);

  constexpr auto flops = vs::presets::vit_b16::flops(384);  // per image, 2 per multiply-add
  constexpr auto mem = vs::training_memory<vs::presets::vit_b16, vs::precision::bf16_mixed, vs::optim::adafactor>(
      /*batch*/ 256, /*resolution*/ 224);
  // mem.parameters, mem.weight_copy, mem.gradients, mem.optimizer_state, mem.activations, mem.total()
  // With block rematerialisation: the block inputs and one block's activations, one more forward of the blocks.
  constexpr auto lean = vs::training_memory<vs::presets::vit_b16, vs::precision::bf16_mixed, vs::optim::adafactor>(
      256, 224, vs::parameter_ema::off, vs::rematerialization::blocks);
  static_assert(flops.training_with(vs::rematerialization::blocks) == flops.training + flops.blocks);
  std::printf("B/16 at 384 px: %.1f GFLOPs forward; training at batch 256, 224 px: %.1f GiB (%.1f GiB "
              "rematerialised)\n", flops.forward / 1e9, mem.total() / 1073741824.0, lean.total() / 1073741824.0);

  // The parameter table every parameter-shaped buffer follows (timm's names and shapes):
  for (const vs::tensor_info& t : vs::tensor_table<shape>(224))
    if (t.block < 1) std::printf("  %-28s %lld values\n", t.full_name().c_str(), static_cast<long long>(t.numel()));
  std::printf("  ... %d tensors, %lld parameters\n", vs::tensor_count<shape>(),
              static_cast<long long>(shape::params().total));
  std::printf("b16_gap: %d tokens at 224 px\n", b16_gap::tokens());

  // Precision policies: fp32, bf16_mixed (fp32 master weights, bf16 activations and GEMM inputs),
  // bf16_pure; accumulation is float in all. vs::bf16 rounds to nearest even and works inside kernels.
  Kokkos::View<vs::bf16*> h("h", 3);
  Kokkos::parallel_for(3, KOKKOS_LAMBDA(int i) { h(i) = 1.0f / (i + 1); });
  Kokkos::fence();
  std::printf("bf16(1/3) = %.8f\n", static_cast<double>(float(h(2))));

  // Kernels: the execution-space instance first, shapes checked on entry.
  using space = Kokkos::DefaultHostExecutionSpace;
  namespace kn = vs::kernels;
  const int rows = 197, dim = 64, hidden = 256, heads = 1;
  Kokkos::View<float**> x("x", rows, dim), w("w", hidden, dim), h1("h", rows, hidden), y("y", rows, dim);
  Kokkos::View<float*> b("b", hidden), gamma("gamma", dim), beta("beta", dim), mean("mean", rows), rstd("rstd", rows);
  Kokkos::deep_copy(gamma, 1.0f);
  Kokkos::parallel_for(rows * dim, KOKKOS_LAMBDA(int i) { x(i / dim, i % dim) = 0.01f * (i % 97) - 0.4f; });
  Kokkos::parallel_for(hidden * dim, KOKKOS_LAMBDA(int i) { w(i / dim, i % dim) = 0.001f * (i % 31) - 0.015f; });
  kn::gemm(space(), kn::gemm_op::n, kn::gemm_op::t, 1.0f, x, w, 0.0f, h1, kn::gemm_epilogue::bias_gelu_tanh, b);
  kn::layernorm_forward<true, true>(space(), x, gamma, beta, y, mean, rstd, 1e-6f);
  // q, k and v as strided views into one [1, N, 3, H, d] buffer, as timm's qkv projection lays them out.
  Kokkos::View<float*****> qkv("qkv", 1, rows, 3, heads, dim);
  Kokkos::parallel_for(rows * 3 * dim, KOKKOS_LAMBDA(int i) { qkv(0, i / (3 * dim), (i / dim) % 3, 0, i % dim) = 0.001f * (i % 89); });
  auto q = Kokkos::subview(qkv, Kokkos::ALL, Kokkos::ALL, 0, Kokkos::ALL, Kokkos::ALL);
  auto k = Kokkos::subview(qkv, Kokkos::ALL, Kokkos::ALL, 1, Kokkos::ALL, Kokkos::ALL);
  auto v = Kokkos::subview(qkv, Kokkos::ALL, Kokkos::ALL, 2, Kokkos::ALL, Kokkos::ALL);
  Kokkos::View<float****> o("o", 1, rows, heads, dim);
  Kokkos::View<float***> lse("lse", 1, heads, rows);
  kn::attention_forward<64>(space(), q, k, v, o, lse, 0.125f);
  Kokkos::fence();
  std::printf("kernels: h(0,0) = %.6f, y(0,0) = %.6f, o(0,0,0,0) = %.6f\n", static_cast<double>(h1(0, 0)),
              static_cast<double>(y(0, 0)), static_cast<double>(o(0, 0, 0, 0)));

  // The model: shape, precision policy, execution space. Parameters, gradients and activations are arenas
  // (one allocation each); a training loop at a fixed batch allocates nothing after its first step.
  using tiny = vs::vit_shape<2, 64, 4, 128, 4, vs::options<vs::opt::classes<10>, vs::opt::resolution<28>,
                                                          vs::opt::channels<1>, vs::opt::pool_gap>>;
  vs::vit<tiny, vs::precision::bf16_mixed, space> model(vs::init::big_vision{/*seed*/ 0, /*head_bias*/ 0.0f});
  model.set_regularization({/*dropout*/ 0.0, /*drop_path*/ 0.1, /*seed*/ 0});
  Kokkos::View<float****> images("images", 8, 28, 28, 1);  // channels last
  Kokkos::View<float**> dlogits("dlogits", 8, 10);         // from a loss (issue 5 brings them)
  Kokkos::deep_copy(images, 0.5f);
  Kokkos::deep_copy(dlogits, 0.01f);
  auto logits = model.forward(images, /*step*/ 0);  // [8, 10] float, keeps what backward needs
  model.backward(dlogits);                          // every gradient, in model.gradients() (timm's table)
  auto feats = model.features(images);             // frozen features: tokens [8, 49, 64], pooled [8, 64]
  model.set_resolution(56);                         // learned posemb resampled (bicubic, as timm)
  model.set_rematerialization(vs::rematerialization::blocks);  // recompute each block in backward: same gradients
  std::printf("model: logits [%zu, %zu], tokens [%zu, %zu, %zu], %zu parameters, now at %d px\n",
              logits.extent(0), logits.extent(1), feats.tokens.extent(0), feats.tokens.extent(1),
              feats.tokens.extent(2), model.parameters().size(), model.resolution());

  // NFNet, the ConvNet of "ConvNets match ViTs at scale": a compile-time shape (timm's dm_nfnet structure),
  // constexpr accounting, and a model whose units mirror timm's NormFreeNet (same names, same gradients).
  static_assert(vs::presets::nfnet_f0::params().total == 71'489'284);               // timm's dm_nfnet_f0
  static_assert(vs::presets::nfnet_f0::flops(256).forward_macs == 12'384'198'656);  // the paper's 12.38 G
  vs::nfnet<vs::presets::nfnet_fmnist, vs::precision::fp32, space> convnet(vs::init::timm{/*seed*/ 0});
  convnet.set_regularization({/*dropout*/ 0.2, /*drop_path*/ 0.1, /*seed*/ 0});
  auto nf_logits = convnet.forward(images, /*step*/ 0);  // [8, 10]; the optimizers step it as they step a ViT
  convnet.backward(dlogits);
  std::printf("nfnet: logits [%zu, %zu], %zu parameters\n", nf_logits.extent(0), nf_logits.extent(1),
              convnet.parameters().size());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "tour: %s\n", e.what());
  return 1;
}
