#pragma once
// conv_backend::onednn: oneDNN's convolution primitives (forward, backward_data, backward_weights) on
// Kokkos::Serial and Kokkos::OpenMP, where the build has oneDNN (VITSCALE_HAVE_ONEDNN; this header defines
// VITSCALE_CONV2D_ONEDNN to 1 then, else to 0 and declares nothing). The contract is at the top of
// kernels/conv2d.hpp.
//
// Activations go to oneDNN in place: an NHWC View is a memory descriptor with dims {N, C, H, W} and the View's
// strides. The weights are declared with format "any", so that oneDNN picks its fast blocked layout; the user's
// OIHW weights (goihw with groups: [Cout, Cin/g, KH, KW] is [g, Cout/g, Cin/g, KH, KW]) are reordered into it on
// every call (O(weights), small next to the convolution), and dw comes back through it into a float buffer.
// beta: a sum post-op in forward where the output type allows it; otherwise (backward, or float inputs with a bf16
// output, which oneDNN's f32 convolutions do not write) the result goes to a float buffer and one Kokkos pass adds
// beta·out and rounds once. Primitives (and their weight reorders) are built once per problem and cached for the
// life of the program (thread-safe); scratchpads and buffers are the calling thread's, so one primitive may run on
// several threads at once. The engine, the OpenMP thread scope and the ISA query are gemm's (gemm_onednn.hpp,
// gemm_host.hpp).
//
// bf16: where oneDNN has no bf16 convolution on this CPU (x86 without AVX-512, Arm; or oneDNN declines the
// problem), x, w and dy are widened to float first (exact), and the float convolution runs with the same float
// sums. widen_bf16_for_test forces that path on any CPU, for the tests.

#if defined(VITSCALE_HAVE_ONEDNN) && VITSCALE_HAVE_ONEDNN
#define VITSCALE_CONV2D_ONEDNN 1
#else
#define VITSCALE_CONV2D_ONEDNN 0
#endif

#if VITSCALE_CONV2D_ONEDNN

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/kernels/detail/conv2d_problem.hpp>
#include <vitscale/kernels/detail/gemm_host.hpp>
#include <vitscale/kernels/detail/gemm_onednn.hpp>

#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace vitscale::kernels::conv2d_detail {

// While an object of this type lives, bf16 convolutions on the oneDNN backend take the path of a CPU without a
// bf16 convolution (widened to float first), on every thread. For tests.
inline std::atomic<int>& widen_bf16_requests() {
  static std::atomic<int> requests{0};
  return requests;
}
struct widen_bf16_for_test {
  widen_bf16_for_test() { ++widen_bf16_requests(); }
  ~widen_bf16_for_test() { --widen_bf16_requests(); }
  widen_bf16_for_test(const widen_bf16_for_test&) = delete;
  widen_bf16_for_test& operator=(const widen_bf16_for_test&) = delete;
};

// Whether bf16 operands go to oneDNN as bf16: oneDNN 2.x has bf16 convolutions on AVX-512 (avx512_core emulates
// them, avx512_core_bf16 has the dot products), the same condition as its bf16 matmul.
inline bool onednn_bf16_conv() {
  return gemm_detail::onednn_has_bf16_matmul() && widen_bf16_requests().load() == 0;
}

// The calling thread's buffers, grown to the largest request and then reused. Slots: 0-2 widened x, w, dy;
// 3 the weights (or dw) in oneDNN's layout; 4 a float result; 5 the scratchpad; 6 the bias or dbias in float;
// 7 dw in float, packed.
inline void* conv_buffer(int slot, std::size_t bytes) {
  thread_local std::array<std::vector<float>, 8> buffers;
  auto& b = buffers[static_cast<std::size_t>(slot)];
  const std::size_t floats = (bytes + sizeof(float) - 1) / sizeof(float) + 16;
  if (b.size() < floats) b.resize(floats);
  return b.data();
}
inline float* conv_floats(int slot, std::int64_t n) {
  return static_cast<float*>(conv_buffer(slot, static_cast<std::size_t>(n) * sizeof(float)));
}

template <class T>
constexpr dnnl::memory::data_type onednn_type() {
  return std::is_same<T, float>::value ? dnnl::memory::data_type::f32 : dnnl::memory::data_type::bf16;
}

// dst = src (+ beta·dst) over a [d0, d1, d2, d3] block: src packed float, dst with strides s. beta == 0: dst
// is not read. Widens (src bf16, beta 0) and finishes (src float, dst bf16 or float) alike.
template <class ExecSpace, class TS, class TD>
void copy_block(const ExecSpace& space, const std::int64_t (&d)[4], const TS* src, const std::int64_t (&src_s)[4],
                TD* dst, const std::int64_t (&dst_s)[4], float beta) {
  const std::int64_t d1 = d[1], d2 = d[2], d3 = d[3];
  const std::int64_t a0 = src_s[0], a1 = src_s[1], a2 = src_s[2], a3 = src_s[3];
  const std::int64_t b0 = dst_s[0], b1 = dst_s[1], b2 = dst_s[2], b3 = dst_s[3];
  Kokkos::parallel_for(
      "vitscale::conv2d::copy", Kokkos::RangePolicy<ExecSpace>(space, 0, d[0] * d1 * d2),
      KOKKOS_LAMBDA(std::int64_t r) {
        const std::int64_t i2 = r % d2, i1 = (r / d2) % d1, i0 = r / (d2 * d1);
        const TS* s = src + i0 * a0 + i1 * a1 + i2 * a2;
        TD* t = dst + i0 * b0 + i1 * b1 + i2 * b2;
        for (std::int64_t i3 = 0; i3 < d3; ++i3) {
          float v = static_cast<float>(s[i3 * a3]);
          if (beta != 0.0f) v += beta * static_cast<float>(t[i3 * b3]);
          t[i3 * b3] = static_cast<TD>(v);
        }
      });
}

inline void packed_strides(const std::int64_t (&d)[4], std::int64_t (&s)[4]) {
  s[3] = 1;
  s[2] = d[3];
  s[1] = d[2] * d[3];
  s[0] = d[1] * d[2] * d[3];
}

// A bf16 block widened into a packed float buffer of the calling thread; `s` becomes the packed strides.
template <class ExecSpace>
const float* widen_block(const ExecSpace& space, int slot, const std::int64_t (&d)[4], const ::vitscale::bf16* src,
                         std::int64_t (&s)[4]) {
  float* out = conv_floats(slot, d[0] * d[1] * d[2] * d[3]);
  std::int64_t packed[4];
  packed_strides(d, packed);
  copy_block(space, d, src, s, out, packed, 0.0f);
  for (int i = 0; i < 4; ++i) s[i] = packed[i];
  return out;
}

// ---------------------------------------------------------------------------------------- primitives

enum class conv_pass { forward, backward_data, backward_weights };

struct conv_key {
  std::array<std::int64_t, 36> v;
  bool operator==(const conv_key& o) const { return v == o.v; }
};
struct conv_key_hash {
  std::size_t operator()(const conv_key& k) const {
    std::uint64_t h = 1469598103934665603ull;
    for (std::int64_t x : k.v) h = (h ^ static_cast<std::uint64_t>(x)) * 1099511628211ull;
    return static_cast<std::size_t>(h);
  }
};

struct conv_entry {
  bool ok = false;  // false: oneDNN builds no primitive for this problem (cached too)
  std::string why;
  dnnl::primitive primitive;
  dnnl::memory::desc src, weights, bias, dst, scratch;  // backward: src = diff_src, dst = diff_dst, ...
  dnnl::memory::desc weights_user;  // the caller's OIHW (or dw's packed float) layout
  bool reorder = false;             // weights != weights_user: a reorder between them
  dnnl::reorder weights_reorder;
  dnnl::memory::desc reorder_scratch;
};

// {N, C, H, W} over an NHWC block with strides s = [b, h, w, c].
inline dnnl::memory::desc act_desc(std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t c,
                                   const std::int64_t (&s)[4], dnnl::memory::data_type type) {
  return dnnl::memory::desc(dnnl::memory::dims{n, c, h, w}, type, dnnl::memory::dims{s[0], s[3], s[1], s[2]});
}
inline dnnl::memory::dims weight_dims(const problem& p) {
  const std::int64_t g = p.geom.groups, kh = p.geom.kernel_h, kw = p.geom.kernel_w;
  if (g == 1) return {p.cout, p.cin, kh, kw};
  return {g, p.cout / g, p.cin / g, kh, kw};
}
// The OIHW weights with strides s = [cout, cin/g, kh, kw] (goihw: the group's stride is Cout/g output channels).
inline dnnl::memory::desc weight_desc(const problem& p, const std::int64_t (&s)[4], dnnl::memory::data_type type) {
  using dims = dnnl::memory::dims;
  if (p.geom.groups == 1) return dnnl::memory::desc(weight_dims(p), type, dims{s[0], s[1], s[2], s[3]});
  return dnnl::memory::desc(weight_dims(p), type, dims{s[0] * (p.cout / p.geom.groups), s[0], s[1], s[2], s[3]});
}

inline const conv_entry& conv_primitive(conv_pass pass, const problem& p, dnnl::memory::data_type in_type,
                                        dnnl::memory::data_type out_type, bool has_bias, int threads) {
  const auto& g = p.geom;
  const conv_key key{{static_cast<int>(pass), p.batch, p.in_h, p.in_w, p.cin, p.out_h, p.out_w, p.cout,
                      g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_top, g.pad_bottom, g.pad_left,
                      g.pad_right, g.groups, p.sx[0], p.sx[1], p.sx[2], p.sx[3], p.sw[0], p.sw[1], p.sw[2], p.sw[3],
                      p.sy[0], p.sy[1], p.sy[2], p.sy[3], static_cast<int>(in_type), static_cast<int>(out_type),
                      has_bias ? 1 : 0,
                      static_cast<std::int64_t>(::vitscale::bit_cast<std::uint32_t>(p.beta)), threads, 0, 0}};
  static std::mutex mutex;
  static std::unordered_map<conv_key, conv_entry, conv_key_hash> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(key);
  if (found != cache.end()) return found->second;  // node-based map: references survive rehashing

  using dims = dnnl::memory::dims;
  using tag = dnnl::memory::format_tag;
  const auto f32 = dnnl::memory::data_type::f32;
  dnnl::engine& engine = gemm_detail::onednn_engine();
  const dims strides{g.stride_h, g.stride_w}, pad_l{g.pad_top, g.pad_left}, pad_r{g.pad_bottom, g.pad_right};
  const dnnl::memory::desc w_any(weight_dims(p), in_type, tag::any);
  const dnnl::memory::desc bias(dims{p.cout}, f32, tag::a);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per-thread scratchpad: concurrent calls are safe
  conv_entry e;
  try {
    const auto direct = dnnl::algorithm::convolution_direct;
    const auto training = dnnl::prop_kind::forward_training;
    // The forward problem over the input types: the primitive of the forward pass, the hint of the backward ones.
    const auto x_in = act_desc(p.batch, p.in_h, p.in_w, p.cin, p.sx, in_type);
    const auto y_in = act_desc(p.batch, p.out_h, p.out_w, p.cout, p.sy, in_type);
    const auto y_out = act_desc(p.batch, p.out_h, p.out_w, p.cout, p.sy, out_type);
    const auto forward_desc = [&](const dnnl::memory::desc& dst) {
      return has_bias ? dnnl::convolution_forward::desc(training, direct, x_in, w_any, bias, dst, strides, pad_l, pad_r)
                      : dnnl::convolution_forward::desc(training, direct, x_in, w_any, dst, strides, pad_l, pad_r);
    };
    if (pass == conv_pass::forward) {
      dnnl::post_ops ops;
      if (p.beta != 0.0f) ops.append_sum(p.beta);
      attr.set_post_ops(ops);
      const dnnl::convolution_forward::primitive_desc pd(forward_desc(y_out), attr, engine);
      e.src = pd.src_desc();
      e.weights = pd.weights_desc();
      e.dst = pd.dst_desc();
      e.scratch = pd.scratchpad_desc();
      e.primitive = dnnl::convolution_forward(pd);
      e.weights_user = weight_desc(p, p.sw, in_type);
    } else {
      const dnnl::convolution_forward::primitive_desc hint(forward_desc(y_in), engine);
      if (pass == conv_pass::backward_data) {
        const auto dx = act_desc(p.batch, p.in_h, p.in_w, p.cin, p.sx, out_type);
        const dnnl::convolution_backward_data::desc desc(direct, dx, w_any, y_in, strides, pad_l, pad_r);
        const dnnl::convolution_backward_data::primitive_desc pd(desc, attr, engine, hint);
        e.weights = pd.weights_desc();
        e.scratch = pd.scratchpad_desc();
        e.primitive = dnnl::convolution_backward_data(pd);
        e.weights_user = weight_desc(p, p.sw, in_type);
      } else {
        const dnnl::memory::desc dw_any(weight_dims(p), f32, tag::any);
        const auto desc = has_bias ? dnnl::convolution_backward_weights::desc(direct, x_in, dw_any, bias, y_in,
                                                                              strides, pad_l, pad_r)
                                   : dnnl::convolution_backward_weights::desc(direct, x_in, dw_any, y_in, strides,
                                                                              pad_l, pad_r);
        const dnnl::convolution_backward_weights::primitive_desc pd(desc, attr, engine, hint);
        e.weights = pd.diff_weights_desc();
        e.scratch = pd.scratchpad_desc();
        e.primitive = dnnl::convolution_backward_weights(pd);
        std::int64_t packed[4];
        const std::int64_t d[4] = {p.cout, p.cin / g.groups, g.kernel_h, g.kernel_w};
        packed_strides(d, packed);
        e.weights_user = weight_desc(p, packed, f32);
      }
    }
    e.bias = bias;
    e.reorder = !(e.weights == e.weights_user);
    if (e.reorder) {
      dnnl::primitive_attr reorder_attr;
      reorder_attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      const bool from_user = pass != conv_pass::backward_weights;
      const dnnl::reorder::primitive_desc rpd(engine, from_user ? e.weights_user : e.weights, engine,
                                              from_user ? e.weights : e.weights_user, reorder_attr);
      e.reorder_scratch = rpd.scratchpad_desc();
      e.weights_reorder = dnnl::reorder(rpd);
    }
    e.ok = true;
  } catch (const dnnl::error& err) {
    e.ok = false;
    e.why = err.what();
  }
  return cache.emplace(key, std::move(e)).first->second;
}

// Runs `primitive` with `args` and, where it needs one, the calling thread's scratchpad (slot 5).
inline void execute(dnnl::stream& stream, const dnnl::primitive& primitive, const dnnl::memory::desc& scratch,
                    std::unordered_map<int, dnnl::memory> args) {
  const std::size_t bytes = scratch.get_size();
  if (bytes > 0) args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(scratch, gemm_detail::onednn_engine(),
                                                                  conv_buffer(5, bytes)));
  primitive.execute(stream, args);
}

// The weights as the primitive reads them: the caller's, or reordered into the calling thread's slot 3.
inline void* weights_for(dnnl::stream& stream, const conv_entry& e, const void* w) {
  void* user = const_cast<void*>(w);  // oneDNN takes non-const handles; it never writes to its inputs
  if (!e.reorder) return user;
  void* packed = conv_buffer(3, e.weights.get_size());
  dnnl::engine& engine = gemm_detail::onednn_engine();
  execute(stream, e.weights_reorder, e.reorder_scratch,
          {{DNNL_ARG_FROM, dnnl::memory(e.weights_user, engine, user)},
           {DNNL_ARG_TO, dnnl::memory(e.weights, engine, packed)}});
  return packed;
}

[[noreturn]] inline void refuse(const char* function, const problem& p, const conv_entry& e) {
  ::vitscale::detail::fail(function, ": oneDNN builds no convolution for x [", p.batch, ", ", p.in_h, ", ", p.in_w,
                           ", ", p.cin, "], w [", p.cout, ", ", p.cin / p.geom.groups, ", ", p.geom.kernel_h, ", ",
                           p.geom.kernel_w, "] (", e.why, "); use conv_backend::portable");
}

inline std::int64_t act_elements(const problem& p, bool input) {
  return input ? p.batch * p.in_h * p.in_w * p.cin : p.batch * p.out_h * p.out_w * p.cout;
}

// Whether bf16 inputs must be widened for this pass: no bf16 convolution on this CPU, or none for this problem.
template <class TI>
bool must_widen(conv_pass pass, const problem& p, dnnl::memory::data_type out_type, bool has_bias, int threads) {
  if constexpr (std::is_same<TI, ::vitscale::bf16>::value) {
    return !onednn_bf16_conv() ||
           !conv_primitive(pass, p, dnnl::memory::data_type::bf16, out_type, has_bias, threads).ok;
  } else {
    return false;
  }
}

// ---------------------------------------------------------------------------------------- the passes

template <class ExecSpace, class TI, class TB, class TO>
void onednn_forward(const ExecSpace& space, const problem& p, const TI* x, const TI* w, const TB* bias,
                    std::int64_t bias_stride, TO* y) {
  const int threads = space.concurrency();
  constexpr bool float_to_bf16 = std::is_same<TI, float>::value && std::is_same<TO, ::vitscale::bf16>::value;
  if constexpr (std::is_same<TI, ::vitscale::bf16>::value) {
    if (must_widen<TI>(conv_pass::forward, p, onednn_type<TO>(), bias != nullptr, threads)) {
      problem wide = p;
      const std::int64_t dx[4] = {p.batch, p.in_h, p.in_w, p.cin};
      const std::int64_t dw[4] = {p.cout, p.cin / p.geom.groups, p.geom.kernel_h, p.geom.kernel_w};
      const float* xf = widen_block(space, 0, dx, x, wide.sx);
      const float* wf = widen_block(space, 1, dw, w, wide.sw);
      onednn_forward(space, wide, xf, wf, bias, bias_stride, y);
      return;
    }
  }
  if constexpr (!std::is_same<TB, float>::value) {
    if (bias != nullptr) {  // oneDNN's bias is float here: a bf16 bias is widened (slot 6)
      float* bf = conv_floats(6, p.cout);
      const std::int64_t d[4] = {1, 1, 1, p.cout}, s[4] = {0, 0, 0, bias_stride}, t[4] = {0, 0, 0, 1};
      copy_block(space, d, bias, s, bf, t, 0.0f);
      onednn_forward(space, p, x, w, static_cast<const float*>(bf), 1, y);
      return;
    }
  } else if (bias != nullptr && bias_stride != 1 && p.cout > 1) {
    float* bf = conv_floats(6, p.cout);
    const std::int64_t d[4] = {1, 1, 1, p.cout}, s[4] = {0, 0, 0, bias_stride}, t[4] = {0, 0, 0, 1};
    copy_block(space, d, bias, s, bf, t, 0.0f);
    onednn_forward(space, p, x, w, static_cast<const float*>(bf), 1, y);
    return;
  }
  if constexpr (float_to_bf16) {
    // oneDNN's f32 convolutions write f32: the convolution goes to a float buffer (slot 4), and one pass adds
    // beta·y and rounds once.
    problem to_float = p;
    to_float.beta = 0.0f;
    const std::int64_t d[4] = {p.batch, p.out_h, p.out_w, p.cout};
    packed_strides(d, to_float.sy);
    float* t = conv_floats(4, act_elements(p, false));
    onednn_forward(space, to_float, x, w, bias, 1, t);
    copy_block(space, d, static_cast<const float*>(t), to_float.sy, y, p.sy, p.beta);
    space.fence();
    return;
  } else {
    space.fence();
    const gemm_detail::host_threads_scope scope(threads);
    const conv_entry& e = conv_primitive(conv_pass::forward, p, onednn_type<TI>(), onednn_type<TO>(),
                                         bias != nullptr, threads);
    if (!e.ok) refuse("conv2d_forward", p, e);
    dnnl::engine& engine = gemm_detail::onednn_engine();
    dnnl::stream stream(engine);
    void* wk = weights_for(stream, e, w);
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::memory(e.src, engine, const_cast<TI*>(x))},
                                               {DNNL_ARG_WEIGHTS, dnnl::memory(e.weights, engine, wk)},
                                               {DNNL_ARG_DST, dnnl::memory(e.dst, engine, y)}};
    if (bias != nullptr)
      args.emplace(DNNL_ARG_BIAS, dnnl::memory(e.bias, engine, const_cast<void*>(static_cast<const void*>(bias))));
    execute(stream, e.primitive, e.scratch, std::move(args));
    stream.wait();
  }
}

template <class ExecSpace, class TI, class TO>
void onednn_backward_data(const ExecSpace& space, const problem& p, const TI* dy, const TI* w, TO* dx) {
  const int threads = space.concurrency();
  const bool direct = p.beta == 0.0f && !(std::is_same<TI, float>::value && std::is_same<TO, ::vitscale::bf16>::value);
  const auto out_type = direct ? onednn_type<TO>() : dnnl::memory::data_type::f32;
  if (must_widen<TI>(conv_pass::backward_data, p, out_type, false, threads)) {
    if constexpr (std::is_same<TI, ::vitscale::bf16>::value) {
      problem wide = p;
      const std::int64_t d_dy[4] = {p.batch, p.out_h, p.out_w, p.cout};
      const std::int64_t d_w[4] = {p.cout, p.cin / p.geom.groups, p.geom.kernel_h, p.geom.kernel_w};
      const float* dyf = widen_block(space, 2, d_dy, dy, wide.sy);
      const float* wf = widen_block(space, 1, d_w, w, wide.sw);
      onednn_backward_data(space, wide, dyf, wf, dx);
    }
    return;
  }
  if (!direct) {
    // beta != 0 (oneDNN's backward has no sum post-op) or a bf16 dx from float inputs: into a float buffer
    // (slot 4), then one pass adds beta·dx and rounds once.
    problem to_float = p;
    to_float.beta = 0.0f;
    const std::int64_t d[4] = {p.batch, p.in_h, p.in_w, p.cin};
    packed_strides(d, to_float.sx);
    float* t = conv_floats(4, act_elements(p, true));
    onednn_backward_data(space, to_float, dy, w, t);
    copy_block(space, d, static_cast<const float*>(t), to_float.sx, dx, p.sx, p.beta);
    space.fence();
    return;
  }
  if constexpr (!(std::is_same<TI, float>::value && std::is_same<TO, ::vitscale::bf16>::value)) {
    space.fence();
    const gemm_detail::host_threads_scope scope(threads);
    const conv_entry& e = conv_primitive(conv_pass::backward_data, p, onednn_type<TI>(), onednn_type<TO>(), false,
                                         threads);
    if (!e.ok) refuse("conv2d_backward_data", p, e);
    dnnl::engine& engine = gemm_detail::onednn_engine();
    dnnl::stream stream(engine);
    void* wk = weights_for(stream, e, w);
    const auto diff_src = act_desc(p.batch, p.in_h, p.in_w, p.cin, p.sx, onednn_type<TO>());
    const auto diff_dst = act_desc(p.batch, p.out_h, p.out_w, p.cout, p.sy, onednn_type<TI>());
    execute(stream, e.primitive, e.scratch,
            {{DNNL_ARG_DIFF_DST, dnnl::memory(diff_dst, engine, const_cast<TI*>(dy))},
             {DNNL_ARG_WEIGHTS, dnnl::memory(e.weights, engine, wk)},
             {DNNL_ARG_DIFF_SRC, dnnl::memory(diff_src, engine, dx)}});
    stream.wait();
  }
}

template <class ExecSpace, class TI, class TW, class TB>
void onednn_backward_weights(const ExecSpace& space, const problem& p, const TI* x, const TI* dy, TW* dw, TB* dbias,
                             std::int64_t dbias_stride) {
  const int threads = space.concurrency();
  const auto f32 = dnnl::memory::data_type::f32;
  if (must_widen<TI>(conv_pass::backward_weights, p, f32, dbias != nullptr, threads)) {
    if constexpr (std::is_same<TI, ::vitscale::bf16>::value) {
      problem wide = p;
      const std::int64_t d_x[4] = {p.batch, p.in_h, p.in_w, p.cin};
      const std::int64_t d_dy[4] = {p.batch, p.out_h, p.out_w, p.cout};
      const float* xf = widen_block(space, 0, d_x, x, wide.sx);
      const float* dyf = widen_block(space, 2, d_dy, dy, wide.sy);
      onednn_backward_weights(space, wide, xf, dyf, dw, dbias, dbias_stride);
    }
    return;
  }
  space.fence();
  const std::int64_t d_w[4] = {p.cout, p.cin / p.geom.groups, p.geom.kernel_h, p.geom.kernel_w};
  std::int64_t packed[4];
  packed_strides(d_w, packed);
  // A float dw (dbias) that is overwritten and packed takes oneDNN's result directly; anything else goes through
  // a float buffer and one pass that adds beta·dw and rounds once.
  const bool dw_direct = std::is_same<TW, float>::value && p.beta == 0.0f && p.sw[0] == packed[0] &&
                         p.sw[1] == packed[1] && p.sw[2] == packed[2] && p.sw[3] == packed[3];
  const bool db_direct = std::is_same<TB, float>::value && p.beta == 0.0f && dbias_stride == 1;
  float* dw_float = dw_direct ? reinterpret_cast<float*>(dw) : conv_floats(7, d_w[0] * d_w[1] * d_w[2] * d_w[3]);
  float* db_float = dbias == nullptr ? nullptr : db_direct ? reinterpret_cast<float*>(dbias) : conv_floats(6, p.cout);
  {
    const gemm_detail::host_threads_scope scope(threads);
    const conv_entry& e =
        conv_primitive(conv_pass::backward_weights, p, onednn_type<TI>(), f32, dbias != nullptr, threads);
    if (!e.ok) refuse("conv2d_backward_weights", p, e);
    dnnl::engine& engine = gemm_detail::onednn_engine();
    dnnl::stream stream(engine);
    void* dw_onednn = e.reorder ? conv_buffer(3, e.weights.get_size()) : static_cast<void*>(dw_float);
    const auto src = act_desc(p.batch, p.in_h, p.in_w, p.cin, p.sx, onednn_type<TI>());
    const auto diff_dst = act_desc(p.batch, p.out_h, p.out_w, p.cout, p.sy, onednn_type<TI>());
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::memory(src, engine, const_cast<TI*>(x))},
                                               {DNNL_ARG_DIFF_DST, dnnl::memory(diff_dst, engine, const_cast<TI*>(dy))},
                                               {DNNL_ARG_DIFF_WEIGHTS, dnnl::memory(e.weights, engine, dw_onednn)}};
    if (db_float != nullptr) args.emplace(DNNL_ARG_DIFF_BIAS, dnnl::memory(e.bias, engine, db_float));
    execute(stream, e.primitive, e.scratch, std::move(args));
    if (e.reorder)
      execute(stream, e.weights_reorder, e.reorder_scratch,
              {{DNNL_ARG_FROM, dnnl::memory(e.weights, engine, dw_onednn)},
               {DNNL_ARG_TO, dnnl::memory(e.weights_user, engine, dw_float)}});
    stream.wait();
  }
  // dw = dw_float + beta·dw and dbias likewise, rounded once.
  if (!dw_direct) copy_block(space, d_w, static_cast<const float*>(dw_float), packed, dw, p.sw, p.beta);
  if (dbias != nullptr && !db_direct) {
    const std::int64_t d[4] = {1, 1, 1, p.cout}, s[4] = {0, 0, 0, 1}, t[4] = {0, 0, 0, dbias_stride};
    copy_block(space, d, static_cast<const float*>(db_float), s, dbias, t, p.beta);
  }
  space.fence();
}

}  // namespace vitscale::kernels::conv2d_detail

#endif  // VITSCALE_CONV2D_ONEDNN
