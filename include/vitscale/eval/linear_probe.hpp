#pragma once
// Linear probe: a linear classifier trained on a frozen backbone's features (ViT-22B's and the linear-evaluation
// protocol of the seed papers). The backbone takes no part in training: it has no gradients and no optimizer
// state, and its parameters are never written; only the head has them (bytes() says how much). Without
// augmentation the features are computed once (eval/features.hpp) and every epoch trains on that cache; with
// augmentation, step() takes each batch's features as they come.
//
//   auto x = eval::extract_features(model, train, train_indices, 256, norm);       // [N, features], once
//   eval::linear_probe<Kokkos::DefaultExecutionSpace> probe(shape::features, classes);
//   probe.fit(x, labels, {.epochs = 10, .batch = 256, .lr = 0.1});
//   probe.write_head(model);   // the model now classifies with the probe's head (same class count)
//
// The head is logits = x·Wᵀ + b (W: [classes, features], timm's head.weight layout), initialised to zero as the
// papers' heads are (big_vision's head_zeroinit), trained with softmax cross-entropy (train/loss.hpp) by
// SGD-momentum in the shared fused optimizer (train/sgd_momentum.hpp: weight decay on W only, global-norm clipping
// if asked) under a warmup + cosine schedule. Batches follow data/batches.hpp's epoch_permutation of (seed,
// epoch), so the same seed gives the same head bit for bit on the host.

#include <vitscale/core/error.hpp>
#include <vitscale/core/finite.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/data/batches.hpp>
#include <vitscale/eval/features.hpp>
#include <vitscale/kernels/reduction.hpp>
#include <vitscale/model/linear.hpp>
#include <vitscale/train/loss.hpp>
#include <vitscale/train/schedule.hpp>
#include <vitscale/train/sgd_momentum.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vitscale::eval {

// How a probe trains. The defaults are a usual linear-evaluation recipe (SGD-momentum 0.9, no weight decay,
// warmup then cosine); the seed papers tune lr per task.
struct probe_options {
  int epochs = 10;
  int batch = 256;
  double lr = 0.1;               // peak learning rate
  double warmup_fraction = 0.05;  // of all steps
  double momentum = 0.9;
  double weight_decay = 0.0;     // decoupled, on W only, times the schedule's lr / peak (big_vision's convention)
  double clip = 0.0;             // global-norm clipping of the head's gradients (0: off)
  double label_smoothing = 0.0;
  std::uint64_t seed = 0;        // the batches' order
};

// What each epoch of fit() gave: the mean training loss over its batches.
struct probe_history {
  std::vector<double> epoch_loss;
};

template <class ExecSpace = Kokkos::DefaultExecutionSpace>
class linear_probe {
 public:
  using execution_space = ExecSpace;
  using memory_space = typename ExecSpace::memory_space;
  using matrix = Kokkos::View<float**, Kokkos::LayoutRight, memory_space>;
  using labels_view = Kokkos::View<int*, Kokkos::LayoutRight, memory_space>;

  // A zero head for `features` inputs and `classes` outputs.
  linear_probe(int features, int classes, ExecSpace exec = ExecSpace())
      : features_(checked(features, "features")), classes_(checked(classes, "classes")), space_(exec),
        table_{tensor_info{"head.weight", -1, component::classifier, tensor_role::weight, 2, {classes, features, 1, 1}},
               tensor_info{"head.bias", -1, component::classifier, tensor_role::bias, 1, {classes, 1, 1, 1}}},
        set_(table_, exec) {}

  int features() const { return features_; }
  int classes() const { return classes_; }

  // Trains on cached features x [N, features] with labels [N] in [0, classes): o.epochs passes in batches of
  // o.batch (the last short batch of an epoch is kept). Starts from the current head (zero, or what an earlier
  // fit left) with fresh optimizer state. progress(step, steps, loss) is called after each step when given.
  template <class Progress = std::nullptr_t>
  probe_history fit(const feature_matrix& x, const std::vector<int>& labels, const probe_options& o,
                    Progress&& progress = nullptr) {
    check_data("eval::linear_probe::fit", x, labels);
    check_options(o);
    const std::int64_t n = static_cast<std::int64_t>(x.extent(0));
    const int batch = static_cast<int>(std::min<std::int64_t>(o.batch, n));
    const std::int64_t per_epoch = (n + batch - 1) / batch;
    const std::int64_t total = per_epoch * o.epochs;
    const auto warmup = static_cast<std::int64_t>(std::floor(o.warmup_fraction * double(total)));
    const schedule::warmup_cosine lr{o.lr, std::min(warmup, total - 1), total};
    optimizer_type opt(set_, optimizer_options(o));

    using staging = Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace>;
    staging xb_host(Kokkos::view_alloc(Kokkos::WithoutInitializing, "vitscale::probe::x"), std::size_t(batch),
                        std::size_t(features_));
    Kokkos::View<int*, Kokkos::HostSpace> yb_host("vitscale::probe::y", std::size_t(batch));
    matrix xb(Kokkos::view_alloc(Kokkos::WithoutInitializing, "vitscale::probe::x"), std::size_t(batch), std::size_t(features_));
    labels_view yb("vitscale::probe::y", std::size_t(batch));
    // The logits (and their gradient, in place) and the bias gradient's workspace, for the largest batch: nothing
    // is allocated per step.
    matrix zb(Kokkos::view_alloc(Kokkos::WithoutInitializing, "vitscale::probe::logits"), std::size_t(batch),
              std::size_t(classes_));
    const auto ws = kernels::column_sum_workspace(std::size_t(batch), std::size_t(classes_));
    matrix workspace("vitscale::probe::sum", ws.chunks, ws.cols);

    probe_history history;
    std::int64_t step = 0;
    for (int epoch = 0; epoch < o.epochs; ++epoch) {
      const std::vector<int> order = data::epoch_permutation(static_cast<int>(n), o.seed, static_cast<std::uint32_t>(epoch));
      double sum = 0;
      for (std::int64_t first = 0; first < n; first += batch, ++step) {
        const int rows = static_cast<int>(std::min<std::int64_t>(batch, n - first));
        for (int r = 0; r < rows; ++r) {
          const auto i = static_cast<std::size_t>(order[static_cast<std::size_t>(first + r)]);
          for (int j = 0; j < features_; ++j) xb_host(std::size_t(r), std::size_t(j)) = x(i, std::size_t(j));
          yb_host(std::size_t(r)) = labels[i];
        }
        const auto range = std::make_pair(std::size_t(0), std::size_t(rows));
        auto xs = Kokkos::subview(xb, range, Kokkos::ALL);
        auto ys = Kokkos::subview(yb, range);
        Kokkos::deep_copy(space_, xs, Kokkos::subview(xb_host, range, Kokkos::ALL));
        Kokkos::deep_copy(space_, ys, Kokkos::subview(yb_host, range));
        const double rate = lr(step);
        const double loss = step_on(opt, xs, ys, zb, workspace, rate, rate / o.lr, o.label_smoothing);
        sum += loss;
        if constexpr (!std::is_same<std::decay_t<Progress>, std::nullptr_t>::value) progress(step + 1, total, loss);
      }
      history.epoch_loss.push_back(sum / double(per_epoch));
    }
    return history;
  }

  // The logits of features x [N, features]: [N, classes], on the host.
  feature_matrix logits(const feature_matrix& x) const {
    if (int(x.extent(1)) != features_)
      vitscale::detail::fail("eval::linear_probe::logits: the features are ", vitscale::detail::extents_string(x), ", the probe takes ",
                   features_, " per example");
    matrix xd(Kokkos::view_alloc(Kokkos::WithoutInitializing, "vitscale::probe::x"), x.extent(0), x.extent(1));
    Kokkos::deep_copy(space_, xd, x);
    matrix z(Kokkos::view_alloc(Kokkos::WithoutInitializing, "vitscale::probe::logits"), x.extent(0), std::size_t(classes_));
    if (x.extent(0) > 0) model_detail::linear_forward(space_, xd, weight_matrix(), set_.parameters().vector(1), z);
    auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), z);
    feature_matrix out("vitscale::probe::logits", host.extent(0), host.extent(1));
    Kokkos::deep_copy(out, host);
    return out;
  }

  // Top-1 accuracy on features x [N, features] with labels [N] (the first largest logit wins a tie).
  double accuracy(const feature_matrix& x, const std::vector<int>& labels) const {
    check_data("eval::linear_probe::accuracy", x, labels);
    const feature_matrix z = logits(x);
    std::int64_t correct = 0;
    for (std::size_t i = 0; i < z.extent(0); ++i) {
      int best = 0;
      for (int c = 1; c < classes_; ++c)
        if (z(i, std::size_t(c)) > z(i, std::size_t(best))) best = c;
      correct += best == labels[i];
    }
    return double(correct) / double(z.extent(0));
  }

  // The head's parameters, on the host: W [classes, features] row-major, and b [classes].
  std::vector<float> weight() const { return download(set_.parameters().vector(0)); }
  std::vector<float> bias() const { return download(set_.parameters().vector(1)); }

  // Bytes the probe holds for training: the head's parameters and gradients, and SGD's momentum (the frozen
  // backbone adds nothing: no gradients, no state).
  std::size_t bytes() const { return 3 * sizeof(float) * std::size_t(classes_) * std::size_t(features_ + 1); }

  // Writes the head into a model whose classifier takes the same features and has the same class count: its
  // head.weight and head.bias; every other parameter stays as it was.
  template <class Model>
  void write_head(Model& model) const {
    using shape = typename Model::shape;
    if (shape::features != features_ || shape::num_classes != classes_)
      vitscale::detail::fail("eval::linear_probe::write_head: the probe is ", classes_, " classes x ", features_,
                   " features; the model's head is ", shape::num_classes, " x ", shape::features);
    const auto& table = model.parameters().table();
    for (int i = 0; i < int(table.size()); ++i) {
      const std::string name = table[std::size_t(i)].full_name();
      if (name == "head.weight" || name == "head.bias") {
        const std::vector<float> v = name == "head.weight" ? weight() : bias();
        model.set_parameter(i, v.data(), v.size());
      }
    }
  }

 private:
  using set_type = optimizer::tensor_set<float, float, ExecSpace>;
  using optimizer_type = optimizer::sgd_momentum<set_type, float>;

  static int checked(int n, const char* what) {
    if (n < 1) vitscale::detail::fail("eval::linear_probe: ", what, " is ", n, "; it must be at least 1");
    return n;
  }
  static void check_options(const probe_options& o) {
    const char* fn = "eval::linear_probe::fit";
    if (o.epochs < 1 || o.batch < 1) vitscale::detail::fail(fn, ": epochs and batch must be at least 1, got ", o.epochs, " and ", o.batch);
    if (!(o.lr > 0) || !std::isfinite(o.lr)) vitscale::detail::fail(fn, ": the learning rate must be positive and finite, got ", o.lr);
    if (!(o.warmup_fraction >= 0 && o.warmup_fraction < 1))
      vitscale::detail::fail(fn, ": warmup_fraction must be in [0, 1), got ", o.warmup_fraction);
  }
  void check_data(const char* fn, const feature_matrix& x, const std::vector<int>& labels) const {
    if (x.extent(0) == 0) vitscale::detail::fail(fn, ": no examples");
    if (int(x.extent(1)) != features_)
      vitscale::detail::fail(fn, ": the features are ", vitscale::detail::extents_string(x), ", the probe takes ", features_, " per example");
    if (labels.size() != x.extent(0))
      vitscale::detail::fail(fn, ": ", x.extent(0), " examples but ", labels.size(), " labels");
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0 || labels[i] >= classes_)
        vitscale::detail::fail(fn, ": label ", labels[i], " of example ", i, " is outside [0, ", classes_, ")");
    const std::int64_t bad = vitscale::detail::first_non_finite(x.data(), std::int64_t(x.size()));
    if (bad >= 0)
      throw non_finite_error(std::string(fn) + ": feature " + std::to_string(bad % features_) + " of example " +
                                 std::to_string(bad / features_) + " is " + vitscale::detail::non_finite_name(x.data()[bad]),
                             "feature", "");
  }
  typename optimizer_type::options optimizer_options(const probe_options& o) const {
    typename optimizer_type::options opt;
    opt.momentum = o.momentum;
    opt.weight_decay = {o.weight_decay, o.weight_decay};  // head and body groups: W is the classifier matrix
    opt.clip.global_norm = o.clip;
    return opt;
  }

  using unmanaged_matrix = Kokkos::View<float**, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged>;
  unmanaged_matrix weight_matrix() const {
    return unmanaged_matrix(set_.parameters().vector(0).data(), std::size_t(classes_), std::size_t(features_));
  }

  // One SGD step on a batch xs [B, features], ys [B] (device): forward, loss, backward, update. Returns the loss.
  template <class X, class Y>
  double step_on(optimizer_type& opt, const X& xs, const Y& ys, const matrix& zb, const matrix& workspace, double rate,
                 double decay_scale, double smoothing) {
    const std::size_t rows = xs.extent(0);
    const matrix z = Kokkos::subview(zb, std::make_pair(std::size_t(0), rows), Kokkos::ALL);
    model_detail::linear_forward(space_, xs, weight_matrix(), set_.parameters().vector(1), z);
    const double loss = loss::softmax_xent(space_, matrix_view<const float, ExecSpace>(z), vector_view<const int, ExecSpace>(ys),
                                           matrix_view<float, ExecSpace>(z), smoothing);
    auto& g = set_.gradients();
    const Kokkos::View<float**, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged> dw(
        g.vector(0).data(), std::size_t(classes_), std::size_t(features_));
    const Kokkos::View<float**, Kokkos::LayoutRight, memory_space> no_dx;
    model_detail::linear_backward(space_, xs, weight_matrix(), z, dw, g.vector(1), no_dx, workspace);
    opt.step(rate, decay_scale);
    return loss;
  }

  template <class V>
  static std::vector<float> download(const V& v) {
    auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
    return std::vector<float>(host.data(), host.data() + host.extent(0));
  }

  int features_, classes_;
  ExecSpace space_;
  std::vector<tensor_info> table_;
  set_type set_;
};

}  // namespace vitscale::eval
