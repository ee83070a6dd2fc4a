# File formats: safetensors read and write, against files the Python `safetensors` package wrote
# (tests/reference/safetensors_reference.py) and against hostile files built byte by byte.
vitscale_add_test_executable(io ${CMAKE_CURRENT_SOURCE_DIR}/io/safetensors.cpp)
target_link_libraries(test_io PRIVATE nlohmann_json::nlohmann_json)
target_compile_definitions(test_io PRIVATE VITSCALE_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
