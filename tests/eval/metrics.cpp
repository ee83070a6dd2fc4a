// Classification metrics against hand-computed cases: top-k with ties and masked (−∞) logits, per-class accuracy,
// confusion counts, class-subset evaluation (equal to masking the head's other logits and to timm's slicing), the
// sigmoid models' prec@1 and loss (big_vision's classification evaluator), and every error.
#include <support/errors.hpp>
#include <support/spaces.hpp>
#include <vitscale/core/bf16.hpp>
#include <vitscale/eval/metrics.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace ev = vitscale::eval;

namespace {

constexpr float ninf = -std::numeric_limits<float>::infinity();

ev::host_matrix rows(std::initializer_list<std::initializer_list<float>> values) {
  ev::host_matrix m(static_cast<Eigen::Index>(values.size()), static_cast<Eigen::Index>(values.begin()->size()));
  Eigen::Index i = 0;
  for (const auto& r : values) {
    Eigen::Index j = 0;
    for (float v : r) m(i, j++) = v;
    ++i;
  }
  return m;
}

ev::classification_options with_top(std::vector<int> k, bool confusion = false) {
  ev::classification_options o;
  o.top_k = std::move(k);
  o.confusion = confusion;
  return o;
}

}  // namespace

TEST_CASE("top-k, per-class accuracy and confusion counts over two batches, ties to the lower class") {
  ev::classification_accumulator acc(4, with_top({1, 2, 3}, true));
  // label 1 ranks first; label 2 second; all equal: label 2 has classes 0 and 1 before it (rank 2, prediction 0)
  acc.add(rows({{0.1f, 2.0f, -1.0f, 0.5f}, {3.0f, 1.0f, 2.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}}), {1, 2, 2});
  // a masked (−∞) logit is allowed; label 0 ranks third; label 3 first
  acc.add(rows({{1.0f, ninf, 5.0f, 4.0f}, {-2.0f, -1.0f, -3.0f, 7.0f}}), {0, 3});
  CHECK(acc.seen() == 5);
  CHECK(acc.correct(1) == 2);
  CHECK(acc.correct(2) == 3);
  CHECK(acc.correct(3) == 5);
  CHECK(acc.accuracy() == doctest::Approx(0.4));
  CHECK(acc.accuracy(2) == doctest::Approx(0.6));
  CHECK(acc.class_examples() == std::vector<std::int64_t>{1, 1, 2, 1});
  CHECK(acc.class_correct() == std::vector<std::int64_t>{0, 1, 0, 1});
  const auto per_class = acc.per_class_accuracy();
  CHECK(per_class[0] == 0.0);
  CHECK(per_class[1] == 1.0);
  CHECK(per_class[2] == 0.0);
  CHECK(acc.mean_per_class_accuracy() == doctest::Approx(0.5));
  CHECK(acc.confusion(2, 0) == 2);  // both class-2 examples predicted as class 0
  CHECK(acc.confusion(0, 2) == 1);
  CHECK(acc.confusion(1, 1) == 1);
  CHECK(acc.confusion(3, 3) == 1);
  std::int64_t total = 0;
  for (int t = 0; t < 4; ++t)
    for (int p = 0; p < 4; ++p) total += acc.confusion(t, p);
  CHECK(total == 5);

  // A class without examples: NaN in per-class accuracy, left out of the mean.
  ev::classification_accumulator sparse(3, with_top({1}));
  sparse.add(rows({{1.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 1.0f}, {1.0f, 0.0f, 0.0f}}), {0, 2, 2});
  CHECK(std::isnan(sparse.per_class_accuracy()[1]));
  CHECK(sparse.mean_per_class_accuracy() == doctest::Approx(0.75));  // (1 + 0.5) / 2
  CHECK(sparse.accuracy() == doctest::Approx(2.0 / 3.0));
}

TEST_CASE("class-subset evaluation: only the subset's logits compete, labels in either numbering") {
  // A 6-class head evaluated on head classes {4, 1, 3} (subset labels 0, 1, 2).
  const ev::class_subset subset(6, {4, 1, 3});
  CHECK(subset.index_of(3) == 2);
  CHECK(subset.index_of(0) == -1);
  const ev::host_matrix logits = rows({{9, 2, 8, 1, 3, 7},    // head argmax 0; among {1, 3, 4}: 4
                                       {0, 5, 0, 5, 1, 0},    // 1 and 3 tie: 1 wins, label 3 ranks second
                                       {1, 1, 1, 1, 1, 1}});  // all tie: head class 1 wins
  const std::vector<int> head_labels{4, 3, 1}, subset_labels{0, 2, 1};

  for (const auto space : {ev::label_space::head, ev::label_space::subset}) {
    auto o = with_top({1, 2}, true);
    o.subset = subset;
    o.labels = space;
    ev::classification_accumulator acc(6, o);
    acc.add(logits, space == ev::label_space::head ? head_labels : subset_labels);
    CHECK(acc.classes() == 3);
    CHECK(acc.correct(1) == 2);
    CHECK(acc.correct(2) == 3);
    CHECK(acc.class_correct() == std::vector<std::int64_t>{1, 1, 0});  // subset numbering
    CHECK(acc.confusion(2, 1) == 1);                                    // head 3 predicted as head 1
  }
  // Without the subset the same rows score 0 of 3 at top-1.
  ev::classification_accumulator whole(6, with_top({1}));
  whole.add(logits, head_labels);
  CHECK(whole.correct(1) == 0);
  // Masking the other logits to −∞ by hand gives the subset's result on the whole head.
  ev::classification_accumulator masked(6, with_top({1, 2}));
  masked.add(subset.masked(logits), head_labels);
  CHECK(masked.correct(1) == 2);
  CHECK(masked.correct(2) == 3);
}

TEST_CASE("class-subset evaluation equals masking to −∞ and timm's slicing on random logits with ties") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> small(-3, 3);  // few values: many ties
  const int head = 50, batch = 200;
  std::vector<int> classes;
  for (int c = 1; c < head; c += 3) classes.push_back(c);  // ascending, as timm's index files are
  const ev::class_subset subset(head, classes);
  ev::host_matrix logits(batch, head);
  for (Eigen::Index i = 0; i < logits.size(); ++i) logits.data()[i] = static_cast<float>(small(rng));
  std::vector<int> subset_labels(batch), head_labels(batch);
  for (int i = 0; i < batch; ++i) {
    subset_labels[static_cast<std::size_t>(i)] = static_cast<int>(rng() % classes.size());
    head_labels[static_cast<std::size_t>(i)] = classes[static_cast<std::size_t>(subset_labels[static_cast<std::size_t>(i)])];
  }
  auto o = with_top({1, 5});
  o.subset = subset;
  ev::classification_accumulator by_subset(head, o);
  by_subset.add(logits, head_labels);
  ev::classification_accumulator by_mask(head, with_top({1, 5}));
  by_mask.add(subset.masked(logits), head_labels);
  // timm: output[:, valid_labels], labels in the subset's numbering, a head of |subset| classes
  ev::host_matrix sliced(batch, static_cast<Eigen::Index>(classes.size()));
  for (std::size_t j = 0; j < classes.size(); ++j) sliced.col(static_cast<Eigen::Index>(j)) = logits.col(classes[j]);
  ev::classification_accumulator by_slice(static_cast<int>(classes.size()), with_top({1, 5}));
  by_slice.add(sliced, subset_labels);
  ev::classification_accumulator unmasked(head, with_top({1, 5}));
  unmasked.add(logits, head_labels);
  for (int k : {1, 5}) {
    CAPTURE(k);
    CHECK(by_subset.correct(k) == by_mask.correct(k));
    CHECK(by_subset.correct(k) == by_slice.correct(k));
    CHECK(by_subset.correct(k) > unmasked.correct(k));  // the subset matters here
  }
  CHECK(by_subset.class_correct() == by_slice.class_correct());
}

TEST_CASE("sigmoid models: big_vision's prec@1 and loss with multi-hot and soft labels") {
  const ev::host_matrix logits = rows({{2.0f, -1.0f, 0.5f}, {0.1f, 0.3f, -2.0f}, {1.0f, 1.0f, 0.0f}, {-1.0f, 0.0f, 3.0f}});
  const ev::host_matrix labels = rows({{1, 0, 1}, {1, 0, 0}, {0, 0, 0}, {0, 0, 1}});
  ev::multilabel_accumulator acc(3);
  acc.add(logits.topRows(2), labels.topRows(2));
  acc.add(logits.bottomRows(2), labels.bottomRows(2));
  CHECK(acc.seen() == 4);
  CHECK(acc.counted() == 3.0);  // the row without a positive label does not count
  CHECK(acc.precision_at_1() == doctest::Approx(2.0 / 3.0));  // rows 0 and 3 hit, row 1 misses
  // −Σ y log σ(z) + (1 − y) log σ(−z) = Σ log(1 + e^{−z}) over positives + log(1 + e^{z}) over negatives
  const auto sp = [](double x) { return std::log(1.0 + std::exp(x)); };
  const double want = ((sp(-2.0) + sp(-1.0) + sp(-0.5)) + (sp(-0.1) + sp(0.3) + sp(-2.0)) +
                       (sp(-1.0) + sp(0.0) + sp(-3.0))) / 3.0;
  CHECK(acc.loss() == doctest::Approx(want).epsilon(1e-6));

  ev::multilabel_accumulator lists(3);
  lists.add(logits, std::vector<std::vector<int>>{{0, 2}, {0}, {}, {2}});
  CHECK(lists.precision_at_1() == acc.precision_at_1());
  CHECK(lists.loss() == doctest::Approx(acc.loss()).epsilon(1e-12));

  // Soft labels weigh an example by its largest label: 0.5 · 0.5 correct of 0.5 counted.
  ev::multilabel_accumulator soft(3);
  soft.add(rows({{3.0f, 0.0f, 0.0f}}), rows({{0.5f, 0.0f, 0.0f}}));
  CHECK(soft.precision_at_1() == doctest::Approx(0.5));
  CHECK(soft.counted() == 0.5);
  // Large logits stay finite (the stable log-sigmoid).
  ev::multilabel_accumulator large(2);
  large.add(rows({{-200.0f, 200.0f}}), rows({{1.0f, 0.0f}}));
  CHECK(large.loss() == doctest::Approx(400.0));
}

TEST_CASE_TEMPLATE_DEFINE("to_host copies float and bf16 Views of a space into host matrices", Space, to_host_id) {
  using memory = typename Space::memory_space;
  Kokkos::View<float**, Kokkos::LayoutRight, memory> logits("logits", 3, 5);
  Kokkos::View<vitscale::bf16**, Kokkos::LayoutRight, memory> features("features", 2, 7);
  Kokkos::parallel_for(
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<2>>({0, 0}, {3, 5}),
      KOKKOS_LAMBDA(int i, int j) { logits(i, j) = static_cast<float>(10 * i + j) + 0.25f; });
  Kokkos::parallel_for(
      Kokkos::MDRangePolicy<Space, Kokkos::Rank<2>>({0, 0}, {2, 7}),
      KOKKOS_LAMBDA(int i, int j) { features(i, j) = vitscale::bf16(static_cast<float>(i - j) * 0.5f); });
  Space().fence();
  const ev::host_matrix l = ev::to_host(logits), f = ev::to_host(features);
  REQUIRE(l.rows() == 3);
  REQUIRE(l.cols() == 5);
  REQUIRE(f.rows() == 2);
  REQUIRE(f.cols() == 7);
  CHECK(l(2, 4) == 24.25f);
  CHECK(l(1, 0) == 10.25f);
  CHECK(f(0, 6) == -3.0f);
  CHECK(f(1, 0) == 0.5f);
}
VITSCALE_ON_HOST_SPACES(to_host_id);

TEST_CASE("metrics errors") {
  ev::classification_accumulator acc(4, with_top({1, 2}));
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  CHECK_ERROR(acc.accuracy(), "no examples were added");
  CHECK_ERROR(acc.add(rows({{0, 1, 2, nan}}), {0}), "logit [0, 3] is nan");
  CHECK_ERROR(acc.add(rows({{0, inf, 2, 3}}), {0}), "logit [0, 1] is inf", "finite or −∞");
  CHECK_ERROR(acc.add(rows({{ninf, ninf, ninf, ninf}}), {0}), "row 0 has no finite logit");
  CHECK_ERROR(acc.add(rows({{0, 1, 2, 3}, {0, 1, 2, 3}}), {0, 4}), "label 1 is 4, outside [0, 4)");
  CHECK_ERROR(acc.add(rows({{0, 1, 2, 3}}), {-1}), "label 0 is -1");
  CHECK_ERROR(acc.add(rows({{0, 1, 2, 3}}), {0, 1}), "1 rows of logits but 2 labels");
  CHECK_ERROR(acc.add(rows({{0, 1, 2}}), {0}), "logits of 3 classes for a head of 4");
  CHECK_ERROR(acc.add(ev::host_matrix(0, 4), {}), "an empty batch");
  CHECK(acc.seen() == 0);  // bad batches counted nothing
  acc.add(rows({{0, 1, 2, 3}}), {3});
  CHECK(acc.seen() == 1);
  CHECK(acc.accuracy() == 1.0);
  CHECK_ERROR(acc.accuracy(5), "top-5 was not counted");
  CHECK_ERROR(acc.confusion(0, 0), "confusion counts were not kept");
  CHECK_ERROR(ev::classification_accumulator(3), "top-5 of 3 evaluated classes");  // the default {1, 5}
  CHECK_ERROR(ev::classification_accumulator(0), "a head of 0 classes");

  CHECK_ERROR(ev::class_subset(5, {1, 5}), "class 5 (entry 1) is outside the head's [0, 5)");
  CHECK_ERROR(ev::class_subset(5, {1, 3, 1}), "class 1 is listed twice");
  CHECK_ERROR(ev::class_subset(5, {}), "no classes given");
  auto o = with_top({1});
  o.subset = ev::class_subset(4, {0, 2});
  ev::classification_accumulator sub(4, o);
  CHECK_ERROR(sub.add(rows({{0, 1, 2, 3}}), {1}), "label 0 is class 1, which is not one of the evaluated subset's");
  CHECK_ERROR(sub.add(rows({{0, 1, ninf, 3}, {ninf, 1, ninf, 3}}), {0, 2}), "row 1 has no finite logit");
  o.labels = ev::label_space::subset;
  ev::classification_accumulator sub_numbered(4, o);
  CHECK_ERROR(sub_numbered.add(rows({{0, 1, 2, 3}}), {2}), "outside the subset's [0, 2)");
  CHECK_ERROR(ev::classification_accumulator(5, o), "a class subset of a 4-class head for a head of 5");
  auto no_subset = with_top({1});
  no_subset.labels = ev::label_space::subset;
  CHECK_ERROR(ev::classification_accumulator(4, no_subset), "no subset was given");

  ev::multilabel_accumulator ml(3);
  CHECK_ERROR(ml.precision_at_1(), "no example with a positive label");
  CHECK_ERROR(ml.add(rows({{0, nan, 1}}), rows({{1, 0, 0}})), "logit [0, 1] is nan");
  CHECK_ERROR(ml.add(rows({{0, ninf, 1}}), rows({{1, 0, 0}})), "logit [0, 1] is -inf");
  CHECK_ERROR(ml.add(rows({{0, 0, 1}}), rows({{1, 2, 0}})), "label [0, 1] is 2", "in [0, 1]");
  CHECK_ERROR(ml.add(rows({{0, 0, 1}}), rows({{1, nan, 0}})), "label [0, 1] is nan");
  CHECK_ERROR(ml.add(rows({{0, 0, 1}}), rows({{1, 0}})), "labels of shape [1, 2] for logits of shape [1, 3]");
  CHECK_ERROR(ml.add(rows({{0, 0, 1}}), std::vector<std::vector<int>>{{3}}), "example 0 has label 3");
  CHECK_ERROR(ml.add(ev::host_matrix(0, 3), ev::host_matrix(0, 3)), "an empty batch");
  ml.add(rows({{0, 0, 1}}), rows({{0, 0, 0}}));
  CHECK(ml.seen() == 1);
  CHECK_ERROR(ml.loss(), "no example with a positive label was added (1 rows)");
}
