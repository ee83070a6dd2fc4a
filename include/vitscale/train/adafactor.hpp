#pragma once
// The ViT-G paper's Adafactor, big_vision.scale_by_adafactor: optax.scale_by_factored_rms with
// β2_t = min(β2_cap, 1 − t^−decay_rate), ε1 = 1e-30 added to g², the second moment factored for tensors whose
// matrix view has both dimensions ≥ min_dim_size_to_factor and whole otherwise; optional clip_by_block_rms
// (big_vision's default: off); then a bf16 first moment m ← β1·m + (1 − β1)·u without bias correction, u = m.
// No parameter-scale relative step; the learning rate is applied outside.
//
// Factoring uses the parameter table's matrix view [matrix_rows, matrix_cols] (timm's [out, in]; the patch
// kernel as [width, channels·patch²]), the layout config/optimizer_state.hpp accounts. big_vision factors JAX's
// own shapes ([in, out] kernels, [p, p, C, D] patch kernel, q/k/v as [D, H, hd]), so which tensors are factored
// can differ from a big_vision run of the same model; the arithmetic on a factored matrix is optax's: the
// statistic along the smaller dimension is divided by its mean, the other is not.
//
// On a model axis a factored tensor's statistic along its split dimension is a sum over the axis, and so is the
// mean of a normalised statistic that is itself split; the block RMS of a split tensor is summed over the axis
// and divided by its unsharded size (see train/optimizers.hpp).

#include <vitscale/train/optimizer.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace vitscale::optimizer {
namespace detail {

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
    l.axis->all_reduce(split.data(), split.data(), split.size(), "adafactor: factored statistics");
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

}  // namespace detail

struct adafactor_rule {
  static constexpr const char* name = "optimizer::adafactor";
  struct options {
    double b1 = 0.9;             // first moment (bf16), no bias correction; 0 keeps u itself
    double decay_rate = 0.8;     // β2_t = min(beta2_cap, 1 − t^−decay_rate)
    double eps = 1e-30;          // ε1, added to g²
    double clip_threshold = 0.0; // clip_by_block_rms threshold; 0: off (big_vision's default, None)
    int min_dim_size_to_factor = int(optim::min_dim_size_to_factor);
    decay weight_decay{};
    clipping clip{};
    non_finite_policy non_finite{};
    ema_policy ema{};  // an EMA of the parameters (train/optimizer.hpp); off by default
    double beta2_cap = 0.999;
    template <class F>
    void visit(F&& f) const {
      f("b1", b1);
      f("decay_rate", decay_rate);
      f("eps", eps);
      f("clip_threshold", clip_threshold);
      f("min_dim_size_to_factor", min_dim_size_to_factor);
      f("beta2_cap", beta2_cap);
    }
  };
  static void check(const options& o) {
    if (!(o.b1 >= 0 && o.b1 < 1) || !(o.decay_rate > 0) || !(o.eps >= 0) || !(o.clip_threshold >= 0) ||
        o.min_dim_size_to_factor < 1 || !(o.beta2_cap > 0 && o.beta2_cap <= 1))
      ::vitscale::detail::fail(name, ": expected b1 in [0, 1), decay_rate > 0, eps >= 0, clip_threshold >= 0, "
                               "min_dim_size_to_factor >= 1 and beta2_cap in (0, 1]; got b1 ", o.b1, ", decay_rate ",
                               o.decay_rate, ", eps ", o.eps, ", clip_threshold ", o.clip_threshold,
                               ", min_dim_size_to_factor ", o.min_dim_size_to_factor, ", beta2_cap ", o.beta2_cap);
  }
  template <class Policy>
  using state_layout = optim::adafactor;

  struct scalars {
    float b1, beta2, eps1;
    double clip_threshold;
  };
  static scalars at_step(const options& o, std::int64_t t) {
    return {float(o.b1), std::min(float(o.beta2_cap), 1.0f - std::pow(float(t), -float(o.decay_rate))), float(o.eps),
            o.clip_threshold};
  }

  // The second-moment passes, before the fused one: statistics of the factored tensors, the whole moment of
  // the others, and the block-RMS factors when that clip is on.
  static constexpr bool prepares = true;
  template <class ExecSpace, class G, class State>
  static void prepare(const ExecSpace& space, const detail::layout<ExecSpace>& l, const G& g, const State& state,
                      const scalars& s, float global) {
    const auto& v = state.template get<1>();
    detail::adafactor_statistics(space, l, g, v.stats, global, s.beta2, s.eps1);
    detail::adafactor_second_moment(space, l, g, v.whole, global, s.beta2, s.eps1);
    if (s.clip_threshold > 0) detail::adafactor_block_rms(space, l, g, v.stats, v.whole, global, s.clip_threshold);
  }

  template <class State>
  KOKKOS_INLINE_FUNCTION static float update(const scalars& s, const State& state, const detail::tensor_desc& d,
                                             std::int64_t e, float g) {
    const auto& m = state.template get<0>();
    const auto& v = state.template get<1>();
    const float u = detail::adafactor_scaled(d, e, g, v.stats, v.whole, v.norm_sum) * v.tensor_scale(d.index);
    const float mi = (1.0f - s.b1) * u + detail::decayed(s.b1, m, e);
    detail::store(m, e, mi);
    return mi;
  }
};

template <class Model>
using adafactor = fused<Model, adafactor_rule>;

}  // namespace vitscale::optimizer
