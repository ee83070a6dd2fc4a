// The doctest main of every test executable: Kokkos is initialised once, with every backend the build
// enables, and finalised after the last test. It names the host spaces the Kokkos tests run on.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <vitscale/core/spaces.hpp>

#include <cstdio>

namespace {
template <class... Spaces>
void print_spaces(vitscale::type_list<Spaces...>) {
  std::printf("Kokkos %d, host execution spaces under test:", KOKKOS_VERSION);
  ((std::printf(" %s", Spaces::name())), ...);
  std::printf("\n");
}
}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  print_spaces(vitscale::host_spaces{});
  doctest::Context context(argc, argv);
  return context.run();
}
