#pragma once
// vitscale::error — the one exception type of the library.
//
// Every run-time failure a user can act on (a bad resolution, a mismatched View, an unreadable file, a
// NaN loss) is thrown as vitscale::error with a sentence that says what was expected and what was found.
// Library code never aborts; compile-time mistakes are static_asserts instead.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace vitscale {

class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error("vitscale: " + what) {}
};

namespace detail {

// Builds the message from streamable parts, so call sites read as a sentence:
//   fail("resolution ", r, " is not a multiple of the patch size ", p)
template <class... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  std::ostringstream message;
  (message << ... << std::forward<Parts>(parts));
  throw error(message.str());
}

}  // namespace detail
}  // namespace vitscale
