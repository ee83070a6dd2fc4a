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

#include <type_traits>

HWY_BEFORE_NAMESPACE();
namespace vitscale::kernels::detail::attention_simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using lanes_tag = hn::CappedTag<float, 16>;
using lanes_vec = hn::Vec<lanes_tag>;

// A 16-lane group is `vectors` vectors. A product keeps rows × vectors accumulators in registers, with each
// broadcast row element used for all of a group's vectors: 12 accumulators where there are 16 vector registers
// (x86 before AVX-512: 6 rows × 2 vectors on AVX2), 24 where there are 32 (16 rows × 1 on AVX-512, 6 × 4 on
// NEON). On AVX2 that is 2 loads and 6 broadcasts per 12 FMAs, so the two FMA ports, not the loads, set the pace.
inline constexpr int vectors = static_cast<int>(16 / hn::MaxLanes(lanes_tag()));
#if HWY_ARCH_X86 && (HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || \
                     HWY_TARGET == HWY_EMU128 || HWY_TARGET == HWY_SCALAR)
inline constexpr int accumulator_registers = 12;
#else
inline constexpr int accumulator_registers = 24;
#endif
inline constexpr int max_rows = accumulator_registers / vectors >= 16 ? 16
                                : accumulator_registers / vectors >= 1 ? accumulator_registers / vectors : 1;

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

// Calls f(std::integral_constant<int, R>(), i) for consecutive blocks [i, i + R) that cover [0, n): blocks of
// max_rows, then one each of 8, 4, 2 and 1 where smaller than max_rows, so that a tile's last rows (N = 197
// leaves 5 keys) cost what they are rather than a padded block.
template <class F>
HWY_INLINE void for_each_block(int n, const F& f) {
  constexpr int big = max_rows;
  int i = 0;
  for (; i + big <= n; i += big) f(std::integral_constant<int, big>(), i);
  if constexpr (big > 8) {
    if (n - i >= 8) {
      f(std::integral_constant<int, 8>(), i);
      i += 8;
    }
  }
  if constexpr (big > 4) {
    if (n - i >= 4) {
      f(std::integral_constant<int, 4>(), i);
      i += 4;
    }
  }
  if constexpr (big > 2) {
    if (n - i >= 2) {
      f(std::integral_constant<int, 2>(), i);
      i += 2;
    }
  }
  if constexpr (big > 1) {
    if (n - i >= 1) f(std::integral_constant<int, 1>(), i);
  }
}

// The products below take the head dimension as a template argument D where it is one of the presets' (and
// the Fashion-MNIST model's), so that the R streamed rows are addressed as one base plus constant offsets
// (a runtime stride costs a register per row, which AVX-512's 16 accumulators cannot spare: 10% slower);
// D = 0 is any other multiple of 8, read from d. Same sums, same order, either way.
#define VITSCALE_ATTENTION_SIMD_HEAD_DIMS(X) X(32) X(64) X(80) X(88) X(104) X(112) X(128)

// out[j * 16 + l] = sum_c rows[j * d + c] * t[c * 16 + l] for R rows.
template <int D, int R>
HWY_INLINE void product_rows(const float* HWY_RESTRICT rows, const float* HWY_RESTRICT t, float* HWY_RESTRICT out,
                             int d_runtime) {
  const int d = D > 0 ? D : d_runtime;
  const lanes_tag df;
  constexpr int V = vectors;
  constexpr int N = 16 / V;
  lanes_vec acc[R][V];
  for (int j = 0; j < R; ++j)
    for (int v = 0; v < V; ++v) acc[j][v] = hn::Zero(df);
  for (int c = 0; c < d; ++c) {
    lanes_vec tv[V];
    for (int v = 0; v < V; ++v) tv[v] = hn::LoadU(df, t + 16 * c + N * v);
    for (int j = 0; j < R; ++j) {
      const lanes_vec a = hn::Set(df, rows[j * d + c]);
      for (int v = 0; v < V; ++v) acc[j][v] = hn::MulAdd(a, tv[v], acc[j][v]);
    }
  }
  for (int j = 0; j < R; ++j)
    for (int v = 0; v < V; ++v) hn::StoreU(acc[j][v], df, out + 16 * j + N * v);
}

// attention_lane_products: n rows, in the blocks of for_each_block.
template <int D>
HWY_INLINE void lane_products_d(const float* rows, const float* t, float* out, int n, int d_runtime) {
  const int d = D > 0 ? D : d_runtime;
  for_each_block(n, [&](auto r, int j) { product_rows<D, decltype(r)::value>(rows + j * d, t, out + 16 * j, d); });
}

inline HWY_NOINLINE void lane_products(const float* rows, const float* t, float* out, int n, int d) {
  switch (d) {
#define VITSCALE_CASE(D) \
  case D:                \
    return lane_products_d<D>(rows, t, out, n, d);
    VITSCALE_ATTENTION_SIMD_HEAD_DIMS(VITSCALE_CASE)
#undef VITSCALE_CASE
    default:
      return lane_products_d<0>(rows, t, out, n, d);
  }
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

// C columns of lane_accumulate: C × vectors accumulators, each row element broadcast once for all vectors.
template <int D, int C>
HWY_INLINE void accumulate_columns(float* HWY_RESTRICT acc, const float* HWY_RESTRICT rows,
                                   const float* HWY_RESTRICT w, int n, int d_runtime, const float* HWY_RESTRICT alpha) {
  const int d = D > 0 ? D : d_runtime;
  const lanes_tag df;
  constexpr int V = vectors;
  constexpr int N = 16 / V;
  lanes_vec o[C][V];
  for (int c = 0; c < C; ++c)
    for (int v = 0; v < V; ++v) o[c][v] = hn::LoadU(df, acc + 16 * c + N * v);
  if (alpha != nullptr) {
    for (int v = 0; v < V; ++v) {
      const lanes_vec a = hn::LoadU(df, alpha + N * v);
      for (int c = 0; c < C; ++c) o[c][v] = hn::Mul(o[c][v], a);
    }
  }
  for (int j = 0; j < n; ++j) {
    lanes_vec wv[V];
    for (int v = 0; v < V; ++v) wv[v] = hn::LoadU(df, w + 16 * j + N * v);
    const float* r = rows + j * d;
    for (int c = 0; c < C; ++c) {
      const lanes_vec a = hn::Set(df, r[c]);
      for (int v = 0; v < V; ++v) o[c][v] = hn::MulAdd(a, wv[v], o[c][v]);
    }
  }
  for (int c = 0; c < C; ++c)
    for (int v = 0; v < V; ++v) hn::StoreU(o[c][v], df, acc + 16 * c + N * v);
}

// attention_lane_accumulate: acc[c * 16 + l] = acc[c * 16 + l] (· alpha[l] unless alpha is null)
// + sum_{j < n} rows[j * d + c] · w[j * 16 + l], j increasing; columns in the blocks of for_each_block.
template <int D>
HWY_INLINE void lane_accumulate_d(float* acc, const float* rows, const float* w, int n, int d_runtime,
                                  const float* alpha) {
  const int d = D > 0 ? D : d_runtime;
  for_each_block(d, [&](auto r, int c) {
    accumulate_columns<D, decltype(r)::value>(acc + 16 * c, rows + c, w, n, d, alpha);
  });
}

inline HWY_NOINLINE void lane_accumulate(float* acc, const float* rows, const float* w, int n, int d,
                                         const float* alpha) {
  switch (d) {
#define VITSCALE_CASE(D) \
  case D:                \
    return lane_accumulate_d<D>(acc, rows, w, n, d, alpha);
    VITSCALE_ATTENTION_SIMD_HEAD_DIMS(VITSCALE_CASE)
#undef VITSCALE_CASE
    default:
      return lane_accumulate_d<0>(acc, rows, w, n, d, alpha);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace vitscale::kernels::detail::attention_simd
HWY_AFTER_NAMESPACE();

#endif  // the per-target toggle
