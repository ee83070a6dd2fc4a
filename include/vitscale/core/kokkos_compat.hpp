#pragma once
// Every difference between the Kokkos versions vitscale supports (3.4.01 as Debian ships it, 4.x as users
// build it with CUDA or HIP) is absorbed here, and only here. Library code writes vitscale::kmath::exp,
// vitscale::bit_cast and never tests KOKKOS_VERSION itself.

#include <Kokkos_Core.hpp>

#include <cstring>
#include <type_traits>

#if !defined(KOKKOS_VERSION) || KOKKOS_VERSION < 30401
#error "vitscale needs Kokkos 3.4.01 or newer"
#endif

#define VITSCALE_KOKKOS_VERSION KOKKOS_VERSION

namespace vitscale {

// Mathematical functions callable inside Kokkos kernels on every backend. Kokkos moved them from
// Kokkos::Experimental to Kokkos in 3.7 (and deprecated the old names in 4.0).
namespace kmath {
#if KOKKOS_VERSION >= 30700
using Kokkos::erf;
using Kokkos::exp;
using Kokkos::fabs;
using Kokkos::log;
using Kokkos::log1p;
using Kokkos::sqrt;
using Kokkos::tanh;
#else
using Kokkos::Experimental::erf;
using Kokkos::Experimental::exp;
using Kokkos::Experimental::fabs;
using Kokkos::Experimental::log;
using Kokkos::Experimental::log1p;
using Kokkos::Experimental::sqrt;
using Kokkos::Experimental::tanh;
#endif
}  // namespace kmath

#if defined(KOKKOS_ENABLE_HIP)
// Kokkos' HIP execution space: Kokkos::HIP from 4.0 on, Kokkos::Experimental::HIP before.
#if KOKKOS_VERSION >= 40000
using hip_space = Kokkos::HIP;
#else
using hip_space = Kokkos::Experimental::HIP;
#endif
#endif

// std::bit_cast for C++17 and device code (Kokkos::bit_cast only exists from 4.1 on). memcpy of a
// register-sized value is lowered to a move by every compiler and is allowed in CUDA and HIP kernels.
template <class To, class From>
KOKKOS_FORCEINLINE_FUNCTION To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast: the two types must have the same size");
  static_assert(std::is_trivially_copyable<To>::value && std::is_trivially_copyable<From>::value,
                "bit_cast: both types must be trivially copyable");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

namespace detail {

// What a host thread other than the one that initialised Kokkos needs before it may dispatch kernels, for
// threads that take turns with the initialising one (never at the same time: shard/in_process.hpp's baton).
// Kokkos before 4.0 keeps the OpenMP backend's instance in a thread-local pointer that only the initialising
// thread has set, so a kernel from another std::thread dereferenced null; capture() on the initialising
// thread and adopt() on the other lend it the same instance. Kokkos 4 (and the Serial backend) keep
// process-wide state and need nothing.
class kokkos_host_context {
 public:
  static kokkos_host_context capture() noexcept {
    kokkos_host_context c;
#if defined(KOKKOS_ENABLE_OPENMP) && KOKKOS_VERSION < 40000
    c.openmp_instance_ = Kokkos::Impl::t_openmp_instance;
#endif
    return c;
  }
  void adopt() const noexcept {
#if defined(KOKKOS_ENABLE_OPENMP) && KOKKOS_VERSION < 40000
    if (openmp_instance_ != nullptr && Kokkos::Impl::t_openmp_instance == nullptr)
      Kokkos::Impl::t_openmp_instance = openmp_instance_;
#endif
  }

 private:
#if defined(KOKKOS_ENABLE_OPENMP) && KOKKOS_VERSION < 40000
  Kokkos::Impl::OpenMPExec* openmp_instance_ = nullptr;
#endif
};

}  // namespace detail

}  // namespace vitscale
