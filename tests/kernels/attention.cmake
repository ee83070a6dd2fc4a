# Fused attention (forward, backward) and QK-norm.
vitscale_add_test_executable(kernels_attention attention.cpp qk_norm.cpp)
# The same attention checks on the plain loops that devices (and hosts without Highway) run, forced on the
# host: the only place those loops run in a CPU-only build.
vitscale_add_test_executable(kernels_attention_portable attention.cpp)
target_compile_definitions(test_kernels_attention_portable PRIVATE VITSCALE_ATTENTION_PORTABLE_ONLY)
