#pragma once
// The NFNet layer walk: every layer of an NFNet shape, in timm's module order, with its geometry at an image
// resolution — the one description that the parameter table (nfnet_tensors.hpp), the accounting
// (nfnet_accounting.hpp) and the model's layout of parameters and activations all read.
//
//   vitscale::walk_nfnet(presets::nfnet_f0::describe(), sink, /*resolution*/ 256);
//
// calls, in order,
//   sink.layer(l)   for stem.conv1 .. stem.conv4 (nfnet_layer_kind::conv),
//   then for every block of every stage:
//     sink.block(b)   once, first (the block's channels, stride, sides, α and β; timm's `skipinit_gain`),
//     sink.layer(l)   for downsample.pool (shortcut_pool, only in a strided first block), downsample.conv
//                     (only in a first block that changes channels or stride), conv1, conv2 (carries the
//                     stride), conv2b, conv3, attn_last.fc1 and attn_last.fc2 (se_fc: 1×1 convs on the pooled
//                     vector, with bias; absent with se_ratio 0),
//   then final_conv (absent with feature_multiplier 0), head.global_pool (global_pool) and head.fc (linear).
// Names are timm's module names: a layer's name is local to its block ("conv1"); stage and block say which
// (-1 outside the stages); nfnet_layer::full_name() gives "stages.1.0.conv1".
//
// Geometry: SAME padding (timm's ScaledStdConv2dSame, TensorFlow's rule) gives out = ceil(in / stride) and
// pads total = max((out − 1)·stride + kernel − in, 0), before = total / 2, after = the rest (so a stride-2 3×3
// conv on an even side pads 0 before, 1 after); symmetric padding (timm's ScaledStdConv2d) pads
// ((stride − 1) + (kernel − 1)) / 2 on both sides. The shortcut's average pool is timm's
// AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False): out = ceil(in / 2), a window hanging over the edge
// averages only what it covers.
//
// β: timm's NormFreeNet.__init__ keeps an expected variance, 1 before the first block; each block gets
// β = 1 / sqrt(expected variance); after a stage's first block it is reset to 1; after every block α² is added.
// This is computed here in doubles in the same order, with a correctly rounded constexpr square root, so β is
// bit-identical to timm's Python floats.

#include <vitscale/core/error.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace vitscale {

constexpr int nfnet_max_stages = 4;

enum class nfnet_padding {
  same,       // TensorFlow's SAME (DeepMind's NFNets, timm's dm_nfnet_*): out = ceil(in / stride)
  symmetric,  // timm's ScaledStdConv2d (nfnet_f*): ((stride - 1) + (kernel - 1)) / 2 on each side
};

struct nfnet_fraction {
  int num = 0;
  int den = 1;
  constexpr double value() const { return static_cast<double>(num) / static_cast<double>(den); }
};

namespace detail {
// The correctly rounded square root of x > 0, usable in constant expressions: Newton's iteration, then the
// neighbour whose exact residual x − y² is smallest (Dekker's exact product). At run time, std::sqrt (correctly
// rounded by IEEE 754) where the compiler tells constant evaluation apart: compiled with FMA contraction
// (GCC's default), Dekker's product is no longer exact at run time.
#if defined(__has_builtin)
#if __has_builtin(__builtin_is_constant_evaluated)
#define VITSCALE_NF_CONSTANT_EVALUATED() __builtin_is_constant_evaluated()
#endif
#endif
#ifndef VITSCALE_NF_CONSTANT_EVALUATED
#define VITSCALE_NF_CONSTANT_EVALUATED() true
#endif
constexpr double nf_sqrt(double x) {
  if (!(x > 0)) return 0;
  if (!VITSCALE_NF_CONSTANT_EVALUATED()) return std::sqrt(x);
  double y = x > 1 ? x : 1;
  for (int i = 0; i < 200; ++i) {
    const double next = 0.5 * (y + x / y);
    if (next == y) break;
    y = next;
  }
  auto residual = [x](double v) {
    constexpr double split = 134217729.0;  // 2^27 + 1
    const double p = v * v;
    const double t = split * v;
    const double hi = t - (t - v);
    const double lo = v - hi;
    const double err = ((hi * hi - p) + 2 * hi * lo) + lo * lo;
    const double r = (x - p) - err;
    return r < 0 ? -r : r;
  };
  double h = 1;
  while (h <= y) h *= 2;
  while (h > y) h /= 2;
  const double ulp = h / 4503599627370496.0;  // 2^-52 of y's binade
  double best = y;
  double best_r = residual(y);
  const double below = y - ulp, above = y + ulp;
  if (residual(below) < best_r) best = below, best_r = residual(below);
  if (residual(above) < best_r) best = above;
  return best;
}

// timm's make_divisible(v, divisor, round_limit) for v = n · num / den.
constexpr int nf_make_divisible(std::int64_t n, nfnet_fraction f, int divisor, bool round_limit_09) {
  const std::int64_t num = n * f.num;  // v = num / den
  const std::int64_t den = f.den;
  std::int64_t nv = (2 * num + divisor * den) / (2 * den) / divisor * divisor;  // int(v + divisor / 2) // d * d
  if (nv < divisor) nv = divisor;
  if (round_limit_09 && 10 * nv * den < 9 * num) nv += divisor;
  return static_cast<int>(nv);
}
}  // namespace detail

// An NFNet shape as a run-time value (every field known). Compiled shapes give theirs with Shape::describe();
// its defaults are timm's dm_nfnet configuration.
struct nfnet_descriptor {
  int stages = 0;
  std::array<int, nfnet_max_stages> depths{};
  std::array<int, nfnet_max_stages> channels{};
  int stem_channels = 128;
  int group_width = 128;
  nfnet_fraction bottleneck{1, 2};
  nfnet_fraction se_ratio{1, 2};
  nfnet_fraction feature_multiplier{2, 1};
  nfnet_fraction alpha{1, 5};
  nfnet_padding padding = nfnet_padding::same;
  int classes = 1000;
  int in_channels = 3;
  int resolution = 224;
  bool skipinit = true;

  static constexpr double se_gain = 2.0;  // timm's attn_gain: the SE's output is doubled
  // GELU's γ (DeepMind's _nonlin_gamma['gelu']), applied in every activation of the stem, blocks and final conv.
  static constexpr double gamma = 1.7015043497085571;

  constexpr double alpha_value() const { return alpha.value(); }
  constexpr int blocks() const {
    int n = 0;
    for (int s = 0; s < stages; ++s) n += depths[s];
    return n;
  }
  constexpr int mid_channels(int stage) const {
    return static_cast<int>(static_cast<std::int64_t>(channels[stage]) * bottleneck.num / bottleneck.den);
  }
  constexpr int groups(int stage) const { return group_width > 0 ? mid_channels(stage) / group_width : 1; }
  constexpr int se_channels(int stage) const {
    return se_ratio.num > 0 ? detail::nf_make_divisible(channels[stage], se_ratio, 8, false) : 0;
  }
  constexpr bool bottleneck_ok() const {
    for (int s = 0; s < stages; ++s) {
      const std::int64_t scaled = static_cast<std::int64_t>(channels[s]) * bottleneck.num;
      if (bottleneck.den < 1 || scaled % bottleneck.den != 0) return false;
      const int mid = mid_channels(s);
      if (mid < 8 || mid % 8 != 0) return false;
      if (group_width > 0 && mid % group_width != 0) return false;
    }
    return true;
  }
  constexpr int features() const {
    if (feature_multiplier.num <= 0) return stages > 0 ? channels[stages - 1] : 0;
    return static_cast<int>(static_cast<std::int64_t>(channels[stages - 1]) * feature_multiplier.num /
                            feature_multiplier.den);
  }
  // The rules nfnet_shape's static_asserts state, for a descriptor built at run time: throws vitscale::error
  // with the first one broken.
  constexpr void validate() const {
    if (stages < 1 || stages > nfnet_max_stages) detail::fail("nfnet: an NFNet has one to four stages (got ", stages, ")");
    for (int s = 0; s < stages; ++s) {
      if (depths[s] < 1) detail::fail("nfnet: every stage needs a depth of at least 1 block (stage ", s, ")");
      if (channels[s] < 8 || channels[s] % 8 != 0)
        detail::fail("nfnet: every stage's channels must be a positive multiple of 8 (stage ", s, ": ", channels[s], ")");
    }
    if (stem_channels < 8 || stem_channels % 8 != 0)
      detail::fail("nfnet: the stem channels must be a positive multiple of 8 (got ", stem_channels, ")");
    if (group_width < 0 || bottleneck.num < 1 || bottleneck.den < 1 || !bottleneck_ok())
      detail::fail("nfnet: every stage's bottleneck width (channels x bottleneck ratio) must be a whole multiple "
                   "of 8 and of the group width (", group_width, ")");
    if (se_ratio.num < 0 || se_ratio.den < 1) detail::fail("nfnet: the squeeze-excite ratio must be a fraction >= 0");
    if (feature_multiplier.num < 0 || feature_multiplier.den < 1 ||
        (feature_multiplier.num > 0 &&
         (std::int64_t{channels[stages - 1]} * feature_multiplier.num % feature_multiplier.den != 0 ||
          features() < 8 || features() % 8 != 0)))
      detail::fail("nfnet: the final conv's width (last stage's channels x feature multiplier) must be a whole "
                   "positive multiple of 8");
    if (alpha.num < 1 || alpha.den < 1) detail::fail("nfnet: alpha must be a positive fraction");
    if (classes < 1) detail::fail("nfnet: needs at least one class");
    if (in_channels < 1) detail::fail("nfnet: needs at least one input channel");
    if (resolution < 1) detail::fail("nfnet: the default resolution must be at least 1 pixel");
  }

  // The stride of a stage's first block: the deep stem already reduces by 4, so stage 0 keeps its side.
  static constexpr int stage_stride(int stage) { return stage == 0 ? 1 : 2; }

  // ---- geometry
  struct conv_geometry {
    int out = 0, pad_before = 0, pad_after = 0;
  };
  constexpr conv_geometry conv(int in, int kernel, int stride) const {
    conv_geometry g;
    if (padding == nfnet_padding::same) {
      g.out = (in + stride - 1) / stride;
      const int total = (g.out - 1) * stride + kernel - in;
      g.pad_before = total > 0 ? total / 2 : 0;
      g.pad_after = total > 0 ? total - g.pad_before : 0;
    } else {
      const int p = ((stride - 1) + (kernel - 1)) / 2;
      g.out = (in + 2 * p - kernel) / stride + 1;
      g.pad_before = g.pad_after = p;
    }
    return g;
  }
  static constexpr int shortcut_pool_side(int in) { return (in + 1) / 2; }
  constexpr int stem_side(int pixels) const {
    if (pixels < 1) detail::fail("nfnet: the resolution must be at least 1 pixel (got ", pixels, ")");
    return conv(conv(pixels, 3, 2).out, 3, 2).out;  // conv1 stride 2, conv2 and conv3 keep it, conv4 stride 2
  }
  constexpr int stage_side(int stage, int pixels) const {
    int side = stem_side(pixels);
    for (int s = 0; s <= stage && s < stages; ++s)
      if (stage_stride(s) > 1) side = conv(side, 3, stage_stride(s)).out;
    return side;
  }
  // β of block `block` of stage `stage`, exactly as timm computes it (see the top of this file).
  constexpr double beta(int stage, int block) const {
    // α² once, outside the loop, so that no compiler fuses `expected_var + α·α` into an FMA (which rounds
    // once where Python rounds twice).
    const double a2 = alpha_value() * alpha_value();
    double expected_var = 1.0;
    for (int s = 0; s < stages; ++s)
      for (int b = 0; b < depths[s]; ++b) {
        if (s == stage && b == block) return 1.0 / detail::nf_sqrt(expected_var);
        if (b == 0) expected_var = 1.0;
        expected_var += a2;
      }
    detail::fail("nfnet: no block ", block, " in stage ", stage);
    return 0;
  }
};

enum class nfnet_layer_kind {
  conv,           // a scaled weight-standardised conv: weight [out, in/groups, k, k], bias [out], gain [out,1,1,1]
  se_fc,          // a squeeze-excite 1×1 conv on the pooled vector: weight [out, in, 1, 1], bias [out]
  shortcut_pool,  // the shortcut's 2×2 average pool (no parameters)
  global_pool,    // the head's global average pool (no parameters)
  linear,         // the classifier: weight [out, in], bias [out]
};

// Which part of the model a layer or tensor belongs to (the parameter and FLOP breakdowns follow these).
enum class nfnet_part { stem, stages, final_conv, head };

struct nfnet_layer {
  nfnet_layer_kind kind = nfnet_layer_kind::conv;
  std::string_view name;  // timm's module name; inside a block, the part after "stages.<s>.<b>."
  int stage = -1;         // -1 outside the stages
  int block = -1;         // block index within its stage, -1 outside the stages
  nfnet_part part = nfnet_part::stem;
  int in_channels = 0;
  int out_channels = 0;
  int kernel = 1;
  int stride = 1;
  int groups = 1;
  int in_side = 0;   // spatial side of the input (1 for se_fc and linear)
  int out_side = 0;  // spatial side of the output
  int pad_before = 0;
  int pad_after = 0;

  constexpr bool has_parameters() const {
    return kind == nfnet_layer_kind::conv || kind == nfnet_layer_kind::se_fc || kind == nfnet_layer_kind::linear;
  }
  // Multiply-adds per image of the layer's product (0 for the pools).
  constexpr std::int64_t macs() const {
    if (!has_parameters()) return 0;
    return std::int64_t{out_side} * out_side * out_channels * (in_channels / groups) * kernel * kernel;
  }
  // Trainable parameters of the layer.
  constexpr std::int64_t params() const {
    if (!has_parameters()) return 0;
    const std::int64_t w = std::int64_t{out_channels} * (in_channels / groups) * kernel * kernel;
    return w + out_channels + (kind == nfnet_layer_kind::conv ? out_channels : 0);
  }
  std::string full_name() const {
    return stage < 0 ? std::string(name)
                     : "stages." + std::to_string(stage) + "." + std::to_string(block) + "." + std::string(name);
  }
};

struct nfnet_block {
  int stage = 0;
  int block = 0;  // within its stage
  int index = 0;  // over the whole network
  int in_channels = 0;
  int out_channels = 0;
  int mid_channels = 0;
  int groups = 1;
  int se_channels = 0;  // 0: no squeeze-excite
  int stride = 1;
  int in_side = 0;
  int out_side = 0;
  bool downsample = false;     // a shortcut conv (channels or stride change)
  bool shortcut_pool = false;  // ... preceded by the 2×2 average pool (stride 2)
  bool skipinit = false;       // a learned scalar `skipinit_gain` on the residual branch
  double alpha = 0;
  double beta = 0;
};

// A sink that ignores everything; derive from it and hide what you need.
struct nfnet_sink {
  constexpr void block(const nfnet_block&) {}
  constexpr void layer(const nfnet_layer&) {}
};

// The walk (see the top of this file).
template <class Sink>
constexpr void walk_nfnet(const nfnet_descriptor& d, Sink& sink, int resolution) {
  const int stem = d.stem_channels;
  int side = resolution;
  if (side < 1) detail::fail("nfnet: the resolution must be at least 1 pixel (got ", side, ")");
  auto conv = [&](std::string_view name, int stage, int block, nfnet_part part, int in, int out, int kernel,
                  int stride, int groups, int in_side) {
    const auto g = d.conv(in_side, kernel, stride);
    sink.layer(nfnet_layer{nfnet_layer_kind::conv, name, stage, block, part, in, out, kernel, stride, groups,
                           in_side, g.out, g.pad_before, g.pad_after});
    return g.out;
  };

  // The deep_quad stem.
  constexpr std::string_view stem_names[4] = {"stem.conv1", "stem.conv2", "stem.conv3", "stem.conv4"};
  const int stem_out[4] = {stem / 8, stem / 4, stem / 2, stem};
  constexpr int stem_stride[4] = {2, 1, 1, 2};
  int in = d.in_channels;
  for (int i = 0; i < 4; ++i) {
    side = conv(stem_names[i], -1, -1, nfnet_part::stem, in, stem_out[i], 3, stem_stride[i], 1, side);
    in = stem_out[i];
  }

  const double a = d.alpha_value();
  const double a2 = a * a;  // once, outside the loop: see nfnet_descriptor::beta
  double expected_var = 1.0;
  int index = 0;
  for (int s = 0; s < d.stages; ++s) {
    const int out = d.channels[s];
    const int mid = d.mid_channels(s);
    const int groups = d.groups(s);
    const int se = d.se_channels(s);
    for (int b = 0; b < d.depths[s]; ++b) {
      const int stride = b == 0 ? nfnet_descriptor::stage_stride(s) : 1;
      nfnet_block blk;
      blk.stage = s;
      blk.block = b;
      blk.index = index++;
      blk.in_channels = in;
      blk.out_channels = out;
      blk.mid_channels = mid;
      blk.groups = groups;
      blk.se_channels = se;
      blk.stride = stride;
      blk.in_side = side;
      blk.out_side = d.conv(side, 3, stride).out;
      blk.downsample = in != out || stride != 1;
      blk.shortcut_pool = stride > 1;
      blk.skipinit = d.skipinit;
      blk.alpha = a;
      blk.beta = 1.0 / detail::nf_sqrt(expected_var);
      sink.block(blk);
      if (b == 0) expected_var = 1.0;
      expected_var += a2;

      constexpr nfnet_part P = nfnet_part::stages;
      if (blk.downsample) {
        int pooled = side;
        if (blk.shortcut_pool) {
          pooled = nfnet_descriptor::shortcut_pool_side(side);
          sink.layer(nfnet_layer{nfnet_layer_kind::shortcut_pool, "downsample.pool", s, b, P, in, in, 2, 2, 1,
                                 side, pooled, 0, 0});
        }
        conv("downsample.conv", s, b, P, in, out, 1, 1, 1, pooled);
      }
      conv("conv1", s, b, P, in, mid, 1, 1, 1, side);
      const int inner = conv("conv2", s, b, P, mid, mid, 3, stride, groups, side);
      conv("conv2b", s, b, P, mid, mid, 3, 1, groups, inner);
      conv("conv3", s, b, P, mid, out, 1, 1, 1, inner);
      if (se > 0) {
        sink.layer(nfnet_layer{nfnet_layer_kind::se_fc, "attn_last.fc1", s, b, P, out, se, 1, 1, 1, 1, 1, 0, 0});
        sink.layer(nfnet_layer{nfnet_layer_kind::se_fc, "attn_last.fc2", s, b, P, se, out, 1, 1, 1, 1, 1, 0, 0});
      }
      side = inner;
      in = out;
    }
  }

  if (d.feature_multiplier.num > 0) {
    conv("final_conv", -1, -1, nfnet_part::final_conv, in, d.features(), 1, 1, 1, side);
    in = d.features();
  }
  sink.layer(nfnet_layer{nfnet_layer_kind::global_pool, "head.global_pool", -1, -1, nfnet_part::head, in, in,
                         side, side, 1, side, 1, 0, 0});
  sink.layer(nfnet_layer{nfnet_layer_kind::linear, "head.fc", -1, -1, nfnet_part::head, in, d.classes, 1, 1, 1,
                         1, 1, 0, 0});
}

// The same walk for a compiled shape, at its default resolution unless told.
template <class Shape, class Sink>
constexpr void walk_nfnet(Sink& sink, int resolution = Shape::resolution) {
  walk_nfnet(Shape::describe(), sink, resolution);
}

}  // namespace vitscale
