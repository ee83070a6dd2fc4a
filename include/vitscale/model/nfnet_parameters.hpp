#pragma once
// The NFNet's parameter arena: every tensor of an NFNet shape's parameter table (config/nfnet_tensors.hpp) in one
// allocation, in table order (timm's named_parameters order), each tensor contiguous in timm's layout (conv
// weights OIHW). Gradients are an arena of the same table, so the same tensor is the same index and offset in
// both, and an optimizer is one pass over memory — the ViT's parameter arena (model/parameters.hpp), for the
// NFNet's table.

#include <vitscale/config/nfnet_shape.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace vitscale {

template <class Shape, class T, class MemorySpace>
class nfnet_parameter_arena {
 public:
  static_assert(is_nfnet_shape_v<Shape>, "nfnet_parameter_arena<Shape, ...>: Shape must be a vitscale::nfnet_shape");
  // (No shape_type member: that names a ViT arena, which the optimizers may shard over a model axis.)
  static constexpr int count = nfnet_tensor_count<Shape>();
  using value_type = T;
  using memory_space = MemorySpace;
  using table_type = std::array<nfnet_tensor_info, count>;
  using vector_type = Kokkos::View<T*, Kokkos::LayoutRight, MemorySpace, Kokkos::MemoryUnmanaged>;

  explicit nfnet_parameter_arena(const std::string& label = "vitscale::nfnet_parameters")
      : table_(nfnet_tensor_table<Shape>()) {
    std::size_t offset = 0;
    for (int i = 0; i < count; ++i) {
      offsets_[i] = offset;
      offset += static_cast<std::size_t>(table_[i].numel());
    }
    storage_ = Kokkos::View<T*, MemorySpace>(label, offset);  // zero-initialised
  }

  const table_type& table() const { return table_; }
  const nfnet_tensor_info& info(int i) const { return table_[check_index(i)]; }
  std::size_t size() const { return storage_.extent(0); }
  T* data() const { return storage_.data(); }
  vector_type all() const { return vector_type(storage_.data(), storage_.extent(0)); }
  std::size_t offset(int i) const { return offsets_[check_index(i)]; }
  // Tensor i as a flat vector.
  vector_type vector(int i) const {
    return vector_type(storage_.data() + offset(i), static_cast<std::size_t>(table_[i].numel()));
  }
  // Index of a tensor by its full timm name ("stages.1.0.conv2.gain"); an unknown name is an error.
  int index(std::string_view full_name) const {
    for (int i = 0; i < count; ++i)
      if (table_[i].full_name() == full_name) return i;
    detail::fail("nfnet parameter arena: no tensor named '", full_name, "' in this model");
  }

 private:
  int check_index(int i) const {
    if (i < 0 || i >= count)
      detail::fail("nfnet parameter arena: tensor index ", i, " is out of range [0, ", count, ")");
    return i;
  }

  table_type table_;
  std::array<std::size_t, count> offsets_{};
  Kokkos::View<T*, MemorySpace> storage_;
};

}  // namespace vitscale
