#pragma once
// The geometry of a 2-D convolution and the problem the conv2d backends receive (kernels/conv2d.hpp is the
// front end; its top comment is the contract).

#include <cstdint>

namespace vitscale::kernels {

// Kernel, stride, padding (each side on its own, for TensorFlow's asymmetric "SAME") and groups of a 2-D
// convolution; no dilation. A plain aggregate, usable in constant expressions.
struct conv2d_geometry {
  int kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right, groups;

  // floor((in + pads − kernel) / stride) + 1; below 1 when the padded input is smaller than the kernel.
  constexpr int out_h(int in_h) const { return floor_div(in_h + pad_top + pad_bottom - kernel_h, stride_h) + 1; }
  constexpr int out_w(int in_w) const { return floor_div(in_w + pad_left + pad_right - kernel_w, stride_w) + 1; }

 private:
  static constexpr int floor_div(int n, int d) { return d <= 0 ? 0 : (n >= 0 ? n / d : -((-n + d - 1) / d)); }
};

// PyTorch's symmetric padding as timm computes it (timm.layers.padding.get_padding, dilation 1):
// ((stride − 1) + (kernel − 1)) / 2 on every side.
constexpr conv2d_geometry conv2d_symmetric(int kernel, int stride, int groups = 1) {
  const int pad = ((stride - 1) + (kernel - 1)) / 2;
  return conv2d_geometry{kernel, kernel, stride, stride, pad, pad, pad, pad, groups};
}

// TensorFlow's "SAME" padding for an in_h × in_w input (timm's get_same_padding / pad_same, dilation 1): in each
// dimension total = max((ceil(in / stride) − 1)·stride + kernel − in, 0), the smaller half before (top, left) and
// the larger after (bottom, right), so that the output is ceil(in / stride).
constexpr conv2d_geometry conv2d_same(int kernel, int stride, int in_h, int in_w, int groups = 1) {
  const auto total = [&](int in) {
    const int t = stride > 0 ? ((in + stride - 1) / stride - 1) * stride + kernel - in : 0;
    return t > 0 ? t : 0;
  };
  const int th = total(in_h), tw = total(in_w);
  return conv2d_geometry{kernel, kernel, stride, stride, th / 2, th - th / 2, tw / 2, tw - tw / 2, groups};
}

namespace conv2d_detail {

// One convolution as the backends see it. Strides are in elements: sx of x (or dx) in the order [b, h, w, c],
// sy of y (or dy) in the same order, sw of w (or dw) in the order [cout, cin/groups, kh, kw].
struct problem {
  std::int64_t batch = 0, in_h = 0, in_w = 0, cin = 0, out_h = 0, out_w = 0, cout = 0;
  conv2d_geometry geom{};
  float beta = 0;
  bool team_loops = false;  // the portable kernels take their device loops on the host too (tests)
  std::int64_t sx[4] = {0, 0, 0, 0}, sw[4] = {0, 0, 0, 0}, sy[4] = {0, 0, 0, 0};
};

// While an object of this type lives, the portable kernels run their device loops (a thread per element) on
// teams of one thread too, so that a host build tests the code GPUs run. For tests.
inline int& portable_team_loop_requests() {
  static int requests = 0;
  return requests;
}
struct portable_team_loops_for_test {
  portable_team_loops_for_test() { ++portable_team_loop_requests(); }
  ~portable_team_loops_for_test() { --portable_team_loop_requests(); }
  portable_team_loops_for_test(const portable_team_loops_for_test&) = delete;
  portable_team_loops_for_test& operator=(const portable_team_loops_for_test&) = delete;
};

}  // namespace conv2d_detail
}  // namespace vitscale::kernels
