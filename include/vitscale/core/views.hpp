#pragma once
// View aliases and argument checks shared by the kernels.
//
// Kernels take Kokkos Views in LayoutRight (row-major, the last index contiguous) on the execution space's
// memory space. Shapes are checked on entry: a mismatch is a vitscale::error naming the argument, the
// shape found and the shape expected — never a silent out-of-bounds access.

#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <cstddef>
#include <initializer_list>
#include <sstream>
#include <string>

namespace vitscale {

template <class T, class Space>
using vector_view = Kokkos::View<T*, Kokkos::LayoutRight, typename Space::memory_space>;
template <class T, class Space>
using matrix_view = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::memory_space>;
template <class T, class Space>
using tensor3_view = Kokkos::View<T***, Kokkos::LayoutRight, typename Space::memory_space>;
template <class T, class Space>
using tensor4_view = Kokkos::View<T****, Kokkos::LayoutRight, typename Space::memory_space>;

namespace detail {

template <class View>
std::string extents_string(const View& v) {
  std::ostringstream s;
  s << '[';
  for (unsigned r = 0; r < View::rank; ++r) s << (r ? ", " : "") << v.extent(r);
  s << ']';
  return s.str();
}

// Throws vitscale::error unless `v` has exactly the extents `expected`:
//   require_extents("layernorm_forward", "y", y, {rows, cols});
template <class View>
void require_extents(const char* function, const char* name, const View& v,
                     std::initializer_list<std::size_t> expected) {
  bool ok = expected.size() == View::rank;
  unsigned r = 0;
  for (std::size_t e : expected) ok = ok && r < View::rank && v.extent(r++) == e;
  if (!ok) {
    std::ostringstream want;
    want << '[';
    r = 0;
    for (std::size_t e : expected) want << (r++ ? ", " : "") << e;
    want << ']';
    fail(function, ": ", name, " is ", extents_string(v), ", expected ", want.str());
  }
}

// Throws vitscale::error unless the view's last index is contiguous (stride 1), as the kernels assume.
template <class View>
void require_contiguous_rows(const char* function, const char* name, const View& v) {
  if (View::rank > 0 && v.span() > 0 && v.stride(View::rank - 1) != 1)
    fail(function, ": ", name, " must have a contiguous last dimension (LayoutRight), its stride is ",
         v.stride(View::rank - 1));
}

}  // namespace detail
}  // namespace vitscale
