# The data path: IDX (MNIST / Fashion-MNIST) reading, gzip included, and reproducible shuffling and batching.
# The IDX reader reads through zlib (Debian: zlib1g-dev, which scripts/setup.sh installs), so a program that
# reads IDX files links ZLIB::ZLIB; without zlib these tests are left out rather than failing the configure.
# Test sources live in tests/data_tests/ because tests/data/ holds other tests' golden files.
find_package(ZLIB)
if(ZLIB_FOUND)
  vitscale_add_test_executable(data ${CMAKE_CURRENT_LIST_DIR}/../data_tests/idx.cpp
                                    ${CMAKE_CURRENT_LIST_DIR}/../data_tests/batches.cpp)
  target_link_libraries(test_data PRIVATE ZLIB::ZLIB)
  target_compile_definitions(test_data PRIVATE VITSCALE_TEST_DATA_DIR="${CMAKE_CURRENT_LIST_DIR}")
else()
  message(WARNING "vitscale: zlib not found (Debian: apt-get install zlib1g-dev); the data tests (test_data) are left out")
endif()
