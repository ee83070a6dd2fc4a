# Fused attention against an unfused Eigen peer and the machine's FMA peak (a table, never a test).
add_executable(bench_attention bench_attention.cpp)
target_link_libraries(bench_attention PRIVATE vitscale::vitscale)
vitscale_target_defaults(bench_attention)
