// QK-norm (LayerNorm over the head dimension, with and without centering and bias): forward and backward
// against a double-precision reference, whose own gradient is checked by central finite differences; views
// into a fused qkv buffer; determinism of the parameter gradients; shape errors.
#include <doctest/doctest.h>
#include <support/spaces.hpp>
#include <vitscale/kernels/qk_norm.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using vitscale::bf16;
namespace vk = vitscale::kernels;

namespace {

// |got - ref| <= tol · (|ref| + max|ref|), per storage precision.
constexpr double fp32_tol = 1e-5;
constexpr double bf16_tol = 1e-2;       // bf16 y and dx, against the double result of the rounded inputs
constexpr double param_grad_tol = 1e-4;  // dscale, dbias: float sums over B·N·H rows (here ~10^3)
constexpr double eps = 1e-6;

struct rows_shape {
  int b, n, h, d;
  std::size_t size() const { return std::size_t(b) * n * h * d; }
  std::size_t at(int i, int t, int k, int c) const { return ((std::size_t(i) * n + t) * h + k) * d + c; }
};

// Double LayerNorm over the last axis (rows of d): y = (x - mean)·rstd·scale + bias.
std::vector<double> norm_reference(const rows_shape& s, const std::vector<double>& x, const std::vector<double>& g,
                                   const std::vector<double>& bias, bool centered) {
  std::vector<double> y(x.size());
  for (std::size_t r = 0; r < x.size() / s.d; ++r) {
    const double* row = &x[r * s.d];
    double mu = 0, var = 0;
    if (centered) {
      for (int c = 0; c < s.d; ++c) mu += row[c];
      mu /= s.d;
    }
    for (int c = 0; c < s.d; ++c) var += (row[c] - mu) * (row[c] - mu);
    const double rs = 1 / std::sqrt(var / s.d + eps);
    for (int c = 0; c < s.d; ++c) y[r * s.d + c] = (row[c] - mu) * rs * g[c] + (bias.empty() ? 0.0 : bias[c]);
  }
  return y;
}

struct norm_grads {
  std::vector<double> dx, dscale, dbias;
};

// The analytic gradient of Σ dy ∘ y.
norm_grads norm_backward_reference(const rows_shape& s, const std::vector<double>& x, const std::vector<double>& g,
                                   const std::vector<double>& dy, bool centered) {
  norm_grads out{std::vector<double>(x.size()), std::vector<double>(s.d), std::vector<double>(s.d)};
  for (std::size_t r = 0; r < x.size() / s.d; ++r) {
    const double* row = &x[r * s.d];
    double mu = 0, var = 0;
    if (centered) {
      for (int c = 0; c < s.d; ++c) mu += row[c];
      mu /= s.d;
    }
    for (int c = 0; c < s.d; ++c) var += (row[c] - mu) * (row[c] - mu);
    const double rs = 1 / std::sqrt(var / s.d + eps);
    double gm = 0, gxm = 0;
    for (int c = 0; c < s.d; ++c) {
      const double gc = dy[r * s.d + c] * g[c];
      gm += gc;
      gxm += gc * (row[c] - mu) * rs;
    }
    gm = centered ? gm / s.d : 0.0;
    gxm /= s.d;
    for (int c = 0; c < s.d; ++c) {
      const double xhat = (row[c] - mu) * rs;
      out.dx[r * s.d + c] = rs * (dy[r * s.d + c] * g[c] - gm - xhat * gxm);
      out.dscale[c] += dy[r * s.d + c] * xhat;
      out.dbias[c] += dy[r * s.d + c];
    }
  }
  return out;
}

int count_bad(const std::vector<double>& got, const std::vector<double>& ref, double tol, double& worst) {
  double ref_max = 0;
  for (double x : ref) ref_max = std::max(ref_max, std::fabs(x));
  int bad = 0;
  worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double err = std::isfinite(got[i]) ? std::fabs(got[i] - ref[i]) / (std::fabs(ref[i]) + ref_max) : 1.0;
    worst = std::max(worst, err);
    bad += err > tol;
  }
  return bad;
}

template <class View>
std::vector<double> read(const View& v, const rows_shape& s) {
  std::vector<double> out(s.size());
  for (int b = 0; b < s.b; ++b)
    for (int n = 0; n < s.n; ++n)
      for (int h = 0; h < s.h; ++h)
        for (int c = 0; c < s.d; ++c) out[s.at(b, n, h, c)] = static_cast<float>(v(b, n, h, c));
  return out;
}

template <class Space, class T, int D, bool Centered>
void check_qk_norm(const rows_shape& s, bool with_bias, unsigned seed) {
  CAPTURE(D);
  CAPTURE(Centered);
  CAPTURE(with_bias);
  using mem = typename Space::memory_space;
  // x is the k part of a fused [B, N, 3, H, d] buffer, as a model would pass it.
  Kokkos::View<T*****, Kokkos::LayoutRight, mem> qkv("qkv", s.b, s.n, 3, s.h, D);
  Kokkos::View<T****, Kokkos::LayoutStride, mem> x = Kokkos::subview(qkv, Kokkos::ALL, Kokkos::ALL, 1, Kokkos::ALL,
                                                                     Kokkos::ALL);
  Kokkos::View<T****, Kokkos::LayoutRight, mem> y("y", s.b, s.n, s.h, D), dy("dy", s.b, s.n, s.h, D),
      dx("dx", s.b, s.n, s.h, D);
  Kokkos::View<float*, mem> scale("scale", D), bias("bias", with_bias ? D : 0), dscale("dscale", D),
      dbias("dbias", with_bias ? D : 0);
  Kokkos::View<float***, mem> mean("mean", s.b, s.n, s.h), rstd("rstd", s.b, s.n, s.h);

  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> xh(s.size()), dyh(s.size()), g(D), bh;
  for (int b = 0; b < s.b; ++b)
    for (int n = 0; n < s.n; ++n)
      for (int h = 0; h < s.h; ++h)
        for (int c = 0; c < D; ++c) {
          x(b, n, h, c) = T(static_cast<float>(0.3 + 2.0 * dist(rng)));  // off-centre, so centering matters
          xh[s.at(b, n, h, c)] = static_cast<float>(x(b, n, h, c));
          dy(b, n, h, c) = T(static_cast<float>(dist(rng)));
          dyh[s.at(b, n, h, c)] = static_cast<float>(dy(b, n, h, c));
          y(b, n, h, c) = dx(b, n, h, c) = T(std::numeric_limits<float>::quiet_NaN());
        }
  for (int c = 0; c < D; ++c) {
    scale(c) = static_cast<float>(1.0 + 0.5 * dist(rng));
    g[c] = scale(c);
    if (with_bias) {
      bias(c) = static_cast<float>(0.2 * dist(rng));
      bh.push_back(bias(c));
    }
  }
  Kokkos::deep_copy(dscale, std::numeric_limits<float>::quiet_NaN());
  Kokkos::deep_copy(dbias, std::numeric_limits<float>::quiet_NaN());

  const Space space;
  vk::qk_norm_forward<D, Centered>(space, x, scale, bias, y, mean, rstd, static_cast<float>(eps));
  vk::qk_norm_backward<D, Centered>(space, x, scale, mean, rstd, dy, dx, dscale, dbias);
  space.fence();

  const double tol = std::is_same_v<T, float> ? fp32_tol : bf16_tol;
  double worst = 0;
  const auto y_ref = norm_reference(s, xh, g, bh, Centered);
  CHECK_MESSAGE(count_bad(read(y, s), y_ref, tol, worst) == 0, "y worst " << worst);
  const auto grads = norm_backward_reference(s, xh, g, dyh, Centered);
  CHECK_MESSAGE(count_bad(read(dx, s), grads.dx, tol, worst) == 0, "dx worst " << worst);
  std::vector<double> ds(D), db;
  for (int c = 0; c < D; ++c) ds[c] = dscale(c);
  CHECK_MESSAGE(count_bad(ds, grads.dscale, param_grad_tol, worst) == 0, "dscale worst " << worst);
  if (with_bias) {
    for (int c = 0; c < D; ++c) db.push_back(dbias(c));
    CHECK_MESSAGE(count_bad(db, grads.dbias, param_grad_tol, worst) == 0, "dbias worst " << worst);
  }

  // Bit-identical on a second run.
  Kokkos::View<float*, mem> dscale2("dscale2", D), dbias2("dbias2", with_bias ? D : 0);
  Kokkos::View<T****, Kokkos::LayoutRight, mem> dx2("dx2", s.b, s.n, s.h, D);
  vk::qk_norm_backward<D, Centered>(space, x, scale, mean, rstd, dy, dx2, dscale2, dbias2);
  space.fence();
  CHECK(std::memcmp(dscale.data(), dscale2.data(), D * sizeof(float)) == 0);
  CHECK(std::memcmp(dbias.data(), dbias2.data(), dbias.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(dx.data(), dx2.data(), dx.size() * sizeof(T)) == 0);
}

}  // namespace

TEST_CASE("the double QK-norm gradient reference agrees with central finite differences") {
  const rows_shape s{1, 3, 2, 8};
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (bool centered : {false, true}) {
    std::vector<double> x(s.size()), dy(s.size()), g(s.d), bias(s.d);
    for (auto& e : x) e = 0.3 + dist(rng);
    for (auto& e : dy) e = dist(rng);
    for (auto& e : g) e = 1.0 + 0.5 * dist(rng);
    for (auto& e : bias) e = 0.1 * dist(rng);
    const auto grads = norm_backward_reference(s, x, g, dy, centered);
    auto loss = [&](const std::vector<double>& xx, const std::vector<double>& gg, const std::vector<double>& bb) {
      const auto y = norm_reference(s, xx, gg, bb, centered);
      double l = 0;
      for (std::size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
      return l;
    };
    const double h = 1e-6, fd_tol = 1e-6;  // central differences in double: O(h²) + rounding / h
    for (std::size_t i = 0; i < x.size(); ++i) {
      auto xp = x, xm = x;
      xp[i] += h;
      xm[i] -= h;
      CHECK(std::fabs((loss(xp, g, bias) - loss(xm, g, bias)) / (2 * h) - grads.dx[i]) < fd_tol);
    }
    for (int c = 0; c < s.d; ++c) {
      auto gp = g, gm = g, bp = bias, bm = bias;
      gp[c] += h;
      gm[c] -= h;
      bp[c] += h;
      bm[c] -= h;
      CHECK(std::fabs((loss(x, gp, bias) - loss(x, gm, bias)) / (2 * h) - grads.dscale[c]) < fd_tol);
      CHECK(std::fabs((loss(x, g, bp) - loss(x, g, bm)) / (2 * h) - grads.dbias[c]) < fd_tol);
    }
  }
}

TEST_CASE_TEMPLATE_DEFINE("qk_norm forward and backward match the double reference", Space, qkn) {
  check_qk_norm<Space, float, 64, false>({2, 197, 3, 64}, false, 1);  // ViT-22B: no centering, no bias
  check_qk_norm<Space, float, 64, true>({2, 50, 3, 64}, true, 2);
  check_qk_norm<Space, float, 16, true>({1, 257, 2, 16}, false, 3);
  check_qk_norm<Space, bf16, 64, false>({2, 197, 3, 64}, false, 4);
  check_qk_norm<Space, bf16, 16, true>({3, 1, 2, 16}, true, 5);
}
VITSCALE_ON_HOST_SPACES(qkn);

TEST_CASE_TEMPLATE_DEFINE("qk_norm rejects mismatched shapes with vitscale::error", Space, qkn_shapes) {
  using mem = typename Space::memory_space;
  constexpr int D = 16;
  Kokkos::View<float****, mem> x("x", 2, 5, 3, D), y("y", 2, 5, 3, D), dx("dx", 2, 5, 3, D), wrong("w", 2, 5, 4, D);
  Kokkos::View<float*, mem> scale("scale", D), bias("bias", D), no_bias("nb", 0), short_scale("s", D - 1);
  Kokkos::View<float***, mem> mean("mean", 2, 5, 3), rstd("rstd", 2, 5, 3), wrong_stats("ws", 2, 3, 5),
      no_mean("nm", 0, 0, 0);
  Kokkos::deep_copy(x, 1.5f);
  Kokkos::deep_copy(scale, 1.0f);
  const Space space;
  CHECK_NOTHROW(vk::qk_norm_forward<D, false>(space, x, scale, no_bias, y, no_mean, rstd));
  CHECK_NOTHROW(vk::qk_norm_forward<D, true>(space, x, scale, bias, y, mean, rstd));
  space.fence();
  CHECK_THROWS_AS((vk::qk_norm_forward<D, true>(space, x, scale, bias, y, no_mean, rstd)), vitscale::error);
  CHECK_THROWS_AS((vk::qk_norm_forward<D, false>(space, x, short_scale, bias, y, mean, rstd)), vitscale::error);
  CHECK_THROWS_AS((vk::qk_norm_forward<D, false>(space, x, scale, short_scale, y, mean, rstd)), vitscale::error);
  CHECK_THROWS_AS((vk::qk_norm_forward<D, false>(space, x, scale, bias, wrong, mean, rstd)), vitscale::error);
  CHECK_THROWS_AS((vk::qk_norm_forward<D, false>(space, x, scale, bias, y, mean, wrong_stats)), vitscale::error);
  CHECK_THROWS_AS((vk::qk_norm_backward<D, false>(space, x, scale, mean, rstd, wrong, dx, scale, bias)),
                  vitscale::error);
  CHECK_THROWS_AS((vk::qk_norm_backward<D, false>(space, x, scale, mean, rstd, y, dx, short_scale, bias)),
                  vitscale::error);
  CHECK_THROWS_AS((vk::qk_norm_forward<2 * D, false>(space, x, scale, bias, y, mean, rstd)), vitscale::error);
}
VITSCALE_ON_HOST_SPACES(qkn_shapes);
