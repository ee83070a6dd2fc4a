#pragma once
// A model's parameters to and from a safetensors file under timm's names — the state dict timm and PyTorch
// read and write (`timm.create_model(..., pretrained_cfg_overlay=dict(file=...))`, `load_file`). Only the
// parameter table travels; training checkpoints (optimizer state, step, RNG) are a later layer.

#include <vitscale/config/tensors.hpp>
#include <vitscale/core/bf16.hpp>
#include <vitscale/core/finite.hpp>
#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/safetensors.hpp>

#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace vitscale::io {

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

// Reads every parameter of `model`'s table from `path` by its timm name (any of F32, BF16, F16, F64).
// Every tensor is checked first — present, same shape — and all problems are reported in one
// vitscale::error before the model is touched. Values are checked as they are read: a NaN or an infinity (also
// one that a finite F64 value becomes as a float) stops the load with a non_finite_error naming the tensor. Tensors in the file that the model does not have are
// ignored (a timm file may hold buffers or a head the shape lacks: they are listed by unused_tensors()).
template <class Model>
void load_parameters(Model& model, const std::string& path) {
  safetensors_reader file(path);
  const auto& table = model.parameters().table();
  std::ostringstream problems;
  int count = 0;
  for (const tensor_info& t : table) {
    const std::string name = t.full_name();
    if (!file.contains(name)) {
      problems << "\n  missing: " << name;
      ++count;
      continue;
    }
    const auto& e = file.entry(name);
    const std::vector<std::int64_t> want(t.dims.begin(), t.dims.begin() + t.rank);
    if (e.shape != want) {
      problems << "\n  " << name << ": the file has " << detail::format_shape(e.shape) << ", the model "
               << detail::format_shape(want);
      if (t.part == component::pos_embed) problems << " (a different resolution: load at the file's, then set_resolution)";
      ++count;
    }
  }
  if (count > 0)
    ::vitscale::detail::fail("load_parameters: ", path, " does not fit the model (", count,
                             count == 1 ? " problem):" : " problems):", problems.str());
  std::vector<float> values;
  for (int i = 0; i < int(table.size()); ++i) {
    values.resize(static_cast<std::size_t>(table[i].numel()));
    file.read(table[i].full_name(), values.data(), values.size());
    ::vitscale::detail::require_finite(values.data(), std::int64_t(values.size()), "load_parameters: '" + path + "'",
                                       "parameter", table[i].full_name(),
                                       " (as the model's type); the model, partly loaded by then, must not be used");
    model.set_parameter(i, values.data(), values.size());
  }
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
