#pragma once
// What every optimizer shares (train/optimizer.hpp): the parameter arena cut into segments that never cross a
// tensor, each tensor's decay group, AGC unit and Adafactor factoring, the clipping passes, and the fixed-order
// reductions (no atomics: a step is bit-identical for any thread count), completed across a model axis where
// the arena is split. The rules (train/sgd_momentum.hpp, adam.hpp, adafactor.hpp, lion.hpp) see none of this
// beyond a tensor_desc and an arena index.

#include <vitscale/config/nfnet_tensors.hpp>
#include <vitscale/config/sharding.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/bf16.hpp>
#include <vitscale/core/communicator.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/finite.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace vitscale::optim {

// Decoupled weight decay per parameter group (see the convention above).
struct decay {
  double head = 0.0, body = 0.0;
};

// Gradient clipping, applied before the optimizer: AGC first, then the global norm.
struct clipping {
  double global_norm = 0.0;  // 0: off; else scale all gradients so that ‖g‖ ≤ global_norm
  double agc = 0.0;          // 0: off; else NFNet's unit-wise AGC with this λ (eps 1e-3 as NFNet)
};

// What a step does when a gradient is not finite: skip the update — parameters, state and step count unchanged
// — up to `skip_in_a_row` times in a row, and throw non_finite_error (core/finite.hpp) beyond. This is optax's
// apply_if_finite with max_consecutive_errors = skip_in_a_row, except for what comes after: optax then applies
// the update, which spreads the NaN into every parameter; here the step fails. 0 (the default): the first
// non-finite gradient fails the step.
struct non_finite_policy {
  int skip_in_a_row = 0;
};

// An exponential moving average of the parameters (Polyak averaging; timm's ModelEmaV3, ViT-22B's fine-tuning),
// kept by the optimizer in a float shadow of the parameter arena and updated in its fused pass, right after a
// parameter is stored: ema ← d_t·ema + (1 − d_t)·p, with p the stored (rounded) new value. d_t is timm's
// ModelEmaV3.get_decay(t) for the t-th applied step (t = 1, 2, …; timm's train.py passes num_updates):
//   k = max(0, t − update_after_step − 1);  k = 0: d_t = 0 (the EMA becomes a copy of the parameters);
//   use_warmup: d_t = clamp(1 − (1 + k/warmup_gamma)^−warmup_power, min_decay, decay);  else d_t = decay.
// (That is timm's warmup, after @crowsonkb: γ = 1, power = 2/3 reaches 0.999 at 31.6k steps, power = 3/4 at 10k.
// It is not TensorFlow's min(decay, (1 + t)/(10 + t)), which timm does not use.) A skipped step (non-finite
// gradients) leaves the EMA as it was. decay = 0: off, and nothing is allocated. big_vision's trainers that keep
// one (trainers/proj/jetformer/train.py, config.ema_decay) average the same way with a constant decay from the
// first step, so their EMA keeps a d^t share of the initial parameters where timm's (and this) starts at p_1.
struct ema_policy {
  double decay = 0.0;  // 0: off; else in (0, 1) (timm's default 0.9998 in train.py, 0.9999 in the class)
  bool use_warmup = false;
  double warmup_gamma = 1.0;
  double warmup_power = 2.0 / 3.0;
  double min_decay = 0.0;  // with use_warmup: the least decay once k > 0
  std::int64_t update_after_step = 0;
  bool enabled() const { return decay > 0; }
};

}  // namespace vitscale::optim

namespace vitscale::optimizer {

using optim::clipping;
using optim::decay;
using optim::ema_policy;
using optim::non_finite_policy;

namespace detail {

constexpr std::int64_t segment_size = 4096;

enum decay_group : int { no_decay = 0, body_group = 1, head_group = 2 };

struct tensor_desc {
  int index;
  std::int64_t offset, numel, rows, cols;
  int group;
  int factored;        // Adafactor: second moment as row and column statistics
  int normalize_rows;  // which statistic is divided by its mean (optax: the one along the smaller dimension)
  std::int64_t row_stat, col_stat;  // offsets of the statistics in the factored arena
  std::int64_t v_offset;            // offset of an unfactored tensor's whole second moment (Adafactor)
  int unit_base;                    // first AGC unit of the tensor
  int unit_per_row;                 // weights: one unit per row; otherwise the whole tensor is one unit
  int agc;                          // AGC clips this tensor's units (NFNet exempts its classifier)
  int split;                        // on a model axis: 0 whole (or replicated), 1 rows split, 2 columns split
  std::int64_t full_rows, full_cols, full_numel;  // the unsharded tensor's (= rows, cols, numel when whole)
};

struct segment {
  int tensor;
  std::int64_t begin, end;  // arena offsets
};

struct stat_job {  // one row (or column) statistic of a factored tensor
  int tensor;
  std::int64_t index;
};

// Entries of a float View that hold a partial sum over a split dimension, to be summed across the model axis
// (sum_over_axis); the other entries are whole on this rank, or the same on every rank.
template <class ExecSpace>
struct axis_entries {
  Kokkos::View<std::int64_t*, typename ExecSpace::memory_space> index;
  Kokkos::View<float*, typename ExecSpace::memory_space> packed;
  std::size_t count() const { return index.extent(0); }
};

template <class ExecSpace>
struct layout {
  using mem = typename ExecSpace::memory_space;
  std::vector<tensor_desc> host_desc;
  std::vector<segment> host_segments;
  Kokkos::View<tensor_desc*, mem> desc;
  Kokkos::View<segment*, mem> segments;
  Kokkos::View<int*, mem> unit_tensor;  // tensor of each AGC unit
  Kokkos::View<float*, mem> unit_scale;
  Kokkos::View<float*, mem> tensor_scale;  // per-tensor factor (Adafactor's block-RMS clip)
  Kokkos::View<float*, mem> partial;       // one float per segment
  int units = 0;
  std::size_t size = 0;
  std::int64_t factored_stats = 0;
  std::int64_t unfactored = 0;  // elements of the tensors that are not factored
  std::vector<stat_job> host_rows, host_cols;
  Kokkos::View<stat_job*, mem> row_jobs, col_jobs;
  Kokkos::View<float*, mem> norm_sum;  // per tensor: sum of the normalised statistic (its mean's numerator)
  Kokkos::View<float*, mem> stat_sum;  // the factored statistics' new sums, before the moving average
  Kokkos::View<float*, mem> unit_sums;  // AGC: ‖g‖², ‖w‖² per unit, interleaved
  // The model axis the arena is split over (null: none), and what is summed over it.
  communicator* axis = nullptr;
  bool split = false;  // any tensor split
  axis_entries<ExecSpace> unit_partial, stat_partial, norm_partial;
};

template <class View>
Kokkos::View<typename View::non_const_value_type*, typename View::memory_space> upload(
    const char* label, const std::vector<typename View::non_const_value_type>& host) {
  Kokkos::View<typename View::non_const_value_type*, typename View::memory_space> v(std::string(label), host.size());
  auto m = Kokkos::create_mirror_view(v);
  for (std::size_t k = 0; k < host.size(); ++k) m(k) = host[k];
  Kokkos::deep_copy(v, m);
  return v;
}

// How the model axis splits the tensors of an arena: a model's parameter_arena knows (its shape_type and
// shard()); a tensor_set's arena is never split.
template <class Arena, class = void>
struct arena_sharding {
  static tensor_split split(const Arena&, int) { return {}; }
  static int count(const Arena&) { return 1; }
};
template <class Arena>
struct arena_sharding<Arena, std::void_t<typename Arena::shape_type>> {
  static tensor_split split(const Arena& a, int i) { return shard_split_of<typename Arena::shape_type>(a.info(i)); }
  static int count(const Arena& a) { return a.shard().count; }
};

template <class ExecSpace>
axis_entries<ExecSpace> make_axis_entries(const char* label, const std::vector<std::int64_t>& host) {
  axis_entries<ExecSpace> a;
  a.index = upload<Kokkos::View<std::int64_t*, typename ExecSpace::memory_space>>(label, host);
  a.packed = Kokkos::View<float*, typename ExecSpace::memory_space>(std::string(label) + "_packed", host.size());
  return a;
}

// How the optimizers treat a tensor of a table: its decay group, whether each row is an AGC unit (else the whole
// tensor is one: DeepMind's unitwise_norm takes vectors and scalars whole), and whether AGC clips it.
struct tensor_treatment {
  int group;
  bool unit_per_row;
  bool agc;
};
// A ViT's tensor (config/tensors.hpp): weights decayed (the classifier in its own group), AGC everywhere.
inline tensor_treatment treatment_of(const tensor_info& t) {
  const bool weight = t.role == tensor_role::weight;
  return {!weight ? no_decay : t.part == component::classifier ? head_group : body_group, weight, true};
}
// An NFNet's tensor (config/nfnet_tensors.hpp): conv and squeeze-excite weights are the body, the classifier's
// weight the head; gains, biases and skip gains are not decayed. AGC spares the classifier (weight and bias), as
// the NFNet paper does ("we do not clip the final linear layer").
inline tensor_treatment treatment_of(const nfnet_tensor_info& t) {
  switch (t.role) {
    case nfnet_role::conv_weight:
    case nfnet_role::se_weight: return {body_group, true, true};
    case nfnet_role::linear_weight: return {head_group, true, false};
    default: return {no_decay, false, t.part != nfnet_part::head};
  }
}

// The table of a parameter arena (a std::array or std::vector of tensor_info or nfnet_tensor_info) and its
// offsets, cut into
// segments; min_dim > 0 marks the factored tensors. `axis`: the model axis the arena is split over (null
// when it is not split).
template <class ExecSpace, class Arena>
layout<ExecSpace> make_layout(const Arena& params, std::int64_t min_dim, communicator* axis = nullptr) {
  using mem = typename ExecSpace::memory_space;
  layout<ExecSpace> l;
  const auto& table = params.table();
  const int m = arena_sharding<Arena>::count(params);
  std::vector<int> unit_tensor;
  std::vector<std::int64_t> unit_partial, stat_partial, norm_partial;
  for (std::size_t i = 0; i < table.size(); ++i) {
    const auto& t = table[i];
    const tensor_treatment treatment = treatment_of(t);
    tensor_desc d{};
    d.index = int(i);
    d.offset = static_cast<std::int64_t>(params.offset(int(i)));
    d.numel = t.numel();
    d.rows = t.matrix_rows();
    d.cols = t.matrix_cols();
    const tensor_split sp = m > 1 ? arena_sharding<Arena>::split(params, int(i)) : tensor_split{};
    d.split = !sp.sharded() ? 0 : sp.dim == shard_dim::out ? 1 : 2;
    d.full_rows = d.split == 1 ? d.rows * m : d.rows;
    d.full_cols = d.split == 2 ? d.cols * m : d.cols;
    d.full_numel = d.split ? d.numel * m : d.numel;
    if (d.split) l.split = true;
    d.group = treatment.group;
    d.agc = treatment.agc ? 1 : 0;
    // Factoring and normalisation are the unsharded tensor's, so that a shard is stepped as its whole.
    d.factored = min_dim > 0 && d.full_rows >= min_dim && d.full_cols >= min_dim;
    d.normalize_rows = d.full_rows <= d.full_cols;
    d.row_stat = d.col_stat = 0;
    if (d.factored) {
      d.row_stat = l.factored_stats;
      d.col_stat = l.factored_stats + d.rows;
      l.factored_stats += d.rows + d.cols;
      for (std::int64_t r = 0; r < d.rows; ++r) l.host_rows.push_back({int(i), r});
      for (std::int64_t c = 0; c < d.cols; ++c) l.host_cols.push_back({int(i), c});
      d.v_offset = 0;
      // A row statistic sums along the columns: partial when the columns are split; a column one likewise.
      if (d.split == 2)
        for (std::int64_t r = 0; r < d.rows; ++r) stat_partial.push_back(d.row_stat + r);
      if (d.split == 1)
        for (std::int64_t c = 0; c < d.cols; ++c) stat_partial.push_back(d.col_stat + c);
      if ((d.normalize_rows && d.split == 1) || (!d.normalize_rows && d.split == 2)) norm_partial.push_back(int(i));
    } else {
      d.v_offset = l.unfactored;
      l.unfactored += d.numel;
    }
    d.unit_base = l.units;
    d.unit_per_row = treatment.unit_per_row ? 1 : 0;
    const int n_units = d.unit_per_row ? int(d.rows) : 1;
    for (int u = 0; u < n_units; ++u) unit_tensor.push_back(int(i));
    // A unit is cut by the split unless it is a row of a row-split matrix.
    if (d.split && !(d.unit_per_row && d.split == 1))
      for (int u = 0; u < n_units; ++u) {
        unit_partial.push_back(2 * std::int64_t(l.units + u));
        unit_partial.push_back(2 * std::int64_t(l.units + u) + 1);
      }
    l.units += n_units;
    for (std::int64_t b = 0; b < d.numel; b += segment_size)
      l.host_segments.push_back({int(i), d.offset + b, d.offset + (b + segment_size < d.numel ? b + segment_size : d.numel)});
    l.host_desc.push_back(d);
  }
  l.size = params.size();
  l.desc = upload<Kokkos::View<tensor_desc*, mem>>("vitscale::optim::tensors", l.host_desc);
  l.segments = upload<Kokkos::View<segment*, mem>>("vitscale::optim::segments", l.host_segments);
  l.unit_tensor = upload<Kokkos::View<int*, mem>>("vitscale::optim::unit_tensor", unit_tensor);
  l.unit_scale = Kokkos::View<float*, mem>("vitscale::optim::unit_scale", std::size_t(l.units));
  Kokkos::deep_copy(l.unit_scale, 1.0f);
  l.tensor_scale = Kokkos::View<float*, mem>("vitscale::optim::tensor_scale", l.host_desc.size());
  Kokkos::deep_copy(l.tensor_scale, 1.0f);
  l.partial = Kokkos::View<float*, mem>("vitscale::optim::partial", l.host_segments.size());
  l.row_jobs = upload<Kokkos::View<stat_job*, mem>>("vitscale::optim::row_jobs", l.host_rows);
  l.col_jobs = upload<Kokkos::View<stat_job*, mem>>("vitscale::optim::col_jobs", l.host_cols);
  l.norm_sum = Kokkos::View<float*, mem>("vitscale::optim::norm_sum", l.host_desc.size());
  l.stat_sum = Kokkos::View<float*, mem>("vitscale::optim::stat_sum", std::size_t(l.factored_stats));
  l.unit_sums = Kokkos::View<float*, mem>("vitscale::optim::unit_sums", 2 * std::size_t(l.units));
  l.axis = l.split ? axis : nullptr;
  if (l.split && !axis)
    ::vitscale::detail::fail("optimizer: the parameters are split over a model axis of ", m,
                             ", but no communicator for that axis was given");
  l.unit_partial = make_axis_entries<ExecSpace>("vitscale::optim::unit_partial", unit_partial);
  l.stat_partial = make_axis_entries<ExecSpace>("vitscale::optim::stat_partial", stat_partial);
  l.norm_partial = make_axis_entries<ExecSpace>("vitscale::optim::norm_partial", norm_partial);
  return l;
}

// β·m as optax computes it for a moment stored in M: with a bf16 accumulator JAX's weak typing rounds β itself
// to bf16 (0.9 becomes 0.8984375) and forms the product in bf16 before the float gradient term is added. We do
// the same, so that bf16 moments follow optax / big_vision step by step; for float moments this is β·m.
template <class M>
KOKKOS_FORCEINLINE_FUNCTION float decayed(float beta, M m) {
  const float b = static_cast<float>(::vitscale::kernels::detail::store_as<M>(beta));
  return static_cast<float>(::vitscale::kernels::detail::store_as<M>(b * static_cast<float>(m)));
}

// The clip factor of arena element e (AGC unit scale times the global-norm scale).
template <class UnitScale>
KOKKOS_INLINE_FUNCTION float clip_factor(const tensor_desc& d, std::int64_t e, const UnitScale& unit_scale,
                                         float global) {
  const std::int64_t unit = d.unit_base + (d.unit_per_row ? (e - d.offset) / d.cols : 0);
  return unit_scale(unit) * global;
}

// f(desc, e) for every arena element e, one team per segment.
template <class ExecSpace, class F>
void for_each_element(const ExecSpace& space, const char* label, const layout<ExecSpace>& l, const F& f) {
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  const auto desc = l.desc;
  const auto segments = l.segments;
  Kokkos::parallel_for(
      label, policy(space, static_cast<int>(l.host_segments.size()), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) {
        const segment s = segments(member.league_rank());
        const tensor_desc d = desc(s.tensor);
        ::vitscale::kernels::detail::row_for(member, int(s.end - s.begin),
                                             [&](int j) { f(d, s.begin + std::int64_t(j)); });
      });
}

// Σ_e term(desc, e) per segment, in a fixed order, into l.partial; returned on the host.
template <class ExecSpace, class Term>
std::vector<float> segment_sums(const ExecSpace& space, const layout<ExecSpace>& l, const Term& term) {
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  const auto desc = l.desc;
  const auto segments = l.segments;
  const auto partial = l.partial;
  Kokkos::parallel_for(
      "vitscale::optim::segment_sums", policy(space, static_cast<int>(l.host_segments.size()), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) {
        const segment s = segments(member.league_rank());
        const tensor_desc d = desc(s.tensor);
        const float sum = ::vitscale::kernels::detail::row_sum<float>(
            member, int(s.end - s.begin), [&](int j) { return term(d, s.begin + std::int64_t(j)); });
        Kokkos::single(Kokkos::PerTeam(member), [&]() { partial(member.league_rank()) = sum; });
      });
  space.fence();
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), partial);
  return std::vector<float>(host.data(), host.data() + host.extent(0));
}

// Sums the entries `e` of v across the layout's model axis (nothing without one): they are packed, all-reduced
// and put back.
template <class ExecSpace, class V>
void sum_over_axis(const ExecSpace& space, const layout<ExecSpace>& l, const axis_entries<ExecSpace>& e, const V& v) {
  if (!l.axis || e.count() == 0) return;
  const auto index = e.index;
  const auto packed = e.packed;
  using range = Kokkos::RangePolicy<ExecSpace>;
  Kokkos::parallel_for(
      "vitscale::optim::pack_partial_sums", range(space, 0, e.count()),
      KOKKOS_LAMBDA(std::size_t k) { packed(k) = v(index(k)); });
  space.fence();
  l.axis->all_reduce(packed.data(), packed.data(), e.count(), "optimizer: partial sums over the model axis");
  Kokkos::parallel_for(
      "vitscale::optim::unpack_partial_sums", range(space, 0, e.count()),
      KOKKOS_LAMBDA(std::size_t k) { v(index(k)) = packed(k); });
}

// The gradients' global norm and whether every gradient is finite, from one reduction over the arena: Σ g² per
// segment. A NaN or an infinity makes its segment's sum non-finite, and so does a sum of squares past the float
// range (‖g‖ > 1.8e19 in one segment), which is divergence as surely. On a model axis the split tensors' shares
// and a "not finite here" flag are summed across it, so every rank of the axis takes the same decision.
struct gradient_summary {
  double norm = 0;          // ‖g‖ over the whole (unsharded) model, before any clipping
  bool finite = true;       // every gradient finite, and the sum of squares too
  int first_bad = -1;       // the table index of the first tensor whose sum is not finite on this rank (-1: none)
};

// The summary of Σ_e value(d, e)² (summarise_gradients: value = g; the norm after AGC: value = the clipped g).
template <class ExecSpace, class Value>
gradient_summary sum_of_squares(const ExecSpace& space, const layout<ExecSpace>& l, const Value& value) {
  const auto partial = segment_sums(space, l, KOKKOS_LAMBDA(const tensor_desc& d, std::int64_t e) {
    const float x = value(d, e);
    return x * x;
  });
  gradient_summary s;
  // Whole (or replicated) tensors once; the split ones' shares summed across the model axis.
  double whole = 0, split = 0;
  for (std::size_t k = 0; k < partial.size(); ++k) {
    const tensor_desc& d = l.host_desc[std::size_t(l.host_segments[k].tensor)];
    if (s.first_bad < 0 && !::vitscale::detail::finite_bits(partial[k])) s.first_bad = d.index;
    (d.split ? split : whole) += double(partial[k]);
  }
  bool bad_somewhere = s.first_bad >= 0;
  if (l.axis) {
    float shared[2] = {float(split), bad_somewhere ? 1.0f : 0.0f};
    l.axis->all_reduce(shared, shared, 2, "optimizer: gradient norm and finiteness");
    split = double(shared[0]);
    bad_somewhere = !(shared[1] == 0.0f);
  }
  s.norm = std::sqrt(whole + split);
  s.finite = !bad_somewhere && ::vitscale::detail::finite_bits(s.norm);
  return s;
}

template <class ExecSpace, class G>
gradient_summary summarise_gradients(const ExecSpace& space, const layout<ExecSpace>& l, const G& g) {
  return sum_of_squares(space, l, KOKKOS_LAMBDA(const tensor_desc&, std::int64_t e) { return static_cast<float>(g(e)); });
}

// Sets l.unit_scale (AGC) and returns the global-norm factor, for gradients g and parameters p whose
// unclipped global norm is `norm` (summarise_gradients): the norm after AGC is summed afresh, without AGC it is
// that one.
template <class ExecSpace, class P, class G>
float clip_scales(const ExecSpace& space, const layout<ExecSpace>& l, const P& p, const G& g, const clipping& c,
                  double norm) {
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  const auto unit_scale = l.unit_scale;
  if (c.agc > 0) {
    const auto desc = l.desc;
    const auto unit_tensor = l.unit_tensor;
    const auto sums = l.unit_sums;
    const float lambda = float(c.agc);
    Kokkos::parallel_for(
        "vitscale::optim::agc_norms", policy(space, l.units, Kokkos::AUTO),
        KOKKOS_LAMBDA(const typename policy::member_type& member) {
          const int u = member.league_rank();
          const tensor_desc d = desc(unit_tensor(u));
          const std::int64_t begin = d.offset + (d.unit_per_row ? std::int64_t(u - d.unit_base) * d.cols : 0);
          const int n = int(d.unit_per_row ? d.cols : d.numel);
          const float gg = ::vitscale::kernels::detail::row_sum<float>(member, n, [&](int j) {
            const float x = static_cast<float>(g(begin + j));
            return x * x;
          });
          const float ww = ::vitscale::kernels::detail::row_sum<float>(member, n, [&](int j) {
            const float x = static_cast<float>(p(begin + j));
            return x * x;
          });
          Kokkos::single(Kokkos::PerTeam(member), [&]() {
            sums(2 * u) = gg;
            sums(2 * u + 1) = ww;
          });
        });
    sum_over_axis(space, l, l.unit_partial, sums);
    Kokkos::parallel_for(
        "vitscale::optim::agc", Kokkos::RangePolicy<ExecSpace>(space, 0, std::size_t(l.units)),
        KOKKOS_LAMBDA(std::size_t u) {
          const float gn = ::vitscale::kmath::sqrt(sums(2 * u));
          const float wn = ::vitscale::kmath::sqrt(sums(2 * u + 1));
          const float max_norm = lambda * (wn > 1e-3f ? wn : 1e-3f);
          const bool exempt = desc(unit_tensor(u)).agc == 0;
          unit_scale(u) = exempt || gn < max_norm ? 1.0f : max_norm / (gn > 1e-6f ? gn : 1e-6f);
        });
  }
  if (!(c.global_norm > 0)) return 1.0f;
  if (c.agc > 0)
    norm = sum_of_squares(space, l, KOKKOS_LAMBDA(const tensor_desc& d, std::int64_t e) {
             return static_cast<float>(g(e)) * clip_factor(d, e, unit_scale, 1.0f);
           }).norm;
  return norm < c.global_norm ? 1.0f : float(c.global_norm / norm);
}

template <class Model, class = void>
struct model_axis_of {
  static communicator* get(const Model&) { return nullptr; }
};
template <class Model>
struct model_axis_of<Model, std::void_t<decltype(std::declval<const Model&>().model_axis())>> {
  static communicator* get(const Model& m) { return m.model_axis(); }
};

template <class Model>
using grad_view = Kokkos::View<const typename Model::grad_type*, Kokkos::LayoutRight, typename Model::memory_space,
                               Kokkos::MemoryUnmanaged>;
template <class Model, class T>
using state_view = Kokkos::View<T*, typename Model::memory_space>;


}  // namespace detail
}  // namespace vitscale::optimizer
