#pragma once
// The NFNet block unit: timm's NormFreeBlock as dm_nfnet builds it (reg=False, extra_conv=True, SE after conv3,
// skipinit), a pre-activation bottleneck with a normaliser-free residual:
//
//   a1  = γβ·gelu(x)                                   (β = 1/sqrt(expected variance of x), config/nfnet_walk.hpp)
//   sc  = downsample(a1) = conv1×1(avg_pool2x2(a1))    in a stage's first block (pool only when strided), else x
//   h   = conv3(γ·gelu(conv2b(γ·gelu(conv2(γ·gelu(conv1(a1)))))))      conv2 carries the stride; 2/2b grouped
//   g   = 2·h·σ(fc2(relu(fc1(mean_hw(h)))))            squeeze-and-excitation (timm's attn_last, attn_gain 2)
//   out = sc + α·skipinit_gain·g
//
// Everything backward needs is kept: the pre-activation and activation of every convolution, the shortcut's
// pooled input, the squeeze-excite's vectors and the branch as it joined the residual (after stochastic depth:
// drop_path(g), one keep decision per image, timm's DropPath before the skipinit gain).
//   x: [B, S, S, in] -> out: [B, S/stride, S/stride, out]

#include <vitscale/kernels/activations.hpp>
#include <vitscale/kernels/channel_gate.hpp>
#include <vitscale/kernels/dropout.hpp>
#include <vitscale/kernels/pooling.hpp>
#include <vitscale/kernels/residual.hpp>
#include <vitscale/model/nfnet_context.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace vitscale::model_detail {

template <class Ctx>
struct nf_block {
  using T = typename Ctx::act_type;
  using buffer4 = Kokkos::View<T****, Kokkos::LayoutRight, typename Ctx::memory_space>;
  using buffer2 = Kokkos::View<T**, Kokkos::LayoutRight, typename Ctx::memory_space>;
  using view4 = typename Ctx::template view4<T>;
  using view2 = typename Ctx::template view2<T>;
  static constexpr kernels::gelu_kind gelu = kernels::gelu_kind::erf;

  nfnet_block info{};
  nf_conv downsample, conv1, conv2, conv2b, conv3;
  nf_linear fc1, fc2;
  int skip = -1;  // the skipinit_gain tensor, -1 without
  int pool_side = 0;
  int index = 0;            // over the whole network: the stochastic-depth mask's site
  double drop_path = 0.0;   // this block's stochastic-depth rate (nfnet::set_regularization)

  // Saved activations (see the top of this file).
  buffer4 a1, pooled, h1, a2, h2, a2b, h2b, a3, h3, gated;
  buffer2 squeezed, z1, r1, z2;
  Kokkos::View<float**, Kokkos::LayoutRight, typename Ctx::memory_space> residual_ws;

  void bind_block(const Ctx& c, const nfnet_block& b, int block_index) {
    info = b;
    index = block_index;
    if (b.skipinit) skip = c.require(b.stage, b.block, "skipinit_gain");
  }
  void bind_layer(const Ctx& c, const nfnet_layer& l, nfnet_padding padding) {
    const std::string_view n = l.name;
    if (n == "downsample.pool") pool_side = l.out_side;
    else if (n == "downsample.conv") downsample = nf_conv::bind(c, l, padding);
    else if (n == "conv1") conv1 = nf_conv::bind(c, l, padding);
    else if (n == "conv2") conv2 = nf_conv::bind(c, l, padding);
    else if (n == "conv2b") conv2b = nf_conv::bind(c, l, padding);
    else if (n == "conv3") conv3 = nf_conv::bind(c, l, padding);
    else if (n == "attn_last.fc1") fc1 = nf_linear::bind(c, l);
    else if (n == "attn_last.fc2") fc2 = nf_linear::bind(c, l);
    else detail::fail("nfnet: a block has no layer named '", n, "'");
  }

  bool has_se() const { return info.se_channels > 0; }

  // Elements each backward scratch buffer needs: the largest activation, or the squeeze-excite's vectors.
  std::size_t scratch_elements(int batch) const {
    const std::size_t si = std::size_t(info.in_side) * info.in_side, so = std::size_t(info.out_side) * info.out_side;
    std::size_t n = std::max({si * info.in_channels, si * info.mid_channels, so * info.out_channels});
    n = std::max(n, std::size_t(2) * info.out_channels + info.se_channels);
    return n * static_cast<std::size_t>(batch);
  }

  void layout(int batch) {
    const int si = info.in_side, so = info.out_side, mid = info.mid_channels;
    auto b4 = [batch](const char* label, int side, int ch) {
      const auto u = [](int v) { return static_cast<std::size_t>(v); };
      return buffer4(std::string(label), u(batch), u(side), u(side), u(ch));
    };
    a1 = b4("vitscale::nfnet_a1", si, info.in_channels);
    if (info.shortcut_pool) pooled = b4("vitscale::nfnet_pooled", pool_side, info.in_channels);
    h1 = b4("vitscale::nfnet_h1", si, mid);
    a2 = b4("vitscale::nfnet_a2", si, mid);
    h2 = b4("vitscale::nfnet_h2", so, mid);
    a2b = b4("vitscale::nfnet_a2b", so, mid);
    h2b = b4("vitscale::nfnet_h2b", so, mid);
    a3 = b4("vitscale::nfnet_a3", so, mid);
    h3 = b4("vitscale::nfnet_h3", so, info.out_channels);
    if (has_se()) {
      gated = b4("vitscale::nfnet_gated", so, info.out_channels);
      squeezed = buffer2("vitscale::nfnet_squeezed", std::size_t(batch), std::size_t(info.out_channels));
      z1 = buffer2("vitscale::nfnet_se_z1", std::size_t(batch), std::size_t(info.se_channels));
      r1 = buffer2("vitscale::nfnet_se_r1", std::size_t(batch), std::size_t(info.se_channels));
      z2 = buffer2("vitscale::nfnet_se_z2", std::size_t(batch), std::size_t(info.out_channels));
    }
    const auto ws = kernels::scaled_residual_backward_workspace(std::size_t(batch) * so * so);
    residual_ws = decltype(residual_ws)("vitscale::nfnet_residual_ws", ws.chunks, ws.cols);
  }

  // The branch as it joins the residual: the gated h, or h itself without squeeze-excite — after stochastic
  // depth, which the forward applies in place (backward needs no undropped copy: see backward).
  const buffer4& branch() const { return has_se() ? gated : h3; }
  bool drops(const nf_masks& m) const { return m.training && drop_path > 0; }
  auto skip_gain(const typename Ctx::parameters_type& p) const {
    return skip >= 0 ? p.vector(skip) : typename Ctx::parameters_type::vector_type();
  }

  // x: [B, Si, Si, in] -> out: [B, So, So, out]
  template <class X, class Out>
  void forward(Ctx& c, const X& x, const Out& out, const nf_masks& masks) const {
    const auto& space = c.space();
    const float g = static_cast<float>(Ctx::gamma);
    kernels::gelu_forward<gelu>(space, rows_of(x), rows_of(a1), static_cast<float>(Ctx::gamma * info.beta));
    conv1.forward(c, a1, h1);
    kernels::gelu_forward<gelu>(space, rows_of(h1), rows_of(a2), g);
    conv2.forward(c, a2, h2);
    kernels::gelu_forward<gelu>(space, rows_of(h2), rows_of(a2b), g);
    conv2b.forward(c, a2b, h2b);
    kernels::gelu_forward<gelu>(space, rows_of(h2b), rows_of(a3), g);
    conv3.forward(c, a3, h3);
    if (has_se()) {
      kernels::token_mean_pool_forward(space, positions_of(h3), 0, squeezed);
      fc1.forward(c, squeezed, z1);
      kernels::relu_forward(space, z1, r1);
      fc2.forward(c, r1, z2);
      kernels::channel_gate_forward(space, positions_of(h3), z2, nfnet_descriptor::se_gain, positions_of(gated));
    }
    // Without squeeze-excite the branch is h3 itself, which nothing after needs undropped (conv3's backward
    // reads a3 and dh3), so stochastic depth may overwrite it as it overwrites the gated branch.
    if (drops(masks))
      kernels::drop_path_forward(space, masks.key(std::uint32_t(index)), drop_path, positions_of(branch()),
                                 positions_of(branch()), masks.first_image);
    // out = shortcut + α·skipinit_gain·branch: the downsampled shortcut is written into out first, the identity
    // one is read from x.
    if (info.downsample) {
      if (info.shortcut_pool) {
        kernels::avg_pool2d_forward(space, 2, 2, a1, pooled);
        downsample.forward(c, pooled, out);
      } else {
        downsample.forward(c, a1, out);
      }
      kernels::scaled_residual_add(space, rows_of(out), rows_of(branch()), skip_gain(c.params()), info.alpha,
                                   rows_of(out));
    } else {
      kernels::scaled_residual_add(space, rows_of(x), rows_of(branch()), skip_gain(c.params()), info.alpha,
                                   rows_of(out));
    }
  }

  // The forward's x and dout: [B, So, So, out] -> dx: [B, Si, Si, in] and every gradient of the block.
  // s0, s1, s2: scratch of at least scratch_elements() each (dx and dout are neither).
  template <class X, class DOut, class DX, class Scratch>
  void backward(Ctx& c, const X& x, const DOut& dout, const DX& dx, const Scratch& s0, const Scratch& s1,
                const Scratch& s2, const nf_masks& masks) const {
    const auto& space = c.space();
    const float g = static_cast<float>(Ctx::gamma);
    auto like = [](const Scratch& s, const buffer4& b) {
      return view4(s.data(), b.extent(0), b.extent(1), b.extent(2), b.extent(3));
    };
    // d branch = α·skipinit_gain·dout; d skipinit_gain = α·Σ dout·branch.
    view4 dbranch = like(s0, h3);
    auto dskip = skip >= 0 ? c.grads().vector(skip) : typename Ctx::gradients_type::vector_type();
    kernels::scaled_residual_backward(space, rows_of(branch()), skip_gain(c.params()), info.alpha, rows_of(dout),
                                      rows_of(dbranch), dskip, residual_ws);
    if (drops(masks))
      kernels::drop_path_backward(space, masks.key(std::uint32_t(index)), drop_path, positions_of(dbranch),
                                  positions_of(dbranch), masks.first_image);
    view4 dh3 = dbranch;
    if (has_se()) {
      dh3 = like(s1, h3);
      view2 dz2(s2.data(), z2.extent(0), z2.extent(1));
      kernels::channel_gate_backward(space, positions_of(h3), z2, nfnet_descriptor::se_gain, positions_of(dbranch),
                                     positions_of(dh3), dz2);
      view2 dr1(s2.data() + dz2.size(), r1.extent(0), r1.extent(1));
      fc2.backward(c, r1, dz2, dr1);
      kernels::relu_backward(space, z1, dr1, dr1);
      view2 dsq(s2.data() + dz2.size() + dr1.size(), squeezed.extent(0), squeezed.extent(1));
      fc1.backward(c, squeezed, dr1, dsq);
      // dh3 += the squeeze's share: d mean_hw, into s0 (dbranch is spent), then added.
      view4 dpool = like(s0, h3);
      kernels::token_mean_pool_backward(space, dsq, 0, positions_of(dpool));
      kernels::residual_accumulate(space, rows_of(dh3), rows_of(dpool));
    }
    // Down the branch: ping-pong between the scratch buffers that dh3 does not occupy.
    const Scratch& free0 = dh3.data() == s0.data() ? s1 : s0;
    const Scratch& free1 = dh3.data() == s2.data() ? s1 : s2;
    view4 da3 = like(free0, a3);
    conv3.backward(c, a3, dh3, da3);
    kernels::gelu_backward<gelu>(space, rows_of(h2b), rows_of(da3), rows_of(da3), g);
    view4 da2b = like(free1, a2b);
    conv2b.backward(c, a2b, da3, da2b);
    kernels::gelu_backward<gelu>(space, rows_of(h2), rows_of(da2b), rows_of(da2b), g);
    view4 da2 = like(free0, a2);
    conv2.backward(c, a2, da2b, da2);
    kernels::gelu_backward<gelu>(space, rows_of(h1), rows_of(da2), rows_of(da2), g);
    view4 da1 = like(free1, a1);
    conv1.backward(c, a1, da2, da1);
    // The shortcut: into da1 through the downsample conv (and pool), or straight into dx.
    if (info.downsample) {
      if (info.shortcut_pool) {
        view4 dpooled = like(free0, pooled);
        downsample.backward(c, pooled, dout, dpooled);
        // dh3 is spent by now: its buffer (s0 or s1, never s2) takes the pool's gradient.
        view4 dpa = like(dh3.data() == s0.data() ? s0 : s1, a1);
        kernels::avg_pool2d_backward(space, 2, 2, dpooled, dpa);
        kernels::residual_accumulate(space, rows_of(da1), rows_of(dpa));
      } else {
        downsample.backward(c, a1, dout, da1, 1.0f);
      }
    }
    kernels::gelu_backward<gelu>(space, rows_of(x), rows_of(da1), rows_of(dx),
                                 static_cast<float>(Ctx::gamma * info.beta));
    if (!info.downsample) kernels::residual_accumulate(space, rows_of(dx), rows_of(dout));
  }
};

}  // namespace vitscale::model_detail
