#pragma once
// gemm_backend::rocblas: the product of vitscale::kernels::gemm on Kokkos' HIP execution space
// (vitscale::hip_space: Kokkos::HIP, or Kokkos::Experimental::HIP before Kokkos 4) through rocBLAS.
// Included by kernels/gemm.hpp when the build has rocBLAS (VITSCALE_HAVE_ROCBLAS) and Kokkos' HIP backend;
// the contract (shapes, epilogue, beta == 0 never reads C) is the one at the top of gemm.hpp.
//
// rocBLAS rather than hipBLAS: Kokkos' HIP backend targets AMD GPUs, where hipBLAS is a thin layer over
// rocBLAS; calling rocBLAS directly needs one library instead of two, and rocblas_gemm_ex takes the
// separate input C and output D, the datatypes and fp32 compute that vitscale needs, with no translation of
// enums in between (hipBLAS' own type enums changed between ROCm 5 and 6).
//
// The mapping is the one of the cuBLAS backend (detail/gemm_cublas.hpp): a row-major matrix is its
// column-major transpose, so Cᵀ = op(B)ᵀ·op(A)ᵀ is computed with B first and A second, each with its op,
// m' = N, n' = M, and the Views' row strides as leading dimensions (windows of larger matrices in place);
// rank-3 Views go through rocblas_gemm_strided_batched_ex with the Views' batch strides. C and D are the
// same matrix. Types: f32 × f32 -> f32 and bf16 × bf16 -> f32 or bf16 (rocblas_datatype_bf16_r), compute
// rocblas_datatype_f32_r, float alpha and beta (host pointer mode, rocBLAS' default). The epilogue is not
// fused (rocBLAS' gemm_ex has none); as on CUDA:
//   epilogue none, supported types   one rocBLAS call with alpha and beta (rocBLAS follows the reference
//                                    BLAS since ROCm 4.1: C is not read at beta 0)
//   K == 0                           only the epilogue pass (gemm_detail::epilogue_pass), on a zero product
//   float C and beta == 0            rocBLAS writes the product into C, the epilogue pass runs in place
//   otherwise                        the product goes to a float workspace [batch, M, N], then the epilogue
//                                    pass writes C (a bf16 C rounded once); f32 × f32 -> bf16 goes this way
// All of it is queued on the space's stream (space.hip_stream()).
//
// Handles: one rocblas_handle per (device, host thread), created on first use and kept; each call binds it
// to the space's stream and makes the space's device current. Workspaces: one per (host thread, stream),
// grown to the largest product seen. Both are released by a Kokkos finalize hook. Failures raise
// vitscale::error naming the call and the status (rocblas_status_to_string).
//
// Not a header to include on its own: it uses gemm.hpp's gemm_detail::problem and epilogue_pass.

#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <hip/hip_runtime_api.h>
// rocBLAS moved its headers into a rocblas/ folder in ROCm 5.2 (the old path warns, then went away).
#if __has_include(<rocblas/rocblas.h>)
#include <rocblas/rocblas.h>
#else
#include <rocblas.h>
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

static_assert(sizeof(::vitscale::bf16) == 2, "vitscale::bf16 must have the layout of rocblas_bfloat16");

inline void rocblas_check(rocblas_status status, const char* call) {
  if (status != rocblas_status_success)
    ::vitscale::detail::fail("gemm (rocBLAS): ", call, " failed with ", rocblas_status_to_string(status));
}

inline void hip_check(hipError_t status, const char* call) {
  if (status != hipSuccess)
    ::vitscale::detail::fail("gemm (rocBLAS): ", call, " failed with ", hipGetErrorName(status), " (",
                             hipGetErrorString(status), ")");
}

// Makes `device` the calling thread's current HIP device for the lifetime of the object.
class hip_device_scope {
 public:
  explicit hip_device_scope(int device) {
    hip_check(hipGetDevice(&saved_), "hipGetDevice");
    if (saved_ != device) hip_check(hipSetDevice(device), "hipSetDevice");
  }
  ~hip_device_scope() {
    int now = saved_;
    if (hipGetDevice(&now) == hipSuccess && now != saved_) (void)hipSetDevice(saved_);
  }
  hip_device_scope(const hip_device_scope&) = delete;
  hip_device_scope& operator=(const hip_device_scope&) = delete;

 private:
  int saved_ = 0;
};

// The handles and workspaces of the process. Thread-safe.
class rocblas_resources {
 public:
  static rocblas_resources& instance() {
    static rocblas_resources* const resources = new rocblas_resources;  // never destroyed: outlives every use
    return *resources;
  }

  // The calling thread's handle on `device` (the current device).
  rocblas_handle handle(int device) {
    const std::lock_guard<std::mutex> lock(mutex_);
    hook();
    const auto key = std::make_pair(device, std::this_thread::get_id());
    auto found = handles_.find(key);
    if (found != handles_.end()) return found->second;
    rocblas_handle h = nullptr;
    rocblas_check(rocblas_create_handle(&h), "rocblas_create_handle");
    handles_.emplace(key, h);
    return h;
  }

  // At least `floats` floats of device memory for the calling thread's work on `stream` (current device).
  float* workspace(hipStream_t stream, std::size_t floats) {
    const std::lock_guard<std::mutex> lock(mutex_);
    hook();
    buffer& b = buffers_[std::make_pair(std::this_thread::get_id(), stream)];
    if (b.floats < floats) {
      if (b.data != nullptr) {
        // Work queued earlier on this stream may still read the old buffer.
        hip_check(hipStreamSynchronize(stream), "hipStreamSynchronize");
        hip_check(hipFree(b.data), "hipFree");
        b = buffer{};
      }
      void* raw = nullptr;
      hip_check(hipMalloc(&raw, floats * sizeof(float)), "hipMalloc (GEMM workspace)");
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

  rocblas_resources() = default;

  // Registers the release with Kokkos::finalize once per Kokkos lifetime. Called with the mutex held.
  void hook() {
    if (hooked_) return;
    Kokkos::push_finalize_hook([] { instance().release(); });
    hooked_ = true;
  }

  void release() {
    const std::lock_guard<std::mutex> lock(mutex_);
    (void)hipDeviceSynchronize();
    for (auto& entry : buffers_) (void)hipFree(entry.second.data);
    for (auto& entry : handles_) (void)rocblas_destroy_handle(entry.second);
    buffers_.clear();
    handles_.clear();
    hooked_ = false;
  }

  std::mutex mutex_;
  std::map<std::pair<int, std::thread::id>, rocblas_handle> handles_;
  std::map<std::pair<std::thread::id, hipStream_t>, buffer> buffers_;
  bool hooked_ = false;
};

template <class T>
constexpr rocblas_datatype rocblas_type() {
  return std::is_same<T, float>::value ? rocblas_datatype_f32_r : rocblas_datatype_bf16_r;
}

inline rocblas_int rocblas_dim(std::int64_t value, const char* what) {
  if (value > INT_MAX)
    ::vitscale::detail::fail("gemm (rocBLAS): ", what, " is ", value,
                             ", past rocBLAS' 32-bit limit; split the product or use gemm_backend::portable");
  return static_cast<rocblas_int>(value);
}

// out = alpha·op(A)·op(B) + beta·out (out: row-major, row stride ldo, batch stride so, type TO), through the
// operand swap described at the top of this file. K > 0.
template <class TA, class TO>
void rocblas_product(rocblas_handle handle, const problem& p, const TA* a, const TA* b, float alpha, float beta,
                     TO* out, std::int64_t ldo, std::int64_t so) {
  const rocblas_operation op_first = p.op_b == gemm_op::n ? rocblas_operation_none : rocblas_operation_transpose;
  const rocblas_operation op_second = p.op_a == gemm_op::n ? rocblas_operation_none : rocblas_operation_transpose;
  const rocblas_int m = rocblas_dim(p.n, "N"), n = rocblas_dim(p.m, "M"), k = rocblas_dim(p.k, "K");
  const rocblas_int ld_first = rocblas_dim(p.ldb, "B's row stride");
  const rocblas_int ld_second = rocblas_dim(p.lda, "A's row stride");
  const rocblas_int ld_out = rocblas_dim(ldo, "C's row stride");
  constexpr rocblas_datatype in_type = rocblas_type<TA>(), out_type = rocblas_type<TO>();
  constexpr rocblas_datatype compute = rocblas_datatype_f32_r;
  if (p.batched) {
    const rocblas_int batch = rocblas_dim(p.batch, "the batch");
    rocblas_check(rocblas_gemm_strided_batched_ex(handle, op_first, op_second, m, n, k, &alpha, b, in_type, ld_first,
                                                  static_cast<rocblas_stride>(p.sb), a, in_type, ld_second,
                                                  static_cast<rocblas_stride>(p.sa), &beta, out, out_type, ld_out,
                                                  static_cast<rocblas_stride>(so), out, out_type, ld_out,
                                                  static_cast<rocblas_stride>(so), batch, compute,
                                                  rocblas_gemm_algo_standard, 0, 0),
                  "rocblas_gemm_strided_batched_ex");
  } else {
    rocblas_check(rocblas_gemm_ex(handle, op_first, op_second, m, n, k, &alpha, b, in_type, ld_first, a, in_type,
                                  ld_second, &beta, out, out_type, ld_out, out, out_type, ld_out, compute,
                                  rocblas_gemm_algo_standard, 0, 0),
                  "rocblas_gemm_ex");
  }
}

template <class TA, class TBias, class TC>
void run_rocblas(const ::vitscale::hip_space& space, const problem& p, const TA* a, const TA* b, const TBias* bias,
                 TC* c) {
  const hip_device_scope device(space.hip_device());
  if (p.k == 0) {  // a zero product: only the epilogue
    epilogue_pass(space, p, static_cast<const float*>(nullptr), 0, 0, bias, c);
    return;
  }
  rocblas_resources& resources = rocblas_resources::instance();
  const hipStream_t stream = space.hip_stream();
  const rocblas_handle handle = resources.handle(space.hip_device());
  rocblas_check(rocblas_set_stream(handle, stream), "rocblas_set_stream");
  // gemm_ex has bf16 × bf16 -> bf16 / f32 and f32 × f32 -> f32 with f32 compute, not f32 × f32 -> bf16.
  constexpr bool direct_types = !(std::is_same<TA, float>::value && std::is_same<TC, ::vitscale::bf16>::value);
  if (p.epilogue == gemm_epilogue::none && direct_types) {
    rocblas_product(handle, p, a, b, p.alpha, p.beta, c, p.ldc, p.sc);
    return;
  }
  if constexpr (std::is_same<TC, float>::value) {
    if (p.beta == 0.0f) {  // the product lands in C, the epilogue runs in place
      rocblas_product(handle, p, a, b, 1.0f, 0.0f, c, p.ldc, p.sc);
      epilogue_pass(space, p, static_cast<const float*>(c), p.ldc, p.sc, bias, c);
      return;
    }
  }
  float* work = resources.workspace(stream, static_cast<std::size_t>(p.batch * p.m * p.n));
  rocblas_product(handle, p, a, b, 1.0f, 0.0f, work, p.n, p.m * p.n);
  epilogue_pass(space, p, static_cast<const float*>(work), p.n, p.m * p.n, bias, c);
}

}  // namespace vitscale::kernels::gemm_detail
