#pragma once
// What every parameter table's entry (config/tensors.hpp's tensor_info, config/nfnet_tensors.hpp's
// nfnet_tensor_info) computes from its rank and dimensions: its size, and its view as a matrix.

#include <array>
#include <cstdint>

namespace vitscale::detail {

constexpr std::int64_t extents_numel(const std::array<std::int64_t, 4>& dims, int rank) {
  std::int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[i];
  return n;
}

// The tensor seen as a matrix: unit dimensions dropped, then [first dimension, everything else]. A vector is
// [n, 1], a scalar [1, 1]. Adafactor factors on this view; AGC's units are its rows.
constexpr std::int64_t extents_matrix_rows(const std::array<std::int64_t, 4>& dims, int rank) {
  for (int i = 0; i < rank; ++i)
    if (dims[i] != 1) return dims[i];
  return 1;
}

}  // namespace vitscale::detail
