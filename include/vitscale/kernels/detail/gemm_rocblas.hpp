#pragma once
// gemm_backend::rocblas: vitscale::kernels::gemm on Kokkos' HIP execution space (vitscale::hip_space:
// Kokkos::HIP, or Kokkos::Experimental::HIP before Kokkos 4) through rocBLAS — the traits of the shared
// vendor-BLAS backend (detail/gemm_vendor_blas.hpp, which describes the mapping, the epilogue, the handles and
// the workspaces). VITSCALE_GEMM_ROCBLAS is 1 where the build has rocBLAS (VITSCALE_HAVE_ROCBLAS) and Kokkos'
// HIP backend; the traits need only rocBLAS and compile wherever VITSCALE_HAVE_ROCBLAS is set.
//
// rocblas_gemm_ex and rocblas_gemm_strided_batched_ex with C and D the same matrix, rocblas_datatype_f32_r
// compute, f32 / bf16 storage (rocblas_datatype_bf16_r), float alpha and beta (host pointer mode, rocBLAS'
// default). rocBLAS follows the reference BLAS since ROCm 4.1: C is not read at beta 0. Its gemm_ex has no
// fused epilogue, so the epilogue is vitscale's own Kokkos kernel on the same stream, as on CUDA.
//
// rocBLAS rather than hipBLAS: Kokkos' HIP backend targets AMD GPUs, where hipBLAS is a thin layer over
// rocBLAS; calling rocBLAS directly needs one library instead of two, and rocblas_gemm_ex takes the
// separate input C and output D, the datatypes and fp32 compute that vitscale needs, with no translation of
// enums in between (hipBLAS' own type enums changed between ROCm 5 and 6).

#if defined(VITSCALE_HAVE_ROCBLAS) && VITSCALE_HAVE_ROCBLAS && defined(KOKKOS_ENABLE_HIP)
#define VITSCALE_GEMM_ROCBLAS 1
#else
#define VITSCALE_GEMM_ROCBLAS 0
#endif

#if defined(VITSCALE_HAVE_ROCBLAS) && VITSCALE_HAVE_ROCBLAS

#include <vitscale/core/bf16.hpp>
#include <vitscale/kernels/detail/gemm_vendor_blas.hpp>

#include <hip/hip_runtime_api.h>
// rocBLAS moved its headers into a rocblas/ folder in ROCm 5.2 (the old path warns, then went away).
#if __has_include(<rocblas/rocblas.h>)
#include <rocblas/rocblas.h>
#else
#include <rocblas.h>
#endif

#include <cstddef>
#include <cstdint>
#include <string>

namespace vitscale::kernels::gemm_detail {

static_assert(sizeof(::vitscale::bf16) == 2, "vitscale::bf16 must have the layout of rocblas_bfloat16");

struct rocblas_traits {
  static constexpr const char* name = "rocBLAS";
  using status = rocblas_status;
  using handle = rocblas_handle;
  using operation = rocblas_operation;
  using data_type = rocblas_datatype;
  using dim = rocblas_int;
  static constexpr operation op_n = rocblas_operation_none, op_t = rocblas_operation_transpose;
  static constexpr data_type f32 = rocblas_datatype_f32_r, bf16 = rocblas_datatype_bf16_r;

  static bool ok(status s) { return s == rocblas_status_success; }
  static std::string status_text(status s) { return rocblas_status_to_string(s); }

  VITSCALE_GEMM_GPU_RUNTIME_TRAITS(hip)

  static constexpr const char* create_call = "rocblas_create_handle";
  static status create(handle* h) { return rocblas_create_handle(h); }
  static status destroy(handle h) { return rocblas_destroy_handle(h); }
  static constexpr const char* set_stream_call = "rocblas_set_stream";
  static status set_stream(handle h, stream s) { return rocblas_set_stream(h, s); }

  static constexpr const char* gemm_call = "rocblas_gemm_ex";
  template <class Args>
  static status gemm(const Args& g) {  // C is both the input C and the output D
    return rocblas_gemm_ex(g.h, g.op_a, g.op_b, g.m, g.n, g.k, g.alpha, g.a, g.a_type, g.lda, g.b, g.b_type, g.ldb,
                           g.beta, g.c, g.c_type, g.ldc, g.c, g.c_type, g.ldc, rocblas_datatype_f32_r,
                           rocblas_gemm_algo_standard, 0, 0);
  }
  static constexpr const char* gemm_strided_batched_call = "rocblas_gemm_strided_batched_ex";
  template <class Args>
  static status gemm_strided_batched(const Args& g) {
    const auto stride = [](std::int64_t x) { return static_cast<rocblas_stride>(x); };
    return rocblas_gemm_strided_batched_ex(g.h, g.op_a, g.op_b, g.m, g.n, g.k, g.alpha, g.a, g.a_type, g.lda,
                                           stride(g.stride_a), g.b, g.b_type, g.ldb, stride(g.stride_b), g.beta, g.c,
                                           g.c_type, g.ldc, stride(g.stride_c), g.c, g.c_type, g.ldc,
                                           stride(g.stride_c), g.batch, rocblas_datatype_f32_r,
                                           rocblas_gemm_algo_standard, 0, 0);
  }
};

}  // namespace vitscale::kernels::gemm_detail

#endif  // VITSCALE_HAVE_ROCBLAS
