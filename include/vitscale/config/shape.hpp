#pragma once
// vit_shape: a Vision Transformer's structure as a compile-time type.
//
//   using shape = vitscale::vit_shape<Depth, Width, Heads, MlpDim, Patch, vitscale::options<...>>;
//
// Everything the seed papers fix is a template argument and is checked here, so that a wrong combination
// fails at the `using` line with a sentence. The image resolution is a run-time value everywhere (with a
// default, opt::resolution), so that fine-tuning at another resolution needs no recompilation.

#include <vitscale/config/accounting.hpp>
#include <vitscale/config/describe.hpp>
#include <vitscale/config/options.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/error.hpp>

namespace vitscale {

template <int Depth, int Width, int Heads, int MlpDim, int Patch, class Options>
struct basic_vit_shape;

namespace detail {
template <class T>
constexpr bool always_false = false;

// Completing the class here makes its static_asserts fire where the alias is written.
template <int Depth, int Width, int Heads, int MlpDim, int Patch, class Options>
struct checked_shape {
  using type = basic_vit_shape<Depth, Width, Heads, MlpDim, Patch, Options>;
  static_assert(sizeof(type) > 0, "");
};
}  // namespace detail

// The shape class. Users name it through the vit_shape alias below, which instantiates it on the spot.
template <int Depth, int Width, int Heads, int MlpDim, int Patch, class Options>
struct basic_vit_shape {
  static_assert(detail::always_false<Options>,
                "vit_shape: the sixth argument must be vitscale::options<...> (a list of vitscale::opt tags)");
};

template <int Depth, int Width, int Heads, int MlpDim, int Patch, class... Opts>
struct basic_vit_shape<Depth, Width, Heads, MlpDim, Patch, options<Opts...>> {
 private:
  static constexpr option_values opts_ = options<Opts...>::resolve();

 public:
  static_assert(Depth >= 1, "vit_shape: depth (number of encoder blocks) must be at least 1");
  static_assert(Width >= 1, "vit_shape: width (embedding dimension) must be at least 1");
  static_assert(Heads >= 1, "vit_shape: the number of attention heads must be at least 1");
  static_assert(MlpDim >= 1, "vit_shape: the MLP width must be at least 1");
  static_assert(Patch >= 1, "vit_shape: the patch size must be at least 1 pixel");
  static_assert(Heads < 1 || Width % Heads == 0,
                "vit_shape: width must be a multiple of the number of heads (head_dim = width / heads)");
  static_assert(opts_.num_classes >= 1, "vit_shape: opt::classes<N> needs at least one class");
  static_assert(opts_.in_channels >= 1, "vit_shape: opt::channels<C> needs at least one input channel");
  static_assert(opts_.pre_logits >= 0, "vit_shape: opt::pre_logits<W> needs W >= 0 (0 = no pre-logits layer)");
  static_assert(opts_.resolution >= Patch && Patch >= 1 && opts_.resolution % Patch == 0,
                "vit_shape: the default resolution (opt::resolution) must be a positive multiple of the patch size");
  static_assert(opts_.posemb != posemb_kind::sincos2d || Width % 4 == 0,
                "vit_shape: the 2-D sin-cos position embedding needs width to be a multiple of 4 "
                "(a quarter each for sin and cos of the row and of the column)");
  static_assert(opts_.cls_posemb != cls_posemb_rule::with_entry || opts_.pool == pooling::cls_token,
                "vit_shape: opt::cls_posemb<true> needs a class token, i.e. opt::pool_cls");
  static_assert(opts_.cls_posemb != cls_posemb_rule::with_entry || opts_.posemb == posemb_kind::learned,
                "vit_shape: the 2-D sin-cos position embedding has no entry for the class token "
                "(big_vision's convention); drop opt::cls_posemb<true> or use opt::learned_posemb");

  // ---- structure
  static constexpr int depth = Depth;
  static constexpr int width = Width;
  static constexpr int heads = Heads;
  static constexpr int mlp_dim = MlpDim;
  static constexpr int patch = Patch;
  static constexpr int head_dim = Width / (Heads < 1 ? 1 : Heads);

  static constexpr block_kind block = opts_.block;
  static constexpr pooling pool = opts_.pool;
  static constexpr bool qk_norm = opts_.qk_norm;
  static constexpr bool qkv_bias = opts_.qkv_bias;
  static constexpr bool norm_centered = opts_.norm_centered;
  static constexpr bool norm_bias = opts_.norm_bias;
  static constexpr posemb_kind posemb = opts_.posemb;
  static constexpr bool class_token = opts_.pool == pooling::cls_token;
  // The final norm on every token (`norm`), or, with gap_fc_norm, on the pooled vector only (`fc_norm`).
  static constexpr bool token_norm = opts_.pool != pooling::gap_fc_norm;
  static constexpr bool cls_posemb =
      class_token && posemb == posemb_kind::learned && opts_.cls_posemb != cls_posemb_rule::without_entry;
  static constexpr int num_classes = opts_.num_classes;
  static constexpr int in_channels = opts_.in_channels;
  static constexpr int resolution = opts_.resolution;  // the default image side, in pixels
  static constexpr int pre_logits = opts_.pre_logits;
  static constexpr int features = pre_logits > 0 ? pre_logits : Width;  // the classifier's input width
  static constexpr activation mlp_activation = opts_.mlp_activation;

  // The same shape with more options; later options override earlier ones:
  //   using b16_gap = presets::vit_b16::with<opt::pool_gap, opt::classes<10>>;
  template <class... More>
  using with = typename detail::checked_shape<Depth, Width, Heads, MlpDim, Patch, options<Opts..., More...>>::type;

  // ---- run-time geometry (constexpr where the argument is), defined once on the run-time descriptor
  // (config/describe.hpp) that the accounting also reads.
  // Patches per image side at `pixels`; a resolution that is not a positive multiple of the patch is an error.
  static constexpr int grid(int pixels = resolution) { return describe<basic_vit_shape>().grid(pixels); }
  static constexpr int patches(int pixels = resolution) { return describe<basic_vit_shape>().patches(pixels); }
  // Sequence length through the encoder: the patches, plus the class token if there is one.
  static constexpr int tokens(int pixels = resolution) { return describe<basic_vit_shape>().tokens(pixels); }
  // Rows of the learned position embedding.
  static constexpr int posemb_entries(int pixels = resolution) {
    return describe<basic_vit_shape>().posemb_entries(pixels);
  }

  // ---- accounting (see accounting.hpp for the conventions)
  static constexpr param_counts params(int pixels = resolution) { return count_params<basic_vit_shape>(pixels); }
  static constexpr flop_counts flops(int pixels = resolution) { return count_flops<basic_vit_shape>(pixels); }
};

// The name users write. An alias that completes the class, so that an invalid shape is an error at the
// line that writes it, not later where it is first used.
template <int Depth, int Width, int Heads, int MlpDim, int Patch, class Options = options<>>
using vit_shape = typename detail::checked_shape<Depth, Width, Heads, MlpDim, Patch, Options>::type;

template <class T>
struct is_vit_shape : std::false_type {};
template <int D, int W, int H, int M, int P, class... O>
struct is_vit_shape<basic_vit_shape<D, W, H, M, P, options<O...>>> : std::true_type {};
template <class T>
constexpr bool is_vit_shape_v = is_vit_shape<T>::value;

}  // namespace vitscale
