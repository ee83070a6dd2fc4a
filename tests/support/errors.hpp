#pragma once
// The message of the vitscale::error a call raises, for tests of bad input.
//   error_of(f):          the message, or "(no error)" when f returns (for calls that may or may not fail)
//   expected_error(f):    the message; a failed check if f returns or throws anything but a vitscale::error
//   CHECK_ERROR(expr, parts...): expr must throw a vitscale::error whose message contains every part

#include <doctest/doctest.h>
#include <vitscale/core/error.hpp>

#include <exception>
#include <functional>
#include <string>

namespace vitscale::test {

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const vitscale::error& e) {
    return e.what();
  }
  return "(no error)";
}

inline std::string expected_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const vitscale::error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("threw something other than vitscale::error: " << e.what());
    return {};
  }
  FAIL_CHECK("nothing was thrown");
  return {};
}

}  // namespace vitscale::test

#define CHECK_ERROR(expr, ...)                                                                \
  do {                                                                                        \
    const std::string message_ = ::vitscale::test::expected_error([&] { (void)(expr); });     \
    INFO("message: " << message_);                                                            \
    for (const char* part_ : {__VA_ARGS__}) CHECK(message_.find(part_) != std::string::npos); \
  } while (0)
