#pragma once
// The NFNets of the seed papers: F0 … F6 (Brock et al. 2021, "High-Performance Large-Scale Image Recognition
// Without Normalization", Table 2) and F7 (used by Smith et al. 2023, "ConvNets match Vision Transformers at
// scale": "F7 has the same width as F3, but is double the depth"), all with timm's DeepMind-compatible
// structure (dm_nfnet_f*: SAME padding, γ in the activations, skipinit gains, deep_quad stem of 128 channels,
// stage channels 256, 512, 1536, 1536, group width 128, bottleneck 1/2, SE ratio 1/2, a final conv to 3072,
// α = 0.2). F_k has depths (k+1)·(1, 2, 6, 3). timm registers F7 only as nfnet_f7, with symmetric padding and
// no skipinit gains (96 parameters fewer); the preset here is its dm_ form.
//
// Default resolutions are the papers' test resolutions (timm's test_input_size): F0 256, F1 320, F2 352,
// F3 416, F4 512, F5 544, F6 576, F7 608 (training used smaller ones: F0 192 … F7 480). 1000 classes.
// F3+ and F7+ are not here: their widths are not published (see nfnet_shape.hpp).
//
// nfnet_fmnist is a small shape of the same structure for Fashion-MNIST: 1 channel, 28 px, 10 classes, one
// block per stage, channels 32, 64, 96, 128, a 16-channel stem and group width 16 (163,812 parameters).

#include <vitscale/config/nfnet_shape.hpp>
#include <vitscale/core/type_list.hpp>

#include <string_view>
#include <type_traits>

namespace vitscale {
namespace presets {

namespace nfnet_detail {
template <int K, int Resolution>
using nfnet_fk = nfnet_shape<nfnet_depths<K + 1, 2 * (K + 1), 6 * (K + 1), 3 * (K + 1)>,
                             nfnet_channels<256, 512, 1536, 1536>, nfnet_options<nfopt::resolution<Resolution>>>;
}  // namespace nfnet_detail

using nfnet_f0 = nfnet_detail::nfnet_fk<0, 256>;
using nfnet_f1 = nfnet_detail::nfnet_fk<1, 320>;
using nfnet_f2 = nfnet_detail::nfnet_fk<2, 352>;
using nfnet_f3 = nfnet_detail::nfnet_fk<3, 416>;
using nfnet_f4 = nfnet_detail::nfnet_fk<4, 512>;
using nfnet_f5 = nfnet_detail::nfnet_fk<5, 544>;
using nfnet_f6 = nfnet_detail::nfnet_fk<6, 576>;
using nfnet_f7 = nfnet_detail::nfnet_fk<7, 608>;

using nfnet_fmnist = nfnet_shape<nfnet_depths<1, 1, 1, 1>, nfnet_channels<32, 64, 96, 128>,
                                 nfnet_options<nfopt::stem_channels<16>, nfopt::group_width<16>, nfopt::channels<1>,
                                               nfopt::classes<10>, nfopt::resolution<28>>>;

// Every NFNet preset, smallest first.
using all_nfnets = type_list<nfnet_fmnist, nfnet_f0, nfnet_f1, nfnet_f2, nfnet_f3, nfnet_f4, nfnet_f5, nfnet_f6,
                             nfnet_f7>;

// The papers' name of an NFNet preset ("NFNet-F0"); empty for any other shape.
template <class Shape>
constexpr std::string_view nfnet_name() {
  if constexpr (std::is_same<Shape, nfnet_fmnist>::value) return "NFNet-FMNIST";
  else if constexpr (std::is_same<Shape, nfnet_f0>::value) return "NFNet-F0";
  else if constexpr (std::is_same<Shape, nfnet_f1>::value) return "NFNet-F1";
  else if constexpr (std::is_same<Shape, nfnet_f2>::value) return "NFNet-F2";
  else if constexpr (std::is_same<Shape, nfnet_f3>::value) return "NFNet-F3";
  else if constexpr (std::is_same<Shape, nfnet_f4>::value) return "NFNet-F4";
  else if constexpr (std::is_same<Shape, nfnet_f5>::value) return "NFNet-F5";
  else if constexpr (std::is_same<Shape, nfnet_f6>::value) return "NFNet-F6";
  else if constexpr (std::is_same<Shape, nfnet_f7>::value) return "NFNet-F7";
  else return "";
}

}  // namespace presets
}  // namespace vitscale
