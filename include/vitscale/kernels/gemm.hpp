#pragma once
// General matrix product with a fused epilogue, dispatched to the vendor where the vendor is best.
//
//   C = act(alpha · op(A) · op(B) + bias) + beta · C
//
// on rank-2 Views (A: op(A) is [M, K], B: op(B) is [K, N], C: [M, N]) or, batched, on rank-3 Views whose
// first extent is the batch ([batch, ...] for A, B and C; the bias is shared by the whole batch). op is
// gemm_op::n (X as stored) or gemm_op::t (X transposed, read through strides, never copied).
//
// Epilogue (one definition, identical on every backend):
//   gemm_epilogue::none            C = alpha·AB + beta·C
//   gemm_epilogue::bias            C = alpha·AB + bias + beta·C                   (bias: [N], over columns)
//   gemm_epilogue::bias_gelu_tanh  C = gelu_tanh(alpha·AB + bias) + beta·C        (big_vision's nn.gelu)
//   gemm_epilogue::bias_gelu_erf   C = gelu_erf(alpha·AB + bias) + beta·C         (PyTorch's default GELU)
// The residual term beta·C is added after the activation, so that a residual connection can be fused into
// the product (beta = 1). With beta == 0, C is never read: NaN or garbage in C cannot reach the result.
//
// Types: A and B both float or both vitscale::bf16; C float or vitscale::bf16; the bias float or bf16.
// Every path multiplies exactly (bf16 × bf16 is exact in float) and accumulates in float; a bf16 C is
// rounded once, after the epilogue.
//
// Rows must be contiguous (LayoutRight, or a LayoutStride subview whose last stride is 1): the row stride
// is the leading dimension, so submatrices work without copies.
//
// Backends, chosen by a tag that defaults to gemm_backend::automatic:
//   onednn    oneDNN's matmul primitive (host spaces, VITSCALE_HAVE_ONEDNN). Transposes are memory-descriptor
//             strides, alpha an output scale, beta a sum post-op, GELU an eltwise post-op, bf16 inputs with
//             f32 accumulation. Primitives are created once per (shape, strides, types, ops, epilogue,
//             alpha, beta, threads) and cached for the life of the program (thread-safe); the scratchpad is
//             the calling thread's, grown once, so the same primitive may run on several threads at once.
//             On a CPU where oneDNN has no bf16 matmul (x86 without AVX-512, Arm) bf16 operands are widened
//             to float first (exact; the same float accumulation): bf16 runs everywhere, never an error.
//   eigen     Eigen's GEMM on Eigen::Map of the Views (host spaces). float inputs are mapped without copies;
//             bf16 inputs are converted once per call into float buffers owned by the calling thread, which
//             grow to the largest size seen and are then reused (one-time allocation, never per call after
//             the first at that size). A bf16 C, or an epilogue together with beta != 0, goes through a
//             float buffer of the same kind before the epilogue pass.
//   portable  a Kokkos TeamPolicy kernel for any execution space: tiles of A and B in team scratch (converted
//             to float there), register blocks of C in each thread, the epilogue fused in the store.
//   cublas    cuBLAS on Kokkos::Cuda (VITSCALE_HAVE_CUBLAS; detail/gemm_cublas.hpp): cublasGemmEx, or
//             cublasGemmStridedBatchedEx for rank-3 Views, fp32 compute; the epilogue, where it is not the
//             identity, is a Kokkos kernel on the same stream (see that header for why not cuBLASLt).
//   rocblas   rocBLAS on Kokkos' HIP space (VITSCALE_HAVE_ROCBLAS; detail/gemm_rocblas.hpp): rocblas_gemm_ex
//             or rocblas_gemm_strided_batched_ex, fp32 compute, the same epilogue kernel.
//   automatic Serial/OpenMP: onednn where available, else eigen; Cuda: cublas where available; HIP: rocblas
//             where available; any other space: portable (gemm_detail::resolve_backend).
//
// Threads on the host. oneDNN and Eigen here run on OpenMP threads, not on Kokkos' thread pool. They are
// told the space's concurrency through the calling thread's OpenMP thread count (omp_set_num_threads,
// restored afterwards), so that Kokkos::Serial really runs on one thread and Kokkos::OpenMP on its own
// number of threads. A build without OpenMP (_OPENMP undefined) leaves the vendor's own threading alone.
//
// Determinism: on the host every backend computes each element of C in an order that depends only on the
// shapes and the thread count (no atomics), so the same inputs and thread count give bit-identical C. The
// portable kernel's order depends on the shapes only. Kernels do not fence, except where a host library
// must see finished inputs: the oneDNN and Eigen paths fence `space` before they read (they run after any
// work queued on it) and return with C written. The cuBLAS and rocBLAS paths are asynchronous like the
// portable kernel: everything is queued on the space's stream and C is ready after space.fence().

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/views.hpp>

// GCC 12 reports Eigen's AVX-512 GEMM kernels as reading an uninitialised register (_mm512_undefined_ps
// used on purpose as a don't-care operand); the warning is a false positive and -Werror would stop users.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#if defined(VITSCALE_HAVE_ONEDNN) && VITSCALE_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#define VITSCALE_GEMM_ONEDNN 1
#else
#define VITSCALE_GEMM_ONEDNN 0
#endif

#if defined(_OPENMP)
#include <omp.h>
#endif

// The vendor BLAS of the GPU spaces, only where the build found them (CMake defines the macros).
#if defined(VITSCALE_HAVE_CUBLAS) && VITSCALE_HAVE_CUBLAS && defined(KOKKOS_ENABLE_CUDA)
#define VITSCALE_GEMM_CUBLAS 1
#else
#define VITSCALE_GEMM_CUBLAS 0
#endif
#if defined(VITSCALE_HAVE_ROCBLAS) && VITSCALE_HAVE_ROCBLAS && defined(KOKKOS_ENABLE_HIP)
#define VITSCALE_GEMM_ROCBLAS 1
#else
#define VITSCALE_GEMM_ROCBLAS 0
#endif

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace vitscale::kernels {

// op(X) = X (n) or X transposed (t).
enum class gemm_op : unsigned char { n, t };

// What happens to alpha·op(A)·op(B) before beta·C is added (see the top of this file).
enum class gemm_epilogue : unsigned char { none, bias, bias_gelu_tanh, bias_gelu_erf };

// Backend tags: empty types, so that a backend that cannot run on a space fails to compile.
namespace gemm_backend {
struct automatic {};
struct onednn {};
struct eigen {};
struct portable {};
struct cublas {};
struct rocblas {};
}  // namespace gemm_backend

// True when this build can use oneDNN (gemm_backend::onednn compiles).
inline constexpr bool gemm_has_onednn = VITSCALE_GEMM_ONEDNN != 0;
// True when this build can use cuBLAS on Kokkos::Cuda / rocBLAS on Kokkos' HIP space.
inline constexpr bool gemm_has_cublas = VITSCALE_GEMM_CUBLAS != 0;
inline constexpr bool gemm_has_rocblas = VITSCALE_GEMM_ROCBLAS != 0;

namespace gemm_detail {

template <class T>
constexpr bool is_storage = std::is_same<T, float>::value || std::is_same<T, ::vitscale::bf16>::value;

// The problem after the Views are checked: raw pointers and element strides.
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

template <class ExecSpace>
struct is_host_blas_space : std::false_type {};
#if defined(KOKKOS_ENABLE_SERIAL)
template <>
struct is_host_blas_space<Kokkos::Serial> : std::true_type {};
#endif
#if defined(KOKKOS_ENABLE_OPENMP)
template <>
struct is_host_blas_space<Kokkos::OpenMP> : std::true_type {};
#endif

template <class ExecSpace>
struct is_cuda_space : std::false_type {};
#if defined(KOKKOS_ENABLE_CUDA)
template <>
struct is_cuda_space<Kokkos::Cuda> : std::true_type {};
#endif
template <class ExecSpace>
struct is_hip_space : std::false_type {};
#if defined(KOKKOS_ENABLE_HIP)
template <>
struct is_hip_space<::vitscale::hip_space> : std::true_type {};
#endif

// gemm_backend::automatic, resolved at compile time: the vendor of the space where this build has it.
template <class ExecSpace, class Backend>
struct resolve_backend {
  using type = Backend;
};
template <class ExecSpace>
struct resolve_backend<ExecSpace, gemm_backend::automatic> {
  using host_vendor = std::conditional_t<gemm_has_onednn, gemm_backend::onednn, gemm_backend::eigen>;
  using type = std::conditional_t<
      is_host_blas_space<ExecSpace>::value, host_vendor,
      std::conditional_t<gemm_has_cublas && is_cuda_space<ExecSpace>::value, gemm_backend::cublas,
                         std::conditional_t<gemm_has_rocblas && is_hip_space<ExecSpace>::value, gemm_backend::rocblas,
                                            gemm_backend::portable>>>;
};

// Per-thread float buffers that grow to the largest request and are then reused (see the file's top).
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

// ---------------------------------------------------------------------------------------------- Eigen

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

// --------------------------------------------------------------------------------------------- oneDNN

#if VITSCALE_GEMM_ONEDNN

template <class T>
constexpr dnnl::memory::data_type onednn_type() {
  return std::is_same<T, float>::value ? dnnl::memory::data_type::f32 : dnnl::memory::data_type::bf16;
}

struct onednn_key {
  std::array<std::int64_t, 20> v;
  bool operator==(const onednn_key& o) const { return v == o.v; }
};
struct onednn_key_hash {
  std::size_t operator()(const onednn_key& k) const {
    std::uint64_t h = 1469598103934665603ull;
    for (std::int64_t x : k.v) h = (h ^ static_cast<std::uint64_t>(x)) * 1099511628211ull;
    return static_cast<std::size_t>(h);
  }
};
struct onednn_entry {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, bias, c, scratch;
};

inline dnnl::engine& onednn_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Row-major [rows, cols] (or [batch, rows, cols]) read as op(X): transposition swaps the strides.
inline dnnl::memory::desc onednn_desc(const problem& p, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                      std::int64_t batch_stride, bool transposed, dnnl::memory::data_type type) {
  using dims = dnnl::memory::dims;
  const std::int64_t row_stride = transposed ? 1 : ld, col_stride = transposed ? ld : 1;
  if (p.batched) return dnnl::memory::desc(dims{p.batch, rows, cols}, type, dims{batch_stride, row_stride, col_stride});
  return dnnl::memory::desc(dims{rows, cols}, type, dims{row_stride, col_stride});
}

inline const onednn_entry& onednn_primitive(const problem& p, dnnl::memory::data_type in_type,
                                            dnnl::memory::data_type bias_type, dnnl::memory::data_type out_type,
                                            bool has_bias, int threads) {
  const onednn_key key{{p.batch,
                        p.m,
                        p.n,
                        p.k,
                        p.lda,
                        p.ldb,
                        p.ldc,
                        p.sa,
                        p.sb,
                        p.sc,
                        static_cast<int>(p.op_a),
                        static_cast<int>(p.op_b),
                        static_cast<int>(in_type),
                        static_cast<int>(out_type),
                        has_bias ? static_cast<int>(bias_type) : -1,
                        static_cast<int>(p.epilogue),
                        static_cast<std::int64_t>(::vitscale::bit_cast<std::uint32_t>(p.alpha)),
                        static_cast<std::int64_t>(::vitscale::bit_cast<std::uint32_t>(p.beta)),
                        threads,
                        p.batched ? 1 : 0}};
  static std::mutex mutex;
  static std::unordered_map<onednn_key, onednn_entry, onednn_key_hash> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(key);
  if (found != cache.end()) return found->second;  // node-based map: references survive rehashing

  using dims = dnnl::memory::dims;
  onednn_entry e;
  e.a = onednn_desc(p, p.m, p.k, p.lda, p.sa, p.op_a == gemm_op::t, in_type);
  e.b = onednn_desc(p, p.k, p.n, p.ldb, p.sb, p.op_b == gemm_op::t, in_type);
  e.c = p.batched ? dnnl::memory::desc(dims{p.batch, p.m, p.n}, out_type, dims{p.sc, p.ldc, 1})
                  : dnnl::memory::desc(dims{p.m, p.n}, out_type, dims{p.ldc, 1});
  if (has_bias) {
    e.bias = p.batched ? dnnl::memory::desc(dims{1, 1, p.n}, bias_type, dims{p.n, p.n, 1})
                       : dnnl::memory::desc(dims{1, p.n}, bias_type, dims{p.n, 1});
  }
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per-thread scratchpad: concurrent calls are safe
  // oneDNN scales the bias together with the product (dst = scale·(AB + bias)); ours is not scaled, so
  // with a bias and alpha != 1 the bias goes in as a binary post-op after the scale instead.
  const bool bias_as_post_op = has_bias && p.alpha != 1.0f;
  if (p.alpha != 1.0f) attr.set_output_scales(0, {p.alpha});
  dnnl::post_ops ops;
  if (bias_as_post_op) ops.append_binary(dnnl::algorithm::binary_add, e.bias);
  if (p.epilogue == gemm_epilogue::bias_gelu_tanh)
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_tanh, 0.f, 0.f);
  if (p.epilogue == gemm_epilogue::bias_gelu_erf) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
  if (p.beta != 0.0f) ops.append_sum(p.beta);  // after the activation: C = act(...) + beta·C
  attr.set_post_ops(ops);
  try {
    const dnnl::memory::desc no_bias;
    const dnnl::matmul::desc desc(e.a, e.b, has_bias && !bias_as_post_op ? e.bias : no_bias, e.c);
    const dnnl::matmul::primitive_desc pd(desc, attr, onednn_engine());
    e.scratch = pd.scratchpad_desc();
    e.primitive = dnnl::matmul(pd);
  } catch (const dnnl::error& err) {
    ::vitscale::detail::fail("gemm: oneDNN cannot build a matmul for [", p.batch, "] ", p.m, "x", p.k, "x", p.n, " (",
                             err.what(), "); use gemm_backend::eigen or gemm_backend::portable");
  }
  return cache.emplace(key, std::move(e)).first->second;
}

// Whether oneDNN runs a bf16 matmul on this CPU: oneDNN 2.x needs AVX-512 (avx512_core, where bf16 is
// emulated, or avx512_core_bf16); on AVX2-only x86 and on Arm it builds no bf16 primitive. Read once, after
// ONEDNN_MAX_CPU_ISA has capped the ISA (so a capped run takes the same path as a machine without AVX-512).
// Whether oneDNN's effective ISA (after ONEDNN_MAX_CPU_ISA) includes `isa`; oneDNN's ISA values are nested bit
// sets, each containing the ones below it. Always false off x86, where the x86 ISA names mean nothing.
inline bool onednn_isa_has(dnnl::cpu_isa isa) {
#if defined(__x86_64__) || defined(_M_X64)
  const unsigned have = static_cast<unsigned>(dnnl::get_effective_cpu_isa()), want = static_cast<unsigned>(isa);
  return (have & want) == want;
#else
  (void)isa;
  return false;
#endif
}

inline bool onednn_has_bf16_matmul() {
  static const bool has = onednn_isa_has(dnnl::cpu_isa::avx512_core);
  return has;
}

template <class ExecSpace, class TA, class TBias, class TC>
void run_onednn(const ExecSpace& space, const problem& p, const TA* a, const TA* b, const TBias* bias, TC* c) {
  if constexpr (std::is_same<TA, ::vitscale::bf16>::value) {
    if (!onednn_has_bf16_matmul()) {
      // No bf16 matmul on this CPU: the operands (and a bf16 bias) are widened to float, exactly, and oneDNN
      // multiplies in float with the same float accumulation. The float call fences before oneDNN reads.
      problem wide = p;
      const float* af;
      const float* bf;
      widen_operands(space, wide, a, b, 3, 4, af, bf);
      if constexpr (std::is_same<TBias, ::vitscale::bf16>::value) {
        float* biasw = nullptr;
        if (bias != nullptr) {
          biasw = thread_buffer(1, static_cast<std::size_t>(p.n));
          widen(space, bias, 1, 1, p.n, p.n, p.n, biasw);
        }
        run_onednn(space, wide, af, bf, static_cast<const float*>(biasw), c);
      } else {
        run_onednn(space, wide, af, bf, bias, c);
      }
      return;
    }
  }
  if constexpr (std::is_same<TA, float>::value && std::is_same<TC, ::vitscale::bf16>::value) {
    // oneDNN has no f32 × f32 -> bf16 matmul: the product and the activation go to a float buffer, and a
    // second pass adds beta·C and rounds once.
    problem to_float = p;
    to_float.beta = 0.0f;
    to_float.ldc = p.n;
    to_float.sc = p.m * p.n;
    float* t = thread_buffer(0, static_cast<std::size_t>(p.batch * p.m * p.n));
    run_onednn(space, to_float, a, b, bias, t);
    problem finish = p;
    finish.alpha = 1.0f;
    finish.epilogue = gemm_epilogue::none;
    for (std::int64_t item = 0; item < p.batch; ++item)
      host_epilogue(space, finish, t + item * p.m * p.n, p.n, static_cast<const TBias*>(nullptr), c + item * p.sc);
    space.fence();
    return;
  }
  space.fence();
  const int threads = space.concurrency();
  const host_threads_scope scope(threads);
  const bool has_bias = bias != nullptr;
  const onednn_entry& e =
      onednn_primitive(p, onednn_type<TA>(), onednn_type<TBias>(), onednn_type<TC>(), has_bias, threads);
  dnnl::engine& engine = onednn_engine();
  // oneDNN takes non-const handles; it never writes to its inputs.
  auto in = [](const void* ptr) { return const_cast<void*>(ptr); };
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::memory(e.a, engine, in(a))},
                                             {DNNL_ARG_WEIGHTS, dnnl::memory(e.b, engine, in(b))},
                                             {DNNL_ARG_DST, dnnl::memory(e.c, engine, c)}};
  if (has_bias) {
    const int slot = p.alpha != 1.0f ? (DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1) : DNNL_ARG_BIAS;
    args.emplace(slot, dnnl::memory(e.bias, engine, in(bias)));
  }
  const std::size_t scratch_bytes = e.scratch.get_size();
  if (scratch_bytes > 0) {
    float* scratch = thread_buffer(2, (scratch_bytes + sizeof(float) - 1) / sizeof(float) + 16);
    args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(e.scratch, engine, scratch));
  }
  dnnl::stream stream(engine);
  e.primitive.execute(stream, args);
  stream.wait();
}

#endif  // VITSCALE_GEMM_ONEDNN

}  // namespace gemm_detail
}  // namespace vitscale::kernels

#if VITSCALE_GEMM_CUBLAS
#include <vitscale/kernels/detail/gemm_cublas.hpp>
#endif
#if VITSCALE_GEMM_ROCBLAS
#include <vitscale/kernels/detail/gemm_rocblas.hpp>
#endif

namespace vitscale::kernels {
namespace gemm_detail {

// ------------------------------------------------------------------------------------- portable kernel

// Tile sizes: BM×BN of C per team, BK of the inner dimension per step, MR×NR registers per thread.
// On the host a team is one thread that walks all its register blocks: 6 rows × 32 floats is 12 zmm (or 24
// ymm) accumulators fed by 6 broadcasts and 2 (4) loads per k; the packed tiles (96 KB of A, 256 KB of B)
// stay in L2 and are reused by 8 and 16 register blocks. On devices one register block per thread.
template <class ExecSpace, bool Host = std::is_same<typename ExecSpace::memory_space, Kokkos::HostSpace>::value>
struct portable_tiles {
  static constexpr int bm = 96, bn = 256, bk = 256, mr = 6, nr = 32, team = 1;
};
template <class ExecSpace>
struct portable_tiles<ExecSpace, false> {
  static constexpr int bm = 64, bn = 64, bk = 16, mr = 4, nr = 4, team = (bm / mr) * (bn / nr);
};

// Team scratch holds, per k step, op(A)'s tile as MR-row panels ([bm/mr][bk][mr]) and op(B)'s as NR-column
// panels ([bn/nr][bk][nr]), both converted to float, so that a register block reads two contiguous streams;
// plus the float accumulators of the whole C tile ([bm][bn]) between k steps.
template <class ExecSpace, class TA, class TBias, class TC>
struct portable_kernel {
  using tiles = portable_tiles<ExecSpace>;
  using member = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  static constexpr int bm = tiles::bm, bn = tiles::bn, bk = tiles::bk, mr = tiles::mr, nr = tiles::nr;
  static_assert(bm % mr == 0 && bn % nr == 0, "portable gemm: tiles must hold whole register blocks");
  static constexpr std::size_t scratch_floats = std::size_t(bm) * bn + std::size_t(bk) * (bm + bn);

  problem p;
  const TA* a;
  const TA* b;
  const TBias* bias;
  TC* c;
  std::int64_t tiles_m, tiles_n;

  KOKKOS_INLINE_FUNCTION void operator()(const member& team) const {
    const std::int64_t league = team.league_rank();
    const std::int64_t per_item = tiles_m * tiles_n;
    const std::int64_t item = league / per_item;
    const std::int64_t m0 = (league % per_item) / tiles_n * bm, n0 = (league % per_item) % tiles_n * bn;
    const TA* ai = a + item * p.sa;
    const TA* bi = b + item * p.sb;
    TC* ci = c + item * p.sc;
    float* cs = static_cast<float*>(team.team_scratch(0).get_shmem(sizeof(float) * scratch_floats));
    float* as = cs + bm * bn;
    float* bs = as + bk * bm;
    const int rows = static_cast<int>(p.m - m0 < bm ? p.m - m0 : bm);
    const int cols = static_cast<int>(p.n - n0 < bn ? p.n - n0 : bn);
    // Only register blocks that touch C are computed; the rows and columns they cover past C are zeros.
    const int panels_m = (rows + mr - 1) / mr, panels_n = (cols + nr - 1) / nr;
    const int rows_padded = panels_m * mr, cols_padded = panels_n * nr;

    if (p.k == 0) {
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, bm * bn), [&](int i) { cs[i] = 0.0f; });
    }
    for (std::int64_t k0 = 0; k0 < p.k; k0 += bk) {
      const int kl = static_cast<int>(p.k - k0 < bk ? p.k - k0 : bk);
      if (p.op_a == gemm_op::n) {  // stored rows are rows of op(A): read along k
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows_padded), [&](int i) {
          float* dst = as + (i / mr) * bk * mr + i % mr;
          if (i < rows) {
            const TA* src = ai + (m0 + i) * p.lda + k0;
            for (int kk = 0; kk < kl; ++kk) dst[kk * mr] = static_cast<float>(src[kk]);
          } else {
            for (int kk = 0; kk < kl; ++kk) dst[kk * mr] = 0.0f;
          }
        });
      } else {  // stored rows are columns of op(A): read along m
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kl), [&](int kk) {
          const TA* src = ai + (k0 + kk) * p.lda + m0;
          for (int i = 0; i < rows_padded; ++i)
            as[(i / mr) * bk * mr + kk * mr + i % mr] = i < rows ? static_cast<float>(src[i]) : 0.0f;
        });
      }
      if (p.op_b == gemm_op::n) {  // stored rows are rows of op(B): contiguous runs of nr
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kl), [&](int kk) {
          const TA* src = bi + (k0 + kk) * p.ldb + n0;
          for (int jb = 0; jb < panels_n; ++jb) {
            float* dst = bs + (jb * bk + kk) * nr;
            const TA* s = src + jb * nr;
            if ((jb + 1) * nr <= cols) {
              for (int j = 0; j < nr; ++j) dst[j] = static_cast<float>(s[j]);
            } else {
              for (int j = 0; j < nr; ++j) dst[j] = jb * nr + j < cols ? static_cast<float>(s[j]) : 0.0f;
            }
          }
        });
      } else {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, cols_padded), [&](int j) {
          float* dst = bs + (j / nr) * bk * nr + j % nr;
          if (j < cols) {
            const TA* src = bi + (n0 + j) * p.ldb + k0;
            for (int kk = 0; kk < kl; ++kk) dst[kk * nr] = static_cast<float>(src[kk]);
          } else {
            for (int kk = 0; kk < kl; ++kk) dst[kk * nr] = 0.0f;
          }
        });
      }
      team.team_barrier();
      const bool first = k0 == 0;
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, panels_m * panels_n), [&](int blk) {
        const int ib = blk % panels_m, jb = blk / panels_m;  // consecutive blocks share a B panel
        const int i0 = ib * mr, j0 = jb * nr;
        float acc[mr][nr];
        for (int i = 0; i < mr; ++i)
          for (int j = 0; j < nr; ++j) acc[i][j] = first ? 0.0f : cs[(i0 + i) * bn + j0 + j];
        const float* ap = as + ib * bk * mr;
        const float* bp = bs + jb * bk * nr;
        for (int kk = 0; kk < kl; ++kk) {
          for (int i = 0; i < mr; ++i) {
            const float av = ap[kk * mr + i];
            for (int j = 0; j < nr; ++j) acc[i][j] = gemm_detail::fma(av, bp[kk * nr + j], acc[i][j]);
          }
        }
        for (int i = 0; i < mr; ++i)
          for (int j = 0; j < nr; ++j) cs[(i0 + i) * bn + j0 + j] = acc[i][j];
      });
      team.team_barrier();
    }
    // Epilogue, fused in the store; only the part of the tile inside C is written.
    const float alpha = p.alpha, beta = p.beta;
    const gemm_epilogue ep = p.epilogue;
    const std::int64_t ldc = p.ldc;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](int i) {
      TC* out = ci + (m0 + i) * ldc + n0;
      const float* acc = cs + i * bn;
      for (int j = 0; j < cols; ++j) {
        float v = alpha * acc[j];
        if (bias) v += static_cast<float>(bias[n0 + j]);
        v = activate(ep, v);
        if (beta != 0.0f) v += beta * static_cast<float>(out[j]);
        out[j] = v;
      }
    });
  }
};

template <class ExecSpace, class TA, class TBias, class TC>
void run_portable(const ExecSpace& space, const problem& p, const TA* a, const TA* b, const TBias* bias, TC* c) {
  using kernel = portable_kernel<ExecSpace, TA, TBias, TC>;
  const std::int64_t tiles_m = (p.m + kernel::bm - 1) / kernel::bm, tiles_n = (p.n + kernel::bn - 1) / kernel::bn;
  const std::int64_t league = p.batch * tiles_m * tiles_n;
  if (league > 2147483647)
    ::vitscale::detail::fail("gemm: the portable kernel supports at most 2^31 - 1 tiles, the problem has ", league);
  const kernel functor{p, a, b, bias, c, tiles_m, tiles_n};
  Kokkos::TeamPolicy<ExecSpace> policy(space, static_cast<int>(league), portable_tiles<ExecSpace>::team);
  Kokkos::parallel_for("vitscale::gemm::portable",
                       policy.set_scratch_size(0, Kokkos::PerTeam(sizeof(float) * kernel::scratch_floats)), functor);
}

// ----------------------------------------------------------------------------------------- front end

template <class View>
constexpr bool is_rank = View::rank == 2 || View::rank == 3;

template <class ExecSpace, class Backend, class AView, class BView, class BiasView, class CView>
void dispatch(const ExecSpace& space, gemm_op op_a, gemm_op op_b, float alpha, const AView& a, const BView& b,
              float beta, const CView& c, gemm_epilogue epilogue, const BiasView* bias) {
  using ta = std::remove_const_t<typename AView::value_type>;
  using tb = std::remove_const_t<typename BView::value_type>;
  using tc = typename CView::value_type;
  using tbias = std::remove_const_t<typename BiasView::value_type>;
  static_assert(is_storage<ta> && std::is_same<ta, tb>::value,
                "gemm: A and B must both hold float or both vitscale::bf16");
  static_assert(is_storage<tc>, "gemm: C must hold (non-const) float or vitscale::bf16");
  static_assert(is_storage<tbias>, "gemm: the bias must hold float or vitscale::bf16");
  static_assert(int(AView::rank) == int(BView::rank) && int(AView::rank) == int(CView::rank) && is_rank<AView>,
                "gemm: A, B and C must all be rank 2 (a product) or all rank 3 ([batch, rows, cols])");
  static_assert(BiasView::rank == 1, "gemm: the bias must be a rank-1 View [N]");
  static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename AView::memory_space>::accessible &&
                    Kokkos::SpaceAccessibility<ExecSpace, typename BView::memory_space>::accessible &&
                    Kokkos::SpaceAccessibility<ExecSpace, typename CView::memory_space>::accessible &&
                    Kokkos::SpaceAccessibility<ExecSpace, typename BiasView::memory_space>::accessible,
                "gemm: every View must be accessible from the execution space");
  using backend = typename resolve_backend<ExecSpace, Backend>::type;
  constexpr bool host_library =
      std::is_same<backend, gemm_backend::onednn>::value || std::is_same<backend, gemm_backend::eigen>::value;
  static_assert(!host_library || is_host_blas_space<ExecSpace>::value,
                "gemm: the oneDNN and Eigen backends run on Kokkos::Serial and Kokkos::OpenMP only");
  static_assert(!std::is_same<backend, gemm_backend::onednn>::value || gemm_has_onednn,
                "gemm: gemm_backend::onednn needs a build with oneDNN (VITSCALE_HAVE_ONEDNN)");
  static_assert(!std::is_same<backend, gemm_backend::cublas>::value || gemm_has_cublas,
                "gemm: gemm_backend::cublas needs a build with cuBLAS (VITSCALE_HAVE_CUBLAS) and Kokkos' CUDA backend");
  static_assert(!std::is_same<backend, gemm_backend::cublas>::value || is_cuda_space<ExecSpace>::value,
                "gemm: gemm_backend::cublas runs on Kokkos::Cuda only");
  static_assert(!std::is_same<backend, gemm_backend::rocblas>::value || gemm_has_rocblas,
                "gemm: gemm_backend::rocblas needs a build with rocBLAS (VITSCALE_HAVE_ROCBLAS) and Kokkos' HIP "
                "backend");
  static_assert(!std::is_same<backend, gemm_backend::rocblas>::value || is_hip_space<ExecSpace>::value,
                "gemm: gemm_backend::rocblas runs on Kokkos' HIP execution space only");

  constexpr int r = AView::rank == 3 ? 1 : 0;  // index of the row extent
  ::vitscale::detail::require_contiguous_rows("gemm", "A", a);
  ::vitscale::detail::require_contiguous_rows("gemm", "B", b);
  ::vitscale::detail::require_contiguous_rows("gemm", "C", c);
  problem p;
  p.batched = r == 1;
  p.op_a = op_a;
  p.op_b = op_b;
  p.alpha = alpha;
  p.beta = beta;
  p.epilogue = epilogue;
  const auto ext = [](const auto& v, int i) { return static_cast<std::int64_t>(v.extent(static_cast<unsigned>(i))); };
  p.m = op_a == gemm_op::n ? ext(a, r) : ext(a, r + 1);
  p.k = op_a == gemm_op::n ? ext(a, r + 1) : ext(a, r);
  const std::int64_t kb = op_b == gemm_op::n ? ext(b, r) : ext(b, r + 1);
  p.n = op_b == gemm_op::n ? ext(b, r + 1) : ext(b, r);
  if (kb != p.k)
    ::vitscale::detail::fail("gemm: inner dimensions differ: op(A) is [", p.m, ", ", p.k, "] (A is ",
                             ::vitscale::detail::extents_string(a), ") but op(B) is [", kb, ", ", p.n, "] (B is ",
                             ::vitscale::detail::extents_string(b), ")");
  if (r == 1) {
    p.batch = ext(a, 0);
    if (ext(b, 0) != p.batch)
      ::vitscale::detail::fail("gemm: A and B have different batch sizes: A is ", ::vitscale::detail::extents_string(a),
                               ", B is ", ::vitscale::detail::extents_string(b));
    ::vitscale::detail::require_extents("gemm", "C", c, {std::size_t(p.batch), std::size_t(p.m), std::size_t(p.n)});
    p.sa = static_cast<std::int64_t>(a.stride(0));
    p.sb = static_cast<std::int64_t>(b.stride(0));
    p.sc = static_cast<std::int64_t>(c.stride(0));
  } else {
    ::vitscale::detail::require_extents("gemm", "C", c, {std::size_t(p.m), std::size_t(p.n)});
  }
  p.lda = static_cast<std::int64_t>(a.stride(r));
  p.ldb = static_cast<std::int64_t>(b.stride(r));
  p.ldc = static_cast<std::int64_t>(c.stride(r));
  const tbias* bias_ptr = nullptr;
  if (epilogue != gemm_epilogue::none) {
    if (bias == nullptr || bias->data() == nullptr) {
      if (p.n > 0)
        ::vitscale::detail::fail("gemm: the epilogue adds a bias over columns, but the bias View is empty; expected [",
                                 p.n, "]");
    } else {
      ::vitscale::detail::require_extents("gemm", "bias", *bias, {std::size_t(p.n)});
      if (p.n > 1 && bias->stride(0) != 1)
        ::vitscale::detail::fail("gemm: the bias must be contiguous, its stride is ", bias->stride(0));
      bias_ptr = bias->data();
    }
  }
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  // Row strides of one-row (or one-column) operands are arbitrary in Kokkos; the libraries want them sane.
  p.lda = std::max<std::int64_t>(p.lda, op_a == gemm_op::n ? p.k : p.m);
  p.ldb = std::max<std::int64_t>(p.ldb, op_b == gemm_op::n ? p.n : p.k);
  p.ldc = std::max<std::int64_t>(p.ldc, p.n);

  const ta* a_ptr = a.data();
  const ta* b_ptr = b.data();
  tc* c_ptr = c.data();
  if constexpr (std::is_same<backend, gemm_backend::portable>::value) {
    run_portable(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);
  } else if constexpr (std::is_same<backend, gemm_backend::eigen>::value) {
    run_eigen(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);
  } else if constexpr (std::is_same<backend, gemm_backend::cublas>::value) {
#if VITSCALE_GEMM_CUBLAS
    run_cublas(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);
#endif
  } else if constexpr (std::is_same<backend, gemm_backend::rocblas>::value) {
#if VITSCALE_GEMM_ROCBLAS
    run_rocblas(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);
#endif
  } else {
#if VITSCALE_GEMM_ONEDNN
    if (p.k == 0) {
      run_eigen(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);  // oneDNN refuses empty inner dimensions
    } else {
      run_onednn(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);
    }
#endif
  }
}

}  // namespace gemm_detail

// Whether bf16 GEMM operands run natively on this host: oneDNN on a CPU with AVX-512 bf16 dot products (or
// AMX). Elsewhere they are widened to float before the product (oneDNN on AVX-512 without bf16 emulates it),
// so a bf16 policy saves memory but not time there; the examples pick fp32 then (benchmarks/RESULTS.md).
inline bool host_bf16_gemm_is_native() {
#if VITSCALE_GEMM_ONEDNN
  static const bool native = gemm_detail::onednn_isa_has(dnnl::cpu_isa::avx512_core_bf16);
  return native;
#else
  return false;
#endif
}

// C = alpha·op(A)·op(B) + beta·C. A: op(A) [M, K], B: op(B) [K, N], C: [M, N]; or all three rank 3 with a
// leading batch extent. With beta == 0, C is not read.
template <class ExecSpace, class AView, class BView, class CView, class Backend = gemm_backend::automatic>
void gemm(const ExecSpace& space, gemm_op op_a, gemm_op op_b, float alpha, const AView& a, const BView& b, float beta,
          const CView& c, Backend = {}) {
  const Kokkos::View<const float*, typename CView::memory_space> no_bias;
  gemm_detail::dispatch<ExecSpace, Backend>(space, op_a, op_b, alpha, a, b, beta, c, gemm_epilogue::none, &no_bias);
}

// C = act(alpha·op(A)·op(B) + bias) + beta·C. Shapes as above, bias: [N] (shared by a batch).
template <class ExecSpace, class AView, class BView, class CView, class BiasView,
          class Backend = gemm_backend::automatic>
void gemm(const ExecSpace& space, gemm_op op_a, gemm_op op_b, float alpha, const AView& a, const BView& b, float beta,
          const CView& c, gemm_epilogue epilogue, const BiasView& bias, Backend = {}) {
  gemm_detail::dispatch<ExecSpace, Backend>(space, op_a, op_b, alpha, a, b, beta, c, epilogue, &bias);
}

}  // namespace vitscale::kernels
