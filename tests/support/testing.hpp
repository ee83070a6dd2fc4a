#pragma once
// What the tests of the row-wise kernels share: Views on a space's memory, random fills that report the
// values actually stored (after rounding to bf16), NaN poison, and an element-wise comparison that counts
// unwritten (still NaN) elements separately from wrong ones.

#include <doctest/doctest.h>
#include <support/spaces.hpp>
#include <vitscale/core/bf16.hpp>
#include <vitscale/core/views.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace vitscale::test {

template <class T, class Space>
using vec = Kokkos::View<T*, Kokkos::LayoutRight, typename Space::memory_space>;
template <class T, class Space>
using mat = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::memory_space>;
template <class T, class Space>
using ten3 = Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space>;

template <class T>
const char* type_name() {
  if constexpr (std::is_same<T, float>::value) return "float";
  else if constexpr (std::is_same<T, double>::value) return "double";
  else return "bf16";
}

// Fills `v` with values uniform on [lo, hi), rounded to its element type; returns what was stored, row-major.
template <class V>
std::vector<double> fill_random(const V& v, std::mt19937& rng, double lo, double hi) {
  using T = typename V::non_const_value_type;
  auto host = Kokkos::create_mirror_view(v);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> stored(v.span());
  T* data = host.data();
  for (std::size_t k = 0; k < v.span(); ++k) {
    data[k] = static_cast<T>(static_cast<std::conditional_t<std::is_same<T, double>::value, double, float>>(dist(rng)));
    stored[k] = static_cast<double>(static_cast<std::conditional_t<std::is_same<T, double>::value, double, float>>(data[k]));
  }
  Kokkos::deep_copy(v, host);
  return stored;
}

// Writes NaN into every element, so that an element the kernel forgot shows up.
template <class V>
void poison(const V& v) {
  using T = typename V::non_const_value_type;
  auto host = Kokkos::create_mirror_view(v);
  T* data = host.data();
  for (std::size_t k = 0; k < v.span(); ++k) data[k] = static_cast<T>(std::numeric_limits<float>::quiet_NaN());
  Kokkos::deep_copy(v, host);
}

// The elements of `v` as doubles, row-major.
template <class V>
std::vector<double> read(const V& v) {
  using T = typename V::non_const_value_type;
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<double> out(v.span());
  const T* data = host.data();
  for (std::size_t k = 0; k < v.span(); ++k)
    out[k] = static_cast<double>(static_cast<std::conditional_t<std::is_same<T, double>::value, double, float>>(data[k]));
  return out;
}

// The raw bytes of `v`, for bit-identity checks.
template <class V>
std::vector<unsigned char> bytes(const V& v) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  std::vector<unsigned char> out(v.span() * sizeof(typename V::non_const_value_type));
  std::memcpy(out.data(), host.data(), out.size());
  return out;
}

inline double rms(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// Every element of `got` within rtol·|want| + atol of `want`, and none left NaN. atol defaults to rtol times
// the RMS of `want` (so that elements near zero are judged on the tensor's scale).
inline void check_close(const std::vector<double>& got, const std::vector<double>& want, double rtol,
                        const std::string& what, double atol = -1) {
  REQUIRE(got.size() == want.size());
  if (atol < 0) atol = rtol * rms(want);
  std::size_t unwritten = 0, wrong = 0, worst_at = 0;
  double worst = 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    if (std::isnan(got[k])) {
      ++unwritten;
      continue;
    }
    const double err = std::fabs(got[k] - want[k]);
    const double allowed = rtol * std::fabs(want[k]) + atol;
    if (!(err <= allowed)) ++wrong;
    if (err / allowed > worst) {
      worst = err / allowed;
      worst_at = k;
    }
  }
  INFO(what << ": " << wrong << " wrong and " << unwritten << " unwritten of " << got.size()
            << "; worst error/allowed " << worst << " at " << worst_at << " (got " << got[worst_at] << ", want "
            << want[worst_at] << ")");
  CHECK(unwritten == 0);
  CHECK(wrong == 0);
}

// Central differences of loss() with respect to every element of the View v (double storage), each
// element moved by ±h and restored; loss() must read v from its memory space.
template <class V, class Loss>
std::vector<double> numeric_gradient(const V& v, Loss&& loss, double h) {
  std::vector<double> g(v.span());
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  for (std::size_t k = 0; k < v.span(); ++k) {
    const double saved = host.data()[k];
    host.data()[k] = saved + h;
    Kokkos::deep_copy(v, host);
    const double up = loss();
    host.data()[k] = saved - h;
    Kokkos::deep_copy(v, host);
    const double down = loss();
    host.data()[k] = saved;
    Kokkos::deep_copy(v, host);
    g[k] = (up - down) / (2 * h);
  }
  return g;
}

}  // namespace vitscale::test
