// The cost of an OpenMP parallel region on this machine: empty regions back to back, and a region after
// ~100 us of serial work (which is where libgomp's default "spin, then sleep" waiting goes wrong in a VM).
//   gcc -O2 -fopenmp benchmarks/omp_fork_join.c -o /tmp/omp_fork_join
//   for p in PASSIVE ACTIVE; do OMP_NUM_THREADS=2 OMP_WAIT_POLICY=$p /tmp/omp_fork_join; done
//   OMP_NUM_THREADS=2 /tmp/omp_fork_join        # libgomp's default
#include <omp.h>
#include <stdio.h>
int main() {
  volatile double x = 0;
  for (int rep = 0; rep < 3; ++rep) {
    double t0 = omp_get_wtime();
    int n = 20000;
    for (int i = 0; i < n; ++i) {
#pragma omp parallel
      { x += 0; }
    }
    double t1 = omp_get_wtime();
    // with ~100 us of serial work between regions
    for (int i = 0; i < 2000; ++i) {
      double s = 0; for (int k = 0; k < 30000; ++k) s += k * 1e-9; x += s;
#pragma omp parallel
      { x += 0; }
    }
    double t2 = omp_get_wtime();
    double ser = omp_get_wtime();
    for (int i = 0; i < 2000; ++i) { double s = 0; for (int k = 0; k < 30000; ++k) s += k * 1e-9; x += s; }
    double ser2 = omp_get_wtime();
    printf("empty region %.2f us; region after serial work %.2f us\n", (t1 - t0) / n * 1e6, ((t2 - t1) - (ser2 - ser)) / 2000 * 1e6);
  }
  return 0;
}
