#pragma once
// Position embeddings on the host: big_vision's fixed 2-D sin-cos table, and timm's resampling of a learned
// table to another grid (fine-tuning at a new resolution). Plain functions on float buffers; the model
// copies the results to its device arena.

#include <vitscale/core/error.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace vitscale {

// big_vision's posemb_sincos_2d (models/vit.py, the MoCo v3 table): out is [grid_h·grid_w, width],
// rows in row-major (y, x) order, each row [sin(x·ω) | cos(x·ω) | sin(y·ω) | cos(y·ω)] with
// ω_i = temperature^(−i / (width/4 − 1)), i < width/4. Computed in double, stored as float.
// width must be a multiple of 4 and at least 8 (at 4, big_vision divides 0 by 0 and gets NaN).
inline void posemb_sincos_2d(int grid_h, int grid_w, int width, float* out, double temperature = 10000) {
  if (grid_h <= 0 || grid_w <= 0)
    detail::fail("posemb_sincos_2d: the grid must be at least 1×1 patches, got ", grid_h, "×", grid_w);
  if (width % 4 != 0 || width < 8)
    detail::fail("posemb_sincos_2d: width must be a multiple of 4 and at least 8 (a quarter each for sin and "
                 "cos of the column and of the row, and at least two frequencies), got ",
                 width);
  if (!(temperature > 0) || !std::isfinite(temperature))
    detail::fail("posemb_sincos_2d: the temperature must be positive and finite, got ", temperature);
  if (out == nullptr) detail::fail("posemb_sincos_2d: null output buffer");
  const int q = width / 4;
  std::vector<double> omega(static_cast<std::size_t>(q));
  for (int i = 0; i < q; ++i) omega[i] = 1.0 / std::pow(temperature, static_cast<double>(i) / (q - 1));
  for (int y = 0; y < grid_h; ++y)
    for (int x = 0; x < grid_w; ++x) {
      float* row = out + (static_cast<std::int64_t>(y) * grid_w + x) * width;
      for (int i = 0; i < q; ++i) {
        const double ax = x * omega[i], ay = y * omega[i];
        row[i] = static_cast<float>(std::sin(ax));
        row[q + i] = static_cast<float>(std::cos(ax));
        row[2 * q + i] = static_cast<float>(std::sin(ay));
        row[3 * q + i] = static_cast<float>(std::cos(ay));
      }
    }
}

enum class interpolation { bilinear, bicubic };

namespace detail {
namespace posemb_impl {

// Keys' cubic convolution kernel with coefficient a (PyTorch: −0.75 plain, −0.5 antialiased as PIL).
inline double cubic(double x, double a) {
  x = std::fabs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

// The [n_out, n_in] matrix that resizes one axis as torch.nn.functional.interpolate does with
// align_corners=False and the size given (so the scale is n_in / n_out).
inline std::vector<double> resize_weights(int n_in, int n_out, interpolation kind, bool antialias) {
  std::vector<double> w(static_cast<std::size_t>(n_out) * n_in, 0.0);
  auto at = [&](int o, int i) -> double& { return w[static_cast<std::size_t>(o) * n_in + i]; };
  const double scale = static_cast<double>(n_in) / n_out;
  const bool cubic_kind = kind == interpolation::bicubic;
  for (int o = 0; o < n_out; ++o) {
    if (antialias) {
      // PIL's separable filter: when shrinking, the kernel is stretched by the scale; taps outside the
      // input are dropped (no clamping) and the weights renormalised to sum to one.
      const double support = (cubic_kind ? 2.0 : 1.0) * (scale >= 1 ? scale : 1.0);
      const double inv = scale >= 1 ? 1.0 / scale : 1.0;
      const double center = scale * (o + 0.5);
      const auto lo = static_cast<std::int64_t>(center - support + 0.5);  // truncation, as PyTorch
      const auto hi = static_cast<std::int64_t>(center + support + 0.5);
      const int first = static_cast<int>(lo < 0 ? 0 : lo);
      const int last = static_cast<int>(hi > n_in ? n_in : hi);
      double total = 0;
      for (int i = first; i < last; ++i) {
        const double x = (i - center + 0.5) * inv;
        const double f = cubic_kind ? cubic(x, -0.5) : (std::fabs(x) < 1 ? 1 - std::fabs(x) : 0.0);
        at(o, i) = f;
        total += f;
      }
      if (total != 0)
        for (int i = first; i < last; ++i) at(o, i) /= total;
    } else if (cubic_kind) {
      // Four taps around the source position, a = −0.75, indices clamped to the border.
      const double src = scale * (o + 0.5) - 0.5;
      const double fl = std::floor(src);
      const double t = src - fl;
      const double c[4] = {cubic(t + 1, -0.75), cubic(t, -0.75), cubic(1 - t, -0.75), cubic(2 - t, -0.75)};
      for (int k = 0; k < 4; ++k) {
        int i = static_cast<int>(fl) - 1 + k;
        i = i < 0 ? 0 : (i > n_in - 1 ? n_in - 1 : i);
        at(o, i) += c[k];
      }
    } else {
      // Two taps; a source position left of the first centre is clamped to it.
      double src = scale * (o + 0.5) - 0.5;
      if (src < 0) src = 0;
      const int i0 = static_cast<int>(src);
      const int i1 = i0 < n_in - 1 ? i0 + 1 : i0;
      const double l1 = src - i0;
      at(o, i0) += 1 - l1;
      at(o, i1) += l1;
    }
  }
  return w;
}

}  // namespace posemb_impl
}  // namespace detail

// timm's resample_abs_pos_embed (layers/pos_embed.py): in is [prefix + old_h·old_w, width], out is
// [prefix + new_h·new_w, width]. The prefix rows (class token) are copied unchanged, then the grid, seen as a
// width-channel image old_h×old_w, is resized to new_h×new_w as torch.nn.functional.interpolate(mode,
// align_corners=False, antialias) does in PyTorch 1.13 (timm's default: bicubic, antialias=True).
// Computed in double, stored as float; in and out must not overlap.
inline void resample_posemb(const float* in, int prefix, int old_h, int old_w, int width, float* out, int new_h,
                            int new_w, interpolation kind, bool antialias = true) {
  if (prefix < 0) detail::fail("resample_posemb: the number of prefix entries must be >= 0, got ", prefix);
  if (old_h <= 0 || old_w <= 0 || new_h <= 0 || new_w <= 0)
    detail::fail("resample_posemb: grids must be at least 1×1, got ", old_h, "×", old_w, " -> ", new_h, "×",
                 new_w);
  if (width <= 0) detail::fail("resample_posemb: width must be positive, got ", width);
  if (in == nullptr || out == nullptr) detail::fail("resample_posemb: null buffer");
  const std::int64_t D = width;
  const std::int64_t in_size = (prefix + static_cast<std::int64_t>(old_h) * old_w) * D;
  const std::int64_t out_size = (prefix + static_cast<std::int64_t>(new_h) * new_w) * D;
  const std::less<const float*> before;
  if (before(in, out + out_size) && before(out, in + in_size))
    detail::fail("resample_posemb: the input and output buffers overlap");

  for (std::int64_t k = 0; k < prefix * D; ++k) out[k] = in[k];
  const float* src = in + prefix * D;
  float* dst = out + prefix * D;
  if (old_h == new_h && old_w == new_w) {  // timm returns the table unchanged
    for (std::int64_t k = 0; k < static_cast<std::int64_t>(old_h) * old_w * D; ++k) dst[k] = src[k];
    return;
  }
  const std::vector<double> wy = detail::posemb_impl::resize_weights(old_h, new_h, kind, antialias);
  const std::vector<double> wx = detail::posemb_impl::resize_weights(old_w, new_w, kind, antialias);

  // Along x first: tmp [old_h, new_w, width], then along y.
  std::vector<double> tmp(static_cast<std::size_t>(old_h) * new_w * D, 0.0);
  for (int y = 0; y < old_h; ++y)
    for (int x = 0; x < new_w; ++x) {
      double* t = tmp.data() + (static_cast<std::int64_t>(y) * new_w + x) * D;
      for (int i = 0; i < old_w; ++i) {
        const double w = wx[static_cast<std::size_t>(x) * old_w + i];
        if (w == 0) continue;
        const float* s = src + (static_cast<std::int64_t>(y) * old_w + i) * D;
        for (std::int64_t c = 0; c < D; ++c) t[c] += w * s[c];
      }
    }
  std::vector<double> acc(static_cast<std::size_t>(D));
  for (int y = 0; y < new_h; ++y)
    for (int x = 0; x < new_w; ++x) {
      for (auto& a : acc) a = 0;
      for (int j = 0; j < old_h; ++j) {
        const double w = wy[static_cast<std::size_t>(y) * old_h + j];
        if (w == 0) continue;
        const double* t = tmp.data() + (static_cast<std::int64_t>(j) * new_w + x) * D;
        for (std::int64_t c = 0; c < D; ++c) acc[c] += w * t[c];
      }
      float* d = dst + (static_cast<std::int64_t>(y) * new_w + x) * D;
      for (std::int64_t c = 0; c < D; ++c) d[c] = static_cast<float>(acc[c]);
    }
}

}  // namespace vitscale
