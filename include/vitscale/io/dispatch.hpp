#pragma once
// Choosing the compile-time model from a file: infer a safetensors file's shape from its tensors (timm's
// names), then run the first shape of a compile-time list that fits.
//
//   using candidates = vitscale::type_list<presets::vit_ti16, presets::vit_s16, my_shape>;
//   const auto found = vitscale::io::infer_shape("model.safetensors");
//   vitscale::io::dispatch<candidates>(found, [&](auto tag) {
//     using shape = typename decltype(tag)::type;
//     vitscale::vit<shape> model(found.resolution.value_or(shape::resolution));
//     vitscale::io::load_parameters(model, "model.safetensors");
//   });
//
// What the tensors show: depth (blocks.N), width, patch and channels (patch_embed.proj.weight), MLP width,
// block kind (attn.qkv vs in_proj), QKV bias, QK-norm (and with it the heads: q_norm has head_dim entries),
// norm bias, pooling (cls_token → class token, attn_pool.* → MAP, fc_norm.* → GAP then norm, else GAP),
// pre-logits, classes, learned or sin-cos position embedding and, for a learned one, the resolution and
// whether the class token has an entry. What they do not show is read from metadata save_parameters writes (keys below): the heads (timm's
// fused qkv hides them), the MLP activation, whether the norms subtract the mean, and a sin-cos model's
// resolution. A file without them (a timm export) leaves those fields unknown; dispatch then accepts a
// candidate only if no other candidate of the list also fits.

#include <vitscale/config/describe.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/type_list.hpp>
#include <vitscale/io/safetensors.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace vitscale::io {

// Metadata keys save_parameters writes for what the tensors cannot show.
inline constexpr const char* heads_key = "vitscale.heads";
inline constexpr const char* activation_key = "vitscale.mlp_activation";  // gelu_erf | gelu_tanh
inline constexpr const char* norm_centered_key = "vitscale.norm_centered";  // true | false
inline constexpr const char* resolution_key = "vitscale.resolution";      // the model's resolution, in pixels
inline constexpr const char* shape_key = "vitscale.shape";                // describe<Shape>().to_string(), for people

// The metadata that makes a file's shape exact for infer_shape.
template <class Shape>
std::map<std::string, std::string> shape_metadata(int resolution = Shape::resolution) {
  return {{heads_key, std::to_string(Shape::heads)},
          {activation_key, to_string(Shape::mlp_activation)},
          {norm_centered_key, Shape::norm_centered ? "true" : "false"},
          {resolution_key, std::to_string(resolution)},
          {shape_key, describe<Shape>().to_string()}};
}

namespace detail {
// The largest size infer_shape accepts for any dimension it reads (width, MLP width, patch, classes, depth,
// heads, resolution): far above any ViT (ViT-22B: width 6144, MLP 24576), and small enough that products
// of two of them stay far from overflowing the 64-bit sizes, and each fits an int.
inline constexpr std::int64_t max_shape_value = std::int64_t(1) << 30;

// A decimal integer in [lo, max_shape_value], digits only (no sign, spaces or leading zeros), or -1.
inline std::int64_t parse_decimal(const std::string& text, std::int64_t lo) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos ||
      (text.size() > 1 && text[0] == '0'))
    return -1;
  std::int64_t v = 0;
  for (char c : text) v = v * 10 + (c - '0');
  return v >= lo && v <= max_shape_value ? v : -1;
}

inline int positive_int(const std::string& text, const std::string& what, const std::string& path) {
  const std::int64_t v = parse_decimal(text, 1);
  if (v < 0)
    ::vitscale::detail::fail("infer_shape: ", path, ": metadata ", what, " = \"", text,
                             "\" is not a positive integer (decimal digits, at most 2^30)");
  return static_cast<int>(v);
}

// The integer square root of n when n is a perfect square of at most max_shape_value, else -1.
inline int exact_sqrt(std::int64_t n) {
  if (n < 1 || n > max_shape_value * max_shape_value) return -1;
  auto r = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  for (std::int64_t c = std::max<std::int64_t>(r - 1, 1); c <= r + 1; ++c)
    if (c * c == n) return c <= max_shape_value ? static_cast<int>(c) : -1;
  return -1;
}
}  // namespace detail

// The shape of a timm-named parameter file. Errors name the file and what is missing or inconsistent.
inline shape_descriptor infer_shape(const safetensors_reader& file) {
  const std::string& path = file.path();
  auto fail = [&](auto&&... parts) { ::vitscale::detail::fail("infer_shape: ", path, ": ", parts...); };
  auto shape_of = [&](const std::string& name) -> const std::vector<std::int64_t>* {
    return file.contains(name) ? &file.entry(name).shape : nullptr;
  };
  // A size read from the file, as an int: from 1 to detail::max_shape_value, or an error naming it.
  auto size = [&](std::int64_t v, const std::string& what) -> int {
    if (v < 1 || v > detail::max_shape_value)
      fail(what, " is ", v, ", not a size infer_shape accepts (1 to 2^30)");
    return static_cast<int>(v);
  };
  auto need = [&](const std::string& name, std::size_t rank) -> const std::vector<std::int64_t>& {
    const auto* s = shape_of(name);
    if (!s) fail("no tensor ", name, " (not a ViT state dict under timm's names?)");
    if (s->size() != rank) fail(name, " has shape ", detail::format_shape(*s), ", expected rank ", rank);
    return *s;
  };

  shape_descriptor d;
  // depth: blocks 0 .. N-1, every one present
  std::set<int> blocks;
  for (const auto& e : file.tensors()) {
    if (e.name.rfind("blocks.", 0) != 0) continue;
    const std::size_t dot = e.name.find('.', 7);
    const std::string index = e.name.substr(7, dot == std::string::npos ? std::string::npos : dot - 7);
    const std::int64_t i = index.size() > 6 ? -1 : detail::parse_decimal(index, 0);
    if (i < 0) fail("unexpected tensor name ", e.name, " (a block index is a decimal number below 10^6, no leading zeros)");
    blocks.insert(static_cast<int>(i));
  }
  if (blocks.empty()) fail("no blocks.N.* tensors (not a ViT state dict under timm's names?)");
  if (*blocks.begin() != 0 || *blocks.rbegin() != int(blocks.size()) - 1)
    fail("the blocks are not numbered 0 .. ", blocks.size() - 1, " (found up to ", *blocks.rbegin(), ")");
  d.depth = int(blocks.size());

  const auto& pe = need("patch_embed.proj.weight", 4);
  if (pe[2] != pe[3]) fail("patch_embed.proj.weight ", detail::format_shape(pe), " is not a square patch");
  d.width = size(pe[0], "the width (patch_embed.proj.weight's first dimension)");
  d.channels = size(pe[1], "the channels (patch_embed.proj.weight's second dimension)");
  d.patch = size(pe[2], "the patch size (patch_embed.proj.weight's last dimension)");
  const std::int64_t D = d.width;

  std::optional<std::int64_t> head_dim;
  if (shape_of("blocks.0.attn.qkv.weight")) {
    d.block = block_kind::classic;
    d.mlp_dim = size(need("blocks.0.mlp.fc1.weight", 2)[0], "the MLP width (blocks.0.mlp.fc1.weight's rows)");
    d.qkv_bias = shape_of("blocks.0.attn.qkv.bias") != nullptr;
    d.qk_norm = shape_of("blocks.0.attn.q_norm.weight") != nullptr;
    if (d.qk_norm) head_dim = need("blocks.0.attn.q_norm.weight", 1)[0];
  } else if (shape_of("blocks.0.in_proj.weight")) {
    d.block = block_kind::parallel;
    const auto& in = need("blocks.0.in_proj.weight", 2);
    if (in[0] <= 3 * D) fail("blocks.0.in_proj.weight ", detail::format_shape(in), " leaves no MLP rows");
    d.mlp_dim = size(in[0] - 3 * D, "the MLP width (blocks.0.in_proj.weight's rows - 3 x width)");
    d.qkv_bias = shape_of("blocks.0.in_proj.bias") != nullptr;
    d.qk_norm = shape_of("blocks.0.q_norm.weight") != nullptr;
    if (d.qk_norm) head_dim = need("blocks.0.q_norm.weight", 1)[0];
  } else {
    fail("block 0 has neither attn.qkv.weight (classic block) nor in_proj.weight (parallel block)");
  }
  if (head_dim) {
    if (*head_dim < 1 || D % *head_dim != 0) fail("q_norm has ", *head_dim, " entries, which does not divide width ", D);
    d.heads = int(D / *head_dim);
  }
  // The final norm: `norm` on the tokens, or timm's `fc_norm` on the pooled vector (GAP then norm).
  const bool fc_norm = shape_of("fc_norm.weight") != nullptr;
  if (fc_norm && shape_of("norm.weight")) fail("both norm.weight and fc_norm.weight: a head vitscale does not have");
  d.norm_bias = shape_of(fc_norm ? "fc_norm.bias" : "norm.bias") != nullptr;
  need(fc_norm ? "fc_norm.weight" : "norm.weight", 1);

  const bool cls = shape_of("cls_token") != nullptr, map = shape_of("attn_pool.latent") != nullptr;
  if (cls && map) fail("both cls_token and attn_pool.latent: a pooling vitscale does not have");
  if (fc_norm && (cls || map))
    fail("fc_norm.weight with ", cls ? "cls_token" : "attn_pool.latent",
         ": vitscale has fc_norm only after global average pooling (timm's global_pool='avg')");
  d.pool = cls ? pooling::cls_token : map ? pooling::map : fc_norm ? pooling::gap_fc_norm : pooling::gap;
  if (shape_of("pre_logits.fc.weight"))
    d.pre_logits = size(need("pre_logits.fc.weight", 2)[0], "the pre-logits width (pre_logits.fc.weight's rows)");
  const auto& head = need("head.weight", 2);
  d.classes = size(head[0], "the number of classes (head.weight's rows)");

  if (const auto* pos = shape_of("pos_embed")) {
    d.posemb = posemb_kind::learned;
    if (pos->size() != 3) fail("pos_embed has shape ", detail::format_shape(*pos), ", expected [1, entries, width]");
    const std::int64_t n = (*pos)[1];
    int grid = -1;
    if (cls && (grid = detail::exact_sqrt(n - 1)) > 0) {
      d.cls_posemb = true;
    } else if ((grid = detail::exact_sqrt(n)) > 0) {
      d.cls_posemb = false;
    } else {
      fail("pos_embed has ", n, " entries: not a square grid", cls ? " (with or without a class-token entry)" : "");
    }
    d.resolution = size(std::int64_t(grid) * d.patch, "the resolution (pos_embed's grid side x patch size)");
  } else {
    d.posemb = posemb_kind::sincos2d;
  }

  const auto& meta = file.metadata();
  auto meta_of = [&](const char* key) -> const std::string* {
    const auto it = meta.find(key);
    return it == meta.end() ? nullptr : &it->second;
  };
  if (const auto* h = meta_of(heads_key)) {
    const int heads = detail::positive_int(*h, heads_key, path);
    if (d.heads && *d.heads != heads) fail("metadata ", heads_key, " = ", heads, " but q_norm gives ", *d.heads, " heads");
    if (D % heads != 0) fail("metadata ", heads_key, " = ", heads, " does not divide width ", D);
    d.heads = heads;
  }
  if (const auto* a = meta_of(activation_key)) {
    if (*a == "gelu_erf") d.mlp_activation = activation::gelu_erf;
    else if (*a == "gelu_tanh") d.mlp_activation = activation::gelu_tanh;
    else fail("metadata ", activation_key, " = \"", *a, "\" (known: gelu_erf, gelu_tanh)");
  }
  if (const auto* c = meta_of(norm_centered_key)) {
    if (*c == "true") d.norm_centered = true;
    else if (*c == "false") d.norm_centered = false;
    else fail("metadata ", norm_centered_key, " = \"", *c, "\" (known: true, false)");
  }
  if (const auto* r = meta_of(resolution_key)) {
    const int res = detail::positive_int(*r, resolution_key, path);
    if (d.resolution && *d.resolution != res)
      fail("metadata ", resolution_key, " = ", res, " but pos_embed is for ", *d.resolution, " px");
    d.resolution = res;
  }
  return d;
}

inline shape_descriptor infer_shape(const std::string& path) { return infer_shape(safetensors_reader(path)); }

// The argument dispatch hands its function: the chosen shape as a type.
template <class Shape>
struct shape_tag {
  using type = Shape;
};

namespace detail {
template <class... Shapes>
std::string list_candidates(type_list<Shapes...>) {
  std::string s;
  ((s += "\n  " + describe<Shapes>().to_string()), ...);
  return s;
}

inline std::string unknown_fields(const shape_descriptor& d) {
  std::string s;
  auto add = [&](bool unknown, const char* what) {
    if (unknown) s += (s.empty() ? "" : ", ") + std::string(what);
  };
  add(!d.heads, "heads (metadata vitscale.heads)");
  add(!d.mlp_activation, "MLP activation (vitscale.mlp_activation)");
  add(!d.norm_centered, "norm centering (vitscale.norm_centered)");
  return s;
}
}  // namespace detail

// dispatch<List>(found, f):
// Calls f(shape_tag<S>{}) with the first S of List whose describe<S>() matches `found`, and returns what f
// returns (every instantiation must return the same type). No match: a vitscale::error giving the shape
// found and every candidate. When `found` leaves fields unknown (a file without vitscale.* metadata) and
// two candidates that differ fit it, the choice would be a guess: that is an error too.
namespace detail {
template <class First, class... Rest, class F>
decltype(auto) dispatch_impl(type_list<First, Rest...>, const shape_descriptor& found, F&& f) {
  using result = decltype(f(shape_tag<First>{}));
  constexpr int n = 1 + int(sizeof...(Rest));
  constexpr shape_descriptor described[n] = {describe<First>(), describe<Rest>()...};
  int chosen = -1;
  for (int i = 0; i < n; ++i) {
    if (!matches(described[i], found)) continue;
    if (chosen < 0) {
      chosen = i;
    } else if (!matches(described[i], described[chosen]) || !matches(described[chosen], described[i])) {
      ::vitscale::detail::fail("dispatch: the file's shape\n  ", found.to_string(),
                               "\nfits more than one candidate, because the file does not say its ",
                               detail::unknown_fields(found), ":\n  ", described[chosen].to_string(), "\n  ",
                               described[i].to_string(),
                               "\n(a file written by io::save_parameters records them; or compile a list with "
                               "only one of these)");
    }
  }
  if (chosen < 0)
    ::vitscale::detail::fail("dispatch: no compiled shape fits the file's shape\n  ", found.to_string(),
                             "\ncandidates (", n, "):", detail::list_candidates(type_list<First, Rest...>{}));
  // Visit the chosen index with each type once.
  using fn = result (*)(F&);
  constexpr fn calls[n] = {[](F& g) -> result { return g(shape_tag<First>{}); },
                           [](F& g) -> result { return g(shape_tag<Rest>{}); }...};
  return calls[chosen](f);
}
}  // namespace detail

template <class List, class F>
decltype(auto) dispatch(const shape_descriptor& found, F&& f) {
  static_assert(List::size > 0, "dispatch: the list of candidate shapes is empty");
  return detail::dispatch_impl(List{}, found, f);
}

}  // namespace vitscale::io
