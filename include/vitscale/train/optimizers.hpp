#pragma once
// The seed papers' optimizers, each one pass over the parameter arena:
//
//   sgd_momentum<Model, Momentum>  optax.trace (big_vision's momentum_hp): m ← μ·m + g; u = m (Nesterov:
//                                  u = g + μ·m). Momentum stored in Momentum (default the policy's state
//                                  type; bf16 for big_vision's half-precision momentum).
//   adamw<Model>                   optax.scale_by_adam: both moments in the policy's state type, bias
//                                  corrected as optax (m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ), u = m̂/(√v̂ + ε)).
//   adam_bf16_momentum<Model>      the same with the first moment stored in bf16 (the ViT-G paper).
//   adafactor<Model>               big_vision.scale_by_adafactor (the ViT-G paper's modified Adafactor):
//                                  optax.scale_by_factored_rms with β2_t = min(β2_cap, 1 − (t+1)^−decay_rate),
//                                  ε1 = 1e-30 added to g², factored second moment for tensors whose matrix
//                                  view has both dimensions ≥ min_dim_size_to_factor, whole otherwise; optional
//                                  clip_by_block_rms (big_vision's default: off); then a bf16 first moment
//                                  m ← β1·m + (1 − β1)·u without bias correction, u = m. No parameter-scale
//                                  relative step; the learning rate is applied outside.
//
// Every optimizer, for each parameter p with gradient g:
//   g ← clip(g)                                  (options.clip: NFNet's AGC, then global-norm clipping)
//   p ← p − lr·u(g) − wd_group·decay_scale·p
// Weight-decay convention. decay_scale = schedule(step)/peak gives big_vision's convention (decay follows the
// schedule but not the base lr: ViT-G / ViT-22B use wd 3.0 on the head, 0.03 on the body this way);
// decay_scale = lr gives PyTorch's / optax's AdamW (p ← p − lr·wd·p).
// Groups: head = the classifier matrix (head.weight) only — big_vision's '.*head/kernel' does not match the
// MAP head or pre_logits; body = every other tensor with role weight (patch embedding, block matrices, MAP
// head matrices, pre_logits); no decay on biases, norms, position embeddings, class token and MAP probe.
//
// Clipping. AGC (NFNet, optax.adaptive_grad_clip with eps 1e-3): per unit, g ← g·min(1, λ·max(‖w‖, 1e-3)/‖g‖).
// A unit is one output unit of a weight (a row of its matrix view [out, in], which is optax's reduction over
// the input axes of a JAX kernel and timm's unitwise_norm); any other tensor is one unit (optax and timm for
// vectors; timm for the class token and position embedding). Global-norm clipping (optax.clip_by_global_norm)
// then scales all gradients by max/‖g‖ when ‖g‖ ≥ max. The gradients in the model are left as they were.
//
// Factoring (Adafactor) uses the parameter table's matrix view [matrix_rows, matrix_cols] (timm's [out, in];
// the patch kernel as [width, channels·patch²]), the layout config/optimizer_state.hpp accounts. big_vision
// factors JAX's own shapes ([in, out] kernels, [p, p, C, D] patch kernel, q/k/v as [D, H, hd]), so which
// tensors are factored can differ from a big_vision run of the same model; the arithmetic on a factored
// matrix is optax's: the statistic along the smaller dimension is divided by its mean, the other is not.
//
// Numerics: every update is computed in float from the stored values and rounded into the stored types
// (parameters float or bf16, moments float or bf16). As in optax with a bf16 accumulator, β·m is formed in
// bf16 (β rounded to bf16 too: big_vision's bf16 momentum 0.9 is in effect 0.8984375) before the float
// gradient term is added, the update uses the unrounded new moment, and only the stored
// moment is rounded.
//
// On a model axis (a model split by model/vit.hpp's model_parallel, config/sharding.hpp) each rank steps its
// own shard. The elementwise updates need nothing more; the sums over a split dimension are completed across
// the model axis before they are used, so that every rank applies exactly the unsharded optimizer to its
// elements:
//   AGC                the squared norms of a unit that the split cuts (a row of an input-split matrix, a split
//                      vector) are summed over the axis; an output-split matrix's rows are whole on one rank;
//   global norm        the split tensors' share of ‖g‖² is summed over the axis, the replicated tensors' share
//                      (the same on every rank) is counted once;
//   Adafactor          a factored tensor's statistic along its split dimension is a sum over the axis (the
//                      column statistic of a row-split matrix, the row statistic of a column-split one), the
//                      mean of a normalised statistic that is itself split likewise; which tensors are factored
//                      and which statistic is normalised follow the unsharded shape; the block RMS of a split
//                      tensor is summed over the axis and divided by its unsharded size.
// Each of these is one all-reduce of the partial sums (only those) per step, in a fixed order, so every rank
// of the axis computes the same factors.
//
// Memory: moments are arenas of the parameters' layout (one View each, same offsets), Adafactor's factored
// statistics one more arena of rows + cols per factored tensor; state_bytes() reports them and equals the
// config layouts (config/optimizer_state.hpp). Work is cut into segments of at most 4096 elements that never
// cross a tensor; every reduction (norms for clipping, Adafactor's statistics) is in a fixed order that depends
// only on the table, without atomics, so a step is bit-identical for any thread count.

#include <vitscale/config/optimizer_state.hpp>
#include <vitscale/config/sharding.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/bf16.hpp>
#include <vitscale/core/communicator.hpp>
#include <vitscale/core/error.hpp>
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

}  // namespace vitscale::optim

// The optimizers live in vitscale::optimizer: vitscale::optim already names the state *layouts* the accounting
// uses (config/optimizer_state.hpp: optim::sgd_momentum, optim::adam, optim::adam_bf16_momentum,
// optim::adafactor), and a class template cannot share a name with them. Each optimizer names its layout as
// `state_layout`, for training_memory<Shape, Policy, optimizer::adafactor<Model>::state_layout>.
namespace vitscale::optimizer {

using optim::clipping;
using optim::decay;

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

// The table of a parameter arena (a std::array or std::vector of tensor_info) and its offsets, cut into
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
    const tensor_info& t = table[i];
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
    d.group = t.role != tensor_role::weight ? no_decay : t.part == component::classifier ? head_group : body_group;
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
    d.unit_per_row = t.role == tensor_role::weight;
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
  l.axis->all_reduce(packed.data(), packed.data(), e.count());
  Kokkos::parallel_for(
      "vitscale::optim::unpack_partial_sums", range(space, 0, e.count()),
      KOKKOS_LAMBDA(std::size_t k) { v(index(k)) = packed(k); });
}

// Sets l.unit_scale (AGC) and returns the global-norm factor, for gradients g and parameters p.
template <class ExecSpace, class P, class G>
float clip_scales(const ExecSpace& space, const layout<ExecSpace>& l, const P& p, const G& g, const clipping& c) {
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
          unit_scale(u) = gn < max_norm ? 1.0f : max_norm / (gn > 1e-6f ? gn : 1e-6f);
        });
  }
  if (!(c.global_norm > 0)) return 1.0f;
  const auto partial = segment_sums(space, l, KOKKOS_LAMBDA(const tensor_desc& d, std::int64_t e) {
    const float x = static_cast<float>(g(e)) * clip_factor(d, e, unit_scale, 1.0f);
    return x * x;
  });
  // Whole (or replicated) tensors once; the split ones' shares summed across the model axis.
  double whole = 0, split = 0;
  for (std::size_t k = 0; k < partial.size(); ++k)
    (l.host_desc[std::size_t(l.host_segments[k].tensor)].split ? split : whole) += double(partial[k]);
  if (l.axis) {
    float s = float(split);
    l.axis->all_reduce(&s, &s, 1);
    split = double(s);
  }
  const double norm = std::sqrt(whole + split);
  return norm < c.global_norm ? 1.0f : float(c.global_norm / norm);
}

inline void check_options(const char* name, const decay& wd, const clipping& clip) {
  if (!(wd.head >= 0) || !(wd.body >= 0))
    ::vitscale::detail::fail(name, ": weight decay must be >= 0, got head ", wd.head, " and body ", wd.body);
  if (!(clip.global_norm >= 0) || !(clip.agc >= 0))
    ::vitscale::detail::fail(name, ": clipping thresholds must be >= 0 (0 is off), got global_norm ",
                             clip.global_norm, " and agc ", clip.agc);
}

inline void check_step(const char* name, double lr, double decay_scale) {
  if (!std::isfinite(lr) || !std::isfinite(decay_scale))
    ::vitscale::detail::fail(name, "::step: learning rate and decay scale must be finite, got ", lr, " and ",
                             decay_scale);
}

// ---- the update kernels (free functions: nvcc rejects extended lambdas in private members)

template <class ExecSpace, class P, class G, class M>
void sgd_update(const ExecSpace& space, const layout<ExecSpace>& l, const P& p, const G& g, const M& m,
                float global, float lr, float mu, int nesterov, float wd_body, float wd_head) {
  using PT = typename P::non_const_value_type;
  using MT = typename M::non_const_value_type;
  const auto unit_scale = l.unit_scale;
  for_each_element(space, "vitscale::optim::sgd_momentum", l, KOKKOS_LAMBDA(const tensor_desc& d, std::int64_t e) {
    const float gi = static_cast<float>(g(e)) * clip_factor(d, e, unit_scale, global);
    const float mi = gi + decayed<MT>(mu, m(e));
    const float u = nesterov ? gi + mu * mi : mi;
    m(e) = ::vitscale::kernels::detail::store_as<MT>(mi);
    const float pi = static_cast<float>(p(e));
    const float wd = d.group == head_group ? wd_head : d.group == body_group ? wd_body : 0.0f;
    p(e) = ::vitscale::kernels::detail::store_as<PT>(pi - lr * u - wd * pi);
  });
}

template <class ExecSpace, class P, class G, class M, class V>
void adam_update(const ExecSpace& space, const layout<ExecSpace>& l, const P& p, const G& g, const M& m,
                 const V& v, float global, float lr, float b1, float b2, float eps, float bc1, float bc2,
                 float wd_body, float wd_head) {
  using PT = typename P::non_const_value_type;
  using MT = typename M::non_const_value_type;
  using VT = typename V::non_const_value_type;
  const auto unit_scale = l.unit_scale;
  for_each_element(space, "vitscale::optim::adam", l, KOKKOS_LAMBDA(const tensor_desc& d, std::int64_t e) {
    const float gi = static_cast<float>(g(e)) * clip_factor(d, e, unit_scale, global);
    const float mi = (1.0f - b1) * gi + decayed<MT>(b1, m(e));
    const float vi = b2 * static_cast<float>(v(e)) + (1.0f - b2) * (gi * gi);
    m(e) = ::vitscale::kernels::detail::store_as<MT>(mi);
    v(e) = ::vitscale::kernels::detail::store_as<VT>(vi);
    const float u = (mi / bc1) / (::vitscale::kmath::sqrt(vi / bc2) + eps);
    const float pi = static_cast<float>(p(e));
    const float wd = d.group == head_group ? wd_head : d.group == body_group ? wd_body : 0.0f;
    p(e) = ::vitscale::kernels::detail::store_as<PT>(pi - lr * u - wd * pi);
  });
}

// Adafactor, first pass: the new second-moment statistics (factored tensors), with β2_t.
template <class ExecSpace, class G, class S>
void adafactor_statistics(const ExecSpace& space, const layout<ExecSpace>& l, const G& g, const S& stats,
                          float global, float beta2, float eps1) {
  using ST = typename S::non_const_value_type;
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  const auto desc = l.desc;
  const auto unit_scale = l.unit_scale;
  const auto rows = l.row_jobs;
  const auto cols = l.col_jobs;
  const auto sum = l.stat_sum;
  if (!l.host_rows.empty()) {
    Kokkos::parallel_for(
        "vitscale::optim::adafactor_rows", policy(space, int(l.host_rows.size()), Kokkos::AUTO),
        KOKKOS_LAMBDA(const typename policy::member_type& member) {
          const stat_job job = rows(member.league_rank());
          const tensor_desc d = desc(job.tensor);
          const std::int64_t begin = d.offset + job.index * d.cols;
          const float s = ::vitscale::kernels::detail::row_sum<float>(member, int(d.cols), [&](int j) {
            const float x = static_cast<float>(g(begin + j)) * clip_factor(d, begin + j, unit_scale, global);
            return x * x + eps1;
          });
          Kokkos::single(Kokkos::PerTeam(member), [&]() { sum(d.row_stat + job.index) = s; });
        });
    Kokkos::parallel_for(
        "vitscale::optim::adafactor_cols", Kokkos::RangePolicy<ExecSpace>(space, 0, l.host_cols.size()),
        KOKKOS_LAMBDA(std::size_t k) {
          const stat_job job = cols(k);
          const tensor_desc d = desc(job.tensor);
          float s = 0;
          for (std::int64_t i = 0; i < d.rows; ++i) {
            const std::int64_t e = d.offset + i * d.cols + job.index;
            const float x = static_cast<float>(g(e)) * clip_factor(d, e, unit_scale, global);
            s += x * x + eps1;
          }
          sum(d.col_stat + job.index) = s;
        });
    // On a model axis the sums along a split dimension are partial; the moving averages take the whole ones,
    // as means over the unsharded dimension.
    sum_over_axis(space, l, l.stat_partial, sum);
    const std::size_t n_rows = l.host_rows.size();
    Kokkos::parallel_for(
        "vitscale::optim::adafactor_average", Kokkos::RangePolicy<ExecSpace>(space, 0, n_rows + l.host_cols.size()),
        KOKKOS_LAMBDA(std::size_t k) {
          const bool row = k < n_rows;  // a row statistic (a mean over the columns) or a column one
          const stat_job job = row ? rows(k) : cols(k - n_rows);
          const tensor_desc d = desc(job.tensor);
          const std::int64_t at = (row ? d.row_stat : d.col_stat) + job.index;
          const float count = float(row ? d.full_cols : d.full_rows);
          stats(at) = ::vitscale::kernels::detail::store_as<ST>(beta2 * static_cast<float>(stats(at)) +
                                                                (1.0f - beta2) * (sum(at) / count));
        });
    const auto norm_sum = l.norm_sum;
    Kokkos::parallel_for(
        "vitscale::optim::adafactor_means", policy(space, int(l.host_desc.size()), Kokkos::AUTO),
        KOKKOS_LAMBDA(const typename policy::member_type& member) {
          const tensor_desc d = desc(member.league_rank());
          if (!d.factored) return;
          const std::int64_t at = d.normalize_rows ? d.row_stat : d.col_stat;
          const int n = int(d.normalize_rows ? d.rows : d.cols);
          const float s = ::vitscale::kernels::detail::row_sum<float>(
              member, n, [&](int j) { return static_cast<float>(stats(at + j)); });
          Kokkos::single(Kokkos::PerTeam(member), [&]() { norm_sum(member.league_rank()) = s; });
        });
    sum_over_axis(space, l, l.norm_partial, norm_sum);
  }
}

// Adafactor's scaled gradient g/√v̂ at element e (v of an unfactored tensor already updated).
template <class S, class V, class Sum>
KOKKOS_INLINE_FUNCTION float adafactor_scaled(const tensor_desc& d, std::int64_t e, float gi, const S& stats,
                                              const V& v, const Sum& norm_sum) {
  if (d.factored) {
    const std::int64_t local = e - d.offset;
    const std::int64_t i = local / d.cols, j = local - i * d.cols;
    const float r = static_cast<float>(stats(d.row_stat + i)), c = static_cast<float>(stats(d.col_stat + j));
    const float mean = norm_sum(d.index) / float(d.normalize_rows ? d.full_rows : d.full_cols);
    // optax: the statistic along the smaller dimension is normalised by its mean.
    const float rf = d.normalize_rows ? 1.0f / ::vitscale::kmath::sqrt(r / mean) : 1.0f / ::vitscale::kmath::sqrt(r);
    const float cf = d.normalize_rows ? 1.0f / ::vitscale::kmath::sqrt(c) : 1.0f / ::vitscale::kmath::sqrt(c / mean);
    return d.normalize_rows ? gi * rf * cf : gi * cf * rf;
  }
  return gi / ::vitscale::kmath::sqrt(static_cast<float>(v(d.v_offset + (e - d.offset))));
}

template <class ExecSpace, class G, class V>
void adafactor_second_moment(const ExecSpace& space, const layout<ExecSpace>& l, const G& g, const V& v,
                             float global, float beta2, float eps1) {
  using VT = typename V::non_const_value_type;
  const auto unit_scale = l.unit_scale;
  for_each_element(space, "vitscale::optim::adafactor_v", l, KOKKOS_LAMBDA(const tensor_desc& d, std::int64_t e) {
    if (d.factored) return;
    const std::int64_t k = d.v_offset + (e - d.offset);
    const float x = static_cast<float>(g(e)) * clip_factor(d, e, unit_scale, global);
    v(k) = ::vitscale::kernels::detail::store_as<VT>(beta2 * static_cast<float>(v(k)) + (1.0f - beta2) * (x * x + eps1));
  });
}

// Per-tensor block-RMS clip factors (optax.clip_by_block_rms: u / max(1, rms(u)/threshold)) into
// l.tensor_scale; the per-segment sums are added per tensor in order on the host.
template <class ExecSpace, class G, class S, class V>
void adafactor_block_rms(const ExecSpace& space, const layout<ExecSpace>& l, const G& g, const S& stats, const V& v,
                         float global, double threshold) {
  const auto unit_scale = l.unit_scale;
  const auto norm_sum = l.norm_sum;
  const auto partial = segment_sums(space, l, KOKKOS_LAMBDA(const tensor_desc& d, std::int64_t e) {
    const float gi = static_cast<float>(g(e)) * clip_factor(d, e, unit_scale, global);
    const float u = adafactor_scaled(d, e, gi, stats, v, norm_sum);
    return u * u;
  });
  std::vector<double> sums(l.host_desc.size(), 0.0);
  for (std::size_t k = 0; k < partial.size(); ++k) sums[std::size_t(l.host_segments[k].tensor)] += double(partial[k]);
  if (l.axis) {  // a split tensor's sum over the model axis, in table order
    std::vector<float> split;
    for (std::size_t t = 0; t < sums.size(); ++t)
      if (l.host_desc[t].split) split.push_back(float(sums[t]));
    l.axis->all_reduce(split.data(), split.data(), split.size());
    std::size_t k = 0;
    for (std::size_t t = 0; t < sums.size(); ++t)
      if (l.host_desc[t].split) sums[t] = double(split[k++]);
  }
  std::vector<float> scale(sums.size());
  for (std::size_t t = 0; t < sums.size(); ++t) {
    const double rms = std::sqrt(sums[t] / double(l.host_desc[t].full_numel));
    scale[t] = float(1.0 / std::max(1.0, rms / threshold));
  }
  auto host = Kokkos::create_mirror_view(l.tensor_scale);
  for (std::size_t t = 0; t < scale.size(); ++t) host(t) = scale[t];
  Kokkos::deep_copy(l.tensor_scale, host);
}

// Adafactor, last pass: scaled gradient, block clip, bf16 first moment, parameter update.
template <class ExecSpace, class P, class G, class S, class V, class M>
void adafactor_update(const ExecSpace& space, const layout<ExecSpace>& l, const P& p, const G& g, const S& stats,
                      const V& v, const M& m, float global, float lr, float b1, float wd_body, float wd_head) {
  using PT = typename P::non_const_value_type;
  using MT = typename M::non_const_value_type;
  const auto unit_scale = l.unit_scale;
  const auto norm_sum = l.norm_sum;
  const auto tensor_scale = l.tensor_scale;
  for_each_element(space, "vitscale::optim::adafactor", l, KOKKOS_LAMBDA(const tensor_desc& d, std::int64_t e) {
    const float gi = static_cast<float>(g(e)) * clip_factor(d, e, unit_scale, global);
    const float u = adafactor_scaled(d, e, gi, stats, v, norm_sum) * tensor_scale(d.index);
    const float mi = (1.0f - b1) * u + decayed<MT>(b1, m(e));
    m(e) = ::vitscale::kernels::detail::store_as<MT>(mi);
    const float pi = static_cast<float>(p(e));
    const float wd = d.group == head_group ? wd_head : d.group == body_group ? wd_body : 0.0f;
    p(e) = ::vitscale::kernels::detail::store_as<PT>(pi - lr * mi - wd * pi);
  });
}

// The model axis a model is split over (null for a whole model or a tensor_set).
template <class Model, class = void>
struct model_axis_of {
  static communicator* get(const Model&) { return nullptr; }
};
template <class Model>
struct model_axis_of<Model, std::void_t<decltype(std::declval<const Model&>().model_axis())>> {
  static communicator* get(const Model& m) { return m.model_axis(); }
};

template <class Model>
using param_view = typename std::decay_t<decltype(std::declval<Model&>().parameters())>::vector_type;
template <class Model>
using grad_view = Kokkos::View<const typename Model::grad_type*, Kokkos::LayoutRight, typename Model::memory_space,
                               Kokkos::MemoryUnmanaged>;
template <class Model, class T>
using state_view = Kokkos::View<T*, typename Model::memory_space>;

// What every optimizer shares: the model, the layout of its arena, the clip and the decay groups.
template <class Model>
class optimizer_base {
 public:
  using execution_space = typename Model::execution_space;
  std::int64_t steps() const { return steps_; }
  // "optimizer::adamw", ...: what a training checkpoint records and checks on load.
  const char* name() const { return name_; }
  // Sets the count of steps taken, as when resuming from a checkpoint (Adam's bias correction and Adafactor's
  // β2 schedule depend on it).
  void set_steps(std::int64_t steps) {
    if (steps < 0) ::vitscale::detail::fail(name_, ": the step count must be non-negative, got ", steps);
    steps_ = steps;
  }

 protected:
  optimizer_base(Model& model, const char* name, decay wd, clipping clip, std::int64_t min_dim)
      : model_(&model), name_(name), wd_(wd), clip_(clip),
        layout_(make_layout<execution_space>(static_cast<const Model&>(model).parameters(), min_dim,
                                             model_axis_of<Model>::get(model))) {
    check_options(name, wd, clip);
  }
  // The clipped-gradient factor: AGC into the layout's unit scales, the global-norm factor returned.
  float clip_gradients() {
    const Model& m = *model_;
    const grad_view<Model> g = m.gradients().all();
    return clip_scales(m.space(), layout_, m.parameters().all(), g, clip_);
  }
  float wd_body(double decay_scale) const { return float(wd_.body * decay_scale); }
  float wd_head(double decay_scale) const { return float(wd_.head * decay_scale); }
  std::size_t size() const { return layout_.size; }
  // f("<state>.<timm name>", slice, shape) for the slice of `arena` (laid out as the parameters) that mirrors
  // each parameter tensor, with the parameter's shape.
  template <class View, class F>
  void visit_mirror(const char* state, const View& arena, F& f) const {
    const auto& table = static_cast<const Model&>(*model_).parameters().table();
    for (const tensor_desc& d : layout_.host_desc) {
      const tensor_info& t = table[std::size_t(d.index)];
      f(std::string(state) + "." + t.full_name(),
        Kokkos::subview(arena, std::make_pair(std::size_t(d.offset), std::size_t(d.offset + d.numel))),
        std::vector<std::int64_t>(t.dims.begin(), t.dims.begin() + t.rank));
    }
  }

  Model* model_;
  const char* name_;
  decay wd_;
  clipping clip_;
  layout<execution_space> layout_;
  std::int64_t steps_ = 0;
};

}  // namespace detail

// SGD with momentum (optax.trace; big_vision's momentum_hp with Momentum = bf16).
template <class Model, class Momentum = typename Model::policy::state_type>
class sgd_momentum : public detail::optimizer_base<Model> {
  using base = detail::optimizer_base<Model>;

 public:
  using state_layout = optim::sgd_momentum;  // with Momentum = the policy's state type
  struct options {
    double momentum = 0.9;
    bool nesterov = false;
    decay weight_decay{};
    clipping clip{};
  };
  explicit sgd_momentum(Model& model, options o = {})
      : base(model, "optimizer::sgd_momentum", o.weight_decay, o.clip, 0), o_(o),
        m_("vitscale::optim::momentum", this->size()) {
    if (!(o.momentum >= 0 && o.momentum < 1))
      ::vitscale::detail::fail("optimizer::sgd_momentum: momentum must be in [0, 1), got ", o.momentum);
  }
  // One update from model.gradients(): p ← p − lr·u − wd_group·decay_scale·p.
  void step(double lr, double decay_scale = 1.0) {
    detail::check_step("optimizer::sgd_momentum", lr, decay_scale);
    const float global = this->clip_gradients();
    Model& model = *this->model_;
    detail::sgd_update(model.space(), this->layout_, model.parameters().all(), detail::grad_view<Model>(model.gradients().all()),
                       m_, global, float(lr), float(o_.momentum), o_.nesterov ? 1 : 0, this->wd_body(decay_scale),
                       this->wd_head(decay_scale));
    model.parameters_changed();
    ++this->steps_;
  }
  std::size_t state_bytes() const { return m_.extent(0) * sizeof(Momentum); }
  const detail::state_view<Model, Momentum>& momentum() const { return m_; }
  const options& hyperparameters() const { return o_; }
  // The state a checkpoint saves: f(name, view, shape) per tensor, named "m.<parameter's timm name>"; the
  // views alias the optimizer's arena (writing them restores it).
  template <class F>
  void visit_state(F&& f) const {
    this->visit_mirror("m", m_, f);
  }

 private:
  options o_;
  detail::state_view<Model, Momentum> m_;
};

namespace detail {
template <class Model, class First>
class adam_impl : public optimizer_base<Model> {
  using base = optimizer_base<Model>;
  using second_type = typename Model::policy::state_type;

 public:
  struct options {
    double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    decay weight_decay{};
    clipping clip{};
  };
  explicit adam_impl(Model& model, options o = {}, const char* name = "optimizer::adamw")
      : base(model, name, o.weight_decay, o.clip, 0), o_(o), m_("vitscale::optim::adam_m", this->size()),
        v_("vitscale::optim::adam_v", this->size()) {
    if (!(o.b1 >= 0 && o.b1 < 1) || !(o.b2 >= 0 && o.b2 < 1) || !(o.eps >= 0))
      ::vitscale::detail::fail(name, ": expected b1, b2 in [0, 1) and eps >= 0, got b1 ", o.b1, ", b2 ", o.b2,
                               ", eps ", o.eps);
  }
  // One update from model.gradients(): p ← p − lr·m̂/(√v̂ + ε) − wd_group·decay_scale·p.
  void step(double lr, double decay_scale = 1.0) {
    check_step("optimizer::adam", lr, decay_scale);
    const float global = this->clip_gradients();
    Model& model = *this->model_;
    const double t = double(this->steps_ + 1);
    // optax computes the corrections in float: 1 − β^t with β and t in float32.
    const float bc1 = 1.0f - std::pow(float(o_.b1), float(t)), bc2 = 1.0f - std::pow(float(o_.b2), float(t));
    adam_update(model.space(), this->layout_, model.parameters().all(), grad_view<Model>(model.gradients().all()), m_, v_,
                global, float(lr), float(o_.b1), float(o_.b2), float(o_.eps), bc1, bc2, this->wd_body(decay_scale),
                this->wd_head(decay_scale));
    model.parameters_changed();
    ++this->steps_;
  }
  std::size_t state_bytes() const { return m_.extent(0) * sizeof(First) + v_.extent(0) * sizeof(second_type); }
  const state_view<Model, First>& first_moment() const { return m_; }
  const state_view<Model, second_type>& second_moment() const { return v_; }
  const options& hyperparameters() const { return o_; }
  // The state a checkpoint saves: f(name, view, shape) per tensor, "m.<timm name>" then "v.<timm name>"; the
  // views alias the optimizer's arenas (writing them restores them).
  template <class F>
  void visit_state(F&& f) const {
    this->visit_mirror("m", m_, f);
    this->visit_mirror("v", v_, f);
  }

 private:
  options o_;
  state_view<Model, First> m_;
  state_view<Model, second_type> v_;
};
}  // namespace detail

// AdamW (optax.scale_by_adam + decoupled decay): both moments in the policy's state type.
template <class Model>
class adamw : public detail::adam_impl<Model, typename Model::policy::state_type> {
  using base = detail::adam_impl<Model, typename Model::policy::state_type>;

 public:
  using state_layout = optim::adam;
  using options = typename base::options;
  explicit adamw(Model& model, options o = {}) : base(model, o, "optimizer::adamw") {}
};

// Adam with the first moment stored in bf16 and the second in the policy's state type (the ViT-G paper).
template <class Model>
class adam_bf16_momentum : public detail::adam_impl<Model, bf16> {
  using base = detail::adam_impl<Model, bf16>;

 public:
  using state_layout = optim::adam_bf16_momentum;
  using options = typename base::options;
  explicit adam_bf16_momentum(Model& model, options o = {}) : base(model, o, "optimizer::adam_bf16_momentum") {}
};

// The ViT-G paper's Adafactor (big_vision.scale_by_adafactor); see the top of this file.
template <class Model>
class adafactor : public detail::optimizer_base<Model> {
  using base = detail::optimizer_base<Model>;
  using second_type = typename Model::policy::state_type;

 public:
  using state_layout = optim::adafactor;
  struct options {
    double b1 = 0.9;             // first moment (bf16), no bias correction; 0 keeps u itself
    double decay_rate = 0.8;     // β2_t = min(beta2_cap, 1 − (t+1)^−decay_rate)
    double eps = 1e-30;          // ε1, added to g²
    double clip_threshold = 0.0; // clip_by_block_rms threshold; 0: off (big_vision's default, None)
    int min_dim_size_to_factor = 32;
    decay weight_decay{};
    clipping clip{};
    double beta2_cap = 0.999;
  };
  explicit adafactor(Model& model, options o = {})
      : base(model, "optimizer::adafactor", o.weight_decay, o.clip, check(o).min_dim_size_to_factor), o_(o),
        m_("vitscale::optim::adafactor_m", this->size()),
        stats_("vitscale::optim::adafactor_factored", std::size_t(this->layout_.factored_stats)),
        v_("vitscale::optim::adafactor_v", unfactored_elements()) {}

  // One update from model.gradients(): p ← p − lr·m − wd_group·decay_scale·p.
  void step(double lr, double decay_scale = 1.0) {
    detail::check_step("optimizer::adafactor", lr, decay_scale);
    const float global = this->clip_gradients();
    Model& model = *this->model_;
    const double t = double(this->steps_) + 1.0;
    const float beta2 = std::min(float(o_.beta2_cap), 1.0f - std::pow(float(t), -float(o_.decay_rate)));
    const auto g = detail::grad_view<Model>(model.gradients().all());
    detail::adafactor_statistics(model.space(), this->layout_, g, stats_, global, beta2, float(o_.eps));
    detail::adafactor_second_moment(model.space(), this->layout_, g, v_full(), global, beta2, float(o_.eps));
    if (o_.clip_threshold > 0)
      detail::adafactor_block_rms(model.space(), this->layout_, g, stats_, v_full(), global, o_.clip_threshold);
    detail::adafactor_update(model.space(), this->layout_, model.parameters().all(), g, stats_, v_full(), m_, global,
                             float(lr), float(o_.b1), this->wd_body(decay_scale), this->wd_head(decay_scale));
    model.parameters_changed();
    ++this->steps_;
  }
  // bf16 first moment + factored statistics (rows + cols) + the whole second moment of unfactored tensors.
  std::size_t state_bytes() const {
    return m_.extent(0) * sizeof(bf16) + (stats_.extent(0) + v_.extent(0)) * sizeof(second_type);
  }
  bool factored(int tensor) const { return this->layout_.host_desc[std::size_t(tensor)].factored != 0; }
  const detail::state_view<Model, bf16>& first_moment() const { return m_; }
  const options& hyperparameters() const { return o_; }
  // The state a checkpoint saves: f(name, view, shape) per tensor: "m.<timm name>" (bf16, the parameter's
  // shape) for every tensor, then per tensor either its row and column statistics "v_row.<timm name>"
  // [matrix_rows] and "v_col.<timm name>" [matrix_cols] (factored) or its whole second moment "v.<timm name>"
  // (the parameter's shape). The views alias the optimizer's arenas (writing them restores them).
  template <class F>
  void visit_state(F&& f) const {
    this->visit_mirror("m", m_, f);
    const auto& table = static_cast<const Model&>(*this->model_).parameters().table();
    for (const detail::tensor_desc& d : this->layout_.host_desc) {
      const tensor_info& t = table[std::size_t(d.index)];
      const auto slice = [](const auto& view, std::int64_t begin, std::int64_t count) {
        return Kokkos::subview(view, std::make_pair(std::size_t(begin), std::size_t(begin + count)));
      };
      if (d.factored) {
        f("v_row." + t.full_name(), slice(stats_, d.row_stat, d.rows), std::vector<std::int64_t>{d.rows});
        f("v_col." + t.full_name(), slice(stats_, d.col_stat, d.cols), std::vector<std::int64_t>{d.cols});
      } else {
        f("v." + t.full_name(), slice(v_, d.v_offset, d.numel),
          std::vector<std::int64_t>(t.dims.begin(), t.dims.begin() + t.rank));
      }
    }
  }

 private:
  static const options& check(const options& o) {
    if (!(o.b1 >= 0 && o.b1 < 1) || !(o.decay_rate > 0) || !(o.eps >= 0) || !(o.clip_threshold >= 0) ||
        o.min_dim_size_to_factor < 1 || !(o.beta2_cap > 0 && o.beta2_cap <= 1))
      ::vitscale::detail::fail("optimizer::adafactor: expected b1 in [0, 1), decay_rate > 0, eps >= 0, clip_threshold >= 0, "
                               "min_dim_size_to_factor >= 1 and beta2_cap in (0, 1]; got b1 ", o.b1, ", decay_rate ",
                               o.decay_rate, ", eps ", o.eps, ", clip_threshold ", o.clip_threshold,
                               ", min_dim_size_to_factor ", o.min_dim_size_to_factor, ", beta2_cap ", o.beta2_cap);
    return o;
  }
  std::size_t unfactored_elements() const { return std::size_t(this->layout_.unfactored); }
  const detail::state_view<Model, second_type>& v_full() const { return v_; }

  options o_;
  detail::state_view<Model, bf16> m_;
  detail::state_view<Model, second_type> stats_;
  detail::state_view<Model, second_type> v_;
};

}  // namespace vitscale::optimizer
