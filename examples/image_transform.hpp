#pragma once
// timm's evaluation transform on 8-bit images, for examples/classify.cpp:
//   Resize(floor(img_size / crop_pct)) of the shorter side (torchvision on a PIL image: PIL's resize),
//   CenterCrop(img_size), ToTensor (/255), Normalize(mean, std).
//
// resize() follows PIL's Image.resize for 8-bit images (ImagingResample): separable, horizontal pass then
// vertical pass, each output pixel a weighted sum over the source pixels whose centres fall in the filter's
// support around the output pixel's centre; when downscaling the support is widened by the scale factor
// (antialiasing); weights normalised to sum 1, converted to fixed point with 22 fractional bits, and each
// pass rounded and clamped back to 8 bits. Bicubic is PIL's (a = -0.5, support 2), bilinear the triangle
// (support 1). This is a re-derivation of PIL's algorithm, not its code; for 8-bit RGB/L input it is meant
// to give PIL's bytes exactly (tests/reference/classify_reference.py measures it on the committed images).
//
// Channel conversion: grey → RGB replicates (PIL's convert("RGB")); RGB → grey uses the ITU-R 601-2 luma
// weights L = 0.299 R + 0.587 G + 0.114 B in PIL's fixed point ((R·19595 + G·38470 + B·7471 + 2^15) >> 16),
// as PIL's convert("L"); an alpha channel is dropped (not composited), as PIL's convert does.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace image_transform {

struct image {
  int width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;  // [height, width, channels], row-major
  std::uint8_t at(int y, int x, int c) const { return pixels[(std::size_t(y) * width + x) * channels + c]; }
};

enum class filter { bilinear, bicubic };

// grey (1), grey+alpha (2), RGB (3), RGBA (4) → `channels` (1 or 3).
inline image convert(const image& in, int channels) {
  if (channels != 1 && channels != 3) throw std::invalid_argument("convert: the model needs 1 or 3 channels");
  image out{in.width, in.height, channels, std::vector<std::uint8_t>(std::size_t(in.width) * in.height * channels)};
  const bool colour = in.channels >= 3;
  for (int y = 0; y < in.height; ++y)
    for (int x = 0; x < in.width; ++x) {
      std::uint8_t* o = &out.pixels[(std::size_t(y) * in.width + x) * channels];
      if (colour && channels == 1) {
        const std::uint32_t r = in.at(y, x, 0), g = in.at(y, x, 1), b = in.at(y, x, 2);
        o[0] = static_cast<std::uint8_t>((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
      } else {
        for (int c = 0; c < channels; ++c) o[c] = in.at(y, x, colour ? c : 0);
      }
    }
  return out;
}

namespace detail {
inline double bicubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}
inline double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

constexpr int precision_bits = 32 - 8 - 2;

// For each output index: the first source index and the fixed-point weights of the source pixels it reads.
struct coefficients {
  std::vector<int> first;
  std::vector<std::vector<std::int64_t>> weights;
};

// PIL's weights for each output index, normalised to sum 1, in double.
struct weights {
  std::vector<int> first;
  std::vector<std::vector<double>> w;
};

inline weights filter_weights(int in_size, int out_size, filter f) {
  const double support_1 = f == filter::bicubic ? 2.0 : 1.0;
  const double scale = double(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = support_1 * filter_scale;
  const double inverse = 1.0 / filter_scale;
  weights k;
  k.first.resize(out_size);
  k.w.resize(out_size);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    std::vector<double> w(std::size_t(std::max(0, xmax - xmin)));
    double total = 0.0;
    for (int x = xmin; x < xmax; ++x) {
      const double t = (x - center + 0.5) * inverse;
      w[x - xmin] = f == filter::bicubic ? bicubic(t) : triangle(t);
      total += w[x - xmin];
    }
    k.first[xx] = xmin;
    for (double& v : w) v = total != 0.0 ? v / total : v;
    k.w[xx] = std::move(w);
  }
  return k;
}

// The same weights in PIL's fixed point.
inline coefficients compute(int in_size, int out_size, filter f) {
  const weights w = filter_weights(in_size, out_size, f);
  coefficients k;
  k.first = w.first;
  for (const auto& row : w.w) {
    k.weights.emplace_back();
    for (double n : row) {
      const double fixed = n * double(1 << precision_bits);
      k.weights.back().push_back(static_cast<std::int64_t>(fixed < 0 ? fixed - 0.5 : fixed + 0.5));
    }
  }
  return k;
}

inline std::uint8_t round_clip(std::int64_t sum) {
  const std::int64_t v = sum >> precision_bits;
  return static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}
}  // namespace detail

// PIL's Image.resize((width, height), BICUBIC or BILINEAR) of an 8-bit image (see the top of the file).
inline image resize(const image& in, int width, int height, filter f) {
  image cur = in;
  if (width != in.width) {
    const auto k = detail::compute(in.width, width, f);
    image out{width, in.height, in.channels, std::vector<std::uint8_t>(std::size_t(width) * in.height * in.channels)};
    for (int y = 0; y < in.height; ++y)
      for (int x = 0; x < width; ++x)
        for (int c = 0; c < in.channels; ++c) {
          std::int64_t sum = std::int64_t(1) << (detail::precision_bits - 1);
          for (std::size_t i = 0; i < k.weights[x].size(); ++i) sum += cur.at(y, k.first[x] + int(i), c) * k.weights[x][i];
          out.pixels[(std::size_t(y) * width + x) * in.channels + c] = detail::round_clip(sum);
        }
    cur = std::move(out);
  }
  if (height != in.height) {
    const auto k = detail::compute(in.height, height, f);
    image out{cur.width, height, cur.channels, std::vector<std::uint8_t>(std::size_t(cur.width) * height * cur.channels)};
    for (int y = 0; y < height; ++y)
      for (int x = 0; x < cur.width; ++x)
        for (int c = 0; c < cur.channels; ++c) {
          std::int64_t sum = std::int64_t(1) << (detail::precision_bits - 1);
          for (std::size_t i = 0; i < k.weights[y].size(); ++i) sum += cur.at(k.first[y] + int(i), x, c) * k.weights[y][i];
          out.pixels[(std::size_t(y) * cur.width + x) * cur.channels + c] = detail::round_clip(sum);
        }
    cur = std::move(out);
  }
  return cur;
}

// torchvision's Resize(size) with one int: the shorter side becomes `size`, the longer int(size·long/short).
inline image resize_shorter(const image& in, int size, filter f) {
  if (in.width <= in.height)
    return resize(in, size, static_cast<int>(double(size) * in.height / in.width), f);
  return resize(in, static_cast<int>(double(size) * in.width / in.height), size, f);
}

// torchvision's CenterCrop(size) of an image at least `size` on each side: offsets round((side - size) / 2),
// halves to even as Python's round.
inline image center_crop(const image& in, int size) {
  if (in.width < size || in.height < size) throw std::invalid_argument("center_crop: the image is smaller than the crop");
  const int top = static_cast<int>(std::nearbyint((in.height - size) / 2.0));
  const int left = static_cast<int>(std::nearbyint((in.width - size) / 2.0));
  image out{size, size, in.channels, std::vector<std::uint8_t>(std::size_t(size) * size * in.channels)};
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < in.channels; ++c)
        out.pixels[(std::size_t(y) * size + x) * in.channels + c] = in.at(top + y, left + x, c);
  return out;
}

// timm's eval transform up to the tensor: resize the shorter side to floor(img_size / crop_pct), crop img_size.
inline image eval_resize_crop(const image& in, int img_size, double crop_pct, filter f) {
  const int scale_size = static_cast<int>(std::floor(img_size / crop_pct));
  return center_crop(resize_shorter(in, scale_size, f), img_size);
}

// ToTensor and Normalize, channels last: (pixel / 255 − mean[c]) / std[c].
inline std::vector<float> normalise(const image& in, const std::vector<double>& mean, const std::vector<double>& stdev) {
  std::vector<float> out(in.pixels.size());
  for (std::size_t i = 0; i < in.pixels.size(); ++i) {
    const int c = int(i % std::size_t(in.channels));
    out[i] = static_cast<float>((float(in.pixels[i]) / 255.0f - float(mean[c])) / float(stdev[c]));
  }
  return out;
}

// Batches of float images resized with PIL's bicubic weights, unrounded (the images are already normalised: the
// weights sum to 1, so resizing commutes with the normalisation's affine map, but there is no 8-bit rounding or
// clamping): [n, h, w, 1] → [n, size, size, channels], the grey value replicated to every channel. The weights
// and the horizontal pass's buffer are made once, so a training loop allocates nothing per batch. For
// examples/train's models of another input size than the 28-px data (fine-tuning a catalogue checkpoint).
class batch_resizer {
 public:
  batch_resizer(int h, int w, int size, int channels)
      : h_(h), w_(w), size_(size), channels_(channels), kx_(detail::filter_weights(w, size, filter::bicubic)),
        ky_(detail::filter_weights(h, size, filter::bicubic)), rows_(std::size_t(h) * std::size_t(size)) {}

  void operator()(const float* in, int n, float* out) {
    for (int b = 0; b < n; ++b) {
      const float* src = in + std::size_t(b) * std::size_t(h_) * std::size_t(w_);
      for (int y = 0; y < h_; ++y)
        for (int x = 0; x < size_; ++x) {
          double sum = 0;
          for (std::size_t i = 0; i < kx_.w[x].size(); ++i)
            sum += kx_.w[x][i] * src[std::size_t(y) * w_ + kx_.first[x] + i];
          rows_[std::size_t(y) * size_ + x] = float(sum);
        }
      float* dst = out + std::size_t(b) * std::size_t(size_) * std::size_t(size_) * std::size_t(channels_);
      for (int y = 0; y < size_; ++y)
        for (int x = 0; x < size_; ++x) {
          double sum = 0;
          for (std::size_t i = 0; i < ky_.w[y].size(); ++i) sum += ky_.w[y][i] * rows_[(ky_.first[y] + i) * size_ + x];
          for (int c = 0; c < channels_; ++c) dst[(std::size_t(y) * size_ + x) * channels_ + c] = float(sum);
        }
    }
  }

 private:
  int h_, w_, size_, channels_;
  detail::weights kx_, ky_;
  std::vector<float> rows_;
};

// The parts of a comma list ("a,b,c"; "" has none).
inline std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');) parts.push_back(part);
  return parts;
}

// The whole of `text` as a finite number (spaces around it allowed), or nothing.
inline std::optional<double> finite_number(const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin) return std::nullopt;
  while (*end == ' ') ++end;
  if (*end != '\0' || !std::isfinite(v)) return std::nullopt;
  return v;
}

// A normalisation constant: "0.5" or "0.485,0.456,0.406" → one finite value per channel; `source` says where
// the text came from ("option --mean", "the metadata of FILE"), for the error.
inline std::vector<double> per_channel(const std::string& text, int channels, const char* what,
                                       const std::string& source) {
  const auto fail = [&](const std::string& why) { throw std::invalid_argument(source + ": " + what + why); };
  std::vector<double> values;
  for (const std::string& part : split(text)) {
    const auto v = finite_number(part);
    if (!v) fail(" = \"" + text + "\" is not a finite number or a comma list of them");
    values.push_back(*v);
  }
  if (values.empty()) fail(" is empty; give a number or a comma list");
  if (values.size() == 1) values.resize(std::size_t(channels), values[0]);
  if (int(values.size()) != channels)
    fail(" = \"" + text + "\" has " + std::to_string(values.size()) + " values for " + std::to_string(channels) +
         " channels");
  return values;
}

// "0.5,0.25,0.125": per-channel values as the options take them.
inline std::string join(const std::vector<double>& values) {
  std::ostringstream out;
  for (std::size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
  return out.str();
}

}  // namespace image_transform
