// Shuffling and batching: the order is a pure function of (seed, epoch), batches hold exactly the permuted
// samples normalised, and a saved position resumes with the same batches.
#include <support/files.hpp>
#include <doctest/doctest.h>
#include <vitscale/data/augment.hpp>
#include <vitscale/data/batches.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace vitscale::data;

namespace {

// n random images of rows × cols with random labels in [0, 10).
dataset random_dataset(int n, int rows, int cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pixel(0, 255), label(0, 9);
  dataset d;
  d.num_classes = 10;
  d.images.count = n;
  d.images.rows = rows;
  d.images.cols = cols;
  d.images.pixels.resize(static_cast<std::size_t>(n * rows * cols));
  for (auto& p : d.images.pixels) p = static_cast<std::uint8_t>(pixel(rng));
  for (int i = 0; i < n; ++i) d.labels.push_back(label(rng));
  return d;
}

bool is_permutation_of_iota(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i] != static_cast<int>(i)) return false;
  return true;
}

using vitscale::test::error_of;

// The batch's labels and image floats, for comparing batches from two batchers.
std::vector<float> contents(const batch& b) {
  std::vector<float> out(b.images.data(), b.images.data() + b.images.span());
  for (int i = 0; i < b.size(); ++i) out.push_back(static_cast<float>(b.labels(i)));
  return out;
}

}  // namespace

TEST_CASE("epoch_permutation: a permutation, a pure function of (seed, epoch)") {
  for (int n : {0, 1, 2, 50, 197, 1000}) {
    CAPTURE(n);
    const auto a = epoch_permutation(n, 42, 3);
    CHECK(a.size() == static_cast<std::size_t>(n));
    CHECK(is_permutation_of_iota(a));
    CHECK(epoch_permutation(n, 42, 3) == a);
    if (n >= 50) {
      CHECK(epoch_permutation(n, 42, 4) != a);
      CHECK(epoch_permutation(n, 43, 3) != a);
      CHECK(epoch_permutation(n, 42, 3, 7) != a);
    }
  }
  // Pinned values: a change to the shuffle would silently change every run's data order.
  CHECK(epoch_permutation(10, 0, 0) == std::vector<int>{1, 4, 5, 8, 2, 0, 6, 9, 3, 7});
  CHECK_THROWS_AS(epoch_permutation(-1, 0, 0), vitscale::error);
}

TEST_CASE("epoch_permutation: every position takes every value about equally often") {
  // 4000 epochs of n = 5: each (position, value) cell expects 800; 6 sigma of a binomial is ~150.
  const int n = 5, epochs = 4000;
  std::vector<int> counts(n * n, 0);
  for (std::uint32_t e = 0; e < epochs; ++e) {
    const auto p = epoch_permutation(n, 7, e);
    for (int i = 0; i < n; ++i) ++counts[static_cast<std::size_t>(i * n + p[static_cast<std::size_t>(i)])];
  }
  for (int c : counts) CHECK(std::abs(c - epochs / n) < 150);
}

TEST_CASE("batcher: batches hold the permuted samples, normalised, channels last") {
  const dataset data = random_dataset(23, 3, 5, 1);
  batcher_options options;
  options.batch_size = 4;
  options.seed = 9;
  options.norm = normalization{0.25f, 0.75f};

  for (bool drop_last : {true, false}) {
    CAPTURE(drop_last);
    options.drop_last = drop_last;
    batcher batches(data, options);
    CHECK(batches.batches_per_epoch() == (drop_last ? 5 : 6));
    for (std::uint32_t epoch = 0; epoch < 3; ++epoch) {
      const auto order = epoch_permutation(23, 9, epoch);
      CHECK(batches.order(epoch) == order);
      for (int k = 0; k < batches.batches_per_epoch(); ++k) {
        const batch b = batches.next();
        CHECK(b.position == batch_position{epoch, 4 * k});
        const int expected_size = (!drop_last && k == 5) ? 3 : 4;
        REQUIRE(b.size() == expected_size);
        REQUIRE(b.images.extent(0) == static_cast<std::size_t>(expected_size));
        CHECK(b.images.extent(1) == 3);
        CHECK(b.images.extent(2) == 5);
        CHECK(b.images.extent(3) == 1);
        for (int i = 0; i < b.size(); ++i) {
          const int sample = order[static_cast<std::size_t>(4 * k + i)];
          CHECK(b.labels(i) == data.labels[static_cast<std::size_t>(sample)]);
          for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 5; ++c) {
              const float x = data.images.pixels[static_cast<std::size_t>((sample * 3 + r) * 5 + c)];
              CHECK(b.images(i, r, c, 0) == doctest::Approx((x / 255.0f - 0.25f) / 0.75f).epsilon(1e-6));
            }
        }
      }
    }
  }
}

TEST_CASE("batcher: without shuffling, file order every epoch") {
  const dataset data = random_dataset(10, 2, 2, 2);
  batcher_options options;
  options.batch_size = 5;
  options.shuffle = false;
  batcher batches(data, options);
  for (int k = 0; k < 4; ++k) {
    const batch b = batches.next();
    for (int i = 0; i < 5; ++i) CHECK(b.labels(i) == data.labels[static_cast<std::size_t>((5 * k + i) % 10)]);
    CHECK(b.images(0, 0, 0, 0) == doctest::Approx(data.images.pixels[static_cast<std::size_t>((5 * k) % 10 * 4)] / 127.5f - 1.0f));
  }
}

TEST_CASE("batcher: a saved position resumes with identical batches") {
  const dataset data = random_dataset(37, 4, 3, 3);
  batcher_options options;
  options.batch_size = 8;
  options.seed = 123;
  for (bool drop_last : {true, false}) {
    CAPTURE(drop_last);
    options.drop_last = drop_last;
    batcher first(data, options);
    std::vector<std::vector<float>> reference;
    std::vector<batch_position> positions;
    for (int k = 0; k < 17; ++k) {  // over several epochs, through epoch ends
      positions.push_back(first.position());
      reference.push_back(contents(first.next()));
    }
    for (std::size_t start : {std::size_t{0}, std::size_t{3}, std::size_t{4}, std::size_t{5}, std::size_t{11}}) {
      CAPTURE(start);
      const batch_position saved = positions[start];  // a plain value: what a checkpoint stores
      batcher resumed(data, options, batch_position{saved.epoch, saved.index});
      for (std::size_t k = start; k < reference.size(); ++k) CHECK(contents(resumed.next()) == reference[k]);
      batcher seeked(data, options);
      seeked.next();
      seeked.seek(saved);
      CHECK(contents(seeked.next()) == reference[start]);
    }
  }
}

TEST_CASE("batcher and fill_batch: bad arguments are refused") {
  const dataset data = random_dataset(5, 2, 2, 4);
  batcher_options options;
  options.batch_size = 8;
  CHECK(error_of([&] { batcher b(data, options); }).find("never yield a batch") != std::string::npos);
  options.drop_last = false;
  batcher short_batches(data, options);
  CHECK(short_batches.next().size() == 5);
  CHECK(short_batches.next().position == batch_position{1, 0});
  options.batch_size = 0;
  CHECK(error_of([&] { batcher b(data, options); }).find("batch_size is 0") != std::string::npos);
  options.batch_size = 2;
  options.norm.std = 0;
  CHECK(error_of([&] { batcher b(data, options); }).find("std") != std::string::npos);
  options.norm.std = 1;
  batcher ok(data, options);
  CHECK(error_of([&] { ok.seek(batch_position{0, 6}); }).find("outside [0, 5]") != std::string::npos);
  host_image_batch wrong("wrong", 2, 3, 2, 1);
  host_label_batch labels("labels", 2);
  const int order[2] = {0, 1};
  CHECK(error_of([&] { fill_batch(data, order, 2, normalization{}, wrong, labels); }).find("[2, 3, 2, 1]") != std::string::npos);
  host_image_batch right("right", 2, 2, 2, 1);
  const int outside[2] = {0, 5};
  CHECK(error_of([&] { fill_batch(data, outside, 2, normalization{}, right, labels); }).find("sample index 5") != std::string::npos);
}

TEST_CASE("pixel_statistics: exact on a small set; Fashion-MNIST's own where installed") {
  dataset d = random_dataset(1, 1, 2, 5);
  d.images.pixels = {0, 255};
  const normalization s = pixel_statistics(d.images);
  CHECK(s.mean == doctest::Approx(0.5));
  CHECK(s.std == doctest::Approx(0.5));
  if (!std::filesystem::exists(fashion_mnist_default_dir)) {
    MESSAGE("skipped the Fashion-MNIST statistics: " << fashion_mnist_default_dir << " is absent");
    return;
  }
  const normalization fm = pixel_statistics(load_fashion_mnist().images);
  MESSAGE("Fashion-MNIST train pixels: mean " << fm.mean << ", std " << fm.std);
  CHECK(fm.mean == doctest::Approx(0.2860).epsilon(0.002));
  CHECK(fm.std == doctest::Approx(0.3530).epsilon(0.002));
}

TEST_CASE("flip_and_shift: each image flipped or not and moved by at most max_shift, reproducibly") {
  constexpr int h = 4, w = 5;
  using images_t = Kokkos::View<float****, Kokkos::LayoutRight, Kokkos::HostSpace>;
  auto original = [&] {
    images_t v("images", 8, h, w, 1);
    for (int b = 0; b < 8; ++b)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) v(b, y, x, 0) = float(1 + y * w + x);  // distinct, none is the background 0
    return v;
  };
  // max_shift 0: every image is itself or its mirror, both occur, and the same (seed, step) repeats exactly.
  int flipped = 0;
  for (std::uint32_t step = 0; step < 4; ++step) {
    auto a = original(), b = original();
    vitscale::data::flip_and_shift(a, 7, step, 0, 0.0f);
    vitscale::data::flip_and_shift(b, 7, step, 0, 0.0f);
    for (int i = 0; i < 8; ++i) {
      bool same = true, mirror = true;
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          same = same && a(i, y, x, 0) == float(1 + y * w + x);
          mirror = mirror && a(i, y, x, 0) == float(1 + y * w + (w - 1 - x));
          CHECK(a(i, y, x, 0) == b(i, y, x, 0));
        }
      CHECK((same || mirror));
      flipped += mirror;
    }
  }
  CHECK(flipped > 0);
  CHECK(flipped < 32);
  // max_shift 1: each pixel is the background or the source pixel within one row and column (of the image or
  // its mirror), and some image actually moved.
  auto s = original();
  vitscale::data::flip_and_shift(s, 3, 0, 1, 0.0f);
  int background = 0;
  for (int i = 0; i < 8; ++i)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const float v = s(i, y, x, 0);
        if (v == 0.0f) {
          ++background;
          continue;
        }
        const int sy = (int(v) - 1) / w, sx = (int(v) - 1) % w;
        CHECK(std::abs(sy - y) <= 1);
        CHECK((std::abs(sx - x) <= 1 || std::abs((w - 1 - sx) - x) <= 1));
      }
  CHECK(background > 0);
  CHECK_THROWS_AS(vitscale::data::flip_and_shift(s, 3, 0, -1, 0.0f), vitscale::error);
}
