# Row-wise kernels (LayerNorm, GELU, softmax, residual, dropout, pooling) against the memory bandwidth
# measured in the same run (a table, never a test).
add_executable(bench_elementwise bench_elementwise.cpp)
target_link_libraries(bench_elementwise PRIVATE vitscale::vitscale)
vitscale_target_defaults(bench_elementwise)
