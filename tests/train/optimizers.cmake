# Optimizers (SGD-momentum, AdamW, Adam with a bf16 first moment, big_vision's Adafactor, AGC and global-norm
# clipping, weight-decay groups) against optax's values (tests/reference/optimizer_reference.py).
vitscale_add_test_executable(train_optimizers ${CMAKE_CURRENT_SOURCE_DIR}/train/optimizers.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/train/vit_step.cpp)
target_link_libraries(test_train_optimizers PRIVATE nlohmann_json::nlohmann_json)
target_compile_definitions(test_train_optimizers PRIVATE VITSCALE_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
