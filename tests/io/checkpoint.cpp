// Training checkpoints (io/checkpoint.hpp) and host determinism:
//  - the same seed and thread count give a bit-identical loss curve, parameters and optimizer state;
//  - a run saved after 5 steps and resumed into a fresh model and optimizer (another init seed, other
//    regularisation settings) gives the same 12-step loss curve and final state, bit for bit, for every
//    optimizer, fp32, bf16_mixed and bf16_pure, with dropout, drop-path, augmentation and shuffling on;
//  - a process killed by SIGKILL while saving leaves the previous checkpoint loadable and exactly as it was;
//  - truncated files, another optimizer's checkpoint, missing, extra and mistyped tensors are errors that
//    name the file and the tensors;
//  - the EMA of the parameters (options.ema) is saved as ema.<name> F32 tensors with its decay in the metadata,
//    resumes bit for bit, and a checkpoint with an EMA into an optimizer without one (or the reverse) is an
//    error that says so.
#include <doctest/doctest.h>
#include <support/files.hpp>
#include <support/spaces.hpp>
#include <support/testing.hpp>
#include <vitscale/data/augment.hpp>
#include <vitscale/data/batches.hpp>
#include <vitscale/io/checkpoint.hpp>
#include <vitscale/model/vit.hpp>
#include <vitscale/train/loss.hpp>
#include <vitscale/train/optimizers.hpp>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace vitscale;
namespace fs = std::filesystem;

namespace {

// Width 32 with Adafactor's default min_dim_size_to_factor 32: qkv, proj, fc1 and fc2 are factored, the patch
// kernel [32, 16], the head [10, 32] and the vectors are not.
using tiny = vit_shape<2, 32, 2, 64, 4, options<opt::classes<10>, opt::channels<1>, opt::resolution<16>>>;
constexpr int batch_size = 8;
constexpr int total_steps = 12;
constexpr int save_at = 5;

// 44 synthetic 16×16 images with labels: 5 batches of 8 per epoch (4 left over), so 12 steps cross two epoch
// boundaries and the batch after the save at step 5 is the first of the second epoch.
const data::dataset& synthetic() {
  static const data::dataset d = [] {
    data::dataset s;
    s.images.count = 44;
    s.images.rows = s.images.cols = 16;
    s.num_classes = 10;
    std::mt19937 gen(2024);
    s.images.pixels.resize(44 * 16 * 16);
    for (auto& p : s.images.pixels) p = static_cast<std::uint8_t>(gen() & 0xffu);
    for (int i = 0; i < 44; ++i) s.labels.push_back(static_cast<int>(gen() % 10u));
    return s;
  }();
  return d;
}

// A scratch folder, removed with its content.
struct scratch {
  fs::path dir;
  explicit scratch(const char* what)
      : dir(fs::temp_directory_path() / ("vitscale_" + std::string(what) + "_" + std::to_string(::getpid()))) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~scratch() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

// The temporary file process `pid` is writing for `path` (io/files.hpp: <path>.tmp-<host>-<pid>-<random>), or "".
std::string temporary_of(const std::string& path, long pid) {
  const std::string prefix = fs::path(path).filename().string() + ".tmp-";
  const std::string mark = "-" + std::to_string(pid) + "-";
  std::error_code ec;
  for (fs::directory_iterator it(fs::path(path).parent_path(), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) == 0 && name.find(mark) != std::string::npos) return it->path().string();
  }
  return "";
}

// Every tensor of a checkpoint of (model, opt) — parameters and optimizer state — as its bytes.
template <class Model, class Opt>
std::map<std::string, std::vector<unsigned char>> snapshot(const Model& model, const Opt& opt) {
  std::map<std::string, std::vector<unsigned char>> out;
  io::detail::visit_checkpoint_tensors(model, opt, [&](const std::string& name, const auto& view,
                                                       const std::vector<std::int64_t>&) {
    using T = typename std::decay_t<decltype(view)>::non_const_value_type;
    auto& bytes = out[name];
    bytes.resize(view.extent(0) * sizeof(T));
    Kokkos::deep_copy(io::detail::host_alias(view, bytes.data()), view);
  });
  return out;
}

// Losses compared as bits (== would also accept 0.0 for -0.0).
bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// The names of the tensors whose bytes differ (or that only one side has).
std::vector<std::string> differing(const std::map<std::string, std::vector<unsigned char>>& a,
                                   const std::map<std::string, std::vector<unsigned char>>& b) {
  std::vector<std::string> out;
  for (const auto& [name, bytes] : a) {
    const auto it = b.find(name);
    if (it == b.end() || it->second != bytes) out.push_back(name);
  }
  for (const auto& [name, bytes] : b)
    if (a.count(name) == 0) out.push_back(name);
  return out;
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "(none)" : s;
}

// The recipe every run here follows; only the seeds vary between the tests.
struct recipe {
  std::uint64_t init_seed = 7, dropout_seed = 11, data_seed = 5, augment_seed = 13;
  double dropout = 0.1, drop_path = 0.2;
};

template <class Model>
struct trainer {
  using space = typename Model::execution_space;
  explicit trainer(const recipe& r, std::uint64_t init_seed)
      : model(init::timm{init_seed}, 16),
        dlogits("dlogits", batch_size, 10) {
    model.set_regularization({r.dropout, r.drop_path, r.dropout_seed});
  }
  // `steps` steps from `state` (which moves on), the losses appended to `losses`.
  template <class Opt>
  void run(Opt& opt, io::training_state& state, int steps, std::vector<double>& losses) {
    data::batcher batches(synthetic(), {batch_size, state.data_seed, true, true, {}}, state.data);
    for (int k = 0; k < steps; ++k) {
      const data::batch b = batches.next();
      data::flip_and_shift(b.images, state.augment_seed, static_cast<std::uint32_t>(state.step), 2, -1.0f);
      auto logits = model.forward(b.images, static_cast<std::uint32_t>(state.step));
      losses.push_back(loss::softmax_xent(space(), logits, b.labels, dlogits));
      model.backward(dlogits);
      const double lr = 2e-3 * std::min(1.0, double(state.step + 1) / 4.0);  // a warmup: the lr moves too
      opt.step(lr, lr);
      ++state.step;
      state.data = batches.position();
    }
  }
  Model model;
  Kokkos::View<float**, Kokkos::LayoutRight, typename space::memory_space> dlogits;
};

io::training_state start_state(const recipe& r) {
  io::training_state s;
  s.data_seed = r.data_seed;
  s.augment_seed = r.augment_seed;
  return s;
}

// With `ema`: an EMA whose decay changes every step (timm's warmup, starting after one step), so that a resumed
// run must also restore the step count it is computed from.
template <class Opt>
typename Opt::options optimizer_options(bool ema = false) {
  typename Opt::options o;
  o.weight_decay = {0.3, 0.05};
  o.clip = {1.0, 0.0};  // global-norm clipping: a reduction over every gradient
  if (ema) {
    o.ema.decay = 0.99;
    o.ema.use_warmup = true;
    o.ema.update_after_step = 1;
  }
  return o;
}

struct run_result {
  std::vector<double> losses;
  std::map<std::string, std::vector<unsigned char>> state;
};

template <class Model, class Opt>
run_result straight_run(const recipe& r, bool ema = false) {
  trainer<Model> t(r, r.init_seed);
  Opt opt(t.model, optimizer_options<Opt>(ema));
  io::training_state s = start_state(r);
  run_result out;
  t.run(opt, s, total_steps, out.losses);
  out.state = snapshot(t.model, opt);
  return out;
}

// 5 steps, saved; a fresh model and optimizer (another init seed, other regularisation settings) loaded
// from the file; 7 more steps. With load_optimizer false the optimizer state is not restored (only the
// parameters and the step): the resumed run must then differ, which shows the comparison sees the state.
template <class Model, class Opt>
run_result resumed_run(const recipe& r, const std::string& path, bool load_optimizer = true, bool ema = false) {
  run_result out;
  {
    trainer<Model> t(r, r.init_seed);
    Opt opt(t.model, optimizer_options<Opt>(ema));
    io::training_state s = start_state(r);
    t.run(opt, s, save_at, out.losses);
    s.metadata["note"] = "resume test";
    io::save_checkpoint(path, t.model, opt, s);
  }
  trainer<Model> t(r, r.init_seed + 1000);
  t.model.set_regularization({0.0, 0.0, 999});  // load restores the saved settings
  Opt opt(t.model, optimizer_options<Opt>(ema));
  io::training_state s;
  if (load_optimizer) {
    s = io::load_checkpoint(path, t.model, opt);
  } else {
    Opt other(t.model, optimizer_options<Opt>());
    s = io::load_checkpoint(path, t.model, other);
    opt.set_steps(other.steps());
  }
  CHECK(s.step == save_at);
  CHECK(opt.steps() == save_at);
  CHECK(s.data_seed == r.data_seed);
  CHECK(s.augment_seed == r.augment_seed);
  // 5 batches of 8 from 44 images: epoch 0 is used up (its 4 left over are dropped), the next batch opens epoch 1.
  CHECK(s.data == data::batch_position{0, 40});
  CHECK(s.metadata == std::map<std::string, std::string>{{"note", "resume test"}});
  CHECK(t.model.regularization_settings().seed == r.dropout_seed);
  CHECK(t.model.regularization_settings().drop_path == r.drop_path);
  t.run(opt, s, total_steps - save_at, out.losses);
  out.state = snapshot(t.model, opt);
  return out;
}

template <class Model, class Opt>
void check_resume(const char* what, bool ema = false) {
  INFO(what << " on " << Model::execution_space::name());
  scratch dir("resume");
  const recipe r;
  const run_result straight = straight_run<Model, Opt>(r, ema);
  const run_result resumed = resumed_run<Model, Opt>(r, dir.file("state.safetensors"), true, ema);
  CHECK(straight.state.count("ema.head.weight") == (ema ? 1u : 0u));  // the comparison below sees the EMA
  REQUIRE(straight.losses.size() == std::size_t(total_steps));
  for (double l : straight.losses) REQUIRE(std::isfinite(l));
  std::ostringstream curves;
  curves.precision(17);
  for (std::size_t k = 0; k < straight.losses.size() && k < resumed.losses.size(); ++k)
    curves << "\n  step " << k << ": straight " << straight.losses[k] << ", resumed " << resumed.losses[k];
  CHECK_MESSAGE(same_bits(straight.losses, resumed.losses), "loss curves:" << curves.str());
  CHECK_MESSAGE(differing(straight.state, resumed.state).empty(),
                "tensors that differ after resuming: " << join(differing(straight.state, resumed.state)));
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("the same seed gives a bit-identical loss curve, parameters and optimizer state", Space,
                          checkpoint_determinism) {
  const auto check = [](auto* tag, const char* what) {
    using model_t = std::remove_pointer_t<decltype(tag)>;
    using opt_t = optimizer::adamw<model_t>;
    INFO(what << " on " << Space::name() << " with " << Space().concurrency() << " threads");
    const recipe r;
    const run_result a = straight_run<model_t, opt_t>(r), b = straight_run<model_t, opt_t>(r);
    for (double l : a.losses) REQUIRE(std::isfinite(l));
    CHECK(same_bits(a.losses, b.losses));
    CHECK_MESSAGE(differing(a.state, b.state).empty(), "tensors that differ: " << join(differing(a.state, b.state)));
    // The curve depends on the dropout seed: the regularisation is on, and compared bit for bit.
    recipe other = r;
    other.dropout_seed = 12;
    const run_result c = straight_run<model_t, opt_t>(other);
    CHECK(a.losses[0] != c.losses[0]);
    CHECK_FALSE(same_bits(a.losses, c.losses));
  };
  check(static_cast<vit<tiny, precision::fp32, Space>*>(nullptr), "AdamW, fp32");
  check(static_cast<vit<tiny, precision::bf16_mixed, Space>*>(nullptr), "AdamW, bf16_mixed");
}
VITSCALE_ON_HOST_SPACES(checkpoint_determinism);

TEST_CASE_TEMPLATE_DEFINE("a run saved and resumed matches one that was not interrupted, bit for bit", Space,
                          checkpoint_resume) {
  using fp32 = vit<tiny, precision::fp32, Space>;
  using mixed = vit<tiny, precision::bf16_mixed, Space>;
  using pure = vit<tiny, precision::bf16_pure, Space>;
  check_resume<fp32, optimizer::sgd_momentum<fp32>>("SGD-momentum, fp32");
  check_resume<fp32, optimizer::sgd_momentum<fp32, bf16>>("SGD with bf16 momentum, fp32");
  check_resume<fp32, optimizer::adamw<fp32>>("AdamW, fp32");
  check_resume<mixed, optimizer::adamw<mixed>>("AdamW, bf16_mixed");
  check_resume<pure, optimizer::adamw<pure>>("AdamW, bf16_pure (bf16 parameters and moments)");
  check_resume<fp32, optimizer::adam_bf16_momentum<fp32>>("Adam with bf16 momentum, fp32");
  check_resume<fp32, optimizer::adafactor<fp32>>("Adafactor, fp32");
  check_resume<mixed, optimizer::adafactor<mixed>>("Adafactor, bf16_mixed");
  check_resume<fp32, optimizer::adamw<fp32>>("AdamW, fp32, with an EMA", true);
  check_resume<pure, optimizer::adamw<pure>>("AdamW, bf16_pure, with an EMA (float)", true);
  check_resume<mixed, optimizer::adafactor<mixed>>("Adafactor, bf16_mixed, with an EMA", true);
  check_resume<fp32, optimizer::sgd_momentum<fp32, bf16>>("SGD with bf16 momentum, fp32, with an EMA", true);
}
VITSCALE_ON_HOST_SPACES(checkpoint_resume);

TEST_CASE("resuming without the optimizer state does not match (the resume test sees the state)") {
  using model_t = vit<tiny, precision::fp32, Kokkos::DefaultHostExecutionSpace>;
  scratch dir("resume_without_state");
  const recipe r;
  const run_result straight = straight_run<model_t, optimizer::adamw<model_t>>(r);
  const run_result partial = resumed_run<model_t, optimizer::adamw<model_t>>(r, dir.file("s.safetensors"), false);
  CHECK(same_bits(std::vector<double>(straight.losses.begin(), straight.losses.begin() + save_at + 1),
                  std::vector<double>(partial.losses.begin(), partial.losses.begin() + save_at + 1)));
  CHECK_FALSE(same_bits(straight.losses, partial.losses));
}

TEST_CASE("a checkpoint records the model, precision, optimizer and training state in its metadata") {
  using model_t = vit<tiny, precision::bf16_mixed, Kokkos::DefaultHostExecutionSpace>;
  scratch dir("metadata");
  model_t model(init::timm{1}, 16);
  optimizer::adafactor<model_t> opt(model);
  io::training_state s;
  s.step = 123;
  s.data = {4, 16};
  s.data_seed = 0xfedcba9876543210ull;  // all 64 bits survive
  s.augment_seed = 3;
  s.metadata = {{"run", "abc"}};
  io::save_checkpoint(dir.file("c.safetensors"), model, opt, s);
  io::safetensors_reader f(dir.file("c.safetensors"));
  const auto& m = f.metadata();
  CHECK(m.at("format") == "vitscale training checkpoint");
  CHECK(m.at("format_version") == "1");
  CHECK(m.at("model.depth") == "2");
  CHECK(m.at("model.width") == "32");
  CHECK(m.at("model.heads") == "2");
  CHECK(m.at("model.mlp_dim") == "64");
  CHECK(m.at("model.patch") == "4");
  CHECK(m.at("model.classes") == "10");
  CHECK(m.at("model.resolution") == "16");
  CHECK(m.at("precision.param") == "F32");
  CHECK(m.at("precision.act") == "BF16");
  CHECK(m.at("optimizer") == "optimizer::adafactor");
  CHECK(m.at("optimizer.decay_rate") == "0.80000000000000004");
  CHECK(m.at("step") == "123");
  CHECK(m.at("data.epoch") == "4");
  CHECK(m.at("data.index") == "16");
  CHECK(m.at("user.run") == "abc");
  // bf16 moments and the factored statistics, in their stored types and shapes.
  CHECK(f.entry("optimizer.m.blocks.0.attn.qkv.weight").type == io::dtype::bf16);
  CHECK(f.entry("optimizer.v_row.blocks.0.attn.qkv.weight").shape == std::vector<std::int64_t>{96});
  CHECK(f.entry("optimizer.v_col.blocks.0.attn.qkv.weight").shape == std::vector<std::int64_t>{32});
  CHECK(f.entry("optimizer.v.head.weight").shape == std::vector<std::int64_t>{10, 32});
  CHECK_FALSE(f.contains("optimizer.v.blocks.0.attn.qkv.weight"));
  CHECK(f.entry("blocks.1.mlp.fc2.weight").type == io::dtype::f32);
  optimizer::adafactor<model_t> opt2(model);
  const io::training_state back = io::load_checkpoint(dir.file("c.safetensors"), model, opt2);
  CHECK(back.step == 123);
  CHECK(back.data == data::batch_position{4, 16});
  CHECK(back.data_seed == 0xfedcba9876543210ull);
  CHECK(back.augment_seed == 3);
  CHECK(back.metadata == s.metadata);
  // A checkpoint is also a parameter file: load_parameters reads it and ignores the optimizer's tensors.
  model_t plain(16);
  io::load_parameters(plain, dir.file("c.safetensors"));
  CHECK(plain.parameter(3) == model.parameter(3));
}

namespace {

// Copies `from` to `to` without the tensor `drop` and with `add` (a small extra tensor) if not empty.
// A copy of `from` without tensor `drop`, with a tensor `add` ([2] floats), and with element 3 of the F32 tensor
// `poison` set to `value` (a NaN, say: the writer itself does not check values; save_checkpoint does).
void rewrite(const std::string& from, const std::string& to, const std::string& drop, const std::string& add = "",
             const std::string& poison = "", float value = 0.0f) {
  io::safetensors_reader in(from);
  io::safetensors_writer out;
  std::vector<std::vector<unsigned char>> buffers;
  buffers.reserve(in.tensors().size() + 1);
  for (const auto& e : in.tensors()) {
    if (e.name == drop) continue;
    buffers.emplace_back(e.bytes());
    in.read_raw(e.name, buffers.back().data(), buffers.back().size());
    if (e.name == poison) {
      REQUIRE(e.type == io::dtype::f32);
      std::memcpy(buffers.back().data() + 3 * sizeof(float), &value, sizeof value);
    }
    out.add(e.name, e.type, e.shape, buffers.back().data(), buffers.back().size());
  }
  static const float extra[2] = {1.0f, 2.0f};
  if (!add.empty()) out.add(add, {2}, extra);
  for (const auto& [k, v] : in.metadata()) out.set_metadata(k, v);
  out.write(to);
}

}  // namespace

// A checkpoint saved from one model (`good`), and another model with its optimizer to load it into.
struct saved_checkpoint {
  using model_t = vit<tiny, precision::fp32, Kokkos::DefaultHostExecutionSpace>;
  scratch dir;
  std::string good = dir.file("good.safetensors");
  model_t model{init::timm{1}, 16};
  optimizer::adamw<model_t> opt{model};
  model_t target{init::timm{2}, 16};
  optimizer::adamw<model_t> target_opt{target};
  saved_checkpoint() : dir("saved_checkpoint") { io::save_checkpoint(good, model, opt, {}); }
};

TEST_CASE_FIXTURE(saved_checkpoint, "non-finite values are never saved, and refused on load with the tensor named") {
  using test::error_of;
  const std::string good_bytes = [&] {
    std::ifstream in(good, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();

  SUBCASE("a NaN in one optimizer-state tensor") {
    const std::string bad = dir.file("nan_state.safetensors");
    rewrite(good, bad, "", "", "optimizer.v.blocks.1.mlp.fc1.weight", std::numeric_limits<float>::quiet_NaN());
    const std::string e = error_of([&] { io::load_checkpoint(bad, target, target_opt); });
    INFO(e);
    CHECK(e.find("load_checkpoint: '" + bad + "': optimizer state 'optimizer.v.blocks.1.mlp.fc1.weight' is NaN at "
                 "element 3") != std::string::npos);
    CHECK_THROWS_AS(io::load_checkpoint(bad, target, target_opt), non_finite_error);
  }
  SUBCASE("an infinite parameter") {
    const std::string bad = dir.file("inf_param.safetensors");
    rewrite(good, bad, "", "", "head.weight", std::numeric_limits<float>::infinity());
    const std::string e = error_of([&] { io::load_checkpoint(bad, target, target_opt); });
    INFO(e);
    CHECK(e.find("parameter 'head.weight' is +Inf at element 3") != std::string::npos);
    CHECK(error_of([&] { io::load_parameters(target, bad); }).find("'head.weight' is +Inf") != std::string::npos);
  }
  SUBCASE("a NaN parameter is not saved, and the file there stays as it was") {
    std::vector<float> w = model.parameter(3);
    w[5] = std::numeric_limits<float>::quiet_NaN();
    model.set_parameter(3, w.data(), w.size());
    const std::string name = model.parameters().table()[3].full_name();
    const std::string e = error_of([&] { io::save_checkpoint(good, model, opt, {}); });
    INFO(e);
    CHECK(e.find("save_checkpoint: '" + good + "': parameter '" + name + "' is NaN at element 5") != std::string::npos);
    CHECK(e.find("nothing was written") != std::string::npos);
    std::ifstream in(good, std::ios::binary);
    CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == good_bytes);
    CHECK(error_of([&] { io::save_parameters(model, dir.file("params.safetensors")); }).find("is NaN") != std::string::npos);
    CHECK_FALSE(fs::exists(dir.file("params.safetensors")));
    for (const auto& entry : fs::directory_iterator(dir.dir))
      CHECK_MESSAGE(entry.path().string().find(".tmp-") == std::string::npos, "left behind: " << entry.path());
  }
}

TEST_CASE_FIXTURE(saved_checkpoint, "loading a damaged or mismatched checkpoint is an error that names the file and the problem") {
  using test::error_of;
  const auto before = snapshot(target, target_opt);

  SUBCASE("truncated") {
    const std::string cut = dir.file("cut.safetensors");
    fs::copy_file(good, cut);
    fs::resize_file(cut, fs::file_size(cut) / 2);
    const std::string e = error_of([&] { io::load_checkpoint(cut, target, target_opt); });
    INFO(e);
    CHECK(e.find("load_checkpoint: cannot read '" + cut + "'") != std::string::npos);
    CHECK(e.find("truncated") != std::string::npos);
    fs::resize_file(cut, 5);
    CHECK(error_of([&] { io::load_checkpoint(cut, target, target_opt); }).find("too short") != std::string::npos);
  }
  SUBCASE("another optimizer's checkpoint") {
    optimizer::sgd_momentum<model_t> sgd(model);
    const std::string other = dir.file("sgd.safetensors");
    io::save_checkpoint(other, model, sgd, {});
    const std::string e = error_of([&] { io::load_checkpoint(other, target, target_opt); });
    INFO(e);
    CHECK(e.find(other) != std::string::npos);
    CHECK(e.find("holds the state of optimizer::sgd_momentum, but the optimizer to restore is optimizer::adamw") !=
          std::string::npos);
  }
  SUBCASE("a missing and an extra tensor") {
    const std::string bad = dir.file("missing.safetensors");
    rewrite(good, bad, "optimizer.v.blocks.1.mlp.fc2.weight", "optimizer.v.stray");
    const std::string e = error_of([&] { io::load_checkpoint(bad, target, target_opt); });
    INFO(e);
    CHECK(e.find("'" + bad + "' does not fit the model and optimizer::adamw (2 problems)") != std::string::npos);
    CHECK(e.find("missing: optimizer.v.blocks.1.mlp.fc2.weight") != std::string::npos);
    CHECK(e.find("unexpected: optimizer.v.stray (F32 [2])") != std::string::npos);
  }
  SUBCASE("a missing parameter") {
    const std::string bad = dir.file("missing_param.safetensors");
    rewrite(good, bad, "blocks.0.norm1.weight");
    const std::string e = error_of([&] { io::load_checkpoint(bad, target, target_opt); });
    INFO(e);
    CHECK(e.find("missing: blocks.0.norm1.weight") != std::string::npos);
  }
  SUBCASE("a bf16 moment where float is expected") {
    optimizer::sgd_momentum<model_t, bf16> sgd_bf16(model);
    optimizer::sgd_momentum<model_t> sgd_float(target);
    const std::string other = dir.file("sgd_bf16.safetensors");
    io::save_checkpoint(other, model, sgd_bf16, {});
    const auto sgd_before = snapshot(target, sgd_float);
    const std::string e = error_of([&] { io::load_checkpoint(other, target, sgd_float); });
    INFO(e);
    CHECK(e.find("optimizer.m.blocks.0.attn.qkv.weight: the file has BF16 [96, 32], expected F32 [96, 32]") !=
          std::string::npos);
    CHECK(differing(sgd_before, snapshot(target, sgd_float)).empty());
  }
  SUBCASE("another model") {
    using wide = vit_shape<2, 32, 2, 96, 4, options<opt::classes<10>, opt::channels<1>, opt::resolution<16>>>;
    using wide_t = vit<wide, precision::fp32, Kokkos::DefaultHostExecutionSpace>;
    wide_t w(init::timm{1}, 16);
    optimizer::adamw<wide_t> wopt(w);
    const std::string e = error_of([&] { io::load_checkpoint(good, w, wopt); });
    INFO(e);
    CHECK(e.find("model.mlp_dim: the file has 64, the model 96") != std::string::npos);
    CHECK(e.find("blocks.0.mlp.fc1.weight: the file has F32 [64, 32], expected F32 [96, 32]") != std::string::npos);
    CHECK(e.find("optimizer.m.blocks.0.mlp.fc1.weight: the file has F32 [64, 32]") != std::string::npos);
  }
  SUBCASE("a parameter file is not a training checkpoint") {
    const std::string params = dir.file("params.safetensors");
    io::save_parameters(model, params);
    const std::string e = error_of([&] { io::load_checkpoint(params, target, target_opt); });
    INFO(e);
    CHECK(e.find("'" + params + "' is not a vitscale training checkpoint") != std::string::npos);
  }
  // Nothing was changed by the failed loads.
  CHECK(differing(before, snapshot(target, target_opt)).empty());
  CHECK(target_opt.steps() == 0);
}

TEST_CASE("a checkpoint keeps the EMA of the parameters, and loads it only into an optimizer that keeps one") {
  using test::error_of;
  using model_t = vit<tiny, precision::bf16_pure, Kokkos::DefaultHostExecutionSpace>;
  using opt_t = optimizer::adamw<model_t>;
  scratch dir("ema");
  const std::string path = dir.file("ema.safetensors");
  model_t model(init::timm{1}, 16);
  opt_t opt(model, optimizer_options<opt_t>(true));
  std::mt19937 gen(3);
  for (int t = 0; t < 3; ++t) {  // gradients of our own: the EMA and the parameters part ways
    std::vector<bf16> g(model.gradients().all().extent(0));
    for (auto& x : g) x = bf16(float(gen() % 2001u) * 1e-5f - 0.01f);
    Kokkos::deep_copy(model.gradients().all(),
                      Kokkos::View<bf16*, Kokkos::HostSpace, Kokkos::MemoryUnmanaged>(g.data(), g.size()));
    opt.step(1e-2);
  }
  io::save_checkpoint(path, model, opt, {});
  {
    io::safetensors_reader f(path);
    CHECK(f.metadata().at("optimizer.ema.decay") == "0.98999999999999999");
    CHECK(f.metadata().at("optimizer.ema.use_warmup") == "1");
    CHECK(f.metadata().at("optimizer.ema.update_after_step") == "1");
    CHECK(f.entry("ema.head.weight").type == io::dtype::f32);  // float, over bf16 parameters
    CHECK(f.entry("ema.head.weight").shape == std::vector<std::int64_t>{10, 32});
    CHECK(f.entry("head.weight").type == io::dtype::bf16);
  }
  // Back into a fresh optimizer with an EMA: every tensor, the EMA included, bit for bit.
  model_t other(init::timm{2}, 16);
  opt_t back(other, optimizer_options<opt_t>(true));
  io::load_checkpoint(path, other, back);
  CHECK(differing(snapshot(model, opt), snapshot(other, back)).empty());
  CHECK(test::bytes(back.ema()) == test::bytes(opt.ema()));
  // A parameter file too: load_parameters ignores the EMA (and the moments).
  model_t plain(16);
  io::load_parameters(plain, path);
  CHECK(plain.parameter(3) == model.parameter(3));

  // A checkpoint without an EMA, and an optimizer with none: clear errors, nothing changed.
  opt_t without(other);
  const std::string no_ema = dir.file("no_ema.safetensors");
  io::save_checkpoint(no_ema, other, without, {});
  CHECK_FALSE(io::safetensors_reader(no_ema).metadata().count("optimizer.ema.decay"));
  const auto before = snapshot(other, without);
  std::string e = error_of([&] { io::load_checkpoint(path, other, without); });
  CHECK(e.find("'" + path + "' holds an EMA of the parameters (decay 0.98999999999999999), but the optimizer to "
               "restore keeps none") != std::string::npos);
  CHECK(differing(before, snapshot(other, without)).empty());
  e = error_of([&] { io::load_checkpoint(no_ema, other, back); });
  CHECK(e.find("'" + no_ema + "' holds no EMA of the parameters, but the optimizer to restore keeps one") !=
        std::string::npos);

  // A NaN in the EMA is refused by name; a save while the model holds the EMA is refused.
  const std::string bad = dir.file("nan_ema.safetensors");
  rewrite(path, bad, "", "", "ema.blocks.0.mlp.fc1.weight", std::numeric_limits<float>::quiet_NaN());
  e = error_of([&] { io::load_checkpoint(bad, other, back); });
  CHECK(e.find("parameter EMA 'ema.blocks.0.mlp.fc1.weight' is NaN at element 3") != std::string::npos);
  {
    auto scope = opt.use_ema();
    e = error_of([&] { io::save_checkpoint(path, model, opt, {}); });
    CHECK(e.find("an EMA scope is open") != std::string::npos);
  }
  io::load_checkpoint(path, other, back);  // the file is as it was
  CHECK(differing(snapshot(model, opt), snapshot(other, back)).empty());
}

// ---- a save killed part-way
namespace {

// A checkpoint of ~21 MB (1.8 M parameters, AdamW's two moments), so that a save takes long enough to be
// killed in the middle.
using large = vit_shape<4, 192, 4, 768, 4, options<opt::classes<10>, opt::channels<1>, opt::resolution<16>>>;
using large_t = vit<large, precision::fp32, Kokkos::DefaultHostExecutionSpace>;

// The content of the child's checkpoints, and of the parent's: distinct parameters, moments and steps
// (seed 0: all zero, a model and optimizer to load into).
struct large_run {
  large_t model;
  optimizer::adamw<large_t> opt;
  io::training_state state;
  explicit large_run(std::uint64_t seed) : model(16), opt(model) {
    Kokkos::deep_copy(model.parameters().all(), 0.125f * float(seed));
    Kokkos::deep_copy(opt.template moment<0>(), 0.25f * float(seed));
    Kokkos::deep_copy(opt.template moment<1>(), 0.5f * float(seed));
    opt.set_steps(std::int64_t(seed) * 10);
    state.step = std::int64_t(seed) * 10;
    state.data = {std::uint32_t(seed), 8};
  }
};

constexpr const char* child_variable = "VITSCALE_CHECKPOINT_CHILD";

}  // namespace

// Not a test by itself (skipped unless asked for with --no-skip): the process the killed-save test starts
// (fork + exec of this executable, with the path in VITSCALE_CHECKPOINT_CHILD), saving the same checkpoint
// over and over until it is killed.
TEST_CASE("checkpoint child: saves in a loop until killed" * doctest::skip()) {
  const char* path = std::getenv(child_variable);
  if (path == nullptr) return;
  large_run run(2);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t parent = ::getppid();
  // Bounded, in case the parent dies without killing us.
  while (::getppid() == parent && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    io::save_checkpoint(path, run.model, run.opt, run.state);
}

TEST_CASE("a save killed part-way leaves the previous checkpoint intact") {
  scratch dir("killed");
  const std::string path = dir.file("state.safetensors");
  large_run old_run(1), child_content(2);
  const auto old_snapshot = snapshot(old_run.model, old_run.opt);
  const auto new_snapshot = snapshot(child_content.model, child_content.opt);
  REQUIRE(!differing(old_snapshot, new_snapshot).empty());

  // Prepared before fork: after it, the child only calls async-signal-safe functions until exec.
  const std::string variable = std::string(child_variable) + "=" + path;
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  env.push_back(const_cast<char*>(variable.c_str()));
  env.push_back(nullptr);
  std::string self = fs::read_symlink("/proc/self/exe").string();
  std::string filter = "--test-case=checkpoint child: saves in a loop until killed";
  std::string no_skip = "--no-skip=true";
  char* argv[] = {self.data(), filter.data(), no_skip.data(), nullptr};

  std::mt19937 gen(17);
  const int trials = 8;
  int mid_write = 0, replaced = 0;
  for (int trial = 0; trial < trials; ++trial) {
    INFO("trial " << trial);
    io::save_checkpoint(path, old_run.model, old_run.opt, old_run.state);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      const int null = ::open("/dev/null", O_WRONLY);
      if (null >= 0) {
        ::dup2(null, 1);
        ::dup2(null, 2);
      }
      ::execve(argv[0], argv, env.data());
      ::_exit(127);
    }
    // Wait for the child's first temporary file, then kill it: on even trials once its temporary file has
    // grown past a random fraction of a checkpoint's size (in the middle of writing, almost surely), on odd
    // trials after a random delay (anywhere in the loop: copying, writing, flushing, renaming).
    std::string tmp;  // the child's temporary, once it exists: <path>.tmp-<host>-<child>-<random>
    const auto full = fs::file_size(path);
    const auto threshold = std::uintmax_t(double(full) * (0.05 + 0.9 * double(gen() % 1000u) / 1000.0));
    const auto t0 = std::chrono::steady_clock::now();
    bool started = false;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
      int status = 0;
      if (::waitpid(child, &status, WNOHANG) == child) break;  // died early: reported below
      std::error_code ec;
      if (tmp.empty()) tmp = temporary_of(path, child);
      const auto size = fs::file_size(tmp.empty() ? path + ".none" : tmp, ec);
      started = started || !ec;
      if (started && (trial % 2 == 1 || (!ec && size >= threshold))) break;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (started && trial % 2 == 1) std::this_thread::sleep_for(std::chrono::microseconds(gen() % 50000u));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE_MESSAGE(started, "the child never started writing a checkpoint");
    CHECK(WIFSIGNALED(status));

    // The checkpoint is the previous one, or the child's complete one if a save of it finished: never a mix.
    large_run loaded(0);
    const io::training_state s = io::load_checkpoint(path, loaded.model, loaded.opt);
    const auto got = snapshot(loaded.model, loaded.opt);
    const bool is_old = differing(got, old_snapshot).empty() && s.step == 10 && loaded.opt.steps() == 10;
    const bool is_new = differing(got, new_snapshot).empty() && s.step == 20 && loaded.opt.steps() == 20;
    CHECK((is_old || is_new));
    replaced += is_new;
    // A temporary file left by the kill is never read as the checkpoint; it is incomplete, or complete and
    // then exactly the child's content.
    if (!tmp.empty() && fs::exists(tmp)) {
      ++mid_write;
      CHECK(tmp != path);
      large_run partial(0);
      const std::string e = test::error_of([&] { io::load_checkpoint(tmp, partial.model, partial.opt); });
      if (e != "(no error)") {
        CHECK(e.find(tmp) != std::string::npos);
      } else {
        CHECK(differing(snapshot(partial.model, partial.opt), new_snapshot).empty());
      }
      // Left where it is: the next save removes it, as its process has ended (checked below).
    }
  }
  MESSAGE(mid_write << " of " << trials << " kills left a partial temporary file; " << replaced
                    << " after a save had completed");
  CHECK(mid_write >= 1);  // else the test did not test what it says
  io::save_checkpoint(path, old_run.model, old_run.opt, old_run.state);
  for (const auto& entry : fs::directory_iterator(dir.dir))
    CHECK_MESSAGE(entry.path().string().find(".tmp-") == std::string::npos, "left behind: " << entry.path());
  CHECK(fs::exists(path + ".prev"));  // the checkpoint before the last one
}
