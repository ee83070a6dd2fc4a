// The tile operations of the fused attention (kernels/attention.hpp) for one Highway target. No include
// guard of the usual kind: kernels/detail/host_simd.hpp includes this once per target through
// hwy/foreach_target.h, and the toggle below lets each pass through.
//
// Layout (attention.hpp's): an owned side staged in transposed groups of 16 rows, t[c * 16 + lane], and
// streamed rows row-major with stride d. A group of 16 lanes is 16 / Lanes vectors (1 on AVX-512, 2 on AVX2,
// 4 on SSE4 and NEON); each product keeps as many accumulators in registers as the target has room for (x86
// before AVX-512 has 16 vector registers, AVX-512 and Arm 32). Every output element is the same sum, in the
// same order (c or j increasing), on every target, so targets differ only by fused or separate multiply-adds.

#if defined(VITSCALE_KERNELS_ATTENTION_SIMD_INL_) == defined(HWY_TARGET_TOGGLE)
#ifdef VITSCALE_KERNELS_ATTENTION_SIMD_INL_
#undef VITSCALE_KERNELS_ATTENTION_SIMD_INL_
#else
#define VITSCALE_KERNELS_ATTENTION_SIMD_INL_
#endif

#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace vitscale::kernels::detail::attention_simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using lanes_tag = hn::CappedTag<float, 16>;
using lanes_vec = hn::Vec<lanes_tag>;

#if HWY_ARCH_X86 && (HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3)
inline constexpr int max_accumulators = 8;  // 16 registers: 8 sums, the streamed vector, the broadcasts
#else
inline constexpr int max_accumulators = 16;
#endif

// vitscale::fast::exp2_flush on a vector, the same operations (the integer conversion truncates a positive
// sum, so it floors it).
HWY_INLINE lanes_vec exp2_flush(lanes_vec x) {
  const lanes_tag df;
  const hn::RebindToSigned<lanes_tag> di;
  const lanes_vec xc = hn::Min(hn::Max(x, hn::Set(df, -127.0f)), hn::Set(df, 127.0f));
  const auto n = hn::Sub(hn::ConvertTo(di, hn::Add(xc, hn::Set(df, 127.5f))), hn::Set(di, 127));
  const lanes_vec f = hn::Sub(xc, hn::ConvertTo(df, n));
  lanes_vec p = hn::Set(df, 1.535336188319500e-4f);
  p = hn::MulAdd(p, f, hn::Set(df, 1.339887440266574e-3f));
  p = hn::MulAdd(p, f, hn::Set(df, 9.618437357674640e-3f));
  p = hn::MulAdd(p, f, hn::Set(df, 5.550332471162809e-2f));
  p = hn::MulAdd(p, f, hn::Set(df, 2.402264791363012e-1f));
  p = hn::MulAdd(p, f, hn::Set(df, 6.931472028550421e-1f));
  p = hn::MulAdd(p, f, hn::Set(df, 1.0f));
  const lanes_vec two_n = hn::BitCast(df, hn::ShiftLeft<23>(hn::Add(n, hn::Set(di, 127))));
  return hn::IfThenZeroElse(hn::Lt(x, hn::Set(df, -126.0f)), hn::Mul(p, two_n));
}

// out[j * 16 + l] = sum_c rows[j * d + c] * t[c * 16 + l] for R rows.
template <int R>
HWY_INLINE void product_rows(const float* HWY_RESTRICT rows, const float* HWY_RESTRICT t, float* HWY_RESTRICT out,
                             int d) {
  const lanes_tag df;
  const int step = static_cast<int>(hn::Lanes(df));
  for (int l0 = 0; l0 < 16; l0 += step) {
    lanes_vec acc[R];
    for (int j = 0; j < R; ++j) acc[j] = hn::Zero(df);
    for (int c = 0; c < d; ++c) {
      const lanes_vec tv = hn::LoadU(df, t + 16 * c + l0);
      for (int j = 0; j < R; ++j) acc[j] = hn::MulAdd(hn::Set(df, rows[j * d + c]), tv, acc[j]);
    }
    for (int j = 0; j < R; ++j) hn::StoreU(acc[j], df, out + 16 * j + l0);
  }
}

// attention_lane_products: n rows, in blocks of max_accumulators, then 8, 4, 2, 1.
inline HWY_NOINLINE void lane_products(const float* rows, const float* t, float* out, int n, int d) {
  constexpr int big = max_accumulators;
  int j = 0;
  for (; j + big <= n; j += big) product_rows<big>(rows + j * d, t, out + 16 * j, d);
  if constexpr (big > 8) {
    if (n - j >= 8) {
      product_rows<8>(rows + j * d, t, out + 16 * j, d);
      j += 8;
    }
  }
  if (n - j >= 4) {
    product_rows<4>(rows + j * d, t, out + 16 * j, d);
    j += 4;
  }
  if (n - j >= 2) {
    product_rows<2>(rows + j * d, t, out + 16 * j, d);
    j += 2;
  }
  if (n - j >= 1) product_rows<1>(rows + j * d, t, out + 16 * j, d);
}

// attention_softmax_step: the online softmax of 16 lanes over n >= 1 score rows s [n][16]; the maximum and
// the sum run as two chains (even and odd rows).
inline HWY_NOINLINE void softmax_step(float* s, int n, float* m, float* z, float* alpha) {
  const lanes_tag df;
  const int step = static_cast<int>(hn::Lanes(df));
  for (int l0 = 0; l0 < 16; l0 += step) {
    const lanes_vec m_old = hn::LoadU(df, m + l0);
    lanes_vec m0 = m_old, m1 = m_old;
    int j = 0;
    for (; j + 2 <= n; j += 2) {
      m0 = hn::Max(m0, hn::LoadU(df, s + 16 * j + l0));
      m1 = hn::Max(m1, hn::LoadU(df, s + 16 * j + 16 + l0));
    }
    if (j < n) m0 = hn::Max(m0, hn::LoadU(df, s + 16 * j + l0));
    const lanes_vec m_new = hn::Max(m0, m1);
    lanes_vec z0 = hn::Zero(df), z1 = hn::Zero(df);
    for (j = 0; j + 2 <= n; j += 2) {
      const lanes_vec a = exp2_flush(hn::Sub(hn::LoadU(df, s + 16 * j + l0), m_new));
      const lanes_vec b = exp2_flush(hn::Sub(hn::LoadU(df, s + 16 * j + 16 + l0), m_new));
      hn::StoreU(a, df, s + 16 * j + l0);
      hn::StoreU(b, df, s + 16 * j + 16 + l0);
      z0 = hn::Add(z0, a);
      z1 = hn::Add(z1, b);
    }
    if (j < n) {
      const lanes_vec a = exp2_flush(hn::Sub(hn::LoadU(df, s + 16 * j + l0), m_new));
      hn::StoreU(a, df, s + 16 * j + l0);
      z0 = hn::Add(z0, a);
    }
    const lanes_vec a = exp2_flush(hn::Sub(m_old, m_new));
    hn::StoreU(a, df, alpha + l0);
    hn::StoreU(hn::Add(hn::Mul(hn::LoadU(df, z + l0), a), hn::Add(z0, z1)), df, z + l0);
    hn::StoreU(m_new, df, m + l0);
  }
}

// attention_ds_lanes over n rows of 16 lanes: p = 2^(p - shift), ds = p · (ds - delta) · factor. The shift
// and delta are per row (shift[i], delta[i]) or, with per_lane, per lane (shift[l], delta[l]) for every row.
inline HWY_NOINLINE void ds_rows(float* p, float* ds, int n, const float* shift, const float* delta, int per_lane,
                          float factor) {
  const lanes_tag df;
  const int step = static_cast<int>(hn::Lanes(df));
  const lanes_vec f = hn::Set(df, factor);
  for (int i = 0; i < n; ++i) {
    for (int l0 = 0; l0 < 16; l0 += step) {
      const lanes_vec sh = per_lane ? hn::LoadU(df, shift + l0) : hn::Set(df, shift[i]);
      const lanes_vec de = per_lane ? hn::LoadU(df, delta + l0) : hn::Set(df, delta[i]);
      const lanes_vec pv = exp2_flush(hn::Sub(hn::LoadU(df, p + 16 * i + l0), sh));
      hn::StoreU(pv, df, p + 16 * i + l0);
      hn::StoreU(hn::Mul(hn::Mul(pv, hn::Sub(hn::LoadU(df, ds + 16 * i + l0), de)), f), df, ds + 16 * i + l0);
    }
  }
}

// C columns of lane_accumulate, one lane vector at a time.
template <int C>
HWY_INLINE void accumulate_columns(float* HWY_RESTRICT acc, const float* HWY_RESTRICT rows,
                                   const float* HWY_RESTRICT w, int n, int d, const float* HWY_RESTRICT alpha) {
  const lanes_tag df;
  const int step = static_cast<int>(hn::Lanes(df));
  for (int l0 = 0; l0 < 16; l0 += step) {
    lanes_vec o[C];
    for (int c = 0; c < C; ++c) o[c] = hn::LoadU(df, acc + 16 * c + l0);
    if (alpha != nullptr) {
      const lanes_vec a = hn::LoadU(df, alpha + l0);
      for (int c = 0; c < C; ++c) o[c] = hn::Mul(o[c], a);
    }
    for (int j = 0; j < n; ++j) {
      const lanes_vec wv = hn::LoadU(df, w + 16 * j + l0);
      const float* r = rows + j * d;
      for (int c = 0; c < C; ++c) o[c] = hn::MulAdd(hn::Set(df, r[c]), wv, o[c]);
    }
    for (int c = 0; c < C; ++c) hn::StoreU(o[c], df, acc + 16 * c + l0);
  }
}

// attention_lane_accumulate: acc[c * 16 + l] = acc[c * 16 + l] (· alpha[l] unless alpha is null)
// + sum_{j < n} rows[j * d + c] · w[j * 16 + l], j increasing; d is a multiple of 8.
inline HWY_NOINLINE void lane_accumulate(float* acc, const float* rows, const float* w, int n, int d, const float* alpha) {
  constexpr int big = max_accumulators;
  int c = 0;
  for (; c + big <= d; c += big) accumulate_columns<big>(acc + 16 * c, rows + c, w, n, d, alpha);
  if constexpr (big > 8) {
    if (d - c >= 8) accumulate_columns<8>(acc + 16 * c, rows + c, w, n, d, alpha);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace vitscale::kernels::detail::attention_simd
HWY_AFTER_NAMESPACE();

#endif  // the per-target toggle
