#!/usr/bin/env bash
# The README's two commands:
#   scripts/quickstart.sh example [ARGS...]   set up, build, run the main example (ARGS go to it)
#   scripts/quickstart.sh test                set up, build, run the whole test suite, then the kernel and
#                                             model tests cross-compiled for aarch64 under qemu
#                                             (scripts/cross_arm.sh; VITSCALE_CROSS_ARM=0 skips it), then the file
#                                             readers' fuzzers (scripts/fuzz.sh; VITSCALE_FUZZ_SECONDS each,
#                                             default 60; 0 runs only their committed seeds and crashers),
#                                             then the whole test suite once more, built with
#                                             AddressSanitizer + UndefinedBehaviorSanitizer
# The build goes to $VITSCALE_BUILD_DIR (default: build/ in the repository), the sanitized one next to it
# ($VITSCALE_BUILD_DIR-sanitize).
set -euo pipefail

usage() { echo "usage: scripts/quickstart.sh example [ARGS...] | test" >&2; exit 2; }
[ $# -ge 1 ] || usage
mode=$1; shift
case "$mode" in example|test) ;; *) usage ;; esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${VITSCALE_BUILD_DIR:-$repo/build}
build=${build%/}
jobs=$(nproc 2>/dev/null || echo 2)

setup_args=(--cache-file "$build/vitscale-deps.cmake")
[ "$mode" = test ] && setup_args+=(--fuzz-tools)
"$repo/scripts/setup.sh" "${setup_args[@]}"

echo "[vitscale] configuring and building in $build" >&2
cmake -S "$repo" -B "$build" -G Ninja -C "$build/vitscale-deps.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DVITSCALE_WARNINGS_AS_ERRORS=ON -DVITSCALE_NATIVE_ARCH=ON >"$build/configure.log" 2>&1 \
  || { cat "$build/configure.log" >&2; echo "[vitscale] configuring failed (log above)" >&2; exit 1; }
cmake --build "$build" --parallel "$jobs"

# The whole suite again, built with AddressSanitizer (LeakSanitizer included) and UBSan; any report fails its
# test (VITSCALE_SANITIZE; the options every test runs with are in tests/sanitizer/ctest_environment.cmake).
# Last, because it is the longest stage: the quicker ones report first. -O1 -g1: GCC 12 compiles the
# heaviest test files under ASan far faster than at -O2 (tests/model/vit_timm.cpp: 116 s at -O1 -g1, while
# -O2 -g builds took many times that); -O1 keeps every check and the line numbers in the reports.
# Same -march as the Release build, so the same kernels (the AVX-512 paths included) are checked. Warnings
# are the Release build's job (-Werror there): instrumentation and -O1 change which flow-sensitive warnings
# GCC gives, and one seen only here should not stop the run before any test. Examples are not built (their
# library code is the tests' code; examples/train's smoke runs stay in the Release run).
# Left out of this run, each for a reason: compile_fail.* and package.* only compile code (the compiler's
# diagnostics, the installed package), which the Release run has checked; the fuzz targets are sanitized
# libFuzzer programs already (scripts/fuzz.sh) and are not part of this build.
sanitize_tests() {
  local dir=$build-sanitize
  echo "[vitscale] building and running the test suite under AddressSanitizer + UBSan in $dir" >&2
  cmake -S "$repo" -B "$dir" -G Ninja -C "$build/vitscale-deps.cmake" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DVITSCALE_SANITIZE=address,undefined -DVITSCALE_NATIVE_ARCH=ON -DVITSCALE_WARNINGS_AS_ERRORS=OFF \
    -DVITSCALE_BUILD_EXAMPLES=OFF >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log" >&2; echo "[vitscale] configuring the sanitized build failed (log above)" >&2; exit 1; }
  cmake --build "$dir" --parallel "$jobs"
  (cd "$dir" && ctest --output-on-failure --parallel "$jobs" -E '^(compile_fail|package)\.')
}

case "$mode" in
  # Idle OpenMP threads sleep rather than spin unless the caller chose otherwise: libgomp reads this before
  # main, so it is set here (README: the examples' start-up; train ran 4x slower spinning on a busy machine).
  example) OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" exec "$build/examples/train" "$@" ;;
  test)
    (cd "$build" && ctest --output-on-failure --parallel "$jobs")
    # The same library on 64-bit Arm (NEON and the portable SIMD target), cross-built and run under qemu.
    [ "${VITSCALE_CROSS_ARM:-1}" = 0 ] || "$repo/scripts/cross_arm.sh" "$build-aarch64"
    "$repo/scripts/fuzz.sh" "$build/fuzz" "${VITSCALE_FUZZ_SECONDS:-60}"
    sanitize_tests ;;
esac
