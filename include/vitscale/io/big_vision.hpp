#pragma once
// big_vision checkpoints (.npz) into a vitscale model or parameter arena of the matching compile-time shape.
//
// big_vision's ViT (big_vision/models/vit.py) saves its flax parameters flattened, module paths joined by '/'.
// Each is mapped to our tensor table (timm's names and layouts, config/tensors.hpp) as timm's own
// `_load_weights` does:
//
//   embedding/kernel [p, p, C, D] (HWIO conv)       -> patch_embed.proj.weight [D, C, p, p]; embedding/bias
//   cls [1, 1, D]                                   -> cls_token
//   pos_embedding [1, h·w, D] (no class-token entry) -> pos_embed (the shape needs opt::cls_posemb<false>)
//   Transformer/encoderblock_{i}/ (or the scan-stacked Transformer/encoderblock/ with a leading depth axis)
//     LayerNorm_0, LayerNorm_1 scale|bias            -> blocks.i.norm1, norm2 weight|bias
//     MultiHeadDotProductAttention_0/{query,key,value}/kernel [D, H, dh], bias [H, dh]
//                                                   -> blocks.i.attn.qkv.weight [3D, D] (rows q|k|v), .bias
//     MultiHeadDotProductAttention_0/out/kernel [H, dh, D], bias [D] -> blocks.i.attn.proj
//     MlpBlock_0/Dense_0|Dense_1 kernel [in, out], bias -> blocks.i.mlp.fc1|fc2 ([out, in]: transposed)
//   Transformer/encoder_norm scale|bias            -> norm
//   MAPHead_0/probe, MultiHeadDotProductAttention_0 (query -> attn_pool.q; key|value -> attn_pool.kv),
//     LayerNorm_0, MlpBlock_0                       -> attn_pool.*
//   pre_logits/kernel|bias                         -> pre_logits.fc (timm no longer loads it; we do)
//   head/kernel [features, classes], bias           -> head
//
// The parameters may sit under a prefix: "params/" (big_vision's own checkpoints), "opt/target/" (the
// original ViT code's) or "params/img/" (a SigLIP image tower); by default the prefix is found from where
// embedding/kernel is. Arrays outside the prefix (optimizer state) are ignored; every array inside it must
// be used. Before anything is written, every tensor is checked — present, shaped as the model needs, a
// readable dtype — and all problems are reported together in one vitscale::error that lists the missing,
// unexpected and mis-shaped arrays. Supported: the classic block with biases and LayerNorm, class-token /
// GAP / MAP pooling, learned or sin-cos position embeddings, optional pre-logits — big_vision's ViT.
//
// The original ViT code's checkpoints (google-research/vision_transformer, the AugReg "How to train your ViT"
// releases) are read too: there the blocks hold LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2,
// MlpBlock_3, and the position embedding is Transformer/posembed_input/pos_embedding with an entry for the
// class token first (timm's layout: a shape with the default opt::cls_posemb). Not handled: folding that
// entry into the class token for a big_vision-layout shape (big_vision's fix_old_checkpoints).
//
// Fine-tuning (load_options, io/parameters.hpp): with new_head, head/kernel and head/bias are not read — the
// model's head is set to zero, as big_vision's transfer config does (dont_load=['head/kernel', 'head/bias'],
// head_zeroinit) — and they, with a pre_logits/ layer the model does not have, are reported unused instead of
// unexpected. With resample_posemb, a position embedding of another square grid is resampled to the model's with
// resample_posemb (model/posemb.hpp), as vit::set_resolution does: timm's bicubic, antialiased resampling by
// default, which is what timm does when it loads these files. big_vision's own `resample_posemb`
// (models/vit.py) is scipy.ndimage.zoom(order=1), another interpolation: a model fine-tuned in big_vision at a
// new resolution starts from a slightly different table.

#include <array>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/finite.hpp>
#include <vitscale/io/npz.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/model/parameters.hpp>
#include <vitscale/model/vit.hpp>

namespace vitscale::io {

struct big_vision_options {
  // The prefix of the parameter names ("", "params/", ...); unset, it is found from embedding/kernel.
  std::optional<std::string> prefix;
  // Read '|V2' arrays as bfloat16 (jax bf16 checkpoints written by np.savez).
  bool void2_as_bf16 = false;
};

// What an import found.
struct big_vision_import {
  std::string prefix;                // the prefix the parameters were under
  bool scanned = false;              // blocks stored scan-stacked (Transformer/encoderblock/..., a leading depth axis)
  bool legacy = false;               // the original ViT code's names (Transformer/posembed_input, MlpBlock_3, ...)
  int tensors = 0;                   // tensors of the table read from the file (all of them without new_head)
  std::vector<std::string> ignored;  // arrays outside the prefix, not read
  load_report report;                // what was loaded, re-initialised, unused (ignored arrays included), resampled
};

namespace detail {

// One source array of a table tensor, and how its elements land there.
struct bv_piece {
  std::string name;                 // full array name in the archive
  std::vector<std::int64_t> shape;  // the shape one block needs (without a scan axis)
  int split = 0;   // 0: copied as is; k > 0: the array is the matrix [prod(shape[:k]), prod(shape[k:])] and is
                   // transposed; -1: the HWIO conv kernel [p, p, C, D] -> [D, C, p, p]
  int block = -1;  // scan-stacked: which slice of the leading depth axis; -1 otherwise
};

inline std::int64_t bv_numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// The pieces of every table tensor, in the table's order, for a shape with these constants.
template <class Shape, std::size_t N>
std::vector<std::vector<bv_piece>> big_vision_plan(const std::array<tensor_info, N>& table, const std::string& prefix,
                                                   bool scanned, bool legacy) {
  constexpr std::int64_t D = Shape::width, H = Shape::heads, dh = Shape::head_dim, F = Shape::mlp_dim;
  constexpr std::int64_t p = Shape::patch, C = Shape::in_channels;
  std::vector<std::vector<bv_piece>> plan;
  for (const tensor_info& t : table) {
    const std::string name(t.name);
    std::vector<bv_piece> pieces;
    auto one = [&](const std::string& n, std::vector<std::int64_t> shape, int split = 0) {
      pieces.push_back(bv_piece{n, std::move(shape), split, -1});
    };
    auto dense = [&](const std::string& base, std::int64_t in, std::int64_t out, bool weight) {
      if (weight)
        one(base + "/kernel", {in, out}, 1);
      else
        one(base + "/bias", {out});
    };
    auto norm = [&](const std::string& base, bool scale) { one(base + (scale ? "/scale" : "/bias"), {D}); };
    // A multi-head attention's input projections (q, k, v kernels [D, H, dh] -> rows of [.., D]).
    auto heads_in = [&](const std::string& base, std::initializer_list<const char*> which, bool weight) {
      for (const char* w : which) {
        if (weight)
          one(base + "/" + w + "/kernel", {D, H, dh}, 1);
        else
          one(base + "/" + w + "/bias", {H, dh});
      }
    };
    auto ends = [&](const char* suffix) {
      const std::string s(suffix);
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    const bool weight = ends(".weight");

    if (t.block >= 0) {
      const std::string b = prefix + (scanned ? std::string("Transformer/encoderblock")
                                              : "Transformer/encoderblock_" + std::to_string(t.block));
      const std::string mha = b + (legacy ? "/MultiHeadDotProductAttention_1" : "/MultiHeadDotProductAttention_0");
      const std::string mlp = b + (legacy ? "/MlpBlock_3" : "/MlpBlock_0");
      if (name == "norm1.weight" || name == "norm1.bias") norm(b + "/LayerNorm_0", weight);
      if (name == "norm2.weight" || name == "norm2.bias") norm(b + (legacy ? "/LayerNorm_2" : "/LayerNorm_1"), weight);
      if (name == "attn.qkv.weight" || name == "attn.qkv.bias") heads_in(mha, {"query", "key", "value"}, weight);
      if (name == "attn.proj.weight") one(mha + "/out/kernel", {H, dh, D}, 2);
      if (name == "attn.proj.bias") one(mha + "/out/bias", {D});
      if (name == "mlp.fc1.weight" || name == "mlp.fc1.bias") dense(mlp + "/Dense_0", D, F, weight);
      if (name == "mlp.fc2.weight" || name == "mlp.fc2.bias") dense(mlp + "/Dense_1", F, D, weight);
      if (scanned)
        for (auto& piece : pieces) piece.block = t.block;
    } else {
      const std::string map = prefix + "MAPHead_0";
      const std::string mha = map + "/MultiHeadDotProductAttention_0";
      if (name == "cls_token") one(prefix + "cls", {1, 1, D});
      if (name == "pos_embed")
        one(prefix + (legacy ? "Transformer/posembed_input/pos_embedding" : "pos_embedding"),
            {t.dims[0], t.dims[1], t.dims[2]});
      if (name == "patch_embed.proj.weight") one(prefix + "embedding/kernel", {p, p, C, D}, -1);
      if (name == "patch_embed.proj.bias") one(prefix + "embedding/bias", {D});
      if (name == "norm.weight" || name == "norm.bias") norm(prefix + "Transformer/encoder_norm", weight);
      if (name == "attn_pool.latent") one(map + "/probe", {1, 1, D});
      if (name == "attn_pool.q.weight" || name == "attn_pool.q.bias") heads_in(mha, {"query"}, weight);
      if (name == "attn_pool.kv.weight" || name == "attn_pool.kv.bias") heads_in(mha, {"key", "value"}, weight);
      if (name == "attn_pool.proj.weight") one(mha + "/out/kernel", {H, dh, D}, 2);
      if (name == "attn_pool.proj.bias") one(mha + "/out/bias", {D});
      if (name == "attn_pool.norm.weight" || name == "attn_pool.norm.bias") norm(map + "/LayerNorm_0", weight);
      if (name == "attn_pool.mlp.fc1.weight" || name == "attn_pool.mlp.fc1.bias")
        dense(map + "/MlpBlock_0/Dense_0", D, F, weight);
      if (name == "attn_pool.mlp.fc2.weight" || name == "attn_pool.mlp.fc2.bias")
        dense(map + "/MlpBlock_0/Dense_1", F, D, weight);
      if (name == "pre_logits.fc.weight" || name == "pre_logits.fc.bias")
        dense(prefix + "pre_logits", D, Shape::pre_logits, weight);
      if (name == "head.weight" || name == "head.bias")
        dense(prefix + "head", Shape::features, Shape::num_classes, weight);
    }
    if (pieces.empty()) fail("load_big_vision: no big_vision name for tensor '", t.full_name(), "' (a bug)");
    plan.push_back(std::move(pieces));
  }
  return plan;
}

// Reads a piece and appends it, rearranged into timm's layout, to out.
inline void read_piece(npz_reader& file, const bv_piece& piece, std::vector<float>& out) {
  const std::int64_t n = bv_numel(piece.shape);
  std::vector<float> v(static_cast<std::size_t>(n));
  if (piece.block >= 0)
    file.read_slice(piece.name, static_cast<std::uint64_t>(piece.block) * static_cast<std::uint64_t>(n), v.size(),
                    v.data());
  else
    file.read(piece.name, v.data(), v.size());
  const std::size_t base = out.size();
  out.resize(base + v.size());
  float* dst = out.data() + base;
  if (piece.split == 0) {
    std::copy(v.begin(), v.end(), dst);
  } else if (piece.split > 0) {
    std::int64_t rows = 1;
    for (int k = 0; k < piece.split; ++k) rows *= piece.shape[static_cast<std::size_t>(k)];
    const std::int64_t cols = n / rows;
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c)
        dst[static_cast<std::size_t>(c * rows + r)] = v[static_cast<std::size_t>(r * cols + c)];
  } else {  // [kh, kw, C, D] -> [D, C, kh, kw]
    const std::int64_t kh = piece.shape[0], kw = piece.shape[1], C = piece.shape[2], D = piece.shape[3];
    for (std::int64_t i = 0; i < kh; ++i)
      for (std::int64_t j = 0; j < kw; ++j)
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t d = 0; d < D; ++d)
            dst[static_cast<std::size_t>(((d * C + c) * kh + i) * kw + j)] =
                v[static_cast<std::size_t>(((i * kw + j) * C + c) * D + d)];
  }
}

// Whether big_vision's ViT has a checkpoint layout for Shape: the conditions import_big_vision asserts (a classic
// block, the token norm before pooling, no QK-norm, q/k/v biases, LayerNorm with a bias). Generic loaders
// (load_pretrained) test it to refuse an .npz at run time for the shapes that cannot have one.
template <class Shape>
inline constexpr bool has_big_vision_layout = Shape::block == block_kind::classic && Shape::token_norm &&
                                              !Shape::qk_norm && Shape::qkv_bias && Shape::norm_bias &&
                                              Shape::norm_centered;

template <class Shape, std::size_t N, class Store>
big_vision_import import_big_vision(const std::string& path, const std::array<tensor_info, N>& table, Store&& store,
                                    const big_vision_options& options, const load_options& load = {}) {
  static_assert(Shape::block == block_kind::classic,
                "load_big_vision: big_vision's ViT has the classic block; a parallel (ViT-22B) block has no "
                "big_vision ViT checkpoint layout");
  static_assert(Shape::token_norm,
                "load_big_vision: big_vision's ViT normalises the tokens before pooling (encoder_norm); it has no "
                "fc_norm after GAP: use opt::pool_gap");
  static_assert(!Shape::qk_norm, "load_big_vision: big_vision's ViT has no QK-norm; drop opt::qk_norm");
  static_assert(Shape::qkv_bias, "load_big_vision: big_vision's attention has q/k/v biases; drop opt::qkv_bias<false>");
  static_assert(Shape::norm_bias && Shape::norm_centered,
                "load_big_vision: big_vision's ViT uses LayerNorm with a bias; use the default opt::layer_norm");

  npz_options npz;
  npz.void2_as_bf16 = options.void2_as_bf16;
  npz_reader file(path, npz);
  big_vision_import result;

  if (options.prefix) {
    result.prefix = *options.prefix;
  } else {
    bool found = false;
    for (const char* candidate : {"", "params/", "opt/target/", "params/img/"})
      if (!found && file.contains(std::string(candidate) + "embedding/kernel")) {
        result.prefix = candidate;
        found = true;
      }
    if (!found) {
      std::string some;
      for (std::size_t k = 0; k < std::min<std::size_t>(file.entries().size(), 8); ++k)
        some += (k ? ", " : "") + npz_quote(file.entries()[k].name);
      fail("load_big_vision: ", path,
           " is not a big_vision ViT checkpoint: no embedding/kernel (with or without a "
           "params/, opt/target/ or params/img/ prefix); it holds ",
           file.entries().size(), " arrays", file.entries().empty() ? "" : ": ", some);
    }
  }
  const std::string& prefix = result.prefix;
  result.scanned = file.contains(prefix + "Transformer/encoderblock/LayerNorm_0/scale");
  result.legacy = file.contains(prefix + "Transformer/posembed_input/pos_embedding") ||
                  file.contains(prefix + "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel") ||
                  file.contains(prefix + "Transformer/encoderblock/MlpBlock_3/Dense_0/kernel");
  auto plan = big_vision_plan<Shape>(table, prefix, result.scanned, result.legacy);
  load_report& report = result.report;
  report.path = path;
  report.format = "big_vision npz";
  constexpr int posemb_prefix = Shape::cls_posemb ? 1 : 0;

  // Check everything first.
  std::vector<std::string> problems;
  std::set<std::string> used, reported, stacked;
  std::vector<char> fresh(plan.size(), 0);  // the new head: set to zero, not read
  for (std::size_t i = 0; i < plan.size(); ++i) {
    if (load.new_head && table[i].part == component::classifier) {
      fresh[i] = 1;
      report.reinitialised.push_back(
          {table[i].full_name(),
           std::vector<std::int64_t>(table[i].dims.begin(), table[i].dims.begin() + table[i].rank), false});
      continue;
    }
    for (bv_piece& piece : plan[i]) {
      used.insert(piece.name);
      if (piece.block >= 0) stacked.insert(piece.name);
      if (!reported.insert(piece.name).second) continue;  // a stacked array serves every block
      std::vector<std::int64_t> want = piece.shape;
      if (piece.block >= 0) want.insert(want.begin(), Shape::depth);
      if (!file.contains(piece.name)) {
        problems.push_back("missing: " + piece.name + " " + npz_shape(want) + " (for " + table[i].full_name() + ")");
        continue;
      }
      const npz_entry& e = file.entry(piece.name);
      if (e.shape != want && table[i].part == component::pos_embed && load.resample_posemb) {
        const int from = posemb_file_grid(e.shape, posemb_prefix, Shape::width);
        if (from > 0) {
          report.posemb_from = from;
          report.posemb_to = posemb_file_grid(want, posemb_prefix, Shape::width);
          piece.shape = e.shape;  // read whole, then resampled
          const std::string why = file.unreadable_reason(e);
          if (!why.empty()) problems.push_back("unreadable: " + piece.name + " " + why);
          continue;
        }
      }
      if (e.shape != want) {
        std::string p = "mis-shaped: " + piece.name + ": the file has " + npz_shape(e.shape) + ", the model needs " +
                        npz_shape(want) + " (for " + table[i].full_name() + ")";
        if (table[i].part == component::pos_embed) {
          const bool one_more = e.shape.size() == 3 && e.shape[1] == want[1] + 1;
          const bool one_less = e.shape.size() == 3 && e.shape[1] + 1 == want[1];
          p += one_less ? "; big_vision's position embedding has no class-token entry: use opt::cls_posemb<false>"
               : one_more
                   ? "; this position embedding has a class-token entry (the original ViT code's layout): "
                     "drop opt::cls_posemb<false>"
               : load.resample_posemb ? "; not a square grid of the model's width: cannot be resampled"
                                      : "; another resolution? load with load_options::resample_posemb, or at the "
                                        "checkpoint's resolution, then set_resolution";
        }
        problems.push_back(p);
        continue;
      }
      const std::string why = file.unreadable_reason(e);
      if (!why.empty()) problems.push_back("unreadable: " + piece.name + " " + why);
    }
  }
  // With a new head, the file's head (and a pre-logits layer the model lacks) is another task's: not read.
  auto old_head = [&](const std::string& name) {
    const std::string rest = name.substr(prefix.size());
    return load.new_head && (rest == "head/kernel" || rest == "head/bias" ||
                             (Shape::pre_logits == 0 && (rest == "pre_logits/kernel" || rest == "pre_logits/bias")));
  };
  for (const npz_entry& e : file.entries()) {
    if (e.name.compare(0, prefix.size(), prefix) != 0) {
      result.ignored.push_back(e.name);
      report.unused.push_back({e.name, e.shape, false});
      continue;
    }
    if (used.count(e.name)) continue;
    if (old_head(e.name))
      report.unused.push_back({e.name, e.shape, true});
    else
      problems.push_back("unexpected: " + e.name + " " + npz_shape(e.shape) + " (the model has no tensor for it)");
  }
  if (!problems.empty()) {
    std::ostringstream m;
    m << "load_big_vision: " << path << " does not fit the model (" << problems.size()
      << (problems.size() == 1 ? " problem; " : " problems; ") << (result.scanned ? "scan-stacked" : "per-block")
      << " blocks, " << (result.legacy ? "original ViT names, " : "") << "prefix '" << prefix << "'):";
    for (const auto& p : problems) m << "\n  " << p;
    fail(m.str());
  }

  // A stacked array is read in slices, which are not checked against the member's CRC: it is checked once, whole.
  for (const auto& name : stacked) file.verify(name);

  std::vector<float> values;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    if (fresh[i]) {
      values.assign(static_cast<std::size_t>(table[i].numel()), 0.0f);
      store(static_cast<int>(i), values);
      continue;
    }
    values.clear();
    values.reserve(static_cast<std::size_t>(table[i].numel()));
    for (const bv_piece& piece : plan[i]) read_piece(file, piece, values);
    const bool resample = table[i].part == component::pos_embed && report.posemb_resampled();
    if (resample) {
      ::vitscale::detail::require_finite(values.data(), std::int64_t(values.size()), "load_big_vision: '" + path + "'",
                                         "parameter", table[i].full_name(),
                                         " (before resampling); the model, partly loaded by then, must not be used");
      values = resample_file_posemb(values, posemb_prefix, report.posemb_from, report.posemb_to, Shape::width, load);
    }
    if (values.size() != static_cast<std::size_t>(table[i].numel()))
      fail("load_big_vision: tensor '", table[i].full_name(), "' got ", values.size(), " values for ", table[i].numel(),
           " (a bug)");
    ::vitscale::detail::require_finite(values.data(), std::int64_t(values.size()), "load_big_vision: '" + path + "'",
                                       "parameter", table[i].full_name(),
                                       "; the model, partly loaded by then, must not be used");
    store(static_cast<int>(i), values);
    ++result.tensors;
  }
  report.loaded = result.tensors;
  return result;
}

}  // namespace detail

// Loads a big_vision ViT checkpoint (.npz) into `model`: every tensor of its table (fitted as `load` says: a
// new zero head, a resampled position embedding), or one vitscale::error listing every missing, unexpected,
// mis-shaped or unreadable array (then the model is left unchanged; a member found corrupt while its data is
// read — CRC, deflate — or a NaN or infinity in it stops the load part-way, with an error).
template <class Shape, class Policy, class Space>
big_vision_import load_big_vision(const std::string& path, vit<Shape, Policy, Space>& model,
                                  const big_vision_options& options = {}, const load_options& load = {}) {
  return detail::import_big_vision<Shape>(
      path, model.parameters().table(),
      [&](int i, const std::vector<float>& v) { model.set_parameter(i, v.data(), v.size()); }, options, load);
}

// The same into a parameter arena (float or bf16 elements, any memory space; bf16 rounds to nearest even).
template <class Shape, class T, class MemorySpace>
big_vision_import load_big_vision(const std::string& path, parameter_arena<Shape, T, MemorySpace>& arena,
                                  const big_vision_options& options = {}, const load_options& load = {}) {
  return detail::import_big_vision<Shape>(
      path, arena.table(),
      [&](int i, const std::vector<float>& v) {
        const auto dst = arena.vector(i);
        auto host = Kokkos::create_mirror_view(dst);
        for (std::size_t k = 0; k < v.size(); ++k) host(k) = static_cast<T>(v[k]);
        Kokkos::deep_copy(dst, host);
      },
      options, load);
}

}  // namespace vitscale::io
