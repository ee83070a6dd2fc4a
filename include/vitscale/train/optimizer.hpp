#pragma once
// An optimizer is an update rule run inside one fused pass over the parameter arena (big_vision's chain of
// transforms, fused):
//
//   check(g)                                 every gradient finite (the reduction that also gives ‖g‖), or
//                                            no update at all: skipped (non_finite_policy) or an error
//   g ← clip(g)                              AGC, then the global norm (train/detail/optimizer_layout.hpp)
//   u ← Rule::update(g, state)               the rule's element rule, which also writes its moments
//   p ← p − lr·u − wd_group·decay_scale·p    decoupled weight decay by group, rounded into the stored type
//   ema ← ema + (1 − d_t)·(p − ema)          when options.ema is on: the float shadow of the stored p
//                                            (optim::ema_policy; use_ema() evaluates with it)
//
// `fused<Model, Rule>` is the whole optimizer; a rule supplies only what is its own:
//   name                 "optimizer::<rule>", what a training checkpoint records and checks on load;
//   options              its hyperparameters plus `weight_decay`, `clip`, `non_finite` and `ema`, with
//                        visit(f) calling f("<key>", value) per hyperparameter of its own (the checkpoint's
//                        record); check(options) fails with a sentence on bad values;
//   state_layout<Policy> its state declaration (config/optimizer_state.hpp), from which the arenas here, the
//                        accounting's state bytes and the checkpoint's tensors all derive;
//   scalars, at_step     the per-step constants (bias corrections, β2 schedules) computed on the host for
//                        the t-th step (t = 1, 2, …);
//   update(s, state, d, e, g) → u   the element rule on device: g is the clipped gradient of arena element
//                        e of tensor d; state.get<I>() is the I-th declared moment's View;
//   (optional) prepare(space, layout, g, state, s, global)  passes before the fused one (Adafactor's statistics),
//                        announced by `static constexpr bool prepares = true`.
// A new optimizer is then one rule, one options struct and one line: `template <class Model> using lion =
// fused<Model, lion_rule<>>;` (train/lion.hpp is the example to copy). See CONTRIBUTING.md.

#include <vitscale/config/optimizer_state.hpp>
#include <vitscale/core/finite.hpp>
#include <vitscale/train/detail/optimizer_layout.hpp>

#include <algorithm>
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace vitscale::optimizer {

// A set of tensors outside a model, with the interface the optimizers need from one (parameters(),
// gradients(), space(), parameters_changed()): to drive an optimizer on fixed tensors. The table's names
// must outlive the set.
template <class Param, class Grad, class ExecSpace, class State = float>
class tensor_set {
 public:
  using execution_space = ExecSpace;
  using memory_space = typename ExecSpace::memory_space;
  using param_type = Param;
  using grad_type = Grad;
  struct policy {
    using state_type = State;
  };

  template <class T>
  class arena {
   public:
    using vector_type = Kokkos::View<T*, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged>;
    arena() = default;
    arena(const std::vector<tensor_info>& table, const char* label) : table_(table) {
      std::size_t offset = 0;
      for (const tensor_info& t : table_) {
        offsets_.push_back(offset);
        offset += static_cast<std::size_t>(t.numel());
      }
      storage_ = Kokkos::View<T*, memory_space>(std::string(label), offset);
    }
    const std::vector<tensor_info>& table() const { return table_; }
    std::size_t offset(int i) const { return offsets_[static_cast<std::size_t>(i)]; }
    std::size_t size() const { return storage_.extent(0); }
    vector_type all() const { return vector_type(storage_.data(), storage_.extent(0)); }
    vector_type vector(int i) const {
      return vector_type(storage_.data() + offset(i), static_cast<std::size_t>(table_[std::size_t(i)].numel()));
    }

   private:
    std::vector<tensor_info> table_;
    std::vector<std::size_t> offsets_;
    Kokkos::View<T*, memory_space> storage_;
  };

  explicit tensor_set(const std::vector<tensor_info>& table, ExecSpace space = ExecSpace())
      : space_(space), params_(table, "vitscale::tensor_set::parameters"),
        grads_(table, "vitscale::tensor_set::gradients") {}

  arena<Param>& parameters() { return params_; }
  const arena<Param>& parameters() const { return params_; }
  arena<Grad>& gradients() { return grads_; }
  const arena<Grad>& gradients() const { return grads_; }
  const execution_space& space() const { return space_; }
  void parameters_changed() {}

 private:
  ExecSpace space_;
  arena<Param> params_;
  arena<Grad> grads_;
};

// What a step did: whether the update was applied (false: skipped for a non-finite gradient, nothing changed),
// and the gradients' global norm before clipping.
struct step_report {
  bool applied = true;
  double grad_norm = 0;
};

namespace detail {

inline void check_options(const char* name, const decay& wd, const clipping& clip, const non_finite_policy& nf) {
  if (!(wd.head >= 0) || !(wd.body >= 0) || !std::isfinite(wd.head) || !std::isfinite(wd.body))
    ::vitscale::detail::fail(name, ": weight decay must be finite and >= 0, got head ", wd.head, " and body ", wd.body);
  if (!(clip.global_norm >= 0) || !(clip.agc >= 0) || !std::isfinite(clip.global_norm) || !std::isfinite(clip.agc))
    ::vitscale::detail::fail(name, ": clipping thresholds must be finite and >= 0 (0 is off), got global_norm ",
                             clip.global_norm, " and agc ", clip.agc);
  if (nf.skip_in_a_row < 0)
    ::vitscale::detail::fail(name, ": non_finite.skip_in_a_row must be >= 0, got ", nf.skip_in_a_row);
}

inline void check_ema(const char* name, const ema_policy& a) {
  const auto finite = [](double x) { return std::isfinite(x); };
  if (!finite(a.decay) || !(a.decay >= 0 && a.decay < 1))
    ::vitscale::detail::fail(name, ": ema.decay must be in [0, 1) (0 is off; timm uses 0.9998), got ", a.decay);
  if (!finite(a.min_decay) || !(a.min_decay >= 0 && a.min_decay <= a.decay))
    ::vitscale::detail::fail(name, ": ema.min_decay must be in [0, ema.decay] = [0, ", a.decay, "], got ", a.min_decay);
  if (!finite(a.warmup_gamma) || !(a.warmup_gamma > 0) || !finite(a.warmup_power) || !(a.warmup_power > 0))
    ::vitscale::detail::fail(name, ": ema.warmup_gamma and ema.warmup_power must be finite and > 0, got ", a.warmup_gamma,
                             " and ", a.warmup_power);
  if (a.update_after_step < 0)
    ::vitscale::detail::fail(name, ": ema.update_after_step must be >= 0, got ", a.update_after_step);
}

// The EMA's decay d_t at the t-th applied step (t >= 1): timm's ModelEmaV3.get_decay(t) (see ema_policy).
inline double ema_decay_at(const ema_policy& a, std::int64_t t) {
  const std::int64_t k = t - a.update_after_step - 1;
  if (k <= 0) return 0.0;
  if (!a.use_warmup) return a.decay;
  const double d = 1.0 - std::pow(1.0 + double(k) / a.warmup_gamma, -a.warmup_power);
  return std::max(std::min(d, a.decay), a.min_decay);
}

// The learning rate and the decay factors as the kernels use them: floats, which must be finite (a double
// such as 1e39 is finite, its float is not).
inline void check_step(const char* name, double lr, double decay_scale, const decay& wd) {
  // Compared as doubles: converting a double past the float range to float is undefined behaviour.
  const auto finite_float = [](double x) {
    return std::isfinite(x) && std::fabs(x) <= double(std::numeric_limits<float>::max());
  };
  const auto text = [](double x) {
    std::ostringstream s;
    s << x;
    return s.str();
  };
  if (!finite_float(lr))
    throw non_finite_error(std::string(name) + "::step: the learning rate " + text(lr) +
                               " is not finite as the float the update uses (floats reach 3.4e38)",
                           "learning rate", "");
  if (!finite_float(decay_scale) || !finite_float(wd.body * decay_scale) || !finite_float(wd.head * decay_scale))
    throw non_finite_error(std::string(name) + "::step: the weight decay factors (decay scale " + text(decay_scale) +
                               ", weight decay " + text(wd.body) + " and " + text(wd.head) + ") are not finite as floats",
                           "weight decay", "");
}

// A factored second moment (extent::factored): the row and column statistics of the factored tensors, the
// whole moment of the others, and the per-tensor sums the element rule reads.
template <class T, class MemorySpace>
struct factored_moment {
  using value_type = T;
  Kokkos::View<T*, MemorySpace> stats;  // rows + cols per factored tensor, at tensor_desc::row_stat / col_stat
  Kokkos::View<T*, MemorySpace> whole;  // every element of an unfactored tensor, at tensor_desc::v_offset
  Kokkos::View<float*, MemorySpace> norm_sum;      // per tensor: the normalised statistic's sum (layout's)
  Kokkos::View<float*, MemorySpace> tensor_scale;  // per tensor: a block clip factor (layout's; 1 when off)
};

// The moments of a rule's state, one View (or factored_moment) each, in declaration order; copyable into a
// kernel. get<I>() is the I-th.
template <class... Moments>
struct moments;
template <>
struct moments<> {};
template <class First, class... Rest>
struct moments<First, Rest...> {
  First first;
  moments<Rest...> rest;
  template <std::size_t I>
  KOKKOS_INLINE_FUNCTION const auto& get() const {
    if constexpr (I == 0)
      return first;
    else
      return rest.template get<I - 1>();
  }
  template <std::size_t I>
  auto& get() {
    if constexpr (I == 0)
      return first;
    else
      return rest.template get<I - 1>();
  }
};

template <class Layout, class Policy, class MemorySpace, std::size_t I>
using moment_t = std::conditional_t<
    Layout::moments[I].shape == optim::extent::per_element,
    Kokkos::View<optim::stored_t<Layout::moments[I].type, Policy>*, MemorySpace>,
    factored_moment<optim::stored_t<Layout::moments[I].type, Policy>, MemorySpace>>;

template <class Layout, class Policy, class MemorySpace, class Indices>
struct moments_of;
template <class Layout, class Policy, class MemorySpace, std::size_t... I>
struct moments_of<Layout, Policy, MemorySpace, std::index_sequence<I...>> {
  using type = moments<moment_t<Layout, Policy, MemorySpace, I>...>;
};

template <class Layout>
constexpr bool has_factored_moment() {
  for (const optim::moment& m : Layout::moments)
    if (m.shape == optim::extent::factored) return true;
  return false;
}

template <class Rule, class = void>
struct prepares : std::false_type {};
template <class Rule>
struct prepares<Rule, std::void_t<decltype(Rule::prepares)>> : std::bool_constant<Rule::prepares> {};

// The EMA's update of one element from the stored new parameter p: a + w·(p − a), w = 1 − d_t (formed in double
// on the host: 1 − float(0.9999) would be 6e-5 off in relative terms), which leaves a constant parameter's
// average exactly in place; w = 1 (d_t = 0) copies p exactly.
KOKKOS_FORCEINLINE_FUNCTION float ema_update(float a, float p, float w) { return w >= 1.0f ? p : a + w * (p - a); }

// The fused pass: clip factor, the rule, decoupled decay, parameters rounded into their stored type, and, with
// an EMA, the EMA of the stored parameters with weight ema_weight = 1 − d_t. (A free function: nvcc rejects
// extended lambdas in private members.) The EMA is a compile-time choice so that the pass without it is the
// same code as before it existed: a run-time branch in the loop changed how GCC contracts p − lr·u − wd·p into
// FMAs, and with it SGD's parameters in the last bit.
template <class Rule, bool WithEma, class ExecSpace, class P, class G, class State, class Scalars, class E>
void apply_rule(const ExecSpace& space, const layout<ExecSpace>& l, const P& p, const G& g, const State& state,
                const Scalars& s, float global, float lr, float wd_body, float wd_head, const E& ema,
                float ema_weight) {
  using PT = typename P::non_const_value_type;
  const auto unit_scale = l.unit_scale;
  for_each_element(space, Rule::name, l, KOKKOS_LAMBDA(const tensor_desc& d, std::int64_t e) {
    const float gi = static_cast<float>(g(e)) * clip_factor(d, e, unit_scale, global);
    const float u = Rule::update(s, state, d, e, gi);
    const float pi = static_cast<float>(p(e));
    const float wd = d.group == head_group ? wd_head : d.group == body_group ? wd_body : 0.0f;
    if constexpr (WithEma) {
      const PT stored = ::vitscale::kernels::detail::store_as<PT>(pi - lr * u - wd * pi);
      p(e) = stored;
      ema(e) = ema_update(ema(e), static_cast<float>(stored), ema_weight);
    } else {
      (void)ema;
      (void)ema_weight;
      p(e) = ::vitscale::kernels::detail::store_as<PT>(pi - lr * u - wd * pi);
    }
  });
}

// ema ← p (converted to float), over the whole arena.
template <class ExecSpace, class P, class E>
void copy_to_ema(const ExecSpace& space, const P& p, const E& ema) {
  Kokkos::parallel_for(
      "vitscale::optim::ema_reset", Kokkos::RangePolicy<ExecSpace>(space, 0, ema.extent(0)),
      KOKKOS_LAMBDA(std::size_t i) { ema(i) = static_cast<float>(p(i)); });
}

// Float parameters: p and ema exchange their contents, bit for bit. Otherwise: p ← ema rounded into p's type
// (the caller has kept p).
template <class ExecSpace, class P, class E>
void ema_into_parameters(const ExecSpace& space, const P& p, const E& ema) {
  using PT = typename P::non_const_value_type;
  Kokkos::parallel_for(
      "vitscale::optim::ema_swap", Kokkos::RangePolicy<ExecSpace>(space, 0, ema.extent(0)),
      KOKKOS_LAMBDA(std::size_t i) {
        if constexpr (std::is_same<PT, float>::value) {
          const float x = p(i);
          p(i) = ema(i);
          ema(i) = x;
        } else {
          p(i) = ::vitscale::kernels::detail::store_as<PT>(ema(i));
        }
      });
}

// The value of arena element e of a moment, as float, and its store (rounded into the moment's type).
template <class V>
KOKKOS_FORCEINLINE_FUNCTION float load(const V& v, std::int64_t e) {
  return static_cast<float>(v(e));
}
template <class V>
KOKKOS_FORCEINLINE_FUNCTION void store(const V& v, std::int64_t e, float x) {
  v(e) = ::vitscale::kernels::detail::store_as<typename V::non_const_value_type>(x);
}
// β·m for element e of a moment, as optax forms it (decayed, in optimizer_layout.hpp).
template <class V>
KOKKOS_FORCEINLINE_FUNCTION float decayed(float beta, const V& v, std::int64_t e) {
  return decayed<typename V::non_const_value_type>(beta, v(e));
}

}  // namespace detail

// The optimizer that runs Rule (see the top of this file) over a model's (or tensor_set's) parameters.
template <class Model, class Rule>
class fused {
 public:
  using execution_space = typename Model::execution_space;
  using rule = Rule;
  using options = typename Rule::options;
  using state_layout = typename Rule::template state_layout<typename Model::policy>;
  using state_type = typename detail::moments_of<state_layout, typename Model::policy, typename Model::memory_space,
                                                 std::make_index_sequence<state_layout::moment_count()>>::type;

  // The EMA's shadow: float whatever the parameters' type. A bf16 average could not move: at d = 0.999 an
  // increment (1 − d)·(p − ema) is far below half a bf16 step of ema (2^-9 relative) and rounds away, so a bf16
  // EMA stays where it started. timm keeps it in the model's dtype because PyTorch's masters are float.
  using ema_type = float;
  using ema_view = Kokkos::View<ema_type*, typename Model::memory_space>;

  explicit fused(Model& model, options o = {})
      : model_(&model), o_(checked(o)),
        layout_(detail::make_layout<execution_space>(static_cast<const Model&>(model).parameters(), min_dim(o),
                                                     detail::model_axis_of<Model>::get(model))) {
    allocate(std::make_index_sequence<state_layout::moment_count()>());
    if (o_.ema.enabled()) {
      ema_ = ema_view(std::string("vitscale::") + Rule::name + "::ema", layout_.size);
      reset_ema();
    }
  }

  // One update from model.gradients(): p ← p − lr·u − wd_group·decay_scale·p, unless a gradient is not finite:
  // then nothing changes, and the step is skipped (applied = false) while options.non_finite allows, or throws
  // non_finite_error naming the first tensor that holds one.
  step_report step(double lr, double decay_scale = 1.0) {
    if (ema_in_use_)
      ::vitscale::detail::fail(Rule::name, "::step: the model holds the EMA's parameters (an EMA scope is open); "
                               "end the scope (restore()) before training on");
    detail::check_step(Rule::name, lr, decay_scale, o_.weight_decay);
    const Model& m = *model_;
    const detail::grad_view<Model> g = m.gradients().all();
    const detail::gradient_summary summary = detail::summarise_gradients(m.space(), layout_, g);
    if (!summary.finite) {
      if (skipped_in_a_row_ >= o_.non_finite.skip_in_a_row) throw non_finite_gradient(summary);
      ++skipped_in_a_row_;
      ++skipped_;
      return {false, summary.norm};
    }
    skipped_in_a_row_ = 0;
    const float global = detail::clip_scales(m.space(), layout_, m.parameters().all(), g, o_.clip, summary.norm);
    const auto s = Rule::at_step(o_, steps_ + 1);
    if constexpr (detail::prepares<Rule>::value) Rule::prepare(m.space(), layout_, g, state_, s, global);
    const auto p = model_->parameters().all();
    const float wd_body = float(o_.weight_decay.body * decay_scale), wd_head = float(o_.weight_decay.head * decay_scale);
    if (has_ema())
      detail::apply_rule<Rule, true>(m.space(), layout_, p, g, state_, s, global, float(lr), wd_body, wd_head, ema_,
                                     float(1.0 - ema_decay(steps_ + 1)));
    else
      detail::apply_rule<Rule, false>(m.space(), layout_, p, g, state_, s, global, float(lr), wd_body, wd_head, ema_,
                                      0.0f);
    model_->parameters_changed();
    ++steps_;
    return {true, summary.norm};
  }

  // Steps skipped for a non-finite gradient: in all (also after resuming: a checkpoint keeps the count), and
  // since the last applied one.
  std::int64_t skipped_steps() const { return skipped_; }
  int skipped_in_a_row() const { return skipped_in_a_row_; }
  void set_skipped_steps(std::int64_t n) {
    if (n < 0) ::vitscale::detail::fail(Rule::name, ": the skipped-step count must be non-negative, got ", n);
    skipped_ = n;
  }

  std::int64_t steps() const { return steps_; }
  // "optimizer::adamw", ...: what a training checkpoint records and checks on load.
  const char* name() const { return Rule::name; }
  // Sets the count of steps taken, as when resuming from a checkpoint (Adam's bias correction and Adafactor's
  // β2 schedule depend on it).
  void set_steps(std::int64_t steps) {
    if (steps < 0) ::vitscale::detail::fail(Rule::name, ": the step count must be non-negative, got ", steps);
    steps_ = steps;
  }
  const options& hyperparameters() const { return o_; }
  // Bytes of every state arena; equals the accounting's optimizer_state for the same declaration. The EMA's
  // shadow is not in it (it is no rule's state): ema_bytes(), the accounting's parameter_ema.
  std::size_t state_bytes() const { return bytes(std::make_index_sequence<state_layout::moment_count()>()); }

  // ---- The EMA of the parameters (options.ema; optim::ema_policy)
  bool has_ema() const { return ema_.extent(0) > 0; }
  // Bytes of the EMA's shadow: 4 per parameter when on, 0 when off (nothing is allocated).
  std::size_t ema_bytes() const { return ema_.extent(0) * sizeof(ema_type); }
  // d_t, the decay the t-th applied step uses (0 while the EMA is a copy; see ema_policy).
  double ema_decay(std::int64_t t) const { return detail::ema_decay_at(o_.ema, t); }
  // The shadow: [arena size] floats with the parameter arena's offsets (empty when off). While an EMA scope is
  // open over float parameters it holds the training parameters (they traded places).
  const ema_view& ema() const { return ema_; }
  // ema ← the parameters as they are now, e.g. after loading other weights into the model once the optimizer
  // exists (it starts as a copy of the parameters it was made with; a run's first applied step, d_1 = 0, copies
  // them anyway).
  void reset_ema() {
    require_ema("reset_ema");
    detail::copy_to_ema(model_->space(), model_->parameters().all(), ema_);
    model_->space().fence();
  }
  // The EMA's tensors: f(timm name, view, shape) per parameter, the views aliasing the shadow (writing them
  // restores it). Nothing without an EMA.
  template <class F>
  void visit_ema(F&& f) const {
    if (!has_ema()) return;
    if (ema_in_use_)
      ::vitscale::detail::fail(Rule::name, ": the EMA's shadow holds the training parameters while an EMA scope is "
                               "open; end it before reading or saving the EMA");
    const auto& table = static_cast<const Model&>(*model_).parameters().table();
    for (const detail::tensor_desc& d : layout_.host_desc) {
      const auto& t = table[std::size_t(d.index)];
      f(t.full_name(), Kokkos::subview(ema_, std::make_pair(std::size_t(d.offset), std::size_t(d.offset + d.numel))),
        std::vector<std::int64_t>(t.dims.begin(), t.dims.begin() + t.rank));
    }
  }

  // While it lives, the model runs with the EMA's parameters (rounded into the parameters' type); restore() or
  // its end puts the training parameters back bit for bit. Float parameters trade places with the shadow (no
  // copy, no memory); other types keep a copy of the parameters for the scope's life (their bytes again), since
  // a float average rounded into them cannot be swapped back. step(), reset_ema() and visit_ema() fail while it
  // is open. It must not outlive (or see moved) its optimizer.
  class ema_scope {
   public:
    ema_scope(ema_scope&& o) noexcept : opt_(o.opt_) { o.opt_ = nullptr; }
    ema_scope(const ema_scope&) = delete;
    ema_scope& operator=(const ema_scope&) = delete;
    ema_scope& operator=(ema_scope&&) = delete;
    ~ema_scope() { restore(); }
    // The training parameters back (bit-exact); the scope is then over. Idempotent.
    void restore() {
      if (opt_ != nullptr) opt_->leave_ema();
      opt_ = nullptr;
    }

   private:
    friend class fused;
    explicit ema_scope(fused* o) : opt_(o) {}
    fused* opt_;
  };
  // Evaluate with the EMA: `{ auto scope = opt.use_ema(); evaluate(model); }`. An error without an EMA, or
  // with a scope already open.
  [[nodiscard]] ema_scope use_ema() {
    require_ema("use_ema");
    const auto p = model_->parameters().all();
    if constexpr (!std::is_same<typename std::decay_t<decltype(p)>::non_const_value_type, float>::value) {
      saved_ = saved_view(std::string("vitscale::") + Rule::name + "::training_parameters", p.extent(0));
      Kokkos::deep_copy(model_->space(), saved_, p);
    }
    detail::ema_into_parameters(model_->space(), p, ema_);
    model_->space().fence();
    ema_in_use_ = true;
    model_->parameters_changed();
    return ema_scope(this);
  }
  bool ema_in_use() const { return ema_in_use_; }
  // The I-th declared moment (a View, or a detail::factored_moment).
  template <std::size_t I>
  const auto& moment() const {
    return state_.template get<I>();
  }
  // Whether tensor `tensor` of the table has a factored second moment (never, without a factored moment).
  bool factored(int tensor) const { return layout_.host_desc[std::size_t(tensor)].factored != 0; }

  // The state a checkpoint saves: f(name, view, shape) per tensor, moment by moment in declaration order:
  // "<moment>.<timm name>" with the parameter's shape; a factored moment's tensors as "<moment>_row.<timm name>"
  // [matrix_rows] and "<moment>_col.<timm name>" [matrix_cols], or whole as "<moment>.<timm name>". The views
  // alias the optimizer's arenas (writing them restores them).
  template <class F>
  void visit_state(F&& f) const {
    visit(f, std::make_index_sequence<state_layout::moment_count()>());
  }

 private:
  static const options& checked(const options& o) {
    detail::check_options(Rule::name, o.weight_decay, o.clip, o.non_finite);
    detail::check_ema(Rule::name, o.ema);
    Rule::check(o);
    return o;
  }
  // The factoring threshold of a rule with a factored moment (Adafactor's option); 0, none factored, otherwise.
  static std::int64_t min_dim([[maybe_unused]] const options& o) {
    if constexpr (detail::has_factored_moment<state_layout>())
      return o.min_dim_size_to_factor;
    else
      return 0;
  }

  template <std::size_t... I>
  void allocate(std::index_sequence<I...>) {
    (allocate_one<I>(), ...);
  }
  template <std::size_t I>
  void allocate_one() {
    constexpr optim::moment decl = state_layout::moments[I];
    auto& v = state_.template get<I>();
    const std::string label = std::string("vitscale::") + Rule::name + "::" + decl.name;
    using V = std::remove_reference_t<decltype(v)>;
    if constexpr (decl.shape == optim::extent::per_element) {
      v = V(label, layout_.size);
    } else {
      using view = decltype(v.stats);
      v.stats = view(label + "_factored", std::size_t(layout_.factored_stats));
      v.whole = view(label, std::size_t(layout_.unfactored));
      v.norm_sum = layout_.norm_sum;
      v.tensor_scale = layout_.tensor_scale;
    }
  }

  template <std::size_t... I>
  std::size_t bytes(std::index_sequence<I...>) const {
    return (std::size_t(0) + ... + bytes_one<I>());
  }
  template <std::size_t I>
  std::size_t bytes_one() const {
    const auto& v = state_.template get<I>();
    if constexpr (state_layout::moments[I].shape == optim::extent::per_element)
      return v.extent(0) * sizeof(typename std::decay_t<decltype(v)>::value_type);
    else
      return (v.stats.extent(0) + v.whole.extent(0)) * sizeof(typename std::decay_t<decltype(v)>::value_type);
  }

  template <class F, std::size_t... I>
  void visit(F& f, std::index_sequence<I...>) const {
    (visit_one<I>(f), ...);
  }
  template <std::size_t I, class F>
  void visit_one(F& f) const {
    constexpr optim::moment decl = state_layout::moments[I];
    const auto& table = static_cast<const Model&>(*model_).parameters().table();
    const auto& v = state_.template get<I>();
    const auto slice = [](const auto& view, std::int64_t begin, std::int64_t count) {
      return Kokkos::subview(view, std::make_pair(std::size_t(begin), std::size_t(begin + count)));
    };
    for (const detail::tensor_desc& d : layout_.host_desc) {
      const auto& t = table[std::size_t(d.index)];
      const std::vector<std::int64_t> shape(t.dims.begin(), t.dims.begin() + t.rank);
      if constexpr (decl.shape == optim::extent::per_element) {
        f(std::string(decl.name) + "." + t.full_name(), slice(v, d.offset, d.numel), shape);
      } else if (d.factored) {
        f(std::string(decl.name) + "_row." + t.full_name(), slice(v.stats, d.row_stat, d.rows),
          std::vector<std::int64_t>{d.rows});
        f(std::string(decl.name) + "_col." + t.full_name(), slice(v.stats, d.col_stat, d.cols),
          std::vector<std::int64_t>{d.cols});
      } else {
        f(std::string(decl.name) + "." + t.full_name(), slice(v.whole, d.v_offset, d.numel), shape);
      }
    }
  }

  // The error for a non-finite gradient: the first tensor that holds one on this rank, its first bad element
  // (read back on the host: this is the failure path), or the overflow of a sum of finite squares.
  non_finite_error non_finite_gradient(const detail::gradient_summary& summary) const {
    const Model& m = *model_;
    std::string tensor, what;
    if (summary.first_bad < 0) {
      what = "a gradient on another rank of the model axis is not finite";
    } else {
      tensor = m.parameters().table()[std::size_t(summary.first_bad)].full_name();
      const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m.gradients().vector(summary.first_bad));
      const std::int64_t n = std::int64_t(host.extent(0));
      const std::int64_t i = ::vitscale::detail::first_non_finite(host.data(), n);
      what = "the gradient of '" + tensor + "' ";
      if (i >= 0)
        what += std::string("is ") + ::vitscale::detail::non_finite_name(host(i)) + " at element " + std::to_string(i) +
                " of " + std::to_string(n);
      else
        what += "is finite, but the sum of its squares overflows float (a norm past 1.8e19)";
    }
    return non_finite_error(std::string(Rule::name) + ": " + what + "; the update was not applied (parameters and " +
                                "optimizer state are unchanged" +
                                (o_.non_finite.skip_in_a_row > 0
                                     ? ", " + std::to_string(skipped_in_a_row_) + " steps skipped in a row before it"
                                     : std::string()) +
                                ")",
                            "gradient", tensor);
  }

  void require_ema(const char* what) const {
    if (!has_ema())
      ::vitscale::detail::fail(Rule::name, "::", what, ": this optimizer keeps no EMA of the parameters (options.ema.decay "
                               "is 0; set it, e.g. 0.9998, to keep one)");
    if (ema_in_use_)
      ::vitscale::detail::fail(Rule::name, "::", what, ": an EMA scope is open (the model holds the EMA's parameters); "
                               "end it first");
  }
  void leave_ema() {
    if (!ema_in_use_) return;
    const auto p = model_->parameters().all();
    if constexpr (std::is_same<typename std::decay_t<decltype(p)>::non_const_value_type, float>::value) {
      detail::ema_into_parameters(model_->space(), p, ema_);  // the swap back
    } else {
      Kokkos::deep_copy(model_->space(), p, saved_);
      model_->space().fence();
      saved_ = saved_view();
    }
    model_->space().fence();
    ema_in_use_ = false;
    model_->parameters_changed();
  }

  using saved_view = Kokkos::View<typename Model::param_type*, typename Model::memory_space>;

  Model* model_;
  options o_;
  detail::layout<execution_space> layout_;
  state_type state_{};
  ema_view ema_{};
  saved_view saved_{};  // the training parameters while an EMA scope is open (parameters other than float)
  bool ema_in_use_ = false;
  std::int64_t steps_ = 0;
  std::int64_t skipped_ = 0;
  int skipped_in_a_row_ = 0;
};

}  // namespace vitscale::optimizer
