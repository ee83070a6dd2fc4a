// Fused attention: forward (o, lse) and backward (dq, dk, dv) against a naive double-precision softmax
// attention and its analytic gradient, on every host execution space, float and bf16, plain views and views
// into a fused qkv buffer, odd token counts, MAP pooling's single query; determinism and shape errors. The
// numerical checks run once per SIMD target the CPU supports (support/simd_targets.hpp).
#include <doctest/doctest.h>
#include <support/simd_targets.hpp>
#include <support/spaces.hpp>
#include <vitscale/kernels/attention.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

using vitscale::bf16;
namespace vk = vitscale::kernels;

namespace {

// Tolerances, per storage precision. An element passes when |got - ref| <= tol · (|ref| + max|ref|): relative,
// with a floor at the tensor's own scale for elements that are sums cancelling to near zero.
constexpr double fp32_tol = 1e-5;  // float storage and float accumulation
constexpr double bf16_tol = 1e-2;  // bf16 outputs (8 significant bits) against the double result of the
                                   // bf16-rounded inputs
constexpr double lse_tol = 1e-5;   // lse is float whatever the storage

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? fp32_tol : bf16_tol;
}

struct dims {
  int batch, heads, nq, nk;
};

// A host tensor [B, N, H, d] in double.
struct tensor {
  int b, n, h, d;
  std::vector<double> x;
  tensor(int b_, int n_, int h_, int d_) : b(b_), n(n_), h(h_), d(d_), x(std::size_t(b_) * n_ * h_ * d_, 0.0) {}
  double& at(int i, int t, int k, int c) { return x[((std::size_t(i) * n + t) * h + k) * d + c]; }
  double at(int i, int t, int k, int c) const { return x[((std::size_t(i) * n + t) * h + k) * d + c]; }
};

struct reference {
  tensor o, dq, dk, dv;
  std::vector<double> lse;  // [B, H, Nq]
};

// Naive softmax attention in double and its analytic gradient:
//   P = softmax(scale q kᵀ), o = P v, dP = dO vᵀ, dS = P ∘ (dP - rowsum(P ∘ dP)),
//   dq = scale dS k, dk = scale dSᵀ q, dv = Pᵀ dO.
reference attention_reference(const tensor& q, const tensor& k, const tensor& v, const tensor& dout, double scale) {
  const int B = q.b, H = q.h, Nq = q.n, Nk = k.n, d = q.d;
  reference r{tensor(B, Nq, H, d), tensor(B, Nq, H, d), tensor(B, Nk, H, d), tensor(B, Nk, H, d),
              std::vector<double>(std::size_t(B) * H * Nq)};
  std::vector<double> p(Nk), dp(Nk);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < Nq; ++i) {
        double m = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < Nk; ++j) {
          double s = 0;
          for (int c = 0; c < d; ++c) s += q.at(b, i, h, c) * k.at(b, j, h, c);
          p[j] = scale * s;
          m = std::max(m, p[j]);
        }
        double z = 0;
        for (int j = 0; j < Nk; ++j) z += (p[j] = std::exp(p[j] - m));
        for (int j = 0; j < Nk; ++j) p[j] /= z;
        r.lse[(std::size_t(b) * H + h) * Nq + i] = m + std::log(z);
        double delta = 0;
        for (int j = 0; j < Nk; ++j) {
          double s = 0;
          for (int c = 0; c < d; ++c) s += dout.at(b, i, h, c) * v.at(b, j, h, c);
          dp[j] = s;
          delta += p[j] * s;
          for (int c = 0; c < d; ++c) r.o.at(b, i, h, c) += p[j] * v.at(b, j, h, c);
        }
        for (int j = 0; j < Nk; ++j) {
          const double ds = p[j] * (dp[j] - delta);
          for (int c = 0; c < d; ++c) {
            r.dq.at(b, i, h, c) += scale * ds * k.at(b, j, h, c);
            r.dk.at(b, j, h, c) += scale * ds * q.at(b, i, h, c);
            r.dv.at(b, j, h, c) += p[j] * dout.at(b, i, h, c);
          }
        }
      }
  return r;
}

template <class T, class Space>
using strided4 = Kokkos::View<T****, Kokkos::LayoutStride, typename Space::memory_space>;
template <class Space>
using f32_view3 = Kokkos::View<float***, Kokkos::LayoutRight, typename Space::memory_space>;

// Random values in [lo, hi) stored into `view`; `t` receives what was stored (bf16-rounded where T is bf16).
template <class View>
void fill(const View& view, tensor& t, std::mt19937& rng, double lo, double hi) {
  using T = typename View::value_type;
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int b = 0; b < t.b; ++b)
    for (int n = 0; n < t.n; ++n)
      for (int h = 0; h < t.h; ++h)
        for (int c = 0; c < t.d; ++c) {
          view(b, n, h, c) = T(static_cast<float>(dist(rng)));
          t.at(b, n, h, c) = static_cast<float>(view(b, n, h, c));
        }
}

template <class View>
void poison(const View& view) {
  using T = typename View::value_type;
  const T nan = T(std::numeric_limits<float>::quiet_NaN());
  for (std::size_t b = 0; b < view.extent(0); ++b)
    for (std::size_t n = 0; n < view.extent(1); ++n)
      for (std::size_t h = 0; h < view.extent(2); ++h)
        for (std::size_t c = 0; c < view.extent(3); ++c) view(b, n, h, c) = nan;
}

// Every element written (no NaN left from the poison) and within tol · (|ref| + max(max|ref|, 1)). The inputs
// are O(1), so a tensor that is zero in exact arithmetic (dq and dk with a single key: the softmax of one
// score is constant) is held to tol in absolute terms.
template <class View>
void check_close(const char* what, const View& got, const tensor& ref, double tol) {
  double ref_max = 1.0;
  for (double x : ref.x) ref_max = std::max(ref_max, std::fabs(x));
  int bad = 0, unwritten = 0;
  double worst = 0;
  for (int b = 0; b < ref.b; ++b)
    for (int n = 0; n < ref.n; ++n)
      for (int h = 0; h < ref.h; ++h)
        for (int c = 0; c < ref.d; ++c) {
          const double g = static_cast<float>(got(b, n, h, c));
          const double r = ref.at(b, n, h, c);
          if (!std::isfinite(g)) {
            ++unwritten;
            continue;
          }
          const double err = std::fabs(g - r) / (std::fabs(r) + ref_max);
          worst = std::max(worst, err);
          bad += err > tol;
        }
  INFO(what << ": worst error " << worst << " (relative, floored at " << ref_max << "), tolerance "
            << tol);
  CHECK(unwritten == 0);
  CHECK(bad == 0);
}

template <class Space>
void check_lse(const f32_view3<Space>& got, const std::vector<double>& ref) {
  double ref_max = 0;
  for (double x : ref) ref_max = std::max(ref_max, std::fabs(x));
  int bad = 0;
  double worst = 0;
  const std::size_t n = got.extent(0) * got.extent(1) * got.extent(2);
  REQUIRE(ref.size() == n);
  for (std::size_t i = 0; i < n; ++i) {
    const double g = got.data()[i];
    const double err = std::isfinite(g) ? std::fabs(g - ref[i]) / (std::fabs(ref[i]) + ref_max) : 1.0;
    worst = std::max(worst, err);
    bad += err > lse_tol;
  }
  INFO("lse: worst error " << worst << ", tolerance " << lse_tol);
  CHECK(bad == 0);
}

// q, k, v (and dq, dk, dv) as the views a model passes: either separate [B, N, H, d] buffers or subviews of
// fused [B, N, 3, H, d] buffers (timm's qkv order, which needs Nq = Nk).
template <class T, class Space>
struct attention_buffers {
  strided4<T, Space> q, k, v, o, dout, dq, dk, dv;
  f32_view3<Space> lse, delta;

  attention_buffers(const dims& s, int d, bool fused) {
    using mem = typename Space::memory_space;
    using right4 = Kokkos::View<T****, Kokkos::LayoutRight, mem>;
    if (fused) {
      REQUIRE(s.nq == s.nk);
      Kokkos::View<T*****, Kokkos::LayoutRight, mem> qkv("qkv", s.batch, s.nq, 3, s.heads, d);
      Kokkos::View<T*****, Kokkos::LayoutRight, mem> dqkv("dqkv", s.batch, s.nq, 3, s.heads, d);
      const auto all = Kokkos::ALL;
      q = Kokkos::subview(qkv, all, all, 0, all, all);
      k = Kokkos::subview(qkv, all, all, 1, all, all);
      v = Kokkos::subview(qkv, all, all, 2, all, all);
      dq = Kokkos::subview(dqkv, all, all, 0, all, all);
      dk = Kokkos::subview(dqkv, all, all, 1, all, all);
      dv = Kokkos::subview(dqkv, all, all, 2, all, all);
    } else {
      q = right4("q", s.batch, s.nq, s.heads, d);
      k = right4("k", s.batch, s.nk, s.heads, d);
      v = right4("v", s.batch, s.nk, s.heads, d);
      dq = right4("dq", s.batch, s.nq, s.heads, d);
      dk = right4("dk", s.batch, s.nk, s.heads, d);
      dv = right4("dv", s.batch, s.nk, s.heads, d);
    }
    o = right4("o", s.batch, s.nq, s.heads, d);
    dout = right4("dout", s.batch, s.nq, s.heads, d);
    lse = f32_view3<Space>("lse", s.batch, s.heads, s.nq);
    delta = f32_view3<Space>("delta", s.batch, s.heads, s.nq);
  }
};

template <class Space, class T, int D>
void check_attention(const dims& s, bool fused, unsigned seed) {
  CAPTURE(s.batch);
  CAPTURE(s.heads);
  CAPTURE(s.nq);
  CAPTURE(s.nk);
  CAPTURE(D);
  CAPTURE(fused);
  attention_buffers<T, Space> buf(s, D, fused);
  std::mt19937 rng(seed);
  tensor q(s.batch, s.nq, s.heads, D), k(s.batch, s.nk, s.heads, D), v(s.batch, s.nk, s.heads, D),
      dout(s.batch, s.nq, s.heads, D);
  // Wide enough that the softmax is far from uniform (score standard deviation about 1.5).
  fill(buf.q, q, rng, -2.0, 2.0);
  fill(buf.k, k, rng, -2.0, 2.0);
  fill(buf.v, v, rng, -1.0, 1.0);
  fill(buf.dout, dout, rng, -1.0, 1.0);
  poison(buf.o);
  poison(buf.dq);
  poison(buf.dk);
  poison(buf.dv);
  Kokkos::deep_copy(buf.lse, std::numeric_limits<float>::quiet_NaN());
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  const Space space;
  vk::attention_forward<D>(space, buf.q, buf.k, buf.v, buf.o, buf.lse, scale);
  space.fence();
  // The backward pass starts from the output as stored (bf16-rounded where o is bf16), as a model's would;
  // the reference recomputes everything in double from the rounded inputs.
  vk::attention_backward<D>(space, buf.q, buf.k, buf.v, buf.o, buf.dout, buf.lse, buf.delta, buf.dq, buf.dk,
                            buf.dv, scale);
  space.fence();

  const reference ref = attention_reference(q, k, v, dout, scale);
  check_close("o", buf.o, ref.o, tolerance<T>());
  check_lse<Space>(buf.lse, ref.lse);
  check_close("dq", buf.dq, ref.dq, tolerance<T>());
  check_close("dk", buf.dk, ref.dk, tolerance<T>());
  check_close("dv", buf.dv, ref.dv, tolerance<T>());
}

template <class View>
std::vector<unsigned char> bytes_of(const View& view) {
  std::vector<unsigned char> out;
  for (std::size_t b = 0; b < view.extent(0); ++b)
    for (std::size_t n = 0; n < view.extent(1); ++n)
      for (std::size_t h = 0; h < view.extent(2); ++h) {
        const auto* row = reinterpret_cast<const unsigned char*>(&view(b, n, h, 0));
        out.insert(out.end(), row, row + view.extent(3) * sizeof(typename View::value_type));
      }
  return out;
}

// Runs a check on each code path the attention kernels take here: every SIMD target the CPU supports or,
// in the build that forces the portable loops (test kernels_attention_portable), those loops once.
template <class Check>
void for_each_attention_path(Check&& check) {
#if defined(VITSCALE_ATTENTION_PORTABLE_ONLY)
  static_assert(!vk::detail::attention_simd_v<Kokkos::DefaultHostExecutionSpace>,
                "VITSCALE_ATTENTION_PORTABLE_ONLY must turn the SIMD path off");
  check(std::string("portable"));
#else
  vitscale::test::for_each_simd_target(check);
#endif
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("attention forward and backward match double softmax attention, fp32", Space, att_f32) {
  for_each_attention_path([](const std::string&) {
    check_attention<Space, float, 64>({2, 3, 197, 197}, /*fused*/ true, 1);
    check_attention<Space, float, 64>({2, 2, 50, 50}, false, 2);
    check_attention<Space, float, 64>({2, 3, 1, 197}, false, 3);  // MAP pooling: one query over all tokens
    check_attention<Space, float, 64>({3, 2, 1, 1}, false, 4);
    check_attention<Space, float, 16>({1, 2, 257, 257}, true, 5);
    check_attention<Space, float, 16>({2, 2, 197, 50}, false, 6);
    check_attention<Space, float, 16>({1, 3, 50, 257}, false, 7);
    // The single-tile backward (nq, nk <= 64 on the host) at its edge, and one key past it.
    check_attention<Space, float, 32>({3, 2, 64, 64}, false, 9);
    check_attention<Space, float, 32>({2, 2, 49, 65}, false, 10);
    check_attention<Space, float, 32>({2, 4, 33, 33}, true, 16);
    check_attention<Space, float, 32>({2, 4, 17, 33}, false, 17);
    // A head dimension that is not a multiple of 16: the last column chunk of the accumulations is 8 wide.
    check_attention<Space, float, 24>({2, 2, 70, 41}, false, 8);
  });
}
VITSCALE_ON_HOST_SPACES(att_f32);

TEST_CASE_TEMPLATE_DEFINE("attention forward and backward match double softmax attention, bf16", Space, att_bf16) {
  for_each_attention_path([](const std::string&) {
    check_attention<Space, bf16, 64>({2, 3, 197, 197}, true, 11);
    check_attention<Space, bf16, 64>({2, 2, 1, 197}, false, 12);
    check_attention<Space, bf16, 64>({1, 1, 1, 1}, false, 13);
    check_attention<Space, bf16, 16>({1, 2, 257, 257}, false, 14);
    check_attention<Space, bf16, 16>({2, 3, 50, 50}, true, 15);
  });
}
VITSCALE_ON_HOST_SPACES(att_bf16);

TEST_CASE_TEMPLATE_DEFINE("attention is bit-identical run to run and across view layouts", Space, att_det) {
  using mem = typename Space::memory_space;
  const dims s{2, 3, 197, 197};
  constexpr int D = 64;
  attention_buffers<float, Space> first(s, D, true), second(s, D, true);
  std::mt19937 rng(21);
  tensor q(s.batch, s.nq, s.heads, D), k = q, v = q, dout = q;
  fill(first.q, q, rng, -2.0, 2.0);
  fill(first.k, k, rng, -2.0, 2.0);
  fill(first.v, v, rng, -1.0, 1.0);
  fill(first.dout, dout, rng, -1.0, 1.0);
  const Space space;
  const float scale = 0.125f;
  vk::attention_forward<D>(space, first.q, first.k, first.v, first.o, first.lse, scale);
  vk::attention_backward<D>(space, first.q, first.k, first.v, first.o, first.dout, first.lse, first.delta,
                            first.dq, first.dk, first.dv, scale);
  // Second run: the same inputs, copied into LayoutRight buffers (the other instantiation a model uses).
  using right4 = Kokkos::View<float****, Kokkos::LayoutRight, mem>;
  right4 q2("q2", s.batch, s.nq, s.heads, D), k2("k2", s.batch, s.nk, s.heads, D),
      v2("v2", s.batch, s.nk, s.heads, D), dq2("dq2", s.batch, s.nq, s.heads, D),
      dk2("dk2", s.batch, s.nk, s.heads, D), dv2("dv2", s.batch, s.nk, s.heads, D);
  space.fence();
  Kokkos::deep_copy(q2, first.q);
  Kokkos::deep_copy(k2, first.k);
  Kokkos::deep_copy(v2, first.v);
  vk::attention_forward<D>(space, q2, k2, v2, second.o, second.lse, scale);
  vk::attention_backward<D>(space, q2, k2, v2, second.o, first.dout, second.lse, second.delta, dq2, dk2, dv2,
                            scale);
  // And the strided instantiation once more, on the same buffers.
  vk::attention_backward<D>(space, first.q, first.k, first.v, first.o, first.dout, first.lse, second.delta,
                            second.dq, second.dk, second.dv, scale);
  space.fence();
  CHECK(bytes_of(first.o) == bytes_of(second.o));
  CHECK(std::memcmp(first.lse.data(), second.lse.data(), first.lse.size() * sizeof(float)) == 0);
  CHECK(bytes_of(first.dq) == bytes_of(second.dq));
  CHECK(bytes_of(first.dk) == bytes_of(second.dk));
  CHECK(bytes_of(first.dv) == bytes_of(second.dv));
  CHECK(bytes_of(first.dq) == bytes_of(dq2));
  CHECK(bytes_of(first.dk) == bytes_of(dk2));
  CHECK(bytes_of(first.dv) == bytes_of(dv2));
}
VITSCALE_ON_HOST_SPACES(att_det);

// The forward pass splits a head's queries over blocks by the token count and the execution space's
// concurrency, and the streamed side's last rows go through smaller products than whole blocks of 16: neither
// may change a query's result. Each query alone (Nq = 1, one block of one padded group) must give the bits it
// gets among all 197.
TEST_CASE_TEMPLATE_DEFINE("attention forward gives a query the same bits whatever block it falls in", Space,
                          att_blocks) {
  using mem = typename Space::memory_space;
  constexpr int D = 64;
  const dims s{2, 2, 197, 70};
  attention_buffers<float, Space> all(s, D, false);
  std::mt19937 rng(31);
  tensor q(s.batch, s.nq, s.heads, D), k(s.batch, s.nk, s.heads, D), v(s.batch, s.nk, s.heads, D);
  fill(all.q, q, rng, -2.0, 2.0);
  fill(all.k, k, rng, -2.0, 2.0);
  fill(all.v, v, rng, -1.0, 1.0);
  const Space space;
  vk::attention_forward<D>(space, all.q, all.k, all.v, all.o, all.lse, 0.125f);
  Kokkos::View<float****, Kokkos::LayoutRight, mem> o1("o1", s.batch, 1, s.heads, D);
  f32_view3<Space> lse1("lse1", s.batch, s.heads, 1);
  int differing = 0;
  for (int i = 0; i < s.nq; ++i) {
    const auto qi = Kokkos::subview(all.q, Kokkos::ALL, Kokkos::make_pair(i, i + 1), Kokkos::ALL, Kokkos::ALL);
    vk::attention_forward<D>(space, qi, all.k, all.v, o1, lse1, 0.125f);
    space.fence();
    for (int b = 0; b < s.batch; ++b)
      for (int h = 0; h < s.heads; ++h) {
        differing += std::memcmp(&o1(b, 0, h, 0), &all.o(b, i, h, 0), D * sizeof(float)) != 0;
        differing += std::memcmp(&lse1(b, h, 0), &all.lse(b, h, i), sizeof(float)) != 0;
      }
  }
  CHECK(differing == 0);
}
VITSCALE_ON_HOST_SPACES(att_blocks);

TEST_CASE_TEMPLATE_DEFINE("attention rejects mismatched shapes with vitscale::error", Space, att_shapes) {
  using mem = typename Space::memory_space;
  using right4 = Kokkos::View<float****, Kokkos::LayoutRight, mem>;
  using right3 = Kokkos::View<float***, Kokkos::LayoutRight, mem>;
  constexpr int D = 16;
  const Space space;
  right4 q("q", 2, 5, 3, D), k("k", 2, 7, 3, D), v("v", 2, 7, 3, D), o("o", 2, 5, 3, D);
  right4 dq("dq", 2, 5, 3, D), dk("dk", 2, 7, 3, D), dv("dv", 2, 7, 3, D), dout("dout", 2, 5, 3, D);
  right3 lse("lse", 2, 3, 5), delta("delta", 2, 3, 5);
  Kokkos::deep_copy(q, 0.5f);
  Kokkos::deep_copy(k, 0.25f);
  Kokkos::deep_copy(v, 1.0f);
  Kokkos::deep_copy(dout, 1.0f);
  // The good call goes through.
  CHECK_NOTHROW(vk::attention_forward<D>(space, q, k, v, o, lse, 0.25f));
  CHECK_NOTHROW(vk::attention_backward<D>(space, q, k, v, o, dout, lse, delta, dq, dk, dv, 0.25f));
  space.fence();

  right4 wrong_heads("k", 2, 7, 4, D), wrong_tokens("v", 2, 6, 3, D), wrong_o("o", 2, 5, 3, 2 * D);
  right4 wrong_batch("q", 1, 5, 3, D), wrong_d("q", 2, 5, 3, 32), wrong_dk("dk", 2, 5, 3, D);
  right3 wrong_lse("lse", 2, 5, 3), no_keys_lse("lse", 2, 3, 5);
  right4 no_keys("k", 2, 0, 3, D);
  CHECK_THROWS_AS(vk::attention_forward<D>(space, q, wrong_heads, v, o, lse, 0.25f), vitscale::error);
  CHECK_THROWS_AS(vk::attention_forward<D>(space, q, k, wrong_tokens, o, lse, 0.25f), vitscale::error);
  CHECK_THROWS_AS(vk::attention_forward<D>(space, q, k, v, wrong_o, lse, 0.25f), vitscale::error);
  CHECK_THROWS_AS(vk::attention_forward<D>(space, q, k, v, o, wrong_lse, 0.25f), vitscale::error);
  CHECK_THROWS_AS(vk::attention_forward<D>(space, wrong_batch, k, v, o, lse, 0.25f), vitscale::error);
  CHECK_THROWS_AS(vk::attention_forward<D>(space, wrong_d, k, v, o, lse, 0.25f), vitscale::error);
  CHECK_THROWS_AS(vk::attention_forward<D>(space, q, no_keys, no_keys, o, lse, 0.25f), vitscale::error);
  CHECK_THROWS_AS(vk::attention_backward<D>(space, q, k, v, o, dout, lse, delta, dq, wrong_dk, dv, 0.25f),
                  vitscale::error);
  CHECK_THROWS_AS(vk::attention_backward<D>(space, q, k, v, o, dout, wrong_lse, delta, dq, dk, dv, 0.25f),
                  vitscale::error);
  CHECK_THROWS_AS(vk::attention_backward<D>(space, q, k, v, o, wrong_o, lse, delta, dq, dk, dv, 0.25f),
                  vitscale::error);
  CHECK_THROWS_AS(vk::attention_backward<D>(space, q, k, v, o, dout, lse, wrong_lse, dq, dk, dv, 0.25f),
                  vitscale::error);

  // A head dimension that is not contiguous (every other float of a wider buffer) is refused, not misread.
  Kokkos::View<float*****, Kokkos::LayoutRight, mem> wide("wide", 2, 5, 3, D, 2);
  strided4<float, Space> gapped = Kokkos::subview(wide, Kokkos::ALL, Kokkos::ALL, Kokkos::ALL, Kokkos::ALL, 0);
  CHECK_THROWS_AS(vk::attention_forward<D>(space, gapped, k, v, o, lse, 0.25f), vitscale::error);
  CHECK_THROWS_AS(vk::attention_forward<D>(space, q, k, v, gapped, lse, 0.25f), vitscale::error);
  CHECK_THROWS_WITH_AS(vk::attention_forward<D>(space, q, wrong_heads, v, o, lse, 0.25f),
                       doctest::Contains("attention_forward: k is [2, 7, 4, 16], expected [2, 7, 3, 16]"),
                       vitscale::error);
  (void)no_keys_lse;
}
VITSCALE_ON_HOST_SPACES(att_shapes);
