#pragma once
// Compile-time accounting of an NFNet shape: parameters and FLOPs, both summed over the layer walk
// (nfnet_walk.hpp).
//
// Conventions (those of config/accounting.hpp, applied to convolutions):
// - Parameters: every trainable tensor of the table (nfnet_tensors.hpp), skipinit gains included; broken down
//   by part (stem, stages — and each stage —, final conv, head).
// - FLOPs are per image, 2 per multiply-add, for every product: each conv (out_side² · out · in/groups · k²
//   multiply-adds), the squeeze-excite's two 1×1 convs on the pooled vector and the classifier. Elementwise work
//   (activations, the shortcut's average pool, the SE's mean and gate, weight standardisation, residual adds)
//   is not counted. This is exactly what torch.utils.flop_counter counts on timm's model
//   (tests/reference/nfnet_counts.py).
// - The NFNet paper's "FLOPs" (Brock et al. 2021, Table 2: F0 12.38 B at 256 px … F6 377.28 B at 576 px) are
//   multiply-adds: half of ours. nfnet_flop_counts::forward_macs is that number (F0: 12,384,198,656).
// - Training = forward + backward, where the backward of a product costs two products (input and weight
//   gradient), except the stem's first conv, whose input (the image) needs no gradient:
//   training = 3·forward − stem.conv1's forward. The weight standardisation's own gradient is elementwise and
//   not counted.

#include <vitscale/config/nfnet_tensors.hpp>
#include <vitscale/config/nfnet_walk.hpp>

#include <array>
#include <cstdint>

namespace vitscale {

struct nfnet_param_counts {
  std::int64_t stem = 0;
  std::int64_t stages = 0;
  std::array<std::int64_t, nfnet_max_stages> stage{};  // each stage's share of `stages`
  std::int64_t final_conv = 0;
  std::int64_t head = 0;  // the classifier head.fc
  std::int64_t total = 0;
};

struct nfnet_flop_counts {  // per image, 2 FLOPs per multiply-add
  std::int64_t stem = 0;
  std::int64_t stages = 0;
  std::array<std::int64_t, nfnet_max_stages> stage{};
  std::int64_t final_conv = 0;
  std::int64_t head = 0;
  std::int64_t forward = 0;
  std::int64_t forward_macs = 0;  // forward / 2: the NFNet paper's "FLOPs"
  std::int64_t training = 0;      // forward + backward (see the conventions above)
};

namespace detail {
struct nfnet_param_summer {
  nfnet_param_counts c{};
  constexpr void add(const nfnet_tensor_info& t) {
    const std::int64_t n = t.numel();
    switch (t.part) {
      case nfnet_part::stem: c.stem += n; break;
      case nfnet_part::stages:
        c.stages += n;
        c.stage[t.stage] += n;
        break;
      case nfnet_part::final_conv: c.final_conv += n; break;
      case nfnet_part::head: c.head += n; break;
    }
    c.total += n;
  }
};

struct nfnet_flop_summer : nfnet_sink {
  nfnet_flop_counts f{};
  std::int64_t first_conv = 0;
  constexpr void layer(const nfnet_layer& l) {
    const std::int64_t n = 2 * l.macs();
    switch (l.part) {
      case nfnet_part::stem:
        if (first_conv == 0) first_conv = n;
        f.stem += n;
        break;
      case nfnet_part::stages:
        f.stages += n;
        f.stage[l.stage] += n;
        break;
      case nfnet_part::final_conv: f.final_conv += n; break;
      case nfnet_part::head: f.head += n; break;
    }
    f.forward += n;
  }
};
}  // namespace detail

constexpr nfnet_param_counts count_nfnet_params(const nfnet_descriptor& d) {
  detail::nfnet_param_summer summer;
  detail::visit_nfnet_tensors(d, summer, 1);
  return summer.c;
}

constexpr nfnet_flop_counts count_nfnet_flops(const nfnet_descriptor& d, int resolution) {
  detail::nfnet_flop_summer summer;
  walk_nfnet(d, summer, resolution);
  nfnet_flop_counts f = summer.f;
  f.forward_macs = f.forward / 2;
  f.training = 3 * f.forward - summer.first_conv;
  return f;
}

template <class Shape>
constexpr nfnet_param_counts nfnet_params() {
  return count_nfnet_params(Shape::describe());
}

template <class Shape>
constexpr nfnet_flop_counts nfnet_flops(int resolution = Shape::resolution) {
  return count_nfnet_flops(Shape::describe(), resolution);
}

}  // namespace vitscale
