# The dependencies of the vitscale target, found the same way here and in the installed package
# (cmake/vitscaleConfig.cmake.in repeats these finds with find_dependency).
include(GNUInstallDirs)

# Kokkos 3.4.01 (Debian's trilinos source, built by scripts/setup.sh) or any 4.x. No version in
# find_package: Kokkos' version file only accepts the same major version, and both majors are supported.
find_package(Kokkos REQUIRED)
if(Kokkos_VERSION VERSION_LESS 3.4.1)
  message(FATAL_ERROR "vitscale needs Kokkos 3.4.01 or newer; found ${Kokkos_VERSION} at ${Kokkos_DIR}")
endif()
message(STATUS "vitscale: Kokkos ${Kokkos_VERSION} (${Kokkos_DEVICES}) from ${Kokkos_DIR}")

find_package(Eigen3 3.4 REQUIRED NO_MODULE)
# safetensors headers (io/) are parsed with nlohmann-json.
find_package(nlohmann_json 3 REQUIRED)

set(VITSCALE_HAVE_ONEDNN OFF)
if(NOT VITSCALE_ENABLE_ONEDNN STREQUAL "OFF")
  include(vitscale_find_onednn)
  if(VITSCALE_ONEDNN_FOUND)
    set(VITSCALE_HAVE_ONEDNN ON)
    message(STATUS "vitscale: oneDNN ${VITSCALE_ONEDNN_VERSION} for host GEMM (${VITSCALE_ONEDNN_LIBRARY})")
  elseif(VITSCALE_ENABLE_ONEDNN STREQUAL "ON")
    message(FATAL_ERROR "VITSCALE_ENABLE_ONEDNN=ON but oneDNN >= 2.0 was not found; "
                        "install libdnnl-dev or set dnnl_ROOT")
  else()
    message(STATUS "vitscale: oneDNN not found; host GEMM will use Eigen")
  endif()
endif()
