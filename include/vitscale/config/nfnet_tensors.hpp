#pragma once
// The NFNet parameter table: every trainable tensor of an NFNet shape, in timm's named_parameters order, with
// its name, timm's logical dimensions and role — derived from the layer walk (nfnet_walk.hpp), so that the
// table, the counts and the model's layout cannot disagree.
//
// Per block: `skipinit_gain` (a scalar, rank 0; timm lists a module's own parameters before its children's),
// then each conv's weight [out, in/groups, k, k] (OIHW), bias [out] and gain [out, 1, 1, 1], then the
// squeeze-excite's fc1/fc2 weight [out, in, 1, 1] and bias [out]. The stem's convs come first, the final
// conv and the classifier head.fc (weight [classes, features], bias [classes]) last.
//
// The roles are NFNet's own (the ViT's tensor_role has no gains): conv weights and the SE and classifier
// weights are what the NFNet paper's weight decay and adaptive gradient clipping act on (AGC is not applied to
// the classifier); biases, gains and the skipinit gains are not decayed.

#include <vitscale/config/nfnet_walk.hpp>
#include <vitscale/config/tensor_extents.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vitscale {

enum class nfnet_role {
  conv_weight,    // a scaled weight-standardised conv's kernel [out, in/groups, k, k]
  se_weight,      // a squeeze-excite 1×1 conv's kernel [out, in, 1, 1]
  linear_weight,  // the classifier's matrix [classes, features]
  bias,           // any layer's bias [out]
  gain,           // a conv's per-output-channel gain [out, 1, 1, 1]
  skip_gain,      // a block's scalar skipinit_gain []
};

struct nfnet_tensor_info {
  std::string_view layer;   // the layer's name as in nfnet_layer ("conv1", "stem.conv1"); empty for skipinit_gain
  std::string_view suffix;  // "weight", "bias", "gain" or "skipinit_gain"
  int stage = -1;           // -1 outside the stages
  int block = -1;           // within the stage; -1 outside the stages
  nfnet_part part = nfnet_part::stem;
  nfnet_role role = nfnet_role::bias;
  int rank = 0;
  std::array<std::int64_t, 4> dims{};

  constexpr std::int64_t numel() const { return detail::extents_numel(dims, rank); }
  // The tensor as a matrix (config/tensor_extents.hpp): [first non-unit dimension, everything else].
  constexpr std::int64_t matrix_rows() const { return detail::extents_matrix_rows(dims, rank); }
  constexpr std::int64_t matrix_cols() const { return numel() / matrix_rows(); }
  // The name inside its block (or the whole name outside the stages): "conv1.weight", "skipinit_gain".
  // `name == local_name` without building a string, for constant expressions.
  constexpr bool is(std::string_view local_name) const {
    if (layer.empty()) return local_name == suffix;
    return local_name.size() == layer.size() + 1 + suffix.size() && local_name.substr(0, layer.size()) == layer &&
           local_name[layer.size()] == '.' && local_name.substr(layer.size() + 1) == suffix;
  }
  std::string local_name() const {
    return layer.empty() ? std::string(suffix) : std::string(layer) + "." + std::string(suffix);
  }
  // timm's name: "stages.1.0.conv2.gain", "stem.conv1.weight", "head.fc.bias".
  std::string full_name() const {
    return stage < 0 ? local_name()
                     : "stages." + std::to_string(stage) + "." + std::to_string(block) + "." + local_name();
  }
};

namespace detail {

// Turns the walk into tensors, handing each to sink.add(const nfnet_tensor_info&).
template <class Sink>
struct nfnet_tensor_walker : nfnet_sink {
  Sink* sink;
  constexpr explicit nfnet_tensor_walker(Sink& s) : sink(&s) {}
  constexpr void block(const nfnet_block& b) {
    if (b.skipinit)
      sink->add(nfnet_tensor_info{{}, "skipinit_gain", b.stage, b.block, nfnet_part::stages, nfnet_role::skip_gain,
                                  0, {1, 1, 1, 1}});
  }
  constexpr void layer(const nfnet_layer& l) {
    const std::int64_t out = l.out_channels;
    switch (l.kind) {
      case nfnet_layer_kind::conv:
        sink->add(nfnet_tensor_info{l.name, "weight", l.stage, l.block, l.part, nfnet_role::conv_weight, 4,
                                    {out, l.in_channels / l.groups, l.kernel, l.kernel}});
        sink->add(nfnet_tensor_info{l.name, "bias", l.stage, l.block, l.part, nfnet_role::bias, 1, {out, 1, 1, 1}});
        sink->add(nfnet_tensor_info{l.name, "gain", l.stage, l.block, l.part, nfnet_role::gain, 4, {out, 1, 1, 1}});
        break;
      case nfnet_layer_kind::se_fc:
        sink->add(nfnet_tensor_info{l.name, "weight", l.stage, l.block, l.part, nfnet_role::se_weight, 4,
                                    {out, l.in_channels, 1, 1}});
        sink->add(nfnet_tensor_info{l.name, "bias", l.stage, l.block, l.part, nfnet_role::bias, 1, {out, 1, 1, 1}});
        break;
      case nfnet_layer_kind::linear:
        sink->add(nfnet_tensor_info{l.name, "weight", l.stage, l.block, l.part, nfnet_role::linear_weight, 2,
                                    {out, l.in_channels, 1, 1}});
        sink->add(nfnet_tensor_info{l.name, "bias", l.stage, l.block, l.part, nfnet_role::bias, 1, {out, 1, 1, 1}});
        break;
      case nfnet_layer_kind::shortcut_pool:
      case nfnet_layer_kind::global_pool: break;
    }
  }
};

template <class Sink>
constexpr void visit_nfnet_tensors(const nfnet_descriptor& d, Sink& sink, int resolution) {
  nfnet_tensor_walker<Sink> walker(sink);
  walk_nfnet(d, walker, resolution);
}

struct nfnet_tensor_counter {
  int count = 0;
  constexpr void add(const nfnet_tensor_info&) { ++count; }
};

template <std::size_t N>
struct nfnet_tensor_filler {
  std::array<nfnet_tensor_info, N> table{};
  std::size_t next = 0;
  constexpr void add(const nfnet_tensor_info& t) { table[next++] = t; }
};

inline int no_nfnet_tensor_named(std::string_view) { return -1; }

}  // namespace detail

// Number of parameter tensors (the table does not depend on the resolution).
constexpr int nfnet_tensor_count(const nfnet_descriptor& d) {
  detail::nfnet_tensor_counter counter;
  detail::visit_nfnet_tensors(d, counter, 1);
  return counter.count;
}
template <class Shape>
constexpr int nfnet_tensor_count() {
  return nfnet_tensor_count(Shape::describe());
}

template <class Shape>
constexpr std::array<nfnet_tensor_info, nfnet_tensor_count<Shape>()> nfnet_tensor_table() {
  detail::nfnet_tensor_filler<nfnet_tensor_count<Shape>()> filler;
  detail::visit_nfnet_tensors(Shape::describe(), filler, 1);
  return filler.table;
}

// The index in the table of tensor `name` ("conv1.weight", "skipinit_gain"; outside the stages the whole name,
// "stem.conv1.weight", with stage = block = -1). In a constant expression, a name the shape does not have does
// not compile.
template <class Shape>
constexpr int nfnet_tensor_index(int stage, int block, std::string_view name) {
  constexpr auto table = nfnet_tensor_table<Shape>();
  for (std::size_t i = 0; i < table.size(); ++i)
    if (table[i].stage == stage && table[i].block == block && table[i].is(name)) return static_cast<int>(i);
  return detail::no_nfnet_tensor_named(name);
}

}  // namespace vitscale
