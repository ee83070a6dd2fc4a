#pragma once
// MPI communicator: the ranks are MPI processes.
//
//   int main(int argc, char** argv) {
//     vitscale::shard::mpi_environment mpi(argc, argv);          // MPI_Init_thread (if not done yet)
//     Kokkos::ScopeGuard kokkos(argc, argv);
//     auto world = vitscale::shard::mpi_communicator::world();   // collective
//     ...
//   }                                                             // communicators, then MPI, are finalised
//
// Overlap. OpenMPI makes no progress on a non-blocking collective unless some thread is inside MPI, so
// every MPI call of these communicators is made by one communication thread per process: the collectives
// are queued (one FIFO for the world communicator and all its splits, so every rank runs them in the order
// it posted them) and run there as blocking MPI collectives while the caller computes. request::wait()
// waits for the thread to finish the collective, at most the communicator's time-out.
//
// Thread level: the environment asks for MPI_THREAD_MULTIPLE and needs at least MPI_THREAD_SERIALIZED
// (this thread and the caller's both call MPI, never at the same time while only SERIALIZED is given).
// With SERIALIZED, do not call MPI yourself while a request of these communicators is outstanding.
//
// Buffers are host memory or, with a CUDA-aware MPI, device memory of the Kokkos space the model runs on;
// the pointers are passed to MPI as they are. Fence the execution space that wrote a send buffer before
// posting the collective (the communication thread knows nothing of Kokkos' streams). all_gather and
// reduce_scatter need distinct send and receive buffers; all_reduce may run in place (MPI_IN_PLACE).
//
// Checked collectives. Before each collective the ranks compare its record (core/communicator.hpp: kind,
// sequence number, count and a 64-bit hash of the tag) with one all-reduce of eight integers: the maxima of
// the four and of their complements, equal on every rank iff every rank called the same. Only when they
// differ do the ranks all-gather their whole records (a fixed 72 bytes each), so that different collectives,
// counts or tags are a vitscale::error on every rank naming each side ("all_reduce #7 'loss' (1 float) on
// rank 0 does not match all_reduce #7 'gradients' (1 float) on rank 1"), instead of a silently wrong sum, MPI
// truncation errors or memory corruption. Every rank takes the same branch, because every rank sees the same
// maxima. set_check_matching(false) saves the round trip; a hash collision between two tags (2^-64) goes
// unnoticed.
//
// Counts above INT_MAX: all_gather and all_reduce are split into pieces MPI can count; reduce_scatter
// rejects them with an error.
//
// Time-outs and shutdown. A collective that does not finish within the time-out (a rank died, or the ranks
// disagree on the sequence and the check above could not run) is an error, and the communication thread
// may then be blocked in MPI for good, holding that collective's buffers. From then on this process's
// communicators refuse new collectives (the queued ones fail at once), and the thread is abandoned when the
// last communicator goes: it is detached instead of joined, and mpi_environment skips MPI_Finalize (which
// would wait for it) and says so on stderr. The process can then exit; mpirun ends the job because a rank
// exited without finalising. A program that catches such an error should end the job itself, at once, with
// MPI_Abort(MPI_COMM_WORLD, code) — the test driver tests/shard/mpi_main.cpp does. When a rank dies, mpirun
// itself ends the job (OpenMPI kills the other ranks once one exits with a non-zero status).

#if !defined(VITSCALE_HAVE_MPI)
#error "vitscale/shard/mpi.hpp needs MPI: link the CMake target vitscale::mpi (present when vitscale was configured with MPI found, VITSCALE_ENABLE_MPI=AUTO or ON), which defines VITSCALE_HAVE_MPI"
#endif

// Only MPI's C interface is used: leave out the deprecated C++ bindings (slow to compile, and they warn).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <vitscale/core/communicator.hpp>
#include <vitscale/core/error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace vitscale::shard {

namespace detail {

// The largest count one MPI call is given (MPI counts are int). Tests lower it to exercise the pieces.
inline std::size_t& mpi_max_count() {
  static std::size_t limit = static_cast<std::size_t>(INT_MAX);
  return limit;
}

inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error code " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

// Throws the vitscale::error of a failed MPI call.
inline void mpi_check(int code, const char* call, const std::string& what) {
  if (code != MPI_SUCCESS) vitscale::detail::fail(call, " failed in ", what, ": ", mpi_error_text(code));
}

inline const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
    default: return "an unknown thread level";
  }
}

// One collective (or communicator operation) queued for the communication thread.
struct mpi_op {
  enum class status { queued, running, done, failed };
  std::function<void()> body;  // runs on the communication thread; throws vitscale::error
  std::string what;            // "all_reduce #7 'gradients' (1024 floats) on MPI, rank 0 of 4"
  status state = status::queued;
  std::string error;
};

// Set once a communication thread was abandoned in MPI: MPI_Finalize would wait for it.
inline std::atomic<bool>& mpi_thread_abandoned() {
  static std::atomic<bool> abandoned{false};
  return abandoned;
}

// The communication thread and its queue. One per process at a time, shared by every mpi_communicator
// (and request) through shared_ptr; the last owner stops it.
class mpi_engine {
 public:
  static std::shared_ptr<mpi_engine> get() {
    std::lock_guard<std::mutex> lock(registry_mutex());
    std::shared_ptr<mpi_engine> e = registry().lock();
    if (!e) {
      e = std::shared_ptr<mpi_engine>(new mpi_engine());
      registry() = e;
    }
    return e;
  }
  // The engine now running, if any (mpi_environment stops it before finalising).
  static std::shared_ptr<mpi_engine> current() {
    std::lock_guard<std::mutex> lock(registry_mutex());
    return registry().lock();
  }

  ~mpi_engine() { stop(); }
  mpi_engine(const mpi_engine&) = delete;
  mpi_engine& operator=(const mpi_engine&) = delete;

  // Queues body; throws if an earlier time-out made the communicators unusable or the engine has stopped.
  std::shared_ptr<mpi_op> post(std::string what, std::function<void()> body) {
    auto op = std::make_shared<mpi_op>();
    op->what = std::move(what);
    op->body = std::move(body);
    {
      std::lock_guard<std::mutex> lock(s_->m);
      if (!s_->poisoned.empty())
        vitscale::detail::fail(op->what, " refused: an earlier collective timed out (", s_->poisoned,
                               "), so this process's MPI communicators can no longer be used; end the job");
      if (s_->stopping)
        vitscale::detail::fail(op->what, " refused: the MPI communication thread has stopped (MPI is being finalised)");
      s_->queue.push_back(op);
    }
    s_->work.notify_one();
    return op;
  }

  // Queues body with nobody waiting for it (freeing a communicator); skipped when the engine is unusable.
  void post_quietly(std::string what, std::function<void()> body) noexcept {
    try {
      std::lock_guard<std::mutex> lock(s_->m);
      if (!s_->poisoned.empty() || s_->stopping) return;
      auto op = std::make_shared<mpi_op>();
      op->what = std::move(what);
      op->body = std::move(body);
      s_->queue.push_back(std::move(op));
    } catch (...) {
      return;
    }
    s_->work.notify_one();
  }

  bool finished(const mpi_op& op) {
    std::lock_guard<std::mutex> lock(s_->m);
    return op.state == mpi_op::status::done || op.state == mpi_op::status::failed;
  }

  void wait(mpi_op& op, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(s_->m);
    const bool in_time = s_->done.wait_for(lock, timeout, [&] {
      return op.state == mpi_op::status::done || op.state == mpi_op::status::failed;
    });
    if (!in_time) {
      std::ostringstream s;
      s << op.what << " timed out after " << timeout.count() << " ms (";
      if (op.state == mpi_op::status::running) {
        s << "it was running in MPI";
      } else {
        s << std::count_if(s_->queue.begin(), s_->queue.end(), [&](const auto& q) { return q.get() != &op; })
          << " earlier collective(s) still queued before it, one more running";
      }
      s << "; MPI cannot tell how many ranks had arrived): a rank may have died, or the ranks called different "
           "collectives. This process's MPI communicators can no longer be used (the communication thread may "
           "be blocked in MPI for good): end the job, e.g. with MPI_Abort";
      s_->poisoned = op.what + " timed out";
      // Collectives not started yet will never be: fail them now, so that their waits (and buffers) are freed.
      for (auto& q : s_->queue) {
        q->state = mpi_op::status::failed;
        q->error = q->what + " cancelled: " + s_->poisoned + " before it";
      }
      s_->queue.clear();
      s_->done.notify_all();
      vitscale::detail::fail(s.str());
    }
    if (op.state == mpi_op::status::failed) vitscale::detail::fail(op.error.substr(op.error.rfind("vitscale: ", 0) == 0 ? 10 : 0));
  }

  bool usable() {
    std::lock_guard<std::mutex> lock(s_->m);
    return s_->poisoned.empty() && !s_->stopping;
  }

  // Lets the thread run what is queued and end, then joins it; a thread blocked in a collective that timed
  // out is detached instead (see the header comment).
  void stop() noexcept {
    if (!thread_.joinable()) return;
    bool abandon = false;
    {
      std::unique_lock<std::mutex> lock(s_->m);
      s_->stopping = true;
      s_->work.notify_all();
      if (!s_->poisoned.empty()) {
        // Give an idle thread a moment to notice; one inside MPI will not come back.
        s_->done.wait_for(lock, std::chrono::milliseconds(200), [&] { return s_->exited; });
        abandon = !s_->exited;
      }
    }
    if (abandon) {
      mpi_thread_abandoned() = true;
      thread_.detach();
    } else {
      thread_.join();
    }
  }

 private:
  struct shared {
    std::mutex m;
    std::condition_variable work;  // the thread waits for ops
    std::condition_variable done;  // waiters wait for their op
    std::deque<std::shared_ptr<mpi_op>> queue;
    bool stopping = false;
    bool exited = false;
    std::string poisoned;  // why the communicators are unusable; empty while they are fine
  };

  mpi_engine() : s_(std::make_shared<shared>()) {
    // The thread owns a reference to the state, so that a detached thread never touches freed memory.
    thread_ = std::thread([s = s_] { run(*s); });
  }

  static void run(shared& s) {
    std::unique_lock<std::mutex> lock(s.m);
    for (;;) {
      s.work.wait(lock, [&] { return s.stopping || !s.queue.empty(); });
      if (s.queue.empty()) break;
      std::shared_ptr<mpi_op> op = std::move(s.queue.front());
      s.queue.pop_front();
      op->state = mpi_op::status::running;
      lock.unlock();
      std::string error;
      try {
        op->body();
      } catch (const std::exception& e) {
        error = e.what();
      } catch (...) {
        error = op->what + " failed with an exception not derived from std::exception";
      }
      op->body = nullptr;  // drop captured state on this thread, outside the lock
      lock.lock();
      op->error = std::move(error);
      op->state = op->error.empty() ? mpi_op::status::done : mpi_op::status::failed;
      s.done.notify_all();
    }
    s.exited = true;
    s.done.notify_all();
  }

  static std::mutex& registry_mutex() {
    static std::mutex m;
    return m;
  }
  static std::weak_ptr<mpi_engine>& registry() {
    static std::weak_ptr<mpi_engine> r;
    return r;
  }

  std::shared_ptr<shared> s_;
  std::thread thread_;
};

class mpi_request final : public request::state {
 public:
  mpi_request(std::shared_ptr<mpi_engine> e, std::shared_ptr<mpi_op> op, std::chrono::milliseconds timeout)
      : engine_(std::move(e)), op_(std::move(op)), timeout_(timeout) {}
  void wait() override { engine_->wait(*op_, timeout_); }
  bool test() override { return engine_->finished(*op_); }

 private:
  std::shared_ptr<mpi_engine> engine_;
  std::shared_ptr<mpi_op> op_;
  std::chrono::milliseconds timeout_;
};

// The matching check (see the header comment): throws vitscale::error on every rank when the ranks of `comm`
// did not all start the collective `mine`. `group` names the communicator in the message.
inline void check_matching(MPI_Comm comm, const collective_record& mine, const std::string& group, const std::string& what) {
  using u64 = unsigned long long;
  const u64 fields[4] = {mine.seq, static_cast<u64>(mine.kind), static_cast<u64>(mine.count), mine.tag.hash()};
  u64 v[8];
  for (int i = 0; i < 4; ++i) {
    v[i] = fields[i];
    v[4 + i] = ~fields[i];  // max(~x) = ~min(x), without the overflow of negating
  }
  mpi_check(MPI_Allreduce(MPI_IN_PLACE, v, 8, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm), "MPI_Allreduce", what);
  bool same = true;
  for (int i = 0; i < 4; ++i) same = same && v[i] == ~v[4 + i];
  if (same) return;
  // A record as bytes: seq, count (8 bytes each), kind (1), the tag's text (capacity + 1, NUL-terminated).
  constexpr std::size_t record_bytes = 72;
  static_assert(17 + collective_tag::capacity + 1 <= record_bytes, "mpi check_matching: the record does not fit");
  unsigned char packed[record_bytes] = {};
  const std::uint64_t seq = mine.seq, count = mine.count;
  std::memcpy(packed, &seq, 8);
  std::memcpy(packed + 8, &count, 8);
  packed[16] = static_cast<unsigned char>(mine.kind);
  std::memcpy(packed + 17, mine.tag.c_str(), std::strlen(mine.tag.c_str()) + 1);
  int p = 0;
  mpi_check(MPI_Comm_size(comm, &p), "MPI_Comm_size", what);
  std::vector<unsigned char> all(record_bytes * static_cast<std::size_t>(p));
  mpi_check(MPI_Allgather(packed, static_cast<int>(record_bytes), MPI_BYTE, all.data(), static_cast<int>(record_bytes),
                          MPI_BYTE, comm),
            "MPI_Allgather", what);
  std::vector<std::pair<int, collective_record>> calls;
  for (int q = 0; q < p; ++q) {
    const unsigned char* r = all.data() + record_bytes * static_cast<std::size_t>(q);
    collective_record c;
    std::uint64_t n = 0;
    std::memcpy(&c.seq, r, 8);
    std::memcpy(&n, r + 8, 8);
    c.count = static_cast<std::size_t>(n);
    c.kind = static_cast<collective_kind>(r[16]);
    c.tag = collective_tag(reinterpret_cast<const char*>(r + 17));
    calls.emplace_back(q, c);
  }
  vitscale::detail::fail(vitscale::detail::mismatch_message(group, calls));
}

}  // namespace detail

// MPI_Init_thread for the lifetime of the object, unless MPI is initialised already; MPI_Finalize at the
// end only if this object initialised it. Asks for MPI_THREAD_MULTIPLE, needs MPI_THREAD_SERIALIZED.
class mpi_environment {
 public:
  mpi_environment() { init(nullptr, nullptr); }
  mpi_environment(int& argc, char**& argv) { init(&argc, &argv); }
  mpi_environment(const mpi_environment&) = delete;
  mpi_environment& operator=(const mpi_environment&) = delete;

  ~mpi_environment() {
    if (!owns_) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    // Communicators still alive: their thread must stop before MPI goes.
    if (auto engine = detail::mpi_engine::current()) engine->stop();
    if (detail::mpi_thread_abandoned()) {
      std::fprintf(stderr,
                   "vitscale: MPI_Finalize skipped: the MPI communication thread is blocked in a collective "
                   "that timed out; the process exits without finalising MPI and the launcher ends the job\n");
      return;
    }
    MPI_Finalize();
  }

  // The thread level MPI provides (MPI_THREAD_SERIALIZED or MPI_THREAD_MULTIPLE).
  int thread_level() const { return provided_; }
  // Whether this object initialised MPI (and so finalises it).
  bool owns() const { return owns_; }

 private:
  void init(int* argc, char*** argv) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized) vitscale::detail::fail("mpi_environment: MPI has been finalised already; it cannot be initialised again");
    if (initialized) {
      MPI_Query_thread(&provided_);
    } else {
      const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided_);
      if (rc != MPI_SUCCESS)
        vitscale::detail::fail("mpi_environment: MPI_Init_thread failed: ", detail::mpi_error_text(rc));
      owns_ = true;
    }
    if (provided_ < MPI_THREAD_SERIALIZED)
      vitscale::detail::fail("mpi_environment: vitscale's MPI communicator needs MPI_THREAD_SERIALIZED or more (it "
                             "calls MPI from a communication thread), but MPI provides ",
                             detail::thread_level_name(provided_),
                             initialized ? " (MPI was initialised before, by someone else: initialise it with "
                                           "MPI_Init_thread asking for MPI_THREAD_MULTIPLE)"
                                         : "");
  }

  int provided_ = MPI_THREAD_SINGLE;
  bool owns_ = false;
};

class mpi_communicator final : public communicator {
 public:
  // A communicator over all MPI processes (a duplicate of MPI_COMM_WORLD, so that its traffic never meets
  // the program's own). Collective: every process must call it. Needs MPI initialised (mpi_environment).
  static std::unique_ptr<mpi_communicator> world() {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized)
      vitscale::detail::fail("mpi_communicator::world: MPI is ", finalized ? "finalised" : "not initialised",
                             "; create a vitscale::shard::mpi_environment first and keep it alive");
    int provided = MPI_THREAD_SINGLE;
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_SERIALIZED)
      vitscale::detail::fail("mpi_communicator::world: MPI provides only ", detail::thread_level_name(provided),
                             "; the communication thread needs MPI_THREAD_SERIALIZED or more (use mpi_environment, "
                             "or MPI_Init_thread asking for MPI_THREAD_MULTIPLE)");
    auto engine = detail::mpi_engine::get();
    auto made = std::make_shared<created>();
    const std::string what = "mpi_communicator::world (MPI_Comm_dup of MPI_COMM_WORLD)";
    auto op = engine->post(what, [made, what] {
      detail::mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &made->comm), "MPI_Comm_dup", what);
      made->adopt(what);
    });
    detail::mpi_request(engine, op, std::chrono::seconds(60)).wait();
    return std::unique_ptr<mpi_communicator>(
        new mpi_communicator(engine, made->comm, made->rank, made->size, "world"));
  }

  ~mpi_communicator() override {
    if (comm_ == MPI_COMM_NULL) return;
    MPI_Comm c = comm_;
    engine_->post_quietly("MPI_Comm_free", [c]() mutable { MPI_Comm_free(&c); });
  }
  mpi_communicator(const mpi_communicator&) = delete;
  mpi_communicator& operator=(const mpi_communicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    std::ostringstream s;
    s << "MPI, rank " << rank_ << " of " << size_;
    if (name_ != "world") s << " in " << name_;
    return s.str();
  }

  // Whether each collective first checks that every rank called the same one (kind, sequence number, count
  // and tag; default on).
  void set_check_matching(bool on) { check_matching_ = on; }
  bool check_matching() const { return check_matching_; }

  // False once a collective of this process timed out: the communicators refuse new collectives, and the
  // program should end the job (MPI_Abort).
  bool usable() const { return engine_->usable(); }

  // The MPI communicator, for calls of the program's own. Use it only while no request is outstanding.
  MPI_Comm native() const { return comm_; }

 protected:
  request start_all_gather(const collective_record& rec, const void* send, void* recv) override {
    const std::size_t limit = detail::mpi_max_count();
    const std::size_t bytes = rec.count;
    return post(rec, [send, recv, bytes, limit](MPI_Comm c, const std::string& what) {
      if (bytes == 0) return;
      if (bytes <= limit) {
        const int n = static_cast<int>(bytes);
        detail::mpi_check(MPI_Allgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, c), "MPI_Allgather", what);
        return;
      }
      // Piece by piece: each piece of every rank's block lands `bytes` apart, so the receive type is the
      // piece resized to an extent of one block.
      for (std::size_t offset = 0; offset < bytes; offset += limit) {
        const int n = static_cast<int>(std::min(limit, bytes - offset));
        MPI_Datatype piece = MPI_DATATYPE_NULL, strided = MPI_DATATYPE_NULL;
        detail::mpi_check(MPI_Type_contiguous(n, MPI_BYTE, &piece), "MPI_Type_contiguous", what);
        detail::mpi_check(MPI_Type_create_resized(piece, 0, static_cast<MPI_Aint>(bytes), &strided),
                          "MPI_Type_create_resized", what);
        MPI_Type_free(&piece);
        detail::mpi_check(MPI_Type_commit(&strided), "MPI_Type_commit", what);
        const int rc = MPI_Allgather(static_cast<const char*>(send) + offset, n, MPI_BYTE,
                                     static_cast<char*>(recv) + offset, 1, strided, c);
        MPI_Type_free(&strided);
        detail::mpi_check(rc, "MPI_Allgather", what);
      }
    });
  }

  request start_reduce_scatter(const collective_record& rec, const float* send, float* recv) override {
    const std::size_t count = rec.count;
    if (count > detail::mpi_max_count())
      vitscale::detail::fail(rec.describe(), " on ", describe(), ": ", count,
                             " floats per rank are more than MPI can count in one call (", detail::mpi_max_count(),
                             "); reduce-scatter the tensor in pieces");
    return post(rec, [send, recv, count](MPI_Comm c, const std::string& what) {
      if (count == 0) return;
      detail::mpi_check(MPI_Reduce_scatter_block(send, recv, static_cast<int>(count), MPI_FLOAT, MPI_SUM, c),
                        "MPI_Reduce_scatter_block", what);
    });
  }

  request start_all_reduce(const collective_record& rec, const float* send, float* recv) override {
    const std::size_t limit = detail::mpi_max_count();
    const std::size_t count = rec.count;
    return post(rec, [send, recv, count, limit](MPI_Comm c, const std::string& what) {
      for (std::size_t offset = 0; offset < count; offset += limit) {
        const int n = static_cast<int>(std::min(limit, count - offset));
        const void* from = send == recv ? MPI_IN_PLACE : static_cast<const void*>(send + offset);
        detail::mpi_check(MPI_Allreduce(from, recv + offset, n, MPI_FLOAT, MPI_SUM, c), "MPI_Allreduce", what);
      }
    });
  }

  std::unique_ptr<communicator> start_split(const collective_record& rec, int color, int key) override {
    auto made = std::make_shared<created>();
    const int p = size_;
    request r = post(rec, [made, color, key, p](MPI_Comm c, const std::string& what) {
      // Every rank sees every color first, so a negative one is an error on all of them, not a hang.
      const int mine[2] = {color, key};
      std::vector<int> all(2 * static_cast<std::size_t>(p));
      detail::mpi_check(MPI_Allgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, c), "MPI_Allgather", what);
      std::ostringstream bad;
      for (int q = 0; q < p; ++q)
        if (all[2 * q] < 0) bad << " rank " << q << " (color " << all[2 * q] << ")";
      if (!bad.str().empty())
        vitscale::detail::fail(what, ": colors must be >= 0, but", bad.str(), " passed a negative one");
      detail::mpi_check(MPI_Comm_split(c, color, key, &made->comm), "MPI_Comm_split", what);
      made->adopt(what);
    });
    r.wait();
    auto sub = std::unique_ptr<mpi_communicator>(new mpi_communicator(
        engine_, made->comm, made->rank, made->size, name_ + "/color " + std::to_string(color)));
    sub->set_timeout(timeout());
    sub->set_check_matching(check_matching_);
    return sub;
  }

  void start_barrier(const collective_record& rec) override {
    post(rec, [](MPI_Comm c, const std::string& what) {
      detail::mpi_check(MPI_Barrier(c), "MPI_Barrier", what);
    }).wait();
  }

 private:
  // What the communication thread hands back after creating a communicator.
  struct created {
    MPI_Comm comm = MPI_COMM_NULL;
    int rank = 0;
    int size = 0;
    void adopt(const std::string& what) {
      if (comm == MPI_COMM_NULL) return;
      detail::mpi_check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", what);
      detail::mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank", what);
      detail::mpi_check(MPI_Comm_size(comm, &size), "MPI_Comm_size", what);
    }
  };

  mpi_communicator(std::shared_ptr<detail::mpi_engine> engine, MPI_Comm comm, int rank, int size, std::string name)
      : engine_(std::move(engine)), comm_(comm), rank_(rank), size_(size), name_(std::move(name)) {}

  template <class Body>
  request post(const collective_record& rec, Body body) {
    std::string what = rec.describe() + " on " + describe();
    const MPI_Comm c = comm_;
    const bool check = check_matching_;
    std::string group = "MPI communicator " + name_;
    auto op = engine_->post(what, [c, check, rec, group = std::move(group), what, body = std::move(body)] {
      if (check) detail::check_matching(c, rec, group, what);
      body(c, what);
    });
    return request(std::make_unique<detail::mpi_request>(engine_, std::move(op), timeout()));
  }

  std::shared_ptr<detail::mpi_engine> engine_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 0;
  std::string name_;
  bool check_matching_ = true;
};

}  // namespace vitscale::shard
