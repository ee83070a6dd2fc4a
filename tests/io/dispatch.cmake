# Choosing the compile-time shape from a parameter file (io/dispatch.hpp, config/describe.hpp): describe and
# infer_shape round trips, dispatch over a list, and its errors.
vitscale_add_test_executable(io_dispatch ${CMAKE_CURRENT_SOURCE_DIR}/io/dispatch.cpp)
target_link_libraries(test_io_dispatch PRIVATE nlohmann_json::nlohmann_json)
target_compile_definitions(test_io_dispatch PRIVATE VITSCALE_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
