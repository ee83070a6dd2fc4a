#!/usr/bin/env bash
# vitscale set-up: installs what is missing on a Debian 12 machine and provides a Kokkos with OpenMP.
#
#   scripts/setup.sh [--cache-file FILE] [--fuzz-tools]
#
# 1. Debian packages (apt-get, only those not installed yet): compiler and CMake, Eigen 3.4, doctest, Highway,
#    oneDNN, nlohmann-json, CLI11, stb, zlib (the IDX reader's gzip), OpenMPI (the MPI communicator and
#    its tests), and the Fashion-MNIST data set
#    (dataset-fashion-mnist: /usr/share/datasets/fashion-mnist, which the data tests and examples read).
# 2. Kokkos. A Kokkos the user points at is used as it is, whatever its backends (CUDA, HIP, ...):
#    Kokkos_DIR or Kokkos_ROOT in the environment, or a Kokkos found under CMAKE_PREFIX_PATH. Otherwise
#    Kokkos 3.4.01 with the OpenMP and Serial backends is built from Debian's own trilinos source package
#    (only packages/kokkos) into a cache folder, once: $VITSCALE_CACHE_DIR, by default
#    ${XDG_CACHE_HOME:-$HOME/.cache}/vitscale. Debian's binary Kokkos is Serial-only, so it is not used.
# 3. Writes a CMake initial-cache file (default: build/vitscale-deps.cmake in the repository) that points
#    CMake at that Kokkos:   cmake -S . -B build -C build/vitscale-deps.cmake
#
# --fuzz-tools also installs Clang and its libFuzzer and OpenMP runtimes (clang libclang-rt-14-dev
# libomp-14-dev), which the readers' fuzz targets need (scripts/fuzz.sh; the test command runs them).
#
# Idempotent: a second run checks, finds everything in place and takes a few seconds.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_file="$repo/build/vitscale-deps.cmake"
fuzz_tools=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-file) cache_file="$2"; shift 2 ;;
    --fuzz-tools) fuzz_tools=1; shift ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

say() { echo "[vitscale setup] $*" >&2; }
die() { echo "[vitscale setup] error: $*" >&2; exit 1; }
# shellcheck source=scripts/kokkos_source.sh
. "$repo/scripts/kokkos_source.sh"

kokkos_version=3.4.01
cache_dir=${VITSCALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vitscale}

# ---------------------------------------------------------------- privileges for apt-get
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "'$*' needs root and sudo is not installed; run this script as root or install the packages yourself"
  fi
}

# ---------------------------------------------------------------- 1. Debian packages
packages=(g++ cmake make ninja-build xz-utils
          libeigen3-dev doctest-dev libdnnl-dev libhwy-dev nlohmann-json3-dev libcli11-dev libstb-dev zlib1g-dev
          libopenmpi-dev openmpi-bin dataset-fashion-mnist)
[ "$fuzz_tools" -eq 0 ] || packages+=(clang libclang-rt-14-dev libomp-14-dev)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  # The machine's own architecture first: where arm64 is enabled too (scripts/cross_arm.sh), a multiarch
  # package such as libhwy-dev answers once per architecture; Architecture: all packages answer to no
  # architecture qualifier, only to their plain name.
  arch=$(dpkg --print-architecture)
  installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1:$arch" 2>/dev/null) || status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || true
    [ "$status" = "install ok installed" ]
  }
  for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
  done
else
  die "this script installs its dependencies with apt-get and needs Debian 12 (or a derivative); on other systems install Kokkos (OpenMP), Eigen 3.4, doctest, oneDNN, nlohmann-json, CLI11, stb, zlib and an MPI yourself (and Fashion-MNIST's four IDX files in /usr/share/datasets/fashion-mnist) and configure with -DKokkos_ROOT=..."
fi

apt_updated=0
apt_update() {
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"
    as_root apt-get update -qq || die "apt-get update failed (is the network to the Debian mirror up?)"
    apt_updated=1
  fi
}

if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"
else
  say "Debian packages: all present"
fi

# ---------------------------------------------------------------- 2. Kokkos
# (No `grep -q` after a pipe here: under pipefail, grep quitting early kills the writer with SIGPIPE.)
have_trilinos_source() { apt-cache showsrc trilinos 2>/dev/null | grep '^Package: trilinos$' >/dev/null; }

# Asks CMake itself where Kokkos is and what it was built with; prints "dir;version;devices" or nothing.
# It configures with the compiler the build will use ($CXX, e.g. nvcc_wrapper for a CUDA Kokkos).
probe_kokkos() {  # $1: extra -D arguments for the probe project (may be empty)
  local probe; probe=$(mktemp -d)
  cat > "$probe/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(vitscale_kokkos_probe LANGUAGES CXX)  # Kokkos 4 looks for OpenMP, which needs a language
find_package(Kokkos QUIET)
if(Kokkos_FOUND)
  file(WRITE "${CMAKE_BINARY_DIR}/result" "${Kokkos_DIR};${Kokkos_VERSION};${Kokkos_DEVICES}")
endif()
CMAKE
  # shellcheck disable=SC2086
  if cmake -S "$probe" -B "$probe/b" $1 >/dev/null 2>&1 && [ -f "$probe/b/result" ]; then cat "$probe/b/result"; fi
  rm -rf "$probe"
}

user_kokkos=""
if [ -n "${Kokkos_DIR:-}" ] || [ -n "${Kokkos_ROOT:-}" ] || [ -n "${CMAKE_PREFIX_PATH:-}" ]; then
  user_kokkos=$(probe_kokkos "")
  [ -n "$user_kokkos" ] || [ -z "${Kokkos_DIR:-}${Kokkos_ROOT:-}" ] \
    || die "Kokkos_DIR/Kokkos_ROOT is set (${Kokkos_DIR:-}${Kokkos_ROOT:-}) but CMake finds no Kokkos there"
fi

if [ -n "$user_kokkos" ]; then
  IFS=';' read -r kokkos_dir found_version devices <<<"$user_kokkos"
  say "using your Kokkos $found_version at $kokkos_dir (backends: $devices)"
  case ";$devices;" in
    *";OPENMP;"*) ;;
    *) say "note: this Kokkos has no OpenMP backend; host code and tests run on the host spaces it has" ;;
  esac
else
  prefix="$cache_dir/kokkos-$kokkos_version-openmp"
  if [ -f "$prefix/.complete" ] && [ -n "$(probe_kokkos "-DCMAKE_PREFIX_PATH=$prefix")" ]; then
    say "Kokkos $kokkos_version (OpenMP) already built in $prefix"
  else
    mkdir -p "$cache_dir" || die "cannot create the cache folder $cache_dir (set VITSCALE_CACHE_DIR)"
    work=$(mktemp -d "$cache_dir/kokkos-build.XXXXXX")
    trap 'rm -rf "$work"' EXIT

    # Debian's source package needs deb-src entries for the Debian archive the machine already uses:
    # each one is a copy of the machine's own entry (so its Signed-By and options agree) as deb-src.
    if ! have_trilinos_source; then
      # "file:N" for each source entry of Debian's binary packages (N: stanza in deb822, line otherwise)
      debian_entries() { apt-get indextargets --format '$(SOURCESENTRY)' 'Created-By: Packages' 'Origin: Debian' \
                           2>/dev/null | sort -u; }
      entries=$(debian_entries)
      [ -n "$entries" ] || { apt_update; entries=$(debian_entries); }
      [ -n "$entries" ] || die "no Debian archive found in the apt sources; cannot fetch the trilinos source package"
      deb822=""; oneline=""
      while IFS= read -r entry; do
        file=${entry%:*}; line=${entry##*:}
        case "$file" in
          # in a deb822 file the number is the stanza's, in a one-line file the line's
          *.sources) deb822+=$(awk -v n="$line" 'BEGIN { RS = "" } NR == n { print; exit }' "$file" \
                                 | sed 's/^Types:.*/Types: deb-src/')$'\n\n' ;;
          *) oneline+=$(sed -n "${line}p" "$file" | sed 's/^[[:space:]]*deb[[:space:]]/deb-src /')$'\n' ;;
        esac
      done <<<"$entries"
      header="# added by vitscale's scripts/setup.sh to fetch the trilinos source package (for Kokkos)"
      if [ -n "$deb822" ]; then
        say "adding deb-src entries for the Debian archive in use (/etc/apt/sources.list.d/vitscale-deb-src.sources)"
        printf '%s\n%s' "$header" "$deb822" | as_root tee /etc/apt/sources.list.d/vitscale-deb-src.sources >/dev/null
      fi
      if [ -n "$oneline" ]; then
        say "adding deb-src entries for the Debian archive in use (/etc/apt/sources.list.d/vitscale-deb-src.list)"
        printf '%s\n%s' "$header" "$oneline" | as_root tee /etc/apt/sources.list.d/vitscale-deb-src.list >/dev/null
      fi
      apt_updated=0; apt_update
      have_trilinos_source \
        || die "apt knows no source package 'trilinos' even after adding deb-src entries"
    fi

    unpack_kokkos_source "$work"
    src=$kokkos_src

    say "building Kokkos $kokkos_version (OpenMP + Serial, C++17) into $prefix"
    generator=(); command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
    rm -rf "$prefix"
    { cmake -S "$src" -B "$work/build" "${generator[@]}" \
        "${kokkos_cmake_options[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" \
      && cmake --build "$work/build" --parallel "$(nproc)" \
      && cmake --install "$work/build"; } >"$work/build.log" 2>&1 \
      || { cp "$work/build.log" "$cache_dir/kokkos-build.log"; \
           die "building Kokkos failed; the log is in $cache_dir/kokkos-build.log"; }
    touch "$prefix/.complete"
  fi
  IFS=';' read -r kokkos_dir found_version devices <<<"$(probe_kokkos "-DCMAKE_PREFIX_PATH=$prefix")"
  [ -n "${kokkos_dir:-}" ] || die "Kokkos was installed in $prefix but CMake cannot find it there"
  say "Kokkos $found_version at $kokkos_dir (backends: $devices)"
fi

# ---------------------------------------------------------------- 3. the CMake initial cache
mkdir -p "$(dirname "$cache_file")"
cat > "$cache_file" <<EOF
# written by scripts/setup.sh: cmake -S . -B build -C $cache_file
set(Kokkos_DIR "$kokkos_dir" CACHE PATH "Kokkos' CMake package (chosen by scripts/setup.sh)" FORCE)
EOF
say "CMake initial cache: $cache_file"
