#pragma once
// Counter-based random numbers: Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011), the generator of Random123, cuRAND and JAX's threefry-free paths.
//
// A random number is a pure function of (seed, step, stream, index): no state is kept or advanced, so any
// thread can draw the number of any element in any order, and a backward pass regenerates exactly the
// mask its forward pass drew. The 128-bit counter is (index low, index high, step, stream) and the 64-bit
// key is the seed; a stream is a tensor id (one per dropout site), so sites and steps never share numbers.
//
// One Philox call yields four 32-bit words; element `index` uses word `index % 4` of block `index / 4`,
// so a kernel that handles four neighbouring elements together pays for one call.

#include <vitscale/core/kokkos_compat.hpp>

#include <cstdint>

namespace vitscale {

// Four 32-bit words: a Philox counter or its output.
struct philox_block {
  std::uint32_t word[4];
};

// Philox-4x32 with 10 rounds of `counter` under the 64-bit `key` (key0, key1); matches Random123's
// known-answer vectors (tests/kernels/dropout.cpp checks them).
KOKKOS_INLINE_FUNCTION philox_block philox4x32_10(philox_block counter, std::uint32_t key0, std::uint32_t key1) {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;  // multipliers of the reference design
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;  // Weyl key increments (golden ratio, sqrt 3)
  std::uint32_t c0 = counter.word[0], c1 = counter.word[1], c2 = counter.word[2], c3 = counter.word[3];
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(m0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(m1) * c2;
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c0 = hi1 ^ c1 ^ key0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ key1;
    c3 = lo0;
    key0 += w0;
    key1 += w1;
  }
  return philox_block{{c0, c1, c2, c3}};
}

// Where a random draw comes from: the run's seed, the training step and the stream (a tensor id, one
// per place in the model that draws numbers).
struct rng_key {
  std::uint64_t seed = 0;
  std::uint32_t step = 0;
  std::uint32_t stream = 0;
};

// The four words of block `block` (elements 4·block .. 4·block+3) of the stream `key` names.
KOKKOS_INLINE_FUNCTION philox_block random_block(const rng_key& key, std::uint64_t block) {
  const philox_block counter{{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                              key.step, key.stream}};
  return philox4x32_10(counter, static_cast<std::uint32_t>(key.seed), static_cast<std::uint32_t>(key.seed >> 32));
}

// A 32-bit word -> a float uniform on [0, 1): the top 24 bits, so every value is exact and 1 is never reached.
KOKKOS_INLINE_FUNCTION float uniform_from_bits(std::uint32_t bits) {
  return static_cast<float>(bits >> 8) * 0x1p-24f;
}

// The uniform float on [0, 1) of element `index` of the stream `key` names.
KOKKOS_INLINE_FUNCTION float random_uniform(const rng_key& key, std::uint64_t index) {
  return uniform_from_bits(random_block(key, index >> 2).word[index & 3u]);
}

}  // namespace vitscale
