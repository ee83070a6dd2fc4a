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

# Google Highway: the hand-vectorised host kernels, compiled for every SIMD target and dispatched at run time
# (core/simd.hpp). AUTO uses it where found; without it those kernels run their portable loops.
set(VITSCALE_HAVE_HWY OFF)
if(NOT VITSCALE_ENABLE_HIGHWAY STREQUAL "OFF")
  find_package(hwy 1.0 QUIET CONFIG)
  if(TARGET hwy::hwy)
    set(VITSCALE_HAVE_HWY ON)
    message(STATUS "vitscale: Highway ${hwy_VERSION} for the host SIMD kernels (run-time dispatch)")
  elseif(VITSCALE_ENABLE_HIGHWAY STREQUAL "ON")
    message(FATAL_ERROR "VITSCALE_ENABLE_HIGHWAY=ON but Highway >= 1.0 was not found; install libhwy-dev or set hwy_DIR")
  else()
    message(STATUS "vitscale: Highway not found; the host SIMD kernels will run their portable loops")
  endif()
endif()

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

# Vendor BLAS of the GPU spaces (kernels/detail/gemm_cublas.hpp, gemm_rocblas.hpp). AUTO turns each on where
# Kokkos has the matching backend and the library is found; ON makes a missing one a configure error.
set(VITSCALE_HAVE_CUBLAS OFF)
if(NOT VITSCALE_ENABLE_CUBLAS STREQUAL "OFF")
  if(Kokkos_ENABLE_CUDA OR "CUDA" IN_LIST Kokkos_DEVICES)
    find_package(CUDAToolkit QUIET)
    if(TARGET CUDA::cublas)
      set(VITSCALE_HAVE_CUBLAS ON)
      message(STATUS "vitscale: cuBLAS (CUDA ${CUDAToolkit_VERSION}) for GEMM on Kokkos::Cuda")
    elseif(VITSCALE_ENABLE_CUBLAS STREQUAL "ON")
      message(FATAL_ERROR "VITSCALE_ENABLE_CUBLAS=ON but cuBLAS was not found (find_package(CUDAToolkit) gave "
                          "no CUDA::cublas); install the CUDA toolkit's cuBLAS or set CUDAToolkit_ROOT")
    else()
      message(STATUS "vitscale: cuBLAS not found; GEMM on Kokkos::Cuda will use the portable kernel")
    endif()
  elseif(VITSCALE_ENABLE_CUBLAS STREQUAL "ON")
    message(FATAL_ERROR "VITSCALE_ENABLE_CUBLAS=ON but the Kokkos at ${Kokkos_DIR} has no CUDA backend "
                        "(Kokkos_DEVICES: ${Kokkos_DEVICES}); use a Kokkos built with Kokkos_ENABLE_CUDA=ON")
  endif()
endif()
set(VITSCALE_HAVE_ROCBLAS OFF)
if(NOT VITSCALE_ENABLE_ROCBLAS STREQUAL "OFF")
  if(Kokkos_ENABLE_HIP OR "HIP" IN_LIST Kokkos_DEVICES)
    find_package(rocblas QUIET CONFIG)
    if(TARGET roc::rocblas)
      set(VITSCALE_HAVE_ROCBLAS ON)
      message(STATUS "vitscale: rocBLAS ${rocblas_VERSION} for GEMM on Kokkos' HIP space")
    elseif(VITSCALE_ENABLE_ROCBLAS STREQUAL "ON")
      message(FATAL_ERROR "VITSCALE_ENABLE_ROCBLAS=ON but rocBLAS was not found (no roc::rocblas from "
                          "find_package(rocblas)); install rocBLAS or add its prefix (/opt/rocm) to CMAKE_PREFIX_PATH")
    else()
      message(STATUS "vitscale: rocBLAS not found; GEMM on Kokkos' HIP space will use the portable kernel")
    endif()
  elseif(VITSCALE_ENABLE_ROCBLAS STREQUAL "ON")
    message(FATAL_ERROR "VITSCALE_ENABLE_ROCBLAS=ON but the Kokkos at ${Kokkos_DIR} has no HIP backend "
                        "(Kokkos_DEVICES: ${Kokkos_DEVICES}); use a Kokkos built with Kokkos_ENABLE_HIP=ON")
  endif()
endif()

# MPI for the MPI communicator (shard/mpi.hpp), behind its own target vitscale::mpi. AUTO uses it where found;
# ON makes a missing MPI a configure error.
set(VITSCALE_HAVE_MPI OFF)
if(NOT VITSCALE_ENABLE_MPI STREQUAL "OFF")
  find_package(MPI QUIET COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    set(VITSCALE_HAVE_MPI ON)
    message(STATUS "vitscale: MPI ${MPI_CXX_VERSION} (${MPIEXEC_EXECUTABLE}) for the target vitscale::mpi")
  elseif(VITSCALE_ENABLE_MPI STREQUAL "ON")
    message(FATAL_ERROR "VITSCALE_ENABLE_MPI=ON but no MPI with C++ support was found (find_package(MPI COMPONENTS "
                        "CXX)); install libopenmpi-dev openmpi-bin, or set MPI_HOME / MPI_CXX_COMPILER")
  else()
    message(STATUS "vitscale: MPI not found; the MPI communicator (vitscale::mpi) is left out")
  endif()
endif()
