#pragma once
// What every example and benchmark program does around its own work, written once: the options they share
// (--threads, --verbose), the OpenMP pool, Kokkos' initialisation and finalisation, and how main ends
// (a bad option: CLI11's message and exit code; any exception: "<program>: <message>" on stderr, exit 1).
//
//   int main(int argc, char** argv) {
//     tool::program prog("bench_vit", "vitscale ViT forward / training-step benchmark");
//     prog.app.add_option("--model", models, "b16, ti16, fmnist");
//     return prog.run(argc, argv, [&] { ...; return 0; });
//   }
//
// Kokkos never sees the program's command line: Kokkos 3.4 parses "--threads N" itself (its option takes
// "--threads=N" and aborts on the other form). The thread count goes to OpenMP instead, whose pool Kokkos'
// OpenMP backend adopts; Kokkos' environment variables (KOKKOS_NUM_THREADS, ...) still apply.
//
// OpenMP's binding and idle-thread policy stay what the environment says. libgomp (GCC's OpenMP) reads
// OMP_PROC_BIND, OMP_PLACES and OMP_WAIT_POLICY once, when the library is loaded: before main and the
// program's constructors, and a setenv in a .preinit_array function, which runs earlier, is lost (glibc sets
// environ afresh after it). No code in the program can change them (benchmarks/RESULTS.md, 2026-12-07, "the
// tools' start-up"). Hence:
//  - binding: unset, libgomp binds nothing, which is what the tools want (ranks of an oversubscribed mpirun
//    must not be pinned to the same cores; the benchmarks' commands say OMP_PROC_BIND=false). Kokkos 3.4
//    prints four lines of advice when OMP_PROC_BIND is unset, so the runtime sets it to the binding the
//    OpenMP runtime reports (omp_get_proc_bind: "false" unless OMP_PLACES is set), which changes nothing but
//    the message;
//  - waiting: OMP_WAIT_POLICY=PASSIVE makes idle threads sleep at once instead of spinning first, which runs
//    steadier wherever cores are shared, and fork/join slower on an idle machine (benchmarks/RESULTS.md,
//    2026-11-24). It is the user's choice; a program that wants it says so (wants_passive_wait) and gets one
//    line on stderr when the variable is unset.
// --verbose prints one line with the thread count, the binding and the wait policy, and where each came from.

#include <Kokkos_Core.hpp>

#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>

#include <signal.h>
#include <unistd.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(VITSCALE_HAVE_MPI)
#include <vitscale/shard/mpi.hpp>
#endif

namespace tool {

// What the shared options set.
struct settings {
  int threads = 0;       // 0: OMP_NUM_THREADS, else all cores
  bool verbose = false;  // print the runtime's configuration line
  bool wants_passive_wait = false;  // the program runs better with OMP_WAIT_POLICY=PASSIVE: say so when unset
};

namespace detail {

#if defined(_OPENMP)
// The OMP_PROC_BIND value naming a binding, by the values OpenMP fixes: 2's enumerator, omp_proc_bind_master,
// is deprecated from OpenMP 5.1 on, and its new name, omp_proc_bind_primary, is missing before; every runtime
// reads "master".
inline const char* proc_bind_name(omp_proc_bind_t bind) {
  switch (static_cast<int>(bind)) {
    case 0: return "false";
    case 2: return "master";
    case 3: return "close";
    case 4: return "spread";
    default: return "true";
  }
}
#endif

}  // namespace detail

// The process's parallel runtime for one program's run: the OpenMP pool's size, the binding made explicit
// for Kokkos, and Kokkos itself (initialised here without the program's arguments, finalised at the end).
class runtime {
 public:
  // lead: the process that gives advice (rank 0 of an MPI job).
  runtime(const settings& s, const std::string& program, [[maybe_unused]] bool lead = true) {
    const char* threads_from = "all cores";
    if (s.threads > 0) threads_from = "--threads";
    else if (std::getenv("OMP_NUM_THREADS")) threads_from = "OMP_NUM_THREADS";
#if defined(_OPENMP)
    if (s.threads > 0) omp_set_num_threads(s.threads);  // Kokkos' OpenMP backend takes the pool's size
    const char* bind = detail::proc_bind_name(omp_get_proc_bind());
    const char* bind_from = "OMP_PROC_BIND";
    if (std::getenv("OMP_PROC_BIND") == nullptr) {
      setenv("OMP_PROC_BIND", bind, 0);
      bind_from = std::getenv("OMP_PLACES") ? "OMP_PLACES set, OMP_PROC_BIND unset" : "OMP_PROC_BIND unset";
    }
#endif
    int argc = 1;
    std::string name = program;
    char* argv[] = {name.data(), nullptr};
    Kokkos::initialize(argc, argv);

    const int threads = Kokkos::DefaultHostExecutionSpace().concurrency();
    std::string line =
        program + ": " + std::to_string(threads) + (threads == 1 ? " thread (" : " threads (") + threads_from + ")";
#if defined(_OPENMP)
    const char* wait = std::getenv("OMP_WAIT_POLICY");
    const char* spin = std::getenv("GOMP_SPINCOUNT");
    line += ", OpenMP binding " + std::string(bind) + " (" + bind_from + "), wait policy ";
    if (wait) line += std::string(wait) + " (OMP_WAIT_POLICY)";
    else if (spin) line += "GOMP_SPINCOUNT=" + std::string(spin);
    else line += "spin, then sleep (OMP_WAIT_POLICY unset)";
    if (s.wants_passive_wait && lead && !s.verbose && wait == nullptr && spin == nullptr)
      std::fprintf(stderr,
                   "%s: OMP_WAIT_POLICY is unset, so idle OpenMP threads spin before they sleep; where cores are "
                   "shared, OMP_WAIT_POLICY=PASSIVE runs steadier\n",
                   program.c_str());
#else
    line += std::string(", ") + Kokkos::DefaultHostExecutionSpace::name();
#endif
    if (s.verbose) std::fprintf(stderr, "%s\n", line.c_str());
  }
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;
  ~runtime() { Kokkos::finalize(); }
};

// The exit status of a run that a signal stopped cleanly (its state saved; it can be resumed): EX_TEMPFAIL of
// sysexits.h, "a temporary failure: the user is invited to retry". Job schedulers can requeue on it.
inline constexpr int exit_stopped = 75;

// A graceful stop on SIGINT and SIGTERM: while one lives, the first such signal only sets a flag, which the
// program's loop reads at a point where it can stop cleanly (after a training step: save, then exit with
// exit_stopped); a second signal ends the program at once, as it would have without this. SA_RESTART: system
// calls the signal interrupts (a checkpoint's writes) go on.
class graceful_stop {
 public:
  graceful_stop() {
    signal_() = 0;
    struct sigaction sa = {};
    sa.sa_handler = &graceful_stop::handle;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  graceful_stop(const graceful_stop&) = delete;
  graceful_stop& operator=(const graceful_stop&) = delete;
  ~graceful_stop() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  // The signal that asked for the stop (SIGINT, SIGTERM), or 0.
  int requested() const { return signal_().load(); }
  static const char* name(int signal) { return signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "a signal"; }

 private:
  static std::atomic<int>& signal_() {
    static std::atomic<int> s{0};
    static_assert(std::atomic<int>::is_always_lock_free, "a signal handler may only touch lock-free atomics");
    return s;
  }
  // Async-signal-safe only: an atomic store and signal(), which puts both signals back to their default effect.
  static void handle(int signal) {
    signal_().store(signal);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
  }
  struct sigaction old_int_ = {}, old_term_ = {};
};

// A program: its command line (the shared options already added) and the frame main runs it in.
class program {
 public:
  program(std::string name, const std::string& description) : app(description, name), name_(std::move(name)) {
    app.add_option("--threads", settings_.threads, "threads (default: OMP_NUM_THREADS or all cores)")
        ->group("Runtime");
    app.add_flag("--verbose", settings_.verbose, "print the threads, OpenMP binding and wait policy in use")
        ->group("Runtime");
  }

  CLI::App app;

  // The program runs better with OMP_WAIT_POLICY=PASSIVE (it says so when the variable is unset).
  program& wants_passive_wait() {
    settings_.wants_passive_wait = true;
    return *this;
  }

  // Parses the command line, starts the runtime and returns body()'s exit code; see the top of the file for
  // what an error gives.
  template <class Body>
  int run(int argc, char** argv, Body&& body) {
    if (const int rc = parse(argc, argv); rc >= 0) return rc;
    try {
      runtime rt(settings_, name_);
      return std::forward<Body>(body)();
    } catch (const std::exception& e) {
      return report(e.what());
    }
  }

#if defined(VITSCALE_HAVE_MPI)
  // As run, for a program under mpirun: MPI is initialised after the command line is parsed and before
  // Kokkos, and finalised after it; body gets the world communicator. An error on a rank is printed with the
  // rank and ends the whole job (MPI_Abort): the other ranks would otherwise wait for it in a collective.
  template <class Body>
  int run_mpi(int argc, char** argv, Body&& body) {
    if (const int rc = parse(argc, argv); rc >= 0) return rc;
    try {
      vitscale::shard::mpi_environment mpi(argc, argv);
      int rank = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      runtime rt(settings_, name_, rank == 0);
      auto world = vitscale::shard::mpi_communicator::world();
      try {
        return std::forward<Body>(body)(*world);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: rank %d: %s\n", name_.c_str(), world->rank(), e.what());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      return 1;
    } catch (const std::exception& e) {
      return report(e.what());
    }
  }
#endif

 private:
  // -1 when the command line parsed; else CLI11's exit code (its message printed: a bad option, or --help).
  int parse(int argc, char** argv) {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    return -1;
  }

  int report(const char* what) const {
    // On a terminal a progress line ending in '\r' may be pending: the message starts a line of its own.
    std::fprintf(stderr, "%s%s: %s\n", isatty(fileno(stderr)) ? "\n" : "", name_.c_str(), what);
    return 1;
  }

  std::string name_;
  settings settings_;
};

}  // namespace tool
