#pragma once
// What tests that read committed reference data share: the JSON golden files under tests/data (written by
// the scripts in tests/reference), and the message of the vitscale::error a call raises.

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <vitscale/core/error.hpp>

#include <fstream>
#include <functional>
#include <string>

namespace vitscale::test {

// tests/data/<folder>/<file>, parsed; a missing file names the script that writes it.
inline nlohmann::json load_golden_json(const std::string& folder, const std::string& file, const char* script) {
  const std::string path = std::string(VITSCALE_TEST_DATA_DIR) + "/" + folder + "/" + file;
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path << " (run tests/reference/" << script << ")");
  return nlohmann::json::parse(in);
}

// The message of the vitscale::error f raises, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const vitscale::error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace vitscale::test
