#pragma once
// layer_context<Shape, Policy, ExecSpace>: what every layer of a ViT reads and writes at run time — the execution
// space, the parameter and gradient arenas (and the GEMM copy of the weights), the batch geometry, this rank's
// place on a model axis, the regularisation settings and step, the activations the blocks keep and the scratch
// all layers share — and the typed views into them. The model (model/vit.hpp) is one; each layer unit
// (model/heads/*.hpp, …) takes it by reference and declares its own parameters and saved activations.

#include <vitscale/config/activations.hpp>
#include <vitscale/config/shape.hpp>
#include <vitscale/core/arena.hpp>
#include <vitscale/core/precision.hpp>
#include <vitscale/core/random.hpp>
#include <vitscale/kernels/dropout.hpp>
#include <vitscale/kernels/gemm.hpp>
#include <vitscale/kernels/layernorm.hpp>
#include <vitscale/kernels/reduction.hpp>
#include <vitscale/model/parameters.hpp>
#include <vitscale/model/sharded_linear.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace vitscale {

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

namespace model_detail {

template <class Shape, class Policy, class ExecSpace>
class layer_context {
 public:
  using shape = Shape;
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

  // What the blocks keep (training: one set per block; inference: one set for all), the residual stream and
  // the final norm's statistics; the scratch all blocks share (config/activations.hpp declares both; the heads
  // and the embedding keep their own: model/heads/, model/layers/patch_embedding.hpp).
  using block_buffers = activations::block<Shape, act_type>;
  using stream_buffers = activations::stream<Shape, act_type>;
  using scratch_buffers = activations::block_scratch<Shape, act_type, param_type>;
  struct buffers : stream_buffers, scratch_buffers {};

  layer_context(int resolution, ExecSpace exec, model_shard rank, communicator* axis, int pieces)
      : space_(exec), shard_(rank), model_axis_(rank.count > 1 ? axis : nullptr), chunks_(pieces),
        params_(resolution, tensor_subset::all, "vitscale::parameters", shard_),
        grads_(resolution, tensor_subset::all, "vitscale::gradients", shard_) {}

  // ---- parameters, gradients and the GEMM copy of the weights (-1: a tensor absent from the shape)
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

  // ---- views into the arena
  std::size_t rows() const { return static_cast<std::size_t>(batch_) * tokens_; }
  view2<act_type> m2(act_type* p, std::size_t r, std::size_t c) const { return view2<act_type>(p, r, c); }
  view1<float> f1(float* p, std::size_t n) const { return view1<float>(p, n); }
  // A LayerNorm's saved mean over r rows: empty where the norm does not centre (config/activations.hpp).
  view1<float> norm_mean(float* p, std::size_t r) const { return view1<float>(p, centered ? r : 0); }
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
  // How a block's rows move: the local rows in one piece, or the group's on a model axis (sharded_linear.hpp).
  model_detail::row_exchange<ExecSpace> exchange() {
    return {space_, model_axis_, model_axis_ ? row_split() : model_detail::row_chunks{rows(), 1, 1}, &comm_stats_};
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
  // Block l's activations: its own set in a training layout, the one shared set in inference or with
  // rematerialisation (config/activations.hpp).
  const block_buffers& saved(int l) const {
    return s_.blocks[training_layout_ && layout_remat_ == rematerialization::none ? l : 0];
  }
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

  // y = LN(x) with the norm's tensors w and bias; its statistics into mean and rstd ([r] floats each).
  template <class X, class Y>
  void norm_forward(int w, int bias, const X& x, const Y& y, float* mean, float* rstd, std::size_t r) {
    kernels::layernorm_forward<centered, norm_bias>(space_, x, vec(w), vec(bias), y, norm_mean(mean, r), f1(rstd, r),
                                                    norm_eps);
  }


  static model_shard shard_of(communicator* axis, int chunks) {
    if (!axis) return {};
    if (chunks < 1 || static_cast<std::size_t>(chunks) > model_detail::max_chunks)
      detail::fail("vit: model_parallel.chunks must be in [1, ", model_detail::max_chunks, "], it is ", chunks);
    return {axis->size(), axis->rank()};
  }

  ExecSpace space_;
  model_shard shard_;
  communicator* model_axis_ = nullptr;  // null: no model axis (or one rank on it)
  int chunks_ = 1;
  comm_stats comm_stats_;
  parameters_type params_;
  gradients_type grads_;
  std::optional<parameter_arena<Shape, gemm_type, memory_space>> weight_copy_;
  regularization reg_;
  buffers s_;
  std::size_t tokens_ = 0, patches_ = 0;
  int batch_ = -1;
  bool training_layout_ = false;
  rematerialization layout_remat_ = rematerialization::none;  // of the layout as it is now
  bool train_ = false;
  std::uint32_t step_ = 0;
};

}  // namespace model_detail
}  // namespace vitscale
