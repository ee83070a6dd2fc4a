#pragma once
// Optimizer state declarations: the moments each optimizer keeps, as a list of (name, storage type, extent).
// One declaration serves three readers: the accounting sizes a run from it before anything is allocated
// (state_bytes), the optimizer allocates exactly these arenas (train/optimizer.hpp), and a training checkpoint
// names and shapes its tensors after it (io/checkpoint.hpp: "<moment>.<parameter's timm name>").

#include <vitscale/config/tensors.hpp>
#include <vitscale/core/bf16.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vitscale {
namespace optim {

// What a moment is stored in: the precision policy's state type, or a fixed type whatever the policy.
enum class storage { state_type, bf16, fp32 };

// The extent of a moment: one value per parameter (the parameter's shape), or Adafactor's factored second
// moment (row and column statistics of the matrix view where both dimensions are >= the factoring threshold,
// the whole tensor otherwise).
enum class extent { per_element, factored };

struct moment {
  const char* name;
  storage type;
  extent shape;
};

template <storage S, class Policy>
struct stored_type;
template <class Policy>
struct stored_type<storage::state_type, Policy> {
  using type = typename Policy::state_type;
};
template <class Policy>
struct stored_type<storage::bf16, Policy> {
  using type = bf16;
};
template <class Policy>
struct stored_type<storage::fp32, Policy> {
  using type = float;
};
// The element type of a moment stored as S under Policy.
template <storage S, class Policy>
using stored_t = typename stored_type<S, Policy>::type;

template <class T>
constexpr storage storage_of() {
  static_assert(std::is_same<T, float>::value || std::is_same<T, bf16>::value,
                "optimizer moments are stored in float or vitscale::bf16");
  return std::is_same<T, bf16>::value ? storage::bf16 : storage::fp32;
}

// Tensors whose matrix view has both dimensions >= this have a factored second moment (big_vision's
// min_dim_size_to_factor; the accounting assumes the default).
constexpr std::int64_t min_dim_size_to_factor = 32;

constexpr bool factored(const tensor_info& t, std::int64_t min_dim = min_dim_size_to_factor) {
  return t.matrix_rows() >= min_dim && t.matrix_cols() >= min_dim;
}

struct state_layout_tag {};

// Bytes of moment m for tensor t, with the policy's state type `state_type_bytes` wide.
constexpr std::int64_t moment_bytes(const moment& m, const tensor_info& t, int state_type_bytes) {
  const std::int64_t size = m.type == storage::bf16   ? std::int64_t(sizeof(bf16))
                            : m.type == storage::fp32 ? std::int64_t(sizeof(float))
                                                      : std::int64_t(state_type_bytes);
  const std::int64_t count = m.shape == extent::factored && factored(t) ? t.matrix_rows() + t.matrix_cols() : t.numel();
  return count * size;
}

// A state layout as a run-time value: its moments (the run-time accounting's optimizer argument).
struct state_layout_ref {
  const moment* moments = nullptr;
  std::size_t count = 0;

  constexpr std::int64_t state_bytes(const tensor_info& t, int state_type_bytes) const {
    std::int64_t bytes = 0;
    for (std::size_t i = 0; i < count; ++i) bytes += moment_bytes(moments[i], t, state_type_bytes);
    return bytes;
  }
  template <class Layout>
  static constexpr state_layout_ref of() {
    return state_layout_ref{Layout::moments, sizeof(Layout::moments) / sizeof(moment)};
  }
};

// A state layout: Self declares `moments[]`; the bytes per tensor follow from them.
template <class Self>
struct state_layout : state_layout_tag {
  template <class Policy>
  static constexpr std::int64_t state_bytes(const tensor_info& t) {
    return state_layout_ref::of<Self>().state_bytes(t, int(sizeof(typename Policy::state_type)));
  }
  static constexpr std::size_t moment_count() { return sizeof(Self::moments) / sizeof(moment); }
};

// One moment per element, in the policy's state type or a fixed one: SGD with momentum (bf16 for big_vision's
// momentum_hp) and Lion (Chen et al. 2023; optax's mu_dtype).
template <storage Momentum>
struct one_moment_in : state_layout<one_moment_in<Momentum>> {
  static constexpr moment moments[] = {{"m", Momentum, extent::per_element}};
};
template <storage Momentum>
using sgd_momentum_in = one_moment_in<Momentum>;
using sgd_momentum = sgd_momentum_in<storage::state_type>;
template <storage Momentum>
using lion_in = one_moment_in<Momentum>;
using lion = lion_in<storage::state_type>;

// Adam / AdamW: first and second moments in the policy's state type; the ViT-G paper's variant stores the
// first in bf16 (the second stays in the state type, because storing *it* in bf16 is what hurts).
template <storage First>
struct adam_in : state_layout<adam_in<First>> {
  static constexpr moment moments[] = {{"m", First, extent::per_element},
                                       {"v", storage::state_type, extent::per_element}};
};
using adam = adam_in<storage::state_type>;
using adam_bf16_momentum = adam_in<storage::bf16>;

// The ViT-G paper's Adafactor: a bf16 first moment, the second moment factored (see `factored`) in the
// policy's state type.
struct adafactor : state_layout<adafactor> {
  static constexpr moment moments[] = {{"m", storage::bf16, extent::per_element},
                                       {"v", storage::state_type, extent::factored}};
  static constexpr std::int64_t min_dim_size_to_factor = optim::min_dim_size_to_factor;
  static constexpr bool factored(const tensor_info& t) { return optim::factored(t); }
};

template <class T>
constexpr bool is_state_layout_v = std::is_base_of<state_layout_tag, T>::value;

}  // namespace optim
}  // namespace vitscale
