#pragma once
// The embedding unit: patches → tokens. The image is cut into patches (unfolded), each patch projected by the
// patch kernel (timm's conv as a [D, C·p²] matrix), the class token prepended where the shape has one, and the
// position embedding added — a learned table (timm's pos_embed, with or without a class-token entry) or
// big_vision's fixed 2-D sin-cos table — then dropout on the tokens (training).
//   images: [B, H, W, C] -> x0: [B, N, D]

#include <vitscale/config/activations.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/kernels/dropout.hpp>
#include <vitscale/model/embedding.hpp>
#include <vitscale/model/linear.hpp>
#include <vitscale/model/posemb.hpp>

#include <cstddef>
#include <vector>

namespace vitscale::model_detail {

template <class Ctx>
struct patch_embedding
    : activations::embedding_buffers<typename Ctx::shape, typename Ctx::act_type, typename Ctx::gemm_type> {
  using shape = typename Ctx::shape;
  using act_type = typename Ctx::act_type;
  using gemm_type = typename Ctx::gemm_type;
  using param_type = typename Ctx::param_type;
  using grad_type = typename Ctx::grad_type;
  using memory_space = typename Ctx::memory_space;
  template <class T>
  using view1 = typename Ctx::template view1<T>;
  template <class T>
  using view2 = typename Ctx::template view2<T>;
  static constexpr int D = Ctx::D, P = Ctx::P, C = Ctx::C;
  static constexpr bool learned = shape::posemb == posemb_kind::learned;

  static constexpr int cls = shape::class_token ? tensor_index<shape>(-1, "cls_token") : -1;
  static constexpr int pos = learned ? tensor_index<shape>(-1, "pos_embed") : -1;
  static constexpr int patch_w = tensor_index<shape>(-1, "patch_embed.proj.weight");
  static constexpr int patch_b = tensor_index<shape>(-1, "patch_embed.proj.bias");

  // Its buffers (the unfolded patches, kept until backward since the images are not; the projected patches):
  // activations::embedding_buffers.
  using buffers = activations::embedding_buffers<shape, act_type, gemm_type>;
  using buffers::patches, buffers::ptok, buffers::K;  // K: one unfolded patch, C·p²
  Kokkos::View<float**, Kokkos::LayoutRight, memory_space> sincos;  // [Np, D] the fixed table (sin-cos shapes)

  // The sin-cos table at a resolution of `grid`×`grid` patches (nothing for a learned table).
  void set_grid(int grid) {
    if constexpr (!learned) {
      const std::size_t np = std::size_t(grid) * grid;
      std::vector<float> host(np * D);
      posemb_sincos_2d(grid, grid, D, host.data());
      sincos = Kokkos::View<float**, Kokkos::LayoutRight, memory_space>("vitscale::posemb_sincos", np, D);
      Ctx::upload(host.data(), view1<float>(sincos.data(), sincos.size()));
    }
  }

  // images: [B, H, W, C] -> x0: [B, N, D]
  template <class Images>
  void forward(Ctx& c, const Images& images, act_type* x0) const {
    const std::size_t bnp = static_cast<std::size_t>(c.batch_) * c.patches_;
    view2<gemm_type> pv(patches, bnp, K);
    unfold_patches(c.space_, images, P, pv);
    view2<act_type> tok = c.m2(ptok, bnp, D);
    linear_forward(c.space_, pv, c.weight(patch_w), c.vec(patch_b), tok);
    auto x = c.x3(x0);
    view1<const param_type> cls_row = shape::class_token ? c.vec(cls) : view1<const param_type>();
    if constexpr (learned) {
      assemble_tokens(c.space_, tok, cls_row, c.params_.matrix(pos), shape::cls_posemb, x);
    } else {
      assemble_tokens(c.space_, tok, cls_row, sincos, false, x);
    }
    if (c.dropout_on()) {
      auto xr = c.m2(x0, c.rows(), D);
      kernels::dropout_forward(c.space_, c.key(0), c.reg_.dropout, xr, xr, c.local_rows_index());
    }
  }

  // dx0: [B, N, D] (the first block's input gradient, dropout undone in place) -> the class token's, the
  // position table's and the patch kernel's gradients.
  void backward(Ctx& c, act_type* dx0) const {
    const std::size_t r = c.rows(), bnp = static_cast<std::size_t>(c.batch_) * c.patches_;
    auto dx = c.m2(dx0, r, D);
    if (c.reg_.dropout > 0) kernels::dropout_backward(c.space_, c.key(0), c.reg_.dropout, dx, dx, c.local_rows_index());
    view1<grad_type> dcls = shape::class_token ? c.gvec(cls) : view1<grad_type>();
    view2<grad_type> dpe;
    if constexpr (learned) dpe = c.gmat(pos);
    view2<act_type> dtok = shape::class_token ? c.m2(ptok, bnp, D) : dx;
    assemble_tokens_backward(c.space_, c.x3(dx0), dcls, dpe, shape::cls_posemb,
                             shape::class_token ? dtok : view2<act_type>());
    // The images are not kept: the unfolded patches of the forward pass are still there.
    linear_backward(c.space_, view2<gemm_type>(patches, bnp, K), c.weight(patch_w), dtok, c.gmat(patch_w),
                    c.gvec(patch_b), view2<act_type>(), c.sum_workspace(bnp, D));
  }
};

}  // namespace vitscale::model_detail
