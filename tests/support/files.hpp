#pragma once
// What tests that read committed reference data share: the JSON golden files under tests/golden (written by
// the scripts in tests/reference); error_of comes with it (support/errors.hpp).

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <support/errors.hpp>

#include <fstream>
#include <functional>
#include <string>

namespace vitscale::test {

// tests/golden/<folder>/<file>, parsed; a missing file names the script that writes it.
inline nlohmann::json load_golden_json(const std::string& folder, const std::string& file, const char* script) {
  const std::string path = std::string(VITSCALE_TEST_GOLDEN_DIR) + "/" + folder + "/" + file;
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path << " (run tests/reference/" << script << ")");
  return nlohmann::json::parse(in);
}

}  // namespace vitscale::test
