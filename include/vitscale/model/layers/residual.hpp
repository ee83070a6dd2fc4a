#pragma once
// A block's residual branches under regularisation (training): dropout on the branch's output, then stochastic
// depth per sample (timm's linear rule), then the join; and the gradient entering a branch, back through both.
// Sites: branch 0 is the attention (or, in a parallel block, the whole) branch, branch 1 the MLP branch.

#include <vitscale/kernels/dropout.hpp>
#include <vitscale/kernels/residual.hpp>

#include <cstddef>

namespace vitscale::model_detail {

// x_out = x_in + drop_path(dropout(y)) for the branch output y in ctx.s_.ybr: [rows, D]
template <class Ctx>
void residual_join(Ctx& c, int l, int which, typename Ctx::act_type* x_in, typename Ctx::act_type* x_out) {
  constexpr int D = Ctx::D;
  auto y = c.m2(c.s_.ybr, c.rows(), D);
  if (c.dropout_on())
    kernels::dropout_forward(c.space_, c.key(Ctx::dropout_site(l, which == 0 ? 0 : 2)), c.reg_.dropout, y, y,
                             c.local_rows_index());
  const double p = c.train_ ? c.drop_path_rate(l) : 0.0;
  if (p > 0)
    kernels::drop_path_add(c.space_, c.key(Ctx::drop_path_site(l, which)), p, c.x3(x_in), c.x3(c.s_.ybr), c.x3(x_out),
                           c.first_local_image());
  else
    kernels::residual_add(c.space_, c.m2(x_in, c.rows(), D), y, c.m2(x_out, c.rows(), D));
}

// The gradient entering branch `which` of block l from the stream gradient s_.dx: through drop-path and dropout
// when they are on (into s_.dbr), else s_.dx itself. [rows, D]
template <class Ctx>
auto branch_gradient(Ctx& c, int l, int which) {
  constexpr int D = Ctx::D;
  const std::size_t r = c.rows();
  const double p = c.drop_path_rate(l);
  const bool dropout = c.reg_.dropout > 0;
  if (p <= 0 && !dropout) return c.m2(c.s_.dx, r, D);
  auto dbr = c.m2(c.s_.dbr, r, D);
  if (p > 0)
    kernels::drop_path_backward(c.space_, c.key(Ctx::drop_path_site(l, which)), p, c.x3(c.s_.dx), c.x3(c.s_.dbr),
                                c.first_local_image());
  else
    Kokkos::deep_copy(c.space_, dbr, c.m2(c.s_.dx, r, D));
  if (dropout)
    kernels::dropout_backward(c.space_, c.key(Ctx::dropout_site(l, which == 0 ? 0 : 2)), c.reg_.dropout, dbr, dbr,
                              c.local_rows_index());
  return dbr;
}

}  // namespace vitscale::model_detail
