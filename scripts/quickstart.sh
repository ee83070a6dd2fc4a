#!/usr/bin/env bash
# The README's two commands:
#   scripts/quickstart.sh example [ARGS...]   set up, build, run the main example (ARGS go to it)
#   scripts/quickstart.sh test                set up, build, run the whole test suite, then the file
#                                             readers' fuzzers (scripts/fuzz.sh; VITSCALE_FUZZ_SECONDS each,
#                                             default 60; 0 runs only their committed seeds and crashers)
# The build goes to $VITSCALE_BUILD_DIR (default: build/ in the repository).
set -euo pipefail

usage() { echo "usage: scripts/quickstart.sh example [ARGS...] | test" >&2; exit 2; }
[ $# -ge 1 ] || usage
mode=$1; shift
case "$mode" in example|test) ;; *) usage ;; esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${VITSCALE_BUILD_DIR:-$repo/build}
jobs=$(nproc 2>/dev/null || echo 2)

setup_args=(--cache-file "$build/vitscale-deps.cmake")
[ "$mode" = test ] && setup_args+=(--fuzz-tools)
"$repo/scripts/setup.sh" "${setup_args[@]}"

echo "[vitscale] configuring and building in $build" >&2
cmake -S "$repo" -B "$build" -G Ninja -C "$build/vitscale-deps.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DVITSCALE_WARNINGS_AS_ERRORS=ON -DVITSCALE_NATIVE_ARCH=ON >"$build/configure.log" 2>&1 \
  || { cat "$build/configure.log" >&2; echo "[vitscale] configuring failed (log above)" >&2; exit 1; }
cmake --build "$build" --parallel "$jobs"

case "$mode" in
  example) exec "$build/examples/train" "$@" ;;
  test)
    (cd "$build" && ctest --output-on-failure --parallel "$jobs")
    exec "$repo/scripts/fuzz.sh" "$build/fuzz" "${VITSCALE_FUZZ_SECONDS:-60}" ;;
esac
