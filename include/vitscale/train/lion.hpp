#pragma once
// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), as optax.scale_by_lion:
//   u = sign((1 − β1)·g + β1·m);  m ← (1 − β2)·g + β2·m
// with the moment in the policy's state type (optax's mu_dtype; lion_bf16_momentum stores it in bf16, and β·m
// is then formed as optax forms it, detail::decayed). Lion's updates are ±1, so its learning rate is 3–10×
// smaller than AdamW's and its decoupled decay larger (the paper's advice).

#include <vitscale/train/optimizer.hpp>

namespace vitscale::optimizer {

template <optim::storage Momentum = optim::storage::state_type>
struct lion_rule {
  static constexpr const char* name =
      Momentum == optim::storage::bf16 ? "optimizer::lion_bf16_momentum" : "optimizer::lion";
  struct options {
    double b1 = 0.9, b2 = 0.99;
    decay weight_decay{};
    clipping clip{};
    non_finite_policy non_finite{};
    ema_policy ema{};  // an EMA of the parameters (train/optimizer.hpp); off by default
    template <class F>
    void visit(F&& f) const {
      f("b1", b1);
      f("b2", b2);
    }
  };
  static void check(const options& o) {
    if (!(o.b1 >= 0 && o.b1 <= 1) || !(o.b2 >= 0 && o.b2 < 1))
      ::vitscale::detail::fail(name, ": expected b1 in [0, 1] and b2 in [0, 1), got b1 ", o.b1, ", b2 ", o.b2);
  }
  template <class Policy>
  using state_layout = optim::lion_in<Momentum>;

  struct scalars {
    float b1, b2;
  };
  static scalars at_step(const options& o, std::int64_t) { return {float(o.b1), float(o.b2)}; }

  template <class State>
  KOKKOS_INLINE_FUNCTION static float update(const scalars& s, const State& state, const detail::tensor_desc&,
                                             std::int64_t e, float g) {
    const auto& m = state.template get<0>();
    const float c = (1.0f - s.b1) * g + detail::decayed(s.b1, m, e);
    detail::store(m, e, (1.0f - s.b2) * g + detail::decayed(s.b2, m, e));
    return c > 0.0f ? 1.0f : c < 0.0f ? -1.0f : c;  // 0 stays 0, NaN stays NaN (as jnp.sign)
  }
};

template <class Model>
using lion = fused<Model, lion_rule<>>;
template <class Model>
using lion_bf16_momentum = fused<Model, lion_rule<optim::storage::bf16>>;

}  // namespace vitscale::optimizer
