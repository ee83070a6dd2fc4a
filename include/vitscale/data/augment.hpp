#pragma once
// Cheap image augmentation on a host batch, reproducible from (seed, step): a horizontal flip with
// probability 1/2 and a translation by up to `max_shift` pixels in each direction, the uncovered border
// filled with `background` (the normalised value of a black pixel). Each image draws its own numbers from
// core/random.hpp's Philox stream `augment_stream`, keyed by (seed, step) and indexed by the image's place
// in the batch, so a run is the same whatever the thread count.

#include <vitscale/core/error.hpp>
#include <vitscale/core/random.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <vector>

namespace vitscale::data {

inline constexpr std::uint32_t augment_stream = 0x41554721u;  // "AUG!"

// images: [B, H, W, C] on the host, in place.
template <class Images>
void flip_and_shift(const Images& images, std::uint64_t seed, std::uint32_t step, int max_shift, float background) {
  static_assert(Kokkos::is_view<Images>::value && Images::rank == 4, "flip_and_shift: images are [B, H, W, C]");
  if (max_shift < 0) detail::fail("flip_and_shift: max_shift is ", max_shift, ", it must be non-negative");
  const int b_count = static_cast<int>(images.extent(0)), h = static_cast<int>(images.extent(1));
  const int w = static_cast<int>(images.extent(2)), c_count = static_cast<int>(images.extent(3));
  std::vector<float> copy(static_cast<std::size_t>(h) * w * c_count);
  const rng_key key{seed, step, augment_stream};
  const std::uint32_t span = 2u * static_cast<std::uint32_t>(max_shift) + 1u;
  for (int b = 0; b < b_count; ++b) {
    const philox_block r = random_block(key, static_cast<std::uint64_t>(b));
    const bool flip = (r.word[0] & 1u) != 0;
    const int dy = static_cast<int>(r.word[1] % span) - max_shift;  // modulo bias < 1e-8 for small spans
    const int dx = static_cast<int>(r.word[2] % span) - max_shift;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < c_count; ++c) copy[(static_cast<std::size_t>(y) * w + x) * c_count + c] = images(b, y, x, c);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const int sy = y - dy, sx0 = x - dx;
        const int sx = flip ? w - 1 - sx0 : sx0;
        const bool inside = sy >= 0 && sy < h && sx0 >= 0 && sx0 < w;
        for (int c = 0; c < c_count; ++c)
          images(b, y, x, c) = inside ? copy[(static_cast<std::size_t>(sy) * w + sx) * c_count + c] : background;
      }
  }
}

}  // namespace vitscale::data
