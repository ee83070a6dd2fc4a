#pragma once
// The linear layer y = x·Wᵀ + b (W: [out, in], timm's layout), forward and backward, on the GEMM dispatch
// of kernels/gemm.hpp. Every product of the model goes through these two functions.

#include <vitscale/kernels/gemm.hpp>
#include <vitscale/kernels/reduction.hpp>

namespace vitscale::model_detail {

// x: [rows, in], w: [out, in], b: [out] (empty: no bias) -> y: [rows, out] = act(x·wᵀ + b) + beta·y
template <class ExecSpace, class X, class W, class B, class Y>
void linear_forward(const ExecSpace& space, const X& x, const W& w, const B& b, const Y& y,
                    kernels::gemm_epilogue epilogue = kernels::gemm_epilogue::bias, float beta = 0.0f) {
  using kernels::gemm_op;
  if (b.extent(0) == 0 && epilogue == kernels::gemm_epilogue::bias)
    kernels::gemm(space, gemm_op::n, gemm_op::t, 1.0f, x, w, beta, y);
  else
    kernels::gemm(space, gemm_op::n, gemm_op::t, 1.0f, x, w, beta, y, epilogue, b);
}

// x: [rows, in], w: [out, in], dy: [rows, out] -> dw: [out, in] = dyᵀ·x (+ dw when accumulate_dw),
// db: [out] = Σ_rows dy (empty: skipped), dx: [rows, in] = dy·w (+ beta_dx·dx; empty: skipped)
template <class ExecSpace, class X, class W, class DY, class DW, class DB, class DX, class Workspace>
void linear_backward(const ExecSpace& space, const X& x, const W& w, const DY& dy, const DW& dw, const DB& db,
                     const DX& dx, const Workspace& workspace, float beta_dx = 0.0f, bool accumulate_dw = false) {
  using kernels::gemm_op;
  kernels::gemm(space, gemm_op::t, gemm_op::n, 1.0f, dy, x, accumulate_dw ? 1.0f : 0.0f, dw);
  if (db.extent(0) != 0) kernels::column_sum(space, dy, db, workspace);
  if (dx.extent(0) != 0) kernels::gemm(space, gemm_op::n, gemm_op::n, 1.0f, dy, w, beta_dx, dx);
}

}  // namespace vitscale::model_detail
