// Loading a pretrained checkpoint into a model with another head and at another resolution (io/pretrained.hpp,
// load_options in io/parameters.hpp and io/big_vision.hpp): against timm's own transfer path
// (tests/reference/transfer_reference.py -> tests/golden/io/transfer_*.safetensors), a round trip without timm,
// body mismatches that must still fail, and big_vision .npz files (tests/golden/big_vision/).
#include <doctest/doctest.h>
#include <support/scratch.hpp>
#include <support/errors.hpp>
#include <support/spaces.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>
#include <vitscale/io/pretrained.hpp>
#include <vitscale/io/safetensors.hpp>
#include <vitscale/model/vit.hpp>

namespace io = vitscale::io;
namespace fs = std::filesystem;
using namespace vitscale;
using vitscale::test::expected_error;

namespace {

const std::string golden_dir = std::string(VITSCALE_TEST_GOLDEN_DIR);
const std::string pretrained_file = golden_dir + "/io/transfer_pretrained.safetensors";

using vitscale::test::scratch;  // support/scratch.hpp

// vit_reference.py's classic_cls (depth 2, width 32, 2 heads, MLP 64, patch 4, 20 px, class token with its own
// position entry), pretrained with 10 classes and fine-tuned with 4.
template <int Classes>
using small = vit_shape<2, 32, 2, 64, 4, options<opt::classes<Classes>, opt::resolution<20>>>;
using pretrained_shape = small<10>;
using transfer_shape = small<4>;
// The same heads on another body: wider (every tensor mis-shaped).
using wider_shape = vit_shape<2, 48, 2, 64, 4, options<opt::classes<4>, opt::resolution<20>>>;

// tests/golden/big_vision's cls_perblock.npz (depth 2, width 16, 5 classes, 16 px, big_vision's position
// embedding without a class-token entry), fine-tuned with 3 classes.
using bv_transfer = vit_shape<2, 16, 2, 32, 4,
                              options<opt::classes<3>, opt::resolution<16>, opt::gelu_tanh, opt::cls_posemb<false>>>;

std::vector<float> read(io::safetensors_reader& f, const std::string& name) {
  std::vector<float> v(static_cast<std::size_t>(f.entry(name).numel()));
  f.read(name, v.data(), v.size());
  return v;
}

template <class Space>
Kokkos::View<float****, Kokkos::LayoutRight, typename Space::memory_space> images(io::safetensors_reader& f,
                                                                                  const std::string& name) {
  const auto s = f.entry(name).shape;
  REQUIRE(s.size() == 4);
  Kokkos::View<float****, Kokkos::LayoutRight, typename Space::memory_space> v("images", s[0], s[1], s[2], s[3]);
  auto host = Kokkos::create_mirror_view(v);
  f.read(name, host.data(), host.size());
  Kokkos::deep_copy(v, host);
  return v;
}

template <class View>
std::vector<float> to_host(const View& v) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<float> out;
  for (std::size_t k = 0; k < v.size(); ++k) out.push_back(static_cast<float>(host.data()[k]));
  return out;
}

// max |got − want| / max |want| (at least `floor`), as tests/model/golden.hpp measures against timm.
double relative_error(const std::vector<float>& got, const std::vector<float>& want, double floor = 1e-3) {
  REQUIRE(got.size() == want.size());
  double err = 0, scale = floor;
  for (std::size_t k = 0; k < got.size(); ++k) {
    if (!std::isfinite(got[k])) return INFINITY;
    err = std::max(err, std::abs(double(got[k]) - double(want[k])));
    scale = std::max(scale, std::abs(double(want[k])));
  }
  return err / scale;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tolerance,
                 const std::string& what) {
  const double e = relative_error(got, want);
  INFO(what << ": relative error " << e << " (tolerance " << tolerance << ")");
  if (std::getenv("VITSCALE_TEST_VERBOSE")) MESSAGE(what << ": relative error " << e);
  CHECK(e <= tolerance);
}

// fp32 against timm (tests/model/timm_check.hpp's tolerances): outputs 1e-4 relative to the largest value, a
// resampled position embedding 1e-5.
constexpr double output_tolerance = 1e-4, posemb_tolerance = 1e-5;

bool all_zero(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; });
}

// The tensor of a timm state dict, or zeros for the classifier (a new head).
std::vector<float> again_or_zero(io::safetensors_reader& f, const tensor_info& t) {
  if (t.part == component::classifier) return std::vector<float>(static_cast<std::size_t>(t.numel()), 0.0f);
  return read(f, t.full_name());
}

io::pretrained_options new_head() {
  io::pretrained_options o;
  o.new_head = true;
  return o;
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("transfer: a timm checkpoint under a new zero head = timm's reset_classifier, at 20 and 28 px",
                          Space, timm_transfer_id) {
  io::safetensors_reader golden(golden_dir + "/io/transfer_timm.safetensors");

  SUBCASE("the checkpoint's resolution") {
    vit<transfer_shape, precision::fp32, Space> model(20);
    const io::load_report r = io::load_pretrained(model, pretrained_file, new_head());
    const auto& table = model.parameters().table();
    CHECK(r.format == "safetensors");
    CHECK(r.loaded == int(table.size()) - 2);
    REQUIRE(r.reinitialised.size() == 2);
    CHECK(r.reinitialised[0].name == "head.weight");
    CHECK(r.reinitialised[0].shape == std::vector<std::int64_t>{4, 32});
    CHECK(r.reinitialised[1].name == "head.bias");
    REQUIRE(r.unused.size() == 2);
    CHECK(!r.posemb_resampled());
    CHECK(r.to_string() == "loaded " + std::to_string(table.size() - 2) + " tensors from " + pretrained_file +
                               "; head re-initialised (head.weight [4, 32], head.bias [4]: zero); unused: head.bias "
                               "[10], head.weight [10, 32]");
    CHECK(all_zero(model.parameter(model.parameters().index("head.weight"))));
    CHECK(all_zero(model.parameter(model.parameters().index("head.bias"))));

    auto x = images<Space>(golden, "input.images20");
    check_close(to_host(model.features(x).pooled), read(golden, "output20.features"), output_tolerance,
                "features at 20 px");
    const auto logits = to_host(model.predict(x));
    CHECK(all_zero(logits));
    CHECK(all_zero(read(golden, "output20.logits")));
    // The head the new task trains is [4, features]: timm's logits with a random one.
    const auto w = read(golden, "random_head.weight"), b = read(golden, "random_head.bias");
    model.set_parameter(model.parameters().index("head.weight"), w.data(), w.size());
    model.set_parameter(model.parameters().index("head.bias"), b.data(), b.size());
    check_close(to_host(model.predict(x)), read(golden, "output20.random_head_logits"), output_tolerance,
                "logits with a random new head");
  }

  SUBCASE("another resolution: the position embedding resampled on load, as timm's checkpoint_filter_fn") {
    vit<transfer_shape, precision::fp32, Space> model(28);
    const io::load_report r = io::load_pretrained(model, pretrained_file, new_head());
    CHECK(r.posemb_from == 5);
    CHECK(r.posemb_to == 7);
    CHECK(r.to_string().find("; pos_embed resampled 5x5 -> 7x7") != std::string::npos);
    const int pe = model.parameters().index("pos_embed");
    check_close(model.parameter(pe), read(golden, "output28.pos_embed"), posemb_tolerance, "resampled pos_embed");

    // The same table as loading at the file's resolution and then set_resolution: one resampler.
    vit<transfer_shape, precision::fp32, Space> at20(20);
    io::load_pretrained(at20, pretrained_file, new_head());
    at20.set_resolution(28);
    CHECK(at20.parameter(pe) == model.parameter(pe));

    auto x = images<Space>(golden, "input.images28");
    check_close(to_host(model.features(x).pooled), read(golden, "output28.features"), output_tolerance,
                "features at 28 px");
    CHECK(all_zero(to_host(model.predict(x))));
    CHECK(all_zero(read(golden, "output28.logits")));
  }
}
VITSCALE_ON_HOST_SPACES(timm_transfer_id);

TEST_CASE("transfer: save a 10-class model, load it into a 4-class one: the body bit for bit, the head zero") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  vit<pretrained_shape, precision::fp32, Space> source(init::timm{7}, 20);
  // Make the source head non-zero (timm's init zeroes it), and the target's too: the load must reset it.
  {
    std::vector<float> w(10 * 32), b(10, 0.5f);
    for (std::size_t k = 0; k < w.size(); ++k) w[k] = 0.01f * float(k % 17) - 0.05f;
    source.set_parameter(source.parameters().index("head.weight"), w.data(), w.size());
    source.set_parameter(source.parameters().index("head.bias"), b.data(), b.size());
  }
  const std::string path = (scratch() / "ten.safetensors").string();
  io::save_parameters(source, path);

  vit<transfer_shape, precision::fp32, Space> target(init::big_vision{3, 1.0f}, 20);
  {
    std::vector<float> w(4 * 32, 0.25f);
    target.set_parameter(target.parameters().index("head.weight"), w.data(), w.size());
  }
  io::load_options options;
  options.new_head = true;
  const io::load_report r = io::load_parameters(target, path, options);
  const auto& table = target.parameters().table();
  CHECK(r.loaded == int(table.size()) - 2);
  for (int i = 0; i < int(table.size()); ++i) {
    const std::string name = table[i].full_name();
    INFO(name);
    if (table[i].part == component::classifier) {
      CHECK(all_zero(target.parameter(i)));
    } else {
      CHECK(target.parameter(i) == source.parameter(source.parameters().index(name)));
    }
  }

  // Without new_head the other class count is a mismatch, as before.
  vit<transfer_shape, precision::fp32, Space> strict(20);
  CHECK_ERROR(io::load_parameters(strict, path), "(2 problems)", "head.weight: the file has [10, 32], the model [4, 32]",
              "head.bias: the file has [10], the model [4]");

  // A file whose head has the model's shape: with new_head the head is reset anyway (a new task), and the
  // file's head is reported unused.
  vit<pretrained_shape, precision::fp32, Space> same(20);
  const io::load_report s = io::load_parameters(same, path, options);
  CHECK(all_zero(same.parameter(same.parameters().index("head.weight"))));
  CHECK(all_zero(same.parameter(same.parameters().index("head.bias"))));
  CHECK(s.reinitialised.size() == 2);
  CHECK(s.unused.size() == 2);
  CHECK(same.parameter(same.parameters().index("blocks.1.mlp.fc2.weight")) ==
        source.parameter(source.parameters().index("blocks.1.mlp.fc2.weight")));
  // Without new_head it loads as it is.
  const io::load_report t = io::load_parameters(same, path);
  CHECK(same.parameter(same.parameters().index("head.bias")) == std::vector<float>(10, 0.5f));
  CHECK(t.reinitialised.empty());
  CHECK(t.unused.empty());
  CHECK(t.to_string() == "loaded " + std::to_string(table.size()) + " tensors from " + path);
}

TEST_CASE("transfer: a body that does not fit still fails, listing every mismatch; the model is untouched") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  const auto opts = new_head();

  // Wider: every tensor but the head and the MLP's first biases (64 wide in both) is mis-shaped, all of them in
  // one message; the head is not among them.
  vit<wider_shape, precision::fp32, Space> wider(init::timm{1}, 20);
  const auto before = wider.parameter(wider.parameters().index("blocks.0.attn.qkv.weight"));
  const std::string m = expected_error([&] { io::load_pretrained(wider, pretrained_file, opts); });
  INFO(m);
  CHECK(m.find("load_parameters: " + pretrained_file + " does not fit the model (" +
               std::to_string(wider.parameters().table().size() - 4) + " problems):") != std::string::npos);
  CHECK(m.find("blocks.0.attn.qkv.weight: the file has [96, 32], the model [144, 48]") != std::string::npos);
  CHECK(m.find("blocks.1.mlp.fc2.weight: the file has [32, 64], the model [48, 64]") != std::string::npos);
  CHECK(m.find("pos_embed: the file has [1, 26, 32], the model [1, 26, 48]\n") != std::string::npos);
  CHECK(m.find("blocks.1.mlp.fc1.bias") == std::string::npos);
  CHECK(m.find("head.") == std::string::npos);
  CHECK(wider.parameter(wider.parameters().index("blocks.0.attn.qkv.weight")) == before);

  // Shallower and deeper files: the missing blocks, and the blocks the model lacks.
  io::safetensors_reader file(pretrained_file);
  std::vector<std::vector<float>> keep;
  keep.reserve(file.tensors().size() * 2);
  io::safetensors_writer shallow, deep;
  for (const auto& e : file.tensors()) {
    keep.push_back(read(file, e.name));
    if (e.name.rfind("blocks.1.", 0) != 0) shallow.add(e.name, e.shape, keep.back().data());
    deep.add(e.name, e.shape, keep.back().data());
    if (e.name.rfind("blocks.1.", 0) == 0) deep.add("blocks.2." + e.name.substr(9), e.shape, keep.back().data());
  }
  const std::string shallow_path = (scratch() / "shallow.safetensors").string();
  const std::string deep_path = (scratch() / "deep.safetensors").string();
  shallow.write(shallow_path);
  deep.write(deep_path);
  vit<transfer_shape, precision::fp32, Space> model(20);
  CHECK_ERROR(io::load_pretrained(model, shallow_path, opts), "(12 problems)", "missing: blocks.1.norm1.weight",
              "missing: blocks.1.mlp.fc2.bias");
  CHECK_ERROR(io::load_pretrained(model, deep_path, opts), "(1 problem)",
              "unexpected: 12 tensors of blocks 2 to 2 (the file's model is deeper than the model's 2 blocks)");

  // Another grid without resampling is a mismatch, with the way out.
  vit<transfer_shape, precision::fp32, Space> at28(28);
  io::load_options strict;
  strict.new_head = true;
  CHECK_ERROR(io::load_parameters(at28, pretrained_file, strict), "pos_embed: the file has [1, 26, 32], the model [1, 50, 32]",
              "load_options::resample_posemb");
}

TEST_CASE("transfer: a big_vision .npz under a new zero head, at its resolution and at another") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  const std::string npz = golden_dir + "/big_vision/cls_perblock.npz";
  io::safetensors_reader timm(golden_dir + "/big_vision/cls_perblock.safetensors");  // timm's import of it

  vit<bv_transfer, precision::fp32, Space> model(16);
  const io::load_report r = io::load_pretrained(model, npz, new_head());
  const auto& table = model.parameters().table();
  CHECK(r.format == "big_vision npz");
  CHECK(r.loaded == int(table.size()) - 2);
  CHECK(r.to_string() == "loaded " + std::to_string(table.size() - 2) + " tensors from " + npz +
                             "; head re-initialised (head.weight [3, 16], head.bias [3]: zero); unused: "
                             "head/kernel [16, 5], head/bias [5]");
  for (int i = 0; i < int(table.size()); ++i) {
    const std::string name = table[i].full_name();
    INFO(name);
    if (table[i].part == component::classifier)
      CHECK(all_zero(model.parameter(i)));
    else
      CHECK(model.parameter(i) == read(timm, name));  // a rearrangement: bit for bit
  }
  // Without new_head: the class count is a mismatch, as before.
  vit<bv_transfer, precision::fp32, Space> strict(16);
  CHECK_ERROR(io::load_big_vision(npz, strict), "(2 problems", "mis-shaped: head/kernel: the file has [16, 5], the model needs [16, 3]");

  // At 24 px: big_vision's table (no class-token entry) resampled 4x4 -> 6x6 by the same function as
  // set_resolution: bit for bit.
  vit<bv_transfer, precision::fp32, Space> at24(24);
  const io::load_report s = io::load_pretrained(at24, npz, new_head());
  CHECK(s.posemb_from == 4);
  CHECK(s.posemb_to == 6);
  model.set_resolution(24);
  const int pe = model.parameters().index("pos_embed");
  CHECK(at24.parameter(pe) == model.parameter(pe));
  const auto file_table = read(timm, "pos_embed");
  std::vector<float> want(36 * 16);
  resample_posemb(file_table.data(), 0, 4, 4, 16, want.data(), 6, 6, interpolation::bicubic, true);
  CHECK(at24.parameter(pe) == want);

  // Into a parameter arena, too (load_big_vision with load_options).
  parameter_arena<bv_transfer, float, Kokkos::HostSpace> arena(24);
  io::load_options lo;
  lo.new_head = true;
  lo.resample_posemb = true;
  const auto imported = io::load_big_vision(npz, arena, {}, lo);
  CHECK(imported.report.posemb_from == 4);
  CHECK(std::vector<float>(arena.data() + arena.offset(pe), arena.data() + arena.offset(pe) + want.size()) == want);

  // A checkpoint with a pre-logits layer (big_vision's rep_size) under "params/", with optimizer arrays beside:
  // a model without pre-logits takes the body; the pre-logits, the old head and the optimizer are unused.
  const std::string prelogits = golden_dir + "/io/transfer_prelogits.npz";
  vit<bv_transfer, precision::fp32, Space> from_pre(16);
  const io::load_report p = io::load_pretrained(from_pre, prelogits, new_head());
  const auto& table16 = from_pre.parameters().table();
  CHECK(p.loaded == int(table16.size()) - 2);
  CHECK(p.to_string() == "loaded " + std::to_string(table16.size() - 2) + " tensors from " + prelogits +
                             "; head re-initialised (head.weight [3, 16], head.bias [3]: zero); unused: "
                             "params/pre_logits/kernel [16, 8], params/pre_logits/bias [8], params/head/kernel [8, 5], "
                             "params/head/bias [5], opt/* (4 tensors)");
  for (int i = 0; i < int(table16.size()); ++i) {
    INFO(table16[i].full_name());
    CHECK(from_pre.parameter(i) == again_or_zero(timm, table16[i]));
  }
  vit<bv_transfer, precision::fp32, Space> exact(16);
  CHECK_ERROR(io::load_big_vision(prelogits, exact), "unexpected: params/pre_logits/kernel [16, 8]",
              "mis-shaped: params/head/kernel: the file has [8, 5], the model needs [16, 3]");

  // The format is told by the first bytes, not the name: the .npz under a .safetensors name loads the same.
  const std::string renamed = (scratch() / "really_npz.safetensors").string();
  fs::copy_file(npz, renamed, fs::copy_options::overwrite_existing);
  vit<bv_transfer, precision::fp32, Space> again(16);
  CHECK(io::load_pretrained(again, renamed, new_head()).format == "big_vision npz");
  CHECK(again.parameter(0) == model.parameter(0));
  const std::string junk = (scratch() / "junk.npz").string();
  {
    std::ofstream out(junk, std::ios::binary);
    out << "not a checkpoint at all";
  }
  CHECK_ERROR(io::load_pretrained(again, junk), "neither a safetensors file", "nor an .npz");
}

TEST_CASE("transfer: the report's line groups long lists of unused tensors") {
  io::load_report r;
  r.path = "ckpt.safetensors";
  r.loaded = 150;
  r.reinitialised = {{"head.weight", {5, 192}, false}, {"head.bias", {5}, false}};
  for (int k = 0; k < 300; ++k) {
    r.unused.push_back({"optimizer.m." + std::to_string(k), {3}, false});
    if (k == 100) r.unused.push_back({"head.weight", {10, 192}, true});
  }
  r.unused.push_back({"head.bias", {10}, true});
  r.unused.push_back({"buffer.x", {2}, false});
  r.posemb_from = 14;
  r.posemb_to = 24;
  CHECK(r.to_string() ==
        "loaded 150 tensors from ckpt.safetensors; head re-initialised (head.weight [5, 192], head.bias [5]: zero); "
        "unused: head.weight [10, 192], head.bias [10], optimizer.* (300 tensors), buffer.x [2]; pos_embed resampled 14x14 "
        "-> 24x24");
}
