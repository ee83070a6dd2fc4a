// The main of the MPI test executables: MPI (mpi_environment) around Kokkos around doctest. Every rank runs
// every test case; only rank 0 prints a report, the others print failures only. The job fails when any rank
// fails: the ranks combine their results at the end, and a rank whose MPI state is lost (an exception
// escaping, a collective that timed out for good) ends the job with MPI_Abort rather than leave the others
// waiting.
//
// --scenario=NAME runs one failure scenario instead of the test cases (tests/shard/shard.cmake):
//   dies:  rank 1 exits (status 3) before a collective the others wait in
//   skips: rank 1 stays alive but skips a collective; the others time out after 1 s and exit with status 4
//   mismatch: rank 0 sums its 'loss' where rank 1 sums 'gradients' (one float each): both fail naming both
//             sides and exit with status 4
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <vitscale/shard/mpi.hpp>

#include <Kokkos_Core.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

int run_scenario(const std::string& name, int rank) {
  auto world = vitscale::shard::mpi_communicator::world();
  float x = 1, y = 0;
  if (name == "dies") {
    world->set_timeout(std::chrono::seconds(30));
    if (rank == 1) {
      std::fprintf(stderr, "scenario dies: rank 1 exits with status 3 before all_reduce #0\n");
      std::fflush(stderr);
      std::_Exit(3);
    }
  } else if (name == "skips") {
    world->set_timeout(std::chrono::seconds(1));
    if (rank == 1) {
      std::fprintf(stderr, "scenario skips: rank 1 skips all_reduce #0 and stays alive\n");
      std::this_thread::sleep_for(std::chrono::seconds(40));
      return 0;
    }
  } else if (name == "mismatch") {
    world->set_timeout(std::chrono::seconds(30));
  } else {
    std::fprintf(stderr, "unknown scenario '%s' (dies, skips, mismatch)\n", name.c_str());
    return 2;
  }
  const std::string tag = name == "mismatch" ? (rank == 0 ? "loss" : "gradients") : "scenario " + name;
  try {
    world->all_reduce(&x, &y, 1, tag);
  } catch (const vitscale::error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return 4;  // through the library's shutdown: no MPI_Finalize behind the abandoned thread
  }
  std::fprintf(stderr, "rank %d: all_reduce #0 completed, which it should not have\n", rank);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rank = 0;
  try {
    vitscale::shard::mpi_environment mpi(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    Kokkos::ScopeGuard kokkos(argc, argv);
    for (int i = 1; i < argc; ++i)
      if (std::strncmp(argv[i], "--scenario=", 11) == 0) return run_scenario(argv[i] + 11, rank);

    doctest::Context context(argc, argv);
    if (rank != 0) {
      context.setOption("minimal", 1);
      context.setOption("no-colors", 1);
    }
    const int failed = context.run() != 0 ? 1 : 0;
    if (context.shouldExit()) return failed;
    if (vitscale::shard::detail::mpi_thread_abandoned()) {
      std::fprintf(stderr, "rank %d: a collective timed out for good; ending the job\n", rank);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    int any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any && !failed && rank == 0) std::fprintf(stderr, "rank 0 passed, but another rank failed\n");
    return any;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
  } catch (...) {
    std::fprintf(stderr, "rank %d: an exception not derived from std::exception\n", rank);
  }
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 2);
  return 2;
}
