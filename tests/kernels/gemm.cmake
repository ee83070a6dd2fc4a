# GEMM: every backend (automatic, oneDNN, Eigen, portable) on every host space.
vitscale_add_test_executable(kernels_gemm gemm.cpp)
