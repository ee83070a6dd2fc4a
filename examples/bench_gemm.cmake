# GEMM throughput against the machine's FMA peak, oneDNN and Eigen called directly, and PyTorch
# (bench_gemm_torch.py). Prints a table; never a test.
add_executable(bench_gemm bench_gemm.cpp)
target_link_libraries(bench_gemm PRIVATE vitscale::vitscale)
vitscale_target_defaults(bench_gemm)
