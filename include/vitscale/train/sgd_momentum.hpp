#pragma once
// SGD with momentum, optax.trace (big_vision's momentum_hp with Momentum = bf16):
//   m ← μ·m + g;  u = m   (Nesterov: u = g + μ·m)
// Momentum is stored in Momentum (default: the policy's state type); a bf16 moment follows optax's arithmetic
// (detail::decayed).

#include <vitscale/train/optimizer.hpp>

namespace vitscale::optimizer {

template <class Momentum>
struct sgd_momentum_rule {
  static constexpr const char* name = "optimizer::sgd_momentum";
  struct options {
    double momentum = 0.9;
    bool nesterov = false;
    decay weight_decay{};
    clipping clip{};
    non_finite_policy non_finite{};
    ema_policy ema{};  // an EMA of the parameters (train/optimizer.hpp); off by default
    template <class F>
    void visit(F&& f) const {
      f("momentum", momentum);
      f("nesterov", nesterov);
    }
  };
  static void check(const options& o) {
    if (!(o.momentum >= 0 && o.momentum < 1))
      ::vitscale::detail::fail(name, ": momentum must be in [0, 1), got ", o.momentum);
  }
  template <class Policy>
  using state_layout = optim::sgd_momentum_in<std::is_same<Momentum, typename Policy::state_type>::value
                                                  ? optim::storage::state_type
                                                  : optim::storage_of<Momentum>()>;

  struct scalars {
    float mu;
    int nesterov;
  };
  static scalars at_step(const options& o, std::int64_t) { return {float(o.momentum), o.nesterov ? 1 : 0}; }

  // g: [the arena] -> u; m ← μ·m + g
  template <class State>
  KOKKOS_INLINE_FUNCTION static float update(const scalars& s, const State& state, const detail::tensor_desc&,
                                             std::int64_t e, float g) {
    const auto& m = state.template get<0>();
    const float mi = g + detail::decayed(s.mu, m, e);
    detail::store(m, e, mi);
    return s.nesterov ? g + s.mu * mi : mi;
  }
};

template <class Model, class Momentum = typename Model::policy::state_type>
using sgd_momentum = fused<Model, sgd_momentum_rule<Momentum>>;

}  // namespace vitscale::optimizer
