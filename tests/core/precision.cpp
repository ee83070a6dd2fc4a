// Precision policies: the storage type of each kind of tensor, and what follows from it.
#include <doctest/doctest.h>
#include <vitscale/core/precision.hpp>

#include <type_traits>

namespace vs = vitscale;
namespace p = vitscale::precision;

static_assert(std::is_same_v<p::fp32::param_type, float> && std::is_same_v<p::fp32::act_type, float> &&
              std::is_same_v<p::fp32::gemm_type, float> && std::is_same_v<p::fp32::state_type, float>);
static_assert(std::is_same_v<p::bf16_mixed::param_type, float> && std::is_same_v<p::bf16_mixed::grad_type, float> &&
              std::is_same_v<p::bf16_mixed::act_type, vs::bf16> &&
              std::is_same_v<p::bf16_mixed::gemm_type, vs::bf16> &&
              std::is_same_v<p::bf16_mixed::state_type, float>);
static_assert(std::is_same_v<p::bf16_pure::param_type, vs::bf16> && std::is_same_v<p::bf16_pure::grad_type, vs::bf16> &&
              std::is_same_v<p::bf16_pure::state_type, vs::bf16>);
// Accumulation is float in every policy.
static_assert(std::is_same_v<p::fp32::accum_type, float> && std::is_same_v<p::bf16_mixed::accum_type, float> &&
              std::is_same_v<p::bf16_pure::accum_type, float>);
// Only the mixed policy needs a GEMM-precision copy of its weights.
static_assert(!p::fp32::keeps_weight_copy && p::bf16_mixed::keeps_weight_copy && !p::bf16_pure::keeps_weight_copy);
static_assert(p::is_policy_v<p::fp32> && p::is_policy_v<p::bf16_mixed> && !p::is_policy_v<float>);

// A user's own policy: fp32 everything but bf16 optimizer state.
using bf16_state = p::policy<float, float, float, float, vs::bf16>;
static_assert(p::is_policy_v<bf16_state> && !bf16_state::keeps_weight_copy);

TEST_CASE("precision policies are usable at run time too") {
  CHECK(sizeof(p::bf16_mixed::act_type) == 2);
  CHECK(sizeof(p::bf16_mixed::param_type) == 4);
  CHECK(sizeof(bf16_state::state_type) == 2);
}
