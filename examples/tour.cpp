// The README's tour of the API, compiled with the examples so that it stays true.
#include <vitscale/vit.hpp>

#include <cstdio>

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

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);

  constexpr auto flops = vs::presets::vit_b16::flops(384);  // per image, 2 per multiply-add
  constexpr auto mem = vs::training_memory<vs::presets::vit_b16, vs::precision::bf16_mixed, vs::optim::adafactor>(
      /*batch*/ 256, /*resolution*/ 224);
  // mem.parameters, mem.weight_copy, mem.gradients, mem.optimizer_state, mem.activations, mem.total()
  std::printf("B/16 at 384 px: %.1f GFLOPs forward; training at batch 256, 224 px: %.1f GiB\n", flops.forward / 1e9,
              mem.total() / 1073741824.0);

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
  return 0;
}
