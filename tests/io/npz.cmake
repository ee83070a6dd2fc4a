# .npz reading (include/vitscale/io/npz.hpp) and big_vision checkpoint import (io/big_vision.hpp), against
# archives numpy wrote and timm's own big_vision loader (tests/reference/big_vision_reference.py ->
# tests/data/big_vision/), and hostile archives built in the test. The reader inflates through zlib: without
# it the test is left out, as the data tests are.
find_package(ZLIB)
if(ZLIB_FOUND)
  vitscale_add_test_executable(npz ${CMAKE_CURRENT_SOURCE_DIR}/io/npz.cpp)
  target_link_libraries(test_npz PRIVATE ZLIB::ZLIB nlohmann_json::nlohmann_json)
  target_compile_definitions(test_npz PRIVATE VITSCALE_TEST_DATA_DIR="${CMAKE_CURRENT_SOURCE_DIR}/data")
endif()
