// Linear probes (eval/linear_probe.hpp) and frozen features (eval/features.hpp): the first SGD step against the
// gradient of softmax cross-entropy written out in double; a probe that separates clustered features; the same
// seed giving the same head bit for bit; a frozen backbone's parameters bit-identical after a probe is trained
// and written into it, whose logits are then the probe's; extract_features' batching for any model; and the
// errors.
#include <doctest/doctest.h>
#include <support/errors.hpp>
#include <support/spaces.hpp>
#include <vitscale/eval/features.hpp>
#include <vitscale/eval/linear_probe.hpp>
#include <vitscale/config/accounting.hpp>
#include <vitscale/model/init.hpp>
#include <vitscale/model/vit.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <string>
#include <vector>

using namespace vitscale;

namespace {

// N examples of `classes` Gaussian clusters in D dimensions (centres ~N(0, scale²), spread 1): with a small scale
// they overlap, so a probe must train to reach a high accuracy and cannot reach 100%.
struct clusters {
  eval::feature_matrix x;
  std::vector<int> y;
  std::vector<double> centres;  // [classes, D]
};
clusters make_clusters(int n, int d, int classes, unsigned seed, double scale = 1.5) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> centres(std::size_t(classes * d));
  for (double& c : centres) c = scale * normal(rng);
  clusters out{eval::feature_matrix("x", std::size_t(n), std::size_t(d)), {}, centres};
  for (int i = 0; i < n; ++i) {
    const int c = i % classes;
    out.y.push_back(c);
    for (int j = 0; j < d; ++j)
      out.x(std::size_t(i), std::size_t(j)) = float(centres[std::size_t(c * d + j)] + normal(rng));
  }
  return out;
}

using tiny = vit_shape<2, 32, 2, 64, 4, options<opt::classes<3>, opt::resolution<16>, opt::channels<1>, opt::pool_gap>>;

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("linear probe: the first step is -lr times the gradient of cross-entropy", Space, probe_step) {
  const clusters data = make_clusters(37, 5, 3, 1);
  eval::linear_probe<Space> probe(5, 3);
  eval::probe_options o;
  o.epochs = 1;
  o.batch = 37;  // one step over everything: the gradient is the full batch's
  o.lr = 0.25;
  o.warmup_fraction = 0;
  o.momentum = 0;
  probe.fit(data.x, data.y, o);
  // From a zero head, softmax is 1/C for every class: dW = (1/C − onehot)ᵀ·X / N, db = Σ (1/C − onehot) / N.
  // One step of a one-step cosine schedule uses the peak.
  const std::vector<float> w = probe.weight(), b = probe.bias();
  double worst = 0;
  for (int c = 0; c < 3; ++c) {
    double db = 0;
    for (int i = 0; i < 37; ++i) db += (1.0 / 3 - (data.y[std::size_t(i)] == c)) / 37;
    worst = std::max(worst, std::fabs(b[std::size_t(c)] - (-0.25 * db)));
    for (int j = 0; j < 5; ++j) {
      double dw = 0;
      for (int i = 0; i < 37; ++i)
        dw += (1.0 / 3 - (data.y[std::size_t(i)] == c)) * double(data.x(std::size_t(i), std::size_t(j))) / 37;
      worst = std::max(worst, std::fabs(w[std::size_t(c * 5 + j)] - (-0.25 * dw)));
    }
  }
  MESSAGE("first probe step: max |float - double| = " << worst);
  CHECK(worst < 1e-6);  // float sums of 37 products of size ~1: a few ulps
  CHECK(w[0] != 0.0f);
}

TEST_CASE_TEMPLATE_DEFINE("linear probe: separates clusters, and the same seed gives the same head", Space, probe_fit) {
  // One draw of 800 examples split 600 / 200, so that both halves share the clusters' centres.
  const clusters all = make_clusters(800, 16, 4, 2, 0.5);
  eval::feature_matrix xtr = Kokkos::subview(all.x, std::make_pair(0, 600), Kokkos::ALL);
  eval::feature_matrix xte("xte", 200, 16);
  Kokkos::deep_copy(xte, Kokkos::subview(all.x, std::make_pair(600, 800), Kokkos::ALL));
  std::vector<int> ytr(all.y.begin(), all.y.begin() + 600), yte(all.y.begin() + 600, all.y.end());

  eval::probe_options o;
  o.epochs = 8;
  o.batch = 64;
  o.lr = 0.1;
  o.seed = 7;
  eval::linear_probe<Space> a(16, 4), b(16, 4);
  const auto before = a.accuracy(xte, yte);
  const eval::probe_history h = a.fit(xtr, ytr, o);
  b.fit(xtr, ytr, o);
  const double acc = a.accuracy(xte, yte);
  // The best any classifier does here: the nearest true centre (equal isotropic clusters: Bayes's rule, linear).
  int bayes_correct = 0;
  for (int i = 0; i < 200; ++i) {
    int best = 0;
    double best_d = 1e300;
    for (int c = 0; c < 4; ++c) {
      double dist = 0;
      for (int j = 0; j < 16; ++j) {
        const double e = xte(std::size_t(i), std::size_t(j)) - all.centres[std::size_t(c * 16 + j)];
        dist += e * e;
      }
      if (dist < best_d) best_d = dist, best = c;
    }
    bayes_correct += best == yte[std::size_t(i)];
  }
  const double bayes = bayes_correct / 200.0;
  MESSAGE("probe on 4 overlapping clusters: test accuracy " << before << " (zero head) -> " << acc
          << " (nearest true centre: " << bayes << "), loss " << h.epoch_loss.front() << " -> " << h.epoch_loss.back());
  CHECK(h.epoch_loss.size() == 8);
  CHECK(h.epoch_loss.back() < h.epoch_loss.front());
  CHECK(bayes < 0.97);  // the task is not trivial
  CHECK(acc > bayes - 0.05);
  const std::vector<float> wa = a.weight(), wb = b.weight();
  CHECK(std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)) == 0);
  eval::linear_probe<Space> c(16, 4);
  o.seed = 8;
  c.fit(xtr, ytr, o);
  CHECK(c.weight() != wa);  // another order of batches
}

TEST_CASE_TEMPLATE_DEFINE("linear probe: the frozen backbone is untouched and its head becomes the probe's", Space,
                          probe_frozen) {
  using model_t = vit<tiny, precision::fp32, Space>;
  model_t model(init::big_vision{/*seed*/ 5, /*head_bias*/ 0.0f});
  std::vector<std::vector<float>> before;
  for (int i = 0; i < int(model.parameters().table().size()); ++i) before.push_back(model.parameter(i));

  // 48 random images, labels from the sign pattern of two pixels, so there is something to learn.
  const int n = 48;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> pixels(std::size_t(n) * 16 * 16);
  for (float& p : pixels) p = u(rng);
  std::vector<int> labels;
  for (int i = 0; i < n; ++i) labels.push_back((pixels[std::size_t(i) * 256] > 0) + (pixels[std::size_t(i) * 256 + 17] > 0));
  std::int64_t calls = 0;
  const eval::feature_matrix x = eval::extract_features(
      model, n, /*batch*/ 20,
      [&](std::int64_t first, int count, const auto& images) {
        REQUIRE(images.extent(0) == std::size_t(count));
        std::memcpy(images.data(), pixels.data() + first * 256, std::size_t(count) * 256 * sizeof(float));
      },
      [&](std::int64_t done, std::int64_t total) {
        ++calls;
        CHECK(total == n);
        CHECK(done <= n);
      });
  CHECK(calls == 3);  // 20 + 20 + 8
  // The frozen backbone holds its parameters and an inference arena for the batch (laid out for 20 images,
  // then for the last 8 in the same allocation), as the accounting says.
  CHECK(model.activation_capacity() == std::size_t(inference_memory<tiny, precision::fp32>(20, 16).activations));
  CHECK(model.activation_bytes() == std::size_t(inference_memory<tiny, precision::fp32>(8, 16).activations));
  REQUIRE(x.extent(0) == std::size_t(n));
  REQUIRE(x.extent(1) == std::size_t(tiny::features));

  eval::linear_probe<Space> probe(tiny::features, tiny::num_classes);
  eval::probe_options o;
  o.epochs = 20;
  o.batch = 16;
  probe.fit(x, labels, o);
  probe.write_head(model);

  const auto& table = model.parameters().table();
  for (int i = 0; i < int(table.size()); ++i) {
    const std::string name = table[std::size_t(i)].full_name();
    const std::vector<float> now = model.parameter(i);
    if (name == "head.weight") {
      CHECK(now == probe.weight());
    } else if (name == "head.bias") {
      CHECK(now == probe.bias());
    } else {
      INFO(name);
      CHECK(std::memcmp(now.data(), before[std::size_t(i)].data(), now.size() * sizeof(float)) == 0);
    }
  }

  // The model's logits on the same images are the probe's logits of the cached features.
  Kokkos::View<float****, Kokkos::LayoutRight, typename Space::memory_space> images("images", n, 16, 16, 1);
  auto host = Kokkos::create_mirror_view(images);
  std::memcpy(host.data(), pixels.data(), pixels.size() * sizeof(float));
  Kokkos::deep_copy(images, host);
  const auto model_logits = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.predict(images));
  const eval::feature_matrix probe_logits = probe.logits(x);
  double worst = 0, scale = 0;
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c) {
      worst = std::max(worst, double(std::fabs(model_logits(i, c) - probe_logits(std::size_t(i), std::size_t(c)))));
      scale = std::max(scale, double(std::fabs(probe_logits(std::size_t(i), std::size_t(c)))));
    }
  MESSAGE("model with the probe's head vs probe: max |logit difference| " << worst << " (largest logit " << scale << ")");
  CHECK(scale > 0.1);
  CHECK(worst <= 1e-5 * std::max(1.0, scale));  // the same products; GEMM blocking may differ by batch size
}

TEST_CASE("extract_features' callable form: every example's row, across batches, and the errors") {
  // 7 images of 2 x 2 x 3 in batches of 3 (3 + 3 + 1); image i has pixel value i + c/10 in channel c, and the
  // "model" gives features (sum of the batch's pixels of image i, channel 2's first pixel).
  const eval::feature_geometry g{2, 3, 2};
  std::vector<int> batch_sizes;
  const auto fill = [&](std::int64_t first, int n, const eval::host_images& images) {
    REQUIRE(images.extent(0) == std::size_t(n));
    REQUIRE(images.extent(3) == 3);
    batch_sizes.push_back(n);
    for (int i = 0; i < n; ++i)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 2; ++x)
          for (int c = 0; c < 3; ++c) images(std::size_t(i), std::size_t(y), std::size_t(x), std::size_t(c)) = float(first + i) + 0.1f * float(c);
  };
  const auto compute = [](const eval::host_images& images, const auto& rows) {
    REQUIRE(rows.extent(0) == images.extent(0));
    for (std::size_t i = 0; i < images.extent(0); ++i) {
      float sum = 0;
      for (std::size_t k = 0; k < 12; ++k) sum += images.data()[i * 12 + k];
      rows(i, 0) = sum;
      rows(i, 1) = images(i, 0, 0, 2);
    }
  };
  const eval::feature_matrix x = eval::extract_features(g, 7, 3, fill, compute);
  CHECK(batch_sizes == std::vector<int>{3, 3, 1});
  REQUIRE(x.extent(0) == 7);
  REQUIRE(x.extent(1) == 2);
  for (int i = 0; i < 7; ++i) {
    CHECK(x(std::size_t(i), 0) == doctest::Approx(12.0 * i + 4 * (0.1 + 0.2)));
    CHECK(x(std::size_t(i), 1) == doctest::Approx(i + 0.2));
  }
  CHECK(eval::extract_features(g, 0, 3, fill, compute).extent(0) == 0);

  const auto nan_at_5 = [&](const eval::host_images& images, const auto& rows) {
    compute(images, rows);
    for (std::size_t i = 0; i < images.extent(0); ++i)
      if (images(i, 0, 0, 0) == 5.0f) rows(i, 1) = std::numeric_limits<float>::quiet_NaN();
  };
  CHECK_THROWS_WITH_AS(eval::extract_features(g, 7, 3, fill, nan_at_5),
                       doctest::Contains("the features of example 5 are not finite (NaN at feature 1)"), non_finite_error);
  CHECK_THROWS_WITH(eval::extract_features(g, 7, 0, fill, compute), doctest::Contains("the batch size is 0"));
  CHECK_THROWS_WITH(eval::extract_features(eval::feature_geometry{2, 3, 0}, 7, 3, fill, compute),
                    doctest::Contains("gives 0 features; each must be at least 1"));
}

TEST_CASE("inference_memory: the accounting's frozen-model arena is what vit::reserve(batch, false) allocates") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  using map_qk = vit_shape<2, 32, 4, 64, 4, options<opt::classes<5>, opt::resolution<16>, opt::pool_map, opt::qk_norm<>>>;
  using parallel = vit_shape<2, 32, 2, 96, 4, options<opt::resolution<16>, opt::parallel_block, opt::qk_norm<>, opt::qkv_bias<false>,
                                                      opt::pool_gap, opt::classes<7>>>;
  const auto check = [](auto* tag, auto* policy_tag, int batch, int res) {
    using S = std::remove_pointer_t<decltype(tag)>;
    using P = std::remove_pointer_t<decltype(policy_tag)>;
    vit<S, P, Space> model(res);
    model.reserve(batch, /*training*/ false);
    const auto m = inference_memory<S, P>(batch, res);
    INFO(describe<S>().to_string() << " at " << res << " px, batch " << batch);
    CHECK(model.activation_bytes() == std::size_t(m.activations));
    CHECK(m.parameters == S::params(res).total * std::int64_t(sizeof(typename P::param_type)));
    // Far less than training's arena: one block's activations, no backward scratch.
    model.reserve(batch, /*training*/ true);
    CHECK(model.activation_bytes() > std::size_t(m.activations));
  };
  check(static_cast<tiny*>(nullptr), static_cast<precision::fp32*>(nullptr), 20, 16);
  check(static_cast<tiny*>(nullptr), static_cast<precision::bf16_mixed*>(nullptr), 3, 24);
  check(static_cast<map_qk*>(nullptr), static_cast<precision::fp32*>(nullptr), 5, 16);
  check(static_cast<map_qk*>(nullptr), static_cast<precision::bf16_mixed*>(nullptr), 3, 16);
  check(static_cast<parallel*>(nullptr), static_cast<precision::bf16_mixed*>(nullptr), 4, 20);
  // A run-time descriptor gives the same figures (what examples/fewshot reports for a catalogue model).
  CHECK(inference_memory(describe<map_qk>(), precision_bytes::of<precision::fp32>(), 5, 16).total() ==
        inference_memory<map_qk, precision::fp32>(5, 16).total());
}

TEST_CASE("linear probe: errors name what is wrong") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  eval::feature_matrix x("x", 4, 3);
  eval::linear_probe<Space> probe(3, 2);
  eval::probe_options o;
  CHECK_ERROR(probe.fit(x, {0, 1, 2, 0}, o), "label 2 of example 2 is outside [0, 2)");
  CHECK_ERROR(probe.fit(x, {0, 1}, o), "4 examples but 2 labels");
  eval::feature_matrix wide("wide", 4, 5);
  CHECK_ERROR(probe.fit(wide, {0, 1, 1, 0}, o), "the probe takes 3 per example");
  x(1, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK_ERROR(probe.fit(x, {0, 1, 1, 0}, o), "feature 2 of example 1 is NaN");
  x(1, 2) = 0;
  o.lr = 0;
  CHECK_ERROR(probe.fit(x, {0, 1, 1, 0}, o), "learning rate must be positive");
  CHECK_ERROR(eval::linear_probe<Space>(0, 2), "features is 0");
  using model_t = vit<tiny, precision::fp32, Space>;
  model_t model;
  eval::linear_probe<Space> other(tiny::features, 5);
  CHECK_ERROR(other.write_head(model), "the model's head is 3 x 32");
}

VITSCALE_ON_HOST_SPACES(probe_step);
VITSCALE_ON_HOST_SPACES(probe_fit);
VITSCALE_ON_HOST_SPACES(probe_frozen);
