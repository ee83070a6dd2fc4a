#pragma once
// What the host-library GEMM backends (detail/gemm_eigen.hpp, detail/gemm_onednn.hpp) share: the OpenMP
// thread count they are told, the calling thread's float buffers, the epilogue as a pass of its own, and the
// widening of bf16 operands to float. The contract is at the top of kernels/gemm.hpp.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/kernels/detail/gemm_problem.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace vitscale::kernels::gemm_detail {

// Sets the calling thread's OpenMP thread count for the lifetime of the object (oneDNN and Eigen read it).
class host_threads_scope {
 public:
  explicit host_threads_scope(int threads) {
#if defined(_OPENMP)
    saved_ = omp_get_max_threads();
    omp_set_num_threads(threads > 0 ? threads : 1);
#else
    (void)threads;
#endif
  }
  ~host_threads_scope() {
#if defined(_OPENMP)
    omp_set_num_threads(saved_);
#endif
  }
  host_threads_scope(const host_threads_scope&) = delete;
  host_threads_scope& operator=(const host_threads_scope&) = delete;

 private:
  int saved_ = 1;
};

// Per-thread float buffers that grow to the largest request and are then reused (one-time allocation, never per
// call after the first at that size). Slots: 0-2 Eigen (A, B, product) and oneDNN (product, bias, scratchpad),
// 3-4 oneDNN's widened operands.
inline float* thread_buffer(int slot, std::size_t elements) {
  thread_local std::array<std::vector<float>, 5> buffers;
  auto& b = buffers[static_cast<std::size_t>(slot)];
  if (b.size() < elements) b.resize(elements);
  return b.data();
}

// The epilogue pass of the host backends: C = act(alpha·T + bias) + beta·C over one [M, N] matrix, T with
// row stride ldt. T may be C itself (float C, beta == 0). Runs on `space`.
template <class ExecSpace, class TBias, class TC>
void host_epilogue(const ExecSpace& space, const problem& p, const float* t, std::int64_t ldt, const TBias* bias,
                   TC* c) {
  const std::int64_t n = p.n, ldc = p.ldc;
  const float alpha = p.alpha, beta = p.beta;
  const gemm_epilogue ep = p.epilogue;
  Kokkos::parallel_for(
      "vitscale::gemm::epilogue", Kokkos::RangePolicy<ExecSpace>(space, 0, p.m), KOKKOS_LAMBDA(std::int64_t i) {
        for (std::int64_t j = 0; j < n; ++j) {
          float v = alpha * t[i * ldt + j];
          if (bias) v += static_cast<float>(bias[j]);
          v = activate(ep, v);
          if (beta != 0.0f) v += beta * static_cast<float>(c[i * ldc + j]);
          c[i * ldc + j] = v;
        }
      });
}

// Copies the logical [rows, cols] of each batch item of a bf16 matrix into a packed float buffer.
template <class ExecSpace>
void widen(const ExecSpace& space, const ::vitscale::bf16* src, std::int64_t batch, std::int64_t rows,
           std::int64_t cols, std::int64_t ld, std::int64_t stride, float* dst) {
  Kokkos::parallel_for(
      "vitscale::gemm::widen", Kokkos::RangePolicy<ExecSpace>(space, 0, batch * rows), KOKKOS_LAMBDA(std::int64_t r) {
        const std::int64_t item = r / rows, row = r % rows;
        const ::vitscale::bf16* s = src + item * stride + row * ld;
        float* d = dst + r * cols;
        for (std::int64_t j = 0; j < cols; ++j) d[j] = static_cast<float>(s[j]);
      });
}

// Widens bf16 operands A and B into packed float copies in the calling thread's buffers slot_a and slot_b
// (queued on `space`, not fenced) and points `p` at their layout: the float problem of the same product.
template <class ExecSpace>
void widen_operands(const ExecSpace& space, problem& p, const ::vitscale::bf16* a, const ::vitscale::bf16* b,
                    int slot_a, int slot_b, const float*& af, const float*& bf) {
  const std::int64_t a_rows = p.op_a == gemm_op::n ? p.m : p.k, a_cols = p.op_a == gemm_op::n ? p.k : p.m;
  const std::int64_t b_rows = p.op_b == gemm_op::n ? p.k : p.n, b_cols = p.op_b == gemm_op::n ? p.n : p.k;
  float* aw = thread_buffer(slot_a, static_cast<std::size_t>(p.batch * a_rows * a_cols));
  float* bw = thread_buffer(slot_b, static_cast<std::size_t>(p.batch * b_rows * b_cols));
  widen(space, a, p.batch, a_rows, a_cols, p.lda, p.sa, aw);
  widen(space, b, p.batch, b_rows, b_cols, p.ldb, p.sb, bw);
  af = aw;
  bf = bw;
  p.lda = a_cols;
  p.sa = a_rows * a_cols;
  p.ldb = b_cols;
  p.sb = b_rows * b_cols;
}

}  // namespace vitscale::kernels::gemm_detail
