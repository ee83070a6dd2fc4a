#pragma once
// The library's own version; the CMake package version is generated from the same numbers.

#define VITSCALE_VERSION_MAJOR 0
#define VITSCALE_VERSION_MINOR 1
#define VITSCALE_VERSION_PATCH 0
#define VITSCALE_VERSION \
  (VITSCALE_VERSION_MAJOR * 10000 + VITSCALE_VERSION_MINOR * 100 + VITSCALE_VERSION_PATCH)
