// nfnet_shape, the layer walk, the parameter table and the accounting, against timm's NormFreeNet.
// The numbers are timm 1.0.31's, printed by tests/reference/nfnet_counts.py into tests/reference/nfnet_counts.txt
// (dm_nfnet_f0..f6; F7 = _dm_nfnet_cfg at depths 8, 16, 48, 24; the Fashion-MNIST shape), and F0's parameter
// table by the same script into tests/golden/nfnet_f0_params.txt.
#include <doctest/doctest.h>
#include <vitscale/config/nfnet_presets.hpp>

#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace vs = vitscale;
namespace nfopt = vitscale::nfopt;
using vs::presets::nfnet_f0;
using vs::presets::nfnet_f7;
using vs::presets::nfnet_fmnist;

// ---- defaults are timm's dm_nfnet configuration
using plain = vs::nfnet_shape<vs::nfnet_depths<1, 2, 6, 3>, vs::nfnet_channels<256, 512, 1536, 1536>>;
static_assert(plain::stem_channels == 128 && plain::group_width == 128 && plain::features == 3072);
static_assert(plain::bottleneck.num == 1 && plain::bottleneck.den == 2 && plain::alpha == 0.2);
static_assert(plain::skipinit && plain::squeeze_excite && plain::final_conv && plain::padding == vs::nfnet_padding::same);
static_assert(plain::num_classes == 1000 && plain::in_channels == 3 && plain::blocks == 12);
static_assert(std::is_same_v<plain::with<nfopt::resolution<256>>, nfnet_f0>);
static_assert(vs::is_nfnet_shape_v<nfnet_f0> && !vs::is_nfnet_shape_v<int>);

// ---- options, and later options overriding earlier ones
using tuned = nfnet_f0::with<nfopt::skipinit<false>, nfopt::se_ratio<0>, nfopt::feature_multiplier<0>,
                             nfopt::symmetric_padding, nfopt::classes<10>, nfopt::channels<1>, nfopt::group_width<0>>;
static_assert(!tuned::skipinit && !tuned::squeeze_excite && !tuned::final_conv && tuned::features == 1536);
static_assert(tuned::padding == vs::nfnet_padding::symmetric && tuned::num_classes == 10 && tuned::in_channels == 1);
static_assert(tuned::describe().groups(2) == 1 && nfnet_f0::describe().groups(2) == 6);
// timm's NormFreeNet with the same configuration ("F0-tuned" in tests/reference/nfnet_counts.txt)
static_assert(tuned::params().total == 122666362 && tuned::params().stem == 97392 && tuned::params().head == 15370);
static_assert(tuned::flops().forward == 57097615360);

// ---- F0..F7 and the Fashion-MNIST shape: parameters and forward FLOPs at the test resolution, timm's numbers
struct reference {
  std::int64_t params, stem, stages, final_conv, head, flops;
};
template <class S>
constexpr bool matches(const reference& r) {
  constexpr auto p = S::params();
  constexpr auto f = S::flops();
  return p.total == r.params && p.stem == r.stem && p.stages == r.stages && p.final_conv == r.final_conv &&
         p.head == r.head && f.forward == r.flops && f.forward_macs * 2 == r.flops;
}
static_assert(matches<nfnet_f0>({71489284, 97680, 63593868, 4724736, 3073000, 24768397312}));
static_assert(matches<vs::presets::nfnet_f1>({132634256, 97680, 124738840, 4724736, 3073000, 71077937152}));
static_assert(matches<vs::presets::nfnet_f2>({193779228, 97680, 185883812, 4724736, 3073000, 125185957888}));
static_assert(matches<vs::presets::nfnet_f3>({254924200, 97680, 247028784, 4724736, 3073000, 229527003136}));
static_assert(matches<vs::presets::nfnet_f4>({316069172, 97680, 308173756, 4724736, 3073000, 430482374656}));
static_assert(matches<vs::presets::nfnet_f5>({377214144, 97680, 369318728, 4724736, 3073000, 579514212352}));
static_assert(matches<vs::presets::nfnet_f6>({438359116, 97680, 430463700, 4724736, 3073000, 754560614400}));
static_assert(matches<nfnet_f7>({499504088, 97680, 491608672, 4724736, 3073000, 957563281408}));
static_assert(matches<nfnet_fmnist>({163812, 1590, 126372, 33280, 2570, 1918416}));
static_assert(nfnet_f7::params().total - nfnet_f7::blocks == 499503992, "timm's nfnet_f7: no skipinit gains");
// timm's nfnet_f0: symmetric padding (the same sides, so the same FLOPs) and no skipinit gains
static_assert(nfnet_f0::with<nfopt::symmetric_padding, nfopt::skipinit<false>>::flops().forward == 24768397312 &&
              nfnet_f0::with<nfopt::symmetric_padding, nfopt::skipinit<false>>::params().total == 71489284 - 12);
static_assert(nfnet_f0::flops(192).forward == 13954007040 && nfnet_f0::flops(224).forward == 18974973952);
// An odd side at every stage (225 -> 113 -> 57 -> 57 -> 29 -> 15 -> 8): SAME's uneven padding and the ceil-mode pool.
static_assert(nfnet_f0::flops(225).forward == 21372210016);
static_assert(nfnet_f0::stem_side(225) == 57 && nfnet_f0::stage_side(1, 225) == 29 &&
              nfnet_f0::stage_side(2, 225) == 15 && nfnet_f0::stage_side(3, 225) == 8);

// ---- the paper (Brock et al. 2021, Table 2): F0 71.5 M parameters, 12.38 B "FLOPs" at 256 px — multiply-adds
static_assert((nfnet_f0::params().total + 50'000) / 100'000 == 715);
static_assert((nfnet_f0::flops().forward_macs + 5'000'000) / 10'000'000 == 1238);
static_assert((vs::presets::nfnet_f6::flops().forward_macs + 5'000'000) / 10'000'000 == 37728);
static_assert(nfnet_f0::flops().training == 3 * nfnet_f0::flops().forward - 2 * 128 * 128 * 16 * 3 * 9,
              "training: backward = 2 products each, except the image's gradient");
static_assert(nfnet_f0::params().stage[0] + nfnet_f0::params().stage[1] + nfnet_f0::params().stage[2] +
                  nfnet_f0::params().stage[3] == nfnet_f0::params().stages);

// ---- geometry at 256 px (timm: the side after the stem, then after each block)
static_assert(nfnet_f0::stem_side() == 64 && nfnet_f0::stage_side(0) == 64 && nfnet_f0::stage_side(1) == 32 &&
              nfnet_f0::stage_side(2) == 16 && nfnet_f0::stage_side(3) == 8);
static_assert(nfnet_fmnist::stem_side() == 7 && nfnet_fmnist::stage_side(3) == 1);
static_assert(nfnet_f0::describe().conv(256, 3, 2).pad_before == 0 && nfnet_f0::describe().conv(256, 3, 2).pad_after == 1);
static_assert(nfnet_f0::describe().conv(7, 3, 2).pad_before == 1 && nfnet_f0::describe().conv(7, 3, 2).out == 4);

// ---- β, bit for bit: timm's repr of each block's beta, stages.0.0 .. stages.3.2
static_assert(nfnet_f0::beta(0, 0) == 1.0 && nfnet_f0::beta(1, 0) == 0.9805806756909201 &&
              nfnet_f0::beta(1, 1) == 0.9805806756909201 && nfnet_f0::beta(2, 0) == 0.9622504486493761 &&
              nfnet_f0::beta(2, 1) == 0.9805806756909201 && nfnet_f0::beta(2, 2) == 0.9622504486493761 &&
              nfnet_f0::beta(2, 3) == 0.9449111825230679 && nfnet_f0::beta(2, 4) == 0.9284766908852592 &&
              nfnet_f0::beta(2, 5) == 0.9128709291752768 && nfnet_f0::beta(3, 0) == 0.8980265101338745 &&
              nfnet_f0::beta(3, 1) == 0.9805806756909201 && nfnet_f0::beta(3, 2) == 0.9622504486493761);

// ---- the parameter table: lookups in constant expressions
static_assert(vs::nfnet_tensor_count<nfnet_f0>() == 233);
static_assert(vs::nfnet_tensor_index<nfnet_f0>(-1, -1, "stem.conv1.weight") == 0);
static_assert(vs::nfnet_tensor_index<nfnet_f0>(0, 0, "skipinit_gain") == 12);
static_assert(vs::nfnet_tensor_index<nfnet_f0>(1, 0, "downsample.conv.gain") == 35);
static_assert(vs::nfnet_tensor_index<nfnet_f0>(-1, -1, "head.fc.bias") == 232);
static_assert(vs::nfnet_tensor_count<nfnet_f7>() == 12 + 96 * 17 + 4 * 3 + 3 + 2, "F7's table is built at compile time");

namespace {
struct collect : vs::nfnet_sink {
  std::vector<vs::nfnet_layer> layers;
  std::vector<vs::nfnet_block> blocks;
  void block(const vs::nfnet_block& b) { blocks.push_back(b); }
  void layer(const vs::nfnet_layer& l) { layers.push_back(l); }
};
}  // namespace

TEST_CASE("the layer walk of F0 at 256 px: names, order and sides") {
  collect c;
  vs::walk_nfnet<nfnet_f0>(c, 256);
  REQUIRE(c.blocks.size() == 12);
  // timm: side after the stem, then after each block
  const std::vector<int> sides = {64, 64, 32, 32, 16, 16, 16, 16, 16, 16, 8, 8, 8};
  CHECK(c.blocks[0].in_side == sides[0]);
  for (int i = 0; i < 12; ++i) CHECK(c.blocks[i].out_side == sides[i + 1]);
  std::vector<std::string> names;
  for (const auto& l : c.layers) names.push_back(l.full_name());
  CHECK(names[0] == "stem.conv1");
  CHECK(names[3] == "stem.conv4");
  CHECK(names[4] == "stages.0.0.downsample.conv");  // stage 0: channels change, no stride, no pool
  CHECK(names[11] == "stages.1.0.downsample.pool");
  CHECK(names[12] == "stages.1.0.downsample.conv");
  CHECK(names[names.size() - 3] == "final_conv");
  CHECK(names[names.size() - 2] == "head.global_pool");
  CHECK(names.back() == "head.fc");
  const vs::nfnet_layer& conv2 = c.layers[14];  // stages.1.0.conv2: the strided grouped 3×3
  CHECK(conv2.full_name() == "stages.1.0.conv2");
  CHECK(conv2.stride == 2);
  CHECK(conv2.groups == 2);
  CHECK(conv2.in_side == 64);
  CHECK(conv2.out_side == 32);
  CHECK(conv2.pad_before == 0);
  CHECK(conv2.pad_after == 1);
  CHECK(c.layers[0].out_side == 128);
  CHECK(c.layers[0].in_channels == 3);
  CHECK(c.layers[0].out_channels == 16);
  CHECK(c.blocks[3].downsample);
  CHECK(c.blocks[3].shortcut_pool);
  CHECK(!c.blocks[4].downsample);
  CHECK(c.blocks[3].mid_channels == 768);
  CHECK(c.blocks[3].groups == 6);
  CHECK(c.blocks[3].se_channels == 768);
  CHECK(c.blocks[3].alpha == 0.2);
  CHECK(c.blocks[3].beta == nfnet_f0::beta(2, 0));
}

namespace {
constexpr int sqrt_samples = 9000;
struct root_samples {
  std::array<double, sqrt_samples> x{}, root{};
};
// nf_sqrt evaluated at compile time (where it runs its own algorithm) over parts of three binades. The inputs
// are kept too: recomputed at run time, 1.0 + i·h could be contracted into an FMA and differ.
constexpr root_samples constexpr_roots() {
  root_samples r;
  constexpr double scale[3] = {1.0, 1e-3, 1e5};
  for (int i = 0; i < sqrt_samples; ++i) {
    r.x[i] = (1.0 + (i / 3) * 0.000731) * scale[i % 3];
    r.root[i] = vs::detail::nf_sqrt(r.x[i]);
  }
  return r;
}
}  // namespace

TEST_CASE("the constexpr square root is correctly rounded") {
  static constexpr root_samples roots = constexpr_roots();
  int wrong = 0;
  for (int i = 0; i < sqrt_samples; ++i) wrong += roots.root[i] != std::sqrt(roots.x[i]);
  CHECK(wrong == 0);
  const double x = roots.x[17];
  CHECK(vs::detail::nf_sqrt(x) == std::sqrt(x));  // at run time
}

namespace {
// Every block's β of a shape, in constant evaluation.
template <class S>
constexpr std::array<double, S::blocks> constexpr_betas() {
  std::array<double, S::blocks> b{};
  int i = 0;
  for (int s = 0; s < S::stages; ++s)
    for (int k = 0; k < S::depths[s]; ++k) b[i++] = S::beta(s, k);
  return b;
}

// timm's betas of a model from tests/reference/nfnet_counts.txt (Python's repr round-trips a double exactly).
std::vector<double> timm_betas(const std::string& key) {
  std::ifstream in(VITSCALE_TEST_GOLDEN_DIR "/../reference/nfnet_counts.txt");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (first != key) continue;
    std::vector<double> betas;
    for (std::string w; words >> w;) betas.push_back(std::strtod(w.c_str(), nullptr));
    return betas;
  }
  return {};
}

template <class S>
void check_betas(const std::string& key) {
  static constexpr auto compiled = constexpr_betas<S>();
  const std::vector<double> timm = timm_betas(key);
  REQUIRE(timm.size() == compiled.size());
  collect c;
  vs::walk_nfnet<S>(c, 64);
  REQUIRE(c.blocks.size() == compiled.size());
  for (std::size_t i = 0; i < timm.size(); ++i) {
    INFO(key << " block " << i);
    CHECK(compiled[i] == timm[i]);      // constant evaluation
    CHECK(c.blocks[i].beta == timm[i]);  // a walk at run time
    CHECK(S::describe().beta(c.blocks[i].stage, c.blocks[i].block) == timm[i]);
  }
}
}  // namespace

TEST_CASE("every block's beta is timm's, bit for bit, at compile time and at run time") {
  check_betas<nfnet_f0>("F0-beta");
  check_betas<nfnet_f7>("F7-beta");
}

TEST_CASE("F0's parameter table is timm's named_parameters, in order") {
  std::ifstream in(VITSCALE_TEST_GOLDEN_DIR "/nfnet_f0_params.txt");
  REQUIRE(in.good());
  constexpr auto table = vs::nfnet_tensor_table<nfnet_f0>();
  std::size_t i = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string name;
    words >> name;
    std::vector<std::int64_t> dims;
    for (std::int64_t d; words >> d;) dims.push_back(d);
    REQUIRE(i < table.size());
    INFO(name);
    CHECK(table[i].full_name() == name);
    REQUIRE(table[i].rank == static_cast<int>(dims.size()));
    for (std::size_t k = 0; k < dims.size(); ++k) CHECK(table[i].dims[k] == dims[k]);
    ++i;
  }
  CHECK(i == table.size());
}

TEST_CASE("a descriptor built at run time is checked with the shape's rules") {
  vs::nfnet_descriptor d = nfnet_fmnist::describe();
  CHECK_NOTHROW(d.validate());
  CHECK(vs::count_nfnet_params(d).total == 163812);
  d.group_width = 32;
  CHECK_THROWS_AS(d.validate(), vs::error);
  d = nfnet_fmnist::describe();
  d.depths[2] = 0;
  CHECK_THROWS_AS(d.validate(), vs::error);
  d = nfnet_fmnist::describe();
  CHECK_THROWS_AS(vs::count_nfnet_flops(d, 0), vs::error);
  CHECK(vs::count_nfnet_flops(d, 28).forward == 1918416);
}

TEST_CASE("names of the presets") {
  CHECK(vs::presets::nfnet_name<nfnet_f0>() == "NFNet-F0");
  CHECK(vs::presets::nfnet_name<nfnet_f7>() == "NFNet-F7");
  CHECK(vs::presets::nfnet_name<plain>().empty());
  CHECK(vs::presets::all_nfnets::size == 9);
}
