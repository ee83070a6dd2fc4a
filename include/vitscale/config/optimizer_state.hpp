#pragma once
// Optimizer state layouts: how many bytes of state each optimizer keeps for one parameter tensor under a
// precision policy. The optimizers themselves (train layer) keep exactly these buffers; the accounting
// uses the layouts to size a run before anything is allocated.

#include <vitscale/config/tensors.hpp>
#include <vitscale/core/bf16.hpp>

#include <cstdint>
#include <type_traits>

namespace vitscale {
namespace optim {

struct state_layout_tag {};

// SGD with momentum: one moment in the policy's state type.
struct sgd_momentum : state_layout_tag {
  static constexpr const char* name = "SGD-momentum";
  template <class Policy>
  static constexpr std::int64_t state_bytes(const tensor_info& t) {
    return t.numel() * std::int64_t(sizeof(typename Policy::state_type));
  }
};

// Adam / AdamW: first and second moments in the policy's state type.
struct adam : state_layout_tag {
  static constexpr const char* name = "Adam";
  template <class Policy>
  static constexpr std::int64_t state_bytes(const tensor_info& t) {
    return 2 * t.numel() * std::int64_t(sizeof(typename Policy::state_type));
  }
};

// Adam with the first moment in bf16 (the ViT-G paper): the second moment stays in the state type,
// because storing *it* in bf16 is what hurts.
struct adam_bf16_momentum : state_layout_tag {
  static constexpr const char* name = "Adam (bf16 m)";
  template <class Policy>
  static constexpr std::int64_t state_bytes(const tensor_info& t) {
    return t.numel() * std::int64_t(sizeof(bf16) + sizeof(typename Policy::state_type));
  }
};

// The ViT-G paper's Adafactor: a bf16 first moment; the second moment factored into row and column
// statistics for tensors whose matrix view has both dimensions >= 32 (big_vision's
// min_dim_size_to_factor), kept whole otherwise. Both in the policy's state type.
struct adafactor : state_layout_tag {
  static constexpr const char* name = "Adafactor";
  static constexpr std::int64_t min_dim_size_to_factor = 32;

  static constexpr bool factored(const tensor_info& t) {
    return t.matrix_rows() >= min_dim_size_to_factor && t.matrix_cols() >= min_dim_size_to_factor;
  }
  template <class Policy>
  static constexpr std::int64_t state_bytes(const tensor_info& t) {
    const std::int64_t second = factored(t) ? t.matrix_rows() + t.matrix_cols() : t.numel();
    return t.numel() * std::int64_t(sizeof(bf16)) + second * std::int64_t(sizeof(typename Policy::state_type));
  }
};

template <class T>
constexpr bool is_state_layout_v = std::is_base_of<state_layout_tag, T>::value;

}  // namespace optim
}  // namespace vitscale
