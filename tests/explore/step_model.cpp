// The sharded-step model (include/vitscale/explore/step_model.hpp): invariants that a wrong formula breaks,
// one collective's bytes worked out by hand, the shape numbers against the library's own accounting, and
// ViT-22B's published utilisation.
#include <doctest/doctest.h>
#include <support/errors.hpp>
#include <vitscale/config/presets.hpp>
#include <vitscale/explore/step_model.hpp>

#include <cmath>
#include <cstdio>

namespace vs = vitscale;
namespace ex = vitscale::explore;
namespace pr = vitscale::presets;

namespace {

// A small parallel-block encoder; odd token count, heads and MLP that split over 1, 2 and 4 model ranks.
constexpr ex::step_shape small_shape() { return ex::step_shape::encoder(3, 64, 4, 256, 17); }

ex::machine small_machine(double link, int chunks, double latency = 1e-6) {
  ex::machine m{};
  m.peak_flops = 1e12;
  m.gemm_efficiency = 0.8;
  m.attention_efficiency = 0.5;
  m.model_link_bandwidth = link;
  m.data_link_bandwidth = link;
  m.collective_latency = latency;
  m.chunks = chunks;
  return m;
}

ex::step_config small_config(int data, int model, std::int64_t images = 24) {
  ex::step_config c{};
  c.shape = small_shape();
  c.images = images;
  c.grid = ex::mesh{data, model};
  return c;
}

}  // namespace

TEST_CASE("step_shape from a compile-time shape reuses the library's parameter and FLOP counts") {
  constexpr ex::step_shape s = ex::step_shape::of<pr::vit_22b>(224);
  static_assert(s.tokens == 256);
  static_assert(s.block_params == pr::vit_22b::params(224).blocks);
  static_assert(s.params() == pr::vit_22b::params(224).total);
  static_assert(s.training_flops_per_image() == pr::vit_22b::flops(224).training);
  // ViT-22B's parallel block has no QKV bias: everything split is the two weight matrices plus the MLP-in bias.
  static_assert(s.block_sharded_params == 48LL * (6144LL * (3 * 6144 + 24576) + (6144LL + 24576) * 6144 + 24576));
  CHECK(s.block_params == doctest::Approx(21.7e9).epsilon(0.005));  // the paper's ~21.7B (backbone blocks)

  // By numbers, a ViT with biases gets the parameter table's counts (classic block, class token: 197 tokens).
  constexpr ex::step_shape b = ex::step_shape::of<pr::vit_b16>(224);
  constexpr ex::step_shape b_numbers = ex::step_shape::encoder(12, 768, 12, 3072, 197, vs::block_kind::classic);
  static_assert(b_numbers.block_params == b.block_params);
  static_assert(b_numbers.block_sharded_params == b.block_sharded_params);
  static_assert(b_numbers.block_linear_flops == b.block_linear_flops);
  static_assert(b_numbers.block_attention_flops == b.block_attention_flops);
}

TEST_CASE("one mesh axis of length 1 moves no bytes on that axis") {
  const ex::machine m = small_machine(1e9, 4);
  const ex::step_prediction data_only = ex::predict(small_config(4, 1), m);
  CHECK(data_only.model_axis_bytes == 0);
  CHECK(data_only.model_comm_seconds == 0);
  CHECK(data_only.model_exposed_seconds == 0);
  CHECK(data_only.data_axis_bytes > 0);

  const ex::step_prediction model_only = ex::predict(small_config(1, 4), m);
  CHECK(model_only.data_axis_bytes == 0);
  CHECK(model_only.model_axis_bytes > 0);

  const ex::step_prediction single = ex::predict(small_config(1, 1), m);
  CHECK(single.model_axis_bytes + single.data_axis_bytes == 0);
  CHECK(single.step_seconds == doctest::Approx(single.compute_seconds()).epsilon(1e-15));
}

// One parallel block, D = 8, F = 16, 3 tokens, 4 images on a 1 × 2 mesh, bf16 gathers, fp32 reductions and
// gradients: the configuration worked out by hand below.
static ex::step_config hand_worked_config() {
  ex::step_config c{};
  c.shape = ex::step_shape::encoder(1, 8, 2, 16, 3);
  c.images = 4;
  c.grid = ex::mesh{1, 2};
  c.activation_bytes = 2;
  c.reduction_bytes = 4;
  c.gradient_bytes = 4;
  return c;
}

TEST_CASE("model-axis bytes worked out by hand") {
  // T = 12 tokens, [T, D] = 96 elements. Gathers (bf16): 96 × 2 B × 1/2 = 96 B, three per step; reduce-scatters
  // (fp32): 96 × 4 B × 1/2 = 192 B, two per step. Replicated block parameters: LayerNorm scale and bias and the
  // two output biases, 4 × 8 = 32 floats = 128 B, all-reduced over 2 ranks: 2 × 1/2 × 128 = 128 B. Total
  // 3·96 + 2·192 + 128.
  ex::step_config c = hand_worked_config();
  const ex::step_prediction r = ex::predict(c, small_machine(1e9, 1));
  CHECK(r.model_axis_bytes == 3 * 96 + 2 * 192 + 128);
  CHECK(r.data_axis_bytes == 0);

  // The same on a 3 × 2 mesh (12 images): the model-axis volume per chip is unchanged (T is per group); the
  // data axis all-reduces each chip's half of the sharded gradients and all replicated ones, 2 × 2/3 of each.
  c.images = 12;
  c.grid = ex::mesh{3, 2};
  const ex::step_prediction r3 = ex::predict(c, small_machine(1e9, 1));
  CHECK(r3.model_axis_bytes == r.model_axis_bytes);
  const double sharded = (8.0 * 40 + 24.0 * 8 + 40) / 2 * 4;  // in-product [8, 40] + bias 40, out [24, 8]
  const double replicated = 32.0 * 4;
  CHECK(r3.data_axis_bytes == doctest::Approx(2.0 * 2 / 3 * (sharded + replicated)));
}

TEST_CASE("rematerialisation: the blocks' forward again, its products and its collectives") {
  // The block of the hand-worked case above: with rematerialisation, backward gathers and reduce-scatters the
  // forward's [T, D] once more: 4 gathers, 3 reduce-scatters; the gradients' bytes do not change.
  ex::step_config c = hand_worked_config();
  c.remat = vs::rematerialization::blocks;
  const ex::step_prediction r = ex::predict(c, small_machine(1e9, 1));
  CHECK(r.model_axis_bytes == 4 * 96 + 3 * 192 + 128);
  // One chip, a bare encoder (no embedding or head): 4/3 of the compute, the same model FLOPs, 3/4 the MFU.
  c.grid = ex::mesh{1, 1};
  const ex::step_prediction with = ex::predict(c, small_machine(1e9, 1));
  c.remat = vs::rematerialization::none;
  const ex::step_prediction without = ex::predict(c, small_machine(1e9, 1));
  CHECK(with.flops() == doctest::Approx(4.0 / 3.0 * without.flops()).epsilon(1e-12));
  CHECK(with.model_flops == without.model_flops);
  CHECK(with.mfu == doctest::Approx(0.75 * without.mfu).epsilon(1e-12));
}

TEST_CASE("FLOPs per chip times chips is the step's FLOPs, and MFU never exceeds the GEMM efficiency") {
  for (int data : {1, 2, 3}) {
    for (int model : {1, 2, 4}) {
      const ex::step_config c = small_config(data, model, 24 * data);
      for (int chunks : {1, 3, 8}) {
        const ex::machine m = small_machine(5e8, chunks);
        const ex::step_prediction r = ex::predict(c, m);
        CHECK(r.flops() * r.chips == doctest::Approx(r.model_flops).epsilon(1e-12));
        CHECK(r.model_flops == double(c.images) * double(c.shape.training_flops_per_image()));
        CHECK(r.mfu <= m.gemm_efficiency);
        CHECK(r.mfu > 0);
        CHECK(r.hidden_seconds() >= -1e-15);
        CHECK(r.exposed_seconds() <= r.comm_seconds() * (1 + 1e-12));
      }
    }
  }
}

TEST_CASE("more bandwidth never makes a step slower; one chunk hides nothing on the model axis") {
  for (int model : {2, 4}) {
    for (int chunks : {1, 2, 5, 16}) {
      double previous = INFINITY;
      for (double link : {1e6, 1e7, 1e8, 1e9, 1e10, 1e11}) {
        const ex::step_prediction r = ex::predict(small_config(2, model), small_machine(link, chunks));
        CHECK(r.step_seconds <= previous);
        previous = r.step_seconds;
        if (chunks == 1) CHECK(r.model_exposed_seconds == doctest::Approx(r.model_comm_seconds).epsilon(1e-14));
      }
    }
  }
  // Without latency, cutting finer never exposes more; with latency, far too many chunks costs time.
  double previous = INFINITY;
  for (int chunks : {1, 2, 4, 8, 16, 64}) {
    const ex::step_prediction r = ex::predict(small_config(1, 4), small_machine(1e8, chunks, 0));
    CHECK(r.model_exposed_seconds <= previous * (1 + 1e-12));
    previous = r.model_exposed_seconds;
  }
  CHECK(ex::predict(small_config(1, 4), small_machine(1e8, 100000, 1e-6)).step_seconds >
        ex::predict(small_config(1, 4), small_machine(1e8, 4, 1e-6)).step_seconds);
}

TEST_CASE("measured numbers map onto a machine") {
  ex::measured_machine here{};
  here.peak_flops = 540e9;
  here.gemm_flops_per_second = 480e9;
  here.link_bytes_per_second = 5e9;
  here.latency_seconds = 20e-6;
  here.chunks = 4;
  const ex::machine m = here.to_machine();
  CHECK(m.gemm_efficiency == doctest::Approx(480.0 / 540));
  CHECK(m.attention_rate() == doctest::Approx(480e9));
  const ex::step_prediction r = ex::predict(small_config(1, 2), here);
  CHECK(r.mfu <= m.gemm_efficiency);
  CHECK(r.to_string().find("MFU") != std::string::npos);
  CHECK(r.table_row("2 ranks").size() == ex::step_prediction::table_header().size());
}

TEST_CASE("impossible layouts are errors that say why") {
  const ex::machine m = small_machine(1e9, 2);
  CHECK_ERROR(ex::predict(small_config(2, 2, 6), m), "does not split evenly");
  CHECK_ERROR(ex::predict(small_config(1, 3, 24), m), "heads");
  CHECK_ERROR(ex::predict(small_config(1, 2), small_machine(0, 2)), "link bandwidth");
  CHECK_ERROR(ex::predict(small_config(1, 2), small_machine(1e9, 0)), "chunks");
  CHECK_ERROR(ex::step_shape::encoder(2, 10, 3, 40, 5), "multiple of the number of heads");
}

TEST_CASE("ViT-22B: the paper's throughput and utilisation agree with this FLOP count") {
  // 1.15k tokens/s per chip × training FLOPs per token of the encoder / 275 TFLOP/s is the reported 54.9 %:
  // both figures and the FLOP convention (encoder blocks, attention products included, 3 × forward, no
  // rematerialisation) hang together. Two and a half significant figures are all the paper gives: 0.5 %.
  constexpr ex::step_shape s = ex::step_shape::of<pr::vit_22b>(ex::vit22b_paper::resolution);
  const double encoder_flops_per_token = 3.0 * double(s.block_linear_flops + s.block_attention_flops) / s.tokens;
  const double mfu_from_throughput = ex::vit22b_paper::reported_tokens_per_second_per_core *
                                     encoder_flops_per_token / ex::vit22b_paper::tpu_v4_peak_flops;
  CHECK(mfu_from_throughput == doctest::Approx(ex::vit22b_paper::reported_mfu).epsilon(0.005));
}

TEST_CASE("ViT-22B: predicted MFU on the paper's configuration against the reported 54.9 %") {
  // The mesh is not known, so the prediction is made for every model axis 48 heads split over (up to 16;
  // ViT-22B's memory needs at least several) with chunks = model axis. Tolerance, ±10 points: the inputs are
  // uncertain by at least that much — the GEMM efficiency (0.63) is a lower bound taken from other models
  // (MFU moves 0.5 to 0.9 point per point of it: examples/step_model), the link bandwidth is per link from a
  // secondary source, and the model leaves out elementwise work (which lowers MFU) and link contention. A
  // prediction outside the band would mean the layout's communication cannot be hidden the way the paper
  // says it was. This checks that the model is consistent with the paper, not that it predicts the paper to
  // better than that.
  constexpr ex::step_shape s = ex::step_shape::of<pr::vit_22b>(ex::vit22b_paper::resolution);
  for (int model : {4, 8, 16}) {
    const ex::step_prediction r = ex::predict(ex::vit22b_paper::config(s, model), ex::vit22b_paper::tpu_v4(model));
    INFO("model axis ", model, ": predicted MFU ", r.mfu);
    CHECK(std::abs(r.mfu - ex::vit22b_paper::reported_mfu) <= 0.10);
    // Without chunking the model axis's collectives are all exposed; at 16 that alone would cost a third of
    // the step, far below the reported figure: overlap is what the paper's number needs.
    const ex::step_prediction serial = ex::predict(ex::vit22b_paper::config(s, model), ex::vit22b_paper::tpu_v4(1));
    CHECK(serial.mfu < r.mfu);
  }
  const ex::step_prediction m16_serial = ex::predict(ex::vit22b_paper::config(s, 16), ex::vit22b_paper::tpu_v4(1));
  CHECK(m16_serial.mfu < ex::vit22b_paper::reported_mfu - 0.10);
}
