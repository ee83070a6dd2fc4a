// The model's classic variants against timm: class token, GAP (tanh GELU), GAP then fc_norm, MAP with QK-norm.
#include <model/timm_check.hpp>

using namespace vitscale;
using namespace vitscale::test;

TEST_CASE_TEMPLATE_DEFINE("vit matches timm: classic block, class token", Space, vit_timm_cls) {
  SUBCASE("fp32") { check_against_timm<classic_cls, precision::fp32, Space>("classic_cls"); }
  SUBCASE("bf16_mixed") { check_against_timm<classic_cls, precision::bf16_mixed, Space>("classic_cls"); }
}
VITSCALE_ON_HOST_SPACES(vit_timm_cls);

TEST_CASE_TEMPLATE_DEFINE("vit matches timm: classic block, GAP, tanh GELU", Space, vit_timm_gap) {
  check_against_timm<classic_gap, precision::fp32, Space>("classic_gap");
}
VITSCALE_ON_HOST_SPACES(vit_timm_gap);

// timm's global_pool='avg' with fc_norm: no final norm on the tokens, the norm after the mean.
TEST_CASE_TEMPLATE_DEFINE("vit matches timm: classic block, GAP then fc_norm", Space, vit_timm_gap_fcnorm) {
  SUBCASE("fp32") { check_against_timm<classic_gap_fcnorm, precision::fp32, Space>("classic_gap_fcnorm"); }
  SUBCASE("bf16_mixed") {
    check_against_timm<classic_gap_fcnorm, precision::bf16_mixed, Space>("classic_gap_fcnorm");
  }
}
VITSCALE_ON_HOST_SPACES(vit_timm_gap_fcnorm);

TEST_CASE_TEMPLATE_DEFINE("vit matches timm: classic block, QK-norm, MAP head", Space, vit_timm_map) {
  check_against_timm<classic_map, precision::fp32, Space>("classic_map");
}
VITSCALE_ON_HOST_SPACES(vit_timm_map);
