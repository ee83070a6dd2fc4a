#pragma once
// The vendor-BLAS backends of gemm (gemm_backend::cublas on Kokkos::Cuda, gemm_backend::rocblas on Kokkos' HIP
// space), written once: vendor_blas<Traits>, where a small traits struct names what differs between vendors
// (detail/gemm_cublas.hpp, detail/gemm_rocblas.hpp; tests/kernels/gemm_vendor_blas.cpp runs this template on
// the host through a mock whose "device BLAS" is a reference loop). The contract (shapes, epilogue, beta == 0
// never reads C) is the one at the top of kernels/gemm.hpp.
//
// Row-major to column-major. A row-major [M, N] matrix with row stride ld is, read by a column-major BLAS,
// its transpose [N, M] with leading dimension ld. So C = op(A)·op(B) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ: the
// BLAS gets B first and A second, each with its own op (n -> no transpose, t -> transpose), m' = N, n' = M,
// k' = K, and the Views' row strides as leading dimensions, so windows of larger matrices are used in place.
// Rank-3 Views go through the strided-batched call with the Views' batch strides.
//
// Types: float × float -> float, bf16 × bf16 -> float or bf16, always fp32 compute with float alpha and beta;
// float × float -> bf16, which neither vendor's GEMM offers, goes through a float workspace. The epilogue is
// vitscale's own Kokkos kernel (epilogue_pass below) queued on the same stream, so that it is the same
// formula as on every other backend (the traits headers say why the vendors' fused epilogues do not fit):
//   epilogue none, supported types   one BLAS call with alpha and beta (neither vendor reads C at beta 0)
//   K == 0                           only the epilogue pass, on a zero product
//   float C and beta == 0            the BLAS writes the product into C, the epilogue pass runs in place
//   otherwise                        the BLAS writes the product into a float workspace [batch, M, N], the
//                                    epilogue pass reads it and writes C (a bf16 C rounded once)
//
// Handles: one per (device, host thread), as the vendors recommend, created on first use and kept; each call
// binds it to the execution space instance's stream and makes the space's device current for the call.
// Workspaces: one per (host thread, stream), device memory that grows to the largest product seen and is then
// reused (stream order makes reuse by the next call safe; the thread in the key keeps two host threads queuing
// on one stream from sharing it). Handles and workspaces are released by a Kokkos finalize hook, so
// Kokkos::finalize leaves nothing behind.
//
// Failures (a BLAS status other than success, a runtime error, a dimension past the BLAS' 32-bit int) raise
// vitscale::error naming the library, the call and the status.
//
// A vendor's traits, all static:
//   name                                    the library in messages ("cuBLAS")
//   status, runtime_status                  the BLAS' and the runtime's result types
//   handle, stream, operation, data_type    the BLAS handle, the runtime's stream, the op and data-type enums
//   dim                                     the BLAS' 32-bit integer
//   op_n, op_t; f32, bf16                   the enum values of gemm_op::n / t and of float / vitscale::bf16
//   ok(status), runtime_ok(runtime_status)  success
//   status_text(status), runtime_text(runtime_status)   what a failure says (after "failed with ")
//   stream_of(space), device_of(space)      the execution-space instance's stream and device
//   get_device(int*), set_device(int), allocate(void**, bytes), deallocate(void*), synchronize(stream),
//   synchronize_device()                    the runtime
//   create(handle*), destroy(handle), set_stream(handle, stream)
//   gemm(args), gemm_strided_batched(args) column-major C = alpha·op(A)·op(B) + beta·C, fp32 compute, C in
//                                           place; args is vendor_blas<Traits>::gemm_args, the BLAS' arguments
//   *_call                                  the vendor's name of each call above, for messages
// The runtime half (runtime_status, stream, runtime_ok, runtime_text, stream_of, device_of and the runtime calls)
// of a GPU vendor's traits is VITSCALE_GEMM_GPU_RUNTIME_TRAITS(cuda) or (hip), below.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/kernels/detail/gemm_problem.hpp>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <type_traits>
#include <string>
#include <utility>

// The runtime half of a GPU vendor's traits, written once for CUDA and HIP from the runtime's prefix (cuda or
// hip): HIP's runtime names its calls, types and Kokkos' accessors of the execution-space instance as CUDA's do,
// with hip for cuda (cudaMalloc / hipMalloc, cudaStream_t / hipStream_t, space.cuda_stream() / hip_stream()).
// A runtime error reads "<name> (<string>)", e.g. "cudaErrorMemoryAllocation (out of memory)".
#define VITSCALE_GEMM_GPU_RUNTIME_TRAITS(rt)                                                        \
  using runtime_status = rt##Error_t;                                                               \
  using stream = rt##Stream_t;                                                                      \
  static bool runtime_ok(runtime_status s) { return s == rt##Success; }                             \
  static std::string runtime_text(runtime_status s) {                                               \
    return std::string(rt##GetErrorName(s)) + " (" + rt##GetErrorString(s) + ")";                   \
  }                                                                                                 \
  template <class Space>                                                                            \
  static stream stream_of(const Space& space) {                                                     \
    return space.rt##_stream();                                                                     \
  }                                                                                                 \
  template <class Space>                                                                            \
  static int device_of(const Space& space) {                                                        \
    return space.rt##_device();                                                                     \
  }                                                                                                 \
  static constexpr const char* get_device_call = #rt "GetDevice";                                   \
  static runtime_status get_device(int* device) { return rt##GetDevice(device); }                   \
  static constexpr const char* set_device_call = #rt "SetDevice";                                   \
  static runtime_status set_device(int device) { return rt##SetDevice(device); }                    \
  static constexpr const char* allocate_call = #rt "Malloc";                                        \
  static runtime_status allocate(void** ptr, std::size_t bytes) { return rt##Malloc(ptr, bytes); }  \
  static constexpr const char* deallocate_call = #rt "Free";                                        \
  static runtime_status deallocate(void* ptr) { return rt##Free(ptr); }                             \
  static constexpr const char* synchronize_call = #rt "StreamSynchronize";                          \
  static runtime_status synchronize(stream s) { return rt##StreamSynchronize(s); }                  \
  static runtime_status synchronize_device() { return rt##DeviceSynchronize(); }

namespace vitscale::kernels::gemm_detail {

// The epilogue as its own pass over [batch, M, N], for the device vendor backends: one element per work item
// (consecutive items along N, so loads and stores coalesce). t is the float product alpha is not yet applied
// to, with row stride ldt and batch stride st; t == nullptr stands for a zero product (K == 0). t may be C
// itself (float C, beta == 0: each item reads its element before writing it). Same formula as the other
// backends: C = act(alpha·t + bias) + beta·C, C read only when beta != 0, a bf16 C rounded once.
template <class ExecSpace, class TBias, class TC>
void epilogue_pass(const ExecSpace& space, const problem& p, const float* t, std::int64_t ldt, std::int64_t st,
                   const TBias* bias, TC* c) {
  const std::int64_t m = p.m, n = p.n, ldc = p.ldc, sc = p.sc;
  const float alpha = p.alpha, beta = p.beta;
  const gemm_epilogue ep = p.epilogue;
  Kokkos::parallel_for(
      "vitscale::gemm::epilogue_pass", Kokkos::RangePolicy<ExecSpace>(space, 0, p.batch * m * n),
      KOKKOS_LAMBDA(std::int64_t e) {
        const std::int64_t j = e % n, row = e / n, i = row % m, item = row / m;
        float v = t ? alpha * t[item * st + i * ldt + j] : 0.0f;
        if (bias) v += static_cast<float>(bias[j]);
        v = activate(ep, v);
        TC* out = c + item * sc + i * ldc + j;
        if (beta != 0.0f) v += beta * static_cast<float>(*out);
        *out = v;
      });
}

// gemm through a vendor BLAS described by Traits (see the top of this file).
template <class Traits>
struct vendor_blas {
  using handle = typename Traits::handle;
  using stream = typename Traits::stream;
  using dim = typename Traits::dim;

  static void check(typename Traits::status status, const char* call) {
    if (!Traits::ok(status))
      ::vitscale::detail::fail("gemm (", Traits::name, "): ", call, " failed with ", Traits::status_text(status));
  }

  static void check_runtime(typename Traits::runtime_status status, const char* call, const char* note = "") {
    if (!Traits::runtime_ok(status))
      ::vitscale::detail::fail("gemm (", Traits::name, "): ", call, note, " failed with ",
                               Traits::runtime_text(status));
  }

  // Makes `device` the calling thread's current device for the lifetime of the object.
  class device_scope {
   public:
    explicit device_scope(int device) {
      check_runtime(Traits::get_device(&saved_), Traits::get_device_call);
      if (saved_ != device) check_runtime(Traits::set_device(device), Traits::set_device_call);
    }
    ~device_scope() {
      int now = saved_;
      if (Traits::runtime_ok(Traits::get_device(&now)) && now != saved_) (void)Traits::set_device(saved_);
    }
    device_scope(const device_scope&) = delete;
    device_scope& operator=(const device_scope&) = delete;

   private:
    int saved_ = 0;
  };

  // The handles and workspaces of the process (see the top of this file). Thread-safe.
  class resources {
   public:
    static resources& instance() {
      static resources* const r = new resources;  // never destroyed: outlives every use
      return *r;
    }

    // The calling thread's handle on `device` (the current device).
    handle get(int device) {
      const std::lock_guard<std::mutex> lock(mutex_);
      hook();
      const auto key = std::make_pair(device, std::this_thread::get_id());
      auto found = handles_.find(key);
      if (found != handles_.end()) return found->second;
      handle h = nullptr;
      check(Traits::create(&h), Traits::create_call);
      handles_.emplace(key, h);
      return h;
    }

    // At least `floats` floats of device memory for the calling thread's work on `s` (current device).
    float* workspace(stream s, std::size_t floats) {
      const std::lock_guard<std::mutex> lock(mutex_);
      hook();
      buffer& b = buffers_[std::make_pair(std::this_thread::get_id(), s)];
      if (b.floats < floats) {
        if (b.data != nullptr) {
          // Work queued earlier on this stream may still read the old buffer.
          check_runtime(Traits::synchronize(s), Traits::synchronize_call);
          check_runtime(Traits::deallocate(b.data), Traits::deallocate_call);
          b = buffer{};
        }
        void* raw = nullptr;
        check_runtime(Traits::allocate(&raw, floats * sizeof(float)), Traits::allocate_call, " (GEMM workspace)");
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

    resources() = default;

    // Registers the release with Kokkos::finalize once per Kokkos lifetime. Called with the mutex held.
    void hook() {
      if (hooked_) return;
      Kokkos::push_finalize_hook([] { instance().release(); });
      hooked_ = true;
    }

    void release() {
      const std::lock_guard<std::mutex> lock(mutex_);
      (void)Traits::synchronize_device();
      for (auto& entry : buffers_) (void)Traits::deallocate(entry.second.data);
      for (auto& entry : handles_) (void)Traits::destroy(entry.second);
      buffers_.clear();
      handles_.clear();
      hooked_ = false;
    }

    std::mutex mutex_;
    std::map<std::pair<int, std::thread::id>, handle> handles_;
    std::map<std::pair<std::thread::id, stream>, buffer> buffers_;
    bool hooked_ = false;
  };

  template <class T>
  static constexpr typename Traits::data_type type() {
    return std::is_same<T, float>::value ? Traits::f32 : Traits::bf16;
  }

  // The arguments of one column-major product as the vendors' GEMMs take them: C = alpha·op(A)·op(B) + beta·C,
  // C read and written in place; the batch strides and the batch for the strided-batched call only.
  struct gemm_args {
    handle h;
    typename Traits::operation op_a, op_b;
    dim m, n, k;
    const float* alpha;
    const void* a;
    typename Traits::data_type a_type;
    dim lda;
    std::int64_t stride_a;
    const void* b;
    typename Traits::data_type b_type;
    dim ldb;
    std::int64_t stride_b;
    const float* beta;
    void* c;
    typename Traits::data_type c_type;
    dim ldc;
    std::int64_t stride_c;
    dim batch;
  };

  static dim to_dim(std::int64_t value, const char* what) {
    if (value > INT_MAX)
      ::vitscale::detail::fail("gemm (", Traits::name, "): ", what, " is ", value, ", past ", Traits::name,
                               "' 32-bit limit; split the product or use gemm_backend::portable");
    return static_cast<dim>(value);
  }

  // out = alpha·op(A)·op(B) + beta·out (out: row-major, row stride ldo, batch stride so, type TO), through the
  // operand swap described at the top of this file. K > 0.
  template <class TA, class TO>
  static void product(handle h, const problem& p, const TA* a, const TA* b, float alpha, float beta, TO* out,
                      std::int64_t ldo, std::int64_t so) {
    const auto op_first = p.op_b == gemm_op::n ? Traits::op_n : Traits::op_t;
    const auto op_second = p.op_a == gemm_op::n ? Traits::op_n : Traits::op_t;
    const dim m = to_dim(p.n, "N"), n = to_dim(p.m, "M"), k = to_dim(p.k, "K");
    const dim ld_first = to_dim(p.ldb, "B's row stride"), ld_second = to_dim(p.lda, "A's row stride");
    const dim ld_out = to_dim(ldo, "C's row stride");
    constexpr typename Traits::data_type in_type = type<TA>(), out_type = type<TO>();
    // B first, A second (see the top of this file).
    gemm_args args{h,  op_first,  op_second, m,    n,     k,   &alpha,   b,      in_type, ld_first, p.sb,
                   a, in_type, ld_second, p.sa, &beta, out, out_type, ld_out, so, 1};
    if (p.batched) {
      args.batch = to_dim(p.batch, "the batch");
      check(Traits::gemm_strided_batched(args), Traits::gemm_strided_batched_call);
    } else {
      check(Traits::gemm(args), Traits::gemm_call);
    }
  }

  // The backend: C = act(alpha·op(A)·op(B) + bias) + beta·C on `space`, queued on its stream.
  template <class ExecSpace, class TA, class TBias, class TC>
  static void run(const ExecSpace& space, const problem& p, const TA* a, const TA* b, const TBias* bias, TC* c) {
    const int dev = Traits::device_of(space);
    const device_scope device(dev);
    if (p.k == 0) {  // a zero product: only the epilogue (the vendor's handling of K == 0 is not needed)
      epilogue_pass(space, p, static_cast<const float*>(nullptr), 0, 0, bias, c);
      return;
    }
    resources& res = resources::instance();
    const stream s = Traits::stream_of(space);
    const handle h = res.get(dev);
    check(Traits::set_stream(h, s), Traits::set_stream_call);
    // The vendors' GEMMs have bf16 × bf16 -> bf16 / float and float × float -> float, not float × float -> bf16.
    constexpr bool direct_types = !(std::is_same<TA, float>::value && std::is_same<TC, ::vitscale::bf16>::value);
    if (p.epilogue == gemm_epilogue::none && direct_types) {
      product(h, p, a, b, p.alpha, p.beta, c, p.ldc, p.sc);
      return;
    }
    if constexpr (std::is_same<TC, float>::value) {
      if (p.beta == 0.0f) {  // the product lands in C, the epilogue runs in place
        product(h, p, a, b, 1.0f, 0.0f, c, p.ldc, p.sc);
        epilogue_pass(space, p, static_cast<const float*>(c), p.ldc, p.sc, bias, c);
        return;
      }
    }
    float* work = res.workspace(s, static_cast<std::size_t>(p.batch * p.m * p.n));
    product(h, p, a, b, 1.0f, 0.0f, work, p.n, p.m * p.n);
    epilogue_pass(space, p, static_cast<const float*>(work), p.n, p.m * p.n, bias, c);
  }
};

}  // namespace vitscale::kernels::gemm_detail
