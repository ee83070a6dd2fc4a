#pragma once
// nfnet_shape: a Normalizer-Free ResNet (NFNet, Brock et al. 2021; the ConvNet of "ConvNets match Vision
// Transformers at scale", Smith et al. 2023) as a compile-time type, in the spirit of vit_shape.
//
//   using shape = vitscale::nfnet_shape<vitscale::nfnet_depths<1, 2, 6, 3>,
//                                       vitscale::nfnet_channels<256, 512, 1536, 1536>,
//                                       vitscale::nfnet_options<vitscale::nfopt::classes<1000>>>;
//
// The structure is timm's DeepMind-compatible `dm_nfnet_f*` (timm/models/nfnet.py, _dm_nfnet_cfg), which
// matches DeepMind's JAX NFNets: a `deep_quad` stem of four 3×3 convolutions (stem/8, stem/4, stem/2, stem
// channels; strides 2, 1, 1, 2); stages of NormFreeBlocks (pre-activation bottlenecks: act·β, then 1×1 conv1,
// grouped 3×3 conv2 carrying the stage's stride, grouped 3×3 conv2b, 1×1 conv3, a squeeze-excite `attn_last`
// after conv3 scaled by 2, a learned scalar `skipinit_gain`, and out·α + shortcut); the first block of a stage
// changes channels or stride and has a shortcut `downsample` = average pool (2×2, stride 2, ceil mode; only
// when strided) then a 1×1 conv; a final 1×1 conv to channels·feature-multiplier; global average pooling,
// dropout and a linear classifier `head.fc`. Every conv is a scaled weight-standardised conv (timm's
// ScaledStdConv2dSame: weight, bias and a per-output-channel gain); the activation is GELU scaled by
// γ = 1.7015043497085571 (timm's gamma_in_act); the SE's own activations are ReLU and a sigmoid gate.
//
// What is a template argument: the stage depths and channels, and the options of nfopt below (stem channels,
// group width, bottleneck ratio, SE ratio, feature multiplier, α, padding, classes, input channels, default
// resolution, skipinit). The resolution is a run-time value everywhere, as for the ViT. Ratios are written
// as fractions (nfopt::bottleneck<1, 2>), which keeps them template arguments in C++17; timm's float
// arithmetic on them is exact for the denominators used here (powers of two, and α = 1/5 gives the double 0.2).
//
// Shapes this header refuses, where timm would silently round: stage or stem channels that are not multiples of
// 8 (timm's make_divisible), bottleneck widths (channels × ratio) that are not whole multiples of 8 and of the
// group width, more than four stages (timm dilates past output stride 32 instead of striding).
//
// F3+ and F7+: Smith et al. (2023) say only that "F3+ and F7+ have the same depths as F3 and F7 but larger
// width"; their widths are not published (timm has no such model), so there are no presets for them. Any
// wider shape is one nfnet_channels<...> away.

#include <vitscale/config/nfnet_accounting.hpp>
#include <vitscale/config/nfnet_tensors.hpp>
#include <vitscale/config/nfnet_walk.hpp>

#include <array>
#include <type_traits>

namespace vitscale {

template <int... D>
struct nfnet_depths {
  static constexpr int size = sizeof...(D);
};
template <int... C>
struct nfnet_channels {
  static constexpr int size = sizeof...(C);
};

namespace nfopt {

// Every NFNet option derives from this, so that a typo in an options list is a readable error.
struct option_tag {};

// Channels of the stem's last conv (its convs have /8, /4, /2 and all of it); timm's stem_chs.
template <int C>
struct stem_channels : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.stem_channels = C; }
};
// Channels per group of the 3×3 convs (timm's group_size); 0 = ungrouped.
template <int C>
struct group_width : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.group_width = C; }
};
// The bottleneck width as a fraction of the stage's channels (timm's bottle_ratio).
template <int Num, int Den = 1>
struct bottleneck : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.bottleneck = {Num, Den}; }
};
// The squeeze-excite's reduced width as a fraction of the block's output channels (timm's rd_ratio);
// se_ratio<0> = no squeeze-excite.
template <int Num, int Den = 1>
struct se_ratio : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.se_ratio = {Num, Den}; }
};
// The final 1×1 conv's width as a multiple of the last stage's channels; feature_multiplier<0> = no final conv.
template <int Num, int Den = 1>
struct feature_multiplier : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.feature_multiplier = {Num, Den}; }
};
// The residual branch's scale α.
template <int Num, int Den = 1>
struct alpha : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.alpha = {Num, Den}; }
};
template <nfnet_padding Kind>
struct padding : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.padding = Kind; }
};
using same_padding = padding<nfnet_padding::same>;
using symmetric_padding = padding<nfnet_padding::symmetric>;
template <int N>
struct classes : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.classes = N; }
};
template <int C>
struct channels : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.in_channels = C; }
};
template <int Pixels>
struct resolution : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.resolution = Pixels; }
};
// A learned scalar gain on each block's residual branch (timm's skipinit; on in dm_nfnet).
template <bool On = true>
struct skipinit : option_tag {
  static constexpr void apply(nfnet_descriptor& v) { v.skipinit = On; }
};

}  // namespace nfopt

template <class... Opts>
struct nfnet_options {
  static_assert((std::is_base_of<nfopt::option_tag, Opts>::value && ...),
                "vitscale::nfnet_options<...> takes only option tags from namespace vitscale::nfopt "
                "(stem_channels, group_width, bottleneck, se_ratio, feature_multiplier, alpha, padding, "
                "classes, channels, resolution, skipinit)");
  static constexpr void apply(nfnet_descriptor& v) { (Opts::apply(v), ...); }
};

template <class Depths, class Channels, class Options>
struct basic_nfnet_shape;

namespace detail {
template <class T>
constexpr bool nfnet_always_false = false;

template <class Depths, class Channels, class Options>
struct checked_nfnet_shape {
  using type = basic_nfnet_shape<Depths, Channels, Options>;
  static_assert(sizeof(type) > 0, "");
};

template <int... D, int... C, class... Opts>
constexpr nfnet_descriptor make_nfnet_descriptor(nfnet_depths<D...>, nfnet_channels<C...>, nfnet_options<Opts...>) {
  nfnet_descriptor d{};
  d.stages = static_cast<int>(sizeof...(D));
  int i = 0;
  ((d.depths[i < nfnet_max_stages ? i : 0] = D, ++i), ...);
  i = 0;
  ((d.channels[i < nfnet_max_stages ? i : 0] = C, ++i), ...);
  nfnet_options<Opts...>::apply(d);
  return d;
}
}  // namespace detail

template <class Depths, class Channels, class Options>
struct basic_nfnet_shape {
  static_assert(detail::nfnet_always_false<Options>,
                "nfnet_shape: the arguments must be nfnet_depths<...>, nfnet_channels<...> and "
                "nfnet_options<...> (a list of vitscale::nfopt tags)");
};

template <int... D, int... C, class... Opts>
struct basic_nfnet_shape<nfnet_depths<D...>, nfnet_channels<C...>, nfnet_options<Opts...>> {
 private:
  static constexpr nfnet_descriptor d_ =
      detail::make_nfnet_descriptor(nfnet_depths<D...>{}, nfnet_channels<C...>{}, nfnet_options<Opts...>{});
  static constexpr bool stages_ok_ = sizeof...(D) >= 1 && sizeof...(D) <= nfnet_max_stages;

 public:
  static_assert(sizeof...(D) == sizeof...(C),
                "nfnet_shape: nfnet_depths and nfnet_channels must name the same number of stages");
  static_assert(sizeof...(D) >= 1 && sizeof...(D) <= nfnet_max_stages,
                "nfnet_shape: an NFNet has one to four stages (timm dilates rather than strides past the "
                "fourth, which vitscale does not model)");
  static_assert(((D >= 1) && ...), "nfnet_shape: every stage needs a depth of at least 1 block");
  static_assert(((C >= 8 && C % 8 == 0) && ...),
                "nfnet_shape: every stage's channels must be a positive multiple of 8 (timm rounds them)");
  static_assert(d_.stem_channels >= 8 && d_.stem_channels % 8 == 0,
                "nfnet_shape: the stem channels (nfopt::stem_channels) must be a positive multiple of 8, so "
                "that the stem's /8, /4 and /2 convs are whole");
  static_assert(d_.group_width >= 0, "nfnet_shape: the group width (nfopt::group_width) must be >= 0 (0 = ungrouped)");
  static_assert(d_.bottleneck.num >= 1 && d_.bottleneck.den >= 1,
                "nfnet_shape: the bottleneck ratio (nfopt::bottleneck) must be a positive fraction");
  static_assert(!stages_ok_ || d_.bottleneck_ok(),
                "nfnet_shape: every stage's bottleneck width (channels x bottleneck ratio) must be a whole "
                "multiple of 8 and of the group width (nfopt::group_width)");
  static_assert(d_.se_ratio.num >= 0 && d_.se_ratio.den >= 1,
                "nfnet_shape: the squeeze-excite ratio (nfopt::se_ratio) must be a fraction >= 0 (0 = none)");
  static_assert(d_.feature_multiplier.num >= 0 && d_.feature_multiplier.den >= 1,
                "nfnet_shape: the feature multiplier (nfopt::feature_multiplier) must be a fraction >= 0 "
                "(0 = no final conv)");
  static_assert(!stages_ok_ || d_.feature_multiplier.num == 0 ||
                    (d_.channels[d_.stages - 1] * d_.feature_multiplier.num % d_.feature_multiplier.den == 0 &&
                     d_.features() % 8 == 0 && d_.features() >= 8),
                "nfnet_shape: the final conv's width (last stage's channels x feature multiplier) must be a "
                "whole positive multiple of 8");
  static_assert(d_.alpha.num >= 1 && d_.alpha.den >= 1, "nfnet_shape: alpha (nfopt::alpha) must be a positive fraction");
  static_assert(d_.classes >= 1, "nfnet_shape: nfopt::classes<N> needs at least one class");
  static_assert(d_.in_channels >= 1, "nfnet_shape: nfopt::channels<C> needs at least one input channel");
  static_assert(d_.resolution >= 1, "nfnet_shape: the default resolution (nfopt::resolution) must be at least 1 pixel");

  // ---- structure
  static constexpr int stages = sizeof...(D);
  static constexpr std::array<int, sizeof...(D)> depths{D...};
  static constexpr std::array<int, sizeof...(C)> channels{C...};
  static constexpr int blocks = (D + ...);
  static constexpr int stem_channels = d_.stem_channels;
  static constexpr int group_width = d_.group_width;
  static constexpr nfnet_fraction bottleneck = d_.bottleneck;
  static constexpr nfnet_fraction se_ratio = d_.se_ratio;
  static constexpr nfnet_fraction feature_multiplier = d_.feature_multiplier;
  static constexpr nfnet_fraction alpha_fraction = d_.alpha;
  static constexpr double alpha = d_.alpha_value();
  static constexpr nfnet_padding padding = d_.padding;
  static constexpr bool skipinit = d_.skipinit;
  static constexpr bool squeeze_excite = d_.se_ratio.num > 0;
  static constexpr bool final_conv = d_.feature_multiplier.num > 0;
  static constexpr int features = d_.features();  // the classifier's input width
  static constexpr int num_classes = d_.classes;
  static constexpr int in_channels = d_.in_channels;
  static constexpr int resolution = d_.resolution;  // the default image side, in pixels

  // The same shape with more options; later options override earlier ones:
  //   using f0_10 = presets::nfnet_f0::with<nfopt::classes<10>>;
  template <class... More>
  using with = typename detail::checked_nfnet_shape<nfnet_depths<D...>, nfnet_channels<C...>,
                                                    nfnet_options<Opts..., More...>>::type;

  // The run-time descriptor every walk and count reads.
  static constexpr nfnet_descriptor describe() { return d_; }

  // Side of the feature map after the stem and after each stage at `pixels` (the classifier pools the last).
  static constexpr int stem_side(int pixels = resolution) { return d_.stem_side(pixels); }
  static constexpr int stage_side(int stage, int pixels = resolution) { return d_.stage_side(stage, pixels); }
  // β of block `block` of stage `stage` (1/sqrt of the expected variance of its input, timm's computation).
  static constexpr double beta(int stage, int block) { return d_.beta(stage, block); }

  // ---- accounting (see nfnet_accounting.hpp for the conventions)
  static constexpr nfnet_param_counts params() { return count_nfnet_params(d_); }
  static constexpr nfnet_flop_counts flops(int pixels = resolution) { return count_nfnet_flops(d_, pixels); }
};

// The name users write: an alias that completes the class, so that an invalid shape is an error at the line
// that writes it.
template <class Depths, class Channels, class Options = nfnet_options<>>
using nfnet_shape = typename detail::checked_nfnet_shape<Depths, Channels, Options>::type;

template <class T>
struct is_nfnet_shape : std::false_type {};
template <int... D, int... C, class... O>
struct is_nfnet_shape<basic_nfnet_shape<nfnet_depths<D...>, nfnet_channels<C...>, nfnet_options<O...>>>
    : std::true_type {};
template <class T>
constexpr bool is_nfnet_shape_v = is_nfnet_shape<T>::value;

}  // namespace vitscale
