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
#include <vitscale/model/vit.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

namespace vitscale::shard {

// Sums each rank's gradients over the mesh (see above) and multiplies them by `scale`, overlapping the sums
// with backward when it is passed to it:
//
//   shard::gradient_reducer<model_t> reducer(model, world, data_axis, 1.0 / world.size());  // once
//   model.backward(dlogits, &reducer);  // posts each block's all-reduces as soon as its gradients are final
//   reducer.finish();                   // waits for them, scales; then the optimizer steps
//
// Backward finishes the head first, then the blocks from the last, then the embedding (model/vit.hpp's
// gradient_listener), so the sums of the later blocks travel while the earlier blocks are differentiated.
// With shard/mpi.hpp's one communication queue per process, a model axis' collectives of the next block
// queue behind the sums already posted: the overlap is with compute, not with the model axis.
// world: every rank of the mesh; data_axis: the ranks holding the same shard (world itself when the model
// axis has one rank).
template <class Model>
class gradient_reducer final : public gradient_listener {
 public:
  using shape = typename Model::shape;
  static_assert(std::is_same<typename Model::grad_type, float>::value,
                "shard::gradient_reducer: the collectives sum floats; use a policy with float gradients "
                "(fp32, bf16_mixed)");

  gradient_reducer(Model& model, communicator& world, communicator& data_axis, double scale = 1.0)
      : model_(&model), world_(&world), data_axis_(&data_axis), scale_(scale) {
    if (!(std::isfinite(scale))) vitscale::detail::fail("shard::gradient_reducer: the scale must be finite, it is ", scale);
    const auto& table = model.gradients().table();
    done_.assign(table.size(), 0);
    pending_.reserve(2 * table.size());
  }

  // Posts the all-reduces of tensors [first, end): one per run of consecutive tensors of one kind (replicated
  // over the world, sharded over the data axis). Their gradients must be written (the model fences first).
  void gradients_ready(int first, int end) override {
    auto& grads = model_->gradients();
    const auto& table = grads.table();
    if (first < 0 || end > static_cast<int>(table.size()) || first > end)
      vitscale::detail::fail("shard::gradient_reducer: tensors [", first, ", ", end, ") are not in the table of ", table.size());
    float* base = grads.data();
    int i = first;
    while (i < end) {
      const bool sharded = shard_split_of<shape>(table[i]).sharded();
      int j = i + 1;
      while (j < end && shard_split_of<shape>(table[j]).sharded() == sharded) ++j;
      for (int k = i; k < j; ++k) {
        if (done_[k]) vitscale::detail::fail("shard::gradient_reducer: tensor '", table[k].full_name(), "' was reduced twice in one step");
        done_[k] = 1;
      }
      const std::size_t begin = grads.offset(i);
      const std::size_t stop = grads.offset(j - 1) + static_cast<std::size_t>(table[j - 1].numel());
      communicator& group = sharded ? *data_axis_ : *world_;
      if (group.size() > 1)
        pending_.push_back(group.iall_reduce(base + begin, base + begin, stop - begin,
                                             std::string(sharded ? "sharded" : "replicated") + " gradients from " +
                                                 table[i].full_name()));
      i = j;
    }
  }

  // Waits for every sum posted since the last finish() and multiplies the gradients by the scale (a kernel
  // queued on the model's space, like the optimizer that runs next). Every tensor must have been reported.
  void finish() {
    for (auto& r : pending_) r.wait();
    pending_.clear();
    const auto& table = model_->gradients().table();
    for (std::size_t k = 0; k < table.size(); ++k)
      if (!done_[k])
        vitscale::detail::fail("shard::gradient_reducer::finish: the gradient of '", table[k].full_name(),
                     "' was never reported; pass the reducer to model.backward(dlogits, &reducer)");
    std::fill(done_.begin(), done_.end(), 0);
    if (scale_ != 1.0) {
      auto all = model_->gradients().all();
      const float s = static_cast<float>(scale_);
      Kokkos::parallel_for(
          "vitscale::shard::scale_gradients",
          Kokkos::RangePolicy<typename Model::execution_space>(model_->space(), 0, all.extent(0)),
          KOKKOS_LAMBDA(std::size_t e) { all(e) *= s; });
    }
  }

 private:
  Model* model_;
  communicator* world_;
  communicator* data_axis_;
  double scale_;
  std::vector<char> done_;
  std::vector<request> pending_;
};

// The same sums after backward, in one call (nothing overlapped): for a backward that ran without a reducer.
template <class Model>
void reduce_gradients(Model& model, communicator& world, communicator& data_axis, double scale = 1.0) {
  gradient_reducer<Model> reducer(model, world, data_axis, scale);
  model.space().fence();
  reducer.gradients_ready(0, static_cast<int>(model.gradients().table().size()));
  reducer.finish();
}

}  // namespace vitscale::shard
