#pragma once
// gemm_backend::cublas: the product of vitscale::kernels::gemm on Kokkos::Cuda through cuBLAS. Included by
// kernels/gemm.hpp when the build has cuBLAS (VITSCALE_HAVE_CUBLAS) and Kokkos' CUDA backend; the contract
// (shapes, epilogue, beta == 0 never reads C) is the one at the top of gemm.hpp.
//
// Row-major to column-major. A row-major [M, N] matrix with row stride ld is, read by a column-major BLAS,
// its transpose [N, M] with leading dimension ld. So C = op(A)·op(B) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ:
// cuBLAS gets B first and A second, each with its own op (n -> CUBLAS_OP_N, t -> CUBLAS_OP_T), m' = N,
// n' = M, k' = K, and the Views' row strides as leading dimensions, so windows of larger matrices are used
// in place. Rank-3 Views go through cublasGemmStridedBatchedEx with the Views' batch strides.
//
// Types: float × float -> float, bf16 × bf16 -> float or bf16 (CUDA_R_16BF), always CUBLAS_COMPUTE_32F with
// float alpha and beta; float × float -> bf16, which cuBLAS does not offer, goes through a float workspace.
//
// Why cublasGemmEx and not cuBLASLt's fused epilogues: cuBLASLt computes act(alpha·AB + beta·C + bias),
// with beta·C inside the activation, whereas vitscale's contract adds beta·C after it (the fused residual);
// cuBLASLt also has no erf GELU, and its GELU epilogues are not specified to the rounding of ours. Only the
// plain bias (with any beta) and GELU with beta == 0 would fuse exactly, so for one code path that is the
// same on every backend the product goes to cuBLAS and the epilogue is vitscale's own Kokkos kernel
// (gemm_detail::epilogue_pass) queued on the same stream:
//   epilogue none, supported types   one cuBLAS call with alpha and beta (cuBLAS does not read C at beta 0)
//   K == 0                           only the epilogue pass, on a zero product
//   float C and beta == 0            cuBLAS writes the product into C, the epilogue pass runs in place
//   otherwise                        cuBLAS writes the product into a float workspace [batch, M, N], the
//                                    epilogue pass reads it and writes C (a bf16 C rounded once)
//
// Handles: one cublasHandle_t per (device, host thread), as cuBLAS recommends, created on first use and
// kept; each call binds it to the execution space instance's stream (space.cuda_stream()) and makes the
// space's device current for the call. Workspaces: one per (host thread, stream), device memory that grows
// to the largest product seen and is then reused (stream order makes reuse by the next call safe; the
// thread in the key keeps two host threads queuing on one stream from sharing it). Handles and workspaces
// are released by a Kokkos finalize hook, so Kokkos::finalize leaves nothing behind.
//
// Failures (a cuBLAS status other than success, a CUDA error, a dimension past cuBLAS' 32-bit int) raise
// vitscale::error naming the call and the status (cublasGetStatusName).
//
// Not a header to include on its own: it uses gemm.hpp's gemm_detail::problem and epilogue_pass.

#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#if !defined(CUBLAS_VERSION) || CUBLAS_VERSION < 110402
#error "vitscale's cuBLAS GEMM needs cuBLAS 11.4.2 (CUDA 11.4) or newer: cublasGetStatusName, CUBLAS_COMPUTE_32F"
#endif

#include <climits>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

namespace vitscale::kernels::gemm_detail {

static_assert(sizeof(::vitscale::bf16) == 2, "vitscale::bf16 must have the layout of CUDA_R_16BF");

inline void cublas_check(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS)
    ::vitscale::detail::fail("gemm (cuBLAS): ", call, " failed with ", cublasGetStatusName(status), " (",
                             cublasGetStatusString(status), ")");
}

inline void cuda_check(cudaError_t status, const char* call) {
  if (status != cudaSuccess)
    ::vitscale::detail::fail("gemm (cuBLAS): ", call, " failed with ", cudaGetErrorName(status), " (",
                             cudaGetErrorString(status), ")");
}

// Makes `device` the calling thread's current CUDA device for the lifetime of the object.
class cuda_device_scope {
 public:
  explicit cuda_device_scope(int device) {
    cuda_check(cudaGetDevice(&saved_), "cudaGetDevice");
    if (saved_ != device) cuda_check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~cuda_device_scope() {
    int now = saved_;
    if (cudaGetDevice(&now) == cudaSuccess && now != saved_) (void)cudaSetDevice(saved_);
  }
  cuda_device_scope(const cuda_device_scope&) = delete;
  cuda_device_scope& operator=(const cuda_device_scope&) = delete;

 private:
  int saved_ = 0;
};

// The handles and workspaces of the process (see the top of this file). Thread-safe.
class cublas_resources {
 public:
  static cublas_resources& instance() {
    static cublas_resources* const resources = new cublas_resources;  // never destroyed: outlives every use
    return *resources;
  }

  // The calling thread's handle on `device` (the current device).
  cublasHandle_t handle(int device) {
    const std::lock_guard<std::mutex> lock(mutex_);
    hook();
    const auto key = std::make_pair(device, std::this_thread::get_id());
    auto found = handles_.find(key);
    if (found != handles_.end()) return found->second;
    cublasHandle_t h = nullptr;
    cublas_check(cublasCreate(&h), "cublasCreate");
    handles_.emplace(key, h);
    return h;
  }

  // At least `floats` floats of device memory for the calling thread's work on `stream` (current device).
  float* workspace(cudaStream_t stream, std::size_t floats) {
    const std::lock_guard<std::mutex> lock(mutex_);
    hook();
    buffer& b = buffers_[std::make_pair(std::this_thread::get_id(), stream)];
    if (b.floats < floats) {
      if (b.data != nullptr) {
        // Work queued earlier on this stream may still read the old buffer.
        cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
        cuda_check(cudaFree(b.data), "cudaFree");
        b = buffer{};
      }
      void* raw = nullptr;
      cuda_check(cudaMalloc(&raw, floats * sizeof(float)), "cudaMalloc (GEMM workspace)");
      b.data = static_cast<float*>(raw);
      b.floats = floats;
    }
    return b.data;
  }

 private:
  struct buffer {
    float* data = nullptr;
    std::size_t floats = 0;
  };

  cublas_resources() = default;

  // Registers the release with Kokkos::finalize once per Kokkos lifetime. Called with the mutex held.
  void hook() {
    if (hooked_) return;
    Kokkos::push_finalize_hook([] { instance().release(); });
    hooked_ = true;
  }

  void release() {
    const std::lock_guard<std::mutex> lock(mutex_);
    (void)cudaDeviceSynchronize();
    for (auto& entry : buffers_) (void)cudaFree(entry.second.data);
    for (auto& entry : handles_) (void)cublasDestroy(entry.second);
    buffers_.clear();
    handles_.clear();
    hooked_ = false;
  }

  std::mutex mutex_;
  std::map<std::pair<int, std::thread::id>, cublasHandle_t> handles_;
  std::map<std::pair<std::thread::id, cudaStream_t>, buffer> buffers_;
  bool hooked_ = false;
};

template <class T>
constexpr cudaDataType_t cublas_type() {
  return std::is_same<T, float>::value ? CUDA_R_32F : CUDA_R_16BF;
}

inline int cublas_int(std::int64_t value, const char* what) {
  if (value > INT_MAX)
    ::vitscale::detail::fail("gemm (cuBLAS): ", what, " is ", value,
                             ", past cuBLAS' 32-bit limit; split the product or use gemm_backend::portable");
  return static_cast<int>(value);
}

// out = alpha·op(A)·op(B) + beta·out (out: row-major, row stride ldo, batch stride so, type TO), through the
// operand swap described at the top of this file. K > 0.
template <class TA, class TO>
void cublas_product(cublasHandle_t handle, const problem& p, const TA* a, const TA* b, float alpha, float beta,
                    TO* out, std::int64_t ldo, std::int64_t so) {
  const cublasOperation_t op_first = p.op_b == gemm_op::n ? CUBLAS_OP_N : CUBLAS_OP_T;
  const cublasOperation_t op_second = p.op_a == gemm_op::n ? CUBLAS_OP_N : CUBLAS_OP_T;
  const int m = cublas_int(p.n, "N"), n = cublas_int(p.m, "M"), k = cublas_int(p.k, "K");
  const int ld_first = cublas_int(p.ldb, "B's row stride"), ld_second = cublas_int(p.lda, "A's row stride");
  const int ld_out = cublas_int(ldo, "C's row stride");
  constexpr cudaDataType_t in_type = cublas_type<TA>(), out_type = cublas_type<TO>();
  if (p.batched) {
    const int batch = cublas_int(p.batch, "the batch");
    cublas_check(cublasGemmStridedBatchedEx(handle, op_first, op_second, m, n, k, &alpha, b, in_type, ld_first,
                                            static_cast<long long>(p.sb), a, in_type, ld_second,
                                            static_cast<long long>(p.sa), &beta, out, out_type, ld_out,
                                            static_cast<long long>(so), batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmStridedBatchedEx");
  } else {
    cublas_check(cublasGemmEx(handle, op_first, op_second, m, n, k, &alpha, b, in_type, ld_first, a, in_type,
                              ld_second, &beta, out, out_type, ld_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
  }
}

template <class TA, class TBias, class TC>
void run_cublas(const Kokkos::Cuda& space, const problem& p, const TA* a, const TA* b, const TBias* bias, TC* c) {
  const cuda_device_scope device(space.cuda_device());
  if (p.k == 0) {  // a zero product: only the epilogue (cuBLAS' handling of K == 0 is not needed)
    epilogue_pass(space, p, static_cast<const float*>(nullptr), 0, 0, bias, c);
    return;
  }
  cublas_resources& resources = cublas_resources::instance();
  const cudaStream_t stream = space.cuda_stream();
  const cublasHandle_t handle = resources.handle(space.cuda_device());
  cublas_check(cublasSetStream(handle, stream), "cublasSetStream");
  // cuBLAS' GemmEx has bf16 × bf16 -> bf16 / float and float × float -> float, not float × float -> bf16.
  constexpr bool direct_types = !(std::is_same<TA, float>::value && std::is_same<TC, ::vitscale::bf16>::value);
  if (p.epilogue == gemm_epilogue::none && direct_types) {
    cublas_product(handle, p, a, b, p.alpha, p.beta, c, p.ldc, p.sc);
    return;
  }
  if constexpr (std::is_same<TC, float>::value) {
    if (p.beta == 0.0f) {  // the product lands in C, the epilogue runs in place
      cublas_product(handle, p, a, b, 1.0f, 0.0f, c, p.ldc, p.sc);
      epilogue_pass(space, p, static_cast<const float*>(c), p.ldc, p.sc, bias, c);
      return;
    }
  }
  float* work = resources.workspace(stream, static_cast<std::size_t>(p.batch * p.m * p.n));
  cublas_product(handle, p, a, b, 1.0f, 0.0f, work, p.n, p.m * p.n);
  epilogue_pass(space, p, static_cast<const float*>(work), p.n, p.m * p.n, bias, c);
}

}  // namespace vitscale::kernels::gemm_detail
