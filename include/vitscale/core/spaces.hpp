#pragma once
// The host execution spaces this build of Kokkos enables, as a compile-time list. Tests run every Kokkos
// test on each of them; run-time dispatch (a thread count of 1 vs many) picks among them.

#include <vitscale/core/kokkos_compat.hpp>
#include <vitscale/core/type_list.hpp>

namespace vitscale {

using host_spaces = concat_t<
#if defined(KOKKOS_ENABLE_SERIAL)
    type_list<Kokkos::Serial>,
#endif
#if defined(KOKKOS_ENABLE_OPENMP)
    type_list<Kokkos::OpenMP>,
#endif
#if defined(KOKKOS_ENABLE_THREADS)
    type_list<Kokkos::Threads>,
#endif
    type_list<>>;

static_assert(host_spaces::size > 0, "vitscale needs a Kokkos with at least one host execution space");

}  // namespace vitscale
