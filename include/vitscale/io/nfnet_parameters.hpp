#pragma once
// An NFNet's parameters to and from a safetensors file under timm's names — the state dict of timm's NormFreeNet
// (`dm_nfnet_f0`'s pretrained file loads into presets::nfnet_f0, a file written here loads into timm with
// `load_state_dict`): conv weights OIHW [out, in/groups, k, k], gains [out, 1, 1, 1], skip gains scalars.
// The ViT's counterpart is io/parameters.hpp; the report of a load is the same load_report.

#include <vitscale/config/nfnet_tensors.hpp>
#include <vitscale/core/bf16.hpp>
#include <vitscale/core/finite.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/io/safetensors.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace vitscale::io {

// Writes every parameter of the NFNet `model` under its timm name, F32 (BF16 for a bf16 parameter policy),
// with `metadata` in the header; atomically (safetensors_writer). A non-finite value is a non_finite_error,
// and nothing is written.
template <class Model>
void save_nfnet_parameters(const Model& model, const std::string& path,
                           const std::map<std::string, std::string>& metadata = {}) {
  using param_type = typename Model::param_type;
  const auto& p = model.parameters();
  std::vector<std::vector<float>> values;
  std::vector<std::vector<bf16>> rounded;
  values.reserve(std::size_t(p.count));
  rounded.reserve(std::size_t(p.count));
  safetensors_writer writer;
  for (int i = 0; i < p.count; ++i) {
    const nfnet_tensor_info& t = p.info(i);
    const std::vector<std::int64_t> shape(t.dims.begin(), t.dims.begin() + t.rank);
    values.push_back(model.parameter(i));
    ::vitscale::detail::require_finite(values.back().data(), std::int64_t(values.back().size()),
                                       "save_nfnet_parameters: '" + path + "'", "parameter", t.full_name(),
                                       "; nothing was written (a previous file there is as it was)");
    if constexpr (std::is_same<param_type, bf16>::value) {
      rounded.emplace_back(values.back().begin(), values.back().end());  // exact: the values are bf16
      writer.add(t.full_name(), shape, rounded.back().data());
    } else {
      writer.add(t.full_name(), shape, values.back().data());
    }
  }
  for (const auto& [key, value] : metadata) writer.set_metadata(key, value);
  writer.write(path);
}

// Reads every parameter of the NFNet `model` from `path` by its timm name (F32, BF16, F16 or F64), and says what
// it did. Every tensor is checked first — present, same shape — and all problems are reported in one
// vitscale::error before the model is touched; values are checked for NaN and infinities as they are read.
// options.new_head: the classifier head.fc is set to zero instead of read (a new task), whatever its shape in the
// file. Tensors of the file that the model does not have are listed in the report's `unused`.
template <class Model>
load_report load_nfnet_parameters(Model& model, const std::string& path, const load_options& options = {}) {
  safetensors_reader file(path);
  const auto& p = model.parameters();
  load_report report;
  report.path = path;
  report.format = "safetensors";
  std::vector<char> fresh(std::size_t(p.count), 0);
  std::ostringstream problems;
  int count = 0;
  for (int i = 0; i < p.count; ++i) {
    const nfnet_tensor_info& t = p.info(i);
    const std::string name = t.full_name();
    const std::vector<std::int64_t> want(t.dims.begin(), t.dims.begin() + t.rank);
    if (options.new_head && t.part == nfnet_part::head) {
      fresh[std::size_t(i)] = 1;
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
      problems << "\n  " << name << ": the file has " << detail::format_shape(e.shape) << ", the model "
               << detail::format_shape(want);
      ++count;
    }
  }
  if (count > 0)
    ::vitscale::detail::fail("load_nfnet_parameters: ", path, " does not fit the model (", count,
                             count == 1 ? " problem):" : " problems):", problems.str());
  std::vector<float> values;
  std::set<std::string> read;
  for (int i = 0; i < p.count; ++i) {
    const std::string name = p.info(i).full_name();
    if (fresh[std::size_t(i)]) {
      values.assign(static_cast<std::size_t>(p.info(i).numel()), 0.0f);
      model.set_parameter(i, values.data(), values.size());
      continue;
    }
    values.resize(static_cast<std::size_t>(file.entry(name).numel()));
    file.read(name, values.data(), values.size());
    ::vitscale::detail::require_finite(values.data(), std::int64_t(values.size()),
                                       "load_nfnet_parameters: '" + path + "'", "parameter", name,
                                       " (as the model's type); the model, partly loaded by then, must not be used");
    model.set_parameter(i, values.data(), values.size());
    read.insert(name);
    ++report.loaded;
  }
  for (const auto& e : file.tensors())
    if (!read.count(e.name)) report.unused.push_back({e.name, e.shape, e.name.rfind("head.fc.", 0) == 0});
  return report;
}

}  // namespace vitscale::io
