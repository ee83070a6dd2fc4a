#pragma once
// A directory of this test process's own under the system's temporary folder, made on first use and removed
// with everything in it when the process ends.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace vitscale::test {

inline const std::filesystem::path& scratch() {
  static const struct directory {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("vitscale-test-" + std::to_string(::getpid()));
    directory() { std::filesystem::create_directories(path); }
    ~directory() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } dir;
  return dir.path;
}

}  // namespace vitscale::test
