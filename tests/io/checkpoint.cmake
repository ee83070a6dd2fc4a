# Training checkpoints (parameters, optimizer state, training state in one safetensors file): resuming is
# bit-identical to not stopping, for every optimizer; a save killed part-way leaves the previous file; damaged
# or mismatched files are errors. Also host determinism: the same seed gives a bit-identical loss curve.
vitscale_add_test_executable(io_checkpoint ${CMAKE_CURRENT_SOURCE_DIR}/io/checkpoint.cpp)
target_link_libraries(test_io_checkpoint PRIVATE nlohmann_json::nlohmann_json)
target_compile_definitions(test_io_checkpoint PRIVATE VITSCALE_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
