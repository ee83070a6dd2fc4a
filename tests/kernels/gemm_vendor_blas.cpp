// The vendor-BLAS backend (kernels/detail/gemm_vendor_blas.hpp: one template for cuBLAS and rocBLAS) on the
// host, through mock traits whose "device BLAS" is a reference column-major GEMM and whose runtime is malloc.
// What runs is the shared template itself: the row-major to column-major operand swap, the op mapping, the
// leading dimensions and batch strides, the choice between one BLAS call, the product in place and the float
// workspace, the epilogue pass, bf16 storage, the cached handle and workspace, and the error messages. It is
// checked against the host gemm (oneDNN or Eigen) on every host space: every op_a/op_b combination, rank 2
// and batched, windows of larger matrices, with and without a bias, fp32 and bf16.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <support/spaces.hpp>
#include <utility>
#include <vector>
#include <vitscale/kernels/detail/gemm_vendor_blas.hpp>
#include <vitscale/kernels/gemm.hpp>

namespace {

using vitscale::bf16;
namespace vk = vitscale::kernels;
using vk::gemm_epilogue;
using vk::gemm_op;

enum class mock_status { success, failure };
enum class mock_runtime { success, failure };
enum class mock_operation { none, transpose };
enum class mock_type { f32, bf16 };
struct mock_handle_object {
  int id;
};
struct mock_stream_object {};

// What the mock saw, for the checks of the handle and workspace caching and of the operand swap.
struct mock_log {
  int creates = 0, allocations = 0, deallocations = 0, stream_syncs = 0, gemm_calls = 0, batched_calls = 0;
  bool fail_next_gemm = false;
  mock_operation last_op_first = mock_operation::none, last_op_second = mock_operation::none;
  int last_m = 0, last_n = 0, last_k = 0;
};
mock_log& mock_calls() {
  static mock_log l;
  return l;
}

float load(const void* p, mock_type type, std::int64_t i) {
  return type == mock_type::f32 ? static_cast<const float*>(p)[i] : static_cast<float>(static_cast<const bf16*>(p)[i]);
}
void store(void* p, mock_type type, std::int64_t i, float v) {
  if (type == mock_type::f32)
    static_cast<float*>(p)[i] = v;
  else
    static_cast<bf16*>(p)[i] = bf16(v);
}

// Column-major C = alpha·op(A)·op(B) + beta·C (C not read at beta 0), float accumulation in increasing k: the
// reference BLAS, standing in for the device's.
void reference_gemm(mock_operation op_a, mock_operation op_b, int m, int n, int k, float alpha, const void* a,
                    mock_type a_type, int lda, const void* b, mock_type b_type, int ldb, float beta, void* c,
                    mock_type c_type, int ldc) {
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int l = 0; l < k; ++l) {
        const std::int64_t ia = op_a == mock_operation::none ? i + std::int64_t(l) * lda : l + std::int64_t(i) * lda;
        const std::int64_t ib = op_b == mock_operation::none ? l + std::int64_t(j) * ldb : j + std::int64_t(l) * ldb;
        const float x = load(a, a_type, ia), y = load(b, b_type, ib);
        acc += x * y;
      }
      float v = alpha * acc;
      if (beta != 0.0f) v += beta * load(c, c_type, i + std::int64_t(j) * ldc);
      store(c, c_type, i + std::int64_t(j) * ldc, v);
    }
}

struct mock_traits {
  static constexpr const char* name = "mock BLAS";
  using status = mock_status;
  using runtime_status = mock_runtime;
  using handle = mock_handle_object*;
  using stream = mock_stream_object*;
  using operation = mock_operation;
  using data_type = mock_type;
  using dim = int;
  static constexpr operation op_n = mock_operation::none, op_t = mock_operation::transpose;
  static constexpr data_type f32 = mock_type::f32, bf16 = mock_type::bf16;

  static bool ok(status s) { return s == mock_status::success; }
  static bool runtime_ok(runtime_status s) { return s == mock_runtime::success; }
  static std::string status_text(status) { return "MOCK_STATUS_FAILURE (a failure the test asked for)"; }
  static std::string runtime_text(runtime_status) { return "mockErrorFailure"; }

  template <class Space>
  static stream stream_of(const Space&) {
    static mock_stream_object the_stream;
    return &the_stream;
  }
  template <class Space>
  static int device_of(const Space&) {
    return 0;
  }

  static constexpr const char* get_device_call = "mockGetDevice";
  static runtime_status get_device(int* device) {
    *device = 0;
    return mock_runtime::success;
  }
  static constexpr const char* set_device_call = "mockSetDevice";
  static runtime_status set_device(int device) { return device == 0 ? mock_runtime::success : mock_runtime::failure; }
  static constexpr const char* allocate_call = "mockMalloc";
  static runtime_status allocate(void** ptr, std::size_t bytes) {
    ++mock_calls().allocations;
    *ptr = std::malloc(bytes);
    return *ptr != nullptr ? mock_runtime::success : mock_runtime::failure;
  }
  static constexpr const char* deallocate_call = "mockFree";
  static runtime_status deallocate(void* ptr) {
    ++mock_calls().deallocations;
    std::free(ptr);
    return mock_runtime::success;
  }
  static constexpr const char* synchronize_call = "mockStreamSynchronize";
  static runtime_status synchronize(stream) {
    ++mock_calls().stream_syncs;
    return mock_runtime::success;
  }
  static runtime_status synchronize_device() { return mock_runtime::success; }

  static constexpr const char* create_call = "mockCreate";
  static status create(handle* h) {
    *h = new mock_handle_object{++mock_calls().creates};
    return mock_status::success;
  }
  static status destroy(handle h) {
    delete h;
    return mock_status::success;
  }
  static constexpr const char* set_stream_call = "mockSetStream";
  static status set_stream(handle, stream) { return mock_status::success; }

  static constexpr const char* gemm_call = "mockGemmEx";
  template <class Args>
  static status gemm(const Args& g) {
    if (record(g)) return mock_status::failure;
    ++mock_calls().gemm_calls;
    reference_gemm(g.op_a, g.op_b, g.m, g.n, g.k, *g.alpha, g.a, g.a_type, g.lda, g.b, g.b_type, g.ldb, *g.beta, g.c,
                   g.c_type, g.ldc);
    return mock_status::success;
  }
  static constexpr const char* gemm_strided_batched_call = "mockGemmStridedBatchedEx";
  template <class Args>
  static status gemm_strided_batched(const Args& g) {
    if (record(g)) return mock_status::failure;
    ++mock_calls().batched_calls;
    const auto at = [](const void* p, data_type t, std::int64_t offset) {
      return static_cast<const char*>(p) + offset * (t == mock_type::f32 ? 4 : 2);
    };
    for (int item = 0; item < g.batch; ++item)
      reference_gemm(g.op_a, g.op_b, g.m, g.n, g.k, *g.alpha, at(g.a, g.a_type, item * g.stride_a), g.a_type, g.lda,
                     at(g.b, g.b_type, item * g.stride_b), g.b_type, g.ldb, *g.beta,
                     const_cast<char*>(at(g.c, g.c_type, item * g.stride_c)), g.c_type, g.ldc);
    return mock_status::success;
  }

 private:
  // Notes the call; true when the test asked this call to fail.
  template <class Args>
  static bool record(const Args& g) {
    mock_log& l = mock_calls();
    l.last_op_first = g.op_a;
    l.last_op_second = g.op_b;
    l.last_m = g.m;
    l.last_n = g.n;
    l.last_k = g.k;
    const bool fail = l.fail_next_gemm;
    l.fail_next_gemm = false;
    return fail;
  }
};

using mock_blas = vk::gemm_detail::vendor_blas<mock_traits>;

struct spec {
  int batch;  // 0: rank-2 Views; otherwise rank 3
  int m, k, n;
  gemm_op op_a, op_b;
  float alpha, beta;
  gemm_epilogue epilogue;
};

template <class View>
void fill(const View& v, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (std::size_t i = 0; i < v.span(); ++i) v.data()[i] = u(rng);
}

// The product of `s` through the mock and through the host gemm (gemm_backend::automatic) on windows of
// larger [items, rows, cols + 3] allocations (rank 3, or their first item as rank 2), and the comparison.
// float accumulations in different orders differ by about K float roundings of terms of size <= 1; a bf16 C
// may then round to a neighbour (2^-8 relative).
template <class Space, class TA, class TC, class TBias = float>
void compare(const spec& s, std::uint32_t seed) {
  const std::string shape = "batch " + std::to_string(s.batch) + ", [" + std::to_string(s.m) + ", " +
                            std::to_string(s.k) + "] x [" + std::to_string(s.k) + ", " + std::to_string(s.n) + "]";
  const std::string ops = std::string(s.op_a == gemm_op::n ? "n" : "t") + (s.op_b == gemm_op::n ? "n" : "t");
  CAPTURE(shape);
  CAPTURE(ops);
  CAPTURE(s.alpha);
  CAPTURE(s.beta);
  CAPTURE(int(s.epilogue));
  using memory = typename Space::memory_space;
  const Space space;
  const int items = s.batch == 0 ? 1 : s.batch, pad = 3;
  const int a_rows = s.op_a == gemm_op::n ? s.m : s.k, a_cols = s.op_a == gemm_op::n ? s.k : s.m;
  const int b_rows = s.op_b == gemm_op::n ? s.k : s.n, b_cols = s.op_b == gemm_op::n ? s.n : s.k;
  Kokkos::View<TA***, Kokkos::LayoutRight, memory> a_full("a", items, a_rows, a_cols + pad);
  Kokkos::View<TA***, Kokkos::LayoutRight, memory> b_full("b", items, b_rows, b_cols + pad);
  Kokkos::View<TC***, Kokkos::LayoutRight, memory> c_mock("c_mock", items, s.m, s.n + pad);
  Kokkos::View<TC***, Kokkos::LayoutRight, memory> c_host("c_host", items, s.m, s.n + pad);
  Kokkos::View<TBias*, memory> bias("bias", s.n);
  std::mt19937 rng(seed);
  fill(a_full, rng);
  fill(b_full, rng);
  fill(bias, rng);
  fill(c_mock, rng);
  if (s.beta == 0.0f) {  // must never be read
    for (std::size_t i = 0; i < c_mock.span(); ++i) c_mock.data()[i] = std::numeric_limits<float>::quiet_NaN();
  }
  Kokkos::deep_copy(c_host, c_mock);

  const auto all = Kokkos::ALL;
  const auto run = [&](const auto& a, const auto& b, const auto& cm, const auto& ch) {
    vk::gemm_detail::problem p;
    const TBias* bias_ptr = nullptr;
    const auto bias_view = bias;
    if (vk::gemm_detail::describe(s.op_a, s.op_b, s.alpha, a, b, s.beta, cm, s.epilogue, &bias_view, p, bias_ptr))
      mock_blas::run(space, p, a.data(), b.data(), bias_ptr, cm.data());
    if (s.epilogue == gemm_epilogue::none)
      vk::gemm(space, s.op_a, s.op_b, s.alpha, a, b, s.beta, ch);
    else
      vk::gemm(space, s.op_a, s.op_b, s.alpha, a, b, s.beta, ch, s.epilogue, bias);
    space.fence();
  };
  const auto a_cols_window = std::make_pair(0, a_cols), b_cols_window = std::make_pair(0, b_cols);
  const auto c_cols_window = std::make_pair(0, s.n);
  if (s.batch == 0) {
    run(Kokkos::subview(a_full, 0, all, a_cols_window), Kokkos::subview(b_full, 0, all, b_cols_window),
        Kokkos::subview(c_mock, 0, all, c_cols_window), Kokkos::subview(c_host, 0, all, c_cols_window));
  } else {
    run(Kokkos::subview(a_full, all, all, a_cols_window), Kokkos::subview(b_full, all, all, b_cols_window),
        Kokkos::subview(c_mock, all, all, c_cols_window), Kokkos::subview(c_host, all, all, c_cols_window));
  }

  const double absolute = 4e-6 * (s.k + 1) * (std::fabs(s.alpha) + 1.0);
  const double relative = std::is_same<TC, float>::value ? 0.0 : 1e-2;
  int bad = 0;
  std::string first_bad;
  for (int t = 0; t < items; ++t)
    for (int i = 0; i < s.m; ++i)
      for (int j = 0; j < s.n + pad; ++j) {
        const double got = static_cast<float>(c_mock(t, i, j)), want = static_cast<float>(c_host(t, i, j));
        // Outside the window C is untouched, as the host gemm leaves it (NaN where beta == 0 poisoned it).
        const bool inside = j < s.n;
        const bool same = std::isnan(got) ? std::isnan(want)
                                          : std::fabs(got - want) <= absolute + relative * std::fabs(want);
        if (!same || (inside && !std::isfinite(got))) {
          if (bad++ == 0)
            first_bad = "C(" + std::to_string(t) + ", " + std::to_string(i) + ", " + std::to_string(j) + "): mock " +
                        std::to_string(got) + ", host " + std::to_string(want);
        }
      }
  CAPTURE(first_bad);
  CHECK(bad == 0);
}

// Every op combination, rank 2 and batched, each epilogue kind, beta 0 (C never read) and beta != 0.
template <class Space, class TA, class TC, class TBias = float>
void sweep(std::uint32_t seed) {
  for (gemm_op op_a : {gemm_op::n, gemm_op::t})
    for (gemm_op op_b : {gemm_op::n, gemm_op::t})
      for (int batch : {0, 3}) {
        compare<Space, TA, TC, TBias>({batch, 50, 33, 19, op_a, op_b, 1.0f, 0.0f, gemm_epilogue::none}, seed++);
        compare<Space, TA, TC, TBias>({batch, 7, 64, 33, op_a, op_b, 0.5f, 1.0f, gemm_epilogue::none}, seed++);
        compare<Space, TA, TC, TBias>({batch, 19, 17, 50, op_a, op_b, 1.0f, 0.0f, gemm_epilogue::bias}, seed++);
        compare<Space, TA, TC, TBias>(
            {batch, 33, 7, 17, op_a, op_b, -0.5f, 0.25f, gemm_epilogue::bias_gelu_tanh}, seed++);
        compare<Space, TA, TC, TBias>({batch, 1, 50, 1, op_a, op_b, 0.7f, 0.0f, gemm_epilogue::bias_gelu_erf}, seed++);
      }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("vendor-BLAS template through mock traits matches the host gemm", Space, vendor_blas_mock) {
  SUBCASE("fp32") { sweep<Space, float, float>(100); }
  SUBCASE("bf16 inputs, float output") { sweep<Space, bf16, float>(200); }
  SUBCASE("float inputs, bf16 output (through the float workspace)") { sweep<Space, float, bf16>(300); }
  SUBCASE("bf16 inputs, bf16 output, bf16 bias") { sweep<Space, bf16, bf16, bf16>(400); }
  SUBCASE("K == 0: only the epilogue") {
    compare<Space, float, float>({0, 7, 0, 19, gemm_op::n, gemm_op::t, 1.0f, 0.5f, gemm_epilogue::bias}, 500);
    compare<Space, float, float>({2, 7, 0, 19, gemm_op::t, gemm_op::n, 1.0f, 0.0f, gemm_epilogue::none}, 501);
  }
}
VITSCALE_ON_HOST_SPACES(vendor_blas_mock);

TEST_CASE("vendor-BLAS template: B goes first, handles and workspaces are cached, failures are sentences") {
  using space_t = Kokkos::DefaultHostExecutionSpace;
  const space_t space;
  vk::gemm_detail::problem p;
  p.m = 5;
  p.n = 3;
  p.k = 4;
  p.op_a = gemm_op::t;
  p.op_b = gemm_op::n;
  p.lda = 5;  // A stored [K, M]
  p.ldb = 3;  // B stored [K, N]
  p.ldc = 3;
  std::vector<float> a(20, 1.0f), b(12, 1.0f), c(15, 0.0f);
  const float* no_bias = nullptr;

  SUBCASE("the operand swap: Cᵀ = op(B)ᵀ·op(A)ᵀ, m' = N, n' = M") {
    mock_blas::run(space, p, a.data(), b.data(), no_bias, c.data());
    CHECK(mock_calls().last_op_first == mock_operation::none);       // B's op
    CHECK(mock_calls().last_op_second == mock_operation::transpose);  // A's op
    CHECK(mock_calls().last_m == 3);
    CHECK(mock_calls().last_n == 5);
    CHECK(mock_calls().last_k == 4);
    for (float x : c) CHECK(x == 4.0f);
  }
  SUBCASE("one handle per thread; the workspace grows, is freed after a stream sync, and is reused") {
    mock_blas::run(space, p, a.data(), b.data(), no_bias, c.data());
    const int creates = mock_calls().creates;
    vk::gemm_detail::problem q = p;
    q.beta = 1.0f;
    q.epilogue = gemm_epilogue::bias;  // beta != 0 with an epilogue: through the workspace
    const std::vector<float> bias(3, 0.5f);
    mock_blas::run(space, q, a.data(), b.data(), bias.data(), c.data());
    const int allocations = mock_calls().allocations, syncs = mock_calls().stream_syncs,
              deallocations = mock_calls().deallocations;
    mock_blas::run(space, q, a.data(), b.data(), bias.data(), c.data());  // the same size: reused
    CHECK(mock_calls().allocations == allocations);
    q.m = 1;  // smaller: reused
    mock_blas::run(space, q, a.data(), b.data(), bias.data(), c.data());
    CHECK(mock_calls().allocations == allocations);
    // Larger than any workspace the other cases asked for on this thread and stream.
    std::vector<float> a_big(4 * 100000, 1.0f), c_big(100000 * 3, 0.0f);
    q.m = 100000;
    q.lda = 100000;
    mock_blas::run(space, q, a_big.data(), b.data(), bias.data(), c_big.data());  // larger: synced, freed, grown
    CHECK(mock_calls().allocations == allocations + 1);
    CHECK(mock_calls().deallocations == deallocations + 1);
    CHECK(mock_calls().stream_syncs == syncs + 1);
    CHECK(mock_calls().creates == creates);  // the same thread's handle throughout
  }
  SUBCASE("a dimension past the 32-bit int") {
    vk::gemm_detail::problem q = p;
    q.k = std::int64_t(1) << 31;  // refused before any memory is touched
    CHECK_THROWS_WITH_AS(mock_blas::product(nullptr, q, static_cast<const float*>(nullptr),
                                            static_cast<const float*>(nullptr), 1.0f, 0.0f,
                                            static_cast<float*>(nullptr), 3, 0),
                         "vitscale: gemm (mock BLAS): K is 2147483648, past mock BLAS' 32-bit limit; split the "
                         "product or use gemm_backend::portable",
                         vitscale::error);
  }
  SUBCASE("a failing BLAS call") {
    mock_calls().fail_next_gemm = true;
    CHECK_THROWS_WITH_AS(mock_blas::run(space, p, a.data(), b.data(), no_bias, c.data()),
                         "vitscale: gemm (mock BLAS): mockGemmEx failed with MOCK_STATUS_FAILURE (a failure the test "
                         "asked for)",
                         vitscale::error);
    p.batched = true;
    p.batch = 1;
    mock_calls().fail_next_gemm = true;
    CHECK_THROWS_WITH_AS(mock_blas::run(space, p, a.data(), b.data(), no_bias, c.data()),
                         "vitscale: gemm (mock BLAS): mockGemmStridedBatchedEx failed with MOCK_STATUS_FAILURE (a "
                         "failure the test asked for)",
                         vitscale::error);
  }
}
