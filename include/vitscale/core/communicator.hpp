#pragma once
// communicator: the collectives a group of ranks runs together, behind one interface, so that the model
// (model/vit.hpp, when sharded) and the training step need not know whether the ranks are MPI processes
// (shard/mpi.hpp) or threads of one process (shard/in_process.hpp).
//
// Every collective exists as a non-blocking call returning a `request`, and as a blocking one that is the
// non-blocking call followed by wait(). Buffers are pointers into memory the implementation can read and
// write: host memory for the in-process communicator; for MPI, host memory or (with a CUDA-aware MPI) the
// memory of the Kokkos space the model runs on. The caller must have fenced the execution space that wrote
// a send buffer before starting a collective on it, and must not touch a buffer until its request is waited.
//
// Collectives match by their order: every rank of the group must issue the same collectives, in the same
// order, with the same counts. A wait that does not complete within the communicator's time-out (a rank that
// died, or ranks that disagree on the sequence) throws vitscale::error naming the collective, instead of
// hanging for ever.
//
// Layouts (p = size(), n = count):
//   all_gather:     send [n] on every rank                 -> recv [p·n], rank-major (rank r's block at r·n)
//   reduce_scatter: send [p·n] on every rank (rank-major)  -> recv [n] = Σ_ranks send[rank()·n ...]
//   all_reduce:     send [n] -> recv [n] = Σ_ranks send; send == recv is allowed (in place)
// Reductions are sums of floats; all_gather moves bytes (iall_gather_bytes; iall_gather<T> counts
// elements), so it serves every element type.

#include <vitscale/core/error.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace vitscale {

// What a non-blocking collective returns. wait() blocks until the collective is complete on this rank (its
// receive buffer is written and its send buffer may be reused), or throws vitscale::error on a time-out or
// a failure; test() says whether wait() would return at once. A request that was never waited is waited by
// its destructor (errors are then swallowed: a destructor must not throw); an empty request is complete.
class request {
 public:
  class state {
   public:
    virtual ~state() = default;
    virtual void wait() = 0;
    virtual bool test() = 0;
  };

  request() = default;
  explicit request(std::unique_ptr<state> s) : state_(std::move(s)) {}
  request(request&&) noexcept = default;
  request& operator=(request&& other) noexcept {
    if (this != &other) {
      finish_quietly();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  request(const request&) = delete;
  request& operator=(const request&) = delete;
  ~request() { finish_quietly(); }

  void wait() {
    if (!state_) return;
    std::unique_ptr<state> s = std::move(state_);  // waited once, even when wait() throws
    s->wait();
  }
  bool test() { return !state_ || state_->test(); }
  bool pending() const { return static_cast<bool>(state_); }

 private:
  void finish_quietly() noexcept {
    if (!state_) return;
    try {
      wait();
    } catch (...) {
    }
  }
  std::unique_ptr<state> state_;
};

class communicator {
 public:
  virtual ~communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // A short description for error messages ("MPI, rank 1 of 4", "in-process, rank 0 of 2").
  virtual std::string describe() const = 0;

  virtual request iall_gather_bytes(const void* send, void* recv, std::size_t bytes) = 0;
  virtual request ireduce_scatter(const float* send, float* recv, std::size_t count) = 0;
  virtual request iall_reduce(const float* send, float* recv, std::size_t count) = 0;

  // The ranks with the same `color` form a new communicator, ordered by `key` (then by rank). Collective:
  // every rank of this communicator must call it.
  virtual std::unique_ptr<communicator> split(int color, int key) = 0;

  // Blocks until every rank has called it.
  virtual void barrier() = 0;

  // How long a wait may take before it is an error. Default: 60 s.
  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds t) {
    if (t.count() <= 0) detail::fail("communicator::set_timeout: the time-out must be positive, got ", t.count(), " ms");
    timeout_ = t;
  }

  // Blocking forms.
  void reduce_scatter(const float* send, float* recv, std::size_t count) {
    ireduce_scatter(send, recv, count).wait();
  }
  void all_reduce(const float* send, float* recv, std::size_t count) { iall_reduce(send, recv, count).wait(); }

  // Typed all-gather: count elements of T from every rank.
  template <class T>
  request iall_gather(const T* send, T* recv, std::size_t count) {
    return iall_gather_bytes(static_cast<const void*>(send), static_cast<void*>(recv), count * sizeof(T));
  }
  template <class T>
  void all_gather(const T* send, T* recv, std::size_t count) {
    iall_gather(send, recv, count).wait();
  }

 private:
  std::chrono::milliseconds timeout_{60000};
};

}  // namespace vitscale
