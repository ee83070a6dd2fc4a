# Row-wise kernels: LayerNorm, GELU, softmax, dropout and drop-path, residual add, token pooling.
vitscale_add_test_executable(kernels_elementwise
  layernorm.cpp activations.cpp softmax.cpp dropout.cpp residual.cpp pooling.cpp)
