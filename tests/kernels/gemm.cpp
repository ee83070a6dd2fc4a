// gemm: every backend (automatic, oneDNN, Eigen, portable) on every host space, against a double reference
// computed from the inputs as stored (bf16-rounded where the Views hold bf16). In a build for Kokkos::Cuda
// with cuBLAS (or Kokkos' HIP space with rocBLAS) the same checks also run on the GPU, through the vendor
// backend, automatic and the portable kernel: the Space parameter of the test templates is then
// device_target, whose inputs and reference are made on the host and copied to the device.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <support/spaces.hpp>
#include <vector>
#include <vitscale/kernels/gemm.hpp>

using vitscale::bf16;
namespace vk = vitscale::kernels;
using vk::gemm_epilogue;
using vk::gemm_op;

#if VITSCALE_GEMM_CUBLAS
#define VITSCALE_TEST_DEVICE_BLAS 1
using device_space = Kokkos::Cuda;
using device_backend = vk::gemm_backend::cublas;
constexpr const char* device_backend_name = "cublas";
#elif VITSCALE_GEMM_ROCBLAS
#define VITSCALE_TEST_DEVICE_BLAS 1
using device_space = vitscale::hip_space;
using device_backend = vk::gemm_backend::rocblas;
constexpr const char* device_backend_name = "rocblas";
#else
#define VITSCALE_TEST_DEVICE_BLAS 0
#endif

namespace {

// The Space of the test templates that runs the checks on the GPU (see the top of this file); the inputs
// and the reference live in the default host space.
struct device_target {};
template <class Space>
struct host_of {
  using type = Space;
};
template <>
struct host_of<device_target> {
  using type = Kokkos::DefaultHostExecutionSpace;
};

// float inputs: float accumulation over K terms, relative to sum_k |a·b| (the scale of its rounding error).
constexpr double fp32_tolerance = 1e-5;
// bf16 inputs: products are exact in float, so the same float-accumulation tolerance against the double
// product of the rounded inputs.
constexpr double bf16_input_tolerance = 1e-5;
// bf16 outputs: one rounding to 8 significant bits (2^-9 relative), with margin.
constexpr double bf16_output_tolerance = 1e-2;

const float nan = std::numeric_limits<float>::quiet_NaN();

struct spec {
  int batch;  // 0: rank-2 Views; otherwise rank 3 with this batch extent
  int m, k, n;
  gemm_op op_a, op_b;
  float alpha, beta;
  gemm_epilogue epilogue;
};

std::string describe(const spec& s) {
  return "batch " + std::to_string(s.batch) + " M " + std::to_string(s.m) + " K " + std::to_string(s.k) + " N " +
         std::to_string(s.n) + " op_a " + (s.op_a == gemm_op::n ? "n" : "t") + " op_b " +
         (s.op_b == gemm_op::n ? "n" : "t") + " alpha " + std::to_string(s.alpha) + " beta " + std::to_string(s.beta) +
         " epilogue " + std::to_string(int(s.epilogue));
}

double reference_activation(gemm_epilogue ep, double x) {
  if (ep == gemm_epilogue::bias_gelu_tanh)
    return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  if (ep == gemm_epilogue::bias_gelu_erf) return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  return x;
}

template <class T, class Space>
using view3 = Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space>;

template <class View>
void fill_random(const View& v, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  auto* p = v.data();
  for (std::size_t i = 0; i < v.span(); ++i) p[i] = u(rng);
}

// One product: inputs, the NaN-poisoned (beta == 0) or random C, and the double reference, made once and
// run through each backend on a fresh copy of C. When `padded`, A, B and C are windows of larger
// allocations (row strides larger than the rows) and everything outside C's window must stay untouched.
template <class Space, class TA, class TC, class TBias = float>
class product_check {
  using host_space = typename host_of<Space>::type;

 public:
  product_check(const spec& s, std::uint32_t seed, bool padded)
      : s_(s),
        items_(s.batch == 0 ? 1 : s.batch),
        pad_(padded ? 5 : 0),
        a_rows_(s.op_a == gemm_op::n ? s.m : s.k),
        a_cols_(s.op_a == gemm_op::n ? s.k : s.m),
        b_rows_(s.op_b == gemm_op::n ? s.k : s.n),
        b_cols_(s.op_b == gemm_op::n ? s.n : s.k),
        a_("a", items_, a_rows_, a_cols_ + pad_),
        b_("b", items_, b_rows_, b_cols_ + pad_),
        c_("c", items_, s.m + 1, s.n + pad_),
        c_before_("c_before", items_, s.m + 1, s.n + pad_),
        bias_("bias", s.n),
        expected_(std::size_t(items_) * s.m * s.n),
        allowed_(expected_.size()) {
    static_assert(Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename host_space::memory_space>::accessible,
                  "the test fills Views directly");
    std::mt19937 rng(seed);
    fill_random(a_, rng);
    fill_random(b_, rng);
    fill_random(bias_, rng);
    if (s.beta == 0.0f) {
      for (std::size_t i = 0; i < c_before_.span(); ++i) c_before_.data()[i] = nan;  // must never be read
    } else {
      fill_random(c_before_, rng, -2.0f, 2.0f);
      for (int t = 0; t < items_; ++t)  // mark what lies outside the window
        for (int i = 0; i < s.m + 1; ++i)
          for (int j = 0; j < s.n + pad_; ++j)
            if (i >= s.m || j >= s.n) c_before_(t, i, j) = nan;
    }
    const double input_tolerance = std::is_same<TA, float>::value ? fp32_tolerance : bf16_input_tolerance;
    const double output_tolerance = std::is_same<TC, float>::value ? 0.0 : bf16_output_tolerance;
    std::size_t e = 0;
    for (int t = 0; t < items_; ++t) {
      for (int i = 0; i < s.m; ++i) {
        for (int j = 0; j < s.n; ++j, ++e) {
          double acc = 0.0, magnitude = 0.0;
          for (int k = 0; k < s.k; ++k) {
            const double x = s.op_a == gemm_op::n ? double(float(a_(t, i, k))) : double(float(a_(t, k, i)));
            const double y = s.op_b == gemm_op::n ? double(float(b_(t, k, j))) : double(float(b_(t, j, k)));
            acc += x * y;
            magnitude += std::fabs(x * y);
          }
          double v = double(s.alpha) * acc;
          magnitude *= std::fabs(double(s.alpha));
          if (s.epilogue != gemm_epilogue::none) {
            v += double(float(bias_(j)));
            magnitude += std::fabs(double(float(bias_(j))));
          }
          v = reference_activation(s.epilogue, v);
          if (s.beta != 0.0f) {
            const double old = double(float(c_before_(t, i, j)));
            v += double(s.beta) * old;
            magnitude += std::fabs(double(s.beta) * old);
          }
          expected_[e] = v;
          allowed_[e] = input_tolerance * magnitude + output_tolerance * std::fabs(v) + 1e-30;
        }
      }
    }
  }

  // Runs the product through Backend and checks every element of C.
  template <class Backend>
  void run(const char* backend_name) {
    INFO(backend_name << ": " << describe(s_) << std::string(pad_ ? " padded" : ""));
    Kokkos::deep_copy(c_, c_before_);
    call<host_space, Backend>(a_, b_, c_, bias_);
    verify();
  }

  // The same on Device: the inputs and C (with what lies around its window) are copied there, the product
  // runs through Backend on Device, and C comes back to be checked.
  template <class Device, class Backend>
  void run_on_device(const char* backend_name) {
    INFO(backend_name << " on the device: " << describe(s_) << std::string(pad_ ? " padded" : ""));
    view3<TA, Device> a("a", a_.extent(0), a_.extent(1), a_.extent(2));
    view3<TA, Device> b("b", b_.extent(0), b_.extent(1), b_.extent(2));
    view3<TC, Device> c("c", c_.extent(0), c_.extent(1), c_.extent(2));
    Kokkos::View<TBias*, typename Device::memory_space> bias("bias", bias_.extent(0));
    Kokkos::deep_copy(a, a_);
    Kokkos::deep_copy(b, b_);
    Kokkos::deep_copy(c, c_before_);
    Kokkos::deep_copy(bias, bias_);
    call<Device, Backend>(a, b, c, bias);
    Kokkos::deep_copy(c_, c);
    verify();
  }

 private:
  template <class Run, class Backend, class A, class B, class C, class Bias>
  void call(const A& a, const B& b, const C& c, const Bias& bias_view) const {
    using Kokkos::ALL;
    using range = Kokkos::pair<int, int>;
    const auto a3 = Kokkos::subview(a, ALL, ALL, range(0, a_cols_));
    const auto b3 = Kokkos::subview(b, ALL, ALL, range(0, b_cols_));
    const auto c3 = Kokkos::subview(c, ALL, range(0, s_.m), range(0, s_.n));
    const Kokkos::View<const TBias*, typename Run::memory_space> bias = bias_view;
    const Run space;
    if (s_.batch == 0) {
      const auto a2 = Kokkos::subview(a3, 0, ALL, ALL);
      const auto b2 = Kokkos::subview(b3, 0, ALL, ALL);
      const auto c2 = Kokkos::subview(c3, 0, ALL, ALL);
      if (s_.epilogue == gemm_epilogue::none)
        vk::gemm(space, s_.op_a, s_.op_b, s_.alpha, a2, b2, s_.beta, c2, Backend{});
      else
        vk::gemm(space, s_.op_a, s_.op_b, s_.alpha, a2, b2, s_.beta, c2, s_.epilogue, bias, Backend{});
    } else {
      if (s_.epilogue == gemm_epilogue::none)
        vk::gemm(space, s_.op_a, s_.op_b, s_.alpha, a3, b3, s_.beta, c3, Backend{});
      else
        vk::gemm(space, s_.op_a, s_.op_b, s_.alpha, a3, b3, s_.beta, c3, s_.epilogue, bias, Backend{});
    }
    space.fence();
  }

  // Every element of C against the reference; everything outside C's window unchanged.
  void verify() const {
    int bad = 0, outside_changed = 0;
    std::size_t e = 0;
    for (int t = 0; t < items_; ++t) {
      for (int i = 0; i < s_.m + 1; ++i) {
        for (int j = 0; j < s_.n + pad_; ++j) {
          if (i >= s_.m || j >= s_.n) {  // outside the window: untouched, bit for bit
            outside_changed += std::memcmp(&c_(t, i, j), &c_before_(t, i, j), sizeof(TC)) != 0;
            continue;
          }
          const double got = double(float(c_(t, i, j)));
          if (!(std::fabs(got - expected_[e]) <= allowed_[e])) {  // also catches NaN
            if (bad < 3) MESSAGE("C(" << t << ", " << i << ", " << j << ") = " << got << ", expected " << expected_[e]);
            ++bad;
          }
          ++e;
        }
      }
    }
    CHECK(bad == 0);
    CHECK(outside_changed == 0);
  }

  spec s_;
  int items_, pad_, a_rows_, a_cols_, b_rows_, b_cols_;
  view3<TA, host_space> a_, b_;
  view3<TC, host_space> c_, c_before_;
  Kokkos::View<TBias*, typename host_space::memory_space> bias_;
  std::vector<double> expected_, allowed_;
};

template <class Space, class TA, class TC, class TBias = float>
void check_every_backend(const spec& s, std::uint32_t seed, bool padded = false) {
  product_check<Space, TA, TC, TBias> check(s, seed, padded);
  if constexpr (std::is_same<Space, device_target>::value) {
#if VITSCALE_TEST_DEVICE_BLAS
    check.template run_on_device<device_space, device_backend>(device_backend_name);
    check.template run_on_device<device_space, vk::gemm_backend::automatic>("automatic");
    check.template run_on_device<device_space, vk::gemm_backend::portable>("portable");
#endif
  } else {
    check.template run<vk::gemm_backend::automatic>("automatic");
    check.template run<vk::gemm_backend::portable>("portable");
    check.template run<vk::gemm_backend::eigen>("eigen");
#if VITSCALE_HAVE_ONEDNN
    check.template run<vk::gemm_backend::onednn>("onednn");
#endif
  }
}

struct shape {
  int m, k, n;
};
// 1: degenerate; 197 and 257 cross the portable kernel's 96×64 tiles with partial ones; K = 513 takes
// three of its 256-deep steps, the last one 1 deep.
const shape rank2_shapes[] = {{1, 1, 1}, {7, 33, 50}, {197, 50, 257}, {33, 513, 7}};
const gemm_op ops[] = {gemm_op::n, gemm_op::t};
const gemm_epilogue epilogues[] = {gemm_epilogue::none, gemm_epilogue::bias, gemm_epilogue::bias_gelu_tanh,
                                   gemm_epilogue::bias_gelu_erf};
// beta == 0 runs on a NaN-filled C.
const float alpha_beta[][2] = {{1.0f, 0.0f}, {0.7f, 0.0f}, {1.0f, 1.0f}, {-0.5f, 0.25f}};

// Every op combination × every epilogue, alpha/beta cycling so each op pair meets all four.
template <class Space, class TA, class TC>
void sweep(int shapes) {
  std::uint32_t seed = 1;
  for (int si = 0; si < shapes; ++si) {
    const shape& sh = rank2_shapes[si];
    for (int oa = 0; oa < 2; ++oa)
      for (int ob = 0; ob < 2; ++ob)
        for (int e = 0; e < 4; ++e) {
          const float* ab = alpha_beta[(oa * 2 + ob + e) % 4];
          check_every_backend<Space, TA, TC>({0, sh.m, sh.k, sh.n, ops[oa], ops[ob], ab[0], ab[1], epilogues[e]},
                                             seed++);
        }
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("gemm fp32: every backend, op combination, alpha/beta and epilogue", Space, gemm_fp32) {
  sweep<Space, float, float>(4);
}
VITSCALE_ON_HOST_SPACES(gemm_fp32);
#if VITSCALE_TEST_DEVICE_BLAS
TEST_CASE_TEMPLATE_APPLY(gemm_fp32, std::tuple<device_target>);
#endif

TEST_CASE_TEMPLATE_DEFINE("gemm bf16 inputs and bf16 outputs, every backend", Space, gemm_bf16) {
  SUBCASE("bf16 inputs, float output") { sweep<Space, bf16, float>(3); }
  SUBCASE("float inputs, bf16 output") { sweep<Space, float, bf16>(3); }
  SUBCASE("bf16 inputs, bf16 output") { sweep<Space, bf16, bf16>(3); }
  SUBCASE("bf16 bias") {
    check_every_backend<Space, bf16, float, bf16>(
        {0, 50, 33, 197, gemm_op::n, gemm_op::t, 0.5f, 1.0f, gemm_epilogue::bias_gelu_tanh}, 91);
    check_every_backend<Space, bf16, bf16, bf16>(
        {0, 7, 257, 33, gemm_op::n, gemm_op::n, 1.0f, 0.0f, gemm_epilogue::bias}, 92);
  }
}
VITSCALE_ON_HOST_SPACES(gemm_bf16);
#if VITSCALE_TEST_DEVICE_BLAS
TEST_CASE_TEMPLATE_APPLY(gemm_bf16, std::tuple<device_target>);
#endif

TEST_CASE_TEMPLATE_DEFINE("gemm batched [batch, rows, cols], every backend", Space, gemm_batched) {
  // Attention-like shapes: scores Q·Kᵀ (n, t) and context P·V (n, n), plus transposed A.
  check_every_backend<Space, float, float>({3, 50, 64, 197, gemm_op::n, gemm_op::t, 0.125f, 0.0f, gemm_epilogue::none},
                                           11);
  check_every_backend<Space, float, float>({3, 197, 50, 64, gemm_op::n, gemm_op::n, 1.0f, 1.0f, gemm_epilogue::none},
                                           12);
  check_every_backend<Space, float, float>(
      {2, 7, 33, 50, gemm_op::t, gemm_op::t, -0.5f, 0.25f, gemm_epilogue::bias_gelu_erf}, 13);
  check_every_backend<Space, float, float>({1, 1, 1, 1, gemm_op::t, gemm_op::n, 0.7f, 0.0f, gemm_epilogue::bias}, 14);
  check_every_backend<Space, bf16, bf16>({3, 33, 64, 50, gemm_op::n, gemm_op::t, 0.125f, 0.0f, gemm_epilogue::none},
                                         15);
  check_every_backend<Space, bf16, float>(
      {2, 50, 7, 33, gemm_op::t, gemm_op::n, 1.0f, 1.0f, gemm_epilogue::bias_gelu_tanh}, 16);
}
VITSCALE_ON_HOST_SPACES(gemm_batched);
#if VITSCALE_TEST_DEVICE_BLAS
TEST_CASE_TEMPLATE_APPLY(gemm_batched, std::tuple<device_target>);
#endif

TEST_CASE_TEMPLATE_DEFINE("gemm on submatrices: row strides larger than the row, nothing outside written", Space,
                          gemm_strided) {
  check_every_backend<Space, float, float>({0, 50, 33, 7, gemm_op::n, gemm_op::n, 1.0f, 1.0f, gemm_epilogue::none}, 21,
                                           true);
  check_every_backend<Space, float, float>(
      {0, 197, 33, 50, gemm_op::t, gemm_op::t, 0.7f, 0.0f, gemm_epilogue::bias_gelu_erf}, 22, true);
  check_every_backend<Space, bf16, bf16>({0, 33, 50, 257, gemm_op::t, gemm_op::n, 1.0f, 0.25f, gemm_epilogue::bias}, 23,
                                         true);
  check_every_backend<Space, float, float>({2, 7, 50, 33, gemm_op::n, gemm_op::t, 1.0f, 1.0f, gemm_epilogue::none}, 24,
                                           true);
}
VITSCALE_ON_HOST_SPACES(gemm_strided);
#if VITSCALE_TEST_DEVICE_BLAS
TEST_CASE_TEMPLATE_APPLY(gemm_strided, std::tuple<device_target>);
#endif

namespace {
// Fills a View of any space with uniform random numbers through a host mirror (the View itself on the host).
template <class View>
void fill_random_anywhere(const View& v, std::mt19937& rng) {
  const auto host = Kokkos::create_mirror_view(v);
  fill_random(host, rng);
  Kokkos::deep_copy(v, host);
}

template <class Space, class Backend>
bool repeats_bit_for_bit() {
  using matrix = vitscale::matrix_view<float, Space>;
  std::mt19937 rng(5);
  matrix a("a", 197, 257), b("b", 257, 130), c1("c1", 197, 130), c2("c2", 197, 130);
  Kokkos::View<float*, typename Space::memory_space> bias("bias", 130);
  fill_random_anywhere(a, rng);
  fill_random_anywhere(b, rng);
  fill_random_anywhere(bias, rng);
  const Space space;
  vk::gemm(space, gemm_op::n, gemm_op::n, 0.5f, a, b, 0.0f, c1, gemm_epilogue::bias_gelu_tanh, bias, Backend{});
  vk::gemm(space, gemm_op::n, gemm_op::n, 0.5f, a, b, 0.0f, c2, gemm_epilogue::bias_gelu_tanh, bias, Backend{});
  space.fence();
  const auto h1 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), c1);
  const auto h2 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), c2);
  return std::memcmp(h1.data(), h2.data(), h1.span() * sizeof(float)) == 0;
}
}  // namespace

TEST_CASE_TEMPLATE_DEFINE("gemm is deterministic: the same call twice gives the same bits", Space, gemm_repeat) {
  CHECK(repeats_bit_for_bit<Space, vk::gemm_backend::portable>());
  CHECK(repeats_bit_for_bit<Space, vk::gemm_backend::eigen>());
#if VITSCALE_HAVE_ONEDNN
  CHECK(repeats_bit_for_bit<Space, vk::gemm_backend::onednn>());
#endif
}
VITSCALE_ON_HOST_SPACES(gemm_repeat);

#if VITSCALE_TEST_DEVICE_BLAS
TEST_CASE("gemm on the device is deterministic: the same call twice on one stream gives the same bits") {
  CHECK(repeats_bit_for_bit<device_space, device_backend>());
  CHECK(repeats_bit_for_bit<device_space, vk::gemm_backend::portable>());
}
#endif

TEST_CASE_TEMPLATE_DEFINE("gemm rejects bad shapes with vitscale::error", Space, gemm_shapes) {
  using matrix = vitscale::matrix_view<float, Space>;
  using tensor = vitscale::tensor3_view<float, Space>;
  using vector = Kokkos::View<float*, typename Space::memory_space>;
  const Space space;
  matrix a("a", 7, 33), b("b", 33, 50), c("c", 7, 50);
  vector bias("bias", 50);
  const auto call = [&](gemm_op oa, gemm_op ob, const auto& x, const auto& y, const auto& z) {
    vk::gemm(space, oa, ob, 1.0f, x, y, 0.0f, z);
  };
  CHECK_NOTHROW(call(gemm_op::n, gemm_op::n, a, b, c));
  // Inner dimensions: op(A) is [7, 33], op(B) would be [50, 33].
  CHECK_THROWS_AS(call(gemm_op::n, gemm_op::t, a, b, c), vitscale::error);
  CHECK_THROWS_AS(call(gemm_op::t, gemm_op::n, a, b, c), vitscale::error);
  CHECK_THROWS_WITH_AS(call(gemm_op::n, gemm_op::n, a, matrix("b", 34, 50), c),
                       doctest::Contains("inner dimensions differ"), vitscale::error);
  // C of the wrong shape.
  CHECK_THROWS_WITH_AS(call(gemm_op::n, gemm_op::n, a, b, matrix("c", 7, 49)), doctest::Contains("C is [7, 49]"),
                       vitscale::error);
  CHECK_THROWS_AS(call(gemm_op::n, gemm_op::n, a, b, matrix("c", 50, 7)), vitscale::error);
  // Non-contiguous rows: a column-major View, and a subview taking every other column.
  Kokkos::View<float**, Kokkos::LayoutLeft, typename Space::memory_space> left("left", 7, 33);
  CHECK_THROWS_WITH_AS(call(gemm_op::n, gemm_op::n, left, b, c), doctest::Contains("A must have a contiguous"),
                       vitscale::error);
  Kokkos::View<float**, Kokkos::LayoutStride, typename Space::memory_space> every_other(
      c.data(), Kokkos::LayoutStride(7, 50, 25, 2));
  CHECK_THROWS_WITH_AS(call(gemm_op::n, gemm_op::n, a, matrix("b", 33, 25), every_other),
                       doctest::Contains("C must have a contiguous"), vitscale::error);
  // Batched: different batch extents, and C of the wrong batch.
  tensor a3("a3", 2, 7, 33), b3("b3", 3, 33, 50), c3("c3", 2, 7, 50);
  CHECK_THROWS_AS(call(gemm_op::n, gemm_op::n, a3, b3, c3), vitscale::error);
  CHECK_THROWS_AS(call(gemm_op::n, gemm_op::n, a3, tensor("b3", 2, 33, 50), tensor("c3", 3, 7, 50)), vitscale::error);
  CHECK_NOTHROW(call(gemm_op::n, gemm_op::n, a3, tensor("b3", 2, 33, 50), c3));
  // Epilogue: a bias of the wrong length, or none at all.
  CHECK_THROWS_WITH_AS(
      vk::gemm(space, gemm_op::n, gemm_op::n, 1.0f, a, b, 0.0f, c, gemm_epilogue::bias, vector("bias", 49)),
      doctest::Contains("bias is [49]"), vitscale::error);
  CHECK_THROWS_AS(vk::gemm(space, gemm_op::n, gemm_op::n, 1.0f, a, b, 0.0f, c, gemm_epilogue::bias, vector()),
                  vitscale::error);
  CHECK_NOTHROW(vk::gemm(space, gemm_op::n, gemm_op::n, 1.0f, a, b, 0.0f, c, gemm_epilogue::bias, bias));
  space.fence();
}
VITSCALE_ON_HOST_SPACES(gemm_shapes);
#if VITSCALE_TEST_DEVICE_BLAS
TEST_CASE_TEMPLATE_APPLY(gemm_shapes, std::tuple<device_space>);  // automatic: the vendor backend
#endif
