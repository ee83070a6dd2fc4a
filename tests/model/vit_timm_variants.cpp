// The model's other variants against timm: ViT-22B's parallel block, sin-cos position embedding, and a run
// at a second resolution with the learned position embedding resampled.
#include <model/timm_check.hpp>

using namespace vitscale;
using namespace vitscale::test;

TEST_CASE_TEMPLATE_DEFINE("vit matches timm: ViT-22B parallel block (QK-norm, no QKV bias, RMS norm), MAP", Space,
                          vit_timm_parallel) {
  SUBCASE("fp32") { check_against_timm<parallel_map, precision::fp32, Space>("parallel_map"); }
  SUBCASE("bf16_mixed") { check_against_timm<parallel_map, precision::bf16_mixed, Space>("parallel_map"); }
}
VITSCALE_ON_HOST_SPACES(vit_timm_parallel);

TEST_CASE_TEMPLATE_DEFINE("vit matches timm: 2-D sin-cos position embedding", Space, vit_timm_sincos) {
  check_against_timm<sincos_cls, precision::fp32, Space>("sincos_cls");
}
VITSCALE_ON_HOST_SPACES(vit_timm_sincos);

TEST_CASE("the sin-cos table is big_vision's (as the reference script computed it)") {
  golden g("sincos_cls");
  const auto want = g.get("buffer.pos_embed");
  std::vector<float> got(25 * 32);
  posemb_sincos_2d(5, 5, 32, got.data());
  check_close(got, want, 1e-6, "posemb_sincos_2d(5, 5, 32)");
}

TEST_CASE_TEMPLATE_DEFINE("vit matches timm at a second resolution (learned posemb resampled 20 -> 28 px)", Space,
                          vit_timm_resample) {
  check_against_timm<classic_cls, precision::fp32, Space>("resample_cls", 28);
}
VITSCALE_ON_HOST_SPACES(vit_timm_resample);
