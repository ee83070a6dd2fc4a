# The whole model: forward and training-step images/s against the FMA peak (PyTorch + timm and ONNX Runtime
# are measured by bench_vit_torch.py; results in benchmarks/RESULTS.md).
add_executable(bench_vit bench_vit.cpp)
target_link_libraries(bench_vit PRIVATE vitscale::vitscale CLI11::CLI11)
vitscale_target_defaults(bench_vit)
