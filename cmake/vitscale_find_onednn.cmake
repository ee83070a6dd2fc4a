# Finds oneDNN's CPU library and headers and defines the imported target vitscale::onednn.
# Used by the build and, installed beside vitscaleConfig.cmake, by the package.
#
# oneDNN's own CMake package is not used: Debian's (2.6) requires OpenCL development files because the
# library was built with an OpenCL GPU runtime, and fails hard where they are missing, whereas vitscale
# only calls the CPU engine. Sets VITSCALE_ONEDNN_FOUND and VITSCALE_ONEDNN_VERSION. dnnl_ROOT or
# CMAKE_PREFIX_PATH point at another installation.
if(TARGET vitscale::onednn)
  set(VITSCALE_ONEDNN_FOUND TRUE)
  return()
endif()

find_path(VITSCALE_ONEDNN_INCLUDE_DIR oneapi/dnnl/dnnl.hpp HINTS ${dnnl_ROOT} $ENV{dnnl_ROOT} PATH_SUFFIXES include)
find_library(VITSCALE_ONEDNN_LIBRARY NAMES dnnl HINTS ${dnnl_ROOT} $ENV{dnnl_ROOT} PATH_SUFFIXES lib lib64)
mark_as_advanced(VITSCALE_ONEDNN_INCLUDE_DIR VITSCALE_ONEDNN_LIBRARY)

set(VITSCALE_ONEDNN_FOUND FALSE)
if(VITSCALE_ONEDNN_INCLUDE_DIR AND VITSCALE_ONEDNN_LIBRARY AND
   EXISTS "${VITSCALE_ONEDNN_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h")
  file(STRINGS "${VITSCALE_ONEDNN_INCLUDE_DIR}/oneapi/dnnl/dnnl_version.h" _lines
       REGEX "#define DNNL_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX REPLACE ".*DNNL_VERSION_${_part} ([0-9]+).*" "\\1" _v_${_part} "${_lines}")
  endforeach()
  set(VITSCALE_ONEDNN_VERSION "${_v_MAJOR}.${_v_MINOR}.${_v_PATCH}")
  if(VITSCALE_ONEDNN_VERSION VERSION_GREATER_EQUAL 2.0)
    set(VITSCALE_ONEDNN_FOUND TRUE)
    add_library(vitscale::onednn INTERFACE IMPORTED)
    set_target_properties(vitscale::onednn PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${VITSCALE_ONEDNN_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${VITSCALE_ONEDNN_LIBRARY}")
  endif()
endif()
