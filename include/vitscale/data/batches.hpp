#pragma once
// Reproducible shuffling and batching of an in-memory image data set.
//
// The order of an epoch is a pure function of (seed, epoch): a Fisher–Yates shuffle whose random numbers are
// Philox words (core/random.hpp) at counters 0, 1, 2, ... of the stream `shuffle_stream` with step = epoch.
// No generator state is kept, so the order does not depend on threads, on earlier epochs or on where a run
// was resumed, and a position (epoch, index) is all a checkpoint needs to continue with the same batches.
//
// Batches are host Views: images [B, H, W, 1] (channels last, as the model takes them), pixels scaled to
// [0, 1] and then normalised as (x - mean) / std, and int labels [B].

#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/random.hpp>
#include <vitscale/core/views.hpp>
#include <vitscale/data/idx.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace vitscale::data {

// The Philox stream of the data order: far from the small tensor ids the model's dropout sites use.
inline constexpr std::uint32_t shuffle_stream = 0x53485546u;  // "SHUF"

// A permutation of [0, n), the order of epoch `epoch` under `seed`: the same arguments give the same order
// on every machine and thread count; a different epoch gives a different order (for n > 2, almost surely).
inline std::vector<int> epoch_permutation(int n, std::uint64_t seed, std::uint32_t epoch,
                                          std::uint32_t stream = shuffle_stream) {
  if (n < 0) detail::fail("epoch_permutation: n is ", n, "; it must be non-negative");
  std::vector<int> order(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  const rng_key key{seed, epoch, stream};
  std::uint64_t draw = 0;
  const auto word = [&]() {
    const std::uint64_t k = draw++;
    return random_block(key, k >> 2).word[k & 3u];
  };
  // Fisher–Yates; j uniform on [0, i] exactly, by Lemire's multiply-and-reject ("Fast random integer
  // generation in an interval", 2019), so no index is favoured by modulo bias.
  for (int i = n - 1; i > 0; --i) {
    const auto range = static_cast<std::uint32_t>(i) + 1u;
    std::uint64_t m = static_cast<std::uint64_t>(word()) * range;
    if (static_cast<std::uint32_t>(m) < range) {
      const std::uint32_t threshold = (0u - range) % range;
      while (static_cast<std::uint32_t>(m) < threshold) m = static_cast<std::uint64_t>(word()) * range;
    }
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(m >> 32)]);
  }
  return order;
}

// (x / 255 - mean) / std for every pixel x. The default 0.5 / 0.5 maps pixels to [-1, 1], big_vision's
// value_range(-1, 1); pixel_statistics(data) gives the data set's own (Fashion-MNIST train: ~0.286 / ~0.353).
struct normalization {
  float mean = 0.5f;
  float std = 0.5f;
};

// Mean and standard deviation of the pixels of `images` scaled to [0, 1] (over all pixels of all images).
inline normalization pixel_statistics(const idx_images& images) {
  std::uint64_t histogram[256] = {};
  for (std::uint8_t p : images.pixels) ++histogram[p];
  double n = 0, sum = 0, sum_sq = 0;
  for (int v = 0; v < 256; ++v) {
    const double x = v / 255.0, c = static_cast<double>(histogram[v]);
    n += c;
    sum += c * x;
    sum_sq += c * x * x;
  }
  if (n == 0) detail::fail("pixel_statistics: the data set has no pixels");
  const double mean = sum / n;
  return normalization{static_cast<float>(mean), static_cast<float>(std::sqrt(std::max(0.0, sum_sq / n - mean * mean)))};
}

// Where a batcher is in the data: the epoch and the offset, within that epoch's order, of the next sample.
// A plain value: save both numbers in a checkpoint and pass them back to resume with the same batches.
struct batch_position {
  std::uint32_t epoch = 0;
  std::int64_t index = 0;
};

inline bool operator==(const batch_position& a, const batch_position& b) noexcept {
  return a.epoch == b.epoch && a.index == b.index;
}
inline bool operator!=(const batch_position& a, const batch_position& b) noexcept { return !(a == b); }

struct batcher_options {
  int batch_size = 128;
  std::uint64_t seed = 0;
  bool shuffle = true;    // false: every epoch in file order
  bool drop_last = true;  // true: an epoch's last partial batch is skipped; false: it is returned short
  normalization norm{};
};

using host_image_batch = Kokkos::View<float****, Kokkos::LayoutRight, Kokkos::HostSpace>;  // [B, H, W, 1]
using host_label_batch = Kokkos::View<int*, Kokkos::LayoutRight, Kokkos::HostSpace>;        // [B]

// Writes samples order[0..n) of `data` into images [n.., H, W, 1] and labels [n..], normalised by `norm`.
inline void fill_batch(const dataset& data, const int* order, int n, const normalization& norm,
                       const host_image_batch& images, const host_label_batch& labels) {
  const int rows = data.images.rows, cols = data.images.cols;
  if (static_cast<int>(images.extent(0)) < n || static_cast<int>(images.extent(1)) != rows ||
      static_cast<int>(images.extent(2)) != cols || images.extent(3) != 1 || static_cast<int>(labels.extent(0)) < n)
    detail::fail("fill_batch: ", n, " samples of ", rows, " x ", cols, " need images [>= ", n, ", ", rows, ", ", cols,
                 ", 1] and labels [>= ", n, "]; got images ", vitscale::detail::extents_string(images), " and labels [", labels.extent(0), "]");
  if (!(norm.std > 0.0f) || !std::isfinite(norm.mean))
    detail::fail("fill_batch: normalisation std must be positive and mean finite; got mean ", norm.mean, ", std ", norm.std);
  // One table for the 256 pixel values: the same float for a value wherever it occurs.
  float table[256];
  for (int v = 0; v < 256; ++v) table[v] = (static_cast<float>(v) / 255.0f - norm.mean) / norm.std;
  const std::size_t pixels = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  for (int b = 0; b < n; ++b) {
    const int sample = order[b];
    if (sample < 0 || sample >= data.size())
      detail::fail("fill_batch: sample index ", sample, " is outside the data set of ", data.size());
    const std::uint8_t* src = data.images.pixels.data() + static_cast<std::size_t>(sample) * pixels;
    float* dst = images.data() + static_cast<std::size_t>(b) * pixels;  // LayoutRight, last extent 1
    for (std::size_t k = 0; k < pixels; ++k) dst[k] = table[src[k]];
    labels(b) = data.labels[static_cast<std::size_t>(sample)];
  }
}

// One batch: Views of the batcher's buffers (valid until its next call to next()), extent 0 the batch's
// size, which is the batch size except for a short last batch when drop_last is false.
struct batch {
  host_image_batch images;  // [n, H, W, 1]
  host_label_batch labels;  // [n]
  batch_position position;  // where this batch started
  int size() const noexcept { return static_cast<int>(labels.extent(0)); }
};

// Cuts a data set into batches, epoch after epoch, in the order epoch_permutation gives.
class batcher {
 public:
  // `data` must outlive the batcher.
  batcher(const dataset& data, const batcher_options& options, batch_position start = {})
      : data_(&data), options_(options) {
    if (options_.batch_size < 1) detail::fail("batcher: batch_size is ", options_.batch_size, "; it must be at least 1");
    if (data.size() < 1) detail::fail("batcher: the data set is empty");
    if (data.labels.size() != static_cast<std::size_t>(data.size()))
      detail::fail("batcher: the data set has ", data.size(), " images but ", data.labels.size(), " labels");
    if (options_.drop_last && data.size() < options_.batch_size)
      detail::fail("batcher: drop_last with batch_size ", options_.batch_size, " and only ", data.size(),
                   " samples would never yield a batch");
    if (!(options_.norm.std > 0.0f)) detail::fail("batcher: normalisation std is ", options_.norm.std, "; it must be positive");
    images_ = host_image_batch("vitscale::data::batcher::images", static_cast<std::size_t>(options_.batch_size),
                               static_cast<std::size_t>(data.images.rows), static_cast<std::size_t>(data.images.cols), 1);
    labels_ = host_label_batch("vitscale::data::batcher::labels", static_cast<std::size_t>(options_.batch_size));
    seek(start);
  }

  // Batches in one epoch: floor(n / B) with drop_last, ceil(n / B) without.
  int batches_per_epoch() const noexcept {
    const int n = data_->size(), b = options_.batch_size;
    return options_.drop_last ? n / b : (n + b - 1) / b;
  }

  // Where the next batch starts.
  batch_position position() const noexcept { return position_; }

  // Continues from `where` (a position() saved earlier); the batches that follow are the ones that followed then.
  void seek(batch_position where) {
    if (where.index < 0 || where.index > data_->size())
      detail::fail("batcher: position index ", where.index, " is outside [0, ", data_->size(), "]");
    position_ = where;
  }

  // The order of epoch `epoch`: a permutation of [0, size), or the identity without shuffling.
  std::vector<int> order(std::uint32_t epoch) const {
    if (options_.shuffle) return epoch_permutation(data_->size(), options_.seed, epoch);
    std::vector<int> identity(static_cast<std::size_t>(data_->size()));
    for (std::size_t i = 0; i < identity.size(); ++i) identity[i] = static_cast<int>(i);
    return identity;
  }

  // The next batch, moving on to the next epoch when this one has no (full, with drop_last) batch left.
  batch next() {
    const std::int64_t n = data_->size(), b = options_.batch_size;
    const std::int64_t left = n - position_.index;
    if (left <= 0 || (options_.drop_last && left < b)) position_ = batch_position{position_.epoch + 1, 0};
    if (order_epoch_ != position_.epoch || order_.empty()) {
      order_ = order(position_.epoch);
      order_epoch_ = position_.epoch;
    }
    const auto count = static_cast<int>(std::min(b, n - position_.index));
    fill_batch(*data_, order_.data() + position_.index, count, options_.norm, images_, labels_);
    batch out;
    out.position = position_;
    out.images = Kokkos::subview(images_, std::make_pair(0, count), Kokkos::ALL, Kokkos::ALL, Kokkos::ALL);
    out.labels = Kokkos::subview(labels_, std::make_pair(0, count));
    position_.index += count;
    return out;
  }

 private:
  const dataset* data_;
  batcher_options options_;
  batch_position position_;
  host_image_batch images_;
  host_label_batch labels_;
  std::vector<int> order_;
  std::uint32_t order_epoch_ = 0;
};

}  // namespace vitscale::data
