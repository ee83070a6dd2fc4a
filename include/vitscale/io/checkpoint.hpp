#pragma once
// Training checkpoints: everything a run needs to continue bit-identically, in one safetensors file.
//
//   io::save_checkpoint(path, model, optimizer, state);         // atomically: temporary file, fsync, rename
//   io::training_state state = io::load_checkpoint(path, model, optimizer);
//
// Tensors, each in the type it is stored in (bf16 stays bf16, so the round trip is exact):
//   <timm name>                    the parameters, as io/parameters.hpp names them (a checkpoint is also a
//                                  parameter file: load_parameters and timm read it, ignoring the rest)
//   optimizer.<state>.<timm name>  the optimizer's state mirroring that parameter: m, v (AdamW, Adam with a
//                                  bf16 first moment, SGD's momentum is m), Adafactor's v_row / v_col
//                                  (factored statistics, [matrix_rows] / [matrix_cols]) or v (unfactored)
//   ema.<timm name>                the optimizer's EMA of that parameter (F32, its shape), when it keeps one
//                                  (options.ema; train/optimizer.hpp)
// Metadata (__metadata__, all strings): format and format_version; model.* (the shape's structure and the
// resolution); precision.* (param, grad, act, gemm, state types); optimizer (its kind), optimizer.steps and
// optimizer.* (hyper-parameters, for the record: they are not checked on load, so a run may resume with,
// say, another weight decay or EMA decay; optimizer.ema.* only with an EMA, whose presence is checked: a
// checkpoint with an EMA loads only into an optimizer that keeps one, and one without only into one without; nor are precision.act and .gemm, while the parameters' and moments' types are
// checked through their tensors); regularization.* (dropout and drop-path rates and their seed); step,
// data.epoch, data.index, data.seed, augment.seed (training_state); user.<key> (training_state::metadata).
//
// Why this is enough to resume bit-identically: the model's dropout and drop-path masks are counter-based,
// functions of (regularization seed, step, site) (model/vit.hpp), augmentation is keyed by (seed, step)
// (data/augment.hpp), and an epoch's data order is a pure function of (seed, epoch) (data/batches.hpp), so
// no generator state exists beyond these numbers; the optimizer's step count feeds Adam's bias correction and
// Adafactor's β2. Loading restores the model's parameters and regularisation settings (rates and seed; call
// set_regularization afterwards to change them) and the optimizer's state and step count, and returns the rest.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/finite.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/data/batches.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/io/safetensors.hpp>
#include <vitscale/model/vit.hpp>
#include <vitscale/config/names.hpp>
#include <vitscale/train/optimizers.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace vitscale::io {

inline constexpr const char* checkpoint_format = "vitscale training checkpoint";
inline constexpr int checkpoint_format_version = 1;

// What a training loop keeps besides the model and the optimizer.
struct training_state {
  std::int64_t step = 0;          // training steps taken; the next forward and augmentation use this step
  data::batch_position data{};    // where the next batch starts: the epoch and the index in its order
  std::uint64_t data_seed = 0;    // the batcher's seed: epoch e's order is epoch_permutation(n, data_seed, e)
  std::uint64_t augment_seed = 0; // the augmentation seed (flip_and_shift(images, augment_seed, step, ...))
  std::map<std::string, std::string> metadata;  // the caller's own, stored as user.<key>
};

namespace detail {

using vitscale::detail::fail;

template <class T>
constexpr dtype dtype_of() {
  static_assert(std::is_same<T, float>::value || std::is_same<T, bf16>::value,
                "checkpoint: tensors are stored as float or bf16");
  return std::is_same<T, float>::value ? dtype::f32 : dtype::bf16;
}

// What a checkpoint tensor is, for messages: "optimizer state", "parameter EMA" or "parameter".
inline std::string checkpoint_quantity(const std::string& name) {
  return name.compare(0, 10, "optimizer.") == 0 ? "optimizer state"
         : name.compare(0, 4, "ema.") == 0      ? "parameter EMA"
                                                : "parameter";
}

inline std::string exact_text(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);  // 17 significant digits: strtod gives x back exactly
  return buf;
}

// The model's structure: what a checkpoint of it must match.
template <class Model>
std::map<std::string, std::string> model_description(const Model& model) {
  using S = typename Model::shape;
  return {{"model.depth", std::to_string(S::depth)},
          {"model.width", std::to_string(S::width)},
          {"model.heads", std::to_string(S::heads)},
          {"model.mlp_dim", std::to_string(S::mlp_dim)},
          {"model.patch", std::to_string(S::patch)},
          {"model.block", to_string(S::block)},
          {"model.pool", checkpoint_name(S::pool)},
          {"model.posemb", to_string(S::posemb)},
          {"model.cls_posemb", S::cls_posemb ? "1" : "0"},
          {"model.qk_norm", S::qk_norm ? "1" : "0"},
          {"model.qkv_bias", S::qkv_bias ? "1" : "0"},
          {"model.norm_centered", S::norm_centered ? "1" : "0"},
          {"model.norm_bias", S::norm_bias ? "1" : "0"},
          {"model.mlp_activation", to_string(S::mlp_activation)},
          {"model.classes", std::to_string(S::num_classes)},
          {"model.channels", std::to_string(S::in_channels)},
          {"model.pre_logits", std::to_string(S::pre_logits)},
          {"model.resolution", std::to_string(model.resolution())}};
}

template <class Policy>
std::map<std::string, std::string> precision_description() {
  const auto name = [](auto* t) { return dtype_name(dtype_of<std::remove_pointer_t<decltype(t)>>()); };
  return {{"precision.param", name(static_cast<typename Policy::param_type*>(nullptr))},
          {"precision.grad", name(static_cast<typename Policy::grad_type*>(nullptr))},
          {"precision.act", name(static_cast<typename Policy::act_type*>(nullptr))},
          {"precision.gemm", name(static_cast<typename Policy::gemm_type*>(nullptr))},
          {"precision.state", name(static_cast<typename Policy::state_type*>(nullptr))}};
}

// The optimizer's hyper-parameters, for the record.
template <class Optimizer>
std::map<std::string, std::string> optimizer_description(const Optimizer& opt) {
  const auto& o = opt.hyperparameters();
  std::map<std::string, std::string> m{{"optimizer", opt.name()},
                                       {"optimizer.steps", std::to_string(opt.steps())},
                                       {"optimizer.weight_decay.head", exact_text(o.weight_decay.head)},
                                       {"optimizer.weight_decay.body", exact_text(o.weight_decay.body)},
                                       {"optimizer.clip.global_norm", exact_text(o.clip.global_norm)},
                                       {"optimizer.clip.agc", exact_text(o.clip.agc)},
                                       {"optimizer.non_finite.skip_in_a_row", std::to_string(o.non_finite.skip_in_a_row)},
                                       {"optimizer.skipped", std::to_string(opt.skipped_steps())}};
  if (opt.has_ema()) {
    m["optimizer.ema.decay"] = exact_text(o.ema.decay);
    m["optimizer.ema.use_warmup"] = o.ema.use_warmup ? "1" : "0";
    m["optimizer.ema.warmup_gamma"] = exact_text(o.ema.warmup_gamma);
    m["optimizer.ema.warmup_power"] = exact_text(o.ema.warmup_power);
    m["optimizer.ema.min_decay"] = exact_text(o.ema.min_decay);
    m["optimizer.ema.update_after_step"] = std::to_string(o.ema.update_after_step);
  }
  // The rule's own hyperparameters, by the names its options give them.
  o.visit([&m](const char* key, const auto& value) {
    using T = std::decay_t<decltype(value)>;
    if constexpr (std::is_same<T, bool>::value)
      m[std::string("optimizer.") + key] = value ? "1" : "0";
    else if constexpr (std::is_integral<T>::value)
      m[std::string("optimizer.") + key] = std::to_string(value);
    else
      m[std::string("optimizer.") + key] = exact_text(value);
  });
  return m;
}

// f(name, view, shape) for every tensor of a checkpoint of (model, opt): the parameters, the state, the EMA.
template <class Model, class Optimizer, class F>
void visit_checkpoint_tensors(const Model& model, const Optimizer& opt, F&& f) {
  const auto& params = model.parameters();
  const auto& table = params.table();
  for (int i = 0; i < int(table.size()); ++i) {
    const tensor_info& t = table[std::size_t(i)];
    f(t.full_name(), params.vector(i), std::vector<std::int64_t>(t.dims.begin(), t.dims.begin() + t.rank));
  }
  opt.visit_state([&](const std::string& name, const auto& view, const std::vector<std::int64_t>& shape) {
    f("optimizer." + name, view, shape);
  });
  opt.visit_ema([&](const std::string& name, const auto& view, const std::vector<std::int64_t>& shape) {
    f("ema." + name, view, shape);
  });
}

// A host View over `bytes` with the element type and layout of `view`.
template <class View>
auto host_alias(const View& view, void* bytes) {
  using T = typename View::non_const_value_type;
  return Kokkos::View<T*, typename View::array_layout, Kokkos::HostSpace, Kokkos::MemoryUnmanaged>(
      static_cast<T*>(bytes), view.extent(0));
}

class metadata_reader {
 public:
  metadata_reader(const std::map<std::string, std::string>& m, const std::string& path) : m_(m), path_(path) {}
  const std::string& text(const std::string& key) const {
    const auto it = m_.find(key);
    if (it == m_.end()) fail("load_checkpoint: '", path_, "': its metadata has no '", key, "'");
    return it->second;
  }
  std::uint64_t unsigned_integer(const std::string& key) const {
    const std::string& s = text(key);
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || s[0] == '-' || *end != '\0' || errno == ERANGE)
      fail("load_checkpoint: '", path_, "': metadata '", key, "' is \"", s, "\", not a non-negative integer");
    return v;
  }
  double real(const std::string& key) const {
    const std::string& s = text(key);
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0') fail("load_checkpoint: '", path_, "': metadata '", key, "' is \"", s, "\", not a number");
    return v;
  }

 private:
  const std::map<std::string, std::string>& m_;
  const std::string& path_;
};

}  // namespace detail

// Writes the model's parameters, the optimizer's state and `state` to `path` (see the top of this file),
// atomically: a crash, an error or a kill part-way leaves any previous file at `path` as it was, and the file it
// replaces is kept as `path`.prev (io/files.hpp). A non-finite parameter or state value is an error
// (non_finite_error, naming the tensor) and nothing is written.
template <class Model, class Optimizer>
void save_checkpoint(const std::string& path, const Model& model, const Optimizer& opt, const training_state& state) {
  if (state.step < 0 || state.data.index < 0)
    vitscale::detail::fail("save_checkpoint: '", path, "': step (", state.step, ") and data index (", state.data.index,
                           ") must be non-negative");
  safetensors_writer writer;
  std::deque<std::vector<unsigned char>> buffers;  // host copies; a deque never moves what it holds
  model.space().fence();
  detail::visit_checkpoint_tensors(model, opt, [&](const std::string& name, const auto& view,
                                                   const std::vector<std::int64_t>& shape) {
    using view_type = std::decay_t<decltype(view)>;
    using T = typename view_type::non_const_value_type;
    std::vector<unsigned char>& bytes = buffers.emplace_back(view.extent(0) * sizeof(T));
    Kokkos::deep_copy(detail::host_alias(view, bytes.data()), view);
    vitscale::detail::require_finite(reinterpret_cast<const T*>(bytes.data()), std::int64_t(view.extent(0)),
                                     "save_checkpoint: '" + path + "'", detail::checkpoint_quantity(name), name,
                                     "; nothing was written (a previous file there is as it was)");
    writer.add(name, detail::dtype_of<T>(), shape, bytes.data(), bytes.size());
  });
  std::map<std::string, std::string> meta{{"format", checkpoint_format},
                                          {"format_version", std::to_string(checkpoint_format_version)}};
  meta.merge(detail::model_description(model));
  meta.merge(detail::precision_description<typename Model::policy>());
  meta.merge(detail::optimizer_description(opt));
  const regularization& reg = model.regularization_settings();
  meta["regularization.dropout"] = detail::exact_text(reg.dropout);
  meta["regularization.drop_path"] = detail::exact_text(reg.drop_path);
  meta["regularization.seed"] = std::to_string(reg.seed);
  meta["step"] = std::to_string(state.step);
  meta["data.epoch"] = std::to_string(state.data.epoch);
  meta["data.index"] = std::to_string(state.data.index);
  meta["data.seed"] = std::to_string(state.data_seed);
  meta["augment.seed"] = std::to_string(state.augment_seed);
  for (const auto& [key, value] : state.metadata) meta["user." + key] = value;
  for (const auto& [key, value] : meta) writer.set_metadata(key, value);
  writer.write(path, keep::previous);
}

// Restores the model's parameters and regularisation settings and the optimizer's state and step count from
// a checkpoint save_checkpoint wrote, and returns the training state. Everything is checked before anything
// is changed: the format, the optimizer kind, the model's structure, and every tensor present with the exact
// shape and type the model and optimizer hold, with no tensor left over; all problems are listed in one
// vitscale::error that names the file. Values are checked as they are read, tensor by tensor (reading a large
// file twice would double the cost of every resume): a NaN or an infinity, which save_checkpoint never writes,
// stops the load with a non_finite_error naming the tensor, and the model and optimizer, partly restored by
// then, must not be used.
template <class Model, class Optimizer>
training_state load_checkpoint(const std::string& path, Model& model, Optimizer& opt) {
  std::optional<safetensors_reader> opened;
  try {
    opened.emplace(path);
  } catch (const vitscale::error& e) {
    vitscale::detail::fail("load_checkpoint: cannot read '", path, "' (", e.what(), ")");
  }
  safetensors_reader& file = *opened;
  const auto& meta = file.metadata();
  const detail::metadata_reader read_meta(meta, path);
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != checkpoint_format)
    vitscale::detail::fail("load_checkpoint: '", path, "' is not a vitscale training checkpoint (its metadata has ",
                           format == meta.end() ? std::string("no 'format'") : "format '" + format->second + "'",
                           "; a parameter file is read by io::load_parameters)");
  if (read_meta.unsigned_integer("format_version") != std::uint64_t(checkpoint_format_version))
    vitscale::detail::fail("load_checkpoint: '", path, "' has checkpoint format version ", read_meta.text("format_version"),
                           "; this vitscale reads version ", checkpoint_format_version);
  if (read_meta.text("optimizer") != opt.name())
    vitscale::detail::fail("load_checkpoint: '", path, "' holds the state of ", read_meta.text("optimizer"),
                           ", but the optimizer to restore is ", opt.name());
  const bool file_has_ema = meta.count("optimizer.ema.decay") > 0;
  if (file_has_ema && !opt.has_ema())
    vitscale::detail::fail("load_checkpoint: '", path, "' holds an EMA of the parameters (decay ",
                           read_meta.text("optimizer.ema.decay"), "), but the optimizer to restore keeps none: give it "
                           "options.ema.decay > 0 to resume the EMA (io::load_parameters reads the parameters alone)");
  if (!file_has_ema && opt.has_ema())
    vitscale::detail::fail("load_checkpoint: '", path, "' holds no EMA of the parameters, but the optimizer to restore "
                           "keeps one (ema.decay ", opt.hyperparameters().ema.decay, "): resume it with an optimizer "
                           "without an EMA, or start a new run from its parameters (io::load_parameters, then "
                           "reset_ema())");

  std::ostringstream problems;
  int count = 0;
  for (const auto& [key, want] : detail::model_description(model)) {
    const auto it = meta.find(key);
    if (it == meta.end() || it->second != want) {
      problems << "\n  " << key << ": the file has " << (it == meta.end() ? std::string("nothing") : it->second)
               << ", the model " << want;
      ++count;
    }
  }
  std::map<std::string, bool> expected;  // name -> found in the file
  detail::visit_checkpoint_tensors(model, opt, [&](const std::string& name, const auto& view,
                                                   const std::vector<std::int64_t>& shape) {
    using T = typename std::decay_t<decltype(view)>::non_const_value_type;
    expected[name] = file.contains(name);
    if (!file.contains(name)) {
      problems << "\n  missing: " << name;
      ++count;
      return;
    }
    const tensor_entry& e = file.entry(name);
    if (e.shape != shape || e.type != detail::dtype_of<T>()) {
      problems << "\n  " << name << ": the file has " << dtype_name(e.type) << " " << detail::format_shape(e.shape)
               << ", expected " << dtype_name(detail::dtype_of<T>()) << " " << detail::format_shape(shape);
      ++count;
    }
  });
  for (const tensor_entry& e : file.tensors()) {
    if (expected.count(e.name) == 0) {
      problems << "\n  unexpected: " << e.name << " (" << dtype_name(e.type) << " " << detail::format_shape(e.shape) << ")";
      ++count;
    }
  }
  if (count > 0)
    vitscale::detail::fail("load_checkpoint: '", path, "' does not fit the model and ", opt.name(), " (", count,
                           count == 1 ? " problem):" : " problems):", problems.str());

  training_state state;
  state.step = std::int64_t(read_meta.unsigned_integer("step"));
  const std::uint64_t epoch = read_meta.unsigned_integer("data.epoch");
  if (epoch > 0xffffffffu) vitscale::detail::fail("load_checkpoint: '", path, "': data.epoch ", epoch, " is out of range");
  state.data.epoch = std::uint32_t(epoch);
  state.data.index = std::int64_t(read_meta.unsigned_integer("data.index"));
  state.data_seed = read_meta.unsigned_integer("data.seed");
  state.augment_seed = read_meta.unsigned_integer("augment.seed");
  for (const auto& [key, value] : meta)
    if (key.compare(0, 5, "user.") == 0) state.metadata[key.substr(5)] = value;
  regularization reg;
  reg.dropout = read_meta.real("regularization.dropout");
  reg.drop_path = read_meta.real("regularization.drop_path");
  reg.seed = read_meta.unsigned_integer("regularization.seed");
  // Where this rank's images sit in the global batch is the rank's, not the checkpoint's: kept as it was set.
  reg.first_image = model.regularization_settings().first_image;
  const auto steps = std::int64_t(read_meta.unsigned_integer("optimizer.steps"));
  model.set_regularization(reg);  // validates the rates before anything else changes

  load_parameters(model, path);
  std::vector<unsigned char> bytes;
  opt.visit_state([&](const std::string& name, const auto& view, const std::vector<std::int64_t>&) {
    using T = typename std::decay_t<decltype(view)>::non_const_value_type;
    bytes.resize(view.extent(0) * sizeof(T));
    file.read_raw("optimizer." + name, bytes.data(), bytes.size());
    vitscale::detail::require_finite(reinterpret_cast<const T*>(bytes.data()), std::int64_t(view.extent(0)),
                                     "load_checkpoint: '" + path + "'", "optimizer state", "optimizer." + name,
                                     "; the checkpoint cannot be resumed from");
    Kokkos::deep_copy(view, detail::host_alias(view, bytes.data()));
  });
  opt.visit_ema([&](const std::string& name, const auto& view, const std::vector<std::int64_t>&) {
    bytes.resize(view.extent(0) * sizeof(float));
    file.read_raw("ema." + name, bytes.data(), bytes.size());
    vitscale::detail::require_finite(reinterpret_cast<const float*>(bytes.data()), std::int64_t(view.extent(0)),
                                     "load_checkpoint: '" + path + "'", "parameter EMA", "ema." + name,
                                     "; the checkpoint cannot be resumed from");
    Kokkos::deep_copy(view, detail::host_alias(view, bytes.data()));
  });
  opt.set_steps(steps);
  // Steps skipped for non-finite gradients, for the record (checkpoints before this count existed have none).
  if (meta.count("optimizer.skipped")) opt.set_skipped_steps(std::int64_t(read_meta.unsigned_integer("optimizer.skipped")));
  model.parameters_changed();
  return state;
}

}  // namespace vitscale::io
