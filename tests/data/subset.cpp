// Subsets for transfer studies (data/subset.hpp): class lists, examples of classes, class-balanced samples that
// are pure functions of the seed, validation splits, and copies that keep images and labels together.
#include <doctest/doctest.h>
#include <support/errors.hpp>
#include <vitscale/data/subset.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <vector>

using namespace vitscale::data;

namespace {
// n images of 3 × 2 pixels whose first pixel is the image's index (mod 256), labels i % 10 except a rare class 9.
dataset indexed_dataset(int n) {
  dataset d;
  d.num_classes = 10;
  d.images.count = n;
  d.images.rows = 3;
  d.images.cols = 2;
  d.images.pixels.assign(static_cast<std::size_t>(n) * 6, 0);
  for (int i = 0; i < n; ++i) {
    d.images.pixels[static_cast<std::size_t>(i) * 6] = static_cast<std::uint8_t>(i % 256);
    d.images.pixels[static_cast<std::size_t>(i) * 6 + 5] = static_cast<std::uint8_t>(i % 7);
    d.labels.push_back(i % 10 == 9 && i % 20 != 9 ? 8 : i % 10);
  }
  return d;
}
}  // namespace

TEST_CASE("subset: class lists") {
  CHECK(parse_classes("0-4", 10) == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(parse_classes("7,5,5,9", 10) == std::vector<int>{5, 7, 9});
  CHECK(parse_classes("0-1,8", 10) == std::vector<int>{0, 1, 8});
  CHECK_ERROR(parse_classes("3-1", 10), "the range 3-1 is empty");
  CHECK_ERROR(parse_classes("10", 10), "class 10 does not exist");
  CHECK_ERROR(parse_classes("1,,2", 10), "'' is not a class");
  CHECK_ERROR(parse_classes("a", 10), "'a' is not a class");
}

TEST_CASE("subset: examples of classes, balanced samples and what remains") {
  const dataset d = indexed_dataset(400);
  const std::vector<int> low = examples_of_classes(d, {0, 1, 2, 3, 4});
  CHECK(low.size() == 200);
  for (int i : low) CHECK(d.labels[static_cast<std::size_t>(i)] < 5);
  CHECK(std::is_sorted(low.begin(), low.end()));

  const std::vector<int> a = balanced_sample(d, low, 23, 1), b = balanced_sample(d, low, 23, 1),
                         c = balanced_sample(d, low, 23, 2);
  CHECK(a == b);  // a pure function of the seed
  CHECK(a != c);
  CHECK(a.size() == 23);
  CHECK(std::is_sorted(a.begin(), a.end()));
  CHECK(std::set<int>(a.begin(), a.end()).size() == 23);
  int per_class[5] = {};
  for (int i : a) ++per_class[d.labels[static_cast<std::size_t>(i)]];
  CHECK(per_class[0] == 5);  // 23 = 4 × 5 + 3: classes 0, 1, 2 get one more
  CHECK(per_class[2] == 5);
  CHECK(per_class[3] == 4);
  CHECK(per_class[4] == 4);

  const std::vector<int> rest = remaining(low, a);
  CHECK(rest.size() == 200 - 23);
  for (int i : a) CHECK(!std::binary_search(rest.begin(), rest.end(), i));

  // Class 9 is rare (every 20th image): asking for more than it has names it.
  const std::vector<int> high = examples_of_classes(d, {8, 9});
  CHECK_ERROR(balanced_sample(d, high, 60, 0), "need 30 of class 9, which has 20");
  CHECK_ERROR(balanced_sample(d, low, 201, 0), "cannot draw 201 of 200 examples");
  CHECK_ERROR(examples_of_classes(d, {10}), "class 10 is outside [0, 10)");
}

TEST_CASE("subset: copies keep each image with its label") {
  const dataset d = indexed_dataset(300);
  const std::vector<int> pick = {299, 3, 150};
  const dataset s = subset(d, pick);
  CHECK(s.size() == 3);
  CHECK(s.num_classes == 10);
  for (std::size_t k = 0; k < pick.size(); ++k) {
    const std::size_t i = static_cast<std::size_t>(pick[k]);
    CHECK(std::memcmp(s.images.pixels.data() + k * 6, d.images.pixels.data() + i * 6, 6) == 0);
    CHECK(s.labels[k] == d.labels[i]);
  }
  CHECK_ERROR(subset(d, {300}), "index 300 is outside the data set of 300");
}
