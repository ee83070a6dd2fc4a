# Fused attention (forward, backward) and QK-norm.
vitscale_add_test_executable(kernels_attention attention.cpp qk_norm.cpp)
