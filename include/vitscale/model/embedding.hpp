#pragma once
// The patch embedding and the token sequence, forward and backward.
//
// Images are channels-last [B, H, W, C] (big_vision's layout, and what image decoders produce). The patch
// embedding is timm's convolution with stride = patch, written as a GEMM over unfolded patches: the
// kernel [D, C, P, P] is the matrix [D, C·P²] and a patch is the row (c, py, px) in that order.
// The sequence is [class token,] patches, with the position embedding added as the shape says: to every
// token (timm), or to the patches only (big_vision; the sin-cos table never has a class-token entry).

#include <vitscale/kernels/detail/elementwise_common.hpp>

namespace vitscale::model_detail {

// images: [B, H, W, C] -> patches: [B·G², C·P²] with G = H / P (H == W), row b·G² + gy·G + gx
template <class ExecSpace, class Images, class Patches>
void unfold_patches(const ExecSpace& space, const Images& images, int patch, const Patches& patches) {
  using T = typename Patches::non_const_value_type;
  const int b_count = static_cast<int>(images.extent(0));
  const int g = static_cast<int>(images.extent(1)) / patch;
  const int c_count = static_cast<int>(images.extent(3));
  const int k = c_count * patch * patch;
  const int np = g * g;
  kernels::detail::for_each_row(space, "vitscale::unfold_patches", static_cast<std::size_t>(b_count) * np,
                                KOKKOS_LAMBDA(const kernels::detail::team_member<ExecSpace>& member, int row) {
                                  const int b = row / np, p = row % np;
                                  const int y0 = (p / g) * patch, x0 = (p % g) * patch;
                                  kernels::detail::row_for(member, k, [&](int j) {
                                    const int c = j / (patch * patch);
                                    const int py = (j / patch) % patch, px = j % patch;
                                    patches(row, j) = kernels::detail::store_as<T>(
                                        static_cast<float>(images(b, y0 + py, x0 + px, c)));
                                  });
                                });
}

// tokens: [B·Np, D] (patch embeddings), cls: [D] (empty: no class token), posemb: [E, D] (empty: none),
// with_cls_entry: whether posemb's row 0 belongs to the class token -> x: [B, N, D]
template <class ExecSpace, class Tokens, class Cls, class Posemb, class X>
void assemble_tokens(const ExecSpace& space, const Tokens& tokens, const Cls& cls, const Posemb& posemb,
                     bool with_cls_entry, const X& x) {
  using T = typename X::non_const_value_type;
  const int n = static_cast<int>(x.extent(1)), d = static_cast<int>(x.extent(2));
  const int prefix = cls.extent(0) != 0 ? 1 : 0;
  const int np = n - prefix;
  const bool has_pe = posemb.extent(0) != 0;
  const int pe_shift = with_cls_entry ? 1 : 0;
  kernels::detail::for_each_row(
      space, "vitscale::assemble_tokens", x.extent(0) * x.extent(1),
      KOKKOS_LAMBDA(const kernels::detail::team_member<ExecSpace>& member, int row) {
        const int b = row / n, t = row % n;
        if (t < prefix) {
          kernels::detail::row_for(member, d, [&](int j) {
            float v = static_cast<float>(cls(j));
            if (has_pe && with_cls_entry) v += static_cast<float>(posemb(0, j));
            x(b, t, j) = kernels::detail::store_as<T>(v);
          });
        } else {
          const int p = t - prefix;
          kernels::detail::row_for(member, d, [&](int j) {
            float v = static_cast<float>(tokens(b * np + p, j));
            if (has_pe) v += static_cast<float>(posemb(p + pe_shift, j));
            x(b, t, j) = kernels::detail::store_as<T>(v);
          });
        }
      });
}

// dx: [B, N, D] -> dcls: [D] = Σ_b dx(b, 0) (empty: no class token), dposemb: [E, D] (empty: none) = Σ_b of
// the rows each entry was added to, dtokens: [B·Np, D] = dx of the patch rows (empty: skipped, when there is
// no class token and dx itself is the patch gradient). Sums over the batch in batch order.
template <class ExecSpace, class DX, class DCls, class DPosemb, class DTokens>
void assemble_tokens_backward(const ExecSpace& space, const DX& dx, const DCls& dcls, const DPosemb& dposemb,
                              bool with_cls_entry, const DTokens& dtokens) {
  using TC = typename DCls::non_const_value_type;
  using TP = typename DPosemb::non_const_value_type;
  using TT = typename DTokens::non_const_value_type;
  const int b_count = static_cast<int>(dx.extent(0));
  const int n = static_cast<int>(dx.extent(1)), d = static_cast<int>(dx.extent(2));
  const int prefix = dcls.extent(0) != 0 ? 1 : 0;
  const int np = n - prefix;
  const bool has_pe = dposemb.extent(0) != 0;
  const int pe_shift = with_cls_entry ? 1 : 0;
  if (prefix || has_pe)
    kernels::detail::for_each_row(
        space, "vitscale::assemble_tokens_backward", static_cast<std::size_t>(n),
        KOKKOS_LAMBDA(const kernels::detail::team_member<ExecSpace>& member, int t) {
          kernels::detail::row_for(member, d, [&](int j) {
            float sum = 0.0f;
            for (int b = 0; b < b_count; ++b) sum += static_cast<float>(dx(b, t, j));
            if (t < prefix) {
              dcls(j) = kernels::detail::store_as<TC>(sum);
              if (has_pe && with_cls_entry) dposemb(0, j) = kernels::detail::store_as<TP>(sum);
            } else if (has_pe) {
              dposemb(t - prefix + pe_shift, j) = kernels::detail::store_as<TP>(sum);
            }
          });
        });
  if (dtokens.extent(0) != 0)
    kernels::detail::for_each_row(space, "vitscale::patch_token_gradient", static_cast<std::size_t>(b_count) * np,
                                  KOKKOS_LAMBDA(const kernels::detail::team_member<ExecSpace>& member, int row) {
                                    const int b = row / np, p = row % np;
                                    kernels::detail::row_for(member, d, [&](int j) {
                                      dtokens(row, j) = kernels::detail::store_as<TT>(
                                          static_cast<float>(dx(b, p + prefix, j)));
                                    });
                                  });
}

}  // namespace vitscale::model_detail
