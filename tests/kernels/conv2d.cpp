// 2-D convolution (kernels/conv2d.hpp): forward, backward_data and backward_weights (+ dbias) against a
// double-precision direct reference, on every host space and every backend, in fp32 and bf16 (and the mixed
// input/output types), with odd sizes, asymmetric SAME padding, groups, depthwise, 1×1, beta accumulation and
// poisoned outputs; the backward against finite differences of the forward in double; the padding helpers against
// timm's formulas worked by hand; strided Views (channel slices); PyTorch's values for timm's Conv2dSame
// (tests/reference/conv2d_reference.py); bad arguments.
#include <support/errors.hpp>
#include <support/testing.hpp>

#include <vitscale/kernels/conv2d.hpp>

#include <cstddef>
#include <random>
#include <string>
#include <vector>

namespace vs = vitscale;
namespace vk = vitscale::kernels;

namespace {

template <class T, class Space>
using ten4 = Kokkos::View<T****, Kokkos::LayoutRight, typename Space::memory_space>;

struct conv_case {
  const char* name;
  int batch, h, w, cin, cout;
  vk::conv2d_geometry g;
};

// The direct definitions, in double, on row-major vectors (x, dx: [B, H, W, Cin]; w, dw: [Cout, Cin/g, KH, KW];
// y, dy: [B, Ho, Wo, Cout]). visit(b, ho, wo, co, hi, wi, ci, x index, w index, y index) runs over every
// (output, tap) pair whose input is inside the image.
template <class F>
void for_each_tap(const conv_case& c, F&& visit) {
  const auto& g = c.g;
  const int ho_n = g.out_h(c.h), wo_n = g.out_w(c.w), cin_g = c.cin / g.groups, cout_g = c.cout / g.groups;
  for (int b = 0; b < c.batch; ++b)
    for (int ho = 0; ho < ho_n; ++ho)
      for (int wo = 0; wo < wo_n; ++wo)
        for (int co = 0; co < c.cout; ++co)
          for (int ci = 0; ci < cin_g; ++ci)
            for (int kh = 0; kh < g.kernel_h; ++kh)
              for (int kw = 0; kw < g.kernel_w; ++kw) {
                const int hi = ho * g.stride_h - g.pad_top + kh, wi = wo * g.stride_w - g.pad_left + kw;
                if (hi < 0 || hi >= c.h || wi < 0 || wi >= c.w) continue;
                const int cx = (co / cout_g) * cin_g + ci;
                const std::size_t xi = ((std::size_t(b) * c.h + hi) * c.w + wi) * c.cin + cx;
                const std::size_t wix = ((std::size_t(co) * cin_g + ci) * g.kernel_h + kh) * g.kernel_w + kw;
                const std::size_t yi = ((std::size_t(b) * ho_n + ho) * wo_n + wo) * c.cout + co;
                visit(xi, wix, yi);
              }
}

std::size_t out_size(const conv_case& c) {
  return std::size_t(c.batch) * c.g.out_h(c.h) * c.g.out_w(c.w) * c.cout;
}

template <class Backend>
const char* backend_name() {
  if constexpr (std::is_same<Backend, vk::conv_backend::portable>::value) return "portable";
  else if constexpr (std::is_same<Backend, vk::conv_backend::onednn>::value) return "onednn";
  else return "automatic";
}

// Runs the three kernels of case `c` with inputs TI and outputs TO through `Backend` on `Space` and compares
// them with the double reference. beta == 0: outputs poisoned with NaN first; beta != 0: random outputs that are
// accumulated into.
template <class Backend, class TI, class TO, class Space>
void check_case(const conv_case& c, float beta, double tol) {
  INFO(c.name << ", backend " << backend_name<Backend>() << ", inputs " << vs::test::type_name<TI>() << ", outputs "
              << vs::test::type_name<TO>() << ", beta " << beta);
  const auto& g = c.g;
  const int ho = g.out_h(c.h), wo = g.out_w(c.w);
  std::mt19937 rng(static_cast<unsigned>(c.batch * 7919 + c.h * 131 + c.w * 17 + c.cin * 5 + c.cout + g.groups));
  ten4<TI, Space> x("x", c.batch, c.h, c.w, c.cin), w("w", c.cout, c.cin / g.groups, g.kernel_h, g.kernel_w),
      dy("dy", c.batch, ho, wo, c.cout);
  ten4<TO, Space> y("y", c.batch, ho, wo, c.cout), dx("dx", c.batch, c.h, c.w, c.cin),
      dw("dw", c.cout, c.cin / g.groups, g.kernel_h, g.kernel_w);
  vs::test::vec<TO, Space> bias("bias", c.cout), dbias("dbias", c.cout);
  const auto xs = vs::test::fill_random(x, rng, -1.0, 1.0);
  const auto ws = vs::test::fill_random(w, rng, -1.0, 1.0);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  const auto bs = vs::test::fill_random(bias, rng, -1.0, 1.0);
  std::vector<double> y0(y.span(), 0.0), dx0(dx.span(), 0.0), dw0(dw.span(), 0.0), db0(dbias.span(), 0.0);
  if (beta == 0.0f) {
    vs::test::poison(y);
    vs::test::poison(dx);
    vs::test::poison(dw);
    vs::test::poison(dbias);
  } else {
    y0 = vs::test::fill_random(y, rng, -1.0, 1.0);
    dx0 = vs::test::fill_random(dx, rng, -1.0, 1.0);
    dw0 = vs::test::fill_random(dw, rng, -1.0, 1.0);
    db0 = vs::test::fill_random(dbias, rng, -1.0, 1.0);
  }
  const Space space;
  vk::conv2d_forward<Backend>(space, g, x, w, bias, y, beta);
  vk::conv2d_backward_data<Backend>(space, g, dy, w, dx, beta);
  vk::conv2d_backward_weights<Backend>(space, g, x, dy, dw, dbias, beta);
  space.fence();

  std::vector<double> want_y(out_size(c)), want_dx(xs.size()), want_dw(ws.size()), want_db(bs.size());
  for (std::size_t k = 0; k < want_y.size(); ++k) want_y[k] = bs[k % std::size_t(c.cout)] + beta * y0[k];
  for (std::size_t k = 0; k < want_dx.size(); ++k) want_dx[k] = beta * dx0[k];
  for (std::size_t k = 0; k < want_dw.size(); ++k) want_dw[k] = beta * dw0[k];
  for (std::size_t k = 0; k < want_db.size(); ++k) want_db[k] = beta * db0[k];
  for_each_tap(c, [&](std::size_t xi, std::size_t wi, std::size_t yi) {
    want_y[yi] += xs[xi] * ws[wi];
    want_dx[xi] += dys[yi] * ws[wi];
    want_dw[wi] += dys[yi] * xs[xi];
  });
  for (std::size_t k = 0; k < dys.size(); ++k) want_db[k % std::size_t(c.cout)] += dys[k];
  vs::test::check_close(vs::test::read(y), want_y, tol, "y");
  vs::test::check_close(vs::test::read(dx), want_dx, tol, "dx");
  vs::test::check_close(vs::test::read(dw), want_dw, tol, "dw");
  vs::test::check_close(vs::test::read(dbias), want_db, tol, "dbias");
}

const std::vector<conv_case>& cases() {
  static const std::vector<conv_case> all{
      {"3x3 stride 1 symmetric, 7x5", 2, 7, 5, 6, 4, vk::conv2d_symmetric(3, 1)},
      {"3x3 stride 2 SAME on 9x8 (asymmetric padding)", 2, 9, 8, 6, 4, vk::conv2d_same(3, 2, 9, 8)},
      {"3x3 stride 2 symmetric, 3 input channels (the stem)", 2, 9, 10, 3, 8, vk::conv2d_symmetric(3, 2)},
      {"3x3 SAME, groups = 2", 2, 6, 7, 6, 4, vk::conv2d_same(3, 1, 6, 7, 2)},
      {"3x3 SAME stride 2, depthwise (groups = Cin)", 2, 7, 6, 5, 10, vk::conv2d_same(3, 2, 7, 6, 5)},
      {"1x1 stride 1", 3, 5, 4, 7, 9, vk::conv2d_symmetric(1, 1)},
      {"1x1 stride 2", 2, 5, 6, 4, 6, vk::conv2d_symmetric(1, 2)},
      {"1x1 on a 1x1 image", 3, 1, 1, 5, 3, vk::conv2d_symmetric(1, 1)},
      {"2x3 kernel, 2x1 stride, uneven padding", 1, 6, 5, 4, 4, vk::conv2d_geometry{2, 3, 2, 1, 1, 0, 2, 1, 2}},
  };
  return all;
}

constexpr double fp32_tol = 2e-5;  // float inputs and outputs, float sums of at most ~150 products
constexpr double bf16_tol = 1e-2;  // a bf16 output: one rounding, 2^-8 relative, on float sums of exact products
constexpr double bf16_in_fp32_out_tol = 2e-5;  // bf16 inputs (exact in the reference), float sums and outputs

template <class Backend, class Space>
void check_all_cases() {
  for (const conv_case& c : cases()) {
    for (float beta : {0.0f, 1.0f}) {
      check_case<Backend, float, float, Space>(c, beta, fp32_tol);
      check_case<Backend, vs::bf16, vs::bf16, Space>(c, beta, bf16_tol);
    }
  }
  // The mixed types, on a few cases: bf16 inputs with float outputs (a float gradient arena), float inputs with
  // bf16 outputs.
  for (std::size_t k : {std::size_t(1), std::size_t(3)}) {
    for (float beta : {0.0f, 0.5f}) {
      check_case<Backend, vs::bf16, float, Space>(cases()[k], beta, bf16_in_fp32_out_tol);
      check_case<Backend, float, vs::bf16, Space>(cases()[k], beta, bf16_tol);
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("conv2d matches a double reference: portable backend, host and device loops", Space,
                          conv_portable_id) {
  check_all_cases<vk::conv_backend::portable, Space>();
  // The loops GPUs run (a thread per element), forced on the host.
  const vk::conv2d_detail::portable_team_loops_for_test force;
  check_all_cases<vk::conv_backend::portable, Space>();
}
VITSCALE_ON_HOST_SPACES(conv_portable_id);

TEST_CASE_TEMPLATE_DEFINE("conv2d matches a double reference: automatic backend", Space, conv_automatic_id) {
  check_all_cases<vk::conv_backend::automatic, Space>();
}
VITSCALE_ON_HOST_SPACES(conv_automatic_id);

#if VITSCALE_CONV2D_ONEDNN
TEST_CASE_TEMPLATE_DEFINE("conv2d matches a double reference: oneDNN, native and with bf16 widened to float", Space,
                          conv_onednn_id) {
  check_all_cases<vk::conv_backend::onednn, Space>();
  // The path of a CPU where oneDNN has no bf16 convolution (x86 without AVX-512, Arm), forced.
  const vk::conv2d_detail::widen_bf16_for_test force;
  for (const conv_case& c : cases())
    for (float beta : {0.0f, 1.0f}) {
      check_case<vk::conv_backend::onednn, vs::bf16, vs::bf16, Space>(c, beta, bf16_tol);
      check_case<vk::conv_backend::onednn, vs::bf16, float, Space>(c, beta, bf16_in_fp32_out_tol);
    }
}
VITSCALE_ON_HOST_SPACES(conv_onednn_id);
#endif

TEST_CASE_TEMPLATE_DEFINE("conv2d backward is the gradient of forward (finite differences in double)", Space,
                          conv_fd_id) {
  using D = double;
  for (const conv_case& c : {conv_case{"3x3 SAME stride 2, groups 2", 2, 5, 4, 4, 6, vk::conv2d_same(3, 2, 5, 4, 2)},
                             conv_case{"2x3 kernel, uneven padding", 1, 4, 5, 2, 3,
                                       vk::conv2d_geometry{2, 3, 1, 2, 0, 1, 2, 0, 1}}}) {
    INFO(c.name);
    const auto& g = c.g;
    const int ho = g.out_h(c.h), wo = g.out_w(c.w);
    std::mt19937 rng(7);
    ten4<D, Space> x("x", c.batch, c.h, c.w, c.cin), w("w", c.cout, c.cin / g.groups, g.kernel_h, g.kernel_w),
        y("y", c.batch, ho, wo, c.cout), r("r", c.batch, ho, wo, c.cout);
    ten4<D, Space> dx("dx", c.batch, c.h, c.w, c.cin), dw("dw", c.cout, c.cin / g.groups, g.kernel_h, g.kernel_w);
    vs::test::vec<D, Space> bias("bias", c.cout), dbias("dbias", c.cout);
    vs::test::fill_random(x, rng, -1.0, 1.0);
    vs::test::fill_random(w, rng, -1.0, 1.0);
    vs::test::fill_random(bias, rng, -1.0, 1.0);
    const auto rs = vs::test::fill_random(r, rng, -1.0, 1.0);
    const Space space;
    // loss = Σ r·y, so dloss/dy = r.
    const auto loss = [&] {
      vk::conv2d_forward(space, g, x, w, bias, y);
      space.fence();
      const auto ys = vs::test::read(y);
      double l = 0;
      for (std::size_t k = 0; k < ys.size(); ++k) l += rs[k] * ys[k];
      return l;
    };
    vk::conv2d_backward_data(space, g, r, w, dx);
    vk::conv2d_backward_weights(space, g, x, r, dw, dbias);
    space.fence();
    constexpr double h = 1e-3, tol = 1e-9;  // the loss is linear in each input: central differences are exact
                                            // up to double rounding
    vs::test::check_close(vs::test::read(dx), vs::test::numeric_gradient(x, loss, h), tol, "dx");
    vs::test::check_close(vs::test::read(dw), vs::test::numeric_gradient(w, loss, h), tol, "dw");
    vs::test::check_close(vs::test::read(dbias), vs::test::numeric_gradient(bias, loss, h), tol, "dbias");
  }
}
VITSCALE_ON_HOST_SPACES(conv_fd_id);

TEST_CASE_TEMPLATE_DEFINE("conv2d is deterministic: the same call twice gives the same bits", Space, conv_repeat_id) {
  const conv_case c{"3x3 SAME stride 2, groups 2", 3, 11, 9, 8, 12, vk::conv2d_same(3, 2, 11, 9, 2)};
  const auto run = [&](auto backend) {
    using Backend = decltype(backend);
    const auto& g = c.g;
    std::mt19937 rng(3);
    ten4<float, Space> x("x", c.batch, c.h, c.w, c.cin), w("w", c.cout, c.cin / 2, 3, 3),
        y("y", c.batch, g.out_h(c.h), g.out_w(c.w), c.cout), dx("dx", c.batch, c.h, c.w, c.cin),
        dw("dw", c.cout, c.cin / 2, 3, 3);
    vs::test::vec<float, Space> bias("bias", c.cout), dbias("dbias", c.cout);
    vs::test::fill_random(x, rng, -1.0, 1.0);
    vs::test::fill_random(w, rng, -1.0, 1.0);
    const Space space;
    vk::conv2d_forward<Backend>(space, g, x, w, bias, y);
    vk::conv2d_backward_data<Backend>(space, g, y, w, dx);
    vk::conv2d_backward_weights<Backend>(space, g, x, y, dw, dbias);
    space.fence();
    auto bits = vs::test::bytes(y);
    for (const auto& more : {vs::test::bytes(dx), vs::test::bytes(dw), vs::test::bytes(dbias)})
      bits.insert(bits.end(), more.begin(), more.end());
    return bits;
  };
  CHECK(run(vk::conv_backend::portable{}) == run(vk::conv_backend::portable{}));
  CHECK(run(vk::conv_backend::automatic{}) == run(vk::conv_backend::automatic{}));
}
VITSCALE_ON_HOST_SPACES(conv_repeat_id);

TEST_CASE("conv2d_symmetric and conv2d_same give timm's paddings (worked by hand)") {
  // timm get_padding(k, s) = ((s − 1) + (k − 1)) // 2 on each side.
  constexpr vk::conv2d_geometry s31 = vk::conv2d_symmetric(3, 1), s32 = vk::conv2d_symmetric(3, 2, 4),
                                s11 = vk::conv2d_symmetric(1, 1), s12 = vk::conv2d_symmetric(1, 2),
                                s72 = vk::conv2d_symmetric(7, 2);
  static_assert(s31.pad_top == 1 && s31.pad_bottom == 1 && s31.pad_left == 1 && s31.pad_right == 1);
  static_assert(s32.pad_top == 1 && s32.pad_right == 1 && s32.groups == 4 && s32.stride_h == 2);  // (1 + 2) // 2
  static_assert(s11.pad_top == 0 && s11.pad_left == 0);
  static_assert(s12.pad_top == 0 && s12.pad_right == 0);  // (1 + 0) // 2
  static_assert(s72.pad_top == 3);                        // (1 + 6) // 2
  static_assert(s32.out_h(224) == 112 && s31.out_w(7) == 7 && s72.out_h(224) == 112);
  // timm get_same_padding(x, k, s) = max((ceil(x / s) − 1)·s + k − x, 0); top = total // 2, bottom = the rest.
  // 3x3 stride 2 on 9x8: H: (5 − 1)·2 + 3 − 9 = 2 -> (1, 1); W: (4 − 1)·2 + 3 − 8 = 1 -> (0, 1).
  constexpr vk::conv2d_geometry a = vk::conv2d_same(3, 2, 9, 8);
  static_assert(a.pad_top == 1 && a.pad_bottom == 1 && a.pad_left == 0 && a.pad_right == 1);
  static_assert(a.out_h(9) == 5 && a.out_w(8) == 4);
  // 3x3 stride 2 on 224x224 (NFNet's stem): (112 − 1)·2 + 3 − 224 = 1 -> (0, 1) on both.
  constexpr vk::conv2d_geometry stem = vk::conv2d_same(3, 2, 224, 224);
  static_assert(stem.pad_top == 0 && stem.pad_bottom == 1 && stem.pad_left == 0 && stem.pad_right == 1);
  static_assert(stem.out_h(224) == 112);
  // 3x3 stride 1 on 7x5: 7 − 1 + 3 − 7 = 2 -> (1, 1) on both.
  constexpr vk::conv2d_geometry b = vk::conv2d_same(3, 1, 7, 5);
  static_assert(b.pad_top == 1 && b.pad_bottom == 1 && b.pad_left == 1 && b.pad_right == 1);
  // 1x1 stride 2 on 7x6: H: (4 − 1)·2 + 1 − 7 = 0; W: (3 − 1)·2 + 1 − 6 = −1 -> 0.
  constexpr vk::conv2d_geometry c = vk::conv2d_same(1, 2, 7, 6);
  static_assert(c.pad_top == 0 && c.pad_bottom == 0 && c.pad_left == 0 && c.pad_right == 0);
  // 4x4 stride 4 on 10x10 (a patchify stem): (3 − 1)·4 + 4 − 10 = 2 -> (1, 1).
  constexpr vk::conv2d_geometry d = vk::conv2d_same(4, 4, 10, 10, 1);
  static_assert(d.pad_top == 1 && d.pad_bottom == 1 && d.out_h(10) == 3);
  CHECK(a.out_w(8) == 4);
}

TEST_CASE_TEMPLATE_DEFINE("conv2d rejects bad arguments with vitscale::error", Space, conv_errors_id) {
  using V = ten4<float, Space>;
  const Space s;
  const vk::conv2d_geometry g = vk::conv2d_symmetric(3, 1, 2);
  V x("x", 2, 5, 5, 4), w("w", 6, 2, 3, 3), y("y", 2, 5, 5, 6);
  vs::test::vec<float, Space> bias("bias", 6), none;
  CHECK_NOTHROW(vk::conv2d_forward(s, g, x, w, bias, y));
  CHECK_NOTHROW(vk::conv2d_forward(s, g, x, w, none, y));
  // Geometry.
  CHECK_ERROR(vk::conv2d_forward(s, vk::conv2d_geometry{0, 3, 1, 1, 1, 1, 1, 1, 2}, x, w, bias, y),
              "conv2d_forward", "kernel is 0x3", "positive");
  CHECK_ERROR(vk::conv2d_forward(s, vk::conv2d_geometry{3, 3, 1, 0, 1, 1, 1, 1, 2}, x, w, bias, y),
              "stride is 1x0", "positive");
  CHECK_ERROR(vk::conv2d_forward(s, vk::conv2d_geometry{3, 3, 1, 1, -1, 1, 1, 1, 2}, x, w, bias, y), "padding",
              "negative");
  CHECK_ERROR(vk::conv2d_forward(s, vk::conv2d_geometry{3, 3, 1, 1, 1, 1, 1, 1, 0}, x, w, bias, y), "0 groups");
  // Channels not divisible by groups.
  CHECK_ERROR(vk::conv2d_forward(s, vk::conv2d_symmetric(3, 1, 3), x, w, bias, y), "x has 4 channels",
              "3 groups do not divide");
  V w5("w5", 5, 2, 3, 3), y5("y5", 2, 5, 5, 5);
  CHECK_ERROR(vk::conv2d_forward(s, g, x, w5, none, y5), "5 output channels", "2 groups do not divide");
  // Wrong extents of w, y, bias.
  V w_bad("w", 6, 4, 3, 3), y_bad("y", 2, 4, 5, 6);
  CHECK_ERROR(vk::conv2d_forward(s, g, x, w_bad, bias, y), "w is [6, 4, 3, 3]", "expected [6, 2, 3, 3]");
  CHECK_ERROR(vk::conv2d_forward(s, g, x, w, bias, y_bad), "y is [2, 4, 5, 6]", "expected [2, 5, 5, 6]");
  vs::test::vec<float, Space> bias5("bias", 5);
  CHECK_ERROR(vk::conv2d_forward(s, g, x, w, bias5, y), "bias is [5]", "expected [6]");
  // An input smaller than the kernel.
  V tiny("tiny", 1, 2, 2, 4), ty("ty", 1, 1, 1, 6);
  CHECK_ERROR(vk::conv2d_forward(s, vk::conv2d_geometry{3, 3, 1, 1, 0, 0, 0, 0, 2}, tiny, w, none, ty),
              "smaller than the 3x3 kernel");
  // Backward.
  CHECK_ERROR(vk::conv2d_backward_data(s, g, y_bad, w, x), "conv2d_backward_data", "dy is [2, 4, 5, 6]");
  CHECK_ERROR(vk::conv2d_backward_data(s, g, y, w_bad, x), "conv2d_backward_data", "w is [6, 4, 3, 3]");
  CHECK_ERROR(vk::conv2d_backward_weights(s, g, x, y, w_bad, bias), "conv2d_backward_weights", "dw is [6, 4, 3, 3]");
  CHECK_ERROR(vk::conv2d_backward_weights(s, g, x, y_bad, w, bias), "conv2d_backward_weights", "dy is [2, 4, 5, 6]");
  CHECK_ERROR(vk::conv2d_backward_weights(s, g, x, y, w, bias5), "dbias is [5]", "expected [6]");
  CHECK_ERROR(vk::conv2d_backward_weights(s, vk::conv2d_symmetric(3, 1, 3), x, y, w, bias), "3 groups do not divide");
  s.fence();
}
VITSCALE_ON_HOST_SPACES(conv_errors_id);

namespace {

// Every backend on strided Views: x, dy and dx are channel slices of wider NHWC tensors, y a channel slice, dw a
// slice of a larger weight tensor's output channels. The result matches the double reference, and nothing
// outside the slices is written.
template <class Backend, class Space>
void check_strided() {
  INFO("backend " << backend_name<Backend>());
  const conv_case c{"3x3 SAME stride 2, groups 2, on slices", 2, 7, 6, 4, 6, vk::conv2d_same(3, 2, 7, 6, 2)};
  const auto& g = c.g;
  const int ho = g.out_h(c.h), wo = g.out_w(c.w), cin_g = c.cin / g.groups;
  const auto all = Kokkos::ALL;
  using P = std::pair<int, int>;
  std::mt19937 rng(11);
  ten4<float, Space> big_x("big_x", c.batch, c.h, c.w, c.cin + 3), big_dy("big_dy", c.batch, ho, wo, c.cout + 1);
  ten4<float, Space> big_y("big_y", c.batch, ho, wo, c.cout + 2), big_dx("big_dx", c.batch, c.h, c.w, c.cin + 2),
      big_dw("big_dw", c.cout + 3, cin_g, 3, 3);
  ten4<float, Space> w("w", c.cout, cin_g, 3, 3), x_c("x_c", c.batch, c.h, c.w, c.cin),
      dy_c("dy_c", c.batch, ho, wo, c.cout);
  vs::test::vec<float, Space> bias("bias", c.cout), dbias("dbias", c.cout);
  vs::test::fill_random(big_x, rng, -1.0, 1.0);
  vs::test::fill_random(big_dy, rng, -1.0, 1.0);
  const auto ws = vs::test::fill_random(w, rng, -1.0, 1.0);
  const auto bs = vs::test::fill_random(bias, rng, -1.0, 1.0);
  for (const auto& v : {big_y, big_dx, big_dw}) Kokkos::deep_copy(v, 7.0f);
  const auto x = Kokkos::subview(big_x, all, all, all, P(2, 2 + c.cin));
  const auto dy = Kokkos::subview(big_dy, all, all, all, P(1, 1 + c.cout));
  const auto y = Kokkos::subview(big_y, all, all, all, P(1, 1 + c.cout));
  const auto dx = Kokkos::subview(big_dx, all, all, all, P(0, c.cin));
  const auto dw = Kokkos::subview(big_dw, P(2, 2 + c.cout), all, all, all);
  const Space space;
  vk::conv2d_forward<Backend>(space, g, x, w, bias, y);
  vk::conv2d_backward_data<Backend>(space, g, dy, w, dx);
  vk::conv2d_backward_weights<Backend>(space, g, x, dy, dw, dbias);
  space.fence();
  // The reference on contiguous copies of the inputs; the outputs copied out of their slices.
  Kokkos::deep_copy(x_c, x);
  Kokkos::deep_copy(dy_c, dy);
  const auto xs = vs::test::read(x_c), dys = vs::test::read(dy_c);
  std::vector<double> want_y(out_size(c)), want_dx(xs.size(), 0.0), want_dw(ws.size(), 0.0);
  for (std::size_t k = 0; k < want_y.size(); ++k) want_y[k] = bs[k % std::size_t(c.cout)];
  for_each_tap(c, [&](std::size_t xi, std::size_t wi, std::size_t yi) {
    want_y[yi] += xs[xi] * ws[wi];
    want_dx[xi] += dys[yi] * ws[wi];
    want_dw[wi] += dys[yi] * xs[xi];
  });
  ten4<float, Space> y_c("y_c", c.batch, ho, wo, c.cout), dx_c("dx_c", c.batch, c.h, c.w, c.cin),
      dw_c("dw_c", c.cout, cin_g, 3, 3);
  Kokkos::deep_copy(y_c, y);
  Kokkos::deep_copy(dx_c, dx);
  Kokkos::deep_copy(dw_c, dw);
  vs::test::check_close(vs::test::read(y_c), want_y, fp32_tol, "y");
  vs::test::check_close(vs::test::read(dx_c), want_dx, fp32_tol, "dx");
  vs::test::check_close(vs::test::read(dw_c), want_dw, fp32_tol, "dw");
  // Outside the slices: still 7.
  const auto outside = [](const std::vector<double>& v, std::size_t inner, std::size_t lo, std::size_t hi) {
    std::size_t touched = 0;
    for (std::size_t k = 0; k < v.size(); ++k)
      if ((k % inner < lo || k % inner >= hi) && v[k] != 7.0) ++touched;
    return touched;
  };
  CHECK(outside(vs::test::read(big_y), std::size_t(c.cout + 2), 1, std::size_t(1 + c.cout)) == 0);
  CHECK(outside(vs::test::read(big_dx), std::size_t(c.cin + 2), 0, std::size_t(c.cin)) == 0);
  const std::size_t per_out = std::size_t(cin_g) * 9;
  CHECK(outside(vs::test::read(big_dw), std::size_t(c.cout + 3) * per_out, 2 * per_out, (2 + c.cout) * per_out) == 0);
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("conv2d on strided Views (channel slices), every backend; nothing outside written", Space,
                          conv_strided_id) {
  check_strided<vk::conv_backend::portable, Space>();
  check_strided<vk::conv_backend::automatic, Space>();
}
VITSCALE_ON_HOST_SPACES(conv_strided_id);

namespace {

// The integers of tests/reference/conv2d_reference.py through `Backend`, every result compared exactly (integers
// far below 2^24 are exact in float).
template <class Backend, class Space>
void check_torch() {
  INFO("backend " << backend_name<Backend>());
  const std::vector<double> torch_y{
      8, -14, -11, 7, 6, 3, 1, -1, 2, 13, 13, -13, 15, -23, -9, 17, -4, 5, 0, -2, 0, 4, 12, -18
  };
  const std::vector<double> torch_dx{
      -1, 4, -2, -1, -6, -1, 2, -2, 3, -10, 7, 8, 2, -1, -9, 6, 2, 0, 2, 2, 4, 2, -3, 2, 3, 8, 2, -8, 0, 2, 10, 5,
      -1, 2, 0, -1, -4, -1, 1, 0, 2, -10, -4, 0, 4, -1, 4, -6, 2, 1, 1, 2, 3, 2, -5, 1, -6, 8, 3, -3, -15, -5, 1,
      4, -1, 0, 2, -1, -2, -1, 0, 2, 8, 4, -1, -1, 6, 6, 3, -4
  };
  const std::vector<double> torch_dw{
      -10, -9, 3, 8, 8, 3, -9, -10, 6, -1, 7, 0, 8, -13, -3, 3, 9, 1, 10, -15, 0, 10, -8, 2, -10, -9, 3, 9, -9,
      -1, 9, 12, -1, -1, 7, 0, -6, -1, -1, 8, -14, 1, 8, -10, -2, -10, 9, 0, 6, -9, 1, 7, 10, -3, -6, 1, 0, 8, 3,
      -1, -6, -1, -1, -6, 8, 3, -2, 0, 2, -10, 9, 0
  };
  const std::vector<double> torch_dbias{0, -1, -2, -3};
  const vk::conv2d_geometry g = vk::conv2d_same(3, 2, 5, 4, 2);
  REQUIRE((g.pad_top == 1 && g.pad_bottom == 1 && g.pad_left == 0 && g.pad_right == 1));
  ten4<float, Space> x("x", 1, 5, 4, 4), w("w", 4, 2, 3, 3), y("y", 1, 3, 2, 4), r("r", 1, 3, 2, 4),
      dx("dx", 1, 5, 4, 4), dw("dw", 4, 2, 3, 3);
  vs::test::vec<float, Space> bias("bias", 4), dbias("dbias", 4);
  const auto fill = [](const auto& v, auto value) {
    auto host = Kokkos::create_mirror_view(v);
    for (std::size_t k = 0; k < v.span(); ++k) host.data()[k] = static_cast<float>(value(int(k)));
    Kokkos::deep_copy(v, host);
  };
  fill(x, [](int k) { return k % 7 - 3; });  // NHWC, as the script lays out its NCHW tensor
  fill(w, [](int k) { return k % 5 - 2; });  // OIHW, as PyTorch stores it
  fill(r, [](int k) { return k % 7 - 3; });
  const float b[4] = {1, -1, 2, 0};
  fill(bias, [&](int k) { return b[k]; });
  const Space space;
  vk::conv2d_forward<Backend>(space, g, x, w, bias, y);
  vk::conv2d_backward_data<Backend>(space, g, r, w, dx);
  vk::conv2d_backward_weights<Backend>(space, g, x, r, dw, dbias);
  space.fence();
  CHECK(vs::test::read(y) == torch_y);
  CHECK(vs::test::read(dx) == torch_dx);
  CHECK(vs::test::read(dw) == torch_dw);
  CHECK(vs::test::read(dbias) == torch_dbias);
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("conv2d gives PyTorch's values for timm's Conv2dSame (3x3, stride 2, groups 2, 5x4)", Space,
                          conv_torch_id) {
  check_torch<vk::conv_backend::portable, Space>();
  check_torch<vk::conv_backend::automatic, Space>();
}
VITSCALE_ON_HOST_SPACES(conv_torch_id);
