#pragma once
// vit<Shape, Policy, ExecSpace>: the Vision Transformer model — parameters, forward, backward, features.
//
//   vitscale::vit<presets::vit_b16, precision::bf16_mixed, Kokkos::OpenMP> model(init::big_vision{.seed = 0});
//   auto logits = model.forward(images);      // images: [B, H, W, C] float, channels last
//   model.backward(dlogits);                  // every parameter's gradient, in model.gradients()
//
// Structure. This file composes the layers, each one unit with its parameters, saved activations, forward and
// backward (CONTRIBUTING.md has the list): model/layers/patch_embedding.hpp, classic_block.hpp or
// parallel_block.hpp per block, the final norm here, a pooling head from model/heads/ (pool_head<Shape::pool>)
// and model/heads/classifier.hpp; what they share at run time is model/layer_context.hpp, a base of vit.
//
// Memory. Parameters, gradients (and the GEMM-precision weight copy of policies that keep one) are
// parameter arenas of the shape's tensor table (model/parameters.hpp). Activations live in one more arena,
// laid out from the shape, the resolution and the batch (layout_activations below) by the buffers each unit
// declares (config/activations.hpp, from which the accounting counts them too): what a training step keeps for
// backward, plus the scratch the units use. It is sized by
// reserve() or by the first call at a larger batch, and never allocated again after that: a training loop
// at a fixed batch allocates nothing after its first step. Inference (predict, features) lays the same
// arena out with one block's worth of activations, so it keeps nothing per block.
//
// Semantics follow timm (the oracle the tests compare against, parameter names included) and big_vision:
// pre-LN blocks; ViT-22B's parallel block as timm's ParallelScalingBlock (one input product for
// [MLP | q | k | v], no QKV bias but an MLP bias, QK-norm); LayerNorm eps 1e-6 everywhere (timm's ViT and
// big_vision); the final norm before pooling (big_vision; timm with fc_norm=False for GAP); GAP over the
// patch tokens; MAP as timm's AttentionPoolLatent = big_vision's MAPHead (no residual around the
// attention, then x + MLP(LN(x))); big_vision's tanh pre-logits; attention scale 1/sqrt(head_dim).
// The output product of the parallel block is computed as two GEMMs accumulating into one output (same
// FLOPs as ViT-22B's single product over [attention | MLP]; timm's separate weights need no concatenation).
//
// Regularisation (training forward only): dropout with one rate at big_vision's sites — the embedded
// tokens, each branch's output before its residual join, and the MLP's hidden activation — and stochastic
// depth per sample on each residual branch with timm's linear rule (block l: rate·l/(depth − 1)). Masks are
// functions of (seed, step, site) and of the element's (or sample's) index in the global batch, regenerated
// by backward; there is no attention-probability dropout (the fused attention never forms the
// probabilities). The global index is what lets a split model draw the unsharded model's masks: a
// data-parallel rank sets regularization::first_image to where its images start in the global batch, and on
// a model axis the model adds its rank's place in the group and keys the MLP hidden activation of the
// gathered rows and this rank's units by their rows and units in the whole model, so every mesh computes
// exactly the function the whole model computes on the whole batch.

#include <vitscale/config/shape.hpp>
#include <vitscale/core/arena.hpp>
#include <vitscale/core/precision.hpp>
#include <vitscale/core/random.hpp>
#include <vitscale/kernels/activations.hpp>
#include <vitscale/kernels/attention.hpp>
#include <vitscale/kernels/dropout.hpp>
#include <vitscale/kernels/gemm.hpp>
#include <vitscale/kernels/layernorm.hpp>
#include <vitscale/kernels/pooling.hpp>
#include <vitscale/kernels/qk_norm.hpp>
#include <vitscale/kernels/reduction.hpp>
#include <vitscale/kernels/residual.hpp>
#include <vitscale/model/embedding.hpp>
#include <vitscale/model/heads/classifier.hpp>
#include <vitscale/model/heads/passes.hpp>
#include <vitscale/model/heads/pool.hpp>
#include <vitscale/model/layer_context.hpp>
#include <vitscale/model/layers/classic_block.hpp>
#include <vitscale/model/layers/parallel_block.hpp>
#include <vitscale/model/layers/patch_embedding.hpp>
#include <vitscale/model/init.hpp>
#include <vitscale/model/linear.hpp>
#include <vitscale/model/parameters.hpp>
#include <vitscale/model/posemb.hpp>
#include <vitscale/model/sharded_linear.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

namespace vitscale {

// Model parallelism (ViT-22B's sharded parallel block; config/sharding.hpp, model/sharded_linear.hpp): the
// ranks of `model_axis` each hold 1/size of the block's products and 1/size of the images between blocks.
// Every rank of the axis constructs its model with the same shape, resolution and initialisation, and calls
// forward and backward together on its own images. No communicator (or one of size 1): the whole model.
// Gradients come out as this rank's contribution; shard/training.hpp sums them over the mesh.
struct model_parallel {
  communicator* model_axis = nullptr;
  int chunks = 4;  // pieces each collective is cut into, to overlap it with the products (fewer if the
                   // local batch has fewer images)
};

// Told during backward which gradient tensors are final, so that they can be communicated while backward
// computes the rest: gradients_ready(first, end) names the tensors [first, end) of the parameter table, called
// once for the head (with the final norm), once per block from the last to the first, and once for the
// embedding; together the calls cover the table once. The model has fenced its space before each call, so
// the tensors may be read at once (shard::gradient_reducer sums them over a mesh this way).
class gradient_listener {
 public:
  virtual void gradients_ready(int first, int end) = 0;

 protected:
  ~gradient_listener() = default;
};


template <class Shape, class Policy = precision::fp32, class ExecSpace = Kokkos::DefaultHostExecutionSpace>
class vit : private model_detail::layer_context<Shape, Policy, ExecSpace> {
  using context = model_detail::layer_context<Shape, Policy, ExecSpace>;

  static_assert(is_vit_shape_v<Shape>, "vit<Shape, ...>: Shape must be a vitscale::vit_shape (or a preset)");
  static_assert(precision::is_policy_v<Policy>, "vit<Shape, Policy, ...>: Policy must be a vitscale::precision policy");
  static_assert(Kokkos::is_execution_space<ExecSpace>::value, "vit<..., ExecSpace>: not a Kokkos execution space");
  static_assert(std::is_same<typename Policy::act_type, typename Policy::gemm_type>::value,
                "vit: the policy's activations and GEMM inputs must have the same type (activations are the "
                "GEMMs' inputs, read without conversion)");

 public:
  using shape = Shape;
  using policy = Policy;
  using execution_space = ExecSpace;
  // The storage types (precision.hpp), unmanaged Views in the model's memory space (model/layer_context.hpp),
  // and the parameter and gradient arenas.
  using typename context::memory_space, typename context::param_type, typename context::grad_type,
      typename context::act_type, typename context::gemm_type;
  template <class T>
  using view1 = typename context::template view1<T>;
  template <class T>
  using view2 = typename context::template view2<T>;
  template <class T>
  using view3 = typename context::template view3<T>;
  using typename context::parameters_type, typename context::gradients_type;
  using logits_view = view2<const float>;

  // What a frozen-feature evaluation reads: the tokens after the final norm [B, N, D] and the pooled
  // representation the classifier sees [B, features] (after pre-logits when the shape has it).
  struct features_type {
    view3<const act_type> tokens;
    view2<const act_type> pooled;
  };

  using context::depth, context::D, context::H, context::F, context::head_dim, context::P, context::C;
  using context::parallel, context::centered, context::norm_bias, context::norm_eps, context::gelu,
      context::bias_gelu;

  // A model with every parameter zero (to be loaded from a checkpoint), at `resolution` pixels; with a
  // model axis, this rank's shard of it.
  explicit vit(int resolution = Shape::resolution, ExecSpace space = ExecSpace(), model_parallel mp = {})
      : context(resolution, space, context::shard_of(mp.model_axis, mp.chunks), mp.model_axis, mp.chunks) {
    Shape::grid(resolution);  // validates
    make_derived_state();
  }

  // A model initialised by `scheme` (init::timm, init::big_vision), reproducibly from its seed. On a model
  // axis each rank keeps its shard of the same initial model.
  template <class Scheme, std::enable_if_t<is_init_scheme_v<Scheme>, int> = 0>
  explicit vit(const Scheme& scheme, int resolution = Shape::resolution, ExecSpace space = ExecSpace(),
               model_parallel mp = {})
      : vit(resolution, space, mp) {
    const auto full = tensor_table<Shape>(resolution);
    std::size_t total = 0;
    for (const tensor_info& t : full) total += static_cast<std::size_t>(t.numel());
    std::vector<float> host(total);
    init_parameters<Shape>(scheme, resolution, host.data());
    if (shard_.count == 1) {
      upload(host.data(), params_.all());
    } else {
      std::vector<float> local(params_.size());
      std::size_t offset = 0;
      for (int i = 0; i < parameters_type::count; ++i) {
        extract_shard<Shape>(full[i], shard_, host.data() + offset, local.data() + params_.offset(i));
        offset += static_cast<std::size_t>(full[i].numel());
      }
      upload(local.data(), params_.all());
    }
  }

  // ---- parameters
  // Mutable access marks the GEMM weight copy stale; the next forward refreshes it.
  parameters_type& parameters() {
    weights_stale_ = true;
    return params_;
  }
  const parameters_type& parameters() const { return params_; }
  const gradients_type& gradients() const { return grads_; }
  gradients_type& gradients() { return grads_; }
  int resolution() const { return params_.resolution(); }
  const execution_space& space() const { return space_; }
  // This rank's place on the model axis ({1, 0} without model parallelism), and what the sharded block
  // communicated since communication().reset().
  const model_shard& shard() const { return shard_; }
  // The model axis' communicator (null without model parallelism): what the optimizers sum over.
  communicator* model_axis() const { return model_axis_; }
  comm_stats& communication() { return comm_stats_; }
  // Call after writing parameters through a pointer obtained earlier.
  void parameters_changed() { weights_stale_ = true; }

  // Tensor i from / to host floats (converted to and from the parameter type).
  void set_parameter(int i, const float* host, std::size_t count) {
    if (count != static_cast<std::size_t>(params_.info(i).numel()))
      detail::fail("vit::set_parameter: tensor '", params_.info(i).full_name(), "' has ", params_.info(i).numel(),
                   " elements, ", count, " were given");
    upload(host, params_.vector(i));
    weights_stale_ = true;
  }
  std::vector<float> parameter(int i) const { return download(params_.vector(i)); }
  std::vector<float> gradient(int i) const { return download(grads_.vector(i)); }

  // ---- regularisation
  void set_regularization(const regularization& r) {
    kernels::detail::check_drop_probability("vit::set_regularization (dropout)", r.dropout);
    kernels::detail::check_drop_probability("vit::set_regularization (drop_path)", r.drop_path);
    reg_ = r;
  }
  const regularization& regularization_settings() const { return reg_; }

  // ---- resolution change
  // Runs the model at `pixels` from now on: a learned position embedding is resampled (timm's
  // resample_abs_pos_embed: bicubic with antialiasing by default, class-token entry kept), a sin-cos one
  // regenerated. Gradients are reset to zero; activations are laid out again on the next call.
  void set_resolution(int pixels, interpolation kind = interpolation::bicubic, bool antialias = true) {
    Shape::grid(pixels);
    if (pixels == resolution()) return;
    parameters_type next(pixels, tensor_subset::all, "vitscale::parameters", shard_);
    for (int i = 0; i < parameters_type::count; ++i) {
      if (params_.info(i).part == component::pos_embed) continue;
      Kokkos::deep_copy(space_, next.vector(i), params_.vector(i));
    }
    if constexpr (Shape::posemb == posemb_kind::learned) {
      const int pe = params_.find(-1, "pos_embed");
      const std::vector<float> old = download(params_.vector(pe));
      std::vector<float> resampled(static_cast<std::size_t>(next.info(pe).numel()));
      const int prefix = Shape::cls_posemb ? 1 : 0;
      resample_posemb(old.data(), prefix, Shape::grid(resolution()), Shape::grid(resolution()), D,
                      resampled.data(), Shape::grid(pixels), Shape::grid(pixels), kind, antialias);
      upload(resampled.data(), next.vector(pe));
    }
    space_.fence();
    params_ = std::move(next);
    grads_ = gradients_type(pixels, tensor_subset::all, "vitscale::gradients", shard_);
    make_derived_state();
  }

  // ---- activations
  // Rematerialisation (config/activations.hpp): with rematerialization::blocks, training keeps only each block's
  // input and backward runs each block's forward again before its backward — one block's activations instead
  // of depth of them, for one more forward of the blocks per step (flop_counts::training_with). The gradients
  // are bit-identical to training without it. Takes effect at the next forward (the arena is laid out again).
  void set_rematerialization(rematerialization r) {
    if (r == remat_) return;
    remat_ = r;
    batch_ = -1;  // lay out again
    saved_batch_ = -1;
  }
  rematerialization rematerialization_setting() const { return remat_; }

  // Lays the activation arena out for `batch` images (allocating if it is too small), for training
  // (everything backward needs) or inference only.
  void reserve(int batch, bool training = true) { layout_activations(batch, training); }
  // Bytes of the activation arena as laid out now, and allocated.
  std::size_t activation_bytes() const { return activations_.used(); }
  std::size_t activation_capacity() const { return activations_.capacity(); }
  std::size_t activation_allocations() const { return activations_.allocations(); }

  // ---- forward and backward
  // images: [B, H, W, C] float at resolution() -> logits: [B, classes] float, valid until the next call.
  // Keeps what backward needs; `step` keys the dropout and drop-path masks.
  template <class Images>
  logits_view forward(const Images& images, std::uint32_t step = 0) {
    run_forward(images, true, step);
    saved_batch_ = batch_;
    saved_step_ = step;
    return logits_view(head_.logits, static_cast<std::size_t>(batch_), static_cast<std::size_t>(Shape::num_classes));
  }

  // Inference: no dropout, nothing kept for backward (the activation arena holds one block's worth).
  template <class Images>
  logits_view predict(const Images& images) {
    run_forward(images, false, 0);
    return logits_view(head_.logits, static_cast<std::size_t>(batch_), static_cast<std::size_t>(Shape::num_classes));
  }

  // Inference up to the head's input: token features [B, N, D] after the final norm (the last block's output
  // with gap_fc_norm, whose norm follows the pooling: timm's forward_features) and the pooled representation
  // [B, features].
  template <class Images>
  features_type features(const Images& images) {
    run_forward(images, false, 0);
    const std::size_t b = static_cast<std::size_t>(batch_);
    return {view3<const act_type>(head_tokens(), b, tokens_, D), view2<const act_type>(head_.input(), b, Shape::features)};
  }

  // dlogits: [B, classes] float, the loss gradient for the last forward() -> every parameter gradient,
  // overwritten in gradients(). A listener hears of each group of tensors as its gradients are final.
  template <class DLogits>
  void backward(const DLogits& dlogits, gradient_listener* listener = nullptr) {
    static_assert(Kokkos::is_view<DLogits>::value && DLogits::rank == 2,
                  "vit::backward: dlogits must be a rank-2 Kokkos View [batch, classes]");
    if (saved_batch_ < 0 || !training_layout_)
      detail::fail("vit::backward: no activations to differentiate; call forward() (not predict() or features()) "
                   "first");
    detail::require_extents("vit::backward", "dlogits", dlogits,
                            {static_cast<std::size_t>(saved_batch_), static_cast<std::size_t>(Shape::num_classes)});
    run_backward(dlogits, listener);
  }

 private:
  // The layers (one unit each: model/layers/, model/heads/).
  using block_type = std::conditional_t<parallel, model_detail::parallel_block<context>,
                                        model_detail::classic_block<context>>;

  // The run-time state and the views into it, from the layer context (model/layer_context.hpp).
  using typename context::buffers;
  using context::space_, context::shard_, context::model_axis_, context::comm_stats_, context::params_,
      context::grads_, context::weight_copy_, context::reg_, context::s_, context::tokens_, context::patches_,
      context::batch_, context::training_layout_, context::train_, context::step_;
  using context::upload, context::download, context::weight, context::vec, context::gvec, context::rows, context::m2,
      context::f1, context::norm_mean, context::ln_workspace, context::stream, context::norm_forward;

  // The final norm on every token (absent with gap_fc_norm, whose norm is the pooling head's).
  static constexpr int norm_w = Shape::token_norm ? tensor_index<Shape>(-1, "norm.weight") : -1;
  static constexpr int norm_b = Shape::token_norm && norm_bias ? tensor_index<Shape>(-1, "norm.bias") : -1;

  // ------------------------------------------------------------------------------------------------------
  // set-up

  void make_derived_state() {
    const int res = resolution();
    tokens_ = Shape::tokens(res);
    patches_ = Shape::patches(res);
    if constexpr (Policy::keeps_weight_copy)
      weight_copy_.emplace(res, tensor_subset::weights, "vitscale::gemm_weights", shard_);
    weights_stale_ = true;
    embed_.set_grid(Shape::grid(res));
    find_block_ranges();
    batch_ = -1;
    saved_batch_ = -1;
  }

  void find_block_ranges() {
    const auto& p = params_;
    // Where each block's tensors begin in the table (and where the head's do: block_tensors_[depth]); the
    // listener of backward is told of these ranges, so they must be contiguous and in this order.
    block_tensors_.assign(depth + 1, -1);
    for (int i = parameters_type::count - 1; i >= 0; --i)
      if (p.info(i).block >= 0) block_tensors_[p.info(i).block] = i;  // ends at each block's first tensor
    for (int i = 0; i < parameters_type::count; ++i)
      if (p.info(i).block == depth - 1) block_tensors_[depth] = i + 1;
    for (int i = 0; i < parameters_type::count; ++i) {
      const int b = p.info(i).block;
      const bool in_place = b >= 0 ? i >= block_tensors_[b] && i < block_tensors_[b + 1]
                                   : i < block_tensors_[0] || i >= block_tensors_[depth];
      if (!in_place)
        detail::fail("vit: tensor '", p.info(i).full_name(), "' breaks the table's [embedding | blocks | head] order");
    }
  }

  // The GEMM copy of the weights, refreshed when the parameters may have changed.
  void refresh_weights() {
    if constexpr (Policy::keeps_weight_copy) {
      if (!weights_stale_) return;
      for (int i = 0; i < parameters_type::count; ++i)
        if (weight_copy_->has(i)) kernels::convert(space_, params_.vector(i), weight_copy_->vector(i));
    }
    weights_stale_ = false;
  }
  // The layout of the activation arena for `batch` images: the buffers the units declare
  // (config/activations.hpp), in the order the accounting counts them.
  void plan(arena_cursor& a, int batch, bool training) {
    activation_geometry g;
    g.images = static_cast<std::size_t>(batch);
    g.tokens = tokens_;
    g.patches = patches_;
    g.training = training;
    g.remat = remat_;
    g.ranks = model_axis_ ? static_cast<std::size_t>(shard_.count) : 1;
    g.workspace_floats = kernels::detail::param_grad_chunks * workspace_cols();
    buffers s;
    activations::plan_vit(a, g, static_cast<typename context::stream_buffers&>(s), pool_, head_, embed_,
                          static_cast<typename context::scratch_buffers&>(s));
    s_ = s;
  }

  static constexpr std::size_t workspace_cols() {
    std::size_t w = 2 * std::size_t(std::max(D, F));
    w = std::max(w, std::size_t(F) + 3 * D);
    w = std::max(w, std::size_t(Shape::num_classes));
    w = std::max(w, std::size_t(std::max(Shape::pre_logits, 1)));
    return w;
  }

  void layout_activations(int batch, bool training) {
    if (batch < 1) detail::fail("vit: the batch must hold at least one image, it has ", batch);
    if (batch == batch_ && training == training_layout_) return;
    activations_.build([&](arena_cursor& a) { plan(a, batch, training); });
    batch_ = batch;
    training_layout_ = training;
    this->layout_remat_ = remat_;
    saved_batch_ = -1;
  }

  // ------------------------------------------------------------------------------------------------------
  // views into the arena

  // ------------------------------------------------------------------------------------------------------
  // forward

  template <class Images>
  void run_forward(const Images& images, bool training, std::uint32_t step) {
    static_assert(Kokkos::is_view<Images>::value && Images::rank == 4,
                  "vit: images must be a rank-4 Kokkos View [batch, height, width, channels]");
    static_assert(Kokkos::SpaceAccessibility<ExecSpace, typename Images::memory_space>::accessible,
                  "vit: the images must be in memory the model's execution space can read");
    const int res = resolution();
    if (images.extent(1) != std::size_t(res) || images.extent(2) != std::size_t(res) || images.extent(3) != std::size_t(C))
      detail::fail("vit: images are ", detail::extents_string(images), ", expected [batch, ", res, ", ", res, ", ", C,
                   "] (channels last, at the model's resolution; set_resolution() changes it)");
    // A training layout also serves inference (one slot of it), so an inference call does not re-lay out
    // (and allocate) between training steps; it does invalidate what backward needs.
    const int batch = static_cast<int>(images.extent(0));
    if (!(training_layout_ && !training && batch == batch_)) layout_activations(batch, training);
    saved_batch_ = -1;
    train_ = training;
    step_ = step;
    refresh_weights();

    embed_.forward(ctx(), images, stream(0));
    for (int l = 0; l < depth; ++l) block_type::forward(ctx(), l, stream(l), stream(l + 1));
    head_forward();
  }

  context& ctx() { return *this; }

  // The final norm on every token: xn = LN(x) of the last block's output.
  void final_norm_forward() {
    const std::size_t r = rows();
    norm_forward(norm_w, norm_b, m2(stream(depth), r, D), m2(s_.xn, r, D), s_.fn_mean, s_.fn_rstd, r);
  }
  // The tokens the pooling reads: the final norm's output, or (gap_fc_norm) the last block's output.
  act_type* head_tokens() const { return Shape::token_norm ? s_.xn : stream(depth); }

  // The last block's output -> the pooling head (model/heads/) -> the classifier -> logits.
  void head_forward() {
    const std::size_t B = static_cast<std::size_t>(batch_);
    if constexpr (Shape::token_norm) final_norm_forward();
    pool_.forward(ctx(), head_tokens(), m2(head_.pooled, B, D));
    head_.forward(ctx(), B);
  }

  // ------------------------------------------------------------------------------------------------------
  // backward

  template <class DLogits>
  void run_backward(const DLogits& dlogits, gradient_listener* listener) {
    train_ = true;
    step_ = saved_step_;
    // The table is [embedding | block 0 | ... | block depth−1 | final norm and head] (config/tensors.hpp).
    const auto ready = [&](int first, int end) {
      if (!listener) return;
      space_.fence();
      listener->gradients_ready(first, end);
    };
    head_backward(dlogits);  // leaves the gradient of the last block's output in s_.dx
    ready(block_tensors_[depth], parameters_type::count);
    const bool recompute = this->layout_remat_ == rematerialization::blocks;
    for (int l = depth - 1; l >= 0; --l) {
      // Rematerialised: block l's activations again, from its saved input, with forward's masks (the same
      // step and sites); its output is written over the saved one with the same bits. The forward's buffers
      // (config/activations.hpp) are disjoint from backward's, so s_.dx is untouched.
      if (recompute) block_type::forward(ctx(), l, stream(l), stream(l + 1));
      block_type::backward(ctx(), l, stream(l));
      ready(block_tensors_[l], block_tensors_[l + 1]);
    }
    embed_.backward(ctx(), s_.dx);
    ready(0, block_tensors_[0]);
  }

  // dlogits -> the classifier's and the pooling head's gradients -> the last block's output gradient in s_.dx.
  template <class DLogits>
  void head_backward(const DLogits& dlogits) {
    const std::size_t B = static_cast<std::size_t>(batch_);
    const auto dpooled = head_.backward(ctx(), dlogits, B);
    if constexpr (Shape::token_norm) {
      final_norm_forward();  // the normed tokens again (MAP reads them)
      pool_.backward(ctx(), s_.xn, dpooled, s_.dt);
      final_norm_backward(m2(s_.dt, rows(), D));
    } else {
      pool_.backward(ctx(), stream(depth), dpooled, s_.dx);
    }
  }

  // dxn: [rows, D], the gradient of the final norm's output -> the last block's output gradient in s_.dx.
  void final_norm_backward(const view2<act_type>& dxn) {
    const std::size_t r = rows();
    kernels::layernorm_backward<centered, norm_bias>(space_, m2(stream(depth), r, D), vec(norm_w),
                                                     norm_mean(s_.fn_mean, r), f1(s_.fn_rstd, r), dxn, m2(s_.dx, r, D),
                                                     gvec(norm_w), gvec(norm_b), this->template ln_workspace<norm_bias>(r, D));
  }

  bool weights_stale_ = true;
  model_detail::patch_embedding<context> embed_;
  model_detail::pool_head<Shape::pool, context> pool_;  // a pooling without a unit does not compile here
  model_detail::classifier<context> head_;
  std::vector<int> block_tensors_;  // [depth + 1]: first tensor of each block, then of the head
  arena<memory_space> activations_{"vitscale::activations"};
  int saved_batch_ = -1;
  std::uint32_t saved_step_ = 0;
  rematerialization remat_ = rematerialization::none;  // asked for; the layout follows at the next call
};

}  // namespace vitscale
