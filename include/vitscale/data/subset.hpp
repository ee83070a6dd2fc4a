#pragma once
// Subsets of an in-memory data set, as transfer studies take them: the examples of some classes (AugReg's and the
// transfer replica's "pre-train on classes 0–4, transfer to 5–9"), a class-balanced sample of a given size
// (a downstream data set of n examples), and a held-out validation split (big_vision's minival: the last part of
// the training set, here a seeded sample so every class is in it).
//
// Every selection is a pure function of its arguments (the seed through data/batches.hpp's epoch_permutation on
// a stream of its own), returns indices in increasing order, and keeps the original labels: a model with the
// full class count trains on them, and evaluation restricts its argmax to the selected classes
// (eval/metrics.hpp's class subset).

#include <vitscale/core/error.hpp>
#include <vitscale/data/batches.hpp>
#include <vitscale/data/idx.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

namespace vitscale::data {

// The Philox stream of sample selection: apart from the data order's (batches.hpp) and the model's.
inline constexpr std::uint32_t sample_stream = 0x53414d50u;  // "SAMP"

// Parses a class list such as "0-4", "5,7,9" or "0-2,8" into sorted, distinct classes in [0, num_classes).
inline std::vector<int> parse_classes(const std::string& text, int num_classes) {
  std::vector<int> out;
  const auto bad = [&](const std::string& why) {
    detail::fail("class list '", text, "': ", why, " (write e.g. 0-4 or 5,7,9; classes are 0 to ", num_classes - 1, ")");
  };
  const auto number = [&](const std::string& s) {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) bad("'" + s + "' is not a class");
    const int v = std::stoi(s);
    if (v >= num_classes) bad("class " + s + " does not exist");
    return v;
  };
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const std::size_t dash = item.find('-');
    if (dash == std::string::npos) {
      out.push_back(number(item));
    } else {
      const int lo = number(item.substr(0, dash)), hi = number(item.substr(dash + 1));
      if (lo > hi) bad("the range " + item + " is empty");
      for (int c = lo; c <= hi; ++c) out.push_back(c);
    }
    start = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// The indices of the examples whose class is in `classes`, in order.
inline std::vector<int> examples_of_classes(const dataset& set, const std::vector<int>& classes) {
  std::vector<char> wanted(static_cast<std::size_t>(std::max(set.num_classes, 1)), 0);
  for (int c : classes) {
    if (c < 0 || c >= set.num_classes) detail::fail("examples_of_classes: class ", c, " is outside [0, ", set.num_classes, ")");
    wanted[static_cast<std::size_t>(c)] = 1;
  }
  std::vector<int> out;
  for (int i = 0; i < set.size(); ++i)
    if (wanted[static_cast<std::size_t>(set.labels[static_cast<std::size_t>(i)])]) out.push_back(i);
  return out;
}

// A class-balanced sample of `count` of the examples `from` (indices into `set`): each class present in `from`
// gets count / classes examples (the first count % classes classes, in class order, one more), drawn uniformly
// without replacement under `seed`; returned in increasing order. A class with too few examples is an error.
inline std::vector<int> balanced_sample(const dataset& set, const std::vector<int>& from, int count, std::uint64_t seed) {
  std::vector<std::vector<int>> by_class(static_cast<std::size_t>(std::max(set.num_classes, 1)));
  for (int i : from) {
    if (i < 0 || i >= set.size()) detail::fail("balanced_sample: index ", i, " is outside the data set of ", set.size());
    by_class[static_cast<std::size_t>(set.labels[static_cast<std::size_t>(i)])].push_back(i);
  }
  std::vector<int> present;
  for (int c = 0; c < int(by_class.size()); ++c)
    if (!by_class[static_cast<std::size_t>(c)].empty()) present.push_back(c);
  if (count < 0 || present.empty() || count > int(from.size()))
    detail::fail("balanced_sample: cannot draw ", count, " of ", from.size(), " examples");
  const int classes = int(present.size());
  std::vector<int> out;
  for (int k = 0; k < classes; ++k) {
    const int c = present[static_cast<std::size_t>(k)];
    const std::vector<int>& pool = by_class[static_cast<std::size_t>(c)];
    const int want = count / classes + (k < count % classes ? 1 : 0);
    if (want > int(pool.size()))
      detail::fail("balanced_sample: ", count, " examples over ", classes, " classes need ", want, " of class ", c,
                   ", which has ", pool.size());
    const std::vector<int> order = epoch_permutation(int(pool.size()), seed, static_cast<std::uint32_t>(c), sample_stream);
    for (int j = 0; j < want; ++j) out.push_back(pool[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The examples of `from` that are not in `taken` (both increasing), in order: what a validation split leaves.
inline std::vector<int> remaining(const std::vector<int>& from, const std::vector<int>& taken) {
  std::vector<int> out;
  std::set_difference(from.begin(), from.end(), taken.begin(), taken.end(), std::back_inserter(out));
  return out;
}

// A new data set of the examples `indices` of `set`, in that order, labels unchanged.
inline dataset subset(const dataset& set, const std::vector<int>& indices) {
  dataset out;
  out.num_classes = set.num_classes;
  out.images.rows = set.images.rows;
  out.images.cols = set.images.cols;
  out.images.count = static_cast<int>(indices.size());
  const std::size_t pixels = static_cast<std::size_t>(set.images.rows) * static_cast<std::size_t>(set.images.cols);
  out.images.pixels.resize(pixels * indices.size());
  out.labels.reserve(indices.size());
  for (std::size_t k = 0; k < indices.size(); ++k) {
    const int i = indices[k];
    if (i < 0 || i >= set.size()) detail::fail("subset: index ", i, " is outside the data set of ", set.size());
    std::memcpy(out.images.pixels.data() + k * pixels, set.images.pixels.data() + static_cast<std::size_t>(i) * pixels, pixels);
    out.labels.push_back(set.labels[static_cast<std::size_t>(i)]);
  }
  return out;
}

}  // namespace vitscale::data
