#pragma once
// gemm_backend::cublas: vitscale::kernels::gemm on Kokkos::Cuda through cuBLAS — the traits of the shared
// vendor-BLAS backend (detail/gemm_vendor_blas.hpp, which describes the mapping, the epilogue, the handles and
// the workspaces). VITSCALE_GEMM_CUBLAS is 1 where the build has cuBLAS (VITSCALE_HAVE_CUBLAS) and Kokkos'
// CUDA backend; the traits need only cuBLAS and compile wherever VITSCALE_HAVE_CUBLAS is set.
//
// cublasGemmEx and cublasGemmStridedBatchedEx, CUBLAS_COMPUTE_32F, CUDA_R_32F / CUDA_R_16BF storage.
//
// Why not cuBLASLt's fused epilogues: cuBLASLt computes act(alpha·AB + beta·C + bias), with beta·C inside the
// activation, whereas vitscale's contract adds beta·C after it (the fused residual); cuBLASLt also has no erf
// GELU, and its GELU epilogues are not specified to the rounding of ours. Only the plain bias (with any beta)
// and GELU with beta == 0 would fuse exactly, so for one code path that is the same on every backend the
// product goes to cuBLAS and the epilogue is vitscale's own Kokkos kernel on the same stream.

#if defined(VITSCALE_HAVE_CUBLAS) && VITSCALE_HAVE_CUBLAS && defined(KOKKOS_ENABLE_CUDA)
#define VITSCALE_GEMM_CUBLAS 1
#else
#define VITSCALE_GEMM_CUBLAS 0
#endif

#if defined(VITSCALE_HAVE_CUBLAS) && VITSCALE_HAVE_CUBLAS

#include <vitscale/core/bf16.hpp>
#include <vitscale/kernels/detail/gemm_vendor_blas.hpp>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#if !defined(CUBLAS_VERSION) || CUBLAS_VERSION < 110402
#error "vitscale's cuBLAS GEMM needs cuBLAS 11.4.2 (CUDA 11.4) or newer: cublasGetStatusName, CUBLAS_COMPUTE_32F"
#endif

#include <cstddef>
#include <cstdint>
#include <string>

namespace vitscale::kernels::gemm_detail {

static_assert(sizeof(::vitscale::bf16) == 2, "vitscale::bf16 must have the layout of CUDA_R_16BF");

struct cublas_traits {
  static constexpr const char* name = "cuBLAS";
  using status = cublasStatus_t;
  using handle = cublasHandle_t;
  using operation = cublasOperation_t;
  using data_type = cudaDataType_t;
  using dim = int;
  static constexpr operation op_n = CUBLAS_OP_N, op_t = CUBLAS_OP_T;
  static constexpr data_type f32 = CUDA_R_32F, bf16 = CUDA_R_16BF;

  static bool ok(status s) { return s == CUBLAS_STATUS_SUCCESS; }
  static std::string status_text(status s) {
    return std::string(cublasGetStatusName(s)) + " (" + cublasGetStatusString(s) + ")";
  }

  VITSCALE_GEMM_GPU_RUNTIME_TRAITS(cuda)

  static constexpr const char* create_call = "cublasCreate";
  static status create(handle* h) { return cublasCreate(h); }
  static status destroy(handle h) { return cublasDestroy(h); }
  static constexpr const char* set_stream_call = "cublasSetStream";
  static status set_stream(handle h, stream s) { return cublasSetStream(h, s); }

  static constexpr const char* gemm_call = "cublasGemmEx";
  template <class Args>
  static status gemm(const Args& g) {
    return cublasGemmEx(g.h, g.op_a, g.op_b, g.m, g.n, g.k, g.alpha, g.a, g.a_type, g.lda, g.b, g.b_type, g.ldb, g.beta,
                        g.c, g.c_type, g.ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }
  static constexpr const char* gemm_strided_batched_call = "cublasGemmStridedBatchedEx";
  template <class Args>
  static status gemm_strided_batched(const Args& g) {
    return cublasGemmStridedBatchedEx(g.h, g.op_a, g.op_b, g.m, g.n, g.k, g.alpha, g.a, g.a_type, g.lda,
                                      static_cast<long long>(g.stride_a), g.b, g.b_type, g.ldb,
                                      static_cast<long long>(g.stride_b), g.beta, g.c, g.c_type, g.ldc,
                                      static_cast<long long>(g.stride_c), g.batch, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT);
  }
};

}  // namespace vitscale::kernels::gemm_detail

#endif  // VITSCALE_HAVE_CUBLAS
