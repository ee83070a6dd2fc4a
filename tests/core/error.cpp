// vitscale::error: the library's one exception type, with a message a person can act on.
#include <doctest/doctest.h>
#include <vitscale/core/error.hpp>

#include <string>

TEST_CASE("vitscale::error carries the library's prefix and the composed message") {
  try {
    vitscale::detail::fail("expected ", 3, " channels, found ", 1.5);
    FAIL("fail() returned");
  } catch (const vitscale::error& e) {
    CHECK(std::string(e.what()) == "vitscale: expected 3 channels, found 1.5");
  }
  // It is a std::runtime_error, so generic handlers catch it too.
  CHECK_THROWS_AS(vitscale::detail::fail("x"), std::runtime_error);
}
