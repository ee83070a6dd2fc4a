// Uses the installed headers and the Kokkos they bring along.
#include <vitscale/vit.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  using shape = vitscale::presets::vit_b16;
  static_assert(shape::params().backbone == 85'797'120);
  Kokkos::View<vitscale::bf16*> v("v", 4);
  Kokkos::parallel_for(4, KOKKOS_LAMBDA(int i) { v(i) = 0.5f * i; });
  float sum = 0;
  Kokkos::parallel_reduce(4, KOKKOS_LAMBDA(int i, float& s) { s += v(i); }, sum);
  if (sum != 3.0f) return 1;
  std::printf("consumer: ViT-B/16 backbone %lld parameters\n", static_cast<long long>(shape::params().backbone));
  return 0;
}
