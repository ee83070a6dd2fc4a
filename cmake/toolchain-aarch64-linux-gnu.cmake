# CMake toolchain file: cross-compile for 64-bit Arm Linux (aarch64) on a Debian x86_64 host with Debian's cross
# compiler (g++-aarch64-linux-gnu), and run the target's programs (ctest, try_run) under qemu-user.
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake ...
#
# scripts/cross_arm.sh installs what this needs, builds an aarch64 Kokkos and uses this file.
#
# Libraries for the target come from two places on Debian: the cross toolchain's own tree
# (/usr/aarch64-linux-gnu: glibc, libstdc++, libgomp from the *-arm64-cross packages) and multiarch packages
# installed with dpkg --add-architecture arm64 (e.g. libhwy-dev:arm64 in /usr/lib/aarch64-linux-gnu).
# Header-only, Architecture: all packages (Eigen, doctest, nlohmann-json) serve every architecture as they are.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(_vitscale_triple aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${_vitscale_triple}-gcc)
set(CMAKE_CXX_COMPILER ${_vitscale_triple}-g++)
# Selects lib/aarch64-linux-gnu (the multiarch folder) in every find_library and find_package search, so that
# the host's lib/x86_64-linux-gnu is never searched. CMake also derives it from the compiler; set here so it
# holds from the first find on.
set(CMAKE_LIBRARY_ARCHITECTURE ${_vitscale_triple})

# The cross toolchain's tree is searched first, then the host's prefixes (multiarch packages live there);
# programs (qemu, tools run during the build) are always the host's.
set(CMAKE_FIND_ROOT_PATH /usr/${_vitscale_triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# Target programs run through qemu-user (Debian: qemu-user). -L: the prefix where qemu finds the aarch64
# dynamic loader (the cross toolchain's glibc). -E LD_LIBRARY_PATH (set for the target program, not for qemu):
# glibc, libstdc++ and libgomp must come from that same tree too. Without it the loader goes by the host's
# /etc/ld.so.cache, which lists the multiarch /lib/aarch64-linux-gnu once libc6:arm64 is installed (a
# dependency of libhwy-dev:arm64), and loads that libc.so.6, a different glibc build than the cross ld.so
# (2.36-9+deb12u* against 2.36-8cross1): a program that starts a second thread (OpenMP) then hangs at once.
# Libraries found only in multiarch folders (libhwy.so.1) are still loaded from there.
if(NOT VITSCALE_QEMU_AARCH64)
  find_program(VITSCALE_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
endif()
if(VITSCALE_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR
      "${VITSCALE_QEMU_AARCH64};-L;/usr/${_vitscale_triple};-E;LD_LIBRARY_PATH=/usr/${_vitscale_triple}/lib")
endif()
