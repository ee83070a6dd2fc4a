#pragma once
// Eigen's core, included once for every user in vitscale (the Eigen GEMM backend, few-shot regression, metrics).
// GCC 12 reports Eigen's AVX-512 packet code as reading an uninitialised register (_mm512_undefined_ps used on
// purpose as a don't-care operand); the warning is a false positive and -Werror would stop users. GCC keeps the
// suppression with the code's location, so it also covers Eigen's modules included after this header (a
// diagnostic in Core's packet code, reached from Eigenvalues, is still inside the region below).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
