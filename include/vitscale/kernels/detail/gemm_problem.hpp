#pragma once
// What every GEMM backend shares (kernels/gemm.hpp is the front end, the contract is at its top): the public
// vocabulary (gemm_op, gemm_epilogue), the checked problem the front end hands to a backend, and the
// element-wise pieces that must be the same arithmetic on every backend (the epilogue's activation, the
// single-rounding multiply-add).

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <cstdint>
#include <type_traits>

namespace vitscale::kernels {

// op(X) = X (n) or X transposed (t).
enum class gemm_op : unsigned char { n, t };

// What happens to alpha·op(A)·op(B) before beta·C is added (see the top of kernels/gemm.hpp).
enum class gemm_epilogue : unsigned char { none, bias, bias_gelu_tanh, bias_gelu_erf };

namespace gemm_detail {

template <class T>
constexpr bool is_storage = std::is_same<T, float>::value || std::is_same<T, ::vitscale::bf16>::value;

// The problem after the Views are checked: raw pointers and element strides, row-major as stored.
struct problem {
  std::int64_t batch = 1, m = 0, n = 0, k = 0;
  std::int64_t lda = 0, ldb = 0, ldc = 0;  // row strides of A, B, C as stored
  std::int64_t sa = 0, sb = 0, sc = 0;     // batch strides (0 for rank 2)
  gemm_op op_a = gemm_op::n, op_b = gemm_op::n;
  float alpha = 1.0f, beta = 0.0f;
  gemm_epilogue epilogue = gemm_epilogue::none;
  bool batched = false;
};

// The epilogue of one element, given acc = sum over k (alpha not yet applied) and the column's bias.
KOKKOS_INLINE_FUNCTION float activate(gemm_epilogue ep, float x) {
  if (ep == gemm_epilogue::bias_gelu_tanh) {
    const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);  // sqrt(2/pi)
    return 0.5f * x * (1.0f + kmath::tanh(inner));
  }
  if (ep == gemm_epilogue::bias_gelu_erf) return 0.5f * x * (1.0f + kmath::erf(x * 0.7071067811865476f));
  return x;
}

// a·b + c with one rounding on the host (GCC and Clang vectorise the builtin), whatever -ffp-contract says,
// so the portable kernel does not lose FMA under -std=c++17; devices contract on their own.
KOKKOS_FORCEINLINE_FUNCTION float fma(float a, float b, float c) {
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDA_ARCH__) && !defined(__HIP_DEVICE_COMPILE__) && \
    !defined(__SYCL_DEVICE_ONLY__)
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

}  // namespace gemm_detail
}  // namespace vitscale::kernels
