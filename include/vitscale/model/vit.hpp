#pragma once
// vit<Shape, Policy, ExecSpace>: the Vision Transformer model — parameters, forward, backward, features.
//
//   vitscale::vit<presets::vit_b16, precision::bf16_mixed, Kokkos::OpenMP> model(init::big_vision{.seed = 0});
//   auto logits = model.forward(images);      // images: [B, H, W, C] float, channels last
//   model.backward(dlogits);                  // every parameter's gradient, in model.gradients()
//
// Memory. Parameters, gradients (and the GEMM-precision weight copy of policies that keep one) are
// parameter arenas of the shape's tensor table (model/parameters.hpp). Activations live in one more arena,
// laid out from the shape, the resolution and the batch (layout_activations below): what a training step
// keeps for backward (the list in config/accounting.hpp), plus scratch shared by all blocks. It is sized by
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
#include <vitscale/model/heads.hpp>
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

// Training-time regularisation (see the top of this file). Rates must lie in [0, 1).
struct regularization {
  double dropout = 0.0;
  double drop_path = 0.0;  // the last block's rate; block l uses drop_path·l/(depth − 1)
  std::uint64_t seed = 0;
  // The index in the global batch of this model's first image: masks are keyed by global image (and
  // element) index, so that each data-parallel group draws its own masks and a split batch draws the masks
  // of the whole one. A data-parallel rank sets data_index · images per data group; on a model axis set the
  // group's first image, the model adds its rank's offset (model rank j holds group images j·B .. j·B + B − 1
  // of a local batch B). 0: this model sees the whole batch.
  std::uint64_t first_image = 0;
};

template <class Shape, class Policy = precision::fp32, class ExecSpace = Kokkos::DefaultHostExecutionSpace>
class vit {
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
  using memory_space = typename ExecSpace::memory_space;
  using param_type = typename Policy::param_type;
  using grad_type = typename Policy::grad_type;
  using act_type = typename Policy::act_type;
  using gemm_type = typename Policy::gemm_type;

  template <class T>
  using view1 = Kokkos::View<T*, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged>;
  template <class T>
  using view2 = Kokkos::View<T**, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged>;
  template <class T>
  using view3 = Kokkos::View<T***, Kokkos::LayoutRight, memory_space, Kokkos::MemoryUnmanaged>;
  template <class T>
  using heads_view = Kokkos::View<T****, Kokkos::LayoutStride, memory_space, Kokkos::MemoryUnmanaged>;
  template <class T>
  using strided2 = Kokkos::View<T**, Kokkos::LayoutStride, memory_space, Kokkos::MemoryUnmanaged>;

  using parameters_type = parameter_arena<Shape, param_type, memory_space>;
  using gradients_type = parameter_arena<Shape, grad_type, memory_space>;
  using logits_view = view2<const float>;

  // What a frozen-feature evaluation reads: the tokens after the final norm [B, N, D] and the pooled
  // representation the classifier sees [B, features] (after pre-logits when the shape has it).
  struct features_type {
    view3<const act_type> tokens;
    view2<const act_type> pooled;
  };

  static constexpr int depth = Shape::depth, D = Shape::width, H = Shape::heads, F = Shape::mlp_dim;
  static constexpr int head_dim = Shape::head_dim, P = Shape::patch, C = Shape::in_channels;
  static constexpr bool parallel = Shape::block == block_kind::parallel;
  static constexpr bool centered = Shape::norm_centered, norm_bias = Shape::norm_bias;
  static constexpr double norm_eps = 1e-6;
  static constexpr kernels::gelu_kind gelu =
      Shape::mlp_activation == activation::gelu_tanh ? kernels::gelu_kind::tanh : kernels::gelu_kind::erf;
  static constexpr kernels::gemm_epilogue bias_gelu = gelu == kernels::gelu_kind::tanh
                                                          ? kernels::gemm_epilogue::bias_gelu_tanh
                                                          : kernels::gemm_epilogue::bias_gelu_erf;

  // A model with every parameter zero (to be loaded from a checkpoint), at `resolution` pixels; with a
  // model axis, this rank's shard of it.
  explicit vit(int resolution = Shape::resolution, ExecSpace space = ExecSpace(), model_parallel mp = {})
      : space_(space), shard_(shard_of(mp)), model_axis_(shard_.count > 1 ? mp.model_axis : nullptr),
        chunks_(mp.chunks), params_(resolution, tensor_subset::all, "vitscale::parameters", shard_),
        grads_(resolution, tensor_subset::all, "vitscale::gradients", shard_) {
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
    return logits_view(s_.logits, static_cast<std::size_t>(batch_), static_cast<std::size_t>(Shape::num_classes));
  }

  // Inference: no dropout, nothing kept for backward (the activation arena holds one block's worth).
  template <class Images>
  logits_view predict(const Images& images) {
    run_forward(images, false, 0);
    return logits_view(s_.logits, static_cast<std::size_t>(batch_), static_cast<std::size_t>(Shape::num_classes));
  }

  // Inference up to the head's input: token features [B, N, D] after the final norm (the last block's output
  // with gap_fc_norm, whose norm follows the pooling: timm's forward_features) and the pooled representation
  // [B, features].
  template <class Images>
  features_type features(const Images& images) {
    run_forward(images, false, 0);
    const std::size_t b = static_cast<std::size_t>(batch_);
    return {view3<const act_type>(Shape::token_norm ? s_.xn : stream(depth), b, tokens_, D),
            view2<const act_type>(head_input(), b, Shape::features)};
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
  // Indices of a block's tensors in the table (-1: absent in this shape).
  struct block_index {
    int norm1_w = -1, norm1_b = -1, qkv_w = -1, qkv_b = -1, mlp_bias = -1;
    int qn_w = -1, qn_b = -1, kn_w = -1, kn_b = -1, proj_w = -1, proj_b = -1;
    int norm2_w = -1, norm2_b = -1, fc1_w = -1, fc1_b = -1, fc2_w = -1, fc2_b = -1;
  };
  struct model_index {
    int cls = -1, pos = -1, patch_w = -1, patch_b = -1, norm_w = -1, norm_b = -1, fcn_w = -1, fcn_b = -1;
    int latent = -1, mq_w = -1, mq_b = -1, mkv_w = -1, mkv_b = -1, mp_w = -1, mp_b = -1;
    int mn_w = -1, mn_b = -1, m1_w = -1, m1_b = -1, m2_w = -1, m2_b = -1;
    int pre_w = -1, pre_b = -1, head_w = -1, head_b = -1;
    std::vector<block_index> blocks;
  };

  // Activations saved by one block (training: one set per block; inference: one set for all).
  struct block_buffers {
    float *ln1_mean = nullptr, *ln1_rstd = nullptr, *ln2_mean = nullptr, *ln2_rstd = nullptr;
    act_type* qkv = nullptr;  // classic: [rows, 3D]; parallel: [rows, F + 3D] ([MLP | q | k | v])
    float *q_mean = nullptr, *q_rstd = nullptr, *k_mean = nullptr, *k_rstd = nullptr;  // [B, N, H]
    act_type* o = nullptr;    // attention output [rows, D]
    float* lse = nullptr;     // [B, H, N]
    act_type* x_mid = nullptr;  // classic: x + attention branch [rows, D]
    act_type* h = nullptr;      // classic: MLP pre-activation [rows, F] (training)
  };
  struct buffers {
    std::vector<act_type*> x;  // the residual stream entering block l (x[depth]: the final norm's input)
    std::vector<block_buffers> blocks;
    float *fn_mean = nullptr, *fn_rstd = nullptr;
    // gap_fc_norm: the mean of the tokens (fc_norm's input) and fc_norm's statistics (saved), its gradient
    act_type *gap = nullptr, *dgap = nullptr;
    float *fcn_mean = nullptr, *fcn_rstd = nullptr;
    // MAP head (saved)
    act_type *mq = nullptr, *mkv = nullptr, *mo = nullptr, *my = nullptr, *mh = nullptr;
    float *mlse = nullptr, *mln_mean = nullptr, *mln_rstd = nullptr;
    act_type *pooled = nullptr, *pre = nullptr;
    float* logits = nullptr;
    // scratch
    gemm_type* patches = nullptr;
    act_type *ptok = nullptr, *t = nullptr, *qkn = nullptr, *g = nullptr, *ybr = nullptr, *xn = nullptr;
    param_type* fused_bias = nullptr;
    act_type *latent = nullptr, *mz = nullptr, *mg = nullptr;
    // backward scratch
    act_type *dx = nullptr, *dbr = nullptr, *dt = nullptr, *dln = nullptr, *dout = nullptr, *du = nullptr;
    act_type *dg = nullptr, *dqkn = nullptr, *dl = nullptr, *dfeat = nullptr, *dpooled = nullptr;
    act_type *dmg = nullptr, *dmz = nullptr, *dmy = nullptr, *dmo = nullptr, *dmq = nullptr, *dqsum = nullptr;
    float *delta = nullptr, *ws = nullptr, *qk_tmp = nullptr;
    // model axis: the block's gathered rows, partial sums and their reduce-scattered local rows
    act_type *t_all = nullptr, *dy_all = nullptr;
    float *part = nullptr, *rsum = nullptr;
  };

  // ------------------------------------------------------------------------------------------------------
  // set-up

  void make_derived_state() {
    const int res = resolution();
    tokens_ = Shape::tokens(res);
    patches_ = Shape::patches(res);
    if constexpr (Policy::keeps_weight_copy)
      weight_copy_.emplace(res, tensor_subset::weights, "vitscale::gemm_weights", shard_);
    weights_stale_ = true;
    if constexpr (Shape::posemb == posemb_kind::sincos2d) {
      std::vector<float> host(static_cast<std::size_t>(patches_) * D);
      posemb_sincos_2d(Shape::grid(res), Shape::grid(res), D, host.data());
      sincos_ = Kokkos::View<float**, Kokkos::LayoutRight, memory_space>("vitscale::posemb_sincos", patches_, D);
      upload(host.data(), view1<float>(sincos_.data(), sincos_.size()));
    }
    find_indices();
    batch_ = -1;
    saved_batch_ = -1;
  }

  void find_indices() {
    auto& p = params_;
    auto top = [&](const char* name) { return p.find(-1, name); };
    idx_ = model_index{};
    idx_.cls = top("cls_token");
    idx_.pos = top("pos_embed");
    idx_.patch_w = top("patch_embed.proj.weight");
    idx_.patch_b = top("patch_embed.proj.bias");
    idx_.norm_w = top("norm.weight");
    idx_.norm_b = top("norm.bias");
    idx_.fcn_w = top("fc_norm.weight");
    idx_.fcn_b = top("fc_norm.bias");
    idx_.latent = top("attn_pool.latent");
    idx_.mq_w = top("attn_pool.q.weight");
    idx_.mq_b = top("attn_pool.q.bias");
    idx_.mkv_w = top("attn_pool.kv.weight");
    idx_.mkv_b = top("attn_pool.kv.bias");
    idx_.mp_w = top("attn_pool.proj.weight");
    idx_.mp_b = top("attn_pool.proj.bias");
    idx_.mn_w = top("attn_pool.norm.weight");
    idx_.mn_b = top("attn_pool.norm.bias");
    idx_.m1_w = top("attn_pool.mlp.fc1.weight");
    idx_.m1_b = top("attn_pool.mlp.fc1.bias");
    idx_.m2_w = top("attn_pool.mlp.fc2.weight");
    idx_.m2_b = top("attn_pool.mlp.fc2.bias");
    idx_.pre_w = top("pre_logits.fc.weight");
    idx_.pre_b = top("pre_logits.fc.bias");
    idx_.head_w = top("head.weight");
    idx_.head_b = top("head.bias");
    idx_.blocks.assign(depth, block_index{});
    for (int l = 0; l < depth; ++l) {
      block_index& b = idx_.blocks[l];
      auto f = [&](const char* name) { return p.find(l, name); };
      if constexpr (!parallel) {
        b.norm1_w = f("norm1.weight"), b.norm1_b = f("norm1.bias");
        b.qkv_w = f("attn.qkv.weight"), b.qkv_b = f("attn.qkv.bias");
        b.qn_w = f("attn.q_norm.weight"), b.qn_b = f("attn.q_norm.bias");
        b.kn_w = f("attn.k_norm.weight"), b.kn_b = f("attn.k_norm.bias");
        b.proj_w = f("attn.proj.weight"), b.proj_b = f("attn.proj.bias");
        b.norm2_w = f("norm2.weight"), b.norm2_b = f("norm2.bias");
        b.fc1_w = f("mlp.fc1.weight"), b.fc1_b = f("mlp.fc1.bias");
        b.fc2_w = f("mlp.fc2.weight"), b.fc2_b = f("mlp.fc2.bias");
      } else {
        b.norm1_w = f("in_norm.weight"), b.norm1_b = f("in_norm.bias");
        b.qkv_w = f("in_proj.weight"), b.qkv_b = f("in_proj.bias"), b.mlp_bias = f("mlp_bias");
        b.qn_w = f("q_norm.weight"), b.qn_b = f("q_norm.bias");
        b.kn_w = f("k_norm.weight"), b.kn_b = f("k_norm.bias");
        b.proj_w = f("attn_out_proj.weight"), b.proj_b = f("attn_out_proj.bias");
        b.fc2_w = f("mlp_out_proj.weight"), b.fc2_b = f("mlp_out_proj.bias");
      }
    }
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

  template <class T>
  static void upload(const float* host, const view1<T>& device) {
    auto mirror = Kokkos::create_mirror_view(Kokkos::HostSpace(), device);
    for (std::size_t i = 0; i < device.extent(0); ++i) mirror(i) = static_cast<T>(host[i]);
    Kokkos::deep_copy(device, mirror);
  }
  template <class T>
  static std::vector<float> download(const view1<T>& device) {
    auto mirror = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), device);
    std::vector<float> host(device.extent(0));
    for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(mirror(i));
    return host;
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
  view2<const gemm_type> weight(int i) const {
    if constexpr (Policy::keeps_weight_copy) {
      return weight_copy_->matrix(i);
    } else {
      return params_.matrix(i);
    }
  }
  view1<const param_type> vec(int i) const { return i < 0 ? view1<const param_type>() : params_.vector(i); }
  view1<grad_type> gvec(int i) const { return i < 0 ? view1<grad_type>() : grads_.vector(i); }
  view2<grad_type> gmat(int i) const { return grads_.matrix(i); }

  // The layout of the activation arena for `batch` images: every buffer named in `buffers`, in one place.
  void plan(arena_cursor& a, int batch, bool training) {
    const std::size_t B = static_cast<std::size_t>(batch), N = tokens_, rows = B * N;
    const std::size_t Np = patches_, K = std::size_t(C) * P * P;
    // Inside a parallel block on a model axis of m ranks there are m times the rows and 1/m of the columns
    // (heads and MLP units): every block buffer keeps the size it has without sharding.
    const std::size_t qkv_cols = parallel ? std::size_t(F) + 3 * D : 3 * std::size_t(D);
    buffers s;
    const int x_slots = training ? depth + 1 : 2;
    for (int i = 0; i < x_slots; ++i) s.x.push_back(a.take<act_type>(rows * D));
    const int block_slots = training ? depth : 1;
    for (int i = 0; i < block_slots; ++i) {
      block_buffers b;
      b.ln1_mean = a.take<float>(rows);
      b.ln1_rstd = a.take<float>(rows);
      b.qkv = a.take<act_type>(rows * qkv_cols);
      if (Shape::qk_norm) {
        b.q_mean = a.take<float>(rows * H);
        b.q_rstd = a.take<float>(rows * H);
        b.k_mean = a.take<float>(rows * H);
        b.k_rstd = a.take<float>(rows * H);
      }
      b.o = a.take<act_type>(rows * D);
      b.lse = a.take<float>(rows * H);
      if (!parallel) {
        b.x_mid = a.take<act_type>(rows * D);
        b.ln2_mean = a.take<float>(rows);
        b.ln2_rstd = a.take<float>(rows);
        if (training) b.h = a.take<act_type>(rows * F);
      }
      s.blocks.push_back(b);
    }
    if (Shape::token_norm) {
      s.fn_mean = a.take<float>(rows);
      s.fn_rstd = a.take<float>(rows);
    }
    if (Shape::pool == pooling::gap_fc_norm) {
      s.gap = a.take<act_type>(B * D);
      s.fcn_mean = a.take<float>(B);
      s.fcn_rstd = a.take<float>(B);
      if (training) s.dgap = a.take<act_type>(B * D);
    }
    if (Shape::pool == pooling::map) {
      s.mq = a.take<act_type>(B * D);
      s.mkv = a.take<act_type>(rows * 2 * D);
      s.mo = a.take<act_type>(B * D);
      s.mlse = a.take<float>(B * H);
      s.my = a.take<act_type>(B * D);
      s.mln_mean = a.take<float>(B);
      s.mln_rstd = a.take<float>(B);
      s.mh = a.take<act_type>(B * F);
      s.latent = a.take<act_type>(D);
      s.mz = a.take<act_type>(B * D);
      s.mg = a.take<act_type>(B * F);
    }
    s.pooled = a.take<act_type>(B * D);
    if (Shape::pre_logits > 0) s.pre = a.take<act_type>(B * Shape::pre_logits);
    s.logits = a.take<float>(B * Shape::num_classes);
    // scratch shared by all blocks
    s.patches = a.take<gemm_type>(B * Np * K);
    s.ptok = a.take<act_type>(B * Np * D);
    s.t = a.take<act_type>(rows * D);
    if (Shape::qk_norm) s.qkn = a.take<act_type>(rows * 2 * D);
    s.g = a.take<act_type>(rows * F);
    s.ybr = a.take<act_type>(rows * D);
    s.xn = a.take<act_type>(rows * D);
    if (parallel && !Shape::qkv_bias) s.fused_bias = a.take<param_type>(qkv_cols);
    if (model_axis_) {
      const std::size_t m = static_cast<std::size_t>(shard_.count);
      s.t_all = a.take<act_type>(m * rows * D);
      s.part = a.take<float>(m * rows * D);
      s.rsum = a.take<float>(rows * D);
      if (training) s.dy_all = a.take<act_type>(m * rows * D);
    }
    if (training) {
      s.dx = a.take<act_type>(rows * D);
      s.dbr = a.take<act_type>(rows * D);
      s.dt = a.take<act_type>(rows * D);
      s.dln = a.take<act_type>(rows * D);
      s.dout = a.take<act_type>(rows * D);
      s.du = a.take<act_type>(rows * std::max(qkv_cols, std::size_t(2) * D));
      s.dg = a.take<act_type>(rows * F);
      if (Shape::qk_norm) s.dqkn = a.take<act_type>(rows * 2 * D);
      s.delta = a.take<float>(rows * H);
      s.ws = a.take<float>(kernels::detail::param_grad_chunks * workspace_cols());
      s.qk_tmp = a.take<float>(4 * head_dim);
      s.dl = a.take<act_type>(B * Shape::num_classes);
      s.dfeat = a.take<act_type>(B * Shape::features);
      s.dpooled = a.take<act_type>(B * D);
      if (Shape::pool == pooling::map) {
        s.dmg = a.take<act_type>(B * F);
        s.dmz = a.take<act_type>(B * D);
        s.dmy = a.take<act_type>(B * D);
        s.dmo = a.take<act_type>(B * D);
        s.dmq = a.take<act_type>(B * D);
        s.dqsum = a.take<act_type>(D);
      }
    }
    s_ = std::move(s);
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
    saved_batch_ = -1;
  }

  // ------------------------------------------------------------------------------------------------------
  // views into the arena

  std::size_t rows() const { return static_cast<std::size_t>(batch_) * tokens_; }
  view2<act_type> m2(act_type* p, std::size_t r, std::size_t c) const { return view2<act_type>(p, r, c); }
  view1<float> f1(float* p, std::size_t n) const { return view1<float>(p, n); }
  view3<act_type> x3(act_type* p) const { return view3<act_type>(p, batch_, tokens_, D); }
  // The [B, N, H, d] heads of a [rows, row_stride] buffer starting at column `col`.
  heads_view<act_type> heads(act_type* p, std::size_t col, std::size_t row_stride, std::size_t n) const {
    const std::size_t b = static_cast<std::size_t>(batch_);
    Kokkos::LayoutStride layout(b, n * row_stride, n, row_stride, H, head_dim, head_dim, 1);
    return heads_view<act_type>(p + col, layout);
  }
  view3<float> stats3(float* p, std::size_t n) const { return view3<float>(p, batch_, n, H); }
  // Inside a block: the rows of the whole model-axis group (m times this rank's images), this rank's heads
  // and MLP units (all of them without a model axis).
  std::size_t bimages() const { return static_cast<std::size_t>(batch_) * shard_.count; }
  std::size_t brows() const { return rows() * shard_.count; }
  std::size_t hl() const { return std::size_t(H) / shard_.count; }
  std::size_t aw() const { return std::size_t(D) / shard_.count; }
  std::size_t fl() const { return std::size_t(F) / shard_.count; }
  std::size_t in_width() const { return fl() + 3 * aw(); }  // the parallel block's [MLP | q | k | v] columns
  heads_view<act_type> bheads(act_type* p, std::size_t col, std::size_t row_stride) const {
    const std::size_t n = tokens_;
    Kokkos::LayoutStride layout(bimages(), n * row_stride, n, row_stride, hl(), head_dim, head_dim, 1);
    return heads_view<act_type>(p + col, layout);
  }
  view3<float> bstats(float* p) const { return view3<float>(p, bimages(), tokens_, hl()); }
  view3<float> blse(float* p) const { return view3<float>(p, bimages(), hl(), tokens_); }
  model_detail::row_chunks row_split() const {
    return {rows(), model_detail::chunks_for(batch_, chunks_), static_cast<std::size_t>(shard_.count)};
  }
  template <class V>
  static auto row_range(const V& v, std::pair<std::size_t, std::size_t> r) {
    return Kokkos::subview(v, r, Kokkos::ALL());
  }
  view3<float> lse3(float* p, std::size_t n) const { return view3<float>(p, batch_, H, n); }
  view2<float> workspace(std::size_t chunks, std::size_t cols) const { return view2<float>(s_.ws, chunks, cols); }
  template <bool Bias>
  view2<float> ln_workspace(std::size_t r, std::size_t c) const {
    const auto w = kernels::layernorm_backward_workspace<Bias>(r, c);
    return workspace(w.chunks, w.cols);
  }
  view2<float> sum_workspace(std::size_t r, std::size_t c) const {
    const auto w = kernels::column_sum_workspace(r, c);
    return workspace(w.chunks, w.cols);
  }
  act_type* head_input() const { return Shape::pre_logits > 0 ? s_.pre : s_.pooled; }
  const block_buffers& saved(int l) const { return s_.blocks[training_layout_ ? l : 0]; }
  act_type* stream(int l) const { return s_.x[training_layout_ ? l : l % 2]; }

  rng_key key(std::uint32_t stream_id) const { return rng_key{reg_.seed, step_, stream_id}; }
  // Dropout sites: 0 the embedded tokens; 1 + 4l + {0: attention branch, 1: MLP hidden, 2: MLP branch}.
  // Drop-path sites: 1'000'000 + 2l + {0: attention branch, 1: MLP branch}.
  static std::uint32_t dropout_site(int l, int which) { return 1 + 4 * static_cast<std::uint32_t>(l) + which; }
  static std::uint32_t drop_path_site(int l, int which) { return 1000000u + 2 * static_cast<std::uint32_t>(l) + which; }
  double drop_path_rate(int l) const {
    return depth > 1 ? reg_.drop_path * static_cast<double>(l) / static_cast<double>(depth - 1) : reg_.drop_path;
  }
  bool dropout_on() const { return train_ && reg_.dropout > 0; }
  // Where this rank's tensors sit in the whole model's on the global batch, so that their masks are the
  // whole model's. The global batch index of the first local image: the group's first image plus this rank's
  // images before it on the model axis.
  std::uint64_t first_local_image() const {
    return reg_.first_image + static_cast<std::uint64_t>(shard_.index) * static_cast<std::uint64_t>(batch_);
  }
  // A [rows(), D] tensor of the local rows (embedded tokens, branch outputs).
  kernels::dropout_index local_rows_index() const {
    kernels::dropout_index index;
    index.first_row = first_local_image() * tokens_;
    return index;
  }
  // The MLP hidden activation: [rows(), F] in a classic block; [brows(), fl()] in a parallel one, the group's
  // gathered rows (row_split()) by this rank's units rank·F/m .. (rank + 1)·F/m − 1 of the whole F.
  kernels::dropout_index hidden_index() const {
    kernels::dropout_index index;
    index.first_row = reg_.first_image * tokens_;
    index.stride = F;
    index.col_offset = static_cast<std::uint64_t>(shard_.index) * fl();
    if (model_axis_) {
      const auto rc = row_split();
      index.ranks = rc.ranks;
      index.chunks = rc.chunks;
      index.rank_rows = rc.local_rows;
    }
    return index;
  }

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

    embed(images);
    for (int l = 0; l < depth; ++l) {
      if constexpr (parallel)
        parallel_block_forward(l);
      else
        classic_block_forward(l);
    }
    head_forward();
  }

  template <class Images>
  void embed(const Images& images) {
    const std::size_t bnp = static_cast<std::size_t>(batch_) * patches_, K = std::size_t(C) * P * P;
    view2<gemm_type> patches(s_.patches, bnp, K);
    model_detail::unfold_patches(space_, images, P, patches);
    view2<act_type> ptok = m2(s_.ptok, bnp, D);
    model_detail::linear_forward(space_, patches, weight(idx_.patch_w), vec(idx_.patch_b), ptok);
    auto x0 = x3(stream(0));
    view1<const param_type> cls = Shape::class_token ? vec(idx_.cls) : view1<const param_type>();
    if constexpr (Shape::posemb == posemb_kind::learned) {
      model_detail::assemble_tokens(space_, ptok, cls, params_.matrix(idx_.pos), Shape::cls_posemb, x0);
    } else {
      model_detail::assemble_tokens(space_, ptok, cls, sincos_, false, x0);
    }
    if (dropout_on()) {
      auto x = m2(stream(0), rows(), D);
      kernels::dropout_forward(space_, key(0), reg_.dropout, x, x, local_rows_index());
    }
  }

  // x_out = x_in + drop_path(dropout(branch)), branch in s_.ybr
  void join(int l, int which, act_type* x_in, act_type* x_out) {
    auto y = m2(s_.ybr, rows(), D);
    if (dropout_on())
      kernels::dropout_forward(space_, key(dropout_site(l, which == 0 ? 0 : 2)), reg_.dropout, y, y,
                               local_rows_index());
    const double p = train_ ? drop_path_rate(l) : 0.0;
    if (p > 0)
      kernels::drop_path_add(space_, key(drop_path_site(l, which)), p, x3(x_in), x3(s_.ybr), x3(x_out),
                             first_local_image());
    else
      kernels::residual_add(space_, m2(x_in, rows(), D), y, m2(x_out, rows(), D));
  }

  // The attention of block l on the saved q|k|v (columns `col` of a [rows, stride] buffer): QK-norm into
  // scratch when the shape has it, then the fused kernel into o.
  void attention_forward(const block_index& bi, const block_buffers& b, std::size_t col, std::size_t stride) {
    auto q = bheads(b.qkv, col, stride), k = bheads(b.qkv, col + aw(), stride), v = bheads(b.qkv, col + 2 * aw(), stride);
    auto o = bheads(b.o, 0, aw());
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    if constexpr (Shape::qk_norm) {
      auto qn = bheads(s_.qkn, 0, 2 * aw()), kn = bheads(s_.qkn, aw(), 2 * aw());
      qk_norm_forward(bi, b, q, k, qn, kn);
      kernels::attention_forward<head_dim>(space_, qn, kn, v, o, blse(b.lse), scale);
    } else {
      kernels::attention_forward<head_dim>(space_, q, k, v, o, blse(b.lse), scale);
    }
  }
  template <class Q, class K, class QN, class KN>
  void qk_norm_forward(const block_index& bi, const block_buffers& b, const Q& q, const K& k, const QN& qn,
                       const KN& kn) {
    view3<float> no_mean;
    kernels::qk_norm_forward<head_dim, centered>(space_, q, vec(bi.qn_w), vec(bi.qn_b), qn,
                                                centered ? bstats(b.q_mean) : no_mean, bstats(b.q_rstd),
                                                static_cast<float>(norm_eps));
    kernels::qk_norm_forward<head_dim, centered>(space_, k, vec(bi.kn_w), vec(bi.kn_b), kn,
                                                centered ? bstats(b.k_mean) : no_mean, bstats(b.k_rstd),
                                                static_cast<float>(norm_eps));
  }

  template <class X, class Y>
  void norm_forward(int w, int bias, const X& x, const Y& y, float* mean, float* rstd, std::size_t r) {
    kernels::layernorm_forward<centered, norm_bias>(space_, x, vec(w), vec(bias), y, f1(mean, r), f1(rstd, r),
                                                    norm_eps);
  }

  // classic pre-LN block: x_mid = x + attn(LN1(x)); x_out = x_mid + mlp(LN2(x_mid))
  void classic_block_forward(int l) {
    const block_index& bi = idx_.blocks[l];
    const block_buffers& b = saved(l);
    const std::size_t r = rows();
    act_type* x_in = stream(l);
    act_type* x_out = stream(l + 1);
    auto t = m2(s_.t, r, D);
    norm_forward(bi.norm1_w, bi.norm1_b, m2(x_in, r, D), t, b.ln1_mean, b.ln1_rstd, r);
    model_detail::linear_forward(space_, t, weight(bi.qkv_w), vec(bi.qkv_b), m2(b.qkv, r, 3 * D));
    attention_forward(bi, b, 0, 3 * D);
    model_detail::linear_forward(space_, m2(b.o, r, D), weight(bi.proj_w), vec(bi.proj_b), m2(s_.ybr, r, D));
    join(l, 0, x_in, b.x_mid);

    norm_forward(bi.norm2_w, bi.norm2_b, m2(b.x_mid, r, D), t, b.ln2_mean, b.ln2_rstd, r);
    auto g = m2(s_.g, r, F);
    if (train_) {
      auto h = m2(b.h, r, F);
      model_detail::linear_forward(space_, t, weight(bi.fc1_w), vec(bi.fc1_b), h);
      kernels::gelu_forward<gelu>(space_, h, g);
      if (dropout_on()) kernels::dropout_forward(space_, key(dropout_site(l, 1)), reg_.dropout, g, g, hidden_index());
    } else {
      model_detail::linear_forward(space_, t, weight(bi.fc1_w), vec(bi.fc1_b), g, bias_gelu);
    }
    model_detail::linear_forward(space_, g, weight(bi.fc2_w), vec(bi.fc2_b), m2(s_.ybr, r, D));
    join(l, 1, b.x_mid, x_out);
  }

  // The parallel block's input-product bias: in_proj.bias, or [mlp_bias | 0] without a QKV bias.
  view1<const param_type> fused_bias(const block_index& bi) {
    if constexpr (Shape::qkv_bias) {
      return vec(bi.qkv_b);
    } else {
      view1<param_type> out(s_.fused_bias, in_width());
      model_detail::zero_extend(space_, vec(bi.mlp_bias), out);
      return out;
    }
  }
  strided2<act_type> mlp_part(act_type* u) const {
    return strided2<act_type>(u, Kokkos::LayoutStride(brows(), in_width(), fl(), 1));
  }

  // ViT-22B: x_out = x + attn_out(attn(q, k, v)) + mlp_out(gelu(h)), [h | q | k | v] = in_proj(LN(x)).
  // On a model axis: LN(x) of the local rows is all-gathered into the group's rows, in_proj (this rank's heads
  // and MLP units) runs on them chunk by chunk as they arrive, attention and GELU run on this rank's columns,
  // and the two output products' partial sums are reduce-scattered back to the local rows chunk by chunk;
  // their biases are added once, after the sum.
  void parallel_block_forward(int l) {
    const block_index& bi = idx_.blocks[l];
    const block_buffers& b = saved(l);
    const std::size_t r = rows(), br = brows(), width = in_width();
    act_type* x_in = stream(l);
    auto t = m2(s_.t, r, D);
    norm_forward(bi.norm1_w, bi.norm1_b, m2(x_in, r, D), t, b.ln1_mean, b.ln1_rstd, r);
    auto u = m2(b.qkv, br, width);
    const auto bias = fused_bias(bi);
    if (model_axis_) {
      const auto rc = row_split();
      auto t_all = m2(s_.t_all, br, D);
      model_detail::gather_rows(space_, *model_axis_, rc, s_.t, D, s_.t_all, &comm_stats_, [&](std::size_t c) {
        model_detail::linear_forward(space_, row_range(t_all, rc.gathered_range(c)), weight(bi.qkv_w), bias,
                                     row_range(u, rc.gathered_range(c)));
      });
    } else {
      model_detail::linear_forward(space_, t, weight(bi.qkv_w), bias, u);
    }
    attention_forward(bi, b, fl(), width);
    auto g = m2(s_.g, br, fl());
    kernels::gelu_forward<gelu>(space_, mlp_part(b.qkv), g);
    if (dropout_on()) kernels::dropout_forward(space_, key(dropout_site(l, 1)), reg_.dropout, g, g, hidden_index());
    auto y = m2(s_.ybr, r, D);
    auto o = m2(b.o, br, aw());
    if (model_axis_) {
      const auto rc = row_split();
      view2<float> part(s_.part, br, D);
      const view1<const param_type> none;
      model_detail::reduce_scatter_rows(space_, *model_axis_, rc, s_.part, D, s_.rsum, &comm_stats_, [&](std::size_t c) {
        const auto rows_c = rc.gathered_range(c);
        auto part_c = row_range(part, rows_c);
        model_detail::linear_forward(space_, row_range(o, rows_c), weight(bi.proj_w), none, part_c);
        model_detail::linear_forward(space_, row_range(g, rows_c), weight(bi.fc2_w), none, part_c,
                                     kernels::gemm_epilogue::bias, 1.0f);
      });
      model_detail::add_two_biases(space_, view2<float>(s_.rsum, r, D), vec(bi.proj_b), vec(bi.fc2_b), y);
    } else {
      model_detail::linear_forward(space_, o, weight(bi.proj_w), vec(bi.proj_b), y);
      model_detail::linear_forward(space_, g, weight(bi.fc2_w), vec(bi.fc2_b), y, kernels::gemm_epilogue::bias, 1.0f);
    }
    join(l, 0, x_in, stream(l + 1));
  }

  // The final norm on every token: xn = LN(x) of the last block's output.
  void final_norm_forward() {
    const std::size_t r = rows();
    norm_forward(idx_.norm_w, idx_.norm_b, m2(stream(depth), r, D), m2(s_.xn, r, D), s_.fn_mean, s_.fn_rstd, r);
  }

  void head_forward() {
    const std::size_t B = static_cast<std::size_t>(batch_);
    auto pooled = m2(s_.pooled, B, D);
    switch (Shape::pool) {
      case pooling::cls_token:
        final_norm_forward();
        model_detail::select_token(space_, x3(s_.xn), 0, pooled);
        break;
      case pooling::gap:
        final_norm_forward();
        kernels::token_mean_pool_forward(space_, x3(s_.xn), 0, pooled);
        break;
      case pooling::map:
        final_norm_forward();
        map_forward();
        break;
      case pooling::gap_fc_norm: {  // timm's fc_norm: the mean of the tokens, then the norm
        auto gap = m2(s_.gap, B, D);
        kernels::token_mean_pool_forward(space_, x3(stream(depth)), 0, gap);
        norm_forward(idx_.fcn_w, idx_.fcn_b, gap, pooled, s_.fcn_mean, s_.fcn_rstd, B);
        break;
      }
    }
    view2<const act_type> features = pooled;
    if constexpr (Shape::pre_logits > 0) {
      auto pre = m2(s_.pre, B, Shape::pre_logits);
      model_detail::linear_forward(space_, pooled, weight(idx_.pre_w), vec(idx_.pre_b), pre);
      model_detail::tanh_inplace(space_, pre);
      features = pre;
    }
    model_detail::linear_forward(space_, features, weight(idx_.head_w), vec(idx_.head_b),
                                 view2<float>(s_.logits, B, Shape::num_classes));
  }

  // MAP head (timm's AttentionPoolLatent): y = proj(attn(q(latent), kv(x))); pooled = y + mlp(LN(y))
  void map_forward() {
    const std::size_t r = rows(), B = static_cast<std::size_t>(batch_), n = tokens_;
    auto latent = m2(s_.latent, 1, D);
    kernels::convert(space_, vec(idx_.latent), view1<act_type>(s_.latent, D));
    auto mz = m2(s_.mz, 1, D);  // the probe's query, once, then one copy per image
    model_detail::linear_forward(space_, latent, weight(idx_.mq_w), vec(idx_.mq_b), mz);
    model_detail::broadcast_row(space_, view1<act_type>(s_.mz, D), m2(s_.mq, B, D));
    model_detail::linear_forward(space_, m2(s_.xn, r, D), weight(idx_.mkv_w), vec(idx_.mkv_b), m2(s_.mkv, r, 2 * D));
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    kernels::attention_forward<head_dim>(space_, heads(s_.mq, 0, D, 1), heads(s_.mkv, 0, 2 * D, n),
                                         heads(s_.mkv, D, 2 * D, n), heads(s_.mo, 0, D, 1), lse3(s_.mlse, 1), scale);
    auto y = m2(s_.my, B, D);
    model_detail::linear_forward(space_, m2(s_.mo, B, D), weight(idx_.mp_w), vec(idx_.mp_b), y);
    auto z = m2(s_.mz, B, D);
    norm_forward(idx_.mn_w, idx_.mn_b, y, z, s_.mln_mean, s_.mln_rstd, B);
    auto g = m2(s_.mg, B, F);
    if (train_) {
      auto h = m2(s_.mh, B, F);
      model_detail::linear_forward(space_, z, weight(idx_.m1_w), vec(idx_.m1_b), h);
      kernels::gelu_forward<gelu>(space_, h, g);
    } else {
      model_detail::linear_forward(space_, z, weight(idx_.m1_w), vec(idx_.m1_b), g, bias_gelu);
    }
    auto pooled = m2(s_.pooled, B, D);
    Kokkos::deep_copy(space_, pooled, y);
    model_detail::linear_forward(space_, g, weight(idx_.m2_w), vec(idx_.m2_b), pooled, kernels::gemm_epilogue::bias,
                                 1.0f);
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
    for (int l = depth - 1; l >= 0; --l) {
      if constexpr (parallel)
        parallel_block_backward(l);
      else
        classic_block_backward(l);
      ready(block_tensors_[l], block_tensors_[l + 1]);
    }
    embed_backward();
    ready(0, block_tensors_[0]);
  }

  template <class DLogits>
  void head_backward(const DLogits& dlogits) {
    const std::size_t r = rows(), B = static_cast<std::size_t>(batch_);
    auto dl = m2(s_.dl, B, Shape::num_classes);
    model_detail::convert_rows(space_, dlogits, dl);
    auto dfeat = m2(s_.dfeat, B, Shape::features);
    model_detail::linear_backward(space_, m2(head_input(), B, Shape::features), weight(idx_.head_w), dl,
                                  gmat(idx_.head_w), gvec(idx_.head_b), dfeat, sum_workspace(B, Shape::num_classes));
    auto dpooled = m2(s_.dpooled, B, D);
    if constexpr (Shape::pre_logits > 0) {
      auto pre = m2(s_.pre, B, Shape::pre_logits);
      model_detail::tanh_backward_inplace(space_, pre, dfeat);
      model_detail::linear_backward(space_, m2(s_.pooled, B, D), weight(idx_.pre_w), dfeat, gmat(idx_.pre_w),
                                    gvec(idx_.pre_b), dpooled, sum_workspace(B, Shape::pre_logits));
    } else {
      dpooled = dfeat;
    }
    auto dxn = m2(s_.dt, r, D);  // the gradient of the final norm's output, into which the pooling's goes
    switch (Shape::pool) {
      case pooling::cls_token:
        final_norm_forward();
        model_detail::select_token_backward(space_, dpooled, 0, x3(s_.dt));
        final_norm_backward(dxn);
        break;
      case pooling::gap:
        final_norm_forward();
        kernels::token_mean_pool_backward(space_, dpooled, 0, x3(s_.dt));
        final_norm_backward(dxn);
        break;
      case pooling::map:
        final_norm_forward();  // map_backward reads the normed tokens
        map_backward(dpooled, dxn);
        final_norm_backward(dxn);
        break;
      case pooling::gap_fc_norm: {
        auto dgap = m2(s_.dgap, B, D);
        kernels::layernorm_backward<centered, norm_bias>(space_, m2(s_.gap, B, D), vec(idx_.fcn_w),
                                                         f1(s_.fcn_mean, B), f1(s_.fcn_rstd, B), dpooled, dgap,
                                                         gvec(idx_.fcn_w), gvec(idx_.fcn_b),
                                                         ln_workspace<norm_bias>(B, D));
        kernels::token_mean_pool_backward(space_, dgap, 0, x3(s_.dx));
        break;
      }
    }
  }

  // dxn: [rows, D], the gradient of the final norm's output -> the last block's output gradient in s_.dx.
  void final_norm_backward(const view2<act_type>& dxn) {
    const std::size_t r = rows();
    kernels::layernorm_backward<centered, norm_bias>(space_, m2(stream(depth), r, D), vec(idx_.norm_w),
                                                     f1(s_.fn_mean, r), f1(s_.fn_rstd, r), dxn, m2(s_.dx, r, D),
                                                     gvec(idx_.norm_w), gvec(idx_.norm_b),
                                                     ln_workspace<norm_bias>(r, D));
  }

  void map_backward(const view2<act_type>& dpooled, const view2<act_type>& dxn) {
    const std::size_t r = rows(), B = static_cast<std::size_t>(batch_), n = tokens_;
    auto y = m2(s_.my, B, D), z = m2(s_.mz, B, D), h = m2(s_.mh, B, F), g = m2(s_.mg, B, F);
    norm_forward(idx_.mn_w, idx_.mn_b, y, z, s_.mln_mean, s_.mln_rstd, B);
    kernels::gelu_forward<gelu>(space_, h, g);
    auto dmg = m2(s_.dmg, B, F);
    model_detail::linear_backward(space_, g, weight(idx_.m2_w), dpooled, gmat(idx_.m2_w), gvec(idx_.m2_b), dmg,
                                  sum_workspace(B, D));
    kernels::gelu_backward<gelu>(space_, h, dmg, dmg);
    auto dmz = m2(s_.dmz, B, D);
    model_detail::linear_backward(space_, z, weight(idx_.m1_w), dmg, gmat(idx_.m1_w), gvec(idx_.m1_b), dmz,
                                  sum_workspace(B, F));
    auto dmy = m2(s_.dmy, B, D);
    kernels::layernorm_backward<centered, norm_bias>(space_, y, vec(idx_.mn_w), f1(s_.mln_mean, B),
                                                     f1(s_.mln_rstd, B), dmz, dmy, gvec(idx_.mn_w), gvec(idx_.mn_b),
                                                     ln_workspace<norm_bias>(B, D));
    kernels::residual_accumulate(space_, dmy, dpooled);
    auto dmo = m2(s_.dmo, B, D);
    model_detail::linear_backward(space_, m2(s_.mo, B, D), weight(idx_.mp_w), dmy, gmat(idx_.mp_w), gvec(idx_.mp_b),
                                  dmo, sum_workspace(B, D));
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    auto dkv = m2(s_.du, r, 2 * D);
    kernels::attention_backward<head_dim>(
        space_, heads(s_.mq, 0, D, 1), heads(s_.mkv, 0, 2 * D, n), heads(s_.mkv, D, 2 * D, n), heads(s_.mo, 0, D, 1),
        heads(s_.dmo, 0, D, 1), lse3(s_.mlse, 1), lse3(s_.delta, 1), heads(s_.dmq, 0, D, 1),
        heads(s_.du, 0, 2 * D, n), heads(s_.du, D, 2 * D, n), scale);
    // q = latent·Wqᵀ + bq is shared by the batch: its gradient is the batch sum of the per-image ones.
    auto dmq = m2(s_.dmq, B, D);
    view1<act_type> dqsum(s_.dqsum, D);
    kernels::column_sum(space_, dmq, dqsum, sum_workspace(B, D));
    kernels::column_sum(space_, dmq, gvec(idx_.mq_b), sum_workspace(B, D));
    auto dq1 = m2(s_.dqsum, 1, D);
    kernels::gemm(space_, kernels::gemm_op::t, kernels::gemm_op::n, 1.0f, dq1, m2(s_.latent, 1, D), 0.0f,
                  gmat(idx_.mq_w));
    kernels::gemm(space_, kernels::gemm_op::n, kernels::gemm_op::n, 1.0f, dq1, weight(idx_.mq_w), 0.0f,
                  view2<grad_type>(grads_.vector(idx_.latent).data(), 1, D));
    model_detail::linear_backward(space_, m2(s_.xn, r, D), weight(idx_.mkv_w), dkv, gmat(idx_.mkv_w),
                                  gvec(idx_.mkv_b), dxn, sum_workspace(r, 2 * D));
  }

  // The gradient entering branch `which` of block l from the stream gradient s_.dx: through drop-path and
  // dropout when they are on (into s_.dbr), else s_.dx itself.
  view2<act_type> branch_gradient(int l, int which) {
    const std::size_t r = rows();
    const double p = drop_path_rate(l);
    const bool dropout = reg_.dropout > 0;
    if (p <= 0 && !dropout) return m2(s_.dx, r, D);
    auto dbr = m2(s_.dbr, r, D);
    if (p > 0)
      kernels::drop_path_backward(space_, key(drop_path_site(l, which)), p, x3(s_.dx), x3(s_.dbr),
                                  first_local_image());
    else
      Kokkos::deep_copy(space_, dbr, m2(s_.dx, r, D));
    if (dropout)
      kernels::dropout_backward(space_, key(dropout_site(l, which == 0 ? 0 : 2)), reg_.dropout, dbr, dbr,
                                local_rows_index());
    return dbr;
  }

  // Backward of attention_forward: dO in s_.dout -> dq, dk, dv into columns `col` of the [rows, stride]
  // buffer s_.du; QK-norm's parameter gradients.
  void attention_backward(const block_index& bi, const block_buffers& b, std::size_t col, std::size_t stride) {
    auto q = bheads(b.qkv, col, stride), k = bheads(b.qkv, col + aw(), stride), v = bheads(b.qkv, col + 2 * aw(), stride);
    auto o = bheads(b.o, 0, aw()), dout = bheads(s_.dout, 0, aw());
    auto dq = bheads(s_.du, col, stride), dk = bheads(s_.du, col + aw(), stride), dv = bheads(s_.du, col + 2 * aw(), stride);
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    if constexpr (Shape::qk_norm) {
      auto qn = bheads(s_.qkn, 0, 2 * aw()), kn = bheads(s_.qkn, aw(), 2 * aw());
      qk_norm_forward(bi, b, q, k, qn, kn);
      auto dqn = bheads(s_.dqkn, 0, 2 * aw()), dkn = bheads(s_.dqkn, aw(), 2 * aw());
      kernels::attention_backward<head_dim>(space_, qn, kn, v, o, dout, blse(b.lse), blse(s_.delta), dqn, dkn,
                                            dv, scale);
      qk_norm_backward(bi.qn_w, bi.qn_b, q, b.q_mean, b.q_rstd, dqn, dq);
      qk_norm_backward(bi.kn_w, bi.kn_b, k, b.k_mean, b.k_rstd, dkn, dk);
    } else {
      kernels::attention_backward<head_dim>(space_, q, k, v, o, dout, blse(b.lse), blse(s_.delta), dq, dk, dv,
                                            scale);
    }
  }
  template <class X, class DY, class DX>
  void qk_norm_backward(int w, int bias, const X& x, float* mean, float* rstd, const DY& dy, const DX& dx) {
    view3<float> no_mean;
    auto m = centered ? bstats(mean) : no_mean;
    if constexpr (std::is_same<grad_type, float>::value) {
      kernels::qk_norm_backward<head_dim, centered>(space_, x, vec(w), m, bstats(rstd), dy, dx, gvec(w), gvec(bias));
    } else {  // the kernel reduces into float; round once into the gradient type
      view1<float> ds(s_.qk_tmp, head_dim), db(norm_bias ? s_.qk_tmp + head_dim : nullptr, norm_bias ? head_dim : 0);
      kernels::qk_norm_backward<head_dim, centered>(space_, x, vec(w), m, bstats(rstd), dy, dx, ds, db);
      kernels::convert(space_, ds, gvec(w));
      if (norm_bias) kernels::convert(space_, db, gvec(bias));
    }
  }

  void classic_block_backward(int l) {
    const block_index& bi = idx_.blocks[l];
    const block_buffers& b = saved(l);
    const std::size_t r = rows();
    auto dx = m2(s_.dx, r, D), t = m2(s_.t, r, D), dt = m2(s_.dt, r, D), dln = m2(s_.dln, r, D);
    // MLP branch
    {
      auto dy = branch_gradient(l, 1);
      norm_forward(bi.norm2_w, bi.norm2_b, m2(b.x_mid, r, D), t, b.ln2_mean, b.ln2_rstd, r);
      auto h = m2(b.h, r, F), g = m2(s_.g, r, F), dg = m2(s_.dg, r, F);
      kernels::gelu_forward<gelu>(space_, h, g);
      const bool dropout = reg_.dropout > 0;
      if (dropout) kernels::dropout_forward(space_, key(dropout_site(l, 1)), reg_.dropout, g, g, hidden_index());
      model_detail::linear_backward(space_, g, weight(bi.fc2_w), dy, gmat(bi.fc2_w), gvec(bi.fc2_b), dg,
                                    sum_workspace(r, D));
      if (dropout) kernels::dropout_backward(space_, key(dropout_site(l, 1)), reg_.dropout, dg, dg, hidden_index());
      kernels::gelu_backward<gelu>(space_, h, dg, dg);
      model_detail::linear_backward(space_, t, weight(bi.fc1_w), dg, gmat(bi.fc1_w), gvec(bi.fc1_b), dt,
                                    sum_workspace(r, F));
      kernels::layernorm_backward<centered, norm_bias>(space_, m2(b.x_mid, r, D), vec(bi.norm2_w),
                                                       f1(b.ln2_mean, r), f1(b.ln2_rstd, r), dt, dln,
                                                       gvec(bi.norm2_w), gvec(bi.norm2_b),
                                                       ln_workspace<norm_bias>(r, D));
      kernels::residual_accumulate(space_, dx, dln);
    }
    // attention branch
    {
      auto dy = branch_gradient(l, 0);
      model_detail::linear_backward(space_, m2(b.o, r, D), weight(bi.proj_w), dy, gmat(bi.proj_w), gvec(bi.proj_b),
                                    m2(s_.dout, r, D), sum_workspace(r, D));
      attention_backward(bi, b, 0, 3 * D);
      norm_forward(bi.norm1_w, bi.norm1_b, m2(stream(l), r, D), t, b.ln1_mean, b.ln1_rstd, r);
      model_detail::linear_backward(space_, t, weight(bi.qkv_w), m2(s_.du, r, 3 * D), gmat(bi.qkv_w),
                                    gvec(bi.qkv_b), dt, sum_workspace(r, 3 * D));
      kernels::layernorm_backward<centered, norm_bias>(space_, m2(stream(l), r, D), vec(bi.norm1_w),
                                                       f1(b.ln1_mean, r), f1(b.ln1_rstd, r), dt, dln,
                                                       gvec(bi.norm1_w), gvec(bi.norm1_b),
                                                       ln_workspace<norm_bias>(r, D));
      kernels::residual_accumulate(space_, dx, dln);
    }
  }

  // On a model axis, the mirror of the forward pass: the output gradient of the local rows is all-gathered
  // (the output products' weight gradients and their input gradients are per chunk, as it arrives), LN(x) is
  // recomputed and all-gathered again for in_proj's weight gradient, and in_proj's input gradient, a partial
  // sum over this rank's heads and units, is reduce-scattered back to the local rows.
  void parallel_block_backward(int l) {
    const block_index& bi = idx_.blocks[l];
    const block_buffers& b = saved(l);
    const std::size_t r = rows(), br = brows(), width = in_width();
    auto dx = m2(s_.dx, r, D), t = m2(s_.t, r, D), dt = m2(s_.dt, r, D), dln = m2(s_.dln, r, D);
    auto dy = branch_gradient(l, 0);
    auto g = m2(s_.g, br, fl()), dg = m2(s_.dg, br, fl());
    kernels::gelu_forward<gelu>(space_, mlp_part(b.qkv), g);
    const bool dropout = reg_.dropout > 0;
    if (dropout) kernels::dropout_forward(space_, key(dropout_site(l, 1)), reg_.dropout, g, g, hidden_index());
    auto o = m2(b.o, br, aw()), dout = m2(s_.dout, br, aw());
    if (model_axis_) {
      const auto rc = row_split();
      kernels::column_sum(space_, dy, gvec(bi.proj_b), sum_workspace(r, D));
      Kokkos::deep_copy(space_, gvec(bi.fc2_b), gvec(bi.proj_b));  // both biases add to the same output
      auto dy_all = m2(s_.dy_all, br, D);
      using kernels::gemm_op;
      model_detail::gather_rows(space_, *model_axis_, rc, dy.data(), D, s_.dy_all, &comm_stats_, [&](std::size_t c) {
        const auto rows_c = rc.gathered_range(c);
        const float acc = c == 0 ? 0.0f : 1.0f;
        auto dy_c = row_range(dy_all, rows_c);
        kernels::gemm(space_, gemm_op::t, gemm_op::n, 1.0f, dy_c, row_range(o, rows_c), acc, gmat(bi.proj_w));
        kernels::gemm(space_, gemm_op::n, gemm_op::n, 1.0f, dy_c, weight(bi.proj_w), 0.0f, row_range(dout, rows_c));
        kernels::gemm(space_, gemm_op::t, gemm_op::n, 1.0f, dy_c, row_range(g, rows_c), acc, gmat(bi.fc2_w));
        kernels::gemm(space_, gemm_op::n, gemm_op::n, 1.0f, dy_c, weight(bi.fc2_w), 0.0f, row_range(dg, rows_c));
      });
    } else {
      model_detail::linear_backward(space_, o, weight(bi.proj_w), dy, gmat(bi.proj_w), gvec(bi.proj_b), dout,
                                    sum_workspace(r, D));
      model_detail::linear_backward(space_, g, weight(bi.fc2_w), dy, gmat(bi.fc2_w), view1<grad_type>(), dg,
                                    sum_workspace(r, D));
      Kokkos::deep_copy(space_, gvec(bi.fc2_b), gvec(bi.proj_b));  // both biases add to the same output
    }
    if (dropout) kernels::dropout_backward(space_, key(dropout_site(l, 1)), reg_.dropout, dg, dg, hidden_index());
    auto du_mlp = mlp_part(s_.du);
    kernels::gelu_backward<gelu>(space_, mlp_part(b.qkv), dg, du_mlp);
    attention_backward(bi, b, fl(), width);
    norm_forward(bi.norm1_w, bi.norm1_b, m2(stream(l), r, D), t, b.ln1_mean, b.ln1_rstd, r);
    auto du = m2(s_.du, br, width);
    if (model_axis_) {
      const auto rc = row_split();
      using kernels::gemm_op;
      auto t_all = m2(s_.t_all, br, D);
      model_detail::gather_rows(space_, *model_axis_, rc, s_.t, D, s_.t_all, &comm_stats_, [&](std::size_t c) {
        const auto rows_c = rc.gathered_range(c);
        kernels::gemm(space_, gemm_op::t, gemm_op::n, 1.0f, row_range(du, rows_c), row_range(t_all, rows_c),
                      c == 0 ? 0.0f : 1.0f, gmat(bi.qkv_w));
      });
      if constexpr (Shape::qkv_bias)
        kernels::column_sum(space_, du, gvec(bi.qkv_b), sum_workspace(br, width));
      else
        kernels::column_sum(space_, du_mlp, gvec(bi.mlp_bias), sum_workspace(br, fl()));
      view2<float> part(s_.part, br, D);
      model_detail::reduce_scatter_rows(space_, *model_axis_, rc, s_.part, D, s_.rsum, &comm_stats_, [&](std::size_t c) {
        const auto rows_c = rc.gathered_range(c);
        kernels::gemm(space_, gemm_op::n, gemm_op::n, 1.0f, row_range(du, rows_c), weight(bi.qkv_w), 0.0f,
                      row_range(part, rows_c));
      });
      kernels::convert(space_, view1<float>(s_.rsum, r * D), view1<act_type>(s_.dt, r * D));
    } else if constexpr (Shape::qkv_bias) {
      model_detail::linear_backward(space_, t, weight(bi.qkv_w), du, gmat(bi.qkv_w), gvec(bi.qkv_b), dt,
                                    sum_workspace(r, width));
    } else {
      model_detail::linear_backward(space_, t, weight(bi.qkv_w), du, gmat(bi.qkv_w), view1<grad_type>(), dt,
                                    sum_workspace(r, width));
      kernels::column_sum(space_, du_mlp, gvec(bi.mlp_bias), sum_workspace(r, F));
    }
    kernels::layernorm_backward<centered, norm_bias>(space_, m2(stream(l), r, D), vec(bi.norm1_w), f1(b.ln1_mean, r),
                                                     f1(b.ln1_rstd, r), dt, dln, gvec(bi.norm1_w), gvec(bi.norm1_b),
                                                     ln_workspace<norm_bias>(r, D));
    kernels::residual_accumulate(space_, dx, dln);
  }

  void embed_backward() {
    const std::size_t r = rows(), bnp = static_cast<std::size_t>(batch_) * patches_, K = std::size_t(C) * P * P;
    auto dx = m2(s_.dx, r, D);
    if (reg_.dropout > 0) kernels::dropout_backward(space_, key(0), reg_.dropout, dx, dx, local_rows_index());
    view1<grad_type> dcls = Shape::class_token ? gvec(idx_.cls) : view1<grad_type>();
    view2<grad_type> dpe;
    if constexpr (Shape::posemb == posemb_kind::learned) dpe = gmat(idx_.pos);
    view2<act_type> dtok = Shape::class_token ? m2(s_.ptok, bnp, D) : dx;
    model_detail::assemble_tokens_backward(space_, x3(s_.dx), dcls, dpe, Shape::cls_posemb,
                                           Shape::class_token ? dtok : view2<act_type>());
    view2<gemm_type> patches(s_.patches, bnp, K);
    // The images are not kept: the unfolded patches of the forward pass are still in scratch.
    model_detail::linear_backward(space_, patches, weight(idx_.patch_w), dtok, gmat(idx_.patch_w),
                                  gvec(idx_.patch_b), view2<act_type>(), sum_workspace(bnp, D));
  }

  static model_shard shard_of(const model_parallel& mp) {
    if (!mp.model_axis) return {};
    if (mp.chunks < 1 || static_cast<std::size_t>(mp.chunks) > model_detail::max_chunks)
      detail::fail("vit: model_parallel.chunks must be in [1, ", model_detail::max_chunks, "], it is ", mp.chunks);
    return {mp.model_axis->size(), mp.model_axis->rank()};
  }

  ExecSpace space_;
  model_shard shard_;
  communicator* model_axis_ = nullptr;  // null: no model axis (or one rank on it)
  int chunks_ = 1;
  comm_stats comm_stats_;
  parameters_type params_;
  gradients_type grads_;
  std::optional<parameter_arena<Shape, gemm_type, memory_space>> weight_copy_;
  Kokkos::View<float**, Kokkos::LayoutRight, memory_space> sincos_;
  bool weights_stale_ = true;
  regularization reg_;
  model_index idx_;
  std::vector<int> block_tensors_;  // [depth + 1]: first tensor of each block, then of the head
  arena<memory_space> activations_{"vitscale::activations"};
  buffers s_;
  std::size_t tokens_ = 0, patches_ = 0;
  int batch_ = -1;
  bool training_layout_ = false;
  bool train_ = false;
  std::uint32_t step_ = 0;
  int saved_batch_ = -1;
  std::uint32_t saved_step_ = 0;
};

}  // namespace vitscale
