// Compute bookkeeping (explore/compute.hpp) and the shape grid (explore/shape_grid.hpp): the run-time accounting
// equals the compile-time one for every preset and a few option variants, known numbers, a hand-computed
// fits / does-not-fit case, and errors on bad input.
#include <doctest/doctest.h>
#include <support/errors.hpp>
#include <vitscale/config/presets.hpp>
#include <vitscale/config/sharding.hpp>
#include <vitscale/explore/compute.hpp>
#include <vitscale/explore/shape_grid.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

namespace vs = vitscale;
namespace ex = vitscale::explore;
namespace pr = vitscale::presets;

namespace {

bool same(const vs::param_counts& a, const vs::param_counts& b) {
  return a.cls_token == b.cls_token && a.pos_embed == b.pos_embed && a.pos_embed_cls_entry == b.pos_embed_cls_entry &&
         a.patch_embed == b.patch_embed && a.blocks == b.blocks && a.final_norm == b.final_norm &&
         a.pool_head == b.pool_head && a.pre_logits == b.pre_logits && a.classifier == b.classifier &&
         a.backbone == b.backbone && a.total == b.total;
}
bool same(const vs::flop_counts& a, const vs::flop_counts& b) {
  return a.patch_embed == b.patch_embed && a.blocks == b.blocks && a.pool_head == b.pool_head &&
         a.pre_logits == b.pre_logits && a.classifier == b.classifier && a.forward == b.forward &&
         a.training == b.training;
}
bool same(const vs::memory_bytes& a, const vs::memory_bytes& b) {
  return a.parameters == b.parameters && a.weight_copy == b.weight_copy && a.gradients == b.gradients &&
         a.optimizer_state == b.optimizer_state && a.activations == b.activations && a.parameter_ema == b.parameter_ema;
}

// The template path (the Shape structs the model lays its arena out from, the tensor_table loop as it stood)
// against the descriptor path, at two resolutions.
template <class Shape>
void check_runtime_equals_compile_time() {
  constexpr vs::shape_descriptor d = vs::describe<Shape>();
  for (int res : {Shape::resolution, 2 * Shape::resolution}) {
    CAPTURE(res);
    CHECK(same(vs::count_params(d, res), vs::count_params<Shape>(res)));
    CHECK(same(vs::count_flops(d, res), vs::count_flops<Shape>(res)));
    const vs::activation_elements rt = vs::count_activations(d, res), ct = vs::count_activations<Shape>(res);
    CHECK(rt.act == ct.act);
    CHECK(rt.f32 == ct.f32);
    const auto remat = vs::rematerialization::blocks;
    const vs::activation_elements rr = vs::count_activations(d, res, remat), cr = vs::count_activations<Shape>(res, remat);
    CHECK(rr.act == cr.act);
    CHECK(rr.f32 == cr.f32);
    CHECK(rr.act <= rt.act);
    // the parameter-side memory summed independently from the compile-time table
    std::int64_t numel = 0, weights = 0, adafactor_state = 0;
    for (const vs::tensor_info& t : vs::tensor_table<Shape>(res)) {
      numel += t.numel();
      weights += t.role == vs::tensor_role::weight ? t.numel() : 0;
      adafactor_state += 2 * t.numel() + 4 * (vs::optim::factored(t) ? t.matrix_rows() + t.matrix_cols() : t.numel());
    }
    const vs::memory_bytes m = vs::training_memory(d, vs::precision_bytes::of<vs::precision::bf16_mixed>(),
                                                   vs::optim::state_layout_ref::of<vs::optim::adafactor>(), 3, res);
    CHECK(m.parameters == 4 * numel);
    CHECK(m.gradients == 4 * numel);
    CHECK(m.weight_copy == 2 * weights);
    CHECK(m.optimizer_state == adafactor_state);
    CHECK(m.activations == 3 * (2 * ct.act + 4 * ct.f32));
    CHECK(same(m, vs::training_memory<Shape, vs::precision::bf16_mixed, vs::optim::adafactor>(3, res)));
    CHECK(same(ex::training_memory_per_device(d, ex::precision_kind::fp32, ex::optimizer_kind::adam, 4, res, {}),
               vs::training_memory<Shape, vs::precision::fp32, vs::optim::adam>(4, res)));
  }
}

template <class... Shapes>
void check_all(vs::type_list<Shapes...>) {
  (check_runtime_equals_compile_time<Shapes>(), ...);
}

// A tiny shape worked out by hand below.
vs::shape_descriptor tiny() {
  vs::shape_descriptor d = ex::grid_spec::describe_base();
  d.depth = 1, d.width = 64, d.heads = 4, d.mlp_dim = 128, d.patch = 16, d.classes = 10;
  return d;
}

}  // namespace

TEST_CASE("run-time accounting equals the compile-time accounting for every preset and option variants") {
  check_all(pr::all{});
  using namespace vs::opt;
  check_all(vs::type_list<pr::vit_b16::with<pool_gap, classes<10>>, pr::vit_s16::with<pool_gap_fc_norm, gelu_tanh>,
                          pr::vit_ti16::with<sincos_posemb, pool_map, pre_logits<96>, channels<1>>,
                          pr::vit_ti16::with<cls_posemb<false>, qk_norm<true>, layer_norm<false, true>>,
                          vs::vit_shape<2, 64, 4, 96, 4, vs::options<parallel_block, qkv_bias<true>, resolution<28>>>>{});
}

TEST_CASE("known numbers: ViT-B/16 at 224 px") {
  ex::grid_spec spec;  // the default grid is ViT-B/16, bf16-mixed, Adafactor, on an H100
  const ex::grid_result r = ex::explore_grid(spec);
  REQUIRE(r.points.size() == 1);
  const ex::grid_point& g = r.points[0];
  CHECK(g.params.total == 86'567'656);  // timm's vit_base_patch16_224: 86.6 M
  CHECK(g.params.backbone == 85'797'120);
  CHECK(g.shape.tokens(224) == 197);
  // By hand, n = 197 tokens, D = 768, F = 3072: per block 2nD·3D + 2nD² + 4nDF (linear maps) + 4n²D
  // (attention) = 2,907,909,120; 12 blocks, patch embedding 2·196·768·768 = 231,211,008, classifier
  // 2·768·1000: 35,127,656,448. timm's table gives 17.6 GMACs for vit_base_patch16_224 (attention included).
  CHECK(g.flops.forward == 35'127'656'448);
  CHECK(g.flops.patch_embed == 231'211'008);
  CHECK(std::abs(g.flops.forward / 2e9 - 17.6) < 0.05);
  CHECK(g.flops.training == 3 * g.flops.forward - g.flops.patch_embed);
  // ViT-L/16 and H/14 in the same grid's terms
  spec.depths = {24};
  spec.widths = {1024};
  spec.mlp_dims = {4096};
  spec.heads = {16};
  CHECK(ex::explore_grid(spec).points[0].params.total == pr::vit_l16::params().total);
  CHECK(ex::explore_grid(spec).points[0].params.total == 304'326'632);  // timm's vit_large_patch16_224
}

TEST_CASE("a grid spans its axes, skips heads that do not divide the width, and writes a CSV") {
  ex::grid_spec spec;
  spec.depths = {2, 3};
  spec.widths = {64, 96};
  spec.mlp_dims = {128};
  spec.heads = {4, 5};  // 5 divides neither width
  spec.base.patch = 8;
  spec.resolution = 32;
  spec.precisions = {ex::precision_kind::fp32, ex::precision_kind::bf16_mixed};
  spec.optimizers = {ex::optimizer_kind::adam, ex::optimizer_kind::adafactor};
  const ex::grid_result r = ex::explore_grid(spec);
  CHECK(r.skipped == 4);
  CHECK(r.points.size() == 2 * 2 * 1 * 1 * 2 * 2);  // depth × width × MLP × heads 4 × precision × optimizer
  CHECK(r.points[0].shape.depth == 2);
  CHECK(r.points[0].shape.width == 64);
  CHECK(r.points[0].precision == ex::precision_kind::fp32);
  CHECK(r.points[1].optimizer == ex::optimizer_kind::adafactor);
  CHECK(r.points.back().shape.depth == 3);
  CHECK(r.points.back().shape.width == 96);
  for (const ex::grid_point& g : r.points) {
    CHECK(g.step.step_seconds > 0);
    CHECK(g.step.mfu == doctest::Approx(spec.efficiency));  // one device: the step model's MFU is the efficiency
  }
  std::ostringstream csv;
  ex::write_csv(csv, r);
  const std::string text = csv.str();
  CHECK(text.rfind(ex::csv_header() + "\n", 0) == 0);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1 + 16);
  const std::string first = text.substr(text.find('\n') + 1, text.find('\n', text.find('\n') + 1) - text.find('\n') - 1);
  CHECK(first.rfind("2,64,128,4,8,32,17,1,1,1,fp32,adam,", 0) == 0);
  const std::string header = ex::csv_header();
  CHECK(std::count(first.begin(), first.end(), ',') == std::count(header.begin(), header.end(), ','));
}

TEST_CASE("fits / does not fit, worked out by hand") {
  // depth 1, width 64, 4 heads, MLP 128, patch 16 at 32 px: 4 patches + class token = 5 tokens, 10 classes.
  // Parameters: class token 64, position embedding 5·64 = 320, patch embedding 64·3·16·16 + 64 = 49,216;
  // block: norms 2·128, qkv 3·64·64 + 192, proj 64·64 + 64, fc1 128·64 + 128, fc2 64·128 + 64 = 33,472;
  // final norm 128; head 10·64 + 10 = 650. Total 83,850.
  // fp32 + SGD with momentum: parameters, gradients and momentum, 12 bytes each: 1,006,200 bytes.
  // Activations per image (fp32): stream 2·5·64 = 640, qkv 960, attention output 320, mid-block 320, MLP 640,
  // pooled 64 -> 2,944; statistics: two norms 2·5 each, log-sum-exp 5·4, final norm 10, logits 10 -> 60.
  // (2,944 + 60)·4 = 12,016 bytes per image; batch 4: 48,064. Total 1,054,264 bytes.
  const vs::shape_descriptor d = tiny();
  CHECK(vs::count_params(d, 32).total == 83'850);
  ex::grid_spec spec;
  spec.resolution = 32;
  spec.batch = 4;
  spec.precisions = {ex::precision_kind::fp32};
  spec.optimizers = {ex::optimizer_kind::sgd_momentum};
  spec.device_memory = 1'054'264;
  ex::grid_point g = ex::evaluate(d, ex::precision_kind::fp32, ex::optimizer_kind::sgd_momentum, spec);
  CHECK(g.memory.parameters == 4 * 83'850);
  CHECK(g.memory.optimizer_state == 4 * 83'850);
  CHECK(g.memory.activations == 48'064);
  CHECK(g.memory.total() == 1'054'264);
  CHECK(g.fits);
  spec.device_memory = 1'054'263;
  g = ex::evaluate(d, ex::precision_kind::fp32, ex::optimizer_kind::sgd_momentum, spec);
  CHECK_FALSE(g.fits);
  // two data ranks: the same parameters on each, half the images
  spec.grid = ex::mesh{2, 1};
  spec.device_memory = 1'054'264 - 24'032;
  g = ex::evaluate(d, ex::precision_kind::fp32, ex::optimizer_kind::sgd_momentum, spec);
  CHECK(g.memory.total() == 1'054'264 - 24'032);
  CHECK(g.fits);
  CHECK(g.step.chips == 2);
}

TEST_CASE("rematerialisation in the grid: less memory, a longer step, the same model FLOPs") {
  ex::grid_spec spec;  // ViT-B/16, bf16-mixed, Adafactor, one H100
  spec.batch = 256;
  spec.remats = {vs::rematerialization::none, vs::rematerialization::blocks};
  ex::grid_result r = ex::explore_grid(spec);
  REQUIRE(r.points.size() == 2);
  const ex::grid_point keep = r.points[0], remat = r.points[1];
  CHECK(keep.remat == vs::rematerialization::none);
  CHECK(remat.remat == vs::rematerialization::blocks);
  // Per image: 11 of the 12 blocks' activations are not kept (the block inputs are).
  using b16 = pr::vit_b16;
  const std::int64_t saved = keep.memory.activations - remat.memory.activations;
  CHECK(saved == 256 * (vs::activation_bytes_per_image<b16, vs::precision::bf16_mixed>() -
                        vs::activation_bytes_per_image<b16, vs::precision::bf16_mixed>(224, vs::rematerialization::blocks)));
  CHECK(remat.memory.activations < keep.memory.activations / 4);
  CHECK(remat.memory.parameters == keep.memory.parameters);
  CHECK(remat.memory.optimizer_state == keep.memory.optimizer_state);
  // The step does one more forward of the blocks: nearly 4/3 the time on one device; model FLOPs unchanged.
  CHECK(remat.step.model_flops == keep.step.model_flops);
  const double blocks = double(keep.flops.blocks), other = double(keep.flops.training - 3 * keep.flops.blocks);
  CHECK(remat.step.step_seconds / keep.step.step_seconds == doctest::Approx((4 * blocks + other) / (3 * blocks + other)));
  CHECK(remat.step.mfu < keep.step.mfu);
  // A device between the two: only the rematerialised run fits.
  spec.device_memory = 0.5 * double(keep.memory.total() + remat.memory.total());
  r = ex::explore_grid(spec);
  CHECK_FALSE(r.points[0].fits);
  CHECK(r.points[1].fits);
  std::ostringstream csv;
  ex::write_csv(csv, r);
  CHECK(csv.str().find(",bf16-mixed,adafactor,blocks,") != std::string::npos);
  CHECK(ex::parse_remat("blocks") == vs::rematerialization::blocks);
  CHECK_ERROR(ex::parse_remat("all"), "unknown rematerialisation 'all'", "none", "blocks");
  // Compute bookkeeping counts the recomputation as executed work.
  CHECK(ex::cumulative_training_flops(keep.flops, 10, vs::rematerialization::blocks) ==
        10.0 * double(keep.flops.training + keep.flops.blocks));
}

TEST_CASE("the Scaling ViT point: ViT-g/14 fits 16 GiB with Adafactor (bf16 momentum), not with Adam") {
  ex::grid_spec spec;
  spec.accelerator = &ex::devices::tpu_v3_core;  // 16 GiB
  spec.base = vs::describe<pr::vit_giant14>();
  spec.depths = {pr::vit_giant14::depth};
  spec.widths = {pr::vit_giant14::width};
  spec.mlp_dims = {pr::vit_giant14::mlp_dim};
  spec.heads = {pr::vit_giant14::heads};
  spec.optimizers = {ex::optimizer_kind::adam, ex::optimizer_kind::adafactor};
  const ex::grid_result r = ex::explore_grid(spec);
  REQUIRE(r.points.size() == 2);
  CHECK(r.points[0].device_memory == 16.0 * 1024 * 1024 * 1024);
  CHECK_FALSE(r.points[0].fits);  // Adam: 4 + 4 + 2 + 8 bytes per parameter = 18 GB for 1.0 B parameters
  CHECK(r.points[1].fits);        // Adafactor: about 4 + 4 + 2 + 2
  CHECK(r.points[0].memory.optimizer_state > 3 * r.points[1].memory.optimizer_state);
}

TEST_CASE("a model axis splits ViT-22B's parallel block as config/sharding.hpp does") {
  using s = pr::vit_22b;
  const vs::shape_descriptor d = vs::describe<s>();
  std::int64_t local = 0;
  for (const vs::tensor_info& t : vs::tensor_table<s>()) local += vs::shard_tensor<s>(t, vs::model_shard{8, 0}).numel();
  const vs::memory_bytes m =
      ex::training_memory_per_device(d, ex::precision_kind::bf16_mixed, ex::optimizer_kind::adam, 64, 224, {2, 8});
  CHECK(m.parameters == 4 * local);
  CHECK(m.parameters < 4 * s::params().total / 6);  // the MAP head (0.4 B) stays replicated
  CHECK(m.activations == 4 * vs::activation_bytes_per_image<s, vs::precision::bf16_mixed>());
}

TEST_CASE("compute bookkeeping: cumulative FLOPs and device-hours") {
  const vs::flop_counts f = pr::vit_b16::flops();
  CHECK(ex::training_flops_per_image(f) == double(f.training));
  CHECK(ex::cumulative_training_flops(f, 0) == 0);
  CHECK(ex::cumulative_training_flops(f, 1'000) == 1000.0 * double(f.training));
  // 1e18 FLOPs on an H100 in bf16 at 40 % MFU: 1e18 / (989.4e12 · 0.4) s.
  CHECK(ex::device_hours(1e18, ex::devices::h100, ex::numeric::bf16, 0.4) ==
        doctest::Approx(1e18 / (989.4e12 * 0.4) / 3600));
  CHECK(ex::device_hours(1e18, ex::devices::a100, ex::numeric::fp32, 1.0) == doctest::Approx(1e18 / 19.5e12 / 3600));
  CHECK(&ex::find_device("tpu-v4") == &ex::devices::tpu_v4);
  CHECK(&ex::find_device("TPU v3 core") == &ex::devices::tpu_v3_core);
  CHECK(&ex::find_device("mi250x") == &ex::devices::mi250x);
  // Through the step model on one device: the device-hours of the same FLOPs at MFU = efficiency.
  ex::step_config c{};
  c.shape = ex::step_shape::of<pr::vit_b16>();
  c.images = 256;
  const ex::run_cost run = ex::predict_run(c, ex::machine_of(ex::devices::h100, ex::numeric::bf16, 0.4), 1000);
  CHECK(run.model_flops == doctest::Approx(ex::cumulative_training_flops(f, 256'000)));
  CHECK(run.device_hours == doctest::Approx(ex::device_hours(run.model_flops, ex::devices::h100, ex::numeric::bf16, 0.4)));
  CHECK(run.mfu == doctest::Approx(0.4));
}

TEST_CASE("errors on bad input") {
  CHECK_ERROR(ex::cumulative_training_flops(pr::vit_b16::flops(), -1), "images seen");
  CHECK_ERROR(ex::device_hours(1e18, ex::devices::h100, ex::numeric::bf16, 0), "MFU");
  CHECK_ERROR(ex::device_hours(1e18, ex::devices::h100, ex::numeric::bf16, 1.5), "MFU");
  CHECK_ERROR(ex::device_hours(1e18, ex::devices::tpu_v4, ex::numeric::fp32, 0.5), "TPU v4", "fp32");
  CHECK_ERROR(ex::find_device("V100"), "unknown device", "H100");
  CHECK_ERROR(ex::parse_optimizer("adamw"), "unknown optimizer", "adafactor");
  CHECK_ERROR(ex::parse_precision("fp16"), "unknown precision");
  CHECK(ex::parse_optimizer("adam-bf16m") == ex::optimizer_kind::adam_bf16_momentum);

  ex::grid_spec spec;
  vs::shape_descriptor d = tiny();
  d.heads = 5;
  CHECK_ERROR(ex::evaluate(d, ex::precision_kind::fp32, ex::optimizer_kind::adam, spec), "multiple of the number of heads");
  d = tiny();
  d.depth = 0;
  CHECK_ERROR(ex::evaluate(d, ex::precision_kind::fp32, ex::optimizer_kind::adam, spec), "depth");
  d = tiny();
  d.heads.reset();
  CHECK_ERROR(vs::count_params(d, 224), "heads is not known");
  d = tiny();
  spec.resolution = 30;
  CHECK_ERROR(ex::evaluate(d, ex::precision_kind::fp32, ex::optimizer_kind::adam, spec), "30 px", "patch size 16");
  spec.resolution = 32;
  spec.batch = 3;
  spec.grid = ex::mesh{2, 1};
  CHECK_ERROR(ex::evaluate(d, ex::precision_kind::fp32, ex::optimizer_kind::adam, spec), "does not split evenly");
  spec.batch = 4;
  spec.grid = ex::mesh{1, 2};
  CHECK_ERROR(ex::evaluate(d, ex::precision_kind::fp32, ex::optimizer_kind::adam, spec), "parallel block");
  spec.grid = ex::mesh{2, 1};
  spec.accelerator = &ex::devices::mi250x;
  CHECK_ERROR(ex::evaluate(d, ex::precision_kind::bf16_mixed, ex::optimizer_kind::adam, spec), "link bandwidth");
  spec = ex::grid_spec{};
  spec.heads = {};
  CHECK_ERROR(ex::explore_grid(spec), "every axis");
  spec = ex::grid_spec{};
  spec.device_memory = -1;
  CHECK_ERROR(ex::explore_grid(spec), "device memory");
}
