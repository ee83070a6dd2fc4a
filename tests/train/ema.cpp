// The EMA of the parameters (optim::ema_policy, train/optimizer.hpp) on every host space:
//  - off by default, and then nothing is allocated; options checked with a sentence;
//  - d_t is timm's ModelEmaV3.get_decay(t) (the first applied step copies; update_after_step; the warmup);
//  - for every rule (SGD-momentum, AdamW, Adam with a bf16 moment, Adafactor, Lion) with float and bf16
//    parameters, the EMA equals a double-precision EMA of the stored (rounded) parameter trajectory;
//  - a skipped step (non-finite gradients) leaves it unchanged, and the next applied step's decay is that of
//    the applied-step count;
//  - use_ema() runs the model with the EMA and gives the training parameters back bit for bit (a ViT whose
//    bf16 weight copy must follow), reset_ema() copies the parameters.
#include <support/errors.hpp>
#include <support/spaces.hpp>
#include <support/testing.hpp>
#include <vitscale/config/accounting.hpp>
#include <vitscale/model/vit.hpp>
#include <vitscale/train/optimizers.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace vs = vitscale;
namespace optim = vitscale::optimizer;

namespace {

std::vector<vs::tensor_info> ema_table() {
  using vs::component;
  using vs::tensor_role;
  return {
      {"a.weight", 0, component::block, tensor_role::weight, 2, {40, 34, 1, 1}},
      {"b.weight", 0, component::block, tensor_role::weight, 2, {32, 48, 1, 1}},
      {"head.weight", -1, component::classifier, tensor_role::weight, 2, {10, 16, 1, 1}},
      {"a.bias", 0, component::block, tensor_role::bias, 1, {50, 1, 1, 1}},
      {"norm.weight", -1, component::final_norm, tensor_role::norm_scale, 1, {1, 1, 1, 1}},
  };
}

template <class V, class F>
void fill_with(const V& v, F f) {
  auto host = Kokkos::create_mirror_view(v);
  for (std::size_t k = 0; k < v.extent(0); ++k) host(k) = static_cast<typename V::non_const_value_type>(float(f(double(k))));
  Kokkos::deep_copy(v, host);
}

// A tensor_set that counts parameters_changed() (the model hook use_ema calls).
template <class Param, class Space>
struct counting_set : optim::tensor_set<Param, Param, Space, Param> {
  using optim::tensor_set<Param, Param, Space, Param>::tensor_set;
  int changed = 0;
  void parameters_changed() { ++changed; }
};

optim::ema_policy policy_with(double decay, bool warmup = false) {
  optim::ema_policy e;
  e.decay = decay;
  e.use_warmup = warmup;
  return e;
}

// Steps with an EMA of `ema`, mirrored in double: after each step the stored parameters (read back, exact as
// doubles) enter ref ← d_t·ref + (1 − d_t)·p with the d_t written here from timm's formula, not taken from
// the optimizer. Tolerance (a float EMA of exact values): a step rounds p − a (≤ 2^-24·2M, M = max|p|), w·(p − a)
// (≤ 2^-24·2M) and the sum (≤ 2^-24·M), 5·2^-24·M in all, and earlier errors are carried on times d_t ≤ 1: after
// 9 steps at most 45·2^-24·M ≈ 2.7e-6·M; 3e-6·M is allowed (measured: printed below).
template <class Opt, class Set>
void against_double(const char* name, typename Opt::options o) {
  INFO(name);
  Set set(ema_table());
  fill_with(set.parameters().all(), [](double k) { return 0.5 * std::sin(0.731 * k + 0.3); });
  o.weight_decay = {0.3, 0.03};
  o.clip = {5.0, 0.0};
  Opt opt(set, o);
  REQUIRE(opt.has_ema());
  std::vector<double> ref = vs::test::read(set.parameters().all());
  CHECK(vs::test::read(opt.ema()) == ref);  // the EMA starts as the parameters (exact in float)
  const optim::ema_policy& e = o.ema;
  double worst = 0, scale = 0;
  for (int t = 1; t <= 9; ++t) {
    fill_with(set.gradients().all(), [t](double k) { return std::sin(1.37 * k + 0.91 * t + 0.2) * (0.5 + 0.3 * std::cos(0.013 * k)); });
    REQUIRE(opt.step(0.05 * (1.0 - 0.05 * t), 1.0).applied);
    const std::int64_t k = std::max<std::int64_t>(0, t - e.update_after_step - 1);
    double d = 0;
    if (k > 0) d = e.use_warmup ? std::max(std::min(1.0 - std::pow(1.0 + k / e.warmup_gamma, -e.warmup_power), e.decay), e.min_decay) : e.decay;
    CHECK(opt.ema_decay(t) == doctest::Approx(d).epsilon(1e-15));
    const std::vector<double> p = vs::test::read(set.parameters().all());
    for (std::size_t i = 0; i < p.size(); ++i) {
      ref[i] = d * ref[i] + (1 - d) * p[i];
      scale = std::max(scale, std::fabs(p[i]));
    }
    const std::vector<double> got = vs::test::read(opt.ema());
    for (std::size_t i = 0; i < p.size(); ++i) worst = std::max(worst, std::fabs(got[i] - ref[i]));
    vs::test::check_close(got, ref, 0.0, std::string(name) + " EMA at step " + std::to_string(t), 3e-6 * scale);
    if (t == 1) CHECK(got == p);  // d_1 = 0: an exact copy
  }
  // The EMA lags: it is not the parameters (the test would not see a missing update otherwise).
  CHECK(vs::test::read(opt.ema()) != vs::test::read(set.parameters().all()));
  MESSAGE(std::string(name) << ": max |EMA - double reference| " << worst << " (max |p| " << scale << ")");
}

}  // namespace

TEST_CASE("ema: off by default allocates nothing; options are checked with a sentence") {
  using set_type = optim::tensor_set<float, float, Kokkos::DefaultHostExecutionSpace>;
  set_type set(ema_table());
  optim::adamw<set_type> off(set);
  CHECK_FALSE(off.has_ema());
  CHECK(off.ema_bytes() == 0);
  CHECK(off.ema().extent(0) == 0);
  CHECK(off.ema().data() == nullptr);
  CHECK_ERROR(off.use_ema(), "optimizer::adamw::use_ema: this optimizer keeps no EMA of the parameters");
  CHECK_ERROR(off.reset_ema(), "keeps no EMA");
  int visited = 0;
  off.visit_ema([&](const std::string&, const auto&, const auto&) { ++visited; });
  CHECK(visited == 0);

  const auto with = [&](auto edit) {
    typename optim::sgd_momentum<set_type>::options o;
    o.ema.decay = 0.999;
    edit(o.ema);
    optim::sgd_momentum<set_type> opt(set, o);
  };
  CHECK_ERROR(with([](optim::ema_policy& e) { e.decay = 1.0; }), "optimizer::sgd_momentum: ema.decay must be in [0, 1)", "got 1");
  CHECK_ERROR(with([](optim::ema_policy& e) { e.decay = -0.5; }), "ema.decay must be in [0, 1)");
  CHECK_ERROR(with([](optim::ema_policy& e) { e.decay = std::numeric_limits<double>::quiet_NaN(); }), "ema.decay");
  CHECK_ERROR(with([](optim::ema_policy& e) { e.min_decay = 0.9995; }), "ema.min_decay must be in [0, ema.decay]");
  CHECK_ERROR(with([](optim::ema_policy& e) { e.warmup_gamma = 0; }), "ema.warmup_gamma and ema.warmup_power must be finite and > 0");
  CHECK_ERROR(with([](optim::ema_policy& e) { e.warmup_power = std::numeric_limits<double>::infinity(); }), "warmup_power");
  CHECK_ERROR(with([](optim::ema_policy& e) { e.update_after_step = -1; }), "ema.update_after_step must be >= 0");

  // On: one float per parameter, whatever the parameters' type.
  using bf16_set = optim::tensor_set<vs::bf16, vs::bf16, Kokkos::DefaultHostExecutionSpace, vs::bf16>;
  bf16_set half(ema_table());
  typename optim::adamw<bf16_set>::options o;
  o.ema.decay = 0.9998;
  const optim::adamw<bf16_set> on(half, o);
  CHECK(on.has_ema());
  CHECK(on.ema_bytes() == 4 * half.parameters().size());
  CHECK(on.state_bytes() == 2 * 2 * half.parameters().size());  // the moments alone, as the accounting's state
}

TEST_CASE("ema: the decay is timm's ModelEmaV3.get_decay") {
  using set_type = optim::tensor_set<float, float, Kokkos::DefaultHostExecutionSpace>;
  set_type set(ema_table());
  const auto decay_of = [&](optim::ema_policy e, std::int64_t t) {
    typename optim::lion<set_type>::options o;
    o.ema = e;
    return optim::lion<set_type>(set, o).ema_decay(t);
  };
  optim::ema_policy plain = policy_with(0.9998);
  CHECK(decay_of(plain, 1) == 0.0);  // timm: step − 1 ≤ 0 → 0, the first update copies
  CHECK(decay_of(plain, 2) == 0.9998);
  CHECK(decay_of(plain, 100000) == 0.9998);
  plain.update_after_step = 3;
  CHECK(decay_of(plain, 4) == 0.0);
  CHECK(decay_of(plain, 5) == 0.9998);
  // Warmup, γ = 1, power = 2/3 (timm's defaults): 1 − (1 + k)^(−2/3) with k = t − 1; 0.999 at k = 31622.
  optim::ema_policy warm = policy_with(0.9999, true);
  CHECK(decay_of(warm, 1) == 0.0);
  CHECK(decay_of(warm, 2) == doctest::Approx(1.0 - std::pow(2.0, -2.0 / 3.0)).epsilon(1e-14));
  CHECK(decay_of(warm, 11) == doctest::Approx(1.0 - std::pow(11.0, -2.0 / 3.0)).epsilon(1e-14));
  CHECK(decay_of(warm, 31624) == doctest::Approx(0.999).epsilon(1e-6));
  CHECK(decay_of(warm, 100000000) == 0.9999);  // capped at decay
  warm.min_decay = 0.5;
  CHECK(decay_of(warm, 2) == 0.5);  // 0.37 raised to min_decay
  CHECK(decay_of(warm, 1) == 0.0);  // but the copy stays a copy, as in timm
  warm.warmup_gamma = 10;
  warm.warmup_power = 0.75;
  warm.min_decay = 0;
  CHECK(decay_of(warm, 21) == doctest::Approx(1.0 - std::pow(3.0, -0.75)).epsilon(1e-14));
}

TEST_CASE_TEMPLATE_DEFINE("ema: every rule, float and bf16 parameters, against a double-precision EMA", Space, ema_double) {
  using f32 = optim::tensor_set<float, float, Space>;
  using b16 = optim::tensor_set<vs::bf16, vs::bf16, Space, vs::bf16>;
  const auto opts = [](auto* tag, optim::ema_policy e) {
    typename std::remove_pointer_t<decltype(tag)>::options o;
    o.ema = e;
    return o;
  };
  const optim::ema_policy plain = policy_with(0.8);
  optim::ema_policy warm = policy_with(0.95, true);
  warm.update_after_step = 1;
  against_double<optim::sgd_momentum<f32>, f32>("SGD-momentum, fp32", opts((optim::sgd_momentum<f32>*)nullptr, plain));
  against_double<optim::adamw<f32>, f32>("AdamW, fp32, warmup", opts((optim::adamw<f32>*)nullptr, warm));
  against_double<optim::adam_bf16_momentum<f32>, f32>("Adam bf16 momentum, fp32", opts((optim::adam_bf16_momentum<f32>*)nullptr, plain));
  against_double<optim::adafactor<f32>, f32>("Adafactor, fp32", opts((optim::adafactor<f32>*)nullptr, plain));
  against_double<optim::lion<f32>, f32>("Lion, fp32", opts((optim::lion<f32>*)nullptr, warm));
  against_double<optim::sgd_momentum<b16>, b16>("SGD-momentum, bf16", opts((optim::sgd_momentum<b16>*)nullptr, plain));
  against_double<optim::adamw<b16>, b16>("AdamW, bf16 parameters and moments", opts((optim::adamw<b16>*)nullptr, plain));
  against_double<optim::adam_bf16_momentum<b16>, b16>("Adam bf16, bf16 parameters", opts((optim::adam_bf16_momentum<b16>*)nullptr, warm));
  against_double<optim::adafactor<b16>, b16>("Adafactor, bf16", opts((optim::adafactor<b16>*)nullptr, warm));
  against_double<optim::lion_bf16_momentum<b16>, b16>("Lion, bf16", opts((optim::lion_bf16_momentum<b16>*)nullptr, plain));
}
VITSCALE_ON_HOST_SPACES(ema_double);

TEST_CASE_TEMPLATE_DEFINE("ema: a skipped step leaves the EMA unchanged", Space, ema_skip) {
  using set_type = optim::tensor_set<float, float, Space>;
  set_type set(ema_table());
  fill_with(set.parameters().all(), [](double k) { return std::cos(0.3 * k); });
  typename optim::adamw<set_type>::options o;
  o.ema = policy_with(0.9);
  o.non_finite.skip_in_a_row = 1;
  optim::adamw<set_type> opt(set, o);
  const auto gradient = [&](int t, bool nan) {
    fill_with(set.gradients().all(), [&](double k) {
      return nan && k == 77 ? std::numeric_limits<double>::quiet_NaN() : std::sin(0.7 * k + t);
    });
  };
  for (int t = 0; t < 3; ++t) {
    gradient(t, false);
    REQUIRE(opt.step(1e-2).applied);
  }
  const auto ema_before = vs::test::bytes(opt.ema());
  const auto p_before = vs::test::bytes(set.parameters().all());
  gradient(3, true);
  CHECK_FALSE(opt.step(1e-2).applied);
  CHECK(vs::test::bytes(opt.ema()) == ema_before);
  CHECK(vs::test::bytes(set.parameters().all()) == p_before);
  // The next applied step is the 4th: its decay, from the EMA as it was.
  gradient(4, false);
  REQUIRE(opt.step(1e-2).applied);
  CHECK(opt.steps() == 4);
  const std::vector<double> a = vs::test::read(opt.ema()), p = vs::test::read(set.parameters().all());
  std::vector<double> want(a.size());
  std::vector<float> before(a.size());
  std::memcpy(before.data(), ema_before.data(), ema_before.size());
  for (std::size_t i = 0; i < a.size(); ++i) want[i] = 0.9 * double(before[i]) + 0.1 * p[i];
  vs::test::check_close(a, want, 0.0, "EMA after the skipped step", 1e-6);  // one float step: 5·2^-24·max|p|
}
VITSCALE_ON_HOST_SPACES(ema_skip);

TEST_CASE_TEMPLATE_DEFINE("ema: use_ema runs with the EMA and gives the parameters back bit for bit", Space, ema_scope) {
  const auto check = [](auto* tag, const char* name) {
    using set_type = std::remove_pointer_t<decltype(tag)>;
    using PT = typename set_type::param_type;
    INFO(name);
    set_type set(ema_table());
    fill_with(set.parameters().all(), [](double k) { return 0.25 * std::sin(1.1 * k); });
    typename optim::sgd_momentum<set_type, PT>::options o;
    o.ema = policy_with(0.7);
    optim::sgd_momentum<set_type, PT> opt(set, o);
    for (int t = 0; t < 4; ++t) {
      fill_with(set.gradients().all(), [t](double k) { return std::cos(0.9 * k - t); });
      opt.step(0.1);
    }
    const auto params = vs::test::bytes(set.parameters().all());
    const auto shadow = vs::test::bytes(opt.ema());
    const std::vector<double> ema_values = vs::test::read(opt.ema());
    REQUIRE(ema_values != vs::test::read(set.parameters().all()));
    const int changed = set.changed;
    {
      auto scope = opt.use_ema();
      CHECK(opt.ema_in_use());
      CHECK(set.changed == changed + 1);
      // The model holds the EMA, rounded into its type.
      std::vector<double> want = ema_values;
      for (double& x : want) x = double(float(static_cast<PT>(float(x))));
      CHECK(vs::test::read(set.parameters().all()) == want);
      // Training, re-initialising, saving or a second scope are refused meanwhile.
      CHECK_ERROR(opt.step(0.1), "an EMA scope is open");
      CHECK_ERROR(opt.reset_ema(), "an EMA scope is open");
      CHECK_ERROR(opt.use_ema(), "an EMA scope is open");
      CHECK_ERROR(opt.visit_ema([](const std::string&, const auto&, const auto&) {}), "an EMA scope is open");
      auto moved = std::move(scope);  // a scope moves; only the last one restores
      scope.restore();
      CHECK(opt.ema_in_use());
    }
    CHECK_FALSE(opt.ema_in_use());
    CHECK(set.changed == changed + 2);
    CHECK(vs::test::bytes(set.parameters().all()) == params);
    CHECK(vs::test::bytes(opt.ema()) == shadow);
    // restore() ends it early, and twice is once.
    auto scope = opt.use_ema();
    scope.restore();
    scope.restore();
    CHECK(vs::test::bytes(set.parameters().all()) == params);
    CHECK(vs::test::bytes(opt.ema()) == shadow);
    // Training goes on from the same parameters; reset_ema copies them.
    CHECK(opt.step(0.1).applied);
    opt.reset_ema();
    CHECK(vs::test::read(opt.ema()) == vs::test::read(set.parameters().all()));
  };
  check(static_cast<counting_set<float, Space>*>(nullptr), "float parameters (swapped with the shadow)");
  check(static_cast<counting_set<vs::bf16, Space>*>(nullptr), "bf16 parameters (kept aside)");
}
VITSCALE_ON_HOST_SPACES(ema_scope);

namespace {
using ema_shape = vs::vit_shape<1, 32, 2, 64, 4, vs::options<vs::opt::classes<10>, vs::opt::resolution<16>>>;
}

// A ViT keeps a bf16 copy of its weights under bf16_mixed: use_ema must refresh it (parameters_changed), and
// the training parameters' logits must come back bit for bit.
TEST_CASE("ema: a ViT evaluated with its EMA, and back") {
  using space = Kokkos::DefaultHostExecutionSpace;
  using model_type = vs::vit<ema_shape, vs::precision::bf16_mixed, space>;
  model_type model(vs::init::timm{3});
  Kokkos::View<float****, Kokkos::LayoutRight, space::memory_space> images("images", 3, 16, 16, 3);
  std::mt19937 rng(5);
  vs::test::fill_random(images, rng, -1.0, 1.0);
  typename optim::adamw<model_type>::options o;
  o.ema = policy_with(0.5);
  optim::adamw<model_type> opt(model, o);
  CHECK(std::int64_t(opt.ema_bytes()) ==
        vs::training_memory<ema_shape, vs::precision::bf16_mixed, vs::optim::adam>(1, 16, vs::parameter_ema::on).parameter_ema);
  CHECK(vs::training_memory<ema_shape, vs::precision::bf16_mixed, vs::optim::adam>(1).parameter_ema == 0);
  for (int t = 0; t < 3; ++t) {
    fill_with(model.gradients().all(), [t](double k) { return 0.1 * std::sin(0.37 * k + t); });
    opt.step(1e-2);
  }
  const std::vector<double> trained = vs::test::read(model.predict(images));
  std::vector<double> with_ema;
  {
    auto scope = opt.use_ema();
    with_ema = vs::test::read(model.predict(images));
  }
  CHECK(vs::test::read(model.predict(images)) == trained);
  CHECK(with_ema != trained);
  // The same logits as a model given the EMA's values as its parameters.
  model_type copy(16);
  const std::vector<double> shadow = vs::test::read(opt.ema());
  const auto& params = copy.parameters();
  for (int i = 0; i < int(params.table().size()); ++i) {
    std::vector<float> v(static_cast<std::size_t>(params.table()[std::size_t(i)].numel()));
    for (std::size_t k = 0; k < v.size(); ++k) v[k] = float(shadow[params.offset(i) + k]);
    copy.set_parameter(i, v.data(), v.size());
  }
  CHECK(vs::test::read(copy.predict(images)) == with_ema);
}
