# Compile settings for vitscale's own tests, examples and benchmarks (not imposed on users of the
# INTERFACE target): warnings, optionally code for this machine's CPU, and optionally sanitizers.

# VITSCALE_SANITIZE (CMakeLists.txt): sanitizers for vitscale's own tests and examples, as -fsanitize takes
# them ("address,undefined"; empty: none). Any undefined behaviour fails the program (-fno-sanitize-recover).
# ctest then runs every test with the sanitizer options of tests/sanitizer/ctest_environment.cmake (set up by
# CMakeLists.txt, TEST_INCLUDE_FILES). scripts/quickstart.sh test builds and runs the suite this way once.
set(_vitscale_sanitize_flags "")
if(VITSCALE_SANITIZE)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "VITSCALE_SANITIZE=${VITSCALE_SANITIZE} needs GCC or Clang; the compiler is ${CMAKE_CXX_COMPILER_ID}")
  endif()
  set(_vitscale_sanitize_flags -fsanitize=${VITSCALE_SANITIZE} -fno-omit-frame-pointer)
  if(VITSCALE_SANITIZE MATCHES "undefined")
    list(APPEND _vitscale_sanitize_flags -fno-sanitize-recover=undefined)
  endif()
  # -fPIC, not the default -fPIE, under GCC: GCC 12 with -fsanitize=address, -O2 and -march=znver3 (a
  # VITSCALE_NATIVE_ARCH build on AMD Zen 3) emits some initial-exec accesses of Kokkos' thread-locals
  # (Kokkos::Impl::SharedAllocationRecord<void,void>::t_tracking_enabled, defined in libkokkoscore.a) as
  # "lea sym@gottpoff(%rip),%rdx; vmovq (%rdx),%xmm2" (the thread-pointer offset loaded into an SSE
  # register). GNU ld must rewrite every R_X86_64_GOTTPOFF of an executable to the local-exec form
  # and knows only the mov/add forms, so the link fails ("TLS transition from R_X86_64_GOTTPOFF to
  # R_X86_64_TPOFF32 ... failed"; test_kernels_attention, in Kokkos::Impl::view_copy). Code compiled with
  # -fPIC reaches thread-locals it does not define through the general-dynamic sequence (a call to
  # __tls_get_addr), which GCC always writes in the one fixed form the linker rewrites. Not libdl: Kokkos
  # 3.4's package links /usr/lib/x86_64-linux-gnu/libdl.a, which in glibc >= 2.34 is an empty archive.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    list(APPEND _vitscale_sanitize_flags -fPIC)
  endif()
endif()

function(vitscale_target_defaults target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    # -Werror=switch: a closed enum (block kind, pooling, …) gains a value only together with every switch
    # that handles it; the compiler lists the places.
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Werror=switch)
    if(VITSCALE_WARNINGS_AS_ERRORS)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
    if(VITSCALE_NATIVE_ARCH)
      target_compile_options(${target} PRIVATE -march=native)
    endif()
    # Every SIMD target the compiler can build, not only those at or above -march's baseline: the tests run
    # each one the CPU supports (an AVX-512 machine checks the AVX2, SSE4 and portable code too), and a
    # benchmark can be capped to any of them (VITSCALE_SIMD_TARGET).
    target_compile_definitions(${target} PRIVATE HWY_COMPILE_ALL_ATTAINABLE)
    if(_vitscale_sanitize_flags)
      target_compile_options(${target} PRIVATE ${_vitscale_sanitize_flags})
      target_link_options(${target} PRIVATE ${_vitscale_sanitize_flags})
    endif()
  endif()
endfunction()
