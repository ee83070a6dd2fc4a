// NFNet's scaled weight-standardised convolution against timm (ScaledStdConv2dSame with a grouped, strided
// kernel on an odd image; the stem's first convolution; ScaledStdConv2d 1×1 with gamma), golden files from
// tests/reference/nfnet_reference.py: the output and every gradient (input, weight, gain, bias), in fp32 and with
// bf16 operands (the bf16 policy's convolution), on every host space.
#include <doctest/doctest.h>
#include <support/spaces.hpp>
#include <support/testing.hpp>

#include <vitscale/io/safetensors.hpp>
#include <vitscale/model/layers/std_conv.hpp>

#include <string>
#include <vector>

namespace vs = vitscale;
namespace md = vitscale::model_detail;

namespace {

struct conv_golden {
  explicit conv_golden(const std::string& prefix)
      : prefix_(prefix), file_(std::string(VITSCALE_TEST_GOLDEN_DIR) + "/nfnet/std_conv.safetensors") {}
  std::vector<double> get(const std::string& name) {
    const auto& e = file_.entry(prefix_ + "." + name);
    std::vector<float> v(static_cast<std::size_t>(e.numel()));
    file_.read(prefix_ + "." + name, v.data(), v.size());
    return {v.begin(), v.end()};
  }
  std::vector<std::int64_t> shape(const std::string& name) { return file_.entry(prefix_ + "." + name).shape; }

 private:
  std::string prefix_;
  vs::io::safetensors_reader file_;
};

template <class T, class Space>
using ten4 = Kokkos::View<T****, Kokkos::LayoutRight, typename Space::memory_space>;

template <class V>
void upload(const V& v, const std::vector<double>& values) {
  REQUIRE(v.size() == values.size());
  auto host = Kokkos::create_mirror_view(v);
  for (std::size_t k = 0; k < values.size(); ++k) host.data()[k] = typename V::value_type(float(values[k]));
  Kokkos::deep_copy(v, host);
}

template <class V>
V make4(const std::string& label, const std::vector<std::int64_t>& s) {
  REQUIRE(s.size() == 4);
  return V(label, s[0], s[1], s[2], s[3]);
}

// T: the convolution's operand type (x, ŵ, dy, dx); the master weight, gain, bias and their gradients float.
template <class T, class Space>
void check_case(const std::string& prefix, md::std_conv_spec spec, double tol) {
  INFO(prefix << ", operands " << vs::test::type_name<T>());
  conv_golden g(prefix);
  const auto ws = g.shape("weight");
  const auto out = static_cast<std::size_t>(ws[0]);
  auto weight = make4<ten4<float, Space>>("weight", ws);
  auto dweight = make4<ten4<float, Space>>("dweight", ws);
  auto dw_hat = make4<ten4<float, Space>>("dw_hat", ws);
  auto w_hat = make4<ten4<T, Space>>("w_hat", ws);
  vs::test::vec<float, Space> gain("gain", out), bias("bias", out), dgain("dgain", out), dbias("dbias", out);
  vs::test::vec<float, Space> mean("mean", out), rstd("rstd", out);
  auto x = make4<ten4<T, Space>>("x", g.shape("input"));
  auto dx = make4<ten4<T, Space>>("dx", g.shape("input"));
  auto y = make4<ten4<T, Space>>("y", g.shape("output"));
  auto dy = make4<ten4<T, Space>>("dy", g.shape("output"));
  upload(weight, g.get("weight"));
  upload(gain, g.get("gain"));
  upload(bias, g.get("bias"));
  upload(x, g.get("input"));
  upload(dy, g.get("probe"));
  for (auto v : {dx, y}) vs::test::poison(v);
  for (auto v : {dgain, dbias}) vs::test::poison(v);
  vs::test::poison(dweight);

  const Space space;
  md::std_conv_forward(space, spec, weight, gain, bias, x, w_hat, mean, rstd, y);
  md::std_conv_backward(space, spec, weight, gain, x, w_hat, mean, rstd, dy, dx, dw_hat, dweight, dgain, dbias);
  space.fence();
  vs::test::check_close(vs::test::read(y), g.get("output"), tol, "output");
  vs::test::check_close(vs::test::read(dx), g.get("grad.input"), tol, "grad.input");
  vs::test::check_close(vs::test::read(dweight), g.get("grad.weight"), tol, "grad.weight");
  vs::test::check_close(vs::test::read(dgain), g.get("grad.gain"), tol, "grad.gain");
  vs::test::check_close(vs::test::read(dbias), g.get("grad.bias"), tol, "grad.bias");
}

template <class T, class Space>
void check_all(double tol) {
  check_case<T, Space>("same_grouped", {6, 8, 3, 2, 2, vs::nfnet_padding::same}, tol);
  check_case<T, Space>("stem", {3, 16, 3, 2, 1, vs::nfnet_padding::same}, tol);
  check_case<T, Space>("symmetric_1x1", {8, 4, 1, 1, 1, vs::nfnet_padding::symmetric, 1.7}, tol);
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("std_conv matches timm's ScaledStdConv2d(Same), output and every gradient", Space,
                          std_conv_timm_id) {
  // fp32: float sums of at most 54 products per output against PyTorch's float (2e-6 passes on AVX-512 with
  // oneDNN; the margin is for other instruction sets and the portable order).
  check_all<float, Space>(1e-5);
  // bf16 operands (x, ŵ, dy; y and dx rounded to bf16): every operand rounded to 2^-8 relative, sums in float;
  // the worst element is 1.3e-2 off relative to the tensor's RMS.
  check_all<vs::bf16, Space>(2e-2);
}
VITSCALE_ON_HOST_SPACES(std_conv_timm_id);

TEST_CASE("std_conv's spec: fan-in, timm's scale and the geometry of each padding") {
  const md::std_conv_spec grouped{768, 768, 3, 2, 6, vs::nfnet_padding::same};
  CHECK(grouped.fan_in() == 128 * 9);
  CHECK(grouped.scale() == doctest::Approx(1.0 / std::sqrt(1152.0)));
  // SAME on an even input with stride 2: all the padding after (timm's pad_same: total 1 → top 0, bottom 1).
  const auto g = grouped.geometry(64, 64);
  CHECK(g.pad_top == 0);
  CHECK(g.pad_bottom == 1);
  CHECK(g.out_h(64) == 32);
  const md::std_conv_spec sym{8, 4, 3, 2, 1, vs::nfnet_padding::symmetric, 1.7};
  CHECK(sym.geometry(9, 9).pad_top == 1);
  CHECK(sym.scale() == doctest::Approx(1.7 / std::sqrt(72.0)));
}
