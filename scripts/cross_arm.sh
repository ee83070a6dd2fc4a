#!/usr/bin/env bash
# vitscale on 64-bit Arm: cross-compiles the library's tests for aarch64 on a Debian 12 x86_64 machine and runs
# them under qemu-user.
#
#   scripts/cross_arm.sh [BUILD_DIR [CMAKE_ARGS...]]
#
# BUILD_DIR defaults to build-aarch64 in the repository; CMAKE_ARGS are added to the vitscale configure (after
# the script's own, so they win; e.g. -DVITSCALE_WARNINGS_AS_ERRORS=OFF).
#
# 1. Debian packages (apt-get, only those not installed yet): the cross compiler g++-aarch64-linux-gnu,
#    qemu-user, CMake, Ninja, the header-only dependencies (Architecture: all, so the host's serve the target)
#    and, through Debian multiarch (dpkg --add-architecture arm64), the arm64 build of Google Highway.
# 2. Kokkos 3.4.01 (OpenMP + Serial, C++17) cross-built once, as scripts/setup.sh builds it for the host, from
#    Debian's trilinos source package (packages/kokkos), into
#    ${VITSCALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vitscale}/kokkos-3.4.01-openmp-aarch64. Fetching the
#    source needs the deb-src entries that scripts/setup.sh adds on its first run.
# 3. Configures vitscale with cmake/toolchain-aarch64-linux-gnu.cmake (Release, warnings as errors, no
#    -march=native, no oneDNN, no MPI, no examples), builds the executables of the selected tests only, and
#    runs them with ctest under qemu-aarch64 (the toolchain's CMAKE_CROSSCOMPILING_EMULATOR).
#
# VITSCALE_CROSS_TESTS: the ctest -R expression that selects the tests (default: core, the kernel tests, model,
# model_parts and model_nfnet). Each selected test NAME is built from its executable test_NAME (tests/CMakeLists.txt).
# The rest of the suite is left out to keep the run short (CI time; data and npz would also need zlib1g-dev:arm64,
# the MPI tests an arm64 MPI); a wider expression builds and runs more, e.g. '^(core|config|kernels_.*|model.*)$'.
# Idempotent: a second run finds the packages and Kokkos in place and rebuilds only what changed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;; esac
build=${1:-$repo/build-aarch64}
if [ $# -gt 0 ]; then shift; fi
extra_cmake_args=("$@")
tests_regex=${VITSCALE_CROSS_TESTS:-'^(core|kernels_.*|model|model_parts|model_nfnet)$'}
jobs=$(nproc 2>/dev/null || echo 2)

triple=aarch64-linux-gnu
toolchain="$repo/cmake/toolchain-$triple.cmake"
kokkos_version=3.4.01
cache_dir=${VITSCALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vitscale}
prefix="$cache_dir/kokkos-$kokkos_version-openmp-aarch64"

say() { echo "[vitscale cross-arm] $*" >&2; }
die() { echo "[vitscale cross-arm] error: $*" >&2; exit 1; }
# shellcheck source=scripts/kokkos_source.sh
. "$repo/scripts/kokkos_source.sh"

# Stage timings, printed as each stage ends and again at the end.
timings=()
stage_start=0
run_start=$(date +%s.%N)
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
stage_begin() { stage_name=$1; stage_start=$(date +%s.%N); }
stage_end() {
  local s; s=$(seconds_since "$stage_start")
  timings+=("$(printf '%-26s %7s s' "$stage_name" "$s")")
  say "$stage_name: $s s"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "'$*' needs root and sudo is not installed; run this script as root or install the packages yourself"
  fi
}

command -v dpkg-query >/dev/null 2>&1 \
  || die "this script installs its tools with apt-get and needs Debian 12 (or a derivative)"

# ---------------------------------------------------------------- 1. Debian packages
stage_begin "apt packages"
# Waits for another apt-get or dpkg (e.g. scripts/setup.sh) instead of failing on its lock.
apt_opts=(-o DPkg::Lock::Timeout=600)
apt_updated=0
apt_update() {
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    as_root apt-get "${apt_opts[@]}" update -qq || die "apt-get update failed (is the network to the Debian mirror up?)"
    apt_updated=1
  fi
}

# libhwy-dev:arm64 is a multiarch package: dpkg must accept arm64 packages first, and apt then needs the
# arm64 package lists. Multi-Arch: same also means it must be the very version of the amd64 libhwy-dev.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  say "enabling the arm64 architecture in dpkg (Debian multiarch) for arm64 library packages"
  as_root dpkg --add-architecture arm64 || die "dpkg --add-architecture arm64 failed"
  apt_update
fi

packages=(g++-aarch64-linux-gnu qemu-user cmake ninja-build xz-utils
          libeigen3-dev doctest-dev nlohmann-json3-dev libhwy-dev:arm64)
missing=()
for p in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_update
  apt_log=$(mktemp)
  as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends \
    "${missing[@]}" >"$apt_log" 2>&1 \
    || { tail -n 20 "$apt_log" >&2; rm -f "$apt_log"; die "apt-get install ${missing[*]} failed (its last lines above)"; }
  rm -f "$apt_log"
else
  say "Debian packages: all present"
fi
stage_end

# ---------------------------------------------------------------- 2. Kokkos for aarch64
stage_begin "Kokkos cross build"
kokkos_config() { ls "$prefix"/lib*/cmake/Kokkos/KokkosConfig.cmake 2>/dev/null | head -n 1; }
if [ -f "$prefix/.complete" ] && [ -n "$(kokkos_config)" ]; then
  say "Kokkos $kokkos_version (OpenMP, aarch64) already built in $prefix"
else
  mkdir -p "$cache_dir" || die "cannot create the cache folder $cache_dir (set VITSCALE_CACHE_DIR)"
  work=$(mktemp -d "$cache_dir/kokkos-aarch64-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT

  # (No `grep -q` after a pipe: under pipefail, grep quitting early kills the writer with SIGPIPE.)
  have_trilinos_source() { apt-cache showsrc trilinos 2>/dev/null | grep '^Package: trilinos$' >/dev/null; }
  have_trilinos_source || { apt_update; have_trilinos_source; } \
    || die "apt knows no source package 'trilinos': run scripts/setup.sh once (it adds the deb-src entries), then this script again"

  unpack_kokkos_source "$work"
  src=$kokkos_src

  say "cross-building Kokkos $kokkos_version (OpenMP + Serial, C++17, aarch64) into $prefix"
  rm -rf "$prefix"
  # The same options as scripts/setup.sh's host build; no Kokkos_ARCH_*: generic armv8-a code, as for vitscale.
  { cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
      "${kokkos_cmake_options[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" \
    && cmake --build "$work/build" --parallel "$jobs" \
    && cmake --install "$work/build"; } >"$work/build.log" 2>&1 \
    || { cp "$work/build.log" "$cache_dir/kokkos-aarch64-build.log"; \
         die "cross-building Kokkos failed; the log is in $cache_dir/kokkos-aarch64-build.log"; }
  [ -n "$(kokkos_config)" ] || die "Kokkos was installed in $prefix but has no KokkosConfig.cmake there"
  touch "$prefix/.complete"
  rm -rf "$work"; trap - EXIT
fi
kokkos_dir=$(dirname "$(kokkos_config)")
stage_end

# ---------------------------------------------------------------- 3. vitscale: configure, build, test
stage_begin "vitscale configure"
mkdir -p "$build"
build=$(cd "$build" && pwd)
say "configuring vitscale for aarch64 in $build"
# Kokkos_DIR is given explicitly so that a host Kokkos named in the environment (Kokkos_DIR, Kokkos_ROOT,
# CMAKE_PREFIX_PATH, for the native build) is never picked up for the target.
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DKokkos_DIR="$kokkos_dir" \
  -DCMAKE_BUILD_TYPE=Release -DVITSCALE_WARNINGS_AS_ERRORS=ON -DVITSCALE_NATIVE_ARCH=OFF \
  -DVITSCALE_ENABLE_ONEDNN=OFF -DVITSCALE_ENABLE_MPI=OFF -DVITSCALE_BUILD_EXAMPLES=OFF -DVITSCALE_BUILD_TESTS=ON \
  "${extra_cmake_args[@]}" >"$build/configure.log" 2>&1 \
  || { cat "$build/configure.log" >&2; die "configuring failed (log above, also in $build/configure.log)"; }
grep -E '^-- vitscale:' "$build/configure.log" | sed 's/^-- /[vitscale cross-arm]   /' >&2 || true
grep -q '^VITSCALE_QEMU_AARCH64:FILEPATH=/' "$build/CMakeCache.txt" \
  || die "the configure found no qemu-aarch64 to run the tests with (Debian: apt-get install qemu-user)"

# The tests to run, and from them the executables to build: test NAME is executable test_NAME.
tests=$(cd "$build" && ctest -N -R "$tests_regex") || die "ctest -N failed in $build"
tests=$(sed -n 's/^ *Test *#[0-9]*: *//p' <<<"$tests")
[ -n "$tests" ] || die "no registered test matches '$tests_regex' (ctest -N in $build lists them)"
targets=()
for t in $tests; do targets+=("test_$t"); done
stage_end

stage_begin "vitscale cross compile"
say "building ${targets[*]}"
cmake --build "$build" --parallel "$jobs" --target "${targets[@]}" \
  || die "the aarch64 build failed (compiler output above)"
stage_end

stage_begin "tests under qemu-aarch64"
say "running $(tr '\n' ' ' <<<"$tests")under qemu-aarch64"
# OMP_NUM_THREADS=2: what each test's ENVIRONMENT property sets anyway (with passive waiting, which is what lets
# ctest run them side by side on 2 cores). The timeout is ~10x the slowest test (core, ~50 s under qemu): a
# program that hangs under qemu (see the toolchain file on mixing glibc builds) fails instead of stalling CI.
(cd "$build" && OMP_NUM_THREADS=2 ctest --output-on-failure --parallel "$jobs" --timeout 600 -R "$tests_regex") \
  || die "tests failed under qemu-aarch64 (output above)"
stage_end

say "all selected tests passed on aarch64 (qemu). Times:"
for t in "${timings[@]}"; do say "  $t"; done
say "  $(printf '%-26s %7s s' total "$(seconds_since "$run_start")")"
