# Included by ctest (the TEST_INCLUDE_FILES of a VITSCALE_SANITIZE build, see CMakeLists.txt) before it
# runs any test: every test of the build tree, however it was registered, inherits these options.
#   ASan:  stop at the first error (halt_on_error, also the default) and check leaks at exit. LeakSanitizer
#          stays on: the whole suite, OpenMP, Kokkos and oneDNN included, ran leak-free under it (GCC 12), so
#          no suppressions are needed; add them to a file here if a library's singleton ever needs one.
#          allocator_may_return_null: an allocation that cannot be served returns null, as malloc does without
#          ASan, so that the tests of what the library does then (tests/core/error.cpp) test that, not ASan.
#   UBSan: the programs are built with -fno-sanitize-recover=undefined, so any report ends the program with
#          an error status; print_stacktrace names the caller.
# Options already in the environment come after these, so they win (the sanitizers read left to right).
foreach(_vitscale_pair
        "ASAN_OPTIONS|halt_on_error=1:detect_leaks=1:check_initialization_order=1:allocator_may_return_null=1"
        "UBSAN_OPTIONS|halt_on_error=1:print_stacktrace=1")
  string(REPLACE "|" ";" _vitscale_pair "${_vitscale_pair}")
  list(GET _vitscale_pair 0 _vitscale_name)
  list(GET _vitscale_pair 1 _vitscale_value)
  if(DEFINED ENV{${_vitscale_name}} AND NOT "$ENV{${_vitscale_name}}" STREQUAL "")
    set(_vitscale_value "${_vitscale_value}:$ENV{${_vitscale_name}}")
  endif()
  set(ENV{${_vitscale_name}} "${_vitscale_value}")
endforeach()
