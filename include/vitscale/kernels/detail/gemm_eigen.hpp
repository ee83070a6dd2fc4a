#pragma once
// gemm_backend::eigen: Eigen's GEMM on Eigen::Map of the Views, on Kokkos::Serial and Kokkos::OpenMP. float
// operands are mapped without copies; bf16 operands are widened once per call into the calling thread's
// float buffers (detail/gemm_host.hpp). A bf16 C, or an epilogue together with beta != 0, goes through a
// float buffer before the epilogue pass. The contract is at the top of kernels/gemm.hpp.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/kernels/detail/gemm_host.hpp>
#include <vitscale/kernels/detail/gemm_problem.hpp>

#include <vitscale/core/eigen.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vitscale::kernels::gemm_detail {

using eigen_rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using eigen_const_map = Eigen::Map<const eigen_rows, Eigen::Unaligned, Eigen::OuterStride<>>;
using eigen_map = Eigen::Map<eigen_rows, Eigen::Unaligned, Eigen::OuterStride<>>;

// out = op(A)·op(B) (assign) or out = beta_out·out + op(A)·op(B)·scale, float operands.
inline void eigen_product(const problem& p, const float* a, const float* b, float* out, std::int64_t ldo, float scale,
                          float keep) {
  const eigen_const_map am(a, p.op_a == gemm_op::n ? p.m : p.k, p.op_a == gemm_op::n ? p.k : p.m,
                           Eigen::OuterStride<>(p.lda));
  const eigen_const_map bm(b, p.op_b == gemm_op::n ? p.k : p.n, p.op_b == gemm_op::n ? p.n : p.k,
                           Eigen::OuterStride<>(p.ldb));
  eigen_map om(out, p.m, p.n, Eigen::OuterStride<>(ldo));
  auto run = [&](const auto& x, const auto& y) {
    if (keep == 0.0f) {
      om.noalias() = scale * (x * y);  // never reads `out`: NaN there cannot propagate
    } else {
      if (keep != 1.0f) om *= keep;
      om.noalias() += scale * (x * y);
    }
  };
  if (p.op_a == gemm_op::n) {
    if (p.op_b == gemm_op::n)
      run(am, bm);
    else
      run(am, bm.transpose());
  } else {
    if (p.op_b == gemm_op::n)
      run(am.transpose(), bm);
    else
      run(am.transpose(), bm.transpose());
  }
}

template <class ExecSpace, class TA, class TBias, class TC>
void run_eigen(const ExecSpace& space, problem p, const TA* a, const TA* b, const TBias* bias, TC* c) {
  space.fence();
  const host_threads_scope threads(space.concurrency());
  const float* af;
  const float* bf;
  if constexpr (std::is_same<TA, float>::value) {
    af = a;
    bf = b;
  } else {
    widen_operands(space, p, a, b, 0, 1, af, bf);
    space.fence();
  }
  const bool direct = std::is_same<TC, float>::value && (p.epilogue == gemm_epilogue::none || p.beta == 0.0f);
  float* work = direct ? nullptr : thread_buffer(2, static_cast<std::size_t>(p.m * p.n));
  for (std::int64_t item = 0; item < p.batch; ++item) {
    const float* ai = af + item * p.sa;
    const float* bi = bf + item * p.sb;
    TC* ci = c + item * p.sc;
    if constexpr (std::is_same<TC, float>::value) {
      if (direct) {
        if (p.epilogue == gemm_epilogue::none) {
          eigen_product(p, ai, bi, ci, p.ldc, p.alpha, p.beta);
        } else {  // beta == 0: the product goes straight into C, the epilogue runs in place
          eigen_product(p, ai, bi, ci, p.ldc, 1.0f, 0.0f);
          host_epilogue(space, p, ci, p.ldc, bias, ci);
          space.fence();
        }
        continue;
      }
    }
    eigen_product(p, ai, bi, work, p.n, 1.0f, 0.0f);
    host_epilogue(space, p, work, p.n, bias, ci);
    space.fence();
  }
}

}  // namespace vitscale::kernels::gemm_detail
