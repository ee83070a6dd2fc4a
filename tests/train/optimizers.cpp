// Optimizers on every host space: 10 steps on fixed tensors against optax 0.2.8
// (tests/reference/optimizer_reference.py) for SGD-momentum (fp32, bf16 + Nesterov), AdamW, Adam with a bf16
// first moment, big_vision's Adafactor (factored both ways, unfactored, with and without the block-RMS clip),
// Lion (fp32, bf16 momentum), AGC and global-norm clipping; weight-decay groups by role on a model's table; state bytes against the
// config's layouts; and a tiny ViT whose loss AdamW brings down.
#include <support/files.hpp>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <support/testing.hpp>
#include <vector>
#include <vitscale/config/accounting.hpp>
#include <vitscale/model/vit.hpp>
#include <vitscale/train/loss.hpp>
#include <vitscale/train/optimizers.hpp>

namespace vs = vitscale;
namespace optim = vitscale::optimizer;

namespace {

nlohmann::json load(const std::string& file) { return vitscale::test::load_golden_json("optim", file + ".json", "optimizer_reference.py"); }

// The reference script's tensors: [out, in] views; two factored matrices (rows > cols, rows < cols), a
// classifier too small to factor, a bias and a norm scale.
std::vector<vs::tensor_info> fixed_table() {
  using vs::component;
  using vs::tensor_role;
  return {
      {"a.weight", 0, component::block, tensor_role::weight, 2, {40, 34, 1, 1}},
      {"b.weight", 0, component::block, tensor_role::weight, 2, {32, 48, 1, 1}},
      {"head.weight", -1, component::classifier, tensor_role::weight, 2, {10, 16, 1, 1}},
      {"a.bias", 0, component::block, tensor_role::bias, 1, {16, 1, 1, 1}},
      {"norm.weight", -1, component::final_norm, tensor_role::norm_scale, 1, {16, 1, 1, 1}},
  };
}

template <class V, class F>
void fill(const V& v, F f) {
  auto host = Kokkos::create_mirror_view(v);
  for (std::size_t k = 0; k < v.extent(0); ++k) host(k) = static_cast<typename V::non_const_value_type>(f(double(k)));
  Kokkos::deep_copy(v, host);
}

template <class V>
std::vector<double> every_third(const V& v) {
  const std::vector<double> all = vs::test::read(v);
  std::vector<double> out;
  for (std::size_t k = 0; k < all.size(); k += 3) out.push_back(all[k]);
  return out;
}

// Runs the script's 10 steps with an optimizer made by make(set) and compares with the golden file.
template <class Space, class Make, class Moment>
void golden(const std::string& name, double rtol, Make make, Moment moment, double moment_rtol) {
  const nlohmann::json ref = load(name);
  using set_type = optim::tensor_set<float, float, Space>;
  set_type set(fixed_table());
  fill(set.parameters().all(), [](double k) { return 0.5 * std::sin(0.731 * k + 0.3); });
  auto opt = make(set);
  const double peak = ref["peak_lr"];
  const int steps = ref["steps"];
  for (int t = 0; t < steps; ++t) {
    fill(set.gradients().all(), [t](double k) {
      return std::sin(1.37 * k + 0.91 * t + 0.2) * (0.5 + 0.25 * (1 + std::cos(0.013 * k)));
    });
    opt.step(peak * (1.0 - 0.05 * t), 1.0 - 0.03 * t);
  }
  CHECK(opt.steps() == steps);
  INFO(name);
  const std::vector<double> got = every_third(set.parameters().all()), want = ref["params"].get<std::vector<double>>();
  double worst = 0;
  for (std::size_t k = 0; k < got.size() && k < want.size(); ++k) worst = std::max(worst, std::fabs(got[k] - want[k]));
  MESSAGE(name << ": max |parameter - optax| after " << steps << " steps " << worst << " (parameter RMS "
               << vs::test::rms(want) << ")");
  vs::test::check_close(got, want, rtol, name + " parameters");
  if (ref.contains("moment"))
    vs::test::check_close(moment(opt), ref["moment"].get<std::vector<double>>(), moment_rtol, name + " first moment");
}

constexpr vs::optim::decay test_decay{0.3, 0.03};
auto no_moment = [](const auto&) { return std::vector<double>(); };

}  // namespace

// Tolerances (relative, with atol = rtol × the tensor's RMS). fp32 state: optax and we round the same float
// formulas in different orders (optax's norms and means are pairwise sums): a few float ulps — 2e-6. bf16
// first moments follow optax's arithmetic (β rounded to bf16, β·m formed in bf16), so SGD and Adam with bf16
// moments meet 5e-6; a stored bf16 moment may still land one bf16 step (2^-8 relative) away where the float
// values sit on a rounding boundary: 1e-2 on the moments. Adafactor's factored scaling (means of g², rsqrt)
// feeds such a flip through 1/√v into the parameters: 2e-4 (measured 1.2e-5 absolute on an RMS of 0.27).
TEST_CASE_TEMPLATE_DEFINE("optim: 10 steps against optax", Space, optim_golden) {
  using set_type = optim::tensor_set<float, float, Space>;
  SUBCASE("SGD momentum, fp32") {
    golden<Space>("sgd_fp32", 2e-6, [](set_type& s) {
      return optim::sgd_momentum<set_type>(s, {0.9, false, test_decay, {}});
    }, no_moment, 0);
  }
  SUBCASE("SGD momentum, bf16 momentum, Nesterov") {
    golden<Space>("sgd_bf16_nesterov", 5e-6, [](set_type& s) {
      return optim::sgd_momentum<set_type, vs::bf16>(s, {0.9, true, test_decay, {}});
    }, [](const auto& o) { return every_third(o.template moment<0>()); }, 1e-2);
  }
  SUBCASE("SGD momentum, global-norm clipping") {
    golden<Space>("sgd_global", 2e-6, [](set_type& s) {
      return optim::sgd_momentum<set_type>(s, {0.9, false, test_decay, {5.0, 0.0}});
    }, no_moment, 0);
  }
  SUBCASE("AdamW") {
    golden<Space>("adamw", 2e-6, [](set_type& s) {
      typename optim::adamw<set_type>::options o;
      o.weight_decay = test_decay;
      return optim::adamw<set_type>(s, o);
    }, no_moment, 0);
  }
  SUBCASE("AdamW with AGC and global-norm clipping") {
    golden<Space>("adamw_agc_global", 2e-6, [](set_type& s) {
      typename optim::adamw<set_type>::options o;
      o.weight_decay = test_decay;
      o.clip = {5.0, 0.02};
      return optim::adamw<set_type>(s, o);
    }, no_moment, 0);
  }
  SUBCASE("Adam, bf16 first moment") {
    golden<Space>("adam_bf16", 5e-6, [](set_type& s) {
      typename optim::adam_bf16_momentum<set_type>::options o;
      o.weight_decay = test_decay;
      return optim::adam_bf16_momentum<set_type>(s, o);
    }, [](const auto& o) { return every_third(o.template moment<0>()); }, 1e-2);
  }
  SUBCASE("Adafactor (big_vision)") {
    golden<Space>("adafactor", 2e-4, [](set_type& s) {
      typename optim::adafactor<set_type>::options o;
      o.weight_decay = test_decay;
      optim::adafactor<set_type> opt(s, o);
      CHECK(opt.factored(0));
      CHECK(opt.factored(1));
      CHECK(!opt.factored(2));
      CHECK(!opt.factored(3));
      return opt;
    }, [](const auto& o) { return every_third(o.template moment<0>()); }, 1e-2);
  }
  SUBCASE("Adafactor with the block-RMS clip") {
    golden<Space>("adafactor_block_rms", 2e-4, [](set_type& s) {
      typename optim::adafactor<set_type>::options o;
      o.weight_decay = test_decay;
      o.clip_threshold = 1.0;
      return optim::adafactor<set_type>(s, o);
    }, no_moment, 0);
  }
  // Lion's update is a sign: float rounding order cannot move it unless (1 − β1)·g + β1·m sits at 0, so the
  // parameters meet optax to float rounding of the decay term.
  SUBCASE("Lion") {
    golden<Space>("lion", 2e-6, [](set_type& s) {
      typename optim::lion<set_type>::options o;
      o.weight_decay = test_decay;
      return optim::lion<set_type>(s, o);
    }, no_moment, 0);
  }
  SUBCASE("Lion, bf16 momentum, AGC") {
    golden<Space>("lion_bf16_agc", 5e-6, [](set_type& s) {
      typename optim::lion_bf16_momentum<set_type>::options o;
      o.weight_decay = test_decay;
      o.clip.agc = 0.02;
      return optim::lion_bf16_momentum<set_type>(s, o);
    }, [](const auto& o) { return every_third(o.template moment<0>()); }, 1e-2);
  }
}
VITSCALE_ON_HOST_SPACES(optim_golden);

namespace {
using small_shape = vs::vit_shape<2, 64, 4, 128, 4, vs::options<vs::opt::classes<10>, vs::opt::resolution<16>>>;
}

TEST_CASE_TEMPLATE_DEFINE("optim: state bytes equal the config's layouts", Space, optim_bytes) {
  using model_type = vs::vit<small_shape, vs::precision::fp32, Space>;
  model_type model;
  const std::int64_t param_bytes = vs::training_memory<small_shape, vs::precision::fp32, vs::optim::sgd_momentum>(1).parameters;
  const optim::sgd_momentum<model_type> sgd(model);
  const optim::sgd_momentum<model_type, vs::bf16> sgd16(model);
  const optim::adamw<model_type> adam(model);
  const optim::adam_bf16_momentum<model_type> adam16(model);
  const optim::adafactor<model_type> ada(model);
  const optim::lion<model_type> lion(model);
  CHECK(std::int64_t(lion.state_bytes()) == param_bytes);
  CHECK(std::int64_t(lion.state_bytes()) ==
        vs::training_memory<small_shape, vs::precision::fp32, vs::optim::lion>(1).optimizer_state);
  CHECK(std::int64_t(sgd.state_bytes()) == param_bytes);
  CHECK(std::int64_t(sgd16.state_bytes()) == param_bytes / 2);
  CHECK(std::int64_t(adam.state_bytes()) == 2 * param_bytes);
  CHECK(std::int64_t(adam16.state_bytes()) == 3 * param_bytes / 2);
  CHECK(std::int64_t(sgd.state_bytes()) ==
        vs::training_memory<small_shape, vs::precision::fp32, vs::optim::sgd_momentum>(1).optimizer_state);
  CHECK(std::int64_t(adam.state_bytes()) ==
        vs::training_memory<small_shape, vs::precision::fp32, vs::optim::adam>(1).optimizer_state);
  CHECK(std::int64_t(adam16.state_bytes()) ==
        vs::training_memory<small_shape, vs::precision::fp32, vs::optim::adam_bf16_momentum>(1).optimizer_state);
  CHECK(std::int64_t(ada.state_bytes()) ==
        vs::training_memory<small_shape, vs::precision::fp32, vs::optim::adafactor>(1).optimizer_state);
  // Adafactor: the bf16 moment (0.5×) plus rows + cols of the factored matrices plus the small tensors whole.
  std::int64_t factored_stats = 0, whole = 0;
  for (const auto& t : vs::tensor_table<small_shape>()) {
    if (vs::optim::adafactor::factored(t))
      factored_stats += t.matrix_rows() + t.matrix_cols();
    else
      whole += t.numel();
  }
  CHECK(factored_stats > 0);
  CHECK(std::int64_t(ada.state_bytes()) == param_bytes / 2 + 4 * (factored_stats + whole));
  MESSAGE("parameters " << param_bytes << " B; SGD " << sgd.state_bytes() << ", Adam " << adam.state_bytes()
                        << ", Adam bf16-m " << adam16.state_bytes() << ", Adafactor " << ada.state_bytes());
}
VITSCALE_ON_HOST_SPACES(optim_bytes);

TEST_CASE_TEMPLATE_DEFINE("optim: decoupled weight decay by group", Space, optim_decay) {
  using model_type = vs::vit<small_shape, vs::precision::fp32, Space>;
  model_type model(vs::init::timm{1});
  const std::vector<double> before = vs::test::read(model.parameters().all());
  typename optim::adamw<model_type>::options o;
  o.weight_decay = {3.0, 0.03};
  optim::adamw<model_type> opt(model, o);
  opt.step(1e-3, 0.1);  // zero gradients: only the decay moves the parameters
  const std::vector<double> after = vs::test::read(model.parameters().all());
  const auto& params = model.parameters();
  for (int i = 0; i < int(params.table().size()); ++i) {
    const vs::tensor_info& t = params.table()[std::size_t(i)];
    const double wd = t.role != vs::tensor_role::weight ? 0.0 : t.part == vs::component::classifier ? 3.0 : 0.03;
    const std::size_t off = params.offset(i);
    std::vector<double> got, want;
    for (std::int64_t k = 0; k < t.numel(); ++k) {
      got.push_back(after[off + std::size_t(k)]);
      want.push_back(before[off + std::size_t(k)] * (1.0 - wd * 0.1));
    }
    vs::test::check_close(got, want, 1e-6, t.full_name(), 1e-12);
  }
}
VITSCALE_ON_HOST_SPACES(optim_decay);

TEST_CASE_TEMPLATE_DEFINE("optim: AdamW trains a tiny ViT", Space, optim_train) {
  using model_type = vs::vit<small_shape, vs::precision::fp32, Space>;
  model_type model(vs::init::timm{1});
  const int batch = 8;
  Kokkos::View<float****, Kokkos::LayoutRight, typename Space::memory_space> images("images", batch, 16, 16, 3);
  vs::vector_view<int, Space> labels("labels", batch);
  vs::matrix_view<float, Space> dlogits("dlogits", batch, 10);
  {
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto h = Kokkos::create_mirror_view(images);
    for (std::size_t k = 0; k < images.size(); ++k) h.data()[k] = normal(rng);
    Kokkos::deep_copy(images, h);
    auto l = Kokkos::create_mirror_view(labels);
    for (int b = 0; b < batch; ++b) l(b) = int(rng() % 10);
    Kokkos::deep_copy(labels, l);
  }
  typename optim::adamw<model_type>::options o;
  o.weight_decay = {1e-4, 1e-4};
  optim::adamw<model_type> opt(model, o);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    last = vs::loss::softmax_xent(Space(), model.forward(images), labels, dlogits);
    if (step == 0) first = last;
    model.backward(dlogits);
    opt.step(3e-3, 3e-3);
  }
  MESSAGE("loss " << first << " -> " << last);
  CHECK(std::isfinite(last));
  CHECK(last < first / 20);
}
VITSCALE_ON_HOST_SPACES(optim_train);

// Non-finite gradients (optimizer.hpp, core/finite.hpp): never applied; an error naming the first tensor, or a
// skipped step while the policy allows (as optax.apply_if_finite); the learning rate as the float it becomes.
TEST_CASE_TEMPLATE_DEFINE("optim: a non-finite gradient is never applied", Space, optim_non_finite) {
  using set_type = optim::tensor_set<float, float, Space>;
  const auto run = [](auto make, const char* name) {
    INFO(name);
    set_type set(fixed_table());
    fill(set.parameters().all(), [](double k) { return 0.5 * std::sin(0.731 * k + 0.3); });
    auto opt = make(set);
    const auto gradient = [&](double bad_at, double bad) {
      fill(set.gradients().all(), [&](double k) { return k == bad_at ? bad : 0.01 * std::cos(0.37 * k); });
    };
    gradient(-1, 0);
    CHECK(opt.step(1e-2).applied);
    const std::vector<double> params = vs::test::read(set.parameters().all());
    const std::int64_t steps = opt.steps();
    // Element 3 of b.weight (a.weight holds 40·34 = 1360 elements before it).
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    gradient(1360 + 3, nan);
    const std::string e = vs::test::error_of([&] { opt.step(1e-2); });
    INFO(e);
    CHECK(e.find("the gradient of 'blocks.0.b.weight' is NaN at element 3 of 1536") != std::string::npos);
    CHECK(e.find("the update was not applied") != std::string::npos);
    CHECK_THROWS_AS(opt.step(1e-2), vs::non_finite_error);
    gradient(5, -inf);
    CHECK(vs::test::error_of([&] { opt.step(1e-2); }).find("'blocks.0.a.weight' is -Inf at element 5") != std::string::npos);
    gradient(7, 1e30);  // finite, but its square is not
    CHECK(vs::test::error_of([&] { opt.step(1e-2); }).find("'blocks.0.a.weight' is finite, but the sum of its squares overflows") !=
          std::string::npos);
    CHECK(vs::test::read(set.parameters().all()) == params);  // bit for bit
    CHECK(opt.steps() == steps);
    // The learning rate as the float the update uses.
    gradient(-1, 0);
    CHECK(vs::test::error_of([&] { opt.step(1e39); }).find("the learning rate 1e+39 is not finite as the float") !=
          std::string::npos);
    CHECK_THROWS_AS(opt.step(nan), vs::non_finite_error);
    CHECK(vs::test::read(set.parameters().all()) == params);
  };
  run([](set_type& s) { return optim::adamw<set_type>(s); }, "adamw");
  run([](set_type& s) { return optim::adafactor<set_type>(s); }, "adafactor");
  run([](set_type& s) {
    typename optim::sgd_momentum<set_type>::options o;
    o.clip = {1.0, 0.01};  // AGC and the global norm: the check comes before both
    return optim::sgd_momentum<set_type>(s, o);
  }, "sgd with clipping");

  // Skipping: up to skip_in_a_row in a row, nothing changes; an applied step resets the count.
  set_type set(fixed_table());
  fill(set.parameters().all(), [](double k) { return 0.5 * std::sin(0.731 * k + 0.3); });
  typename optim::adamw<set_type>::options o;
  o.non_finite.skip_in_a_row = 2;
  optim::adamw<set_type> opt(set, o);
  const std::vector<double> params = vs::test::read(set.parameters().all());
  fill(set.gradients().all(), [](double k) { return k == 0 ? std::numeric_limits<double>::quiet_NaN() : 0.01; });
  CHECK_FALSE(opt.step(1e-2).applied);
  CHECK_FALSE(opt.step(1e-2).applied);
  CHECK(opt.skipped_in_a_row() == 2);
  CHECK(vs::test::read(set.parameters().all()) == params);
  CHECK(opt.steps() == 0);
  CHECK(vs::test::error_of([&] { opt.step(1e-2); }).find("2 steps skipped in a row before it") != std::string::npos);
  fill(set.gradients().all(), [](double) { return 0.01; });
  const vs::optimizer::step_report r = opt.step(1e-2);
  CHECK(r.applied);
  CHECK(r.grad_norm == doctest::Approx(0.01 * std::sqrt(double(set.parameters().size()))).epsilon(1e-5));
  CHECK(opt.skipped_in_a_row() == 0);
  CHECK(opt.skipped_steps() == 2);
  CHECK(opt.steps() == 1);
}
VITSCALE_ON_HOST_SPACES(optim_non_finite);
