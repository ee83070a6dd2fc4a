#pragma once
// gemm_backend::onednn: oneDNN's matmul primitive on Kokkos::Serial and Kokkos::OpenMP, where the build has
// oneDNN (VITSCALE_HAVE_ONEDNN; this header defines VITSCALE_GEMM_ONEDNN to 1 then, else to 0 and declares
// nothing). Transposes are memory-descriptor strides, alpha an output scale, beta a sum post-op, GELU an eltwise
// post-op; primitives are cached per problem, the scratchpad is the calling thread's. On a CPU without a bf16
// matmul, bf16 operands are widened to float first. The contract is at the top of kernels/gemm.hpp.

#if defined(VITSCALE_HAVE_ONEDNN) && VITSCALE_HAVE_ONEDNN
#define VITSCALE_GEMM_ONEDNN 1
#else
#define VITSCALE_GEMM_ONEDNN 0
#endif

#if VITSCALE_GEMM_ONEDNN

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/kernels/detail/gemm_host.hpp>
#include <vitscale/kernels/detail/gemm_problem.hpp>

#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace vitscale::kernels::gemm_detail {

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

// Whether oneDNN runs a bf16 matmul on this CPU: oneDNN 2.x needs AVX-512 (avx512_core, where bf16 is
// emulated, or avx512_core_bf16); on AVX2-only x86 and on Arm it builds no bf16 primitive. Read once, after
// ONEDNN_MAX_CPU_ISA has capped the ISA (so a capped run takes the same path as a machine without AVX-512).
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

}  // namespace vitscale::kernels::gemm_detail

#endif  // VITSCALE_GEMM_ONEDNN
