// Few-shot linear evaluation: the correct-prediction counts of big_vision's own code (fewshot_lsr.py run in
// float64 by tests/reference/fewshot_reference.py, on committed features and numpy's k-shot orders) for every
// L2 constant, shot count and seed; the ridge weights of the eigendecomposition against a direct LDLT solve of
// (XᵀX + λI) w = XᵀY in both of big_vision's branches; the k-shot orders drawn as numpy draws them (against numpy's
// outputs); gathering batches; the errors.
#include <support/files.hpp>
#include <vitscale/eval/fewshot.hpp>

#include <Eigen/Cholesky>  // after fewshot.hpp's core/eigen.hpp, which silences GCC 12's false positive in Core

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace ev = vitscale::eval;

namespace {

struct golden_case {
  int classes = 0;
  ev::host_features train, test;
  std::vector<int> train_labels, test_labels;
  std::vector<int> shots;
  std::vector<double> l2_regs;
  ev::fewshot_orders orders;
  nlohmann::json json;
};

ev::host_features features_from(const nlohmann::json& q, double scale, std::size_t dim) {
  REQUIRE(q.size() % dim == 0);
  ev::host_features x(static_cast<Eigen::Index>(q.size() / dim), static_cast<Eigen::Index>(dim));
  for (std::size_t k = 0; k < q.size(); ++k)  // multiples of 1/16: exact in float, as the script's float64 ones
    x.data()[k] = static_cast<float>(q[k].get<double>() * scale);
  return x;
}

golden_case load_case(const std::string& name) {
  golden_case c;
  c.json = vitscale::test::load_golden_json("eval", "fewshot_" + name + ".json", "fewshot_reference.py");
  const auto& j = c.json;
  c.classes = j["classes"].get<int>();
  const auto dim = j["dim"].get<std::size_t>();
  const double scale = j["scale"].get<double>();
  c.train = features_from(j["train_features"], scale, dim);
  c.test = features_from(j["test_features"], scale, dim);
  c.train_labels = j["train_labels"].get<std::vector<int>>();
  c.test_labels = j["test_labels"].get<std::vector<int>>();
  c.shots = j["shots"].get<std::vector<int>>();
  c.l2_regs = j["l2_regs"].get<std::vector<double>>();
  c.orders = j["orders"].get<ev::fewshot_orders>();
  REQUIRE(j["bias_constant"].get<double>() == ev::fewshot_bias_constant);
  return c;
}

ev::fewshot_options options_of(const golden_case& c) {
  ev::fewshot_options o;
  o.shots = c.shots;
  o.seeds = static_cast<int>(c.orders.size());
  o.l2_regs = c.l2_regs;
  return o;
}

// The k-shot subset of one order, class by class.
std::vector<std::int64_t> subset_of(const std::vector<std::vector<std::int64_t>>& order, int shots) {
  std::vector<std::int64_t> subset;
  for (const auto& o : order) subset.insert(subset.end(), o.begin(), o.begin() + shots);
  return subset;
}

// big_vision's regression written out directly: whitened features (population std + 1e-5), the bias column,
// ±1 targets, then (XᵀX + λI) w = XᵀY by LDLT, in double.
Eigen::MatrixXd direct_weights(const golden_case& c, const std::vector<std::int64_t>& subset, double l2) {
  const Eigen::Index n = static_cast<Eigen::Index>(subset.size()), d = c.train.cols();
  Eigen::MatrixXd x(n, d + 1);
  Eigen::MatrixXd y = Eigen::MatrixXd::Constant(n, c.classes, -1.0);
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto row = static_cast<Eigen::Index>(subset[static_cast<std::size_t>(i)]);
    for (Eigen::Index j = 0; j < d; ++j) x(i, j) = c.train(row, j);
    y(i, c.train_labels[static_cast<std::size_t>(row)]) = 1.0;
  }
  for (Eigen::Index j = 0; j < d; ++j) {
    double mean = 0, var = 0;
    for (Eigen::Index i = 0; i < n; ++i) mean += x(i, j);
    mean /= static_cast<double>(n);
    for (Eigen::Index i = 0; i < n; ++i) var += (x(i, j) - mean) * (x(i, j) - mean);
    const double sd = std::sqrt(var / static_cast<double>(n)) + 1e-5;
    for (Eigen::Index i = 0; i < n; ++i) x(i, j) = (x(i, j) - mean) / sd;
  }
  x.col(d).setConstant(100.0);
  Eigen::MatrixXd a = x.transpose() * x;
  a.diagonal().array() += l2;
  return a.ldlt().solve(x.transpose() * y);
}

}  // namespace

TEST_CASE("few-shot accuracies equal big_vision's for every L2 constant, shot count and seed") {
  for (const std::string name : {"main", "wide"}) {
    CAPTURE(name);
    const golden_case c = load_case(name);
    const ev::fewshot_result r =
        ev::fewshot_evaluate(c.train, c.train_labels, c.test, c.test_labels, c.classes, c.orders, options_of(c));
    const auto want64 = c.json["correct_float64"], want32 = c.json["correct_float32"];
    int differ32 = 0, largest32 = 0;
    for (std::size_t l = 0; l < c.l2_regs.size(); ++l)
      for (std::size_t k = 0; k < c.shots.size(); ++k)
        for (int s = 0; s < r.seeds; ++s) {
          CAPTURE(c.l2_regs[l]);
          CAPTURE(c.shots[k]);
          CAPTURE(s);
          const auto got = r.correct_count(l, k, s);
          CHECK(got == want64[l][k][s].get<std::int64_t>());
          const auto gap = std::abs(static_cast<int>(got) - want32[l][k][s].get<int>());
          differ32 += gap != 0;
          largest32 = std::max(largest32, gap);
        }
    // big_vision's float32 run: recorded, not required (see fewshot.hpp on precision).
    MESSAGE(name << ": counts differing from big_vision's float32 run: " << differ32 << " of "
                 << r.correct.size() << ", by at most " << largest32 << " of " << r.test_count << " test examples");
    // The accuracies are what the counts say, and mean over seeds.
    CHECK(r.accuracy(0, 1, 2) == doctest::Approx(want64[0][1][2].get<double>() / static_cast<double>(r.test_count)));
    const double mean = (want64[0][3][0].get<double>() + want64[0][3][1].get<double>() +
                         want64[0][3][2].get<double>()) / (3.0 * static_cast<double>(r.test_count));
    CHECK(r.mean_accuracy(0, 3) == doctest::Approx(mean).epsilon(1e-12));
  }
}

TEST_CASE("few-shot ridge weights equal a direct solve in both of big_vision's branches") {
  double worst_features_gram = 0, worst_examples_gram = 0;
  int features_gram = 0, examples_gram = 0;
  for (const std::string name : {"main", "wide"}) {
    const golden_case c = load_case(name);
    for (std::size_t s = 0; s < c.orders.size(); ++s)
      for (int shots : c.shots) {
        const auto subset = subset_of(c.orders[s], shots);
        const ev::fewshot_ridge ridge(c.train, c.train_labels, subset, c.classes);
        // big_vision's branch: XᵀX when n ≥ D + 1, XXᵀ otherwise
        const bool expect_features_gram = static_cast<Eigen::Index>(subset.size()) >= c.train.cols() + 1;
        CHECK(ridge.decomposes_features_gram() == expect_features_gram);
        CHECK(ridge.eigenvalues().size() == (expect_features_gram ? c.train.cols() + 1
                                                                   : static_cast<Eigen::Index>(subset.size())));
        for (double l2 : c.l2_regs) {
          CAPTURE(name);
          CAPTURE(shots);
          CAPTURE(l2);
          const Eigen::MatrixXd w = ridge.weights(l2), want = direct_weights(c, subset, l2);
          REQUIRE(w.rows() == want.rows());
          REQUIRE(w.cols() == want.cols());
          const double rel = (w - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff();
          CHECK(rel < 1e-6);
          (expect_features_gram ? worst_features_gram : worst_examples_gram) =
              std::max(expect_features_gram ? worst_features_gram : worst_examples_gram, rel);
          ++(expect_features_gram ? features_gram : examples_gram);
        }
      }
  }
  CHECK(features_gram > 0);  // both branches were taken
  CHECK(examples_gram > 0);
  MESSAGE("largest max|w - w_direct| / max|w_direct|: XᵀX branch " << worst_features_gram << " (" << features_gram
          << " solves), XXᵀ branch " << worst_examples_gram << " (" << examples_gram << " solves)");
}

TEST_CASE("few-shot predictions are the argmax of the whitened test features times the weights") {
  const golden_case c = load_case("main");
  const auto subset = subset_of(c.orders[1], 5);
  const ev::fewshot_ridge ridge(c.train, c.train_labels, subset, c.classes);
  const Eigen::MatrixXd w = direct_weights(c, subset, 1024.0);
  std::int64_t hits = 0;
  for (Eigen::Index i = 0; i < c.test.rows(); ++i) {
    Eigen::RowVectorXd z(c.test.cols() + 1);
    for (Eigen::Index j = 0; j < c.test.cols(); ++j)
      z(j) = (c.test(i, j) - ridge.mean()(j)) / ridge.stddev()(j);
    z(c.test.cols()) = 100.0;
    Eigen::Index best = 0;
    (z * w).maxCoeff(&best);
    hits += best == c.test_labels[static_cast<std::size_t>(i)];
  }
  CHECK(ridge.correct(c.test, c.test_labels, 1024.0) == hits);
  // More test rows than one block of the scoring loop (1024): eleven copies, eleven times the hits.
  ev::host_features tiled(11 * c.test.rows(), c.test.cols());
  std::vector<int> tiled_labels;
  for (Eigen::Index t = 0; t < 11; ++t) {
    tiled.middleRows(t * c.test.rows(), c.test.rows()) = c.test;
    tiled_labels.insert(tiled_labels.end(), c.test_labels.begin(), c.test_labels.end());
  }
  const auto tiled_hits = ridge.correct(tiled, tiled_labels, std::vector<double>{1.0, 1024.0});
  CHECK(tiled_hits[1] == 11 * hits);
  CHECK(tiled_hits[0] == 11 * ridge.correct(c.test, c.test_labels, 1.0));
  // scores(): the same whitening and bias, before the argmax
  const Eigen::MatrixXd scores = ridge.scores(c.test, w);
  Eigen::RowVectorXd z0(c.test.cols() + 1);
  for (Eigen::Index j = 0; j < c.test.cols(); ++j) z0(j) = (c.test(0, j) - ridge.mean()(j)) / ridge.stddev()(j);
  z0(c.test.cols()) = 100.0;
  CHECK((scores.row(0) - z0 * w).cwiseAbs().maxCoeff() < 1e-9 * (z0 * w).cwiseAbs().maxCoeff());
}

TEST_CASE("numpy_generator reproduces numpy's PCG64 draws and Generator.permutation") {
  const auto g = vitscale::test::load_golden_json("eval", "numpy_permutations.json", "fewshot_reference.py");
  const auto seeds = g["seeds"].get<std::vector<std::uint64_t>>();
  const auto lengths = g["lengths"].get<std::vector<std::size_t>>();
  for (std::size_t s = 0; s < seeds.size(); ++s) {
    CAPTURE(seeds[s]);
    ev::numpy_generator raw(seeds[s]);
    for (const auto& want : g["raw"][s]) CHECK(raw.next64() == std::stoull(want.get<std::string>()));
    ev::numpy_generator sequential(seeds[s]);
    for (std::size_t k = 0; k < lengths.size(); ++k) {
      CAPTURE(lengths[k]);
      std::vector<int> values(lengths[k]);
      for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int>(i);
      auto fresh = values;
      ev::numpy_generator(seeds[s]).shuffle(fresh);
      CHECK(fresh == g["permutations"][s][k].get<std::vector<int>>());
      sequential.shuffle(values);  // the generator carries on, half-used 64-bit draws included
      CHECK(values == g["sequential"][s][k].get<std::vector<int>>());
    }
  }
}

TEST_CASE("fewshot_draw_orders draws big_vision's k-shot orders, and fewshot_evaluate uses them by default") {
  for (const std::string name : {"main", "wide"}) {
    CAPTURE(name);
    const golden_case c = load_case(name);
    const auto drawn = ev::fewshot_draw_orders(c.train_labels, c.classes, static_cast<int>(c.orders.size()));
    CHECK(drawn == c.orders);
    const auto r = ev::fewshot_evaluate(c.train, c.train_labels, c.test, c.test_labels, c.classes, options_of(c));
    CHECK(r.correct == ev::fewshot_evaluate(c.train, c.train_labels, c.test, c.test_labels, c.classes, c.orders,
                                            options_of(c)).correct);
    for (std::size_t l = 0; l < c.l2_regs.size(); ++l)
      for (std::size_t k = 0; k < c.shots.size(); ++k)
        for (int s = 0; s < r.seeds; ++s) CHECK(r.correct_count(l, k, s) == c.json["correct_float64"][l][k][s].get<std::int64_t>());
    // Another selection seed: other orders, each still a permutation of its class.
    const auto other = ev::fewshot_draw_orders(c.train_labels, c.classes, 1, 7);
    CHECK(other[0] != c.orders[0]);
    CHECK(other[0] == ev::fewshot_draw_orders(c.train_labels, c.classes, 8)[7]);  // seed s is default_rng(base + s)
    for (int cls = 0; cls < c.classes; ++cls) {
      auto sorted = other[0][static_cast<std::size_t>(cls)], want = c.orders[0][static_cast<std::size_t>(cls)];
      std::sort(sorted.begin(), sorted.end());
      std::sort(want.begin(), want.end());
      CHECK(sorted == want);
    }
  }
  // Better than chance (10 %) at every shot count, and more shots help on average.
  const golden_case c = load_case("main");
  ev::fewshot_options o;
  const auto r = ev::fewshot_evaluate(c.train, c.train_labels, c.test, c.test_labels, c.classes, o);
  for (std::size_t k = 0; k < o.shots.size(); ++k) CHECK(r.mean_accuracy(0, k) > 0.3);
  CHECK(r.mean_accuracy(0, 3) > r.mean_accuracy(0, 0) + 0.2);
}

TEST_CASE("gather_features concatenates the batches a feature extractor yields") {
  int calls = 0;
  const auto all = ev::gather_features([&]() -> std::optional<ev::labelled_features> {
    if (calls == 3) return std::nullopt;
    ev::labelled_features b;
    const int rows = calls == 2 ? 1 : 4;  // a short last batch
    b.features.resize(rows, 3);
    for (int i = 0; i < rows; ++i) {
      for (int j = 0; j < 3; ++j) b.features(i, j) = static_cast<float>(100 * calls + 10 * i + j);
      b.labels.push_back(calls * 10 + i);
    }
    ++calls;
    return b;
  });
  REQUIRE(all.features.rows() == 9);
  REQUIRE(all.features.cols() == 3);
  CHECK(all.labels == std::vector<int>{0, 1, 2, 3, 10, 11, 12, 13, 20});
  CHECK(all.features(5, 2) == 112.0f);
  CHECK(all.features(8, 1) == 201.0f);

  int n = 0;
  CHECK_ERROR(ev::gather_features([&]() -> std::optional<ev::labelled_features> {
                if (n == 2) return std::nullopt;
                ev::labelled_features b;
                b.features = ev::host_features::Ones(2, n == 0 ? 3 : 4);
                b.labels = {0, 1};
                ++n;
                return b;
              }),
              "batch 1 has features of dimension 4", "earlier batches have 3");
  CHECK_ERROR(ev::gather_features([]() -> std::optional<ev::labelled_features> {
                ev::labelled_features b;
                b.features = ev::host_features::Ones(2, 3);
                b.labels = {0};
                return b;
              }),
              "batch 0 has 2 feature rows but 1 labels");
}

TEST_CASE("few-shot evaluation errors") {
  const golden_case c = load_case("wide");  // 5 classes, 20 training examples each
  auto opts = options_of(c);
  const auto run = [&](const ev::host_features& train, const std::vector<int>& train_labels,
                       const ev::host_features& test, const std::vector<int>& test_labels,
                       const ev::fewshot_orders& orders, const ev::fewshot_options& o) {
    return ev::fewshot_evaluate(train, train_labels, test, test_labels, c.classes, orders, o);
  };
  // The golden case itself runs.
  CHECK(vitscale::test::error_of([&] { run(c.train, c.train_labels, c.test, c.test_labels, c.orders, opts); }) ==
        "(no error)");

  auto more = opts;
  more.shots = {1, 21};
  CHECK_ERROR(run(c.train, c.train_labels, c.test, c.test_labels, c.orders, more), "class 0 has 20 training examples",
              "fewer than the 21 shots asked for");
  CHECK_ERROR(ev::fewshot_evaluate(c.train, c.train_labels, c.test, c.test_labels, c.classes, more),
              "fewer than the 21 shots");

  auto short_labels = c.train_labels;
  short_labels.pop_back();
  CHECK_ERROR(run(c.train, short_labels, c.test, c.test_labels, c.orders, opts), "100 train feature rows but 99 train labels");
  auto short_test = c.test_labels;
  short_test.push_back(0);
  CHECK_ERROR(run(c.train, c.train_labels, c.test, short_test, c.orders, opts), "100 test feature rows but 101 test labels");
  const ev::host_features narrow = c.test.leftCols(95);
  CHECK_ERROR(run(c.train, c.train_labels, narrow, c.test_labels, c.orders, opts),
              "train features of dimension 96 but test features of dimension 95");

  ev::host_features nan_train = c.train;
  nan_train(17, 5) = std::numeric_limits<float>::quiet_NaN();
  CHECK_ERROR(run(nan_train, c.train_labels, c.test, c.test_labels, c.orders, opts), "train feature [17, 5] is nan",
              "must be finite");
  ev::host_features inf_test = c.test;
  inf_test(3, 90) = std::numeric_limits<float>::infinity();
  CHECK_ERROR(run(c.train, c.train_labels, inf_test, c.test_labels, c.orders, opts), "test feature [3, 90] is inf");

  auto bad_train = c.train_labels;
  bad_train[4] = 5;
  CHECK_ERROR(run(c.train, bad_train, c.test, c.test_labels, c.orders, opts), "train label 4 is 5, outside [0, 5)");
  auto bad_test = c.test_labels;
  bad_test[9] = -1;
  CHECK_ERROR(run(c.train, c.train_labels, c.test, bad_test, c.orders, opts), "test label 9 is -1, outside [0, 5)");

  auto zero_l2 = opts;
  zero_l2.l2_regs = {1024.0, 0.0};
  CHECK_ERROR(run(c.train, c.train_labels, c.test, c.test_labels, c.orders, zero_l2), "L2 constant 0",
              "finite value > 0");
  auto zero_shots = opts;
  zero_shots.shots = {0, 5};
  CHECK_ERROR(run(c.train, c.train_labels, c.test, c.test_labels, c.orders, zero_shots), "a shot count of 0");
  auto two_seeds = opts;
  two_seeds.seeds = 2;
  CHECK_ERROR(run(c.train, c.train_labels, c.test, c.test_labels, c.orders, two_seeds), "3 orders for 2 seeds");

  auto wrong_class = c.orders;
  std::swap(wrong_class[1][0][0], wrong_class[1][1][0]);
  CHECK_ERROR(run(c.train, c.train_labels, c.test, c.test_labels, wrong_class, opts), "seed 1, class 0 lists example",
              "which is not of that class");
  auto twice = c.orders;
  twice[2][3][4] = twice[2][3][0];
  CHECK_ERROR(run(c.train, c.train_labels, c.test, c.test_labels, twice, opts), "seed 2, class 3",
              "lists a training example twice");
  auto outside = c.orders;
  outside[0][4][19] = 100;
  CHECK_ERROR(run(c.train, c.train_labels, c.test, c.test_labels, outside, opts), "example 100, outside the training set");

  const ev::host_features empty(0, 96);
  CHECK_ERROR(run(c.train, c.train_labels, empty, {}, c.orders, opts), "the test set is empty");
  CHECK_ERROR(ev::fewshot_draw_orders(c.train_labels, c.classes, 0), "0 seeds");
  CHECK_ERROR(ev::fewshot_ridge(c.train, c.train_labels, {}, c.classes), "an empty training subset");
  CHECK_ERROR(ev::fewshot_ridge(c.train, c.train_labels, {0, 1}, c.classes).weights(-1.0), "L2 constant -1");
}
