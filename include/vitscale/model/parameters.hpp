#pragma once
// The parameter arena: every tensor of a shape's parameter table (config/tensors.hpp) in one allocation,
// in table order, each tensor contiguous in its timm layout. Gradients and optimizer moments are arenas of
// the same table, so "the same tensor" is the same index (and the same offset) everywhere, and an optimizer
// is one pass over memory.
//
// On a model axis of several ranks (config/sharding.hpp), each rank's arena holds its shard of the tensors
// the parallel block splits: the table's dimensions are the shard's, everything else is unchanged.
//
// An arena may hold a subset of the table (a GEMM-precision copy keeps only the weight matrices): tensors
// outside the subset have no storage and asking for them is an error.

#include <vitscale/config/sharding.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace vitscale {

// Which tensors of the table an arena holds.
enum class tensor_subset { all, weights };

template <class Shape, class T, class MemorySpace>
class parameter_arena {
 public:
  using shape_type = Shape;
  static constexpr int count = tensor_count<Shape>();
  static constexpr std::size_t absent = static_cast<std::size_t>(-1);
  using value_type = T;
  using memory_space = MemorySpace;
  using table_type = std::array<tensor_info, count>;
  using vector_type = Kokkos::View<T*, Kokkos::LayoutRight, MemorySpace, Kokkos::MemoryUnmanaged>;
  using matrix_type = Kokkos::View<T**, Kokkos::LayoutRight, MemorySpace, Kokkos::MemoryUnmanaged>;

  parameter_arena() : parameter_arena(Shape::resolution) {}
  explicit parameter_arena(int resolution, tensor_subset subset = tensor_subset::all,
                           const std::string& label = "vitscale::parameters", model_shard shard = {})
      : table_(tensor_table<Shape>(resolution)), resolution_(resolution), subset_(subset), shard_(shard) {
    check_model_shard<Shape>(shard);
    for (auto& t : table_) t = shard_tensor<Shape>(t, shard);
    std::size_t offset = 0;
    for (int i = 0; i < count; ++i) {
      if (holds(table_[i])) {
        offsets_[i] = offset;
        offset += static_cast<std::size_t>(table_[i].numel());
      } else {
        offsets_[i] = absent;
      }
    }
    storage_ = Kokkos::View<T*, MemorySpace>(label, offset);  // zero-initialised
  }

  const table_type& table() const { return table_; }
  const tensor_info& info(int i) const { return table_[check_index(i)]; }
  int resolution() const { return resolution_; }
  tensor_subset subset() const { return subset_; }
  // The model-axis shard this arena holds ({1, 0}: the whole model).
  const model_shard& shard() const { return shard_; }
  bool has(int i) const { return offsets_[check_index(i)] != absent; }

  // Elements held, and the whole arena as one vector.
  std::size_t size() const { return storage_.extent(0); }
  T* data() const { return storage_.data(); }
  vector_type all() const { return vector_type(storage_.data(), storage_.extent(0)); }
  const Kokkos::View<T*, MemorySpace>& storage() const { return storage_; }

  std::size_t offset(int i) const {
    if (!has(i)) detail::fail("parameter arena: tensor '", table_[i].full_name(), "' is not held by this arena");
    return offsets_[i];
  }
  // Tensor i as a flat vector, and as the matrix [matrix_rows, matrix_cols] (a linear map's [out, in]; the
  // patch kernel's [width, channels·patch²]).
  vector_type vector(int i) const {
    return vector_type(storage_.data() + offset(i), static_cast<std::size_t>(table_[i].numel()));
  }
  matrix_type matrix(int i) const {
    return matrix_type(storage_.data() + offset(i), static_cast<std::size_t>(table_[i].matrix_rows()),
                       static_cast<std::size_t>(table_[i].matrix_cols()));
  }

  // Index of the tensor named `block`.`name` (block -1: a tensor outside the blocks), or -1.
  int find(int block, std::string_view name) const {
    for (int i = 0; i < count; ++i)
      if (table_[i].block == block && table_[i].name == name) return i;
    return -1;
  }
  // Index of a tensor by its full timm name ("blocks.3.mlp.fc1.weight"); an unknown name is an error.
  int index(std::string_view full_name) const {
    for (int i = 0; i < count; ++i)
      if (table_[i].full_name() == full_name) return i;
    detail::fail("parameter arena: no tensor named '", full_name, "' in this model");
  }

 private:
  bool holds(const tensor_info& t) const { return subset_ == tensor_subset::all || t.role == tensor_role::weight; }
  int check_index(int i) const {
    if (i < 0 || i >= count) detail::fail("parameter arena: tensor index ", i, " is out of range [0, ", count, ")");
    return i;
  }

  table_type table_;
  int resolution_;
  tensor_subset subset_;
  model_shard shard_;
  std::array<std::size_t, count> offsets_{};
  Kokkos::View<T*, MemorySpace> storage_;
};

}  // namespace vitscale
