#pragma once
// Frozen features: the representation a model's classifier sees (vit::features(images).pooled: the pooled
// vector, after pre-logits when the shape has them), for a whole set of images, computed batch by batch on the
// model's execution space and gathered as one host matrix [N, features] of float. Few-shot evaluation
// (eval/fewshot.hpp) and linear probes (eval/linear_probe.hpp) read them; a probe trained without augmentation
// computes them once and trains on this cache.
//
//   auto x = vitscale::eval::extract_features(model, test, indices, /*batch*/ 256, norm);   // [N, features]
//
// A model behind a run-time interface (examples/fewshot.cpp's catalogue models) uses the same batching loop
// through the callable form: extract_features(geometry, count, batch, fill, compute).
//
// The model runs in inference mode (no dropout, no activations kept for backward): its activation arena is laid
// out for `batch` images once; nothing else is allocated per batch.

#include <vitscale/core/error.hpp>
#include <vitscale/core/finite.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/data/batches.hpp>
#include <vitscale/data/idx.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace vitscale::eval {

// Features of N examples, one row each: [N, features], float, on the host.
using feature_matrix = Kokkos::View<float**, Kokkos::LayoutRight, Kokkos::HostSpace>;

// A batch of images on the host, [B, H, W, C] channels last.
using host_images = Kokkos::View<float****, Kokkos::LayoutRight, Kokkos::HostSpace>;

// Called after each batch with (examples done, examples in all): long extractions show progress.
using progress_callback = std::function<void(std::int64_t, std::int64_t)>;

// The geometry of a feature extractor: the images it takes [B, resolution, resolution, channels] and the width
// of the features it gives.
struct feature_geometry {
  int resolution = 0;
  int channels = 0;
  int features = 0;
};

// The batching loop behind every extraction, for any model (a compiled vit below, or one behind a run-time
// interface such as examples/catalogue's inference_model): the features of `count` images in batches of at
// most `batch`. fill(first, n, images) writes images first .. first + n − 1 into the host batch images
// [n, H, W, C] (float, normalised as the model expects); compute(images, rows) writes their features into the
// host rows [n, features] of the result. One host image buffer of `batch` images is allocated; a non-finite
// feature is a non_finite_error naming the example.
template <class Fill, class Compute>
feature_matrix extract_features(const feature_geometry& geometry, std::int64_t count, int batch, Fill&& fill,
                                Compute&& compute, const progress_callback& progress = {}) {
  constexpr const char* fn = "eval::extract_features";
  if (count < 0) vitscale::detail::fail(fn, ": the image count is ", count, "; it must be non-negative");
  if (batch < 1) vitscale::detail::fail(fn, ": the batch size is ", batch, "; it must be at least 1");
  if (geometry.resolution < 1 || geometry.channels < 1 || geometry.features < 1)
    vitscale::detail::fail(fn, ": the model takes ", geometry.resolution, " x ", geometry.resolution, " images with ",
                           geometry.channels, " channels and gives ", geometry.features,
                           " features; each must be at least 1");
  const auto features = static_cast<std::size_t>(geometry.features);
  feature_matrix out(Kokkos::view_alloc(Kokkos::WithoutInitializing, "vitscale::eval::features"),
                     static_cast<std::size_t>(count), features);
  if (count == 0) return out;
  const int b = static_cast<int>(std::min<std::int64_t>(batch, count));
  const auto res = static_cast<std::size_t>(geometry.resolution);
  host_images host(Kokkos::view_alloc(Kokkos::WithoutInitializing, "vitscale::eval::images"), std::size_t(b), res,
                   res, static_cast<std::size_t>(geometry.channels));
  for (std::int64_t first = 0; first < count; first += b) {
    const int n = static_cast<int>(std::min<std::int64_t>(b, count - first));
    const host_images images(host.data(), std::size_t(n), res, res, host.extent(3));  // the first n, contiguous
    fill(first, n, images);
    const auto rows = Kokkos::subview(out, std::make_pair(first, first + n), Kokkos::ALL);
    compute(images, rows);
    for (int i = 0; i < n; ++i)
      for (std::size_t j = 0; j < features; ++j) {
        const float v = rows(static_cast<std::size_t>(i), j);
        if (!vitscale::detail::finite_bits(v))
          throw non_finite_error(std::string(fn) + ": the features of example " + std::to_string(first + i) +
                                     " are not finite (" + vitscale::detail::non_finite_name(v) + " at feature " +
                                     std::to_string(j) + "); is the model loaded?",
                                 "feature", "");
      }
    if (progress) progress(first + n, count);
  }
  return out;
}

// The same for a compiled model (vit<Shape, Policy, Space>): each batch is copied to the model's execution
// space when it is not the host's, and the pooled features come back. The model runs in inference mode (no
// dropout, no activations kept for backward); its activation arena is laid out for `batch` images once.
template <class Model, class Fill>
feature_matrix extract_features(Model& model, std::int64_t count, int batch, Fill&& fill,
                                const progress_callback& progress = {}) {
  using shape = typename Model::shape;
  using memory_space = typename Model::memory_space;
  const feature_geometry geometry{model.resolution(), shape::in_channels, shape::features};
  if (count > 0 && batch >= 1) model.reserve(static_cast<int>(std::min<std::int64_t>(batch, count)), /*training*/ false);
  // The device's copy of a batch (on a host space, the host batch itself): made at the first batch, the largest.
  auto device = Kokkos::create_mirror_view(memory_space(), host_images());
  return extract_features(
      geometry, count, batch, fill,
      [&](const host_images& images, const auto& rows) {
        if (device.extent(0) < images.extent(0)) device = Kokkos::create_mirror_view(memory_space(), images);
        const auto on_device = Kokkos::subview(device, std::make_pair(std::size_t(0), images.extent(0)), Kokkos::ALL,
                                               Kokkos::ALL, Kokkos::ALL);
        Kokkos::deep_copy(on_device, images);
        const auto pooled = model.features(on_device).pooled;  // [n, features], the model's act_type
        const auto pooled_host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), pooled);
        for (std::size_t i = 0; i < rows.extent(0); ++i)
          for (std::size_t j = 0; j < rows.extent(1); ++j) rows(i, j) = static_cast<float>(pooled_host(i, j));
      },
      progress);
}

// The features of the examples `indices` of an IDX data set (data/idx.hpp: grey images, one channel), in that
// order, normalised by `norm`. The labels of the same examples are labels_of(data, indices).
template <class Model>
feature_matrix extract_features(Model& model, const data::dataset& set, const std::vector<int>& indices, int batch,
                                const data::normalization& norm, const progress_callback& progress = {}) {
  using shape = typename Model::shape;
  if (shape::in_channels != 1 || model.resolution() != set.images.rows || model.resolution() != set.images.cols)
    vitscale::detail::fail("eval::extract_features: the data set's images are ", set.images.rows, " x ", set.images.cols,
                 " with 1 channel; the model takes ", model.resolution(), " x ", model.resolution(), " with ",
                 shape::in_channels);
  data::host_label_batch labels("vitscale::eval::labels", static_cast<std::size_t>(std::max(batch, 1)));
  return extract_features(
      model, static_cast<std::int64_t>(indices.size()), batch,
      [&](std::int64_t first, int n, const auto& images) {
        data::host_image_batch view(images.data(), images.extent(0), images.extent(1), images.extent(2), 1);
        data::fill_batch(set, indices.data() + first, n, norm, view, labels);
      },
      progress);
}

// The labels of the examples `indices` of a data set, in that order (an index outside it is an error).
inline std::vector<int> labels_of(const data::dataset& set, const std::vector<int>& indices) {
  std::vector<int> out;
  out.reserve(indices.size());
  for (int i : indices) {
    if (i < 0 || i >= set.size()) vitscale::detail::fail("eval::labels_of: index ", i, " is outside the data set of ", set.size());
    out.push_back(set.labels[static_cast<std::size_t>(i)]);
  }
  return out;
}

// 0, 1, …, n − 1: every example of a data set, in order.
inline std::vector<int> all_indices(int n) {
  std::vector<int> out(static_cast<std::size_t>(n > 0 ? n : 0));
  for (int i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = i;
  return out;
}

}  // namespace vitscale::eval
