#pragma once
// Runs a doctest test template on every host execution space of the build:
//
//   TEST_CASE_TEMPLATE_DEFINE("what it checks", Space, some_id) { ... Kokkos::RangePolicy<Space> ... }
//   VITSCALE_ON_HOST_SPACES(some_id);

#include <doctest/doctest.h>
#include <vitscale/core/spaces.hpp>

#include <tuple>

namespace vitscale::test {
template <class List>
struct as_tuple;
template <class... Ts>
struct as_tuple<type_list<Ts...>> {
  using type = std::tuple<Ts...>;
};
using host_space_tuple = typename as_tuple<host_spaces>::type;
}  // namespace vitscale::test

#define VITSCALE_ON_HOST_SPACES(id) TEST_CASE_TEMPLATE_APPLY(id, ::vitscale::test::host_space_tuple)
