#pragma once
// vitscale::nfnet<Shape, Policy, ExecSpace>: a normaliser-free ResNet (NFNet) of a compile-time nfnet_shape, forward
// and backward, matching timm's NormFreeNet (dm_nfnet structure) in logits, features and every gradient.
//
//   using shape = vitscale::presets::nfnet_fmnist;
//   vitscale::nfnet<shape, vitscale::precision::fp32, Kokkos::OpenMP> model;   // zero parameters, 28 px
//   auto logits = model.forward(images);           // images: [B, 28, 28, 1] float, NHWC
//   model.backward(dlogits);                       // every gradient in model.gradients(), overwritten
//
// A short composer of its units, in the walk's order (config/nfnet_walk.hpp): the stem (model/layers/nf_stem.hpp),
// the blocks (model/layers/nf_block.hpp) and the head (model/heads/nf_head.hpp), on one context
// (model/nfnet_context.hpp) holding the parameter and gradient arenas (timm's names and layouts: a timm
// safetensors file loads tensor by tensor). Activations are laid out once per batch size, at the first forward
// with it; nothing is allocated inside a forward or backward after that.
//
// Not yet: inference that keeps nothing (predict() runs the training forward without its masks), a resolution
// change, rematerialisation, and checkpoints of the model and its optimizer (io/).

#include <vitscale/config/nfnet_shape.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/precision.hpp>
#include <vitscale/model/heads/nf_head.hpp>
#include <vitscale/model/init.hpp>
#include <vitscale/model/layer_context.hpp>
#include <vitscale/model/layers/nf_block.hpp>
#include <vitscale/model/layers/nf_stem.hpp>
#include <vitscale/model/nfnet_context.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace vitscale {

template <class Shape, class Policy = precision::fp32, class ExecSpace = Kokkos::DefaultExecutionSpace>
class nfnet {
  static_assert(is_nfnet_shape_v<Shape>, "nfnet<Shape, ...>: Shape must be a vitscale::nfnet_shape (or an NFNet preset)");
  static_assert(precision::is_policy_v<Policy>, "nfnet<Shape, Policy, ...>: Policy must be a vitscale::precision policy");
  static_assert(Kokkos::is_execution_space<ExecSpace>::value, "nfnet<..., ExecSpace>: not a Kokkos execution space");

 public:
  using shape = Shape;
  using policy = Policy;
  using execution_space = ExecSpace;
  using param_type = typename Policy::param_type;
  using grad_type = typename Policy::grad_type;
  using context_type = model_detail::nf_context<Shape, Policy, ExecSpace>;
  using act_type = typename context_type::act_type;
  using memory_space = typename context_type::memory_space;
  using parameters_type = typename context_type::parameters_type;
  using gradients_type = typename context_type::gradients_type;
  using logits_view = Kokkos::View<float**, Kokkos::LayoutRight, memory_space>;
  using features_view = Kokkos::View<act_type**, Kokkos::LayoutRight, memory_space>;

  // A model with every parameter zero, for images of `resolution` pixels.
  explicit nfnet(int resolution = Shape::resolution, const ExecSpace& space = ExecSpace())
      : c_(space), resolution_(resolution) {
    if (resolution < 1) detail::fail("nfnet: the resolution must be at least 1 pixel, it is ", resolution);
    build();
  }
  // A model initialised as timm's NormFreeNet (model/init.hpp: init_nfnet_tensor), reproducibly from the seed.
  explicit nfnet(const init::timm& scheme, int resolution = Shape::resolution, const ExecSpace& space = ExecSpace())
      : nfnet(resolution, space) {
    auto& p = c_.params();
    std::vector<float> host;
    for (int i = 0; i < p.count; ++i) {
      host.resize(static_cast<std::size_t>(p.info(i).numel()));
      init_nfnet_tensor(scheme, Shape::describe(), p.info(i), host.data());
      set_parameter(i, host.data(), host.size());
    }
  }

  int resolution() const { return resolution_; }
  const ExecSpace& space() const { return c_.space(); }
  // Nothing is derived from the parameters between steps (each forward standardises the weights afresh); the
  // optimizers call this after an update.
  void parameters_changed() {}
  parameters_type& parameters() { return c_.params(); }
  const parameters_type& parameters() const { return c_.params(); }
  gradients_type& gradients() { return c_.grads(); }
  const gradients_type& gradients() const { return c_.grads(); }

  // Tensor i as host floats (converted from the parameter type).
  std::vector<float> parameter(int i) const {
    const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), c_.params().vector(i));
    std::vector<float> out(host.extent(0));
    for (std::size_t k = 0; k < out.size(); ++k) out[k] = static_cast<float>(host(k));
    return out;
  }
  // Tensor i from host floats (converted to the parameter type).
  void set_parameter(int i, const float* host, std::size_t count) {
    auto v = c_.params().vector(i);
    if (count != v.extent(0))
      detail::fail("nfnet::set_parameter: tensor '", c_.params().info(i).full_name(), "' has ", v.extent(0),
                   " elements, ", count, " were given");
    auto mirror = Kokkos::create_mirror_view(v);
    for (std::size_t k = 0; k < count; ++k) mirror(k) = static_cast<typename parameters_type::value_type>(host[k]);
    Kokkos::deep_copy(v, mirror);
  }

  // Training-time regularisation (the NFNet recipe's): dropout on the pooled features before the classifier,
  // and stochastic depth on each block's residual branch, the last block's rate drop_path and block i of n
  // drop_path·i/(n − 1) (timm's calculate_drop_path_rates); masks keyed by (seed, step, site) and the image's
  // index first_image + b, as the ViT's (model/layer_context.hpp). Rates must lie in [0, 1).
  void set_regularization(const regularization& r) {
    kernels::detail::check_drop_probability("nfnet::set_regularization (dropout)", r.dropout);
    kernels::detail::check_drop_probability("nfnet::set_regularization (drop_path)", r.drop_path);
    reg_ = r;
    const std::size_t n = blocks_.size();
    for (std::size_t i = 0; i < n; ++i)
      blocks_[i].drop_path = n > 1 ? r.drop_path * double(i) / double(n - 1) : 0.0;
    head_.dropout = r.dropout;
  }
  const regularization& regularization_setting() const { return reg_; }

  // images: [B, H, W, C] float (contiguous, NHWC) at resolution() -> logits: [B, classes] float, valid until the
  // next call. Keeps what backward needs; `step` keys the dropout and stochastic-depth masks.
  template <class Images>
  logits_view forward(const Images& images, std::uint32_t step = 0) {
    return run_forward(images, true, step);
  }
  // Inference: the same forward without dropout or stochastic depth (what it keeps is not used).
  template <class Images>
  logits_view predict(const Images& images) {
    return run_forward(images, false, 0);
  }

 private:
  template <class Images>
  logits_view run_forward(const Images& images, bool training, std::uint32_t step) {
    static_assert(Kokkos::is_view<Images>::value && Images::rank == 4,
                  "nfnet::forward: images must be a rank-4 Kokkos::View [B, H, W, C]");
    static_assert(std::is_same<std::remove_const_t<typename Images::value_type>, float>::value,
                  "nfnet::forward: images must hold float");
    const std::size_t batch = images.extent(0);
    ::vitscale::detail::require_extents("nfnet::forward", "images", images,
                                        {batch, std::size_t(resolution_), std::size_t(resolution_),
                                         std::size_t(Shape::in_channels)});
    if (!images.span_is_contiguous()) detail::fail("nfnet::forward: images must be contiguous");
    if (batch == 0) detail::fail("nfnet::forward: the batch is empty");
    layout(static_cast<int>(batch));
    const model_detail::nf_masks masks{reg_.seed, step, reg_.first_image, training};
    stem_.forward(c_, images, stem_out_);
    for (std::size_t b = 0; b < blocks_.size(); ++b) blocks_[b].forward(c_, block_input(b), outputs_[b], masks);
    head_.forward(c_, last_output(), logits_, masks);
    forwarded_ = training;
    masks_ = masks;
    return logits_;
  }

 public:

  // The classifier's input of the last forward: [B, features] (timm's forward_head(pre_logits=True)).
  features_view features() const { return head_.pooled; }

  // dlogits: [B, classes] float, the loss gradient for the last forward() -> every parameter gradient,
  // overwritten in gradients().
  template <class DLogits>
  void backward(const DLogits& dlogits) {
    if (!forwarded_) detail::fail("nfnet::backward: call forward (not predict) first");
    ::vitscale::detail::require_extents("nfnet::backward", "dlogits", dlogits,
                                        {logits_.extent(0), logits_.extent(1)});
    auto stream = [&](int which, const auto& like) {
      return view4(dstream_[which].data(), like.extent(0), like.extent(1), like.extent(2), like.extent(3));
    };
    int cur = 0;
    view4 d = stream(cur, last_output());
    head_.backward(c_, last_output(), dlogits, d, scratch_[0], masks_);
    for (std::size_t i = blocks_.size(); i-- > 0;) {
      view4 dx = stream(1 - cur, block_input(i));
      blocks_[i].backward(c_, block_input(i), d, dx, scratch_[0], scratch_[1], scratch_[2], masks_);
      d = dx;
      cur = 1 - cur;
    }
    stem_.backward(c_, d, scratch_[0], scratch_[1]);
  }

 private:
  using view4 = typename context_type::template view4<act_type>;
  using buffer4 = Kokkos::View<act_type****, Kokkos::LayoutRight, memory_space>;
  using flat = Kokkos::View<act_type*, memory_space>;

  // The units, from the walk at this resolution.
  struct binder : nfnet_sink {
    nfnet* m;
    int stem_convs = 0;
    void block(const nfnet_block& b) {
      m->blocks_.emplace_back();
      m->blocks_.back().bind_block(m->c_, b, static_cast<int>(m->blocks_.size() - 1));
    }
    void layer(const nfnet_layer& l) {
      constexpr nfnet_padding padding = Shape::padding;
      if (l.part == nfnet_part::stem) m->stem_.bind(m->c_, l, stem_convs++, padding);
      else if (l.part == nfnet_part::stages) m->blocks_.back().bind_layer(m->c_, l, padding);
      else m->head_.bind_layer(m->c_, l, padding);
    }
  };
  void build() {
    binder b;
    b.m = this;
    walk_nfnet(Shape::describe(), b, resolution_);
  }

  const buffer4& block_input(std::size_t b) const { return b == 0 ? stem_out_ : outputs_[b - 1]; }
  const buffer4& last_output() const { return outputs_.empty() ? stem_out_ : outputs_.back(); }

  void layout(int batch) {
    if (batch == batch_) return;
    batch_ = batch;
    stem_.layout(batch);
    const int stem_side = stem_.side[3];
    const auto u = [](int v) { return static_cast<std::size_t>(v); };
    stem_out_ = buffer4("vitscale::nfnet_stem_out", u(batch), u(stem_side), u(stem_side), u(Shape::stem_channels));
    outputs_.clear();
    std::size_t stream = stem_out_.size(), scratch = 0;
    for (int i = 0; i < 3; ++i) scratch = std::max(scratch, stem_.act[i].size());
    scratch = std::max(scratch, stem_.image.size());
    for (auto& b : blocks_) {
      b.layout(batch);
      outputs_.emplace_back("vitscale::nfnet_block_out", u(batch), u(b.info.out_side), u(b.info.out_side),
                            u(b.info.out_channels));
      stream = std::max(stream, outputs_.back().size());
      scratch = std::max(scratch, b.scratch_elements(batch));
    }
    const int last_channels = blocks_.empty() ? Shape::stem_channels : blocks_.back().info.out_channels;
    head_.layout(batch, last_channels);
    scratch = std::max(scratch, head_.scratch_elements(batch));
    logits_ = logits_view("vitscale::nfnet_logits", u(batch), u(Shape::num_classes));
    for (auto& d : dstream_) d = flat("vitscale::nfnet_dstream", stream);
    for (auto& s : scratch_) s = flat("vitscale::nfnet_scratch", scratch);
  }

  context_type c_;
  regularization reg_{};
  model_detail::nf_masks masks_{};
  int resolution_;
  int batch_ = 0;
  bool forwarded_ = false;
  model_detail::nf_stem<context_type> stem_;
  std::vector<model_detail::nf_block<context_type>> blocks_;
  model_detail::nf_head<context_type> head_;
  buffer4 stem_out_;
  std::vector<buffer4> outputs_;
  logits_view logits_;
  flat dstream_[2], scratch_[3];
};

}  // namespace vitscale
