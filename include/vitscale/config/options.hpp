#pragma once
// Structural options of a ViT shape, as tag types in a list: vitscale::options<opt::parallel_block,
// opt::qk_norm<>, ...>. Each option sets one field of option_values; options not named keep the defaults
// below (timm's and the original ViT's choices). When the same field is set twice, the later option wins,
// which is how Shape::with<...> rebinds a preset.

#include <type_traits>

namespace vitscale {

enum class block_kind {
  classic,   // pre-LN: x + attn(LN(x)), then x + mlp(LN(x))   (ViT, Scaling ViT, AugReg)
  parallel,  // ViT-22B: x + attn(LN(x)) + mlp(LN(x)) from one LN, with fused input and output products
};

enum class pooling {
  cls_token,  // a learned class token is prepended; its final state is the image representation
  gap,        // mean over the patch tokens (after the final norm, as big_vision)
  map,        // multihead attention pooling: a learned probe attends over the tokens (big_vision's MAPHead)
  gap_fc_norm,  // mean over the patch tokens, then a norm (timm's global_pool='avg' with fc_norm: no final norm
                // on the tokens; the norm, `fc_norm`, follows the pooling)
};

enum class posemb_kind {
  learned,   // a trained table, one entry per token
  sincos2d,  // fixed 2-D sin-cos table (big_vision's posemb_sincos_2d), no parameters
};

// The MLP's nonlinearity: GELU exact (x·Φ(x), PyTorch's nn.GELU and timm's default) or its tanh
// approximation (big_vision's nn.gelu, JAX's default, what the seed papers trained with).
enum class activation { gelu_erf, gelu_tanh };

// Which way the class token's position entry goes when a class token exists; see opt::cls_posemb.
enum class cls_posemb_rule { automatic, with_entry, without_entry };

// The resolved values of every option.
struct option_values {
  block_kind block = block_kind::classic;
  pooling pool = pooling::cls_token;
  bool qk_norm = false;
  bool qkv_bias = true;
  bool norm_centered = true;  // LayerNorm subtracts the mean (false: ViT-22B's LayerNorm without centering)
  bool norm_bias = true;      // LayerNorm has a learned bias
  posemb_kind posemb = posemb_kind::learned;
  cls_posemb_rule cls_posemb = cls_posemb_rule::automatic;
  int num_classes = 1000;
  int in_channels = 3;
  int resolution = 224;  // the default image side in pixels; every run-time function also takes another
  int pre_logits = 0;    // width of big_vision's tanh pre-logits layer; 0 = none
  activation mlp_activation = activation::gelu_erf;
};

namespace opt {

// Every option derives from this, so that a typo in an options list is a readable error.
struct option_tag {};

template <block_kind Kind>
struct block : option_tag {
  static constexpr void apply(option_values& v) { v.block = Kind; }
};
using classic_block = block<block_kind::classic>;
using parallel_block = block<block_kind::parallel>;

template <pooling Kind>
struct pool : option_tag {
  static constexpr void apply(option_values& v) { v.pool = Kind; }
};
using pool_cls = pool<pooling::cls_token>;
using pool_gap = pool<pooling::gap>;
using pool_map = pool<pooling::map>;
using pool_gap_fc_norm = pool<pooling::gap_fc_norm>;

// LayerNorm on queries and keys, per head, before the dot product (ViT-22B).
template <bool On = true>
struct qk_norm : option_tag {
  static constexpr void apply(option_values& v) { v.qk_norm = On; }
};

// A bias on the query/key/value projection (ViT-22B has none).
template <bool On = true>
struct qkv_bias : option_tag {
  static constexpr void apply(option_values& v) { v.qkv_bias = On; }
};

// Every LayerNorm of the model: with or without mean subtraction, with or without a bias.
// layer_norm<false, false> is ViT-22B's norm (an RMS norm with a learned scale).
template <bool Centered, bool Bias>
struct layer_norm : option_tag {
  static constexpr void apply(option_values& v) {
    v.norm_centered = Centered;
    v.norm_bias = Bias;
  }
};

template <posemb_kind Kind>
struct posemb : option_tag {
  static constexpr void apply(option_values& v) { v.posemb = Kind; }
};
using learned_posemb = posemb<posemb_kind::learned>;
using sincos_posemb = posemb<posemb_kind::sincos2d>;

// Whether the class token has its own entry in a learned position embedding: yes in timm and the original
// ViT, no in big_vision (which adds position embeddings to the patches before prepending the token).
// Unset, it follows timm when the model has a class token.
template <bool WithEntry>
struct cls_posemb : option_tag {
  static constexpr void apply(option_values& v) {
    v.cls_posemb = WithEntry ? cls_posemb_rule::with_entry : cls_posemb_rule::without_entry;
  }
};

template <int N>
struct classes : option_tag {
  static constexpr void apply(option_values& v) { v.num_classes = N; }
};

template <int C>
struct channels : option_tag {
  static constexpr void apply(option_values& v) { v.in_channels = C; }
};

template <int Pixels>
struct resolution : option_tag {
  static constexpr void apply(option_values& v) { v.resolution = Pixels; }
};

template <int Width>
struct pre_logits : option_tag {
  static constexpr void apply(option_values& v) { v.pre_logits = Width; }
};

template <activation Kind>
struct mlp_activation : option_tag {
  static constexpr void apply(option_values& v) { v.mlp_activation = Kind; }
};
using gelu_erf = mlp_activation<activation::gelu_erf>;
using gelu_tanh = mlp_activation<activation::gelu_tanh>;

}  // namespace opt

template <class... Opts>
struct options {
  static_assert((std::is_base_of<opt::option_tag, Opts>::value && ...),
                "vitscale::options<...> takes only option tags from namespace vitscale::opt "
                "(block, pool, qk_norm, qkv_bias, layer_norm, posemb, cls_posemb, classes, channels, "
                "resolution, pre_logits, mlp_activation)");

  static constexpr option_values resolve() {
    option_values v{};
    (Opts::apply(v), ...);
    return v;
  }
};

}  // namespace vitscale
