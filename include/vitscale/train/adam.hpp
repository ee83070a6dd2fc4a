#pragma once
// Adam with decoupled weight decay, optax.scale_by_adam: both moments in the policy's state type (adamw), or
// the first in bf16 (adam_bf16_momentum, the ViT-G paper); bias corrected as optax:
//   m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;  u = (m/(1 − β1ᵗ)) / (√(v/(1 − β2ᵗ)) + ε)

#include <vitscale/train/optimizer.hpp>

#include <cmath>

namespace vitscale::optimizer {

template <optim::storage First>
struct adam_rule {
  static constexpr const char* name =
      First == optim::storage::bf16 ? "optimizer::adam_bf16_momentum" : "optimizer::adamw";
  struct options {
    double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    decay weight_decay{};
    clipping clip{};
    non_finite_policy non_finite{};
    ema_policy ema{};  // an EMA of the parameters (train/optimizer.hpp); off by default
    template <class F>
    void visit(F&& f) const {
      f("b1", b1);
      f("b2", b2);
      f("eps", eps);
    }
  };
  static void check(const options& o) {
    if (!(o.b1 >= 0 && o.b1 < 1) || !(o.b2 >= 0 && o.b2 < 1) || !(o.eps >= 0))
      ::vitscale::detail::fail(name, ": expected b1, b2 in [0, 1) and eps >= 0, got b1 ", o.b1, ", b2 ", o.b2,
                               ", eps ", o.eps);
  }
  template <class Policy>
  using state_layout = optim::adam_in<First>;

  struct scalars {
    float b1, b2, eps, bc1, bc2;
  };
  // optax computes the corrections in float: 1 − β^t with β and t in float32.
  static scalars at_step(const options& o, std::int64_t t) {
    return {float(o.b1), float(o.b2), float(o.eps), 1.0f - std::pow(float(o.b1), float(t)),
            1.0f - std::pow(float(o.b2), float(t))};
  }

  template <class State>
  KOKKOS_INLINE_FUNCTION static float update(const scalars& s, const State& state, const detail::tensor_desc&,
                                             std::int64_t e, float g) {
    const auto& m = state.template get<0>();
    const auto& v = state.template get<1>();
    const float mi = (1.0f - s.b1) * g + detail::decayed(s.b1, m, e);
    const float vi = s.b2 * detail::load(v, e) + (1.0f - s.b2) * (g * g);
    detail::store(m, e, mi);
    detail::store(v, e, vi);
    return (mi / s.bc1) / (::vitscale::kmath::sqrt(vi / s.bc2) + s.eps);
  }
};

// AdamW: both moments in the policy's state type.
template <class Model>
using adamw = fused<Model, adam_rule<optim::storage::state_type>>;
// Adam with the first moment in bf16 and the second in the policy's state type (the ViT-G paper).
template <class Model>
using adam_bf16_momentum = fused<Model, adam_rule<optim::storage::bf16>>;

}  // namespace vitscale::optimizer
