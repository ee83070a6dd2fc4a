#pragma once
// shape_descriptor: a ViT shape as a plain run-time value, for choosing a compile-time shape from a file.
//
//   constexpr vitscale::shape_descriptor d = vitscale::describe<vitscale::presets::vit_b16>();
//   std::puts(d.to_string().c_str());   // "depth 12, width 768, heads 12, mlp 3072, patch 16, ..."
//
// io/dispatch.hpp infers a descriptor from a safetensors file's tensor names and shapes (plus the few facts
// the tensors cannot show, from metadata save_parameters writes) and picks the first shape of a
// compile-time list whose describe<Shape>() matches. The fields a file may not reveal — the number of heads
// (timm's fused qkv hides it unless there is a QK-norm), the MLP's activation, whether the norms subtract
// the mean, the default resolution — are optionals: empty means "not known", and matches() then accepts any
// value. The resolution is never matched: it is a run-time value of every model (load at the file's).

#include <vitscale/config/names.hpp>
#include <vitscale/config/options.hpp>
#include <vitscale/core/error.hpp>

#include <optional>
#include <string>

namespace vitscale {

struct shape_descriptor {
  int depth = 0;
  int width = 0;
  std::optional<int> heads;
  int mlp_dim = 0;
  int patch = 0;
  int channels = 0;
  int classes = 0;
  int pre_logits = 0;
  block_kind block = block_kind::classic;
  pooling pool = pooling::cls_token;
  bool qkv_bias = true;
  bool qk_norm = false;
  bool norm_bias = true;
  std::optional<bool> norm_centered;
  posemb_kind posemb = posemb_kind::learned;
  bool cls_posemb = false;  // the learned position embedding has an entry for the class token
  std::optional<activation> mlp_activation;
  std::optional<int> resolution;  // default image side (a compiled shape) or the file's (inferred)

  std::string to_string() const;

  // ---- derived facts and geometry: the one definition, which vit_shape's members and the accounting
  // (config/accounting.hpp, with a compiled shape's describe<Shape>() or any run-time descriptor) both use.
  constexpr bool class_token() const { return pool == pooling::cls_token; }
  // The final norm on every token (`norm`), or, with gap_fc_norm, on the pooled vector only (`fc_norm`).
  constexpr bool token_norm() const { return pool != pooling::gap_fc_norm; }
  constexpr int features() const { return pre_logits > 0 ? pre_logits : width; }  // the classifier's input
  // The number of heads and whether norms centre, which a file may not reveal: an error when unknown.
  constexpr int known_heads() const {
    if (!heads) detail::fail("shape descriptor: the number of heads is not known (", to_string(), ")");
    return *heads;
  }
  constexpr bool known_norm_centered() const {
    if (!norm_centered) detail::fail("shape descriptor: whether the norms subtract the mean is not known");
    return *norm_centered;
  }
  constexpr int head_dim() const { return width / known_heads(); }
  // Patches per image side at `pixels`; a resolution that is not a positive multiple of the patch is an error.
  constexpr int grid(int pixels) const {
    if (pixels < patch || pixels % patch != 0)
      detail::fail("resolution ", pixels, " px is not a positive multiple of the patch size ", patch);
    return pixels / patch;
  }
  constexpr int patches(int pixels) const { return grid(pixels) * grid(pixels); }
  // Sequence length through the encoder: the patches, plus the class token if there is one.
  constexpr int tokens(int pixels) const { return patches(pixels) + (class_token() ? 1 : 0); }
  // Rows of the learned position embedding.
  constexpr int posemb_entries(int pixels) const {
    return posemb == posemb_kind::learned ? patches(pixels) + (cls_posemb ? 1 : 0) : 0;
  }

  // Throws unless this is a shape vit_shape would accept (its static_asserts as run-time errors), with every
  // field the accounting needs known. For descriptors built at run time (explore/shape_grid.hpp).
  void check() const;
};

// The descriptor of a compile-time shape: every field known.
template <class Shape>
constexpr shape_descriptor describe() {
  shape_descriptor d{};
  d.depth = Shape::depth;
  d.width = Shape::width;
  d.heads = Shape::heads;
  d.mlp_dim = Shape::mlp_dim;
  d.patch = Shape::patch;
  d.channels = Shape::in_channels;
  d.classes = Shape::num_classes;
  d.pre_logits = Shape::pre_logits;
  d.block = Shape::block;
  d.pool = Shape::pool;
  d.qkv_bias = Shape::qkv_bias;
  d.qk_norm = Shape::qk_norm;
  d.norm_bias = Shape::norm_bias;
  d.norm_centered = Shape::norm_centered;
  d.posemb = Shape::posemb;
  d.cls_posemb = Shape::cls_posemb;
  d.mlp_activation = Shape::mlp_activation;
  d.resolution = Shape::resolution;
  return d;
}

// Whether a (fully known) compiled descriptor fits a found one: every field equal, except that a field the
// found descriptor does not know matches anything, and the resolution is ignored.
constexpr bool matches(const shape_descriptor& compiled, const shape_descriptor& found) {
  auto fits = [](const auto& c, const auto& f) { return !f.has_value() || (c.has_value() && *c == *f); };
  return compiled.depth == found.depth && compiled.width == found.width && fits(compiled.heads, found.heads) &&
         compiled.mlp_dim == found.mlp_dim && compiled.patch == found.patch &&
         compiled.channels == found.channels && compiled.classes == found.classes &&
         compiled.pre_logits == found.pre_logits && compiled.block == found.block && compiled.pool == found.pool &&
         compiled.qkv_bias == found.qkv_bias && compiled.qk_norm == found.qk_norm &&
         compiled.norm_bias == found.norm_bias && fits(compiled.norm_centered, found.norm_centered) &&
         compiled.posemb == found.posemb && compiled.cls_posemb == found.cls_posemb &&
         fits(compiled.mlp_activation, found.mlp_activation);
}

inline void shape_descriptor::check() const {
  if (depth < 1) detail::fail("shape: depth (number of encoder blocks) must be at least 1, got ", depth);
  if (width < 1) detail::fail("shape: width (embedding dimension) must be at least 1, got ", width);
  if (known_heads() < 1) detail::fail("shape: the number of attention heads must be at least 1, got ", *heads);
  if (mlp_dim < 1) detail::fail("shape: the MLP width must be at least 1, got ", mlp_dim);
  if (patch < 1) detail::fail("shape: the patch size must be at least 1 pixel, got ", patch);
  if (width % *heads != 0)
    detail::fail("shape: width ", width, " must be a multiple of the number of heads ", *heads,
                 " (head_dim = width / heads)");
  if (classes < 1) detail::fail("shape: needs at least one class, got ", classes);
  if (channels < 1) detail::fail("shape: needs at least one input channel, got ", channels);
  if (pre_logits < 0) detail::fail("shape: pre-logits width must be >= 0 (0 = none), got ", pre_logits);
  known_norm_centered();
  if (posemb == posemb_kind::sincos2d && width % 4 != 0)
    detail::fail("shape: the 2-D sin-cos position embedding needs width to be a multiple of 4, got ", width);
  if (cls_posemb && (pool != pooling::cls_token || posemb != posemb_kind::learned))
    detail::fail("shape: a class-token position entry needs a class token and a learned position embedding");
}

inline std::string shape_descriptor::to_string() const {
  using std::to_string;
  using vitscale::to_string;
  const char* unknown = "?";
  std::string s = "depth " + to_string(depth) + ", width " + to_string(width) + ", heads " +
                  (heads ? to_string(*heads) : unknown) + ", mlp " + to_string(mlp_dim) + ", patch " +
                  to_string(patch) + ", " + to_string(channels) + (channels == 1 ? " channel" : " channels") +
                  ", " + to_string(classes) + " classes, " + to_string(block) + " block, pool " + to_string(pool);
  if (pre_logits > 0) s += ", pre-logits " + to_string(pre_logits);
  s += std::string(", qkv bias ") + (qkv_bias ? "yes" : "no") + ", qk-norm " + (qk_norm ? "yes" : "no");
  s += std::string(", norm ") + (norm_centered ? (*norm_centered ? "centered" : "uncentered") : "centered?") +
       (norm_bias ? " with bias" : " without bias");
  s += std::string(", posemb ") + to_string(posemb);
  if (posemb == posemb_kind::learned && pool == pooling::cls_token)
    s += cls_posemb ? " (with a class-token entry)" : " (no class-token entry)";
  s += std::string(", ") + (mlp_activation ? to_string(*mlp_activation) : "gelu ?");
  s += ", " + (resolution ? to_string(*resolution) : std::string(unknown)) + " px";
  return s;
}

}  // namespace vitscale
