#!/usr/bin/env bash
# Builds the libFuzzer targets of vitscale's file readers (tests/fuzz/: safetensors, npz, idx, image, checkpoint,
# infer_shape, big_vision; each timed run takes SECONDS) with Clang and runs them:
#   scripts/fuzz.sh [BUILD_DIR] [SECONDS]     regression runs, then each fuzzer for SECONDS (default 60)
#   scripts/fuzz.sh BUILD_DIR 0               regression runs only (the committed seeds and crashers)
# BUILD_DIR defaults to $VITSCALE_FUZZ_BUILD_DIR or /tmp/vitscale-build-fuzz. Dependencies are read from
# ${VITSCALE_BUILD_DIR:-build}/vitscale-deps.cmake (written by scripts/setup.sh), which must exist. Needs clang++ and the libFuzzer
# runtime (Debian 12: clang libclang-rt-14-dev libomp-14-dev) and zlib1g-dev. Crashers land in
# BUILD_DIR/tests/fuzz/artifacts/<reader>/; commit them, minimised, under tests/fuzz/regressions/<reader>/.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-${VITSCALE_FUZZ_BUILD_DIR:-/tmp/vitscale-build-fuzz}}
seconds=${2:-60}
jobs=${VITSCALE_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
cxx=${CXX:-clang++}
case "$seconds" in ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [BUILD_DIR] [SECONDS]" >&2; exit 2 ;; esac

deps=${VITSCALE_BUILD_DIR:-$repo/build}/vitscale-deps.cmake
[ -f "$deps" ] || { echo "[vitscale] $deps is missing: run scripts/setup.sh first" >&2; exit 1; }
command -v "$cxx" >/dev/null || { echo "[vitscale] $cxx not found (Debian: apt-get install clang libclang-rt-14-dev libomp-14-dev)" >&2; exit 1; }

echo "[vitscale] configuring the fuzz targets in $build with $cxx" >&2
CXX=$cxx cmake -S "$repo" -B "$build" -G Ninja -C "$deps" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVITSCALE_BUILD_FUZZERS=ON -DVITSCALE_BUILD_TESTS=OFF -DVITSCALE_BUILD_EXAMPLES=OFF \
  "-DVITSCALE_FUZZ_SECONDS=$((seconds > 0 ? seconds : 60))" >/dev/null
cmake --build "$build" --parallel "$jobs" --target vitscale_fuzzers  # every target of tests/fuzz/CMakeLists.txt

cd "$build/tests/fuzz"
ctest --output-on-failure -L '^fuzz-regression$'
if [ "$seconds" -gt 0 ]; then
  # One fuzzer at a time: each uses one core for the whole time.
  ctest --output-on-failure -L '^fuzz$'
fi
