// The presets carry the published shapes of the seed papers.
#include <doctest/doctest.h>
#include <vitscale/vit.hpp>

namespace vs = vitscale;
namespace pr = vitscale::presets;

template <class S, int Depth, int Width, int Heads, int Mlp, int Patch, int HeadDim>
constexpr bool shape_is() {
  return S::depth == Depth && S::width == Width && S::heads == Heads && S::mlp_dim == Mlp && S::patch == Patch &&
         S::head_dim == HeadDim && S::resolution == 224 && S::num_classes == 1000 && S::in_channels == 3;
}

// ViT (Dosovitskiy et al.) and AugReg
static_assert(shape_is<pr::vit_ti16, 12, 192, 3, 768, 16, 64>());
static_assert(shape_is<pr::vit_s16, 12, 384, 6, 1536, 16, 64>());
static_assert(shape_is<pr::vit_b16, 12, 768, 12, 3072, 16, 64>());
static_assert(shape_is<pr::vit_b32, 12, 768, 12, 3072, 32, 64>());
static_assert(shape_is<pr::vit_l16, 24, 1024, 16, 4096, 16, 64>());
static_assert(shape_is<pr::vit_h14, 32, 1280, 16, 5120, 14, 80>());
// Scaling ViT (Zhai et al.), PaLI's ViT-e, ViT-22B (Dehghani et al.)
static_assert(shape_is<pr::vit_giant14, 40, 1408, 16, 6144, 14, 88>());
static_assert(shape_is<pr::vit_gigantic14, 48, 1664, 16, 8192, 14, 104>());
static_assert(shape_is<pr::vit_e14, 56, 1792, 16, 15360, 14, 112>());
static_assert(shape_is<pr::vit_22b, 48, 6144, 48, 24576, 14, 128>());

static_assert(pr::vit_b16::block == vs::block_kind::classic && pr::vit_b16::class_token);
static_assert(pr::vit_22b::block == vs::block_kind::parallel && pr::vit_22b::qk_norm && !pr::vit_22b::qkv_bias &&
              !pr::vit_22b::norm_centered && !pr::vit_22b::norm_bias && pr::vit_22b::pool == vs::pooling::map);
static_assert(pr::all::size == 10);

TEST_CASE("presets have the papers' names") {
  CHECK(pr::name<pr::vit_ti16>() == "ViT-Ti/16");
  CHECK(pr::name<pr::vit_b32>() == "ViT-B/32");
  CHECK(pr::name<pr::vit_giant14>() == "ViT-g/14");
  CHECK(pr::name<pr::vit_gigantic14>() == "ViT-G/14");
  CHECK(pr::name<pr::vit_22b>() == "ViT-22B");
  CHECK(pr::name<pr::vit_b16::with<vs::opt::classes<10>>>().empty());
}
