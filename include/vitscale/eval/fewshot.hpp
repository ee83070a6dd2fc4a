#pragma once
// Few-shot linear evaluation as big_vision computes it (big_vision/evaluators/fewshot_lsr.py, read at commit
// 0127fb6 of google-research/big_vision; followed, not copied): for each seed, each class's training indices in
// a random order; for each shot count k, the first k of every class form the training set; a closed-form ridge
// regression from whitened features (plus a constant bias feature of 100) to ±1 one-hot targets; the accuracy of
// its argmax on the whole test set.
//
// The solve uses big_vision's eigendecomposition: with X the [n, d] design matrix (d = D + 1 with the bias),
//   n ≥ d:  w = (XᵀX + λI)⁻¹ Xᵀ Y  = Q (Λ + λI)⁻¹ Qᵀ Xᵀ Y,   XᵀX = Q Λ Qᵀ  (Q: [d, d])
//   d > n:  w = Xᵀ (XXᵀ + λI)⁻¹ Y  = (Xᵀ Q) (Λ + λI)⁻¹ Qᵀ Y,  XXᵀ = Q Λ Qᵀ  (Q: [n, n])
// so the smaller Gram matrix is decomposed once per training set and every L2 constant costs one product.
//
// Precision: double throughout, where big_vision runs JAX's default float32 on the host CPU. The bias feature
// (100, so that the bias is almost unregularised) puts entries of 10⁴·n into the Gram matrix beside whitened
// entries of order n, and float32's eigenvalues are then good to ~1e-7·λ_max absolutely: at big_vision's
// λ = 1024 float32 and float64 give the same predictions on the committed test sets, at λ = 1 (and n ≈ d) a few
// of 200 test predictions change (tests/golden/eval, written by tests/reference/fewshot_reference.py, records
// both). The tests hold vitscale to big_vision's code run in float64; the features are small (d ≤ a few
// thousand), so double costs nothing that matters.
//
// The k-shot orders are big_vision's: for seed s, numpy's `default_rng(s)` permutes each class's indices in turn
// (`rng.permutation(np.where(labels == c)[0])`), and k shots are the first k of each. `numpy_generator` below
// reproduces that draw exactly (SeedSequence → PCG64 → Generator.permutation's Fisher–Yates with masked
// rejection), checked against numpy's own orders in tests/golden/eval; `fewshot_evaluate` also takes explicit
// orders.

#include <vitscale/core/error.hpp>
#include <vitscale/eval/metrics.hpp>  // host_matrix and to_host, shared with the metrics

#include <vitscale/core/eigen.hpp>

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace vitscale::eval {

// Host features, one example per row ([N, D], float; `to_host(model.features(images).pooled)` makes them).
using host_features = host_matrix;
// Any float matrix expression or Map that can be viewed as host features without a copy, or is copied once.
using features_ref = Eigen::Ref<const host_features>;

// big_vision's constants: the bias feature, the std guard of the whitening, the default L2 (configs/common_fewshot.py).
inline constexpr double fewshot_bias_constant = 100.0;
inline constexpr double fewshot_std_epsilon = 1e-5;
inline constexpr double fewshot_default_l2 = 1024.0;

struct fewshot_options {
  std::vector<int> shots{1, 5, 10, 25};
  int seeds = 3;
  std::vector<double> l2_regs{fewshot_default_l2};  // every one reuses the same eigendecomposition
  std::uint64_t selection_seed = 0;                 // seed s draws with default_rng(selection_seed + s); 0: big_vision
};

// orders[seed][class]: indices of that class's training examples in the order in which shots take them.
using fewshot_orders = std::vector<std::vector<std::vector<std::int64_t>>>;

// Correct test predictions per (L2 constant, shot count, seed), and the accuracies derived from them.
struct fewshot_result {
  std::vector<int> shots;
  std::vector<double> l2_regs;
  int seeds = 0;
  std::int64_t test_count = 0;
  std::vector<std::int64_t> correct;  // [l2][shot][seed], row-major

  std::int64_t correct_count(std::size_t l2_index, std::size_t shot_index, int seed) const {
    return correct.at((l2_index * shots.size() + shot_index) * static_cast<std::size_t>(seeds) +
                      static_cast<std::size_t>(seed));
  }
  double accuracy(std::size_t l2_index, std::size_t shot_index, int seed) const {
    return static_cast<double>(correct_count(l2_index, shot_index, seed)) / static_cast<double>(test_count);
  }
  // The mean over seeds of the accuracy (what papers report as "k-shot accuracy").
  double mean_accuracy(std::size_t l2_index, std::size_t shot_index) const {
    double sum = 0;
    for (int s = 0; s < seeds; ++s) sum += accuracy(l2_index, shot_index, s);
    return sum / seeds;
  }
};

namespace detail {

inline void check_features_finite(const features_ref& x, const char* what) {
  for (Eigen::Index i = 0; i < x.rows(); ++i)
    for (Eigen::Index j = 0; j < x.cols(); ++j)
      if (!std::isfinite(x(i, j)))
        vitscale::detail::fail("few-shot evaluation: ", what, " feature [", i, ", ", j, "] is ", x(i, j),
                               "; features must be finite");
}

inline void check_labels(const std::vector<int>& labels, int classes, const char* what) {
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      vitscale::detail::fail("few-shot evaluation: ", what, " label ", i, " is ", labels[i], ", outside [0, ",
                             classes, ") for ", classes, " classes");
}

inline void check_set(const features_ref& x, const std::vector<int>& labels, int classes, const char* what) {
  if (x.rows() == 0) vitscale::detail::fail("few-shot evaluation: the ", what, " set is empty");
  if (static_cast<std::size_t>(x.rows()) != labels.size())
    vitscale::detail::fail("few-shot evaluation: ", x.rows(), " ", what, " feature rows but ", labels.size(),
                           " ", what, " labels; expected one label per row");
  check_features_finite(x, what);
  check_labels(labels, classes, what);
}

}  // namespace detail

// big_vision's `_precompute_cache`: the whitening of one training set and the eigendecomposition of its smaller
// Gram matrix, from which `weights(λ)` is one product for any λ > 0.
class fewshot_ridge {
 public:
  // x: [n, D] training features (rows `subset` of `features`, in that order), labels: [N] in [0, classes).
  fewshot_ridge(const features_ref& features, const std::vector<int>& labels, const std::vector<std::int64_t>& subset,
                int classes)
      : classes_(classes) {
    if (classes < 1) vitscale::detail::fail("few-shot evaluation: ", classes, " classes; expected at least 1");
    if (subset.empty()) vitscale::detail::fail("few-shot evaluation: an empty training subset");
    if (static_cast<std::size_t>(features.rows()) != labels.size())
      vitscale::detail::fail("few-shot evaluation: ", features.rows(), " train feature rows but ", labels.size(),
                             " train labels; expected one label per row");
    const Eigen::Index n = static_cast<Eigen::Index>(subset.size()), dim = features.cols();
    if (dim == 0) vitscale::detail::fail("few-shot evaluation: features of dimension 0");
    Eigen::MatrixXd x(n, dim + 1);
    Eigen::MatrixXd y = Eigen::MatrixXd::Constant(n, classes, -1.0);  // one-hot rescaled into {-1, 1}
    for (Eigen::Index i = 0; i < n; ++i) {
      const std::int64_t row = subset[static_cast<std::size_t>(i)];
      if (row < 0 || row >= features.rows())
        vitscale::detail::fail("few-shot evaluation: training index ", row, " is outside [0, ", features.rows(), ")");
      const int label = labels[static_cast<std::size_t>(row)];
      if (label < 0 || label >= classes)
        vitscale::detail::fail("few-shot evaluation: train label ", row, " is ", label, ", outside [0, ", classes,
                               ") for ", classes, " classes");
      for (Eigen::Index j = 0; j < dim; ++j) {
        const float v = features(row, j);
        if (!std::isfinite(v))
          vitscale::detail::fail("few-shot evaluation: train feature [", row, ", ", j, "] is ", v,
                                 "; features must be finite");
        x(i, j) = static_cast<double>(v);
      }
      y(i, label) = 1.0;
    }
    // Whitening with the population std (jnp.std's ddof = 0) plus 1e-5, then the bias feature.
    mean_ = x.leftCols(dim).colwise().mean();
    std_.resize(dim);
    for (Eigen::Index j = 0; j < dim; ++j) {
      x.col(j).array() -= mean_(j);
      std_(j) = std::sqrt(x.col(j).squaredNorm() / static_cast<double>(n)) + fewshot_std_epsilon;
      x.col(j) /= std_(j);
    }
    x.col(dim).setConstant(fewshot_bias_constant);

    features_gram_ = n >= dim + 1;
    if (features_gram_) {  // (A) XᵀX = Q Λ Qᵀ: lhs = Q, rhs = Qᵀ Xᵀ Y
      Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(dim + 1, dim + 1);
      gram.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
      decompose(gram);
      rhs_ = lhs_.transpose() * (x.transpose() * y);
    } else {  // (B) XXᵀ = Q Λ Qᵀ: lhs = Xᵀ Q, rhs = Qᵀ Y
      Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(n, n);
      gram.selfadjointView<Eigen::Lower>().rankUpdate(x);
      decompose(gram);
      rhs_ = lhs_.transpose() * y;
      lhs_ = x.transpose() * lhs_;
    }
  }

  // The ridge weights for L2 constant `l2` > 0: [D + 1, classes], the last row multiplies the bias feature.
  Eigen::MatrixXd weights(double l2) const {
    if (!(l2 > 0) || !std::isfinite(l2))
      vitscale::detail::fail("few-shot evaluation: L2 constant ", l2, "; expected a finite value > 0");
    const Eigen::VectorXd scaling = (eigenvalues_.array() + l2).inverse();
    return lhs_ * scaling.asDiagonal() * rhs_;
  }

  // Test rows scored with `w` (= weights(λ)): this training set's whitening of the features, the bias feature,
  // times w, in double. x_test: [M, D] -> [M, classes]
  Eigen::MatrixXd scores(const features_ref& x_test, const Eigen::MatrixXd& w) const {
    check_test_dimension(x_test);
    const Eigen::Index dim = mean_.size();
    Eigen::MatrixXd s = whiten(x_test) * w.topRows(dim);
    s.rowwise() += fewshot_bias_constant * w.row(dim);
    return s;
  }

  // Correct argmax predictions (the first of equal scores, as jnp.argmax) on x_test: [M, D], labels: [M], for each
  // L2 constant; the test rows are whitened once, a block of rows at a time (memory: block × D doubles).
  std::vector<std::int64_t> correct(const features_ref& x_test, const std::vector<int>& test_labels,
                                    const std::vector<double>& l2_regs) const {
    check_test_dimension(x_test);
    if (static_cast<std::size_t>(x_test.rows()) != test_labels.size())
      vitscale::detail::fail("few-shot evaluation: ", x_test.rows(), " test feature rows but ", test_labels.size(),
                             " test labels; expected one label per row");
    const Eigen::Index dim = mean_.size();
    std::vector<Eigen::MatrixXd> w;
    for (double l2 : l2_regs) w.push_back(weights(l2));
    std::vector<std::int64_t> hits(l2_regs.size(), 0);
    constexpr Eigen::Index block = 1024;
    for (Eigen::Index first = 0; first < x_test.rows(); first += block) {
      const Eigen::Index rows = std::min(block, x_test.rows() - first);
      const Eigen::MatrixXd z = whiten(x_test.middleRows(first, rows));
      for (std::size_t l = 0; l < w.size(); ++l) {
        Eigen::MatrixXd s = z * w[l].topRows(dim);
        s.rowwise() += fewshot_bias_constant * w[l].row(dim);
        for (Eigen::Index i = 0; i < rows; ++i) {
          Eigen::Index best = 0;
          for (Eigen::Index c = 1; c < s.cols(); ++c)
            if (s(i, c) > s(i, best)) best = c;
          hits[l] += best == test_labels[static_cast<std::size_t>(first + i)];
        }
      }
    }
    return hits;
  }
  std::int64_t correct(const features_ref& x_test, const std::vector<int>& test_labels, double l2) const {
    return correct(x_test, test_labels, std::vector<double>{l2}).front();
  }

  int classes() const { return classes_; }
  const Eigen::RowVectorXd& mean() const { return mean_; }
  const Eigen::RowVectorXd& stddev() const { return std_; }        // with the 1e-5 guard added
  const Eigen::VectorXd& eigenvalues() const { return eigenvalues_; }  // ascending, of XᵀX or XXᵀ
  bool decomposes_features_gram() const { return features_gram_; }   // XᵀX (n ≥ D + 1) or XXᵀ (n < D + 1)

 private:
  void check_test_dimension(const features_ref& x_test) const {
    if (x_test.cols() != mean_.size())
      vitscale::detail::fail("few-shot evaluation: test features of dimension ", x_test.cols(),
                             "; the training features have ", mean_.size());
  }
  // (x − mean) / std in double: [rows, D]
  Eigen::MatrixXd whiten(const features_ref& x) const {
    return ((x.cast<double>().rowwise() - mean_).array().rowwise() / std_.array()).matrix();
  }

  // The solver reads the lower triangle only, which is what rankUpdate wrote.
  void decompose(const Eigen::MatrixXd& gram) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(gram);
    if (solver.info() != Eigen::Success)
      vitscale::detail::fail("few-shot evaluation: the eigendecomposition of the ", gram.rows(), "x", gram.cols(),
                             " Gram matrix did not converge");
    eigenvalues_ = solver.eigenvalues();
    lhs_ = solver.eigenvectors();
  }

  int classes_;
  bool features_gram_ = false;
  Eigen::RowVectorXd mean_, std_;
  Eigen::VectorXd eigenvalues_;
  Eigen::MatrixXd lhs_, rhs_;
};

// numpy's `np.random.default_rng(seed)` for an integer seed, as far as `permutation` of a 1-D array uses it:
// SeedSequence (numpy/random/bit_generator.pyx: the seed's 32-bit words hashed into a pool of 4, 8 words drawn
// from it), PCG64 (numpy/random/src/pcg64: 128-bit LCG, XSL-RR output; state and increment from those words) and
// Generator.shuffle's Fisher–Yates (j uniform on [0, i] by masked rejection on 32-bit draws, which take the low
// then the high half of a 64-bit output). Written from the algorithms' descriptions and checked against numpy's
// outputs (tests/golden/eval/numpy_permutations.json); 128-bit arithmetic in two 64-bit halves (no __int128, which
// -Wpedantic rejects).
class numpy_generator {
 public:
  explicit numpy_generator(std::uint64_t seed) {
    std::uint32_t words[8];
    seed_sequence(seed, words);
    const u128 initstate{join(words[0], words[1]), join(words[2], words[3])};  // words little-endian in uint64s
    const u128 initseq{join(words[4], words[5]), join(words[6], words[7])};
    inc_ = {(initseq.hi << 1) | (initseq.lo >> 63), (initseq.lo << 1) | 1u};
    state_ = {0, 0};
    step();
    state_ = add(state_, initstate);
    step();
  }

  std::uint64_t next64() {
    step();
    const std::uint64_t x = state_.hi ^ state_.lo;
    const unsigned r = static_cast<unsigned>(state_.hi >> 58);
    return r == 0 ? x : (x >> r) | (x << (64 - r));
  }
  std::uint32_t next32() {
    if (has_half_) {
      has_half_ = false;
      return half_;
    }
    const std::uint64_t v = next64();
    has_half_ = true;
    half_ = static_cast<std::uint32_t>(v >> 32);
    return static_cast<std::uint32_t>(v);
  }
  // Uniform on [0, max], numpy's random_interval.
  std::uint64_t interval(std::uint64_t max) {
    if (max == 0) return 0;
    std::uint64_t mask = max;
    for (unsigned shift = 1; shift < 64; shift <<= 1) mask |= mask >> shift;
    if (max <= 0xFFFFFFFFu) {
      for (;;)
        if (const std::uint64_t v = next32() & mask; v <= max) return v;
    }
    for (;;)
      if (const std::uint64_t v = next64() & mask; v <= max) return v;
  }
  // Generator.permutation / shuffle of a 1-D sequence, in place.
  template <class T>
  void shuffle(std::vector<T>& values) {
    for (std::size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[interval(i - 1)]);
  }

 private:
  struct u128 {
    std::uint64_t hi, lo;
  };
  static std::uint64_t join(std::uint32_t low, std::uint32_t high) {
    return static_cast<std::uint64_t>(low) | static_cast<std::uint64_t>(high) << 32;
  }
  static u128 add(u128 a, u128 b) {
    const std::uint64_t lo = a.lo + b.lo;
    return {a.hi + b.hi + (lo < a.lo ? 1u : 0u), lo};
  }
  static u128 mul64(std::uint64_t a, std::uint64_t b) {  // full 64 × 64 -> 128
    const std::uint64_t a0 = a & 0xFFFFFFFFu, a1 = a >> 32, b0 = b & 0xFFFFFFFFu, b1 = b >> 32;
    const std::uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    const std::uint64_t middle = (p00 >> 32) + (p01 & 0xFFFFFFFFu) + (p10 & 0xFFFFFFFFu);
    return {p11 + (p01 >> 32) + (p10 >> 32) + (middle >> 32), (middle << 32) | (p00 & 0xFFFFFFFFu)};
  }
  static u128 mul(u128 a, u128 b) {  // mod 2^128
    u128 r = mul64(a.lo, b.lo);
    r.hi += a.hi * b.lo + a.lo * b.hi;
    return r;
  }
  void step() {
    constexpr u128 multiplier{0x2360ED051FC65DA4ull, 0x4385DF649FCCF645ull};  // PCG's default 128-bit multiplier
    state_ = add(mul(state_, multiplier), inc_);
  }
  // SeedSequence(seed).generate_state(8, uint32): entropy = the seed's 32-bit words (one word for 0), no spawn key.
  static void seed_sequence(std::uint64_t seed, std::uint32_t (&out)[8]) {
    std::uint32_t entropy[2] = {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)};
    const int words = entropy[1] != 0 ? 2 : 1;
    std::uint32_t hash_const = 0x43b0d7e5u;
    const auto hashmix = [&hash_const](std::uint32_t v) {
      v ^= hash_const;
      hash_const *= 0x931e8875u;
      v *= hash_const;
      v ^= v >> 16;
      return v;
    };
    const auto mix = [](std::uint32_t x, std::uint32_t y) {
      std::uint32_t r = 0xca01f9ddu * x - 0x4973f715u * y;
      r ^= r >> 16;
      return r;
    };
    std::uint32_t pool[4];
    for (int i = 0; i < 4; ++i) pool[i] = hashmix(i < words ? entropy[i] : 0u);
    for (int src = 0; src < 4; ++src)
      for (int dst = 0; dst < 4; ++dst)
        if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
    std::uint32_t out_const = 0x8b51f9ddu;
    for (int i = 0; i < 8; ++i) {
      std::uint32_t v = pool[i % 4] ^ out_const;
      out_const *= 0x58f38dedu;
      v *= out_const;
      v ^= v >> 16;
      out[i] = v;
    }
  }

  u128 state_{}, inc_{};
  bool has_half_ = false;
  std::uint32_t half_ = 0;
};

// big_vision's k-shot orders: for each seed s, numpy's default_rng(selection_seed + s) permutes the ascending
// indices of class 0, then class 1, … (fewshot_lsr.py's compute_fewshot_metrics). labels: [N] in [0, classes).
inline fewshot_orders fewshot_draw_orders(const std::vector<int>& labels, int classes, int seeds,
                                          std::uint64_t selection_seed = 0) {
  if (classes < 1) vitscale::detail::fail("few-shot evaluation: ", classes, " classes; expected at least 1");
  if (seeds < 1) vitscale::detail::fail("few-shot evaluation: ", seeds, " seeds; expected at least 1");
  detail::check_labels(labels, classes, "train");
  std::vector<std::vector<std::int64_t>> by_class(static_cast<std::size_t>(classes));
  for (std::size_t i = 0; i < labels.size(); ++i)
    by_class[static_cast<std::size_t>(labels[i])].push_back(static_cast<std::int64_t>(i));
  fewshot_orders orders(static_cast<std::size_t>(seeds), by_class);
  for (int s = 0; s < seeds; ++s) {
    numpy_generator rng(selection_seed + static_cast<std::uint64_t>(s));
    for (auto& order : orders[static_cast<std::size_t>(s)]) rng.shuffle(order);
  }
  return orders;
}

// Few-shot accuracies for given orders (one per seed; the first k of each class's order form the k-shot set):
// train: [N, D] with labels [N], test: [M, D] with labels [M], classes ≥ 1. options.seeds must be orders.size().
inline fewshot_result fewshot_evaluate(const features_ref& train, const std::vector<int>& train_labels,
                                       const features_ref& test, const std::vector<int>& test_labels, int classes,
                                       const fewshot_orders& orders, const fewshot_options& options = {}) {
  if (classes < 1) vitscale::detail::fail("few-shot evaluation: ", classes, " classes; expected at least 1");
  detail::check_set(train, train_labels, classes, "train");
  detail::check_set(test, test_labels, classes, "test");
  if (train.cols() != test.cols())
    vitscale::detail::fail("few-shot evaluation: train features of dimension ", train.cols(),
                           " but test features of dimension ", test.cols());
  if (options.shots.empty()) vitscale::detail::fail("few-shot evaluation: no shot counts given");
  for (int k : options.shots)
    if (k < 1) vitscale::detail::fail("few-shot evaluation: a shot count of ", k, "; expected at least 1");
  if (options.l2_regs.empty()) vitscale::detail::fail("few-shot evaluation: no L2 constants given");
  for (double l2 : options.l2_regs)
    if (!(l2 > 0) || !std::isfinite(l2))
      vitscale::detail::fail("few-shot evaluation: L2 constant ", l2, "; expected a finite value > 0");
  if (options.seeds < 1 || static_cast<std::size_t>(options.seeds) != orders.size())
    vitscale::detail::fail("few-shot evaluation: ", orders.size(), " orders for ", options.seeds,
                           " seeds; expected one order per seed");

  const int most_shots = *std::max_element(options.shots.begin(), options.shots.end());
  std::vector<std::int64_t> class_size(static_cast<std::size_t>(classes), 0);
  for (int label : train_labels) ++class_size[static_cast<std::size_t>(label)];
  for (int c = 0; c < classes; ++c)
    if (class_size[static_cast<std::size_t>(c)] < most_shots)
      vitscale::detail::fail("few-shot evaluation: class ", c, " has ", class_size[static_cast<std::size_t>(c)],
                             " training examples, fewer than the ", most_shots, " shots asked for");
  for (std::size_t s = 0; s < orders.size(); ++s) {
    if (orders[s].size() != static_cast<std::size_t>(classes))
      vitscale::detail::fail("few-shot evaluation: the order of seed ", s, " has ", orders[s].size(),
                             " classes; expected ", classes);
    for (int c = 0; c < classes; ++c) {
      const auto& order = orders[s][static_cast<std::size_t>(c)];
      if (order.size() < static_cast<std::size_t>(most_shots))
        vitscale::detail::fail("few-shot evaluation: the order of seed ", s, ", class ", c, " lists ", order.size(),
                               " examples, fewer than the ", most_shots, " shots asked for");
      std::vector<std::int64_t> sorted(order.begin(), order.begin() + most_shots);
      std::sort(sorted.begin(), sorted.end());
      if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
        vitscale::detail::fail("few-shot evaluation: the order of seed ", s, ", class ", c,
                               " lists a training example twice");
      for (std::int64_t i : sorted)
        if (i < 0 || i >= train.rows() || train_labels[static_cast<std::size_t>(i)] != c)
          vitscale::detail::fail("few-shot evaluation: the order of seed ", s, ", class ", c, " lists example ", i,
                                 i < 0 || i >= train.rows() ? ", outside the training set"
                                                            : ", which is not of that class");
    }
  }

  fewshot_result result;
  result.shots = options.shots;
  result.l2_regs = options.l2_regs;
  result.seeds = options.seeds;
  result.test_count = test.rows();
  result.correct.assign(options.l2_regs.size() * options.shots.size() * orders.size(), 0);
  for (std::size_t s = 0; s < orders.size(); ++s) {
    for (std::size_t k = 0; k < options.shots.size(); ++k) {
      std::vector<std::int64_t> subset;  // class by class, as big_vision concatenates them
      for (const auto& order : orders[s])
        subset.insert(subset.end(), order.begin(), order.begin() + options.shots[k]);
      const fewshot_ridge ridge(train, train_labels, subset, classes);
      const std::vector<std::int64_t> hits = ridge.correct(test, test_labels, options.l2_regs);
      for (std::size_t l = 0; l < options.l2_regs.size(); ++l)
        result.correct[(l * options.shots.size() + k) * orders.size() + s] = hits[l];
    }
  }
  return result;
}

// Few-shot accuracies with big_vision's k-shot orders (fewshot_draw_orders with options.seeds and
// options.selection_seed): with selection_seed 0, the numbers big_vision's evaluator reports for these features.
inline fewshot_result fewshot_evaluate(const features_ref& train, const std::vector<int>& train_labels,
                                       const features_ref& test, const std::vector<int>& test_labels, int classes,
                                       const fewshot_options& options = {}) {
  if (classes < 1) vitscale::detail::fail("few-shot evaluation: ", classes, " classes; expected at least 1");
  detail::check_set(train, train_labels, classes, "train");
  return fewshot_evaluate(train, train_labels, test, test_labels, classes,
                          fewshot_draw_orders(train_labels, classes, options.seeds, options.selection_seed), options);
}

// A batch of features and its labels, as a feature extractor yields it.
struct labelled_features {
  host_features features;  // [B, D]
  std::vector<int> labels;  // [B]
};

// Concatenates the batches `next()` yields (std::optional<labelled_features>; std::nullopt ends) into one set.
template <class Next>
labelled_features gather_features(Next&& next) {
  std::vector<labelled_features> batches;
  Eigen::Index rows = 0, dim = -1;
  while (std::optional<labelled_features> batch = next()) {
    if (static_cast<std::size_t>(batch->features.rows()) != batch->labels.size())
      vitscale::detail::fail("gather_features: batch ", batches.size(), " has ", batch->features.rows(),
                             " feature rows but ", batch->labels.size(), " labels");
    if (dim >= 0 && batch->features.cols() != dim)
      vitscale::detail::fail("gather_features: batch ", batches.size(), " has features of dimension ",
                             batch->features.cols(), "; the earlier batches have ", dim);
    dim = batch->features.cols();
    rows += batch->features.rows();
    batches.push_back(std::move(*batch));
  }
  labelled_features all;
  all.features.resize(rows, dim < 0 ? 0 : dim);
  Eigen::Index at = 0;
  for (auto& b : batches) {
    all.features.middleRows(at, b.features.rows()) = b.features;
    at += b.features.rows();
    all.labels.insert(all.labels.end(), b.labels.begin(), b.labels.end());
  }
  return all;
}

}  // namespace vitscale::eval
