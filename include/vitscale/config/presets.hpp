#pragma once
// The models the seed papers name, with their published shapes (depth, width, heads, MLP width, patch).
// Ti/16 … H/14: the original ViT and AugReg ("How to train your ViT") shapes, class-token pooling.
// g/14, G/14: Scaling ViT (Zhai et al., 2022); e/14: PaLI's ViT-e; 22B: ViT-22B (Dehghani et al., 2023),
// with its parallel block, QK-norm, no QKV bias and LayerNorms without centering or bias.
// The large models pool with a MAP head here; the backbone counts the papers report do not depend on the
// head. Every preset defaults to 224 px and 1000 classes; rebind with ::with<...>:
//   using my_b16 = vitscale::presets::vit_b16::with<vitscale::opt::pool_gap, vitscale::opt::classes<10>>;

#include <vitscale/config/shape.hpp>
#include <vitscale/core/type_list.hpp>

#include <string_view>

namespace vitscale {
namespace presets {

using vit_ti16 = vit_shape<12, 192, 3, 768, 16>;
using vit_s16 = vit_shape<12, 384, 6, 1536, 16>;
using vit_b16 = vit_shape<12, 768, 12, 3072, 16>;
using vit_b32 = vit_shape<12, 768, 12, 3072, 32>;
using vit_l16 = vit_shape<24, 1024, 16, 4096, 16>;
using vit_h14 = vit_shape<32, 1280, 16, 5120, 14>;
using vit_giant14 = vit_shape<40, 1408, 16, 6144, 14, options<opt::pool_map>>;      // ViT-g/14
using vit_gigantic14 = vit_shape<48, 1664, 16, 8192, 14, options<opt::pool_map>>;   // ViT-G/14
using vit_e14 = vit_shape<56, 1792, 16, 15360, 14, options<opt::pool_map>>;         // ViT-e/14
using vit_22b = vit_shape<48, 6144, 48, 24576, 14,
                          options<opt::parallel_block, opt::qk_norm<true>, opt::qkv_bias<false>,
                                  opt::layer_norm<false, false>, opt::pool_map>>;  // ViT-22B

// Every preset, smallest first, for tables and run-time dispatch.
using all = type_list<vit_ti16, vit_s16, vit_b16, vit_b32, vit_l16, vit_h14, vit_giant14, vit_gigantic14,
                      vit_e14, vit_22b>;

// The papers' name of a preset ("ViT-B/16"); empty for any other shape.
template <class Shape>
constexpr std::string_view name() {
  if constexpr (std::is_same<Shape, vit_ti16>::value) return "ViT-Ti/16";
  else if constexpr (std::is_same<Shape, vit_s16>::value) return "ViT-S/16";
  else if constexpr (std::is_same<Shape, vit_b16>::value) return "ViT-B/16";
  else if constexpr (std::is_same<Shape, vit_b32>::value) return "ViT-B/32";
  else if constexpr (std::is_same<Shape, vit_l16>::value) return "ViT-L/16";
  else if constexpr (std::is_same<Shape, vit_h14>::value) return "ViT-H/14";
  else if constexpr (std::is_same<Shape, vit_giant14>::value) return "ViT-g/14";
  else if constexpr (std::is_same<Shape, vit_gigantic14>::value) return "ViT-G/14";
  else if constexpr (std::is_same<Shape, vit_e14>::value) return "ViT-e/14";
  else if constexpr (std::is_same<Shape, vit_22b>::value) return "ViT-22B";
  else return "";
}

}  // namespace presets
}  // namespace vitscale
