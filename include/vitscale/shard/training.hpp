#pragma once
// A training step on a data × model mesh: what is left to do after each rank's backward.
//
// After model.backward() on a mesh, a rank's gradients are its own contribution (model/vit.hpp): the
// replicated tensors (embedding, norms, QK-norm, the output products' biases, the head) saw this rank's
// images, or this rank's heads; the sharded ones (config/sharding.hpp) saw the images of the whole
// model-axis group, for this rank's heads and units. So the gradient of the loss summed over every rank is
//   replicated tensors: the sum over all ranks of the mesh;
//   sharded tensors:    the sum over the data axis (the ranks that hold the same shard).
// reduce_gradients does exactly that, with one all-reduce per run of consecutive tensors of one kind (all of
// them posted before the first is waited), then multiplies by `scale`. With every rank's dlogits taken from
// the mean loss of its own images (loss::softmax_xent), scale = 1 / (number of ranks) gives the gradient of
// the mean over the global batch, as the unsharded model computes it.
//
// The optimizers then step each rank's arena: SGD-momentum, AdamW and Adam with bf16 momentum are
// elementwise, so a sharded step is the unsharded step on this rank's elements; AGC, global-norm clipping and
// Adafactor complete their sums over a split dimension across the model axis (train/optimizers.hpp), so they
// too step each shard as the unsharded optimizer would.

#include <vitscale/config/sharding.hpp>
#include <vitscale/core/communicator.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <cstddef>
#include <type_traits>
#include <vector>

namespace vitscale::shard {

// Sums each rank's gradients over the mesh (see above) and multiplies them by `scale` (a kernel queued on the
// model's space, like every other step of training).
// world: every rank of the mesh; data_axis: the ranks holding the same shard (world itself when the model
// axis has one rank).
template <class Model>
void reduce_gradients(Model& model, communicator& world, communicator& data_axis, double scale = 1.0) {
  using shape = typename Model::shape;
  using grad_type = typename Model::grad_type;
  static_assert(std::is_same<grad_type, float>::value,
                "shard::reduce_gradients: the collectives sum floats; use a policy with float gradients "
                "(fp32, bf16_mixed)");
  auto& grads = model.gradients();
  const auto& table = grads.table();
  model.space().fence();
  float* base = grads.data();
  std::vector<request> pending;
  int i = 0;
  const int count = static_cast<int>(table.size());
  while (i < count) {
    const bool sharded = shard_split_of<shape>(table[i]).sharded();
    int j = i + 1;
    while (j < count && shard_split_of<shape>(table[j]).sharded() == sharded) ++j;
    const std::size_t begin = grads.offset(i);
    const std::size_t end = grads.offset(j - 1) + static_cast<std::size_t>(table[j - 1].numel());
    communicator& group = sharded ? data_axis : world;
    if (group.size() > 1) pending.push_back(group.iall_reduce(base + begin, base + begin, end - begin));
    i = j;
  }
  for (auto& r : pending) r.wait();
  if (scale != 1.0) {
    auto all = grads.all();
    const float s = static_cast<float>(scale);
    Kokkos::parallel_for(
        "vitscale::shard::scale_gradients",
        Kokkos::RangePolicy<typename Model::execution_space>(model.space(), 0, all.extent(0)),
        KOKKOS_LAMBDA(std::size_t e) { all(e) *= s; });  // queued: the optimizer runs next on the same space
  }
}

}  // namespace vitscale::shard
