#pragma once
// Parameter initialisation: timm's default ViT init or big_vision's, and timm's NFNet init (init_nfnet_tensor, at
// the end), reproducible from a seed.
//
//   std::vector<float> arena(total);
//   vitscale::init_parameters<shape>(vitscale::init::big_vision{/*seed*/ 0, /*head_bias*/ -10.f}, 224, arena.data());
//
// Host-side, into float buffers laid out as the parameter table (tensors.hpp); the model copies them to its
// device arena.
//
// Random numbers. Element i of a tensor draws from Philox block i (core/random.hpp) under the key
// (seed, step 0, stream = fnv1a(full name) folded to 32 bits), so a tensor's values depend only on the
// seed, its name and its element index: not on the thread count, on the tensors around it, or on the
// resolution (a larger position embedding keeps the values of the smaller one as its first rows).
// The four 32-bit words of a block give two 53-bit uniforms u1, u2 on [0, 1):
//   uniform U(−b, b):   b·(2·u1 − 1)
//   normal N(0, s²):    s·sqrt(−2 ln(1 − u1))·cos(2π u2)                       (Box–Muller; 1 − u1 > 0)
//   truncated normal:   N(0, s²) conditioned on |x| ≤ c·s, by rejection: the cos and then the sin member of
//                       the Box–Muller pair of block i, then of block i + k·2^48 for k = 1, 2, ... (a tensor
//                       has fewer than 2^48 elements). Only symmetric truncation is needed (all rules are
//                       centred), and c ≥ 2 everywhere, so fewer than 5% of draws are rejected.
//
// The rules, read from timm 1.0.31 (models/vision_transformer.py: VisionTransformer.init_weights,
// init_weights_vit_timm; layers/attention_pool.py; layers/weight_init.py) and big_vision
// (models/vit.py at 0127fb6, with flax's DenseGeneral flattening its kernel to [in, out] before calling the
// initializer and jax's variance_scaling), are written beside each scheme below.

#include <vitscale/config/nfnet_tensors.hpp>
#include <vitscale/config/shape.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/random.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace vitscale {
namespace init {

// timm's default ViT initialisation (weight_init=''):
//   every Linear weight (qkv, proj, fc1, fc2, in_proj, out projections, MAP q/kv/proj/mlp, pre-logits, head):
//     trunc_normal_(std 0.02), whose bounds ±2 are absolute, i.e. ±100σ: in effect N(0, 0.02²);
//   every Linear bias, mlp_bias, head bias: 0;
//   pos_embed: trunc_normal_(std 0.02) as above;   cls_token: N(0, 1e-6²);
//   patch_embed.proj (Conv2d, left as PyTorch built it: kaiming_uniform_(a=√5)): weight and bias
//     U(±1/sqrt(fan_in)), fan_in = channels·patch²;
//   attn_pool.latent: trunc_normal_tf_(std width^-½), i.e. N(0, 1/width) truncated at ±2σ;
//   LayerNorm scales 1, biases 0.
struct timm {
  std::uint64_t seed = 0;
};

// big_vision's ViT initialisation (models/vit.py):
//   Dense kernels xavier_uniform, U(±sqrt(6 / (fan_in + fan_out))), per Dense layer: the fused qkv [3D, D]
//     is three D×D blocks (flax's q, k, v DenseGenerals flatten to [D, D]), MAP's kv [2D, D] two;
//     attention out projection D×D; MLP fc1 [F, D] and fc2 [D, F];
//   attention biases 0; MLP biases N(0, 1e-6²);
//   patch embedding: flax's Conv default lecun_normal, N(0, 1/fan_in) truncated at ±2 before scaling, with
//     the stddev divided by .87962566103423978 (the stddev of a unit normal truncated to ±2) so that the
//     variance is 1/fan_in; its bias 0;
//   learned pos_embed N(0, 1/width) (not truncated);   class token 0;   MAP probe xavier_uniform of a
//     (1, 1, width) array, i.e. U(±sqrt(6 / (1 + width)));
//   pre-logits Dense: flax's default, lecun_normal kernel (fan_in = width) and zero bias;
//   head kernel 0 (head_zeroinit), head bias `head_bias` (−10 with sigmoid losses; 0 is big_vision's default);
//   LayerNorm scales 1, biases 0.
// big_vision has no parallel (ViT-22B) block. Ours follows the same rules per role, per block of rows, as
// if its fused products were separate Dense layers: in_proj [F + 3D, D] rows are [mlp fc1 | q | k | v], so
// the first F rows are xavier over F×D and each of the next three blocks over D×D; in_proj.bias is
// N(0, 1e-6²) on the MLP rows and 0 on q, k, v; mlp_bias N(0, 1e-6²); attn_out_proj xavier D×D with bias
// 0; mlp_out_proj xavier [D, F] with bias N(0, 1e-6²).
struct big_vision {
  std::uint64_t seed = 0;
  float head_bias = 0.0f;
};

}  // namespace init

template <class T>
struct is_init_scheme : std::false_type {};
template <>
struct is_init_scheme<init::timm> : std::true_type {};
template <>
struct is_init_scheme<init::big_vision> : std::true_type {};
template <class T>
constexpr bool is_init_scheme_v = is_init_scheme<T>::value;

namespace detail {
namespace init_impl {

// FNV-1a over the bytes of a name, 64 bits folded to the 32 of a Philox stream.
constexpr std::uint32_t init_stream(std::string_view name) {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return static_cast<std::uint32_t>(h ^ (h >> 32));
}

enum class init_kind { constant, uniform, normal, truncated_normal };

// constant: `scale`; uniform: U(−scale, scale); normal: N(0, scale²);
// truncated_normal: N(0, scale²) restricted to |x| ≤ cut·scale.
struct init_dist {
  init_kind kind = init_kind::constant;
  double scale = 0;
  double cut = 0;
};

// A tensor's rule: consecutive runs of elements, each with its distribution (at most four, for in_proj).
struct init_rule {
  struct piece {
    std::int64_t end;
    init_dist dist;
  };
  int count = 0;
  piece pieces[4] = {};

  void add(std::int64_t end, init_dist d) { pieces[count++] = piece{end, d}; }
};

inline init_dist constant(double v) { return {init_kind::constant, v, 0}; }
inline init_dist uniform(double bound) { return {init_kind::uniform, bound, 0}; }
inline init_dist normal(double std) { return {init_kind::normal, std, 0}; }
inline init_dist truncated(double std, double cut) { return {init_kind::truncated_normal, std, cut}; }

inline init_rule whole(const tensor_info& t, init_dist d) {
  init_rule r;
  r.add(t.numel(), d);
  return r;
}

// The stddev of a unit normal truncated to ±2 (jax.nn.initializers.variance_scaling, flax's lecun_normal).
constexpr double unit_truncated_std = .87962566103423978;

inline init_dist lecun_normal(double fan_in) { return truncated(std::sqrt(1.0 / fan_in) / unit_truncated_std, 2.0); }
inline init_dist xavier_uniform(double fan_in, double fan_out) { return uniform(std::sqrt(6.0 / (fan_in + fan_out))); }

[[noreturn]] inline void no_rule(const char* scheme, const tensor_info& t) {
  fail("no ", scheme, " initialisation rule for tensor '", t.full_name(),
       "' (a tensor this version of vitscale/model/init.hpp does not know)");
}

template <class Shape>
init_rule rule_for(const init::timm&, const tensor_info& t) {
  const std::string_view n = t.name;
  if (t.role == tensor_role::norm_scale) return whole(t, constant(1));
  if (t.role == tensor_role::norm_bias) return whole(t, constant(0));
  if (t.part == component::cls_token) return whole(t, normal(1e-6));
  if (t.part == component::pos_embed) return whole(t, truncated(0.02, 2.0 / 0.02));
  if (t.part == component::patch_embed) {
    const double fan_in = static_cast<double>(Shape::in_channels) * Shape::patch * Shape::patch;
    return whole(t, uniform(1.0 / std::sqrt(fan_in)));
  }
  if (n == "attn_pool.latent") return whole(t, truncated(1.0 / std::sqrt(static_cast<double>(Shape::width)), 2.0));
  if (t.role == tensor_role::weight) return whole(t, truncated(0.02, 2.0 / 0.02));
  if (t.role == tensor_role::bias) return whole(t, constant(0));
  no_rule("timm", t);
}

template <class Shape>
init_rule rule_for(const init::big_vision& s, const tensor_info& t) {
  const std::string_view n = t.name;
  constexpr std::int64_t D = Shape::width, F = Shape::mlp_dim;
  if (t.role == tensor_role::norm_scale) return whole(t, constant(1));
  if (t.role == tensor_role::norm_bias) return whole(t, constant(0));
  if (t.part == component::cls_token) return whole(t, constant(0));
  if (t.part == component::pos_embed) return whole(t, normal(1.0 / std::sqrt(static_cast<double>(D))));
  if (n == "patch_embed.proj.weight")
    return whole(t, lecun_normal(static_cast<double>(Shape::in_channels) * Shape::patch * Shape::patch));
  if (n == "attn_pool.latent") return whole(t, xavier_uniform(1, static_cast<double>(D)));
  if (n == "head.weight") return whole(t, constant(0));
  if (n == "head.bias") return whole(t, constant(s.head_bias));
  if (n == "pre_logits.fc.weight") return whole(t, lecun_normal(static_cast<double>(D)));
  if (t.role == tensor_role::weight) {
    // Xavier per Dense layer, i.e. per block of rows of a fused [out, in] matrix.
    if (t.rank != 2) no_rule("big_vision", t);
    const std::int64_t in = t.dims[1];
    init_rule r;
    auto block = [&](std::int64_t rows) {
      const std::int64_t begin = r.count == 0 ? 0 : r.pieces[r.count - 1].end;
      r.add(begin + rows * in, xavier_uniform(static_cast<double>(in), static_cast<double>(rows)));
    };
    if (n == "attn.qkv.weight") {
      for (int k = 0; k < 3; ++k) block(D);
    } else if (n == "attn_pool.kv.weight") {
      for (int k = 0; k < 2; ++k) block(D);
    } else if (n == "in_proj.weight") {
      block(F);
      for (int k = 0; k < 3; ++k) block(D);
    } else {
      block(t.dims[0]);
    }
    if (r.pieces[r.count - 1].end != t.numel()) no_rule("big_vision", t);
    return r;
  }
  if (t.role == tensor_role::bias) {
    if (n == "in_proj.bias") {
      init_rule r;
      r.add(F, normal(1e-6));
      r.add(t.numel(), constant(0));
      return r;
    }
    // MlpBlock's Dense layers (and their fused counterparts) draw biases N(0, 1e-6²); the rest are zero.
    if (n.find("mlp") != std::string_view::npos) return whole(t, normal(1e-6));
    return whole(t, constant(0));
  }
  no_rule("big_vision", t);
}

// A uniform on [0, 1) from 53 bits of two words.
inline double uniform53(std::uint32_t hi, std::uint32_t lo) {
  return static_cast<double>((static_cast<std::uint64_t>(hi) << 21) | (lo >> 11)) * 0x1p-53;
}

inline double draw(const init_dist& d, const rng_key& key, std::uint64_t i) {
  constexpr double two_pi = 6.283185307179586476925286766559;
  switch (d.kind) {
    case init_kind::constant:
      return d.scale;
    case init_kind::uniform: {
      const philox_block b = random_block(key, i);
      return d.scale * (2.0 * uniform53(b.word[0], b.word[1]) - 1.0);
    }
    case init_kind::normal: {
      const philox_block b = random_block(key, i);
      const double r = std::sqrt(-2.0 * std::log(1.0 - uniform53(b.word[0], b.word[1])));
      return d.scale * r * std::cos(two_pi * uniform53(b.word[2], b.word[3]));
    }
    case init_kind::truncated_normal:
      for (std::uint64_t round = 0;; ++round) {
        const philox_block b = random_block(key, i + (round << 48));
        const double r = std::sqrt(-2.0 * std::log(1.0 - uniform53(b.word[0], b.word[1])));
        const double theta = two_pi * uniform53(b.word[2], b.word[3]);
        const double z0 = r * std::cos(theta);
        if (std::fabs(z0) <= d.cut) return d.scale * z0;
        const double z1 = r * std::sin(theta);
        if (std::fabs(z1) <= d.cut) return d.scale * z1;
      }
  }
  return 0;
}

}  // namespace init_impl
}  // namespace detail

// Fills `out` (t.numel() floats, the table's layout: [out, in] matrices, [width, channels, patch, patch]
// patch kernel) with tensor `t` of Shape's parameter table initialised by `scheme`.
template <class Shape, class Scheme>
void init_tensor(const Scheme& scheme, const tensor_info& t, float* out) {
  static_assert(is_vit_shape_v<Shape>, "init_tensor<Shape, Scheme>: Shape must be a vitscale::vit_shape<...>");
  static_assert(is_init_scheme_v<Scheme>,
                "init_tensor: the scheme must be vitscale::init::timm or vitscale::init::big_vision");
  if (t.numel() <= 0) detail::fail("init_tensor: tensor '", t.full_name(), "' has no elements");
  if (out == nullptr) detail::fail("init_tensor: null output buffer for tensor '", t.full_name(), "'");
  namespace impl = detail::init_impl;
  const impl::init_rule rule = impl::rule_for<Shape>(scheme, t);
  const rng_key key{scheme.seed, 0, impl::init_stream(t.full_name())};
  std::int64_t begin = 0;
  for (int p = 0; p < rule.count; ++p) {
    const impl::init_dist d = rule.pieces[p].dist;
    const std::int64_t end = rule.pieces[p].end;
    if (d.kind == impl::init_kind::constant) {
      for (std::int64_t i = begin; i < end; ++i) out[i] = static_cast<float>(d.scale);
    } else {
      // Each element is a pure function of its index, so the threads do not change the values.
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (end - begin > 65536)
#endif
      for (std::int64_t i = begin; i < end; ++i)
        out[i] = static_cast<float>(impl::draw(d, key, static_cast<std::uint64_t>(i)));
    }
    begin = end;
  }
}

// Fills a whole host arena laid out as tensor_table<Shape>(resolution), tensors contiguous in table order
// (tensor k starts at the sum of the numels before it), by `scheme`.
template <class Shape, class Scheme>
void init_parameters(const Scheme& scheme, int resolution, float* arena) {
  static_assert(is_vit_shape_v<Shape>, "init_parameters<Shape, Scheme>: Shape must be a vitscale::vit_shape<...>");
  static_assert(is_init_scheme_v<Scheme>,
                "init_parameters: the scheme must be vitscale::init::timm or vitscale::init::big_vision");
  if (arena == nullptr) detail::fail("init_parameters: null arena");
  const auto table = tensor_table<Shape>(resolution);
  std::int64_t offset = 0;
  for (const tensor_info& t : table) {
    init_tensor<Shape>(scheme, t, arena + offset);
    offset += t.numel();
  }
}

}  // namespace vitscale

// --------------------------------------------------------------------------------------------------- NFNet

namespace vitscale {

// Fills `out` (t.numel() floats, timm's layout) with tensor `t` of an NFNet (`d` its descriptor) initialised as
// timm's NormFreeNet.__init__ does (models/nfnet.py, timm 1.0.31), with the random numbers of this file:
//   every conv weight (ScaledStdConv2d, and the squeeze-excite's fc1/fc2, which are Conv2d too):
//     kaiming_normal_(mode='fan_in', nonlinearity='linear'), N(0, 1/fan_in), fan_in = in/groups·k·k;
//   head.fc (an nn.Linear with 'fc' in its name): N(0, 0.01²);   every bias: 0;
//   conv gains: 1 (timm's gain_init; a block's conv3 starts at 0 without skipinit);   skipinit_gain: 0.
inline void init_nfnet_tensor(const init::timm& scheme, const nfnet_descriptor& d, const nfnet_tensor_info& t,
                              float* out) {
  if (t.numel() <= 0) detail::fail("init_nfnet_tensor: tensor '", t.full_name(), "' has no elements");
  if (out == nullptr) detail::fail("init_nfnet_tensor: null output buffer for tensor '", t.full_name(), "'");
  namespace impl = detail::init_impl;
  impl::init_dist dist;
  switch (t.role) {
    case nfnet_role::conv_weight:
    case nfnet_role::se_weight: dist = impl::normal(1.0 / std::sqrt(double(t.dims[1] * t.dims[2] * t.dims[3]))); break;
    case nfnet_role::linear_weight: dist = impl::normal(0.01); break;
    case nfnet_role::bias: dist = impl::constant(0); break;
    case nfnet_role::gain: dist = impl::constant(t.layer == "conv3" && !d.skipinit ? 0.0 : 1.0); break;
    case nfnet_role::skip_gain: dist = impl::constant(0); break;
  }
  const rng_key key{scheme.seed, 0, impl::init_stream(t.full_name())};
  for (std::int64_t i = 0; i < t.numel(); ++i)
    out[i] = static_cast<float>(impl::draw(dist, key, static_cast<std::uint64_t>(i)));
}

}  // namespace vitscale
