#pragma once
// Eigen's core, included once for every user in vitscale (the Eigen GEMM backend, few-shot regression, metrics).
// GCC 12 reports Eigen's AVX-512 packet code as reading an uninitialised register (_mm512_undefined_ps used on
// purpose as a don't-care operand); the warning is a false positive and -Werror would stop users. GCC keeps the
// suppression with the code's location, so it also covers Eigen's modules included after this header (a
// diagnostic in Core's packet code, reached from Eigenvalues, is still inside the region below).
//
// Another Eigen module that needs the same suppression for its own code (the SVD and MINPACK port of
// explore/scaling_law.hpp) is included between VITSCALE_EIGEN_BEGIN and VITSCALE_EIGEN_END.
#if defined(__GNUC__) && !defined(__clang__)
#define VITSCALE_EIGEN_BEGIN                                      \
  _Pragma("GCC diagnostic push")                                  \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")     \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define VITSCALE_EIGEN_END _Pragma("GCC diagnostic pop")
#else
#define VITSCALE_EIGEN_BEGIN
#define VITSCALE_EIGEN_END
#endif

VITSCALE_EIGEN_BEGIN
#include <Eigen/Core>
VITSCALE_EIGEN_END
