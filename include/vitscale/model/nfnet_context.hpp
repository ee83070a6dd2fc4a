#pragma once
// nf_context<Shape, Policy, ExecSpace>: what every unit of an NFNet reads and writes at run time — the execution
// space, the parameter and gradient arenas, the operand arena (each conv's standardised weight ŵ, each linear
// map's weight converted where the parameters are of another type), the standardisation's statistics, the batch, and the gradient scratch all
// units share — and the two parameterised units the stem, the blocks and the head are built of:
//   nf_conv    a scaled weight-standardised convolution (model/layers/std_conv.hpp) bound to its tensors;
//   nf_linear  a linear map on a pooled vector (the squeeze-excite's 1×1 convs, the classifier).
// The model (model/nfnet.hpp) is one context; each unit (model/layers/nf_stem.hpp, nf_block.hpp,
// model/heads/nf_head.hpp) takes it by reference and keeps its own saved activations.
//
// Precision: activations and every operand of a product are Policy::act_type (float, or bf16 under a bf16
// policy: the convolutions take both operands in one type), parameters and gradients Policy::param_type and
// grad_type, every sum in float.

#include <vitscale/config/nfnet_shape.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/precision.hpp>
#include <vitscale/core/random.hpp>
#include <vitscale/kernels/reduction.hpp>
#include <vitscale/model/layers/std_conv.hpp>
#include <vitscale/model/linear.hpp>
#include <vitscale/model/nfnet_parameters.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace vitscale::model_detail {

template <class Shape, class Policy, class ExecSpace>
class nf_context {
 public:
  using shape = Shape;
  using act_type = typename Policy::act_type;
  using param_type = typename Policy::param_type;
  using grad_type = typename Policy::grad_type;
  static_assert(std::is_same<typename Policy::act_type, typename Policy::gemm_type>::value,
                "nfnet: the precision policy must use one type for activations and products (fp32, bf16_mixed, "
                "bf16_pure): a convolution takes its input and its weight in the same type");
  using memory_space = typename ExecSpace::memory_space;
  template <class T>
  using view1 = Kokkos::View<T*, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged>;
  template <class T>
  using view2 = Kokkos::View<T**, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged>;
  template <class T>
  using view3 = Kokkos::View<T***, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged>;
  template <class T>
  using view4 = Kokkos::View<T****, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged>;
  using parameters_type = nfnet_parameter_arena<Shape, param_type, memory_space>;
  using gradients_type = nfnet_parameter_arena<Shape, grad_type, memory_space>;
  static constexpr int count = parameters_type::count;
  static constexpr std::size_t absent = static_cast<std::size_t>(-1);
  static constexpr double gamma = nfnet_descriptor::gamma;
  // Parameters already in the operand type (fp32, bf16_pure) are the linear maps' operands themselves.
  static constexpr bool params_are_operands = std::is_same<param_type, act_type>::value;

  explicit nf_context(const ExecSpace& space)
      : space_(space), params_("vitscale::nfnet_parameters"), grads_("vitscale::nfnet_gradients") {
    // Every conv weight gets an operand of its own (its ŵ) and its statistics (mean, rstd per output channel);
    // a linear map's weight a converted copy, unless the parameters are in the operand type already.
    std::size_t operand = 0, stat = 0, largest = 0;
    for (int i = 0; i < count; ++i) {
      const auto& t = params_.info(i);
      operand_offset_[i] = stat_offset_[i] = absent;
      const bool conv = t.role == nfnet_role::conv_weight;
      const bool linear = t.role == nfnet_role::se_weight || t.role == nfnet_role::linear_weight;
      if (!conv && !(linear && !params_are_operands)) continue;
      operand_offset_[i] = operand;
      operand += static_cast<std::size_t>(t.numel());
      if (conv) {
        stat_offset_[i] = stat;
        stat += 2 * static_cast<std::size_t>(t.dims[0]);
        largest = std::max(largest, static_cast<std::size_t>(t.numel()));
      }
    }
    operands_ = Kokkos::View<act_type*, memory_space>("vitscale::nfnet_operands", operand);
    stats_ = Kokkos::View<float*, memory_space>("vitscale::nfnet_weight_statistics", stat);
    dw_scratch_ = Kokkos::View<float*, memory_space>("vitscale::nfnet_dw_scratch", largest);
  }

  const ExecSpace& space() const { return space_; }
  parameters_type& params() { return params_; }
  const parameters_type& params() const { return params_; }
  gradients_type& grads() { return grads_; }
  const gradients_type& grads() const { return grads_; }

  // Tensor i of the parameters / gradients / operands with its table dimensions, as rank 4 ([out, in/g, k, k]),
  // rank 2 ([out, in]) or rank 1.
  template <class Arena>
  static auto as4(const Arena& a, int i) {
    const auto& d = a.info(i).dims;
    return view4<typename Arena::value_type>(a.vector(i).data(), d[0], d[1], d[2], d[3]);
  }
  template <class Arena>
  static auto as2(const Arena& a, int i) {
    const auto& d = a.info(i).dims;
    return view2<typename Arena::value_type>(a.vector(i).data(), d[0], d[1]);
  }
  view4<act_type> operand4(int i) const {
    const auto& d = params_.info(i).dims;
    return view4<act_type>(operands_.data() + operand_offset(i), d[0], d[1], d[2], d[3]);
  }
  view2<act_type> operand2(int i) const {
    const auto& d = params_.info(i).dims;
    return view2<act_type>(operands_.data() + operand_offset(i), d[0], d[1]);
  }
  // A linear map's weight [out, in] in the operand type: the parameter itself, or its converted copy.
  view2<act_type> linear_operand(int i) const {
    if constexpr (params_are_operands) {
      return as2(params_, i);
    } else {
      return operand2(i);
    }
  }
  view1<float> mean(int i) const { return view1<float>(stats_.data() + stat_offset(i), params_.info(i).dims[0]); }
  view1<float> rstd(int i) const {
    const auto out = static_cast<std::size_t>(params_.info(i).dims[0]);
    return view1<float>(stats_.data() + stat_offset(i) + out, out);
  }
  view4<float> dw_scratch(int i) const {
    const auto& d = params_.info(i).dims;
    return view4<float>(dw_scratch_.data(), d[0], d[1], d[2], d[3]);
  }
  // The float workspace of a column sum over `rows` rows of `cols` columns (a bias gradient), grown on demand
  // (at the first step of a batch size; never inside a step after that).
  view2<float> column_workspace(std::size_t rows, std::size_t cols) {
    const auto s = kernels::column_sum_workspace(rows, cols);
    if (workspace_.size() < s.chunks * s.cols)
      workspace_ = Kokkos::View<float*, memory_space>("vitscale::nfnet_workspace", s.chunks * s.cols);
    return view2<float>(workspace_.data(), s.chunks, s.cols);
  }

  // Which tensor of the table is `name` of a layer (stage, block: -1 outside the stages); -1 when absent.
  int find(int stage, int block, const std::string& name) const {
    for (int i = 0; i < count; ++i) {
      const auto& t = params_.info(i);
      if (t.stage == stage && t.block == block && t.is(name)) return i;
    }
    return -1;
  }
  int require(int stage, int block, const std::string& name) const {
    const int i = find(stage, block, name);
    if (i < 0) detail::fail("nfnet: the parameter table has no tensor '", name, "' in stage ", stage, ", block ", block);
    return i;
  }

 private:
  std::size_t operand_offset(int i) const {
    if (operand_offset_[i] == absent) detail::fail("nfnet: tensor '", params_.info(i).full_name(), "' has no operand");
    return operand_offset_[i];
  }
  std::size_t stat_offset(int i) const {
    if (stat_offset_[i] == absent)
      detail::fail("nfnet: tensor '", params_.info(i).full_name(), "' is not a standardised conv weight");
    return stat_offset_[i];
  }

  ExecSpace space_;
  parameters_type params_;
  gradients_type grads_;
  std::array<std::size_t, count> operand_offset_{}, stat_offset_{};
  Kokkos::View<act_type*, memory_space> operands_;
  Kokkos::View<float*, memory_space> stats_, dw_scratch_, workspace_;
};

// What keys a step's dropout and stochastic-depth masks: (seed, step, site) and the image's place in the batch
// (model/layer_context.hpp's regularization); `training` false: no masks at all.
struct nf_masks {
  std::uint64_t seed = 0;
  std::uint32_t step = 0;
  std::uint64_t first_image = 0;
  bool training = false;
  // The mask stream of a site: 'NF' in the high half, so that no site shares a ViT tensor's stream by accident.
  rng_key key(std::uint32_t site) const { return rng_key{seed, step, 0x4e460000u + site}; }
};
// The sites: block i's stochastic depth is site i; the head's dropout this one.
constexpr std::uint32_t nf_head_dropout_site = 0xffffu;

// A contiguous rank-4 activation [B, H, W, C] seen as [B·H·W, C] rows (for the row kernels) or [B, H·W, C].
template <class V>
auto rows_of(const V& v) {
  using out = Kokkos::View<typename V::value_type**, Kokkos::LayoutRight, typename V::memory_space,
                           Kokkos::MemoryUnmanaged>;
  return out(v.data(), v.extent(0) * v.extent(1) * v.extent(2), v.extent(3));
}
template <class V>
auto positions_of(const V& v) {
  using out = Kokkos::View<typename V::value_type***, Kokkos::LayoutRight, typename V::memory_space,
                           Kokkos::MemoryUnmanaged>;
  return out(v.data(), v.extent(0), v.extent(1) * v.extent(2), v.extent(3));
}

// A scaled weight-standardised convolution of the walk (nfnet_layer_kind::conv), bound to its three tensors.
struct nf_conv {
  std_conv_spec spec{};
  int weight = -1, bias = -1, gain = -1;

  template <class Ctx>
  static nf_conv bind(const Ctx& c, const nfnet_layer& l, nfnet_padding padding) {
    nf_conv u;
    u.spec = std_conv_spec{l.in_channels, l.out_channels, l.kernel, l.stride, l.groups, padding};
    const std::string name(l.name);
    u.weight = c.require(l.stage, l.block, name + ".weight");
    u.bias = c.require(l.stage, l.block, name + ".bias");
    u.gain = c.require(l.stage, l.block, name + ".gain");
    return u;
  }

  // x: [B, H, W, in] -> y: [B, Ho, Wo, out]; standardises the weight into its operand first
  template <class Ctx, class X, class Y>
  void forward(Ctx& c, const X& x, const Y& y) const {
    std_conv_forward(c.space(), spec, Ctx::as4(c.params(), weight), c.params().vector(gain), c.params().vector(bias),
                     x, c.operand4(weight), c.mean(weight), c.rstd(weight), y);
  }
  // The forward's x and dy: [B, Ho, Wo, out] -> dx (+ beta_dx·dx; empty: not wanted) and the three gradients
  template <class Ctx, class X, class DY, class DX>
  void backward(Ctx& c, const X& x, const DY& dy, const DX& dx, float beta_dx = 0.0f) const {
    std_conv_backward(c.space(), spec, Ctx::as4(c.params(), weight), c.params().vector(gain), x, c.operand4(weight),
                      c.mean(weight), c.rstd(weight), dy, dx, c.dw_scratch(weight), Ctx::as4(c.grads(), weight),
                      c.grads().vector(gain), c.grads().vector(bias), beta_dx);
  }
};

// A linear map on pooled vectors: the squeeze-excite's 1×1 convs (weight [out, in, 1, 1]) and the classifier
// (weight [out, in]), with a bias.
struct nf_linear {
  int weight = -1, bias = -1;

  template <class Ctx>
  static nf_linear bind(const Ctx& c, const nfnet_layer& l) {
    const std::string name(l.name);
    return nf_linear{c.require(l.stage, l.block, name + ".weight"), c.require(l.stage, l.block, name + ".bias")};
  }

  // x: [B, in] -> y: [B, out] = x·Wᵀ + b; converts the weight into its operand first where the types differ
  template <class Ctx, class X, class Y>
  void forward(Ctx& c, const X& x, const Y& y) const {
    const auto w = c.linear_operand(weight);
    if constexpr (!Ctx::params_are_operands)
      kernels::convert(c.space(), c.params().vector(weight),
                       typename Ctx::template view1<typename Ctx::act_type>(w.data(), w.size()));
    linear_forward(c.space(), x, w, c.params().vector(bias), y);
  }
  // The forward's x and dy: [B, out] -> dx: [B, in] (empty: not wanted), dW, db (overwritten)
  template <class Ctx, class X, class DY, class DX>
  void backward(Ctx& c, const X& x, const DY& dy, const DX& dx) const {
    linear_backward(c.space(), x, c.linear_operand(weight), dy, Ctx::as2(c.grads(), weight), c.grads().vector(bias), dx,
                    c.column_workspace(dy.extent(0), dy.extent(1)));
  }
};

}  // namespace vitscale::model_detail
