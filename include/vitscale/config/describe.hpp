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
