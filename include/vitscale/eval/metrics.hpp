#pragma once
// Classification metrics from host logits, accumulated batch by batch as an evaluation loop produces them.
//
//   classification_accumulator  top-1 / top-k accuracy, per-class accuracy, optional confusion counts, and
//                               class-subset evaluation: only the subset's logits compete (the others count as
//                               −∞), as ImageNet-R / ImageNet-A / ObjectNet results are computed on 1000-class
//                               heads. timm's validate.py slices the logits (`output[:, valid_labels]`, labels in
//                               the subset's numbering); that equals masking the other logits to −∞ before the
//                               argmax (big_vision's idiom for logits that must not win, `jnp.where(exclude,
//                               -jnp.inf, logits)` in utils.py), which is what this does. Labels may be given in
//                               the head's numbering or the subset's. Ties go to the lower head class, so with an
//                               unsorted subset a tie may resolve differently from timm's slice (sorted index files,
//                               as timm's are, agree exactly; tests/eval/metrics.cpp checks it).
//   multilabel_accumulator      the sigmoid models' evaluation, big_vision's evaluators/classification.py with
//                               multi-hot labels: prec@1 = Σ labels[argmax] · m / Σ m with m = max(labels) per
//                               example (examples without a positive label do not count), and the mean sigmoid
//                               cross-entropy over the same examples (utils.sigmoid_xent, summed over classes).
//
// Ranking: classes are ordered by decreasing logit, equal logits by increasing class index (the first maximum
// wins, as jnp.argmax and numpy.argmax). A class is in the top k when fewer than k classes rank
// before it. Counts are exact integers; NaN logits, +∞ logits and labels out of range are errors (−∞ is a masked
// logit and allowed in classification_accumulator), and a batch is checked whole before it counts, so a bad
// batch leaves the totals as they were.

#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <vitscale/core/eigen.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace vitscale::eval {

// Host logits or labels, one example per row ([B, C]).
using host_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using matrix_ref = Eigen::Ref<const host_matrix>;

// A rank-2 Kokkos View ([B, C] logits from vit::predict, [B, D] features from vit::features; float, double or
// bf16, in any memory space) copied to a host float matrix.
template <class View>
host_matrix to_host(const View& v) {
  static_assert(View::rank == 2, "to_host: expected a rank-2 View ([rows, columns])");
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  host_matrix out(static_cast<Eigen::Index>(v.extent(0)), static_cast<Eigen::Index>(v.extent(1)));
  for (std::size_t i = 0; i < v.extent(0); ++i)
    for (std::size_t j = 0; j < v.extent(1); ++j)
      out(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = static_cast<float>(host(i, j));
  return out;
}

// The classes of a head that an evaluation set uses (e.g. ImageNet-R's 200 of ImageNet's 1000), in the order that
// numbers them: subset label i is head class classes()[i].
class class_subset {
 public:
  class_subset(int head_classes, std::vector<int> classes) : head_classes_(head_classes), classes_(std::move(classes)) {
    if (head_classes < 1) vitscale::detail::fail("class_subset: a head of ", head_classes, " classes");
    if (classes_.empty()) vitscale::detail::fail("class_subset: no classes given");
    index_.assign(static_cast<std::size_t>(head_classes), -1);
    for (std::size_t i = 0; i < classes_.size(); ++i) {
      const int c = classes_[i];
      if (c < 0 || c >= head_classes)
        vitscale::detail::fail("class_subset: class ", c, " (entry ", i, ") is outside the head's [0, ", head_classes,
                               ")");
      if (index_[static_cast<std::size_t>(c)] >= 0)
        vitscale::detail::fail("class_subset: class ", c, " is listed twice (entries ",
                               index_[static_cast<std::size_t>(c)], " and ", i, ")");
      index_[static_cast<std::size_t>(c)] = static_cast<int>(i);
    }
  }

  int head_classes() const { return head_classes_; }
  int size() const { return static_cast<int>(classes_.size()); }
  const std::vector<int>& classes() const { return classes_; }
  // The subset's number of head class `c`, or -1 when the subset does not hold it.
  int index_of(int c) const {
    return c >= 0 && c < head_classes_ ? index_[static_cast<std::size_t>(c)] : -1;
  }
  bool contains(int c) const { return index_of(c) >= 0; }

  // A copy of `logits` ([B, head classes]) with every logit outside the subset set to −∞.
  host_matrix masked(const matrix_ref& logits) const {
    if (logits.cols() != head_classes_)
      vitscale::detail::fail("class_subset: logits of ", logits.cols(), " classes for a head of ", head_classes_);
    host_matrix out = logits;
    for (int c = 0; c < head_classes_; ++c)
      if (!contains(c)) out.col(c).setConstant(-std::numeric_limits<float>::infinity());
    return out;
  }

 private:
  int head_classes_;
  std::vector<int> classes_;
  std::vector<int> index_;  // head class -> subset number, -1 outside
};

// Whether labels name head classes or subset positions (timm's ImageNet-R/A sets number their classes 0..199).
enum class label_space { head, subset };

struct classification_options {
  std::vector<int> top_k{1, 5};          // the k of every top-k accuracy to count
  bool confusion = false;                // keep [classes × classes] counts (off: 8·C² bytes for C classes)
  std::optional<class_subset> subset;    // evaluate on these classes only
  label_space labels = label_space::head;  // how labels are numbered when a subset is given
};

// Top-k accuracies, per-class accuracy and confusion counts of argmax predictions, batch by batch.
// Per-class results and confusion counts are indexed by evaluated class: the subset's numbering when a subset is
// given, the head's otherwise.
class classification_accumulator {
 public:
  explicit classification_accumulator(int head_classes, classification_options options = {})
      : head_classes_(head_classes), options_(std::move(options)) {
    if (head_classes < 1) vitscale::detail::fail("classification metrics: a head of ", head_classes, " classes");
    if (options_.subset) {
      if (options_.subset->head_classes() != head_classes)
        vitscale::detail::fail("classification metrics: a class subset of a ", options_.subset->head_classes(),
                               "-class head for a head of ", head_classes, " classes");
      evaluated_ = options_.subset->classes();
    } else {
      if (options_.labels == label_space::subset)
        vitscale::detail::fail("classification metrics: labels numbered by a subset, but no subset was given");
      evaluated_.resize(static_cast<std::size_t>(head_classes));
      for (int c = 0; c < head_classes; ++c) evaluated_[static_cast<std::size_t>(c)] = c;
    }
    std::sort(evaluated_.begin(), evaluated_.end());  // ranking walks the head's order
    if (options_.top_k.empty()) vitscale::detail::fail("classification metrics: no top-k given");
    for (int k : options_.top_k)
      if (k < 1 || k > classes())
        vitscale::detail::fail("classification metrics: top-", k, " of ", classes(),
                               " evaluated classes; k must be in [1, ", classes(), "]");
    top_k_correct_.assign(options_.top_k.size(), 0);
    class_examples_.assign(static_cast<std::size_t>(classes()), 0);
    class_correct_.assign(static_cast<std::size_t>(classes()), 0);
    if (options_.confusion)
      confusion_.assign(static_cast<std::size_t>(classes()) * static_cast<std::size_t>(classes()), 0);
  }

  // logits: [B, head classes] (B ≥ 1), labels: [B] in the numbering of options.labels.
  void add(const matrix_ref& logits, const std::vector<int>& labels) {
    if (logits.rows() == 0) vitscale::detail::fail("classification metrics: an empty batch");
    if (logits.cols() != head_classes_)
      vitscale::detail::fail("classification metrics: logits of ", logits.cols(), " classes for a head of ",
                             head_classes_);
    if (static_cast<std::size_t>(logits.rows()) != labels.size())
      vitscale::detail::fail("classification metrics: ", logits.rows(), " rows of logits but ", labels.size(),
                             " labels");
    std::vector<int> head_label(labels.size());
    for (std::size_t i = 0; i < labels.size(); ++i) head_label[i] = to_head(labels[i], i);
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
      bool any_finite = false;
      for (Eigen::Index c = 0; c < logits.cols(); ++c) {
        const float z = logits(i, c);
        if (std::isnan(z) || z == std::numeric_limits<float>::infinity())
          vitscale::detail::fail("classification metrics: logit [", i, ", ", c, "] is ", z,
                                 "; logits must be finite or −∞ (masked)");
      }
      for (int c : evaluated_) any_finite |= std::isfinite(logits(i, c));
      if (!any_finite)
        vitscale::detail::fail("classification metrics: row ", i, " has no finite logit among the evaluated classes");
    }
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
      const int label = head_label[static_cast<std::size_t>(i)];
      const float zy = logits(i, label);
      int rank = 0, predicted = evaluated_.front();
      float best = logits(i, predicted);
      for (int c : evaluated_) {
        const float z = logits(i, c);
        rank += z > zy || (z == zy && c < label);
        if (z > best) best = z, predicted = c;
      }
      for (std::size_t t = 0; t < options_.top_k.size(); ++t) top_k_correct_[t] += rank < options_.top_k[t];
      const auto truth = static_cast<std::size_t>(evaluated_index(label));
      ++class_examples_[truth];
      class_correct_[truth] += rank == 0;
      if (options_.confusion)
        ++confusion_[truth * static_cast<std::size_t>(classes()) + static_cast<std::size_t>(evaluated_index(predicted))];
    }
    seen_ += logits.rows();
  }

  std::int64_t seen() const { return seen_; }
  int classes() const { return static_cast<int>(evaluated_.size()); }  // evaluated classes

  // Examples whose label is among the k best evaluated classes (k one of options.top_k).
  std::int64_t correct(int k = 1) const {
    for (std::size_t t = 0; t < options_.top_k.size(); ++t)
      if (options_.top_k[t] == k) return top_k_correct_[t];
    vitscale::detail::fail("classification metrics: top-", k, " was not counted; add it to options.top_k");
  }
  double accuracy(int k = 1) const {
    require_examples();
    return static_cast<double>(correct(k)) / static_cast<double>(seen_);
  }

  // Per evaluated class: examples, top-1 correct, and their ratio (NaN for a class without examples).
  const std::vector<std::int64_t>& class_examples() const { return class_examples_; }
  const std::vector<std::int64_t>& class_correct() const { return class_correct_; }
  std::vector<double> per_class_accuracy() const {
    std::vector<double> out(class_examples_.size(), std::numeric_limits<double>::quiet_NaN());
    for (std::size_t c = 0; c < out.size(); ++c)
      if (class_examples_[c] > 0)
        out[c] = static_cast<double>(class_correct_[c]) / static_cast<double>(class_examples_[c]);
    return out;
  }
  // The mean of per-class accuracies over the classes that had examples ("mean per-class accuracy").
  double mean_per_class_accuracy() const {
    require_examples();
    double sum = 0;
    int present = 0;
    for (std::size_t c = 0; c < class_examples_.size(); ++c)
      if (class_examples_[c] > 0)
        sum += static_cast<double>(class_correct_[c]) / static_cast<double>(class_examples_[c]), ++present;
    return sum / present;
  }

  // Examples of evaluated class `truth` predicted as evaluated class `predicted` (options.confusion).
  std::int64_t confusion(int truth, int predicted) const {
    if (!options_.confusion)
      vitscale::detail::fail("classification metrics: confusion counts were not kept; set options.confusion");
    if (truth < 0 || truth >= classes() || predicted < 0 || predicted >= classes())
      vitscale::detail::fail("classification metrics: confusion (", truth, ", ", predicted, ") outside [0, ",
                             classes(), ")");
    return confusion_[static_cast<std::size_t>(truth) * static_cast<std::size_t>(classes()) +
                      static_cast<std::size_t>(predicted)];
  }

 private:
  int to_head(int label, std::size_t i) const {
    if (options_.labels == label_space::subset) {
      if (label < 0 || label >= options_.subset->size())
        vitscale::detail::fail("classification metrics: label ", i, " is ", label, ", outside the subset's [0, ",
                               options_.subset->size(), ")");
      return options_.subset->classes()[static_cast<std::size_t>(label)];
    }
    if (label < 0 || label >= head_classes_)
      vitscale::detail::fail("classification metrics: label ", i, " is ", label, ", outside [0, ", head_classes_,
                             ")");
    if (options_.subset && !options_.subset->contains(label))
      vitscale::detail::fail("classification metrics: label ", i, " is class ", label,
                             ", which is not one of the evaluated subset's classes");
    return label;
  }
  int evaluated_index(int head_class) const {
    return options_.subset ? options_.subset->index_of(head_class) : head_class;
  }
  void require_examples() const {
    if (seen_ == 0) vitscale::detail::fail("classification metrics: no examples were added");
  }

  int head_classes_;
  classification_options options_;
  std::vector<int> evaluated_;  // head classes that compete, ascending
  std::int64_t seen_ = 0;
  std::vector<std::int64_t> top_k_correct_, class_examples_, class_correct_, confusion_;
};

// big_vision's classification evaluator for sigmoid models with multi-hot labels: prec@1 and the loss.
class multilabel_accumulator {
 public:
  explicit multilabel_accumulator(int classes) : classes_(classes) {
    if (classes < 1) vitscale::detail::fail("multi-label metrics: a head of ", classes, " classes");
  }

  // logits: [B, classes] (B ≥ 1, finite), labels: [B, classes] with values in [0, 1] (multi-hot or soft).
  void add(const matrix_ref& logits, const matrix_ref& labels) {
    if (logits.rows() == 0) vitscale::detail::fail("multi-label metrics: an empty batch");
    if (logits.cols() != classes_)
      vitscale::detail::fail("multi-label metrics: logits of ", logits.cols(), " classes for a head of ", classes_);
    if (labels.rows() != logits.rows() || labels.cols() != logits.cols())
      vitscale::detail::fail("multi-label metrics: labels of shape [", labels.rows(), ", ", labels.cols(),
                             "] for logits of shape [", logits.rows(), ", ", logits.cols(), "]");
    for (Eigen::Index i = 0; i < logits.rows(); ++i)
      for (Eigen::Index c = 0; c < logits.cols(); ++c) {
        if (!std::isfinite(logits(i, c)))
          vitscale::detail::fail("multi-label metrics: logit [", i, ", ", c, "] is ", logits(i, c),
                                 "; logits must be finite");
        if (!(labels(i, c) >= 0.0f && labels(i, c) <= 1.0f))
          vitscale::detail::fail("multi-label metrics: label [", i, ", ", c, "] is ", labels(i, c),
                                 "; labels must be in [0, 1]");
      }
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
      Eigen::Index top = 0;
      logits.row(i).maxCoeff(&top);  // the first maximum
      const double weight = static_cast<double>(labels.row(i).maxCoeff());
      double nll = 0;
      for (Eigen::Index c = 0; c < logits.cols(); ++c) {
        const double z = logits(i, c), y = labels(i, c);
        nll -= y * log_sigmoid(z) + (1.0 - y) * log_sigmoid(-z);
      }
      correct_ += static_cast<double>(labels(i, top)) * weight;
      counted_ += weight;
      loss_ += nll * weight;
    }
    seen_ += logits.rows();
  }

  // Multi-hot labels given as the positive classes of each example.
  void add(const matrix_ref& logits, const std::vector<std::vector<int>>& positives) {
    if (static_cast<std::size_t>(logits.rows()) != positives.size())
      vitscale::detail::fail("multi-label metrics: ", logits.rows(), " rows of logits but ", positives.size(),
                             " label lists");
    host_matrix labels = host_matrix::Zero(logits.rows(), classes_);
    for (std::size_t i = 0; i < positives.size(); ++i)
      for (int c : positives[i]) {
        if (c < 0 || c >= classes_)
          vitscale::detail::fail("multi-label metrics: example ", i, " has label ", c, ", outside [0, ", classes_, ")");
        labels(static_cast<Eigen::Index>(i), c) = 1.0f;
      }
    add(logits, labels);
  }

  std::int64_t seen() const { return seen_; }    // rows added
  double counted() const { return counted_; }    // Σ max(labels): examples with a positive label
  // big_vision's "prec@1": whether the top-1 class is a positive label, over the counted examples.
  double precision_at_1() const {
    require_counted();
    return correct_ / counted_;
  }
  // big_vision's "loss": the sigmoid cross-entropy summed over classes, averaged over the counted examples.
  double loss() const {
    require_counted();
    return loss_ / counted_;
  }

 private:
  static double log_sigmoid(double z) { return -(std::max(-z, 0.0) + std::log1p(std::exp(-std::fabs(z)))); }
  void require_counted() const {
    if (!(counted_ > 0))
      vitscale::detail::fail("multi-label metrics: no example with a positive label was added (", seen_, " rows)");
  }

  int classes_;
  std::int64_t seen_ = 0;
  double correct_ = 0, counted_ = 0, loss_ = 0;
};

}  // namespace vitscale::eval
