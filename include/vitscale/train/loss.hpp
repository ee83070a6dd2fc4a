#pragma once
// Classification losses on the model's logits: each returns the loss averaged over the batch (a double,
// on the host) and writes d(mean loss)/d(logits) for the backward pass.
//
// Conventions (those of the seed papers' code, big_vision, and of PyTorch where it has the same loss):
//   softmax_xent, integer labels:  loss_b = logsumexp(z_b) − Σ_c q_bc·z_bc, with the smoothed target
//       q = (1 − ε)·onehot(label) + ε/C (PyTorch's F.cross_entropy(label_smoothing=ε)); gradient (p − q)/B.
//   softmax_xent, soft targets y:  loss_b = −Σ_c y_bc·log_softmax(z_b)_c (big_vision's softmax_xent, which
//       serves one-hot, multi-hot and mixed-up targets alike); gradient (p·Σ_c y_bc − y)/B, so targets that
//       do not sum to one still get the gradient of the loss as written.
//   sigmoid_xent:  loss_b = −Σ_c [y·log σ(z) + (1 − y)·log σ(−z)], summed over classes and averaged over
//       the batch (big_vision's sigmoid_xent; PyTorch's binary_cross_entropy_with_logits(reduction='sum')/B);
//       gradient (σ(z) − y)/B.
//
// Numerics: softmax subtracts the row maximum m, so no finite logit overflows, and the loss is assembled as
// log Σ exp(z − m) + Σ_c q_c·(m − z_c) in double: the terms are exact differences of floats, so a logit
// of 80 costs no accuracy through cancellation against logsumexp. Sigmoid uses
// log σ(z) = −softplus(−z) with softplus(x) = max(x, 0) + log1p(exp(−|x|)). Gradients are float.
//
// Views are LayoutRight on the execution space's memory; dlogits may be logits itself (each element is
// read before it is overwritten).
//
// Determinism: one team per row computes that row's loss in a fixed order (kernels::detail::row_sum), and
// the batch mean is summed over rows in order on the host, so the loss is bit-identical for any thread
// count. Each call allocates B doubles for the per-row losses (the head's loss is computed once a step).

#include <cmath>
#include <cstddef>
#include <vitscale/core/error.hpp>
#include <vitscale/core/fast_math.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/views.hpp>
#include <vitscale/kernels/detail/elementwise_common.hpp>

namespace vitscale::loss {

namespace detail {

template <class ExecSpace>
using row_loss_view = Kokkos::View<double*, Kokkos::LayoutRight, typename ExecSpace::memory_space>;

// Checks what every loss shares: a non-empty batch of non-empty rows, and dlogits the shape of logits.
template <class Logits, class DLogits>
void check_logits(const char* function, const Logits& logits, const DLogits& dlogits) {
  if (logits.extent(0) == 0 || logits.extent(1) == 0)
    ::vitscale::detail::fail(function, ": logits is ", ::vitscale::detail::extents_string(logits),
                             ", expected a batch of at least one row of at least one class");
  ::vitscale::detail::require_extents(function, "dlogits", dlogits, {logits.extent(0), logits.extent(1)});
}

template <class ExecSpace>
row_loss_view<ExecSpace> allocate_row_loss(const ExecSpace& space, std::size_t rows) {
  return row_loss_view<ExecSpace>(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "vitscale::loss::row_loss"),
                                  rows);
}

// The per-row losses summed in row order on the host, over the batch size.
template <class ExecSpace>
double batch_mean(const ExecSpace& space, const row_loss_view<ExecSpace>& row_loss) {
  space.fence();
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), row_loss);
  double sum = 0;
  for (std::size_t b = 0; b < host.extent(0); ++b) sum += host(b);
  return sum / static_cast<double>(host.extent(0));
}

}  // namespace detail

// Softmax cross-entropy with integer labels and optional label smoothing ε in [0, 1].
// logits: [B, C], labels: [B] in [0, C) -> dlogits: [B, C]; returns the mean over the batch.
template <class ExecSpace>
double softmax_xent(const ExecSpace& space, matrix_view<const float, ExecSpace> logits,
                    vector_view<const int, ExecSpace> labels, matrix_view<float, ExecSpace> dlogits,
                    double label_smoothing = 0) {
  namespace kd = ::vitscale::kernels::detail;
  const char* function = "loss::softmax_xent";
  detail::check_logits(function, logits, dlogits);
  const std::size_t rows = logits.extent(0), cols = logits.extent(1);
  ::vitscale::detail::require_extents(function, "labels", labels, {rows});
  if (!(label_smoothing >= 0 && label_smoothing <= 1))
    ::vitscale::detail::fail(function, ": label_smoothing is ", label_smoothing, ", expected a value in [0, 1]");
  // An out-of-range label would index outside the row inside the kernel; checking a host copy first
  // costs B integers of transfer and gives an error that names the offending row.
  {
    const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), labels);
    for (std::size_t b = 0; b < rows; ++b)
      if (host(b) < 0 || static_cast<std::size_t>(host(b)) >= cols)
        ::vitscale::detail::fail(function, ": labels(", b, ") is ", host(b), ", expected a class index in [0, ", cols,
                                 ")");
  }
  const auto row_loss = detail::allocate_row_loss(space, rows);
  const int n = static_cast<int>(cols);
  const double eps = label_smoothing;
  const double eps_per_class = label_smoothing / static_cast<double>(cols);
  const float q_on = static_cast<float>(1 - eps + eps_per_class), q_off = static_cast<float>(eps_per_class);
  const float inv_batch = static_cast<float>(1.0 / static_cast<double>(rows));
  kd::for_each_row(
      space, "vitscale::loss::softmax_xent", rows, KOKKOS_LAMBDA(const kd::team_member<ExecSpace>& member, int i) {
        const int label = labels(i);
        const float peak = kd::row_max<float>(member, n, [&](int j) { return logits(i, j); });
        const double sum =
            kd::row_sum<double>(member, n, [&](int j) { return double(::vitscale::fast::exp(logits(i, j) - peak)); });
        // Σ_c (m − z_c) enters the loss only through the smoothing term.
        double spread = 0;
        if (eps > 0)
          spread = kd::row_sum<double>(member, n, [&](int j) { return double(peak) - double(logits(i, j)); });
        const float inv_sum = static_cast<float>(1.0 / sum);
        const double loss = ::vitscale::kmath::log(sum) + (1 - eps) * (double(peak) - double(logits(i, label))) +
                            eps_per_class * spread;
        // Every thread of the team has read the row; the barrier keeps an in-place dlogits (dlogits and
        // logits the same memory) from overwriting logits another thread still reads above.
        member.team_barrier();
        kd::row_for(member, n, [&](int j) {
          const float p = ::vitscale::fast::exp(logits(i, j) - peak) * inv_sum;
          dlogits(i, j) = (p - (j == label ? q_on : q_off)) * inv_batch;
        });
        Kokkos::single(Kokkos::PerTeam(member), [&]() { row_loss(i) = loss; });
      });
  return detail::batch_mean(space, row_loss);
}

// Softmax cross-entropy with soft (one-hot, multi-hot, mixed-up) targets, big_vision's softmax_xent.
// logits: [B, C], targets: [B, C] -> dlogits: [B, C]; returns the mean over the batch.
template <class ExecSpace>
double softmax_xent(const ExecSpace& space, matrix_view<const float, ExecSpace> logits,
                    matrix_view<const float, ExecSpace> targets, matrix_view<float, ExecSpace> dlogits) {
  namespace kd = ::vitscale::kernels::detail;
  const char* function = "loss::softmax_xent";
  detail::check_logits(function, logits, dlogits);
  const std::size_t rows = logits.extent(0), cols = logits.extent(1);
  ::vitscale::detail::require_extents(function, "targets", targets, {rows, cols});
  const auto row_loss = detail::allocate_row_loss(space, rows);
  const int n = static_cast<int>(cols);
  const float inv_batch = static_cast<float>(1.0 / static_cast<double>(rows));
  kd::for_each_row(
      space, "vitscale::loss::softmax_xent_soft", rows, KOKKOS_LAMBDA(const kd::team_member<ExecSpace>& member, int i) {
        const float peak = kd::row_max<float>(member, n, [&](int j) { return logits(i, j); });
        const double sum =
            kd::row_sum<double>(member, n, [&](int j) { return double(::vitscale::fast::exp(logits(i, j) - peak)); });
        const double mass = kd::row_sum<double>(member, n, [&](int j) { return double(targets(i, j)); });
        // −Σ y·(z − m − log S) = Σ y·(m − z) + log S·Σ y
        const double weighted = kd::row_sum<double>(
            member, n, [&](int j) { return double(targets(i, j)) * (double(peak) - double(logits(i, j))); });
        const double loss = weighted + ::vitscale::kmath::log(sum) * mass;
        const float inv_sum = static_cast<float>(1.0 / sum);
        const float mass_f = static_cast<float>(mass);
        member.team_barrier();
        kd::row_for(member, n, [&](int j) {
          const float p = ::vitscale::fast::exp(logits(i, j) - peak) * inv_sum;
          dlogits(i, j) = (p * mass_f - targets(i, j)) * inv_batch;
        });
        Kokkos::single(Kokkos::PerTeam(member), [&]() { row_loss(i) = loss; });
      });
  return detail::batch_mean(space, row_loss);
}

// Sigmoid (binary, per-class) cross-entropy summed over classes, big_vision's sigmoid_xent.
// logits: [B, C], targets: [B, C] in [0, 1] -> dlogits: [B, C]; returns the mean over the batch.
template <class ExecSpace>
double sigmoid_xent(const ExecSpace& space, matrix_view<const float, ExecSpace> logits,
                    matrix_view<const float, ExecSpace> targets, matrix_view<float, ExecSpace> dlogits) {
  namespace kd = ::vitscale::kernels::detail;
  const char* function = "loss::sigmoid_xent";
  detail::check_logits(function, logits, dlogits);
  const std::size_t rows = logits.extent(0), cols = logits.extent(1);
  ::vitscale::detail::require_extents(function, "targets", targets, {rows, cols});
  const auto row_loss = detail::allocate_row_loss(space, rows);
  const int n = static_cast<int>(cols);
  const float inv_batch = static_cast<float>(1.0 / static_cast<double>(rows));
  kd::for_each_row(
      space, "vitscale::loss::sigmoid_xent", rows, KOKKOS_LAMBDA(const kd::team_member<ExecSpace>& member, int i) {
        // y·softplus(−z) + (1 − y)·softplus(z) = y·max(−z, 0) + (1 − y)·max(z, 0) + log1p(exp(−|z|))
        const double loss = kd::row_sum<double>(member, n, [&](int j) {
          const float z = logits(i, j);
          const double y = targets(i, j);
          const float tail = ::vitscale::kmath::log1p(::vitscale::fast::exp(-::vitscale::kmath::fabs(z)));
          return y * double(z < 0 ? -z : 0.0f) + (1 - y) * double(z > 0 ? z : 0.0f) + double(tail);
        });
        member.team_barrier();
        kd::row_for(member, n, [&](int j) {
          const float z = logits(i, j);
          // σ(z) from exp(−|z|), which never overflows.
          const float e = ::vitscale::fast::exp(-::vitscale::kmath::fabs(z));
          const float sigma = z >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
          dlogits(i, j) = (sigma - targets(i, j)) * inv_batch;
        });
        Kokkos::single(Kokkos::PerTeam(member), [&]() { row_loss(i) = loss; });
      });
  return detail::batch_mean(space, row_loss);
}

}  // namespace vitscale::loss
