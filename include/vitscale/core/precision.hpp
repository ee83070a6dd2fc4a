#pragma once
// Precision policies: which number type each kind of tensor is stored in. A policy is a compile-time
// argument of the model, its accounting and (later) its optimizers.
//
//   param     master parameters, as stored and updated by the optimizer
//   grad      parameter gradients
//   act       activations kept between layers and saved for backward
//   gemm      inputs of matrix products (weights are cast to it; the result is accumulated in float)
//   state     optimizer moments by default (optimizers that fix a moment's type, such as Adam with a bf16
//             first moment or Adafactor, override it for that moment)
//
// Accumulation (GEMM sums, norms, softmax, reductions) is float on every path and in every policy.

#include <vitscale/core/bf16.hpp>

#include <type_traits>

namespace vitscale {
namespace precision {

namespace detail {
template <class T>
constexpr bool is_storage_type = std::is_same<T, float>::value || std::is_same<T, ::vitscale::bf16>::value;
}

template <class Param, class Grad, class Act, class Gemm, class State>
struct policy {
  static_assert(detail::is_storage_type<Param> && detail::is_storage_type<Grad> &&
                    detail::is_storage_type<Act> && detail::is_storage_type<Gemm> &&
                    detail::is_storage_type<State>,
                "precision::policy: every storage type must be float or vitscale::bf16");
  static_assert(sizeof(Gemm) <= sizeof(Param),
                "precision::policy: GEMM inputs wider than the parameters would only waste memory and time");

  using param_type = Param;
  using grad_type = Grad;
  using act_type = Act;
  using gemm_type = Gemm;
  using state_type = State;
  using accum_type = float;

  // The GEMMs read weights in gemm_type: a policy whose master parameters are wider keeps a gemm_type copy
  // of the weights, refreshed after each optimizer step, instead of converting them inside every product.
  static constexpr bool keeps_weight_copy = !std::is_same<Param, Gemm>::value;
};

// Everything in float.
using fp32 = policy<float, float, float, float, float>;
// fp32 master parameters, gradients and optimizer state; bf16 activations and GEMM inputs (the seeds' recipe).
using bf16_mixed = policy<float, float, bf16, bf16, float>;
// bf16 for every tensor, optimizer state included; accumulation still in float.
using bf16_pure = policy<bf16, bf16, bf16, bf16, bf16>;

template <class T>
struct is_policy : std::false_type {};
template <class P, class G, class A, class M, class S>
struct is_policy<policy<P, G, A, M, S>> : std::true_type {};
template <class T>
constexpr bool is_policy_v = is_policy<T>::value;

}  // namespace precision
}  // namespace vitscale
