#pragma once
// A model's parameters to and from a safetensors file under timm's names — the state dict timm and PyTorch
// read and write (`timm.create_model(..., pretrained_cfg_overlay=dict(file=...))`, `load_file`). Only the
// parameter table travels; training checkpoints (optimizer state, step, RNG) are a later layer.
//
// Loading can also fit a pretrained file to a fine-tuning model (load_options): a new classifier head,
// re-initialised to zero instead of read (big_vision's transfer: `dont_load=['head/kernel', 'head/bias']` with
// `head_zeroinit`), and a learned position embedding of another grid resampled to the model's (as
// vit::set_resolution does, timm's resample_abs_pos_embed). What a load did comes back as a load_report.

#include <vitscale/config/tensors.hpp>
#include <vitscale/core/bf16.hpp>
#include <vitscale/core/finite.hpp>
#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/safetensors.hpp>
#include <vitscale/model/posemb.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace vitscale::io {

// How a parameter file is fitted to the model (load_parameters, load_big_vision, load_pretrained). The
// defaults are an exact load: every tensor present and of the model's shape.
struct load_options {
  // Fine-tuning with another head: the classifier (head.weight, head.bias) is not read but set to zero —
  // kernel and bias, as big_vision's ViT with head_zeroinit (flax's Dense initialises biases to zero) under
  // its transfer config's dont_load. The head is reset whatever its shape in the file, also when it would fit
  // (the option means "a new task"); the file's head, and a pre-logits layer the model does not have, are then
  // reported unused. Every other tensor must fit exactly: a body mismatch fails as without the option.
  bool new_head = false;
  // A learned position embedding at another resolution (a square grid, the same width and prefix entries) is
  // resampled to the model's grid with resample_posemb (model/posemb.hpp), the function vit::set_resolution
  // uses, with its defaults: loading a 224-px file into a model at 384 px is the same as loading it at 224 and
  // calling set_resolution(384). Off: another grid is a mismatch.
  bool resample_posemb = false;
  interpolation posemb_interpolation = interpolation::bicubic;
  bool posemb_antialias = true;
};

// One tensor named in a report: its name (the model's or the file's) and its shape.
struct tensor_note {
  std::string name;
  std::vector<std::int64_t> shape;
  bool head = false;  // an unused classifier or pre-logits tensor of the file (named one by one in to_string)
};

// What a load did.
struct load_report {
  std::string path;
  std::string format;                      // "safetensors" or "big_vision npz"
  int loaded = 0;                          // tensors of the model's table read from the file
  std::vector<tensor_note> reinitialised;  // tensors of the model set to zero instead (the new head)
  std::vector<tensor_note> unused;         // tensors (arrays) of the file not read, in the file's order
  int posemb_from = 0, posemb_to = 0;      // the grid side the position embedding was resampled from, to; 0: not

  bool posemb_resampled() const { return posemb_from != 0; }

  // One line, e.g. "loaded 150 tensors from ckpt.safetensors; head re-initialised (head.weight [5, 192],
  // head.bias [5]: zero); unused: head.weight [10, 192], head.bias [10]; pos_embed resampled 14x14 -> 24x24".
  // The file's unused head and pre-logits tensors are named one by one, then the others, except that more than
  // three sharing a first name component (a training checkpoint's optimizer.*, a big_vision file's opt/*) are
  // counted as "optimizer.* (300 tensors)".
  std::string to_string() const {
    std::ostringstream s;
    s << "loaded " << loaded << (loaded == 1 ? " tensor" : " tensors") << " from " << path;
    auto shape = [](const std::vector<std::int64_t>& v) {
      std::string t = "[";
      for (std::size_t k = 0; k < v.size(); ++k) t += (k ? ", " : "") + std::to_string(v[k]);
      return t + "]";
    };
    if (!reinitialised.empty()) {
      s << "; head re-initialised (";
      for (std::size_t k = 0; k < reinitialised.size(); ++k)
        s << (k ? ", " : "") << reinitialised[k].name << " " << shape(reinitialised[k].shape);
      s << ": zero)";
    }
    if (!unused.empty()) {
      // Groups by the first component of the name (up to '.' or '/'), in order of first appearance.
      std::vector<std::pair<std::string, std::vector<std::size_t>>> groups;
      s << "; unused: ";
      bool first = true;
      for (const tensor_note& t : unused)
        if (t.head) {
          s << (first ? "" : ", ") << t.name << " " << shape(t.shape);
          first = false;
        }
      for (std::size_t k = 0; k < unused.size(); ++k) {
        if (unused[k].head) continue;
        const std::string& n = unused[k].name;
        const std::size_t cut = n.find_first_of("./");
        const std::string key = cut == std::string::npos ? n : n.substr(0, cut + 1);
        std::size_t g = 0;
        while (g < groups.size() && groups[g].first != key) ++g;
        if (g == groups.size()) groups.emplace_back(key, std::vector<std::size_t>{});
        groups[g].second.push_back(k);
      }
      for (const auto& [key, members] : groups) {
        if (members.size() > 3) {
          s << (first ? "" : ", ") << key << "* (" << members.size() << " tensors)";
          first = false;
          continue;
        }
        for (std::size_t k : members) {
          s << (first ? "" : ", ") << unused[k].name << " " << shape(unused[k].shape);
          first = false;
        }
      }
    }
    if (posemb_resampled())
      s << "; pos_embed resampled " << posemb_from << "x" << posemb_from << " -> " << posemb_to << "x" << posemb_to;
    return s.str();
  }
};

namespace detail {

// The side of the square grid of a position embedding [1, prefix + g·g, width] from a file, or 0 when the
// shape is not one (another rank, width or a non-square count).
inline int posemb_file_grid(const std::vector<std::int64_t>& shape, int prefix, std::int64_t width) {
  if (shape.size() != 3 || shape[0] != 1 || shape[2] != width || shape[1] <= prefix) return 0;
  const std::int64_t n = shape[1] - prefix;
  auto g = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  while (g * g > n) --g;
  while ((g + 1) * (g + 1) <= n) ++g;
  return g * g == n ? static_cast<int>(g) : 0;
}

// A file's position embedding [1, prefix + from², D] resampled to the model's [1, prefix + to², D] as
// vit::set_resolution does.
inline std::vector<float> resample_file_posemb(const std::vector<float>& in, int prefix, int from, int to,
                                               std::int64_t width, const load_options& options) {
  std::vector<float> out(static_cast<std::size_t>((prefix + std::int64_t(to) * to) * width));
  resample_posemb(in.data(), prefix, from, from, static_cast<int>(width), out.data(), to, to,
                  options.posemb_interpolation, options.posemb_antialias);
  return out;
}

// "blocks.<k>." with k >= depth: a tensor of a block the model does not have (a deeper file), or -1.
inline int block_beyond(const std::string& name, int depth) {
  if (name.rfind("blocks.", 0) != 0) return -1;
  std::size_t k = 7;
  int b = 0;
  bool digits = false;
  while (k < name.size() && name[k] >= '0' && name[k] <= '9' && b < 100000) {
    b = b * 10 + (name[k] - '0');
    ++k;
    digits = true;
  }
  return digits && k < name.size() && name[k] == '.' && b >= depth ? b : -1;
}

}  // namespace detail

// Writes every parameter of `model` under its timm name, F32 (or BF16 for a bf16 parameter policy), with
// `metadata` in the header (a non-finite value is a non_finite_error, and nothing is written); atomically (safetensors_writer: temporary file, fsync, rename). The header also
// gets the vitscale.* keys of shape_metadata (io/dispatch.hpp: heads, MLP activation, norm centering,
// resolution, a readable shape), which infer_shape needs to tell shapes apart that the tensors do not; they
// replace keys of the same names in `metadata`.
template <class Model>
void save_parameters(const Model& model, const std::string& path,
                     const std::map<std::string, std::string>& metadata = {}) {
  using param_type = typename Model::param_type;
  const auto& table = model.parameters().table();
  std::vector<std::vector<float>> values;
  std::vector<std::vector<bf16>> rounded;
  values.reserve(table.size());
  rounded.reserve(table.size());
  safetensors_writer writer;
  for (int i = 0; i < int(table.size()); ++i) {
    const tensor_info& t = table[i];
    std::vector<std::int64_t> shape(t.dims.begin(), t.dims.begin() + t.rank);
    values.push_back(model.parameter(i));
    ::vitscale::detail::require_finite(values.back().data(), std::int64_t(values.back().size()),
                                       "save_parameters: '" + path + "'", "parameter", t.full_name(),
                                       "; nothing was written (a previous file there is as it was)");
    if constexpr (std::is_same<param_type, bf16>::value) {
      rounded.emplace_back(values.back().begin(), values.back().end());  // exact: the values are bf16
      writer.add(t.full_name(), shape, rounded.back().data());
    } else {
      writer.add(t.full_name(), shape, values.back().data());
    }
  }
  std::map<std::string, std::string> header = metadata;
  for (auto& [key, value] : shape_metadata<typename Model::shape>(model.resolution())) header[key] = value;
  for (const auto& [key, value] : header) writer.set_metadata(key, value);
  writer.write(path);
}

// Reads every parameter of `model`'s table from `path` by its timm name (any of F32, BF16, F16, F64), fitted
// as `options` say (new head, resampled position embedding; by default exactly), and says what it did.
// Every tensor is checked first — present, same shape — and all problems are reported in one
// vitscale::error before the model is touched. Values are checked as they are read: a NaN or an infinity (also
// one that a finite F64 value becomes as a float) stops the load with a non_finite_error naming the tensor.
// Tensors in the file that the model does not have are not read and listed in the report's `unused` (a timm
// file may hold buffers or a head the shape lacks, a training checkpoint its optimizer state), except the
// blocks of a deeper model (blocks.<k>.* for k >= the model's depth), which are a mismatch.
template <class Model>
load_report load_parameters(Model& model, const std::string& path, const load_options& options = {}) {
  using Shape = typename Model::shape;
  safetensors_reader file(path);
  const auto& table = model.parameters().table();
  load_report report;
  report.path = path;
  report.format = "safetensors";
  constexpr int prefix = Shape::cls_posemb ? 1 : 0;
  std::vector<char> fresh(table.size(), 0);
  std::ostringstream problems;
  int count = 0;
  for (std::size_t i = 0; i < table.size(); ++i) {
    const tensor_info& t = table[i];
    const std::string name = t.full_name();
    const std::vector<std::int64_t> want(t.dims.begin(), t.dims.begin() + t.rank);
    if (options.new_head && t.part == component::classifier) {
      fresh[i] = 1;
      report.reinitialised.push_back({name, want, false});
      continue;
    }
    if (!file.contains(name)) {
      problems << "\n  missing: " << name;
      ++count;
      continue;
    }
    const auto& e = file.entry(name);
    if (e.shape != want) {
      if (t.part == component::pos_embed && options.resample_posemb) {
        const int from = detail::posemb_file_grid(e.shape, prefix, Shape::width);
        if (from > 0) {
          report.posemb_from = from;
          report.posemb_to = Shape::grid(model.resolution());
          continue;
        }
      }
      problems << "\n  " << name << ": the file has " << detail::format_shape(e.shape) << ", the model "
               << detail::format_shape(want);
      const bool same_width = e.shape.size() == 3 && e.shape[2] == Shape::width;
      if (t.part == component::pos_embed && same_width)
        problems << (options.resample_posemb
                         ? " (not a square grid with the model's prefix entries: cannot be resampled)"
                         : " (a different resolution: load with load_options::resample_posemb, or at the file's "
                           "resolution, then set_resolution)");
      ++count;
    }
  }
  int deeper = 0, deepest = -1;
  for (const auto& e : file.tensors()) {
    const int b = detail::block_beyond(e.name, Shape::depth);
    if (b >= 0) {
      ++deeper;
      deepest = std::max(deepest, b);
    }
  }
  if (deeper > 0) {
    problems << "\n  unexpected: " << deeper << " tensors of blocks " << Shape::depth << " to " << deepest
             << " (the file's model is deeper than the model's " << Shape::depth << " blocks)";
    ++count;
  }
  if (count > 0)
    ::vitscale::detail::fail("load_parameters: ", path, " does not fit the model (", count,
                             count == 1 ? " problem):" : " problems):", problems.str());
  std::vector<float> values;
  for (int i = 0; i < int(table.size()); ++i) {
    const std::string name = table[i].full_name();
    if (fresh[static_cast<std::size_t>(i)]) {
      values.assign(static_cast<std::size_t>(table[i].numel()), 0.0f);
      model.set_parameter(i, values.data(), values.size());
      continue;
    }
    values.resize(static_cast<std::size_t>(file.entry(name).numel()));
    file.read(name, values.data(), values.size());
    ::vitscale::detail::require_finite(values.data(), std::int64_t(values.size()), "load_parameters: '" + path + "'",
                                       "parameter", name,
                                       " (as the model's type); the model, partly loaded by then, must not be used");
    if (table[i].part == component::pos_embed && report.posemb_resampled())
      values = detail::resample_file_posemb(values, prefix, report.posemb_from, report.posemb_to, Shape::width,
                                            options);
    model.set_parameter(i, values.data(), values.size());
    ++report.loaded;
  }
  std::set<std::string> read;
  for (std::size_t i = 0; i < table.size(); ++i)
    if (!fresh[i]) read.insert(table[i].full_name());
  for (const auto& e : file.tensors())
    if (!read.count(e.name))
      report.unused.push_back({e.name, e.shape,
                               e.name == "head.weight" || e.name == "head.bias" || e.name.rfind("pre_logits.", 0) == 0});
  return report;
}

// The tensors of a file that a model of this table would not read.
template <class Model>
std::vector<std::string> unused_tensors(const Model& model, const std::string& path) {
  safetensors_reader file(path);
  const auto& table = model.parameters().table();
  std::vector<std::string> unused;
  for (const auto& e : file.tensors()) {
    bool used = false;
    for (const tensor_info& t : table) used = used || t.full_name() == e.name;
    if (!used) unused.push_back(e.name);
  }
  return unused;
}

}  // namespace vitscale::io
