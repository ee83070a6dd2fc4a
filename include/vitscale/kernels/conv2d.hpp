#pragma once
// 2-D convolution, forward and backward (NFNet's convolutions: "ConvNets match ViTs at scale", issue 23).
//
//   forward           y  = conv(x, w) + bias + beta·y                x: [B, H, W, Cin] -> y: [B, Ho, Wo, Cout]
//   backward_data     dx = conv_transpose(dy, w) + beta·dx          dy: [B, Ho, Wo, Cout] -> dx: [B, H, W, Cin]
//   backward_weights  dw = Σ_{b,ho,wo} dy ⊗ x-patch + beta·dw       -> dw: [Cout, Cin/groups, KH, KW]
//                     dbias = Σ_{b,ho,wo} dy + beta·dbias            -> dbias: [Cout] (an empty View: skipped)
//
// Activations are NHWC (channels last, as every other vitscale activation); weights are PyTorch's / timm's OIHW,
// [Cout, Cin/groups, KH, KW], so that timm's safetensors load without transposes. Output channel co belongs to
// group co / (Cout/groups) and sees the input channels of that group. The geometry (conv2d_geometry) holds the
// kernel, the stride, the padding of each side (TensorFlow's "SAME" padding is asymmetric: conv2d_same) and the
// groups. There is no dilation: every NFNet convolution has dilation 1.
// The output extents are floor((in + pad_before + pad_after − kernel) / stride) + 1 (conv2d_geometry::out_h/out_w).
// With beta == 0 the output is never read: NaN or garbage there cannot reach the result. beta = 1 accumulates
// (a gradient added into a gradient arena).
//
// Types: x, w and dy all float or all vitscale::bf16; every output (y, dx, dw, dbias) float or bf16, and the
// bias float or bf16, independently. Products are exact in float and the sums are taken in float; a bf16 output is
// rounded once, at the end. double storage (all Views double) runs on the portable backend only, for gradient
// checks by finite differences.
//
// Every View may be strided (a subview), the strides are read at run time; the oneDNN backend is fastest with
// contiguous (LayoutRight) Views.
//
// Backends, chosen by a tag that defaults to conv_backend::automatic, each in its own header under kernels/detail/
// (this file is the front end: the API, the argument checks, the choice of backend):
//   onednn    oneDNN's convolution primitives (forward, backward_data, backward_weights) on Kokkos::Serial and
//             Kokkos::OpenMP, where the build has oneDNN (VITSCALE_HAVE_ONEDNN; conv2d_onednn.hpp). Activations
//             are given to oneDNN in place (NHWC memory descriptors with the Views' strides); the weights are
//             reordered into the layout oneDNN picks, and dw comes back through that layout. Primitives are built
//             once per problem and cached (thread-safe); the scratchpad and the buffers are the calling thread's.
//             Where oneDNN has no bf16 convolution on this CPU (x86 without AVX-512, Arm), bf16 operands are
//             widened to float first (exact; the same float sums): bf16 runs everywhere, never an error.
//             Memory: the calling thread's buffers grow once to the largest size seen and are reused: oneDNN's
//             weights and scratchpad; the widened operands where bf16 is widened; a float copy of the output where
//             oneDNN cannot write it with beta (backward_data with beta != 0, a bf16 output from float inputs) —
//             as large as dx, so a caller short of memory accumulates with beta = 0 and a separate add.
//   portable  plain Kokkos kernels for any execution space (conv2d_portable.hpp): a team per output row (per
//             input pixel for backward_data, per (co, kh, kw) for backward_weights), threads over the pixels and
//             channels, each element one thread's sum; on the host, loops that vectorize (5-8 GFLOP/s on 2 cores
//             of this machine, where oneDNN does 25-75: a fallback, and the reference of the GPU path).
//   automatic Serial/OpenMP: onednn where available, else portable; any other space (or double storage): portable.
// cuDNN / MIOpen backends do not exist yet: on a GPU the portable kernels run.
//
// Threads: oneDNN runs on OpenMP threads and is told the space's concurrency, as gemm does (kernels/gemm.hpp).
//
// Determinism: no atomics anywhere. The portable kernels sum every element in a fixed order that depends only on
// the shapes and on whether the space's teams have one thread (hosts) or more (devices): bit-identical run to run
// and across thread counts. oneDNN's order depends on the shapes, the thread count
// and the CPU's instruction set: the same inputs and thread count give bit-identical outputs. The oneDNN path
// fences `space` before it reads and returns with the outputs written; the portable kernels are asynchronous
// (the outputs are ready after space.fence()).
//
// Errors (vitscale::error, with a sentence): a non-positive kernel or stride, a negative padding, groups below 1,
// Cin or Cout not divisible by groups, an input smaller than the kernel, and any View whose extents disagree with
// the others and the geometry.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/views.hpp>
#include <vitscale/kernels/detail/conv2d_problem.hpp>

// The backends; conv2d_onednn.hpp defines VITSCALE_CONV2D_ONEDNN to 1 where oneDNN can run, else to 0.
#include <vitscale/kernels/detail/conv2d_onednn.hpp>
#include <vitscale/kernels/detail/conv2d_portable.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vitscale::kernels {

// Backend tags: empty types, so that a backend that cannot run on a space fails to compile.
namespace conv_backend {
struct automatic {};
struct onednn {};
struct portable {};
}  // namespace conv_backend

// True when this build can use oneDNN's convolutions (conv_backend::onednn compiles).
inline constexpr bool conv2d_has_onednn = VITSCALE_CONV2D_ONEDNN != 0;

namespace conv2d_detail {

template <class ExecSpace>
struct is_host_library_space : std::false_type {};
#if defined(KOKKOS_ENABLE_SERIAL)
template <>
struct is_host_library_space<Kokkos::Serial> : std::true_type {};
#endif
#if defined(KOKKOS_ENABLE_OPENMP)
template <>
struct is_host_library_space<Kokkos::OpenMP> : std::true_type {};
#endif

template <class T>
constexpr bool is_input_type = std::is_same<T, float>::value || std::is_same<T, ::vitscale::bf16>::value ||
                               std::is_same<T, double>::value;

// conv_backend::automatic resolved at compile time: oneDNN on the host where the build has it (not for double).
template <class ExecSpace, class Backend, class TI>
struct resolve_backend {
  using type = Backend;
};
template <class ExecSpace, class TI>
struct resolve_backend<ExecSpace, conv_backend::automatic, TI> {
  using type = std::conditional_t<conv2d_has_onednn && is_host_library_space<ExecSpace>::value &&
                                      !std::is_same<TI, double>::value,
                                  conv_backend::onednn, conv_backend::portable>;
};

// The compile-time rules every entry point shares: TI is the input type (x, w, dy), TO one output's type.
template <class ExecSpace, class Backend, class TI, class TO>
constexpr bool check_types() {
  static_assert(is_input_type<TI>, "conv2d: x, w and dy must hold float, vitscale::bf16 or double");
  static_assert(is_input_type<TO>, "conv2d: outputs and the bias must hold float, vitscale::bf16 or double");
  static_assert(std::is_same<TI, double>::value == std::is_same<TO, double>::value,
                "conv2d: double storage (for gradient checks) must be used for every View or none");
  using backend = typename resolve_backend<ExecSpace, Backend, TI>::type;
  constexpr bool onednn = std::is_same<backend, conv_backend::onednn>::value;
  static_assert(!onednn || conv2d_has_onednn,
                "conv2d: conv_backend::onednn needs a build with oneDNN (VITSCALE_HAVE_ONEDNN)");
  static_assert(!onednn || is_host_library_space<ExecSpace>::value,
                "conv2d: conv_backend::onednn runs on Kokkos::Serial and Kokkos::OpenMP only");
  static_assert(!onednn || !std::is_same<TI, double>::value,
                "conv2d: double storage runs on conv_backend::portable only");
  return true;
}

template <class ExecSpace, class View>
constexpr bool accessible = Kokkos::SpaceAccessibility<ExecSpace, typename View::memory_space>::accessible;

inline void check_geometry(const char* function, const conv2d_geometry& g) {
  using ::vitscale::detail::fail;
  if (g.kernel_h < 1 || g.kernel_w < 1)
    fail(function, ": the geometry's kernel is ", g.kernel_h, "x", g.kernel_w, ", expected positive extents");
  if (g.stride_h < 1 || g.stride_w < 1)
    fail(function, ": the geometry's stride is ", g.stride_h, "x", g.stride_w, ", expected positive strides");
  if (g.pad_top < 0 || g.pad_bottom < 0 || g.pad_left < 0 || g.pad_right < 0)
    fail(function, ": the geometry's padding (top, bottom, left, right) is (", g.pad_top, ", ", g.pad_bottom, ", ",
         g.pad_left, ", ", g.pad_right, "), expected no negative padding");
  if (g.groups < 1) fail(function, ": the geometry has ", g.groups, " groups, expected at least 1");
}

template <class View>
void copy_strides(const View& v, std::int64_t (&s)[4]) {
  for (unsigned r = 0; r < 4; ++r) s[r] = static_cast<std::int64_t>(v.stride(r));
}

// The problem of one call, checked: the activation `act` ([B, H, W, Cin]: x or dx) fixes B, H, W and Cin, `cout`
// is given by the caller (from w, dw or dy), and the weights `wv` (w or dw) and the output-shaped `out` (y or dy)
// must agree with them and the geometry.
template <class Act, class WV, class Out>
problem describe(const char* function, const conv2d_geometry& g, float beta, const char* act_name, const Act& act,
                 const char* w_name, const WV& wv, const char* out_name, const Out& out, std::size_t cout) {
  using ::vitscale::detail::fail;
  check_geometry(function, g);
  problem p;
  p.geom = g;
  p.beta = beta;
  p.batch = static_cast<std::int64_t>(act.extent(0));
  p.in_h = static_cast<std::int64_t>(act.extent(1));
  p.in_w = static_cast<std::int64_t>(act.extent(2));
  p.cin = static_cast<std::int64_t>(act.extent(3));
  p.cout = static_cast<std::int64_t>(cout);
  if (p.cin % g.groups != 0)
    fail(function, ": ", act_name, " has ", p.cin, " channels (", act_name, " is ",
         ::vitscale::detail::extents_string(act), "), which ", g.groups, " groups do not divide");
  if (p.cout % g.groups != 0)
    fail(function, ": there are ", p.cout, " output channels, which ", g.groups, " groups do not divide");
  p.out_h = g.out_h(static_cast<int>(p.in_h));
  p.out_w = g.out_w(static_cast<int>(p.in_w));
  if (p.out_h < 1 || p.out_w < 1)
    fail(function, ": ", act_name, " is ", ::vitscale::detail::extents_string(act), ", its ", p.in_h, "x", p.in_w,
         " image padded by (", g.pad_top, ", ", g.pad_bottom, ", ", g.pad_left, ", ", g.pad_right,
         ") is smaller than the ", g.kernel_h, "x", g.kernel_w, " kernel");
  const auto u = [](std::int64_t v) { return static_cast<std::size_t>(v); };
  ::vitscale::detail::require_extents(function, w_name, wv,
                                      {u(p.cout), u(p.cin / g.groups), u(g.kernel_h), u(g.kernel_w)});
  ::vitscale::detail::require_extents(function, out_name, out, {u(p.batch), u(p.out_h), u(p.out_w), u(p.cout)});
  copy_strides(act, p.sx);
  copy_strides(wv, p.sw);
  copy_strides(out, p.sy);
  p.team_loops = portable_team_loop_requests() > 0;
  return p;
}

// The optional rank-1 [Cout] View (bias, dbias): null when empty, else checked.
template <class V>
auto optional_vector(const char* function, const char* name, const V& v, std::int64_t cout,
                     std::int64_t& stride) -> decltype(v.data()) {
  stride = 1;
  if (v.extent(0) == 0 && cout > 0) return nullptr;
  ::vitscale::detail::require_extents(function, name, v, {static_cast<std::size_t>(cout)});
  stride = static_cast<std::int64_t>(v.stride(0));
  return v.data();
}

template <class Backend>
constexpr bool uses_onednn = std::is_same<Backend, conv_backend::onednn>::value;

// oneDNN refuses empty problems; the portable kernels handle them (an empty sum is zero).
inline bool is_empty(const problem& p) { return p.batch == 0 || p.cin == 0 || p.cout == 0; }

}  // namespace conv2d_detail

// x: [B, H, W, Cin], w: [Cout, Cin/groups, KH, KW], bias: [Cout] or empty -> y: [B, Ho, Wo, Cout]
// y = conv(x, w) + bias + beta·y
template <class Backend = conv_backend::automatic, class ExecSpace, class X, class W, class Bias, class Y>
void conv2d_forward(const ExecSpace& space, const conv2d_geometry& geom, const X& x, const W& w, const Bias& bias,
                    const Y& y, float beta = 0) {
  using TI = std::remove_const_t<typename X::value_type>;
  using TO = typename Y::value_type;
  using TB = std::remove_const_t<typename Bias::value_type>;
  static_assert(X::rank == 4 && W::rank == 4 && Y::rank == 4 && Bias::rank == 1,
                "conv2d_forward: x, w and y must be rank-4 Views and the bias a rank-1 View");
  static_assert(std::is_same<TI, std::remove_const_t<typename W::value_type>>::value,
                "conv2d_forward: x and w must hold the same type");
  static_assert(!std::is_const<TO>::value, "conv2d_forward: y must be writable");
  static_assert(conv2d_detail::check_types<ExecSpace, Backend, TI, TO>() &&
                conv2d_detail::check_types<ExecSpace, Backend, TI, TB>());
  static_assert(conv2d_detail::accessible<ExecSpace, X> && conv2d_detail::accessible<ExecSpace, W> &&
                    conv2d_detail::accessible<ExecSpace, Bias> && conv2d_detail::accessible<ExecSpace, Y>,
                "conv2d_forward: every View must be accessible from the execution space");
  using backend = typename conv2d_detail::resolve_backend<ExecSpace, Backend, TI>::type;
  const conv2d_detail::problem p =
      conv2d_detail::describe("conv2d_forward", geom, beta, "x", x, "w", w, "y", y, w.extent(0));
  std::int64_t bias_stride = 1;
  const TB* b = conv2d_detail::optional_vector("conv2d_forward", "bias", bias, p.cout, bias_stride);
  if constexpr (conv2d_detail::uses_onednn<backend>) {
#if VITSCALE_CONV2D_ONEDNN
    if (!conv2d_detail::is_empty(p)) {
      conv2d_detail::onednn_forward(space, p, x.data(), w.data(), b, bias_stride, y.data());
      return;
    }
#endif
  }
  conv2d_detail::portable_forward(space, p, x.data(), w.data(), b, bias_stride, y.data());
}

// dy: [B, Ho, Wo, Cout], w: [Cout, Cin/groups, KH, KW] -> dx: [B, H, W, Cin]
// dx = conv_transpose(dy, w) + beta·dx  (the gradient of conv2d_forward with respect to x)
template <class Backend = conv_backend::automatic, class ExecSpace, class DY, class W, class DX>
void conv2d_backward_data(const ExecSpace& space, const conv2d_geometry& geom, const DY& dy, const W& w,
                          const DX& dx, float beta = 0) {
  using TI = std::remove_const_t<typename DY::value_type>;
  using TO = typename DX::value_type;
  static_assert(DY::rank == 4 && W::rank == 4 && DX::rank == 4, "conv2d_backward_data: dy, w and dx must be rank 4");
  static_assert(std::is_same<TI, std::remove_const_t<typename W::value_type>>::value,
                "conv2d_backward_data: dy and w must hold the same type");
  static_assert(!std::is_const<TO>::value, "conv2d_backward_data: dx must be writable");
  static_assert(conv2d_detail::check_types<ExecSpace, Backend, TI, TO>());
  static_assert(conv2d_detail::accessible<ExecSpace, DY> && conv2d_detail::accessible<ExecSpace, W> &&
                    conv2d_detail::accessible<ExecSpace, DX>,
                "conv2d_backward_data: every View must be accessible from the execution space");
  using backend = typename conv2d_detail::resolve_backend<ExecSpace, Backend, TI>::type;
  const conv2d_detail::problem p =
      conv2d_detail::describe("conv2d_backward_data", geom, beta, "dx", dx, "w", w, "dy", dy, w.extent(0));
  if constexpr (conv2d_detail::uses_onednn<backend>) {
#if VITSCALE_CONV2D_ONEDNN
    if (!conv2d_detail::is_empty(p)) {
      conv2d_detail::onednn_backward_data(space, p, dy.data(), w.data(), dx.data());
      return;
    }
#endif
  }
  conv2d_detail::portable_backward_data(space, p, dy.data(), w.data(), dx.data());
}

// x: [B, H, W, Cin], dy: [B, Ho, Wo, Cout] -> dw: [Cout, Cin/groups, KH, KW], dbias: [Cout] or empty (skipped)
// dw = Σ_{b,ho,wo} dy(b,ho,wo,co)·x(b, ho·sh − pt + kh, wo·sw − pl + kw, ci) + beta·dw;  dbias = Σ dy + beta·dbias
template <class Backend = conv_backend::automatic, class ExecSpace, class X, class DY, class DW, class DBias>
void conv2d_backward_weights(const ExecSpace& space, const conv2d_geometry& geom, const X& x, const DY& dy,
                             const DW& dw, const DBias& dbias, float beta = 0) {
  using TI = std::remove_const_t<typename X::value_type>;
  using TW = typename DW::value_type;
  using TB = typename DBias::value_type;
  static_assert(X::rank == 4 && DY::rank == 4 && DW::rank == 4 && DBias::rank == 1,
                "conv2d_backward_weights: x, dy and dw must be rank-4 Views and dbias a rank-1 View");
  static_assert(std::is_same<TI, std::remove_const_t<typename DY::value_type>>::value,
                "conv2d_backward_weights: x and dy must hold the same type");
  static_assert(!std::is_const<TW>::value && !std::is_const<TB>::value,
                "conv2d_backward_weights: dw and dbias must be writable");
  static_assert(conv2d_detail::check_types<ExecSpace, Backend, TI, TW>() &&
                conv2d_detail::check_types<ExecSpace, Backend, TI, TB>());
  static_assert(conv2d_detail::accessible<ExecSpace, X> && conv2d_detail::accessible<ExecSpace, DY> &&
                    conv2d_detail::accessible<ExecSpace, DW> && conv2d_detail::accessible<ExecSpace, DBias>,
                "conv2d_backward_weights: every View must be accessible from the execution space");
  using backend = typename conv2d_detail::resolve_backend<ExecSpace, Backend, TI>::type;
  const conv2d_detail::problem p =
      conv2d_detail::describe("conv2d_backward_weights", geom, beta, "x", x, "dw", dw, "dy", dy, dy.extent(3));
  std::int64_t dbias_stride = 1;
  TB* db = conv2d_detail::optional_vector("conv2d_backward_weights", "dbias", dbias, p.cout, dbias_stride);
  if constexpr (conv2d_detail::uses_onednn<backend>) {
#if VITSCALE_CONV2D_ONEDNN
    if (!conv2d_detail::is_empty(p)) {
      conv2d_detail::onednn_backward_weights(space, p, x.data(), dy.data(), dw.data(), db, dbias_stride);
      return;
    }
#endif
  }
  conv2d_detail::portable_backward_weights(space, p, x.data(), dy.data(), dw.data(), db, dbias_stride);
}

}  // namespace vitscale::kernels
