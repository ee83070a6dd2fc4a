// Parameter initialisation: every tensor of small classic and parallel-block (MAP) shapes gets the
// distribution its scheme names (timm's default, big_vision's), checked by statistics within a few standard
// errors and by bounds; the same seed gives the same bytes, another seed other values; a tensor's values
// depend only on the seed and its name (not on other tensors, the thread count, or — beyond its first rows —
// the resolution); and misuse throws vitscale::error.
#include <doctest/doctest.h>
#include <vitscale/model/init.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace vs = vitscale;
using namespace vitscale::opt;

namespace {

// D = 64, F = 128, patch 4 on 3 channels (fan_in 48), 10 classes, 32 px: an 8×8 grid.
using classic = vs::vit_shape<2, 64, 4, 128, 4, vs::options<classes<10>, resolution<32>>>;
using classic_no_qkv_bias = classic::with<qkv_bias<false>>;
// ViT-22B-like: parallel block, no QKV bias (so an mlp_bias), q/k norms, MAP head, pre-logits of 32.
using parallel_map = vs::vit_shape<2, 64, 4, 128, 4,
                                   vs::options<parallel_block, pool_map, qkv_bias<false>, qk_norm<>, classes<10>,
                                               resolution<32>, pre_logits<32>>>;
using parallel_map_qkv_bias = parallel_map::with<qkv_bias<true>>;

constexpr double D = 64, F = 128, fan_in_patch = 48;

static_assert(vs::is_init_scheme_v<vs::init::timm> && vs::is_init_scheme_v<vs::init::big_vision>);
static_assert(!vs::is_init_scheme_v<int> && !vs::is_init_scheme_v<classic>);

using tensors = std::map<std::string, std::vector<float>>;

// The whole arena by init_parameters, cut into tensors by the table (so the layout is checked too).
template <class Shape, class Scheme>
tensors init_all(const Scheme& scheme, int resolution = Shape::resolution) {
  const auto table = vs::tensor_table<Shape>(resolution);
  std::int64_t total = 0;
  for (const auto& t : table) total += t.numel();
  CHECK(total == Shape::params(resolution).total);
  std::vector<float> arena(static_cast<std::size_t>(total) + 1, std::nanf(""));
  arena.back() = 12345.0f;  // a guard past the end
  vs::init_parameters<Shape>(scheme, resolution, arena.data());
  CHECK(arena.back() == 12345.0f);
  tensors out;
  std::int64_t offset = 0;
  for (const auto& t : table) {
    out[t.full_name()].assign(arena.begin() + offset, arena.begin() + offset + t.numel());
    offset += t.numel();
  }
  return out;
}

// ---- expected distributions, written from the rules of timm and big_vision independently of init.hpp
enum class law { constant, uniform, normal, truncated };
struct expected_piece {
  double fraction_end;  // this piece covers elements up to this fraction of the tensor
  law kind;
  double a;         // constant value, uniform bound, or normal stddev (before truncation)
  double cut = 0;  // truncation in stddevs
};
using expectation = std::vector<expected_piece>;

expectation one(law kind, double a, double cut = 0) { return {{1.0, kind, a, cut}}; }

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
// The tensor's name after "blocks.<b>.".
std::string local(const std::string& full) {
  if (full.rfind("blocks.", 0) != 0) return full;
  return full.substr(full.find('.', 7) + 1);
}

bool is_norm(const std::string& n) {
  return n.find("norm") != std::string::npos;  // norm1/2, in_norm, q_norm, k_norm, norm, attn_pool.norm
}

expectation timm_expects(const std::string& full) {
  const std::string n = local(full);
  if (is_norm(n)) return one(law::constant, ends_with(n, ".weight") ? 1.0 : 0.0);
  if (n == "cls_token") return one(law::normal, 1e-6);
  if (n == "pos_embed") return one(law::truncated, 0.02, 100);  // trunc_normal_(std=.02, a=-2, b=2)
  if (n == "patch_embed.proj.weight" || n == "patch_embed.proj.bias")
    return one(law::uniform, 1 / std::sqrt(fan_in_patch));  // Conv2d's kaiming_uniform(a=√5)
  if (n == "attn_pool.latent") return one(law::truncated, 1 / std::sqrt(D), 2);  // trunc_normal_tf_
  if (ends_with(n, ".weight")) return one(law::truncated, 0.02, 100);          // every Linear
  if (ends_with(n, ".bias") || n == "mlp_bias") return one(law::constant, 0);
  FAIL("no timm expectation for " << full);
  return {};
}

expectation big_vision_expects(const std::string& full, double head_bias) {
  const std::string n = local(full);
  const double attn = std::sqrt(6 / (D + D)), mlp = std::sqrt(6 / (D + F));
  if (is_norm(n)) return one(law::constant, ends_with(n, ".weight") ? 1.0 : 0.0);
  if (n == "cls_token") return one(law::constant, 0);
  if (n == "pos_embed") return one(law::normal, 1 / std::sqrt(D));
  if (n == "patch_embed.proj.weight") return one(law::truncated, std::sqrt(1 / fan_in_patch) / .87962566103423978, 2);
  if (n == "pre_logits.fc.weight") return one(law::truncated, std::sqrt(1 / D) / .87962566103423978, 2);
  if (n == "attn_pool.latent") return one(law::uniform, std::sqrt(6 / (1 + D)));
  if (n == "head.weight") return one(law::constant, 0);
  if (n == "head.bias") return one(law::constant, head_bias);
  if (n == "attn.qkv.weight" || n == "attn.proj.weight" || n == "attn_out_proj.weight" || n == "attn_pool.q.weight" ||
      n == "attn_pool.kv.weight" || n == "attn_pool.proj.weight")
    return one(law::uniform, attn);  // per D×D block
  if (n == "mlp.fc1.weight" || n == "mlp.fc2.weight" || n == "mlp_out_proj.weight" || n == "attn_pool.mlp.fc1.weight" ||
      n == "attn_pool.mlp.fc2.weight")
    return one(law::uniform, mlp);
  if (n == "in_proj.weight") {  // rows [F | D | D | D]
    const double rows = F + 3 * D;
    return {{F / rows, law::uniform, mlp}, {(F + D) / rows, law::uniform, attn},
            {(F + 2 * D) / rows, law::uniform, attn}, {1.0, law::uniform, attn}};
  }
  if (n == "in_proj.bias") return {{F / (F + 3 * D), law::normal, 1e-6}, {1.0, law::constant, 0}};
  if (n == "mlp.fc1.bias" || n == "mlp.fc2.bias" || n == "mlp_bias" || n == "mlp_out_proj.bias" ||
      n == "attn_pool.mlp.fc1.bias" || n == "attn_pool.mlp.fc2.bias")
    return one(law::normal, 1e-6);
  if (ends_with(n, ".bias")) return one(law::constant, 0);
  FAIL("no big_vision expectation for " << full);
  return {};
}

// The stddev of a unit normal truncated to ±c.
double truncated_std(double c) {
  const double phi = std::exp(-c * c / 2) / std::sqrt(2 * 3.14159265358979323846);
  const double mass = std::erf(c / std::sqrt(2.0));
  return std::sqrt(1 - 2 * c * phi / mass);
}

// Mean and stddev within 5 standard errors, bounds, and (for large pieces) tails that reach near the bound.
void check_piece(const std::string& what, const float* x, std::int64_t n, const expected_piece& e) {
  INFO(what << " (" << n << " elements)");
  if (e.kind == law::constant) {
    std::int64_t wrong = 0;
    for (std::int64_t i = 0; i < n; ++i) wrong += x[i] != static_cast<float>(e.a);
    INFO("expected every element to be " << e.a);
    CHECK(wrong == 0);
    return;
  }
  double sum = 0, sq = 0, biggest = 0;
  std::int64_t zeros = 0;  // a continuous law hits 0.0f with probability about 2^-24 per element
  for (std::int64_t i = 0; i < n; ++i) {
    zeros += x[i] == 0.0f;
    sum += x[i];
    sq += double(x[i]) * x[i];
    biggest = std::max(biggest, std::fabs(double(x[i])));
  }
  const double mean = sum / n, stddev = std::sqrt(sq / n);  // about zero
  double sigma = 0, se_std = 0, bound = HUGE_VAL;
  switch (e.kind) {
    case law::uniform:
      sigma = e.a / std::sqrt(3.0);
      se_std = 0.26 * e.a / std::sqrt(double(n));
      bound = e.a;
      break;
    case law::normal:
      sigma = e.a;
      se_std = sigma / std::sqrt(2.0 * n);
      break;
    case law::truncated:
      sigma = e.a * truncated_std(e.cut);
      se_std = sigma / std::sqrt(2.0 * n);  // the normal's, larger than the truncated one's
      bound = e.a * e.cut;
      break;
    default:
      break;
  }
  INFO("mean " << mean << " (expected 0 ± " << 5 * sigma / std::sqrt(double(n)) << "), stddev " << stddev
               << " (expected " << sigma << " ± " << 5 * se_std << "), max |x| " << biggest << " (bound " << bound
               << ")");
  CHECK(zeros == 0);
  CHECK(std::fabs(mean) <= 5 * sigma / std::sqrt(double(n)));
  CHECK(std::fabs(stddev - sigma) <= 5 * se_std);
  CHECK(biggest <= bound * (1 + 1e-6));
  if (n >= 1000) {
    if (e.kind == law::normal || (e.kind == law::truncated && e.cut > 10)) CHECK(biggest > 3 * sigma);
    if (e.kind == law::uniform) CHECK(biggest > 0.99 * bound);
    if (e.kind == law::truncated && e.cut <= 10) CHECK(biggest > 0.95 * bound);
  }
}

template <class Expect>
void check_all(const tensors& ts, Expect expect) {
  for (const auto& [name, values] : ts) {
    const expectation ex = expect(name);
    const auto n = static_cast<std::int64_t>(values.size());
    std::int64_t begin = 0;
    for (const auto& piece : ex) {
      const auto end = static_cast<std::int64_t>(std::llround(piece.fraction_end * double(n)));
      check_piece(name + " [" + std::to_string(begin) + ", " + std::to_string(end) + ")", values.data() + begin,
                  end - begin, piece);
      begin = end;
    }
    CHECK(begin == n);
  }
}

bool is_random(const std::vector<float>& v) {
  return std::any_of(v.begin(), v.end(), [&](float x) { return x != v.front(); });
}

}  // namespace

TEST_CASE_TEMPLATE("every tensor gets its scheme's distribution", Shape, classic, parallel_map,
                   parallel_map_qkv_bias) {
  SUBCASE("timm") {
    const tensors ts = init_all<Shape>(vs::init::timm{3});
    CHECK(ts.size() == static_cast<std::size_t>(vs::tensor_count<Shape>()));
    check_all(ts, timm_expects);
  }
  SUBCASE("big_vision, head bias -10") {
    const tensors ts = init_all<Shape>(vs::init::big_vision{3, -10.0f});
    check_all(ts, [](const std::string& n) { return big_vision_expects(n, -10.0); });
  }
  SUBCASE("big_vision, default head bias 0") {
    const tensors ts = init_all<Shape>(vs::init::big_vision{});
    check_all(ts, [](const std::string& n) { return big_vision_expects(n, 0.0); });
  }
}

TEST_CASE("the head, class token and MAP probe: the values the papers' code gives") {
  const tensors bv = init_all<parallel_map>(vs::init::big_vision{11, -10.0f});
  for (float w : bv.at("head.weight")) CHECK(w == 0.0f);
  for (float b : bv.at("head.bias")) CHECK(b == -10.0f);
  const tensors bvc = init_all<classic>(vs::init::big_vision{11, -10.0f});
  for (float c : bvc.at("cls_token")) CHECK(c == 0.0f);

  const tensors tm = init_all<classic>(vs::init::timm{11});
  double biggest = 0;
  for (float c : tm.at("cls_token")) biggest = std::max(biggest, std::fabs(double(c)));
  CHECK(biggest > 1e-7);
  CHECK(biggest < 6e-6);
  CHECK(is_random(tm.at("cls_token")));
  for (float b : tm.at("head.bias")) CHECK(b == 0.0f);
  CHECK(is_random(tm.at("head.weight")));  // timm's head is a plain trunc_normal(.02) Linear
}

TEST_CASE("the same seed gives the same bytes; another seed other values") {
  const tensors a = init_all<parallel_map>(vs::init::big_vision{42});
  const tensors b = init_all<parallel_map>(vs::init::big_vision{42});
  const tensors c = init_all<parallel_map>(vs::init::big_vision{43});
  const tensors far = init_all<parallel_map>(vs::init::big_vision{42ull | (1ull << 40)});  // the seed's high word
  int random_tensors = 0;
  for (const auto& [name, va] : a) {
    INFO(name);
    REQUIRE(va.size() == b.at(name).size());
    CHECK(std::memcmp(va.data(), b.at(name).data(), va.size() * sizeof(float)) == 0);
    if (!is_random(va)) continue;
    ++random_tensors;
    for (const tensors* other : {&c, &far}) {
      std::size_t same = 0;
      for (std::size_t i = 0; i < va.size(); ++i) same += va[i] == other->at(name)[i];
      CHECK(same <= va.size() / 100 + 1);
    }
  }
  CHECK(random_tensors >= 20);

  const tensors t1 = init_all<classic>(vs::init::timm{5});
  const tensors t2 = init_all<classic>(vs::init::timm{5});
  for (const auto& [name, v] : t1) CHECK(v == t2.at(name));
}

TEST_CASE("a tensor's values depend only on the seed and its name") {
  SUBCASE("not on which other tensors exist (qkv_bias on and off)") {
    for (int scheme = 0; scheme < 2; ++scheme) {
      const tensors with = scheme ? init_all<classic>(vs::init::big_vision{9}) : init_all<classic>(vs::init::timm{9});
      const tensors without = scheme ? init_all<classic_no_qkv_bias>(vs::init::big_vision{9})
                                     : init_all<classic_no_qkv_bias>(vs::init::timm{9});
      CHECK(with.size() == without.size() + 2);  // one attn.qkv.bias per block
      for (const auto& [name, v] : without) {
        INFO(name);
        CHECK(v == with.at(name));
      }
    }
    // The parallel block trades in_proj.bias for mlp_bias; everything else is the same.
    const tensors p = init_all<parallel_map>(vs::init::big_vision{9});
    const tensors pb = init_all<parallel_map_qkv_bias>(vs::init::big_vision{9});
    for (const auto& [name, v] : p)
      if (pb.count(name)) CHECK(v == pb.at(name));
  }
  SUBCASE("not on the resolution, beyond the position embedding's extra rows") {
    const tensors at32 = init_all<classic>(vs::init::timm{9}, 32);
    const tensors at48 = init_all<classic>(vs::init::timm{9}, 48);
    for (const auto& [name, v] : at32) {
      const auto& w = at48.at(name);
      if (name == "pos_embed") {
        CHECK(v.size() == 65 * 64);
        CHECK(w.size() == 145 * 64);
        CHECK(std::equal(v.begin(), v.end(), w.begin()));
      } else {
        CHECK(v == w);
      }
    }
  }
  SUBCASE("not on where in the arena it lies: init_tensor alone gives the same values") {
    const tensors all = init_all<parallel_map>(vs::init::timm{9});
    for (const auto& t : vs::tensor_table<parallel_map>()) {
      std::vector<float> alone(static_cast<std::size_t>(t.numel()));
      vs::init_tensor<parallel_map>(vs::init::timm{9}, t, alone.data());
      CHECK(alone == all.at(t.full_name()));
    }
  }
  SUBCASE("each tensor of a table has its own random stream") {
    std::set<std::string> names;
    for (const auto& t : vs::tensor_table<parallel_map_qkv_bias>()) names.insert(t.full_name());
    for (const auto& t : vs::tensor_table<classic>()) names.insert(t.full_name());
    std::set<std::uint32_t> streams;
    for (const auto& n : names) streams.insert(vs::detail::init_impl::init_stream(n));
    CHECK(streams.size() == names.size());
  }
}

TEST_CASE("large tensors: tight statistics, and the values do not depend on the thread count") {
  // Tensors larger than the threshold above which init_tensor runs in parallel, named as real tensors.
  const vs::tensor_info fc1{"mlp.fc1.weight", 0, vs::component::block, vs::tensor_role::weight, 2, {1024, 256, 1, 1}};
  const vs::tensor_info patch{"patch_embed.proj.weight", -1, vs::component::patch_embed, vs::tensor_role::weight, 4,
                              {4096, 3, 4, 4}};
  const vs::tensor_info pos{"pos_embed", -1, vs::component::pos_embed, vs::tensor_role::embedding, 3, {1, 2048, 64, 1}};
  struct item {
    const vs::tensor_info* t;
    bool big_vision;
    expected_piece e;
  };
  const item items[] = {
      {&fc1, true, {1, law::uniform, std::sqrt(6.0 / (1024 + 256))}},
      {&fc1, false, {1, law::truncated, 0.02, 100}},
      {&patch, true, {1, law::truncated, std::sqrt(1 / fan_in_patch) / .87962566103423978, 2}},
      {&patch, false, {1, law::uniform, 1 / std::sqrt(fan_in_patch)}},
      {&pos, true, {1, law::normal, 1 / std::sqrt(D)}},
      {&pos, false, {1, law::truncated, 0.02, 100}},
  };
  for (const item& it : items) {
    const auto n = it.t->numel();
    REQUIRE(n > 65536);
    std::vector<float> v(static_cast<std::size_t>(n));
    auto run = [&](std::vector<float>& out) {
      if (it.big_vision)
        vs::init_tensor<classic>(vs::init::big_vision{77}, *it.t, out.data());
      else
        vs::init_tensor<classic>(vs::init::timm{77}, *it.t, out.data());
    };
    run(v);
    check_piece(it.t->full_name() + (it.big_vision ? " (big_vision)" : " (timm)"), v.data(), n, it.e);
#if defined(_OPENMP)
    const int threads = omp_get_max_threads();
    for (int k : {1, 2, 3}) {
      omp_set_num_threads(k);
      std::vector<float> w(v.size());
      run(w);
      CHECK(w == v);
    }
    omp_set_num_threads(threads);
#endif
  }
  // The stddev of a unit normal truncated to ±2 is flax's constant.
  CHECK(truncated_std(2) == doctest::Approx(.87962566103423978).epsilon(1e-12));
}

TEST_CASE("misuse throws vitscale::error") {
  std::vector<float> arena(static_cast<std::size_t>(classic::params(64).total));
  CHECK_THROWS_AS(vs::init_parameters<classic>(vs::init::timm{}, 30, arena.data()), vs::error);  // not a multiple of 4
  CHECK_THROWS_AS(vs::init_parameters<classic>(vs::init::timm{}, 32, nullptr), vs::error);
  const vs::tensor_info unknown{"attn.mystery", 0, vs::component::block, vs::tensor_role::token, 1, {8, 1, 1, 1}};
  CHECK_THROWS_WITH_AS(vs::init_tensor<classic>(vs::init::big_vision{}, unknown, arena.data()),
                       doctest::Contains("blocks.0.attn.mystery"), vs::error);
  CHECK_THROWS_AS(vs::init_tensor<classic>(vs::init::timm{}, unknown, arena.data()), vs::error);
  const auto table = vs::tensor_table<classic>();
  CHECK_THROWS_AS(vs::init_tensor<classic>(vs::init::timm{}, table[0], nullptr), vs::error);
}
