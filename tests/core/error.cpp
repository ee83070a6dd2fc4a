// vitscale::error: the library's one exception type, with a message a person can act on.
#include <doctest/doctest.h>
#include <vitscale/core/arena.hpp>
#include <vitscale/core/error.hpp>

#include <cstddef>
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

// An allocation the memory cannot hold is an error that says what was asked for, not Kokkos' abort, and
// leaves the arena empty and usable. (Under AddressSanitizer the test build lets malloc fail as it does
// without it: allocator_may_return_null, tests/sanitizer/ctest_environment.cmake.)
TEST_CASE("an arena that cannot be allocated says how much, and stays usable") {
  vitscale::arena<Kokkos::HostSpace> memory("vitscale::test_arena");
  const std::size_t huge = std::size_t(1) << 62;
  float* small = nullptr;
  try {
    memory.build([&](vitscale::arena_cursor& a) { a.take<unsigned char>(huge); });
    FAIL("an allocation of 4 EiB succeeded");
  } catch (const vitscale::error& e) {
    const std::string m = e.what();
    INFO(m);
    CHECK(m.find("vitscale::test_arena: cannot allocate 4294967296.0 GiB in Host memory") != std::string::npos);
  }
  CHECK(memory.capacity() == 0);
  memory.build([&](vitscale::arena_cursor& a) { small = a.take<float>(16); });
  CHECK(small != nullptr);
  CHECK(memory.capacity() >= 16 * sizeof(float));
}
