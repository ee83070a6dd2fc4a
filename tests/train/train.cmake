# Training: losses and learning-rate schedules, against golden values from PyTorch and from big_vision's
# formulas in numpy (tests/reference/train_reference.py).
vitscale_add_test_executable(train ${CMAKE_CURRENT_SOURCE_DIR}/train/loss.cpp
                             ${CMAKE_CURRENT_SOURCE_DIR}/train/schedule.cpp)
target_link_libraries(test_train PRIVATE nlohmann_json::nlohmann_json)
target_compile_definitions(test_train PRIVATE VITSCALE_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
