# install() rules and the CMake package: find_package(vitscale) then link vitscale::vitscale.
include(CMakePackageConfigHelpers)

set(VITSCALE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/vitscale" CACHE STRING
    "Where the installed vitscale CMake package goes, relative to the prefix")

install(DIRECTORY include/vitscale DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS vitscale EXPORT vitscaleTargets)
install(EXPORT vitscaleTargets NAMESPACE vitscale:: DESTINATION ${VITSCALE_INSTALL_CMAKEDIR})
# vitscale::mpi in an export set of its own, loaded by the package only where MPI is found, so that
# find_package(vitscale) works without MPI for programs that do not ask for the mpi component.
if(VITSCALE_HAVE_MPI)
  install(TARGETS vitscale_mpi EXPORT vitscaleMpiTargets)
  install(EXPORT vitscaleMpiTargets NAMESPACE vitscale:: DESTINATION ${VITSCALE_INSTALL_CMAKEDIR})
endif()

configure_package_config_file(cmake/vitscaleConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/vitscaleConfig.cmake"
  INSTALL_DESTINATION ${VITSCALE_INSTALL_CMAKEDIR})
# 0.x: minor versions may break the API; from 1.0 on this becomes SameMajorVersion.
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/vitscaleConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/vitscaleConfig.cmake"
              "${CMAKE_CURRENT_BINARY_DIR}/vitscaleConfigVersion.cmake"
              "${CMAKE_CURRENT_SOURCE_DIR}/cmake/vitscale_find_onednn.cmake"
        DESTINATION ${VITSCALE_INSTALL_CMAKEDIR})
