#pragma once
// How ViT-22B's parallel block is split across the model axis of a device mesh: which tensors of the
// parameter table are sharded, along which dimension, and the rule that chose it.
//
// The rule ("Scaling Vision Transformers to 22 Billion Parameters", §2, asynchronous parallel linear
// operations): a linear map y = x·Wᵀ, W [out, in], split over m ranks either by its output features (each
// rank holds out/m rows of W and computes out/m of y from the whole x, so x is all-gathered) or by its input
// features (each rank holds in/m columns of W and computes a partial y from its slice of x, so the partial
// outputs are reduce-scattered). The per-token volume communicated is `in` in the first case and `out` in the
// second, so the split goes by whichever of the two is smaller. For the parallel block this gives:
//   in_proj [3D + F, D]: in = D < out          -> split by output features (heads and MLP units)
//   attn_out + mlp_out, one [D, D + F] product -> split by input features (the same heads and units)
// so the heads and MLP units a rank computes in the first product are exactly the inputs it holds in the
// second, and nothing is communicated between them.
//
// A sharded dimension is made of segments that are each split evenly: in_proj's rows are [F | q | k | v]
// (timm's ParallelScalingBlock order), and rank r holds the r-th m-th of every segment, i.e. F/m MLP units
// and H/m heads of each of q, k and v, stored in the same [F/m | D/m | D/m | D/m] order. Everything else
// (norms, QK-norm, the output products' biases, embedding, head) is replicated on every model rank.

#include <vitscale/config/shape.hpp>
#include <vitscale/config/tensors.hpp>
#include <vitscale/core/error.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vitscale {

// Which dimension of a tensor's [out, in] matrix view is split over the model axis.
enum class shard_dim { none, out, in };

// The split of a linear map [in -> out] that communicates the smaller operand (see above).
constexpr shard_dim linear_shard_dim(std::int64_t in, std::int64_t out) { return in <= out ? shard_dim::out : shard_dim::in; }

// A tensor's split: the dimension, and the segments it is made of (up to 4, summing to that dimension).
struct tensor_split {
  shard_dim dim = shard_dim::none;
  int segment_count = 0;
  std::array<std::int64_t, 4> segments{};
  constexpr bool sharded() const { return dim != shard_dim::none; }
};

// This process's place on the model axis: `count` ranks share each sharded tensor, this one is `index`.
struct model_shard {
  int count = 1;
  int index = 0;
};

// The split of tensor t of the table of the shape `s` describes (replicated unless it is one of the parallel
// block's products). A parallel block's input product is wider at its output and its output products at their
// input for every positive width and MLP width, so linear_shard_dim gives out and in.
constexpr tensor_split shard_split_of(const shape_descriptor& sd, const tensor_info& t) {
  tensor_split s;
  if (sd.block != block_kind::parallel || t.block < 0) return s;
  const std::int64_t D = sd.width, F = sd.mlp_dim;
  const shard_dim input_product = linear_shard_dim(D, F + 3 * D);
  const shard_dim output_product = linear_shard_dim(D + F, D);
  const std::string_view n = t.name;
  if (n == "in_proj.weight" || n == "in_proj.bias") {
    s.dim = input_product;
    s.segment_count = 4;
    s.segments = {F, D, D, D};
  } else if (n == "mlp_bias") {
    s.dim = input_product;
    s.segment_count = 1;
    s.segments = {F, 0, 0, 0};
  } else if (n == "attn_out_proj.weight") {
    s.dim = output_product;
    s.segment_count = 1;
    s.segments = {D, 0, 0, 0};
  } else if (n == "mlp_out_proj.weight") {
    s.dim = output_product;
    s.segment_count = 1;
    s.segments = {F, 0, 0, 0};
  }
  return s;
}

template <class Shape>
constexpr tensor_split shard_split_of(const tensor_info& t) {
  if constexpr (Shape::block == block_kind::parallel) {
    constexpr std::int64_t D = Shape::width, F = Shape::mlp_dim;
    static_assert(linear_shard_dim(D, F + 3 * D) == shard_dim::out && linear_shard_dim(D + F, D) == shard_dim::in,
                  "a parallel block's input product is wider at its output and its output products at their "
                  "input, for every positive width and MLP width");
  }
  return shard_split_of(describe<Shape>(), t);
}

// Throws unless Shape can be split over `shard.count` model ranks with this rank at `shard.index`.
template <class Shape>
void check_model_shard(const model_shard& shard) {
  if (shard.count < 1 || shard.index < 0 || shard.index >= shard.count)
    detail::fail("model shard ", shard.index, " of ", shard.count, ": the count must be at least 1 and the index in [0, count)");
  if (shard.count == 1) return;
  if constexpr (Shape::block != block_kind::parallel) {
    detail::fail("model sharding splits ViT-22B's parallel block; this shape has classic blocks "
                 "(use options<block_kind::parallel>) or a model axis of 1");
  } else {
    if (Shape::heads % shard.count != 0 || Shape::mlp_dim % shard.count != 0)
      detail::fail("model sharding over ", shard.count, " ranks needs the heads (", Shape::heads,
                   ") and the MLP width (", Shape::mlp_dim, ") to be multiples of ", shard.count);
  }
}

// The tensor as rank `shard.index` of `shard.count` stores it: the split dimension divided by the count.
constexpr tensor_info shard_tensor(const tensor_split& s, tensor_info t, const model_shard& shard) {
  if (!s.sharded() || shard.count == 1) return t;
  // out is dims[0] (vectors are [out]); in is dims[1] of a matrix
  const int d = s.dim == shard_dim::out ? 0 : 1;
  t.dims[d] /= shard.count;
  return t;
}
template <class Shape>
constexpr tensor_info shard_tensor(tensor_info t, const model_shard& shard) {
  return shard_tensor(shard_split_of<Shape>(t), t, shard);
}

// For element i of the local shard's dimension: the index along the full dimension.
constexpr std::int64_t shard_to_full(const tensor_split& s, const model_shard& shard, std::int64_t i) {
  std::int64_t full_offset = 0;
  for (int k = 0; k < s.segment_count; ++k) {
    const std::int64_t local = s.segments[k] / shard.count;
    if (i < local) return full_offset + shard.index * local + i;
    i -= local;
    full_offset += s.segments[k];
  }
  return -1;  // out of range
}

// f(full_offset, local_offset) for every element of this rank's shard of tensor `full` (both row-major:
// the full [matrix_rows, matrix_cols] matrix, and the shard's own matrix).
template <class Shape, class F>
void for_each_shard_element(const tensor_info& full, const model_shard& shard, F&& f) {
  const tensor_split s = shard_split_of<Shape>(full);
  const bool split = s.sharded() && shard.count > 1;
  const std::int64_t rows = full.matrix_rows(), cols = full.matrix_cols();
  const std::int64_t lrows = split && s.dim == shard_dim::out ? rows / shard.count : rows;
  const std::int64_t lcols = split && s.dim == shard_dim::in ? cols / shard.count : cols;
  for (std::int64_t i = 0; i < lrows; ++i) {
    const std::int64_t fi = split && s.dim == shard_dim::out ? shard_to_full(s, shard, i) : i;
    for (std::int64_t j = 0; j < lcols; ++j) {
      const std::int64_t fj = split && s.dim == shard_dim::in ? shard_to_full(s, shard, j) : j;
      f(static_cast<std::size_t>(fi * cols + fj), static_cast<std::size_t>(i * lcols + j));
    }
  }
}

// This rank's shard of a full tensor (host memory), and the way back (writes only the shard's elements).
template <class Shape, class T, class U>
void extract_shard(const tensor_info& full, const model_shard& shard, const T* full_data, U* local) {
  for_each_shard_element<Shape>(full, shard, [&](std::size_t f, std::size_t l) { local[l] = static_cast<U>(full_data[f]); });
}
template <class Shape, class T, class U>
void insert_shard(const tensor_info& full, const model_shard& shard, const U* local, T* full_data) {
  for_each_shard_element<Shape>(full, shard, [&](std::size_t f, std::size_t l) { full_data[f] = static_cast<T>(local[l]); });
}

}  // namespace vitscale
