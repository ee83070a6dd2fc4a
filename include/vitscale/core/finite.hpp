#pragma once
// Finite checks: the error a non-finite value raises, and host scans for the first non-finite element.
//
// A NaN or an infinity in a gradient, a parameter or an optimizer's state is never written to a file and never
// applied as an update (train/optimizer.hpp checks the gradients in the reduction that also gives their global
// norm; io/ checks what it saves and what it loads). The error names the quantity and the first tensor that
// holds one, so that a training loop can add the step and stop, or skip the step and count it.
//
// The scans test the exponent bits rather than call std::isfinite, so they stay right when a user compiles
// with -ffast-math (under which the compiler may assume that no value is NaN or infinite).

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

namespace vitscale {

// A non-finite value where only finite ones may be: `quantity()` says which kind ("gradient", "parameter",
// "optimizer state", "learning rate", ...), `tensor()` which tensor held the first one ("" when none applies).
class non_finite_error : public error {
 public:
  non_finite_error(const std::string& message, std::string quantity, std::string tensor)
      : error(message), reason_(message), quantity_(std::move(quantity)), tensor_(std::move(tensor)) {}
  // The message without what() adds ("vitscale: "), for a caller that puts it into a sentence of its own.
  const std::string& reason() const noexcept { return reason_; }
  const std::string& quantity() const noexcept { return quantity_; }
  const std::string& tensor() const noexcept { return tensor_; }

 private:
  std::string reason_, quantity_, tensor_;
};

namespace detail {

inline bool finite_bits(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return (b & 0x7f800000u) != 0x7f800000u;
}
inline bool finite_bits(double x) {
  std::uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return (b & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}
inline bool finite_bits(bf16 x) { return (x.bits & 0x7f80u) != 0x7f80u; }

// The index of the first non-finite element of data[0, n), or -1 when all are finite. The loop counts the
// non-finite elements branch-free (so that it vectorises) and looks for the first only when there is one.
template <class T>
std::int64_t first_non_finite(const T* data, std::int64_t n) {
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < n; ++i) bad += finite_bits(data[i]) ? 0 : 1;
  if (bad == 0) return -1;
  for (std::int64_t i = 0; i < n; ++i)
    if (!finite_bits(data[i])) return i;
  return -1;
}

// "NaN", "+Inf" or "-Inf": how a message names a non-finite value.
template <class T>
const char* non_finite_name(T x) {
  const double d = static_cast<double>(static_cast<float>(x));
  return d != d ? "NaN" : d > 0 ? "+Inf" : "-Inf";
}
inline const char* non_finite_name(double d) { return d != d ? "NaN" : d > 0 ? "+Inf" : "-Inf"; }

// Throws non_finite_error unless data[0, n) is finite: "<context>: <quantity> '<tensor>' is NaN at element i of
// n<consequence>", e.g. ("save_checkpoint: 'run.safetensors'", "parameter", "head.weight", "; nothing was written").
template <class T>
void require_finite(const T* data, std::int64_t n, const std::string& context, const std::string& quantity,
                    const std::string& tensor, const std::string& consequence = "") {
  const std::int64_t i = first_non_finite(data, n);
  if (i < 0) return;
  throw non_finite_error(context + ": " + quantity + " '" + tensor + "' is " + non_finite_name(data[i]) +
                             " at element " + std::to_string(i) + " of " + std::to_string(n) + consequence,
                         quantity, tensor);
}

}  // namespace detail
}  // namespace vitscale
