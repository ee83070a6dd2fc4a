#pragma once
// Golden files written by tests/reference/vit_reference.py (timm 1.0.31 on PyTorch 1.13): parameters under
// timm's names, an input batch (channels last), logits, loss, dlogits, features and every gradient.

#include <doctest/doctest.h>
#include <support/spaces.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/io/safetensors.hpp>
#include <vitscale/model/vit.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

namespace vitscale::test {

struct golden {
  explicit golden(const std::string& variant)
      : file(std::string(VITSCALE_TEST_GOLDEN_DIR) + "/vit/" + variant + ".safetensors") {}

  std::vector<float> get(const std::string& name) {
    const auto& e = file.entry(name);
    std::vector<float> out(static_cast<std::size_t>(e.numel()));
    file.read(name, out.data(), out.size());
    return out;
  }
  std::vector<std::int64_t> shape(const std::string& name) { return file.entry(name).shape; }

  io::safetensors_reader file;
};

template <class Space>
Kokkos::View<float****, Kokkos::LayoutRight, typename Space::memory_space> load_images(golden& g) {
  const auto s = g.shape("input.images");
  REQUIRE(s.size() == 4);
  Kokkos::View<float****, Kokkos::LayoutRight, typename Space::memory_space> images("images", s[0], s[1], s[2], s[3]);
  auto host = Kokkos::create_mirror_view(images);
  const auto values = g.get("input.images");
  std::copy(values.begin(), values.end(), host.data());
  Kokkos::deep_copy(images, host);
  return images;
}

template <class View>
std::vector<float> to_host(const View& v) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<float> out;
  out.reserve(v.size());
  // Row-major order whatever the rank (the views compared here are LayoutRight).
  const auto* p = host.data();
  for (std::size_t k = 0; k < v.size(); ++k) out.push_back(static_cast<float>(p[k]));
  return out;
}

// max |got − want| / max(max |want|, floor): the error relative to the tensor's scale, so that a gradient
// that is zero up to rounding in the reference (a key bias: softmax is shift-invariant) is compared at the
// scale `floor` rather than its own noise.
inline double relative_error(const std::vector<float>& got, const std::vector<float>& want, double floor) {
  REQUIRE(got.size() == want.size());
  double err = 0, scale = floor;
  for (std::size_t k = 0; k < got.size(); ++k) {
    if (!std::isfinite(got[k])) return INFINITY;
    err = std::max(err, std::abs(double(got[k]) - double(want[k])));
    scale = std::max(scale, std::abs(double(want[k])));
  }
  return err / scale;
}

inline void check_close(const std::vector<float>& got, const std::vector<float>& want, double tolerance,
                        const std::string& what, double floor = 1e-3) {
  const double e = relative_error(got, want, floor);
  INFO(what << ": relative error " << e << " (tolerance " << tolerance << ")");
  if (std::getenv("VITSCALE_TEST_VERBOSE")) MESSAGE(what << ": relative error " << e);
  CHECK(e <= tolerance);
}

}  // namespace vitscale::test
