# The explore layer: models of training at scale (explore/step_model.hpp), checked against invariants and
# against ViT-22B's published throughput. No Kokkos work; one small executable.
vitscale_add_test_executable(explore explore/step_model.cpp)
