#pragma once
// The seed papers' optimizers, each an update rule in one fused pass over the parameter arena
// (train/optimizer.hpp), one header per rule:
//
//   sgd_momentum<Model, Momentum>  train/sgd_momentum.hpp: optax.trace (big_vision's momentum_hp), the momentum
//                                  in Momentum (default the policy's state type; bf16 for big_vision's
//                                  half-precision momentum).
//   adamw<Model>                   train/adam.hpp: optax.scale_by_adam, both moments in the policy's state type.
//   adam_bf16_momentum<Model>      the same with the first moment stored in bf16 (the ViT-G paper).
//   adafactor<Model>               train/adafactor.hpp: big_vision.scale_by_adafactor (the ViT-G paper's).
//   lion<Model>                    train/lion.hpp: optax.scale_by_lion (Chen et al. 2023); lion_bf16_momentum.
//
// Each optimizer's state_layout (config/optimizer_state.hpp) is what training_memory<Shape, Policy, Layout>
// accounts: training_memory<Shape, Policy, optimizer::adafactor<Model>::state_layout>.
//
// Every optimizer, for each parameter p with gradient g:
//   g ← clip(g)                                  (options.clip: NFNet's AGC, then global-norm clipping)
//   p ← p − lr·u(g) − wd_group·decay_scale·p
// Weight-decay convention. decay_scale = schedule(step)/peak gives big_vision's convention (decay follows the
// schedule but not the base lr: ViT-G / ViT-22B use wd 3.0 on the head, 0.03 on the body this way);
// decay_scale = lr gives PyTorch's / optax's AdamW (p ← p − lr·wd·p).
// Groups: head = the classifier matrix (head.weight) only — big_vision's '.*head/kernel' does not match the
// MAP head or pre_logits; body = every other tensor with role weight (patch embedding, block matrices, MAP
// head matrices, pre_logits); no decay on biases, norms, position embeddings, class token and MAP probe.
//
// Clipping. AGC (NFNet, optax.adaptive_grad_clip with eps 1e-3): per unit, g ← g·min(1, λ·max(‖w‖, 1e-3)/‖g‖).
// A unit is one output unit of a weight (a row of its matrix view [out, in], which is optax's reduction over
// the input axes of a JAX kernel and timm's unitwise_norm); any other tensor is one unit (optax and timm for
// vectors; timm for the class token and position embedding). Global-norm clipping (optax.clip_by_global_norm)
// then scales all gradients by max/‖g‖ when ‖g‖ ≥ max. The gradients in the model are left as they were.
//
// Numerics: every update is computed in float from the stored values and rounded into the stored types
// (parameters float or bf16, moments float or bf16). As in optax with a bf16 accumulator, β·m is formed in
// bf16 (β rounded to bf16 too: big_vision's bf16 momentum 0.9 is in effect 0.8984375) before the float
// gradient term is added, the update uses the unrounded new moment, and only the stored
// moment is rounded.
//
// On a model axis (a model split by model/vit.hpp's model_parallel, config/sharding.hpp) each rank steps its
// own shard. The elementwise updates need nothing more; the sums over a split dimension are completed across
// the model axis before they are used, so that every rank applies exactly the unsharded optimizer to its
// elements:
//   AGC                the squared norms of a unit that the split cuts (a row of an input-split matrix, a split
//                      vector) are summed over the axis; an output-split matrix's rows are whole on one rank;
//   global norm        the split tensors' share of ‖g‖² is summed over the axis, the replicated tensors' share
//                      (the same on every rank) is counted once;
//   Adafactor          a factored tensor's statistic along its split dimension is a sum over the axis (the
//                      column statistic of a row-split matrix, the row statistic of a column-split one), the
//                      mean of a normalised statistic that is itself split likewise; which tensors are factored
//                      and which statistic is normalised follow the unsharded shape; the block RMS of a split
//                      tensor is summed over the axis and divided by its unsharded size.
// Each of these is one all-reduce of the partial sums (only those) per step, in a fixed order, so every rank
// of the axis computes the same factors.
//
// EMA of the parameters (options.ema, optim::ema_policy; off by default): a float shadow of the parameter arena
// that the same fused pass moves towards each stored parameter, ema ← ema + (1 − d_t)·(p − ema), with timm's
// ModelEmaV3 decay schedule (d_1 = 0, an optional warmup); use_ema() evaluates the model with it and restores
// the training parameters bit for bit; checkpoints keep it as ema.<name> (io/checkpoint.hpp); its bytes are
// ema_bytes() and the accounting's parameter_ema (training_memory(..., parameter_ema::on)), not state_bytes().
//
// Memory: moments are arenas of the parameters' layout (one View each, same offsets), Adafactor's factored
// statistics one more arena of rows + cols per factored tensor; state_bytes() reports them and equals the
// config layouts (config/optimizer_state.hpp). Work is cut into segments of at most 4096 elements that never
// cross a tensor; every reduction (norms for clipping, Adafactor's statistics) is in a fixed order that depends
// only on the table, without atomics, so a step is bit-identical for any thread count.

#include <vitscale/train/adafactor.hpp>
#include <vitscale/train/adam.hpp>
#include <vitscale/train/lion.hpp>
#include <vitscale/train/optimizer.hpp>
#include <vitscale/train/sgd_momentum.hpp>

#include <optional>
#include <string>
#include <tuple>

namespace vitscale::optimizer {

// The optimizers a program can choose by name (examples/train's --optimizer): one line each.
template <class Optimizer>
struct registered {
  using type = Optimizer;
  const char* name;
};
template <class Model>
auto registry() {
  return std::make_tuple(registered<adamw<Model>>{"adamw"},                           //
                         registered<adam_bf16_momentum<Model>>{"adam-bf16"},          //
                         registered<adafactor<Model>>{"adafactor"},                   //
                         registered<sgd_momentum<Model>>{"sgd"},                      //
                         registered<lion<Model>>{"lion"},                             //
                         registered<lion_bf16_momentum<Model>>{"lion-bf16"});
}

// "adamw, adam-bf16, …": the registered names, for help texts and errors.
template <class Model>
std::string registered_names() {
  std::string names;
  std::apply([&](const auto&... r) { ((names += (names.empty() ? "" : ", ") + std::string(r.name)), ...); },
             registry<Model>());
  return names;
}

// f(static_cast<Optimizer*>(nullptr)) for the optimizer registered as `name`; its result. An unknown name is a
// vitscale::error that lists the known ones.
template <class Model, class F>
auto with_registered(const std::string& name, F&& f) {
  using result = decltype(f(static_cast<adamw<Model>*>(nullptr)));
  std::optional<result> out;
  std::apply(
      [&](const auto&... r) {
        (void)((r.name == name ? (out.emplace(f(static_cast<typename std::decay_t<decltype(r)>::type*>(nullptr))),
                                  true)
                               : false) ||
               ...);
      },
      registry<Model>());
  if (!out) ::vitscale::detail::fail("unknown optimizer '", name, "' (", registered_names<Model>(), ")");
  return *out;
}

}  // namespace vitscale::optimizer
