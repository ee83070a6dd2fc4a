// Squeeze-and-excitation's gate (y = gain·x·σ(z) per image and channel): forward and backward against a double
// reference in float and bf16, the backward against finite differences of the kernel in double, saturated
// logits, the in-place backward, and shape errors.
#include <support/errors.hpp>
#include <support/testing.hpp>

#include <vitscale/kernels/channel_gate.hpp>

#include <cmath>
#include <random>
#include <tuple>
#include <vector>

namespace vs = vitscale;
namespace vk = vitscale::kernels;
using vs::test::mat;
using vs::test::ten3;

namespace {

double sigmoid_ref(double z) { return 1 / (1 + std::exp(-z)); }

template <class T, class Space>
void check_gate(std::size_t batch, std::size_t positions, std::size_t channels, double tol) {
  CAPTURE(batch);
  CAPTURE(positions);
  CAPTURE(channels);
  INFO("storage " << std::string(vs::test::type_name<T>()));
  std::mt19937 rng(static_cast<unsigned>(batch * 1000 + positions * 10 + channels));
  ten3<T, Space> x("x", batch, positions, channels), y("y", batch, positions, channels);
  ten3<T, Space> dy("dy", batch, positions, channels), dx("dx", batch, positions, channels);
  mat<T, Space> z("z", batch, channels), dz("dz", batch, channels);
  const auto xs = vs::test::fill_random(x, rng, -2.0, 2.0);
  const auto zs = vs::test::fill_random(z, rng, -6.0, 6.0);
  const auto dys = vs::test::fill_random(dy, rng, -1.0, 1.0);
  vs::test::poison(y);
  vs::test::poison(dx);
  vs::test::poison(dz);
  const double gain = 2.0;  // timm's NFNet attn_gain
  const Space space;
  vk::channel_gate_forward(space, x, z, gain, y);
  vk::channel_gate_backward(space, x, z, gain, dy, dx, dz);
  space.fence();
  std::vector<double> want_y(xs.size()), want_dx(xs.size()), want_dz(zs.size(), 0.0);
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t p = 0; p < positions; ++p)
      for (std::size_t c = 0; c < channels; ++c) {
        const std::size_t k = (b * positions + p) * channels + c;
        const double s = sigmoid_ref(zs[b * channels + c]);
        want_y[k] = gain * xs[k] * s;
        want_dx[k] = gain * dys[k] * s;
        want_dz[b * channels + c] += gain * s * (1 - s) * dys[k] * xs[k];
      }
  vs::test::check_close(vs::test::read(y), want_y, tol, "y");
  vs::test::check_close(vs::test::read(dx), want_dx, tol, "dx");
  vs::test::check_close(vs::test::read(dz), want_dz, tol, "dz");

  // In place: dx written over dy gives the same dz and dx.
  vk::channel_gate_backward(space, x, z, gain, dy, dy, dz);
  space.fence();
  vs::test::check_close(vs::test::read(dy), want_dx, tol, "dx in place");
  vs::test::check_close(vs::test::read(dz), want_dz, tol, "dz in place");
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("channel gate matches a double reference", Space, gate_reference_id) {
  constexpr double fp32_tol = 1e-5;  // float sums over at most 4096 positions
  constexpr double bf16_tol = 1e-2;  // one rounding of each output, 2^-8 relative
  using shape = std::tuple<std::size_t, std::size_t, std::size_t>;  // batch, positions (H·W), channels
  // NFNet's last stage at 256 px (8×8 positions) with a channel count past the host's 256-channel chunk, an
  // early stage's 32×32 at few channels, a single position and a single channel.
  for (auto [batch, positions, channels] : {shape{2, 64, 300}, shape{1, 1024, 5}, shape{3, 1, 17}, shape{2, 49, 1}}) {
    check_gate<float, Space>(batch, positions, channels, fp32_tol);
    check_gate<vs::bf16, Space>(batch, positions, channels, bf16_tol);
  }
}
VITSCALE_ON_HOST_SPACES(gate_reference_id);

TEST_CASE_TEMPLATE_DEFINE("channel gate's backward is the derivative of its forward (double)", Space, gate_fd_id) {
  std::mt19937 rng(3);
  ten3<double, Space> x("x", 2, 5, 3), y("y", 2, 5, 3), probe("probe", 2, 5, 3), dx("dx", 2, 5, 3);
  mat<double, Space> z("z", 2, 3), dz("dz", 2, 3);
  vs::test::fill_random(x, rng, -2.0, 2.0);
  vs::test::fill_random(z, rng, -3.0, 3.0);
  const auto ps = vs::test::fill_random(probe, rng, -1.0, 1.0);
  const Space space;
  auto loss = [&] {  // L = Σ probe·y
    vk::channel_gate_forward(space, x, z, 2.0, y);
    space.fence();
    const auto ys = vs::test::read(y);
    double l = 0;
    for (std::size_t k = 0; k < ys.size(); ++k) l += ps[k] * ys[k];
    return l;
  };
  vk::channel_gate_backward(space, x, z, 2.0, probe, dx, dz);
  space.fence();
  vs::test::check_close(vs::test::read(dx), vs::test::numeric_gradient(x, loss, 1e-6), 1e-7, "dx");
  vs::test::check_close(vs::test::read(dz), vs::test::numeric_gradient(z, loss, 1e-6), 1e-7, "dz");
}
VITSCALE_ON_HOST_SPACES(gate_fd_id);

TEST_CASE("channel gate saturates without overflow and passes NaN through") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  ten3<float, Space> x("x", 1, 1, 4), y("y", 1, 1, 4), dx("dx", 1, 1, 4);
  mat<float, Space> z("z", 1, 4), dz("dz", 1, 4);
  const float zs[4] = {-200.0f, 200.0f, 0.0f, std::nanf("")};
  for (int c = 0; c < 4; ++c) {
    x(0, 0, c) = 1.5f;
    z(0, c) = zs[c];
  }
  const Space space;
  vk::channel_gate_forward(space, x, z, 2.0, y);
  vk::channel_gate_backward(space, x, z, 2.0, x, dx, dz);
  space.fence();
  CHECK(y(0, 0, 0) == 0.0f);
  CHECK(y(0, 0, 1) == 3.0f);
  CHECK(y(0, 0, 2) == 1.5f);
  CHECK(std::isnan(y(0, 0, 3)));
  CHECK(dz(0, 0) == 0.0f);
  CHECK(dz(0, 1) == 0.0f);
  CHECK(dz(0, 2) == doctest::Approx(2.0 * 0.25 * 1.5 * 1.5));
  CHECK(std::isnan(dz(0, 3)));
}

TEST_CASE("channel gate rejects mismatched shapes with a sentence") {
  using Space = Kokkos::DefaultHostExecutionSpace;
  ten3<float, Space> x("x", 2, 4, 3), y("y", 2, 4, 3), y_bad("y_bad", 2, 5, 3);
  mat<float, Space> z("z", 2, 3), z_bad("z_bad", 2, 4);
  const Space space;
  CHECK_ERROR(vk::channel_gate_forward(space, x, z_bad, 2.0, y), "channel_gate_forward", "z");
  CHECK_ERROR(vk::channel_gate_forward(space, x, z, 2.0, y_bad), "channel_gate_forward", "y");
  CHECK_ERROR(vk::channel_gate_backward(space, x, z, 2.0, y_bad, y, z), "channel_gate_backward", "dy");
}
