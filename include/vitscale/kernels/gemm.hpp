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
// Backends, chosen by a tag that defaults to gemm_backend::automatic, each in its own header under
// kernels/detail/ (this file is the front end: the API, the argument checks and the choice of backend):
//   onednn    oneDNN's matmul primitive (host spaces, VITSCALE_HAVE_ONEDNN; gemm_onednn.hpp). Transposes are
//             memory-descriptor strides, alpha an output scale, beta a sum post-op, GELU an eltwise post-op, bf16
//             inputs with f32 accumulation. Primitives are created once per (shape, strides, types, ops,
//             epilogue, alpha, beta, threads) and cached for the life of the program (thread-safe); the
//             scratchpad is the calling thread's, grown once, so the same primitive may run on several threads
//             at once. On a CPU where oneDNN has no bf16 matmul (x86 without AVX-512, Arm) bf16 operands are
//             widened to float first (exact; the same float accumulation): bf16 runs everywhere, never an error.
//   eigen     Eigen's GEMM on Eigen::Map of the Views (host spaces; gemm_eigen.hpp). float inputs are mapped
//             without copies; bf16 inputs are converted once per call into float buffers owned by the calling
//             thread, which grow to the largest size seen and are then reused (one-time allocation, never per
//             call after the first at that size). A bf16 C, or an epilogue together with beta != 0, goes
//             through a float buffer of the same kind before the epilogue pass.
//   portable  a Kokkos TeamPolicy kernel for any execution space (gemm_portable.hpp): tiles of A and B in team
//             scratch (converted to float there), register blocks of C in each thread, the epilogue fused in
//             the store.
//   cublas    cuBLAS on Kokkos::Cuda (VITSCALE_HAVE_CUBLAS): cublasGemmEx, or cublasGemmStridedBatchedEx for
//             rank-3 Views, fp32 compute; the epilogue, where it is not the identity, is a Kokkos kernel on the
//             same stream (gemm_cublas.hpp says why not cuBLASLt).
//   rocblas   rocBLAS on Kokkos' HIP space (VITSCALE_HAVE_ROCBLAS): rocblas_gemm_ex or
//             rocblas_gemm_strided_batched_ex, fp32 compute, the same epilogue kernel.
//             Both are one template, gemm_vendor_blas.hpp, and a traits struct per vendor (gemm_cublas.hpp,
//             gemm_rocblas.hpp).
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

#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/views.hpp>
#include <vitscale/kernels/detail/gemm_problem.hpp>

// The backends; each header brings its own library only where the build has it, and defines
// VITSCALE_GEMM_ONEDNN / VITSCALE_GEMM_CUBLAS / VITSCALE_GEMM_ROCBLAS to 1 where that backend can run.
#include <vitscale/kernels/detail/gemm_eigen.hpp>
#include <vitscale/kernels/detail/gemm_onednn.hpp>
#include <vitscale/kernels/detail/gemm_portable.hpp>
#include <vitscale/kernels/detail/gemm_cublas.hpp>
#include <vitscale/kernels/detail/gemm_rocblas.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vitscale::kernels {

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

// ----------------------------------------------------------------------------------------- front end

template <class View>
constexpr bool is_rank = View::rank == 2 || View::rank == 3;

// The run-time checks of the Views (dispatch has the compile-time ones) and the problem they describe, with
// the bias' data in bias_ptr (null without an epilogue or with an empty bias). False when C is empty: nothing
// to compute. The row strides are then made ones the libraries accept.
template <class AView, class BView, class CView, class BiasView, class TBias>
bool describe(gemm_op op_a, gemm_op op_b, float alpha, const AView& a, const BView& b, float beta, const CView& c,
              gemm_epilogue epilogue, const BiasView* bias, problem& p, const TBias*& bias_ptr) {
  constexpr int r = AView::rank == 3 ? 1 : 0;  // index of the row extent
  ::vitscale::detail::require_contiguous_rows("gemm", "A", a);
  ::vitscale::detail::require_contiguous_rows("gemm", "B", b);
  ::vitscale::detail::require_contiguous_rows("gemm", "C", c);
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
  if (p.batch == 0 || p.m == 0 || p.n == 0) return false;
  // Row strides of one-row (or one-column) operands are arbitrary in Kokkos; the libraries want them sane.
  p.lda = std::max<std::int64_t>(p.lda, op_a == gemm_op::n ? p.k : p.m);
  p.ldb = std::max<std::int64_t>(p.ldb, op_b == gemm_op::n ? p.n : p.k);
  p.ldc = std::max<std::int64_t>(p.ldc, p.n);
  return true;
}

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

  problem p;
  const tbias* bias_ptr = nullptr;
  if (!describe(op_a, op_b, alpha, a, b, beta, c, epilogue, bias, p, bias_ptr)) return;

  const ta* a_ptr = a.data();
  const ta* b_ptr = b.data();
  tc* c_ptr = c.data();
  if constexpr (std::is_same<backend, gemm_backend::portable>::value) {
    run_portable(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);
  } else if constexpr (std::is_same<backend, gemm_backend::eigen>::value) {
    run_eigen(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);
  } else if constexpr (std::is_same<backend, gemm_backend::cublas>::value) {
#if VITSCALE_GEMM_CUBLAS
    vendor_blas<cublas_traits>::run(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);
#endif
  } else if constexpr (std::is_same<backend, gemm_backend::rocblas>::value) {
#if VITSCALE_GEMM_ROCBLAS
    vendor_blas<rocblas_traits>::run(space, p, a_ptr, b_ptr, bias_ptr, c_ptr);
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
