# GEMM: every backend (automatic, oneDNN, Eigen, portable) on every host space, and cuBLAS / rocBLAS on the GPU
# in builds for Kokkos::Cuda / HIP with the vendor library.
vitscale_add_test_executable(kernels_gemm gemm.cpp)
