#pragma once
// conv_backend::portable: 2-D convolution, forward and backward, as plain Kokkos kernels for any execution
// space. Correct first, reasonable second: every output element is one thread's sum in a fixed order, without
// atomics. Teams of one thread (every host space) take loops the compiler vectorizes: sums of neighbouring
// channels side by side, and forward's dot products in eight lanes; larger teams (devices) give each thread one
// element. The order depends only on the shapes and on which of the two the team is, so results are bit-identical
// run to run on any space and thread count. Storage float, bf16 or double (double for gradient checks by finite
// differences); the sums in float (double for double). The contract is at the top of kernels/conv2d.hpp.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/kernels/detail/conv2d_problem.hpp>
#include <vitscale/kernels/detail/elementwise_common.hpp>

#include <cstdint>

namespace vitscale::kernels::conv2d_detail {

using ::vitscale::kernels::detail::accum_t;
using ::vitscale::kernels::detail::store_as;

// y(b, ho, wo, co) = Σ_{kh, kw, ci} x(b, ho·sh − pt + kh, wo·sw − pl + kw, g·Cin_g + ci) · w(co, ci, kh, kw)
//                    + bias(co) + beta·y(b, ho, wo, co)
// One team per output row (b, ho), its threads over (wo, co); each sum runs kh, kw, ci in order (on the host, in
// eight lanes: see below).
template <class ExecSpace, class TI, class TB, class TO>
void portable_forward(const ExecSpace& space, const problem& p, const TI* x, const TI* w, const TB* bias,
                      std::int64_t bias_stride, TO* y) {
  using A = accum_t<TI>;
  const problem q = p;
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  Kokkos::parallel_for(
      "vitscale::conv2d_forward", policy(space, static_cast<int>(p.batch * p.out_h), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) {
        const std::int64_t ho = member.league_rank() % q.out_h, b = member.league_rank() / q.out_h;
        const std::int64_t cin_g = q.cin / q.geom.groups, cout_g = q.cout / q.geom.groups;
        const std::int64_t h0 = ho * q.geom.stride_h - q.geom.pad_top;
        const auto finish = [&](std::int64_t wo, std::int64_t co, A sum) {
          if (bias) sum += static_cast<A>(bias[co * bias_stride]);
          TO* out = y + b * q.sy[0] + ho * q.sy[1] + wo * q.sy[2] + co * q.sy[3];
          if (q.beta != 0.0f) sum += static_cast<A>(q.beta) * static_cast<A>(*out);
          *out = store_as<TO>(sum);
        };
        if (member.team_size() == 1 && !q.team_loops) {
          // Host: an output channel's weights stay in cache while the row's pixels pass; each sum in eight lanes
          // (ci mod 8) over the taps, added in a fixed order at the end, so that the loop over ci vectorizes
          // (contiguous in x, and in w for 1×1 kernels).
          for (std::int64_t co = 0; co < q.cout; ++co) {
            const std::int64_t c0 = (co / cout_g) * cin_g;
            for (std::int64_t wo = 0; wo < q.out_w; ++wo) {
              const std::int64_t w0 = wo * q.geom.stride_w - q.geom.pad_left;
              A lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
              for (int kh = 0; kh < q.geom.kernel_h; ++kh) {
                const std::int64_t hi = h0 + kh;
                if (hi < 0 || hi >= q.in_h) continue;
                for (int kw = 0; kw < q.geom.kernel_w; ++kw) {
                  const std::int64_t wi = w0 + kw;
                  if (wi < 0 || wi >= q.in_w) continue;
                  const TI* xp = x + b * q.sx[0] + hi * q.sx[1] + wi * q.sx[2] + c0 * q.sx[3];
                  const TI* wp = w + co * q.sw[0] + kh * q.sw[2] + kw * q.sw[3];
                  const std::int64_t xs = q.sx[3], ws = q.sw[1];
                  std::int64_t ci = 0;
                  if (xs == 1 && ws == 1) {  // unit strides spelled out, so that the compiler sees them
                    for (; ci + 8 <= cin_g; ci += 8)
                      for (int l = 0; l < 8; ++l) lane[l] += static_cast<A>(xp[ci + l]) * static_cast<A>(wp[ci + l]);
                  }
                  for (; ci + 8 <= cin_g; ci += 8)
                    for (int l = 0; l < 8; ++l)
                      lane[l] += static_cast<A>(xp[(ci + l) * xs]) * static_cast<A>(wp[(ci + l) * ws]);
                  for (int l = 0; ci < cin_g; ++ci, ++l)
                    lane[l] += static_cast<A>(xp[ci * xs]) * static_cast<A>(wp[ci * ws]);
                }
              }
              finish(wo, co, ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7])));
            }
          }
          return;
        }
        // Devices: a thread per (wo, co), neighbouring threads on neighbouring output channels.
        Kokkos::parallel_for(Kokkos::TeamThreadRange(member, static_cast<int>(q.out_w * q.cout)), [&](int k) {
          const std::int64_t wo = k / q.cout, co = k % q.cout;
          const std::int64_t c0 = (co / cout_g) * cin_g, w0 = wo * q.geom.stride_w - q.geom.pad_left;
          A sum = 0;
          for (int kh = 0; kh < q.geom.kernel_h; ++kh) {
            const std::int64_t hi = h0 + kh;
            if (hi < 0 || hi >= q.in_h) continue;
            for (int kw = 0; kw < q.geom.kernel_w; ++kw) {
              const std::int64_t wi = w0 + kw;
              if (wi < 0 || wi >= q.in_w) continue;
              const TI* xp = x + b * q.sx[0] + hi * q.sx[1] + wi * q.sx[2] + c0 * q.sx[3];
              const TI* wp = w + co * q.sw[0] + kh * q.sw[2] + kw * q.sw[3];
              for (std::int64_t ci = 0; ci < cin_g; ++ci)
                sum += static_cast<A>(xp[ci * q.sx[3]]) * static_cast<A>(wp[ci * q.sw[1]]);
            }
          }
          finish(wo, co, sum);
        });
      });
}

// dx(b, hi, wi, ci) = Σ_{kh, kw, co} dy(b, ho, wo, co) · w(co, ci − g·Cin_g, kh, kw) + beta·dx(b, hi, wi, ci),
// over the (kh, kw) with hi + pt − kh = ho·sh and wi + pl − kw = wo·sw inside the output, and the co of ci's group.
// Here x's strides (sx) are dx's and y's (sy) are dy's. One team per input pixel, its threads over the channels;
// each sum runs kh, kw, co in order.
template <class ExecSpace, class TI, class TO>
void portable_backward_data(const ExecSpace& space, const problem& p, const TI* dy, const TI* w, TO* dx) {
  using A = accum_t<TI>;
  const problem q = p;
  const std::int64_t pixels = p.batch * p.in_h * p.in_w;
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  Kokkos::parallel_for(
      "vitscale::conv2d_backward_data", policy(space, static_cast<int>(pixels), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) {
        const std::int64_t pix = member.league_rank();
        const std::int64_t wi = pix % q.in_w, hi = (pix / q.in_w) % q.in_h, b = pix / (q.in_w * q.in_h);
        const std::int64_t cin_g = q.cin / q.geom.groups, cout_g = q.cout / q.geom.groups;
        if (member.team_size() == 1 && !q.team_loops) {
          // Host: the sums of a chunk of one group's input channels side by side, in the same order as below
          // (kh, kw, co), so that the loop over the chunk vectorizes (contiguous in w for 1×1 kernels).
          constexpr int chunk = 64;
          for (std::int64_t g = 0; g < q.geom.groups; ++g)
            for (std::int64_t ci0 = 0; ci0 < cin_g; ci0 += chunk) {
              const int len = cin_g - ci0 < chunk ? static_cast<int>(cin_g - ci0) : chunk;
              A sum[chunk];
              for (int l = 0; l < len; ++l) sum[l] = 0;
              for (int kh = 0; kh < q.geom.kernel_h; ++kh) {
                const std::int64_t th = hi + q.geom.pad_top - kh;
                if (th < 0 || th % q.geom.stride_h != 0 || th / q.geom.stride_h >= q.out_h) continue;
                const std::int64_t ho = th / q.geom.stride_h;
                for (int kw = 0; kw < q.geom.kernel_w; ++kw) {
                  const std::int64_t tw = wi + q.geom.pad_left - kw;
                  if (tw < 0 || tw % q.geom.stride_w != 0 || tw / q.geom.stride_w >= q.out_w) continue;
                  const std::int64_t wo = tw / q.geom.stride_w;
                  const TI* dyp = dy + b * q.sy[0] + ho * q.sy[1] + wo * q.sy[2];
                  const std::int64_t ws = q.sw[1];
                  for (std::int64_t co = g * cout_g; co < (g + 1) * cout_g; ++co) {
                    const A d = static_cast<A>(dyp[co * q.sy[3]]);
                    const TI* wp = w + co * q.sw[0] + ci0 * ws + kh * q.sw[2] + kw * q.sw[3];
                    if (ws == 1) {
                      for (int l = 0; l < len; ++l) sum[l] += d * static_cast<A>(wp[l]);
                    } else {
                      for (int l = 0; l < len; ++l) sum[l] += d * static_cast<A>(wp[l * ws]);
                    }
                  }
                }
              }
              for (int l = 0; l < len; ++l) {
                A v = sum[l];
                TO* out = dx + b * q.sx[0] + hi * q.sx[1] + wi * q.sx[2] + (g * cin_g + ci0 + l) * q.sx[3];
                if (q.beta != 0.0f) v += static_cast<A>(q.beta) * static_cast<A>(*out);
                *out = store_as<TO>(v);
              }
            }
          return;
        }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(member, static_cast<int>(q.cin)), [&](int c) {
          const std::int64_t g = c / cin_g, ci = c - g * cin_g;
          A sum = 0;
          for (int kh = 0; kh < q.geom.kernel_h; ++kh) {
            const std::int64_t th = hi + q.geom.pad_top - kh;
            if (th < 0 || th % q.geom.stride_h != 0) continue;
            const std::int64_t ho = th / q.geom.stride_h;
            if (ho >= q.out_h) continue;
            for (int kw = 0; kw < q.geom.kernel_w; ++kw) {
              const std::int64_t tw = wi + q.geom.pad_left - kw;
              if (tw < 0 || tw % q.geom.stride_w != 0) continue;
              const std::int64_t wo = tw / q.geom.stride_w;
              if (wo >= q.out_w) continue;
              const TI* dyp = dy + b * q.sy[0] + ho * q.sy[1] + wo * q.sy[2];
              const TI* wp = w + ci * q.sw[1] + kh * q.sw[2] + kw * q.sw[3];
              for (std::int64_t co = g * cout_g; co < (g + 1) * cout_g; ++co)
                sum += static_cast<A>(dyp[co * q.sy[3]]) * static_cast<A>(wp[co * q.sw[0]]);
            }
          }
          TO* out = dx + b * q.sx[0] + hi * q.sx[1] + wi * q.sx[2] + c * q.sx[3];
          if (q.beta != 0.0f) sum += static_cast<A>(q.beta) * static_cast<A>(*out);
          *out = store_as<TO>(sum);
        });
      });
}

// dw(co, ci, kh, kw) = Σ_{b, ho, wo} dy(b, ho, wo, co) · x(b, ho·sh − pt + kh, wo·sw − pl + kw, g·Cin_g + ci)
//                      + beta·dw(co, ci, kh, kw)                      (sw: dw's strides)
// dbias(co)          = Σ_{b, ho, wo} dy(b, ho, wo, co) + beta·dbias(co)
// One team per (co, kh, kw), its threads over ci; each sum runs b, ho, wo in order. dbias: one thread per co.
template <class ExecSpace, class TI, class TW, class TB>
void portable_backward_weights(const ExecSpace& space, const problem& p, const TI* x, const TI* dy, TW* dw,
                               TB* dbias, std::int64_t dbias_stride) {
  using A = accum_t<TI>;
  const problem q = p;
  const std::int64_t taps = p.cout * p.geom.kernel_h * p.geom.kernel_w;
  using policy = Kokkos::TeamPolicy<ExecSpace>;
  Kokkos::parallel_for(
      "vitscale::conv2d_backward_weights", policy(space, static_cast<int>(taps), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename policy::member_type& member) {
        const std::int64_t t = member.league_rank();
        const int kw = static_cast<int>(t % q.geom.kernel_w);
        const int kh = static_cast<int>((t / q.geom.kernel_w) % q.geom.kernel_h);
        const std::int64_t co = t / (q.geom.kernel_w * q.geom.kernel_h);
        const std::int64_t cin_g = q.cin / q.geom.groups, cout_g = q.cout / q.geom.groups;
        const std::int64_t c0 = (co / cout_g) * cin_g;
        if (member.team_size() == 1 && !q.team_loops) {
          // Host: the sums of a chunk of input channels side by side, each in the same (b, ho, wo) order as
          // below, so that the loop over the chunk vectorizes (contiguous in x).
          constexpr int chunk = 64;
          for (std::int64_t ci0 = 0; ci0 < cin_g; ci0 += chunk) {
            const int len = cin_g - ci0 < chunk ? static_cast<int>(cin_g - ci0) : chunk;
            A sum[chunk];
            for (int l = 0; l < len; ++l) sum[l] = 0;
            const std::int64_t xs = q.sx[3];
            for (std::int64_t b = 0; b < q.batch; ++b)
              for (std::int64_t ho = 0; ho < q.out_h; ++ho) {
                const std::int64_t hi = ho * q.geom.stride_h - q.geom.pad_top + kh;
                if (hi < 0 || hi >= q.in_h) continue;
                for (std::int64_t wo = 0; wo < q.out_w; ++wo) {
                  const std::int64_t wi = wo * q.geom.stride_w - q.geom.pad_left + kw;
                  if (wi < 0 || wi >= q.in_w) continue;
                  const A d = static_cast<A>(dy[b * q.sy[0] + ho * q.sy[1] + wo * q.sy[2] + co * q.sy[3]]);
                  const TI* xp = x + b * q.sx[0] + hi * q.sx[1] + wi * q.sx[2] + (c0 + ci0) * xs;
                  if (xs == 1) {
                    for (int l = 0; l < len; ++l) sum[l] += d * static_cast<A>(xp[l]);
                  } else {
                    for (int l = 0; l < len; ++l) sum[l] += d * static_cast<A>(xp[l * xs]);
                  }
                }
              }
            for (int l = 0; l < len; ++l) {
              A v = sum[l];
              TW* out = dw + co * q.sw[0] + (ci0 + l) * q.sw[1] + kh * q.sw[2] + kw * q.sw[3];
              if (q.beta != 0.0f) v += static_cast<A>(q.beta) * static_cast<A>(*out);
              *out = store_as<TW>(v);
            }
          }
          return;
        }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(member, static_cast<int>(cin_g)), [&](int ci) {
          A sum = 0;
          for (std::int64_t b = 0; b < q.batch; ++b)
            for (std::int64_t ho = 0; ho < q.out_h; ++ho) {
              const std::int64_t hi = ho * q.geom.stride_h - q.geom.pad_top + kh;
              if (hi < 0 || hi >= q.in_h) continue;
              for (std::int64_t wo = 0; wo < q.out_w; ++wo) {
                const std::int64_t wi = wo * q.geom.stride_w - q.geom.pad_left + kw;
                if (wi < 0 || wi >= q.in_w) continue;
                sum += static_cast<A>(dy[b * q.sy[0] + ho * q.sy[1] + wo * q.sy[2] + co * q.sy[3]]) *
                       static_cast<A>(x[b * q.sx[0] + hi * q.sx[1] + wi * q.sx[2] + (c0 + ci) * q.sx[3]]);
              }
            }
          TW* out = dw + co * q.sw[0] + ci * q.sw[1] + kh * q.sw[2] + kw * q.sw[3];
          if (q.beta != 0.0f) sum += static_cast<A>(q.beta) * static_cast<A>(*out);
          *out = store_as<TW>(sum);
        });
      });
  if (dbias == nullptr) return;
  Kokkos::parallel_for(
      "vitscale::conv2d_backward_bias", Kokkos::RangePolicy<ExecSpace>(space, 0, p.cout),
      KOKKOS_LAMBDA(std::int64_t co) {
        A sum = 0;
        for (std::int64_t b = 0; b < q.batch; ++b)
          for (std::int64_t ho = 0; ho < q.out_h; ++ho)
            for (std::int64_t wo = 0; wo < q.out_w; ++wo)
              sum += static_cast<A>(dy[b * q.sy[0] + ho * q.sy[1] + wo * q.sy[2] + co * q.sy[3]]);
        TB* out = dbias + co * dbias_stride;
        if (q.beta != 0.0f) sum += static_cast<A>(q.beta) * static_cast<A>(*out);
        *out = store_as<TB>(sum);
      });
}

}  // namespace vitscale::kernels::conv2d_detail
