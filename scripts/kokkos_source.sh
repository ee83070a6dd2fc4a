# Sourced by scripts/setup.sh and scripts/cross_arm.sh, which define say, die and kokkos_version: Kokkos from
# Debian's own trilinos source package (packages/kokkos; Debian's binary Kokkos is Serial-only), and the
# options both scripts build it with.

# Downloads the trilinos source package into the folder $1, unpacks its packages/kokkos there, checks that it
# is Kokkos $kokkos_version and sets kokkos_src to that folder. Needs deb-src entries (setup.sh adds them).
unpack_kokkos_source() {
  local work=$1 tarball version_found
  say "downloading Debian's trilinos source package (Kokkos $kokkos_version is packages/kokkos)"
  (cd "$work" && apt-get source --download-only -qq trilinos >/dev/null 2>"$work/apt-source.log") \
    || die "apt-get source --download-only trilinos failed: $(tail -n 3 "$work/apt-source.log")"
  tarball=$(ls "$work"/trilinos_*.orig.tar.* 2>/dev/null | head -n 1)
  [ -n "$tarball" ] || die "the trilinos source package holds no .orig tarball"
  say "unpacking packages/kokkos from $(basename "$tarball")"
  tar -xf "$tarball" -C "$work" --wildcards '*/packages/kokkos/*' \
    || die "cannot unpack packages/kokkos from $tarball"
  kokkos_src=$(ls -d "$work"/*/packages/kokkos | head -n 1)
  version_found=$(sed -n 's/.*set(Kokkos_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)).*/\2/p' \
                    "$kokkos_src/CMakeLists.txt" | head -n 3 | paste -sd. -)
  case "$version_found" in
    3.4.1|3.4.01) ;;
    *) die "the trilinos source package carries Kokkos '$version_found', not $kokkos_version" ;;
  esac
}

# The configuration of every Kokkos these scripts build: OpenMP + Serial, C++17, position-independent.
# shellcheck disable=SC2034  # used by the scripts that source this file
kokkos_cmake_options=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_EXTENSIONS=OFF
                      -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DKokkos_ENABLE_OPENMP=ON -DKokkos_ENABLE_SERIAL=ON
                      -DKokkos_ENABLE_TESTS=OFF)
