#pragma once
// The names of the structural enums, one table each (a switch without a default: a new enum value that is not
// named here is a compile error under -Werror=switch, which vitscale's own targets use). These are the values
// save_parameters writes into a parameter file's metadata and io/dispatch.hpp reads back, and what
// shape_descriptor::to_string prints. Training checkpoints spell the class-token pooling "cls_token"
// (checkpoint_name), as they always have.

#include <vitscale/config/options.hpp>

namespace vitscale {

constexpr const char* to_string(block_kind k) {
  switch (k) {
    case block_kind::classic: return "classic";
    case block_kind::parallel: return "parallel";
  }
  return "?";
}

constexpr const char* to_string(pooling p) {
  switch (p) {
    case pooling::cls_token: return "cls";
    case pooling::gap: return "gap";
    case pooling::map: return "map";
    case pooling::gap_fc_norm: return "gap_fc_norm";
  }
  return "?";
}

// The pooling's name in a training checkpoint's metadata (io/checkpoint.hpp).
constexpr const char* checkpoint_name(pooling p) { return p == pooling::cls_token ? "cls_token" : to_string(p); }

constexpr const char* to_string(posemb_kind p) {
  switch (p) {
    case posemb_kind::learned: return "learned";
    case posemb_kind::sincos2d: return "sincos2d";
  }
  return "?";
}

constexpr const char* to_string(activation a) {
  switch (a) {
    case activation::gelu_erf: return "gelu_erf";
    case activation::gelu_tanh: return "gelu_tanh";
  }
  return "?";
}

}  // namespace vitscale
