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
// order, with the same counts and the same tags. The tag is the caller's name for what is exchanged
// ("loss", "gradients", "row exchange: all-gather"); with the collective's kind, its sequence number on the
// communicator and its count it makes the collective's record, which the implementations compare across the
// ranks before moving any data. Same-shaped collectives that mean different things (one rank summing its
// loss while another sums gradients, both one float) are so an error on every rank naming both sides:
//   all_reduce #7 'loss' (1 float) on rank 0 does not match all_reduce #7 'gradients' (1 float) on rank 1
// rather than a silently wrong sum. A tag left out is empty: it still matches only an empty tag. A wait
// that does not complete within the communicator's time-out (a rank that died or hung, or ranks that
// disagree on the sequence) throws vitscale::error naming the collective, instead of hanging for ever.
//
// Layouts (p = size(), n = count):
//   all_gather:     send [n] on every rank                 -> recv [p·n], rank-major (rank r's block at r·n)
//   reduce_scatter: send [p·n] on every rank (rank-major)  -> recv [n] = Σ_ranks send[rank()·n ...]
//   all_reduce:     send [n] -> recv [n] = Σ_ranks send; send == recv is allowed (in place)
// Reductions are sums of floats; all_gather moves bytes (iall_gather_bytes; iall_gather<T> counts
// elements), so it serves every element type.

#include <vitscale/core/error.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace vitscale {

// The caller's name for what a collective exchanges: at most `capacity` characters, kept in the object (a
// tag is copied into each collective's record and, for MPI, sent to the other ranks on a mismatch, so it
// owns its text; longer text is cut). Implicit from a string, so that a call reads
// `comm.all_reduce(&loss, &sum, 1, "loss")`.
class collective_tag {
 public:
  static constexpr std::size_t capacity = 47;

  collective_tag() = default;
  collective_tag(const char* text) { assign(text, text ? std::strlen(text) : 0); }  // NOLINT: implicit on purpose
  collective_tag(const std::string& text) { assign(text.data(), text.size()); }     // NOLINT: implicit on purpose

  const char* c_str() const { return text_; }
  bool empty() const { return text_[0] == '\0'; }
  friend bool operator==(const collective_tag& a, const collective_tag& b) { return std::strcmp(a.text_, b.text_) == 0; }
  friend bool operator!=(const collective_tag& a, const collective_tag& b) { return !(a == b); }

  // FNV-1a of the text: what MPI's matching check compares (shard/mpi.hpp).
  std::uint64_t hash() const {
    std::uint64_t h = 14695981039346656037ull;
    for (const char* c = text_; *c; ++c) h = (h ^ static_cast<unsigned char>(*c)) * 1099511628211ull;
    return h;
  }

 private:
  void assign(const char* text, std::size_t n) {
    n = std::min(n, capacity);
    if (n > 0) std::memcpy(text_, text, n);
    text_[n] = '\0';
  }
  char text_[capacity + 1] = {};
};

enum class collective_kind : std::uint8_t { all_gather = 1, reduce_scatter, all_reduce, split, barrier };

inline const char* collective_name(collective_kind k) {
  switch (k) {
    case collective_kind::all_gather: return "all_gather";
    case collective_kind::reduce_scatter: return "reduce_scatter";
    case collective_kind::all_reduce: return "all_reduce";
    case collective_kind::split: return "split";
    case collective_kind::barrier: return "barrier";
  }
  return "collective";
}

// What the ranks compare before a collective: its kind, its sequence number on the communicator (0, 1, ...
// in the order this rank started them), its count (bytes for all_gather, floats per rank's block for the
// reductions, 0 for split and barrier) and its tag.
struct collective_record {
  collective_kind kind = collective_kind::barrier;
  std::uint64_t seq = 0;
  std::size_t count = 0;
  collective_tag tag;

  friend bool operator==(const collective_record& a, const collective_record& b) {
    return a.kind == b.kind && a.seq == b.seq && a.count == b.count && a.tag == b.tag;
  }
  friend bool operator!=(const collective_record& a, const collective_record& b) { return !(a == b); }

  // "all_reduce #7 'loss' (1 float)", "all_gather #3 (52 bytes)", "barrier #9 'end of epoch'"
  std::string describe() const {
    std::ostringstream s;
    s << collective_name(kind) << " #" << seq;
    if (!tag.empty()) s << " '" << tag.c_str() << "'";
    if (kind == collective_kind::all_gather) s << " (" << count << (count == 1 ? " byte)" : " bytes)");
    if (kind == collective_kind::reduce_scatter || kind == collective_kind::all_reduce)
      s << " (" << count << (count == 1 ? " float)" : " floats)");
    return s.str();
  }
};

namespace detail {

// The error of ranks that called different collectives, naming every distinct record and its ranks:
//   "the ranks of <group> called different collectives: all_reduce #7 'loss' (1 float) on rank 0 does not
//    match all_reduce #7 'gradients' (1 float) on rank 1; every rank must ..."
// calls: (rank, record) for the ranks known, in rank order; at least two distinct records.
inline std::string mismatch_message(const std::string& group, const std::vector<std::pair<int, collective_record>>& calls) {
  std::vector<std::pair<collective_record, std::vector<int>>> distinct;
  for (const auto& call : calls) {
    auto same = std::find_if(distinct.begin(), distinct.end(), [&](const auto& d) { return d.first == call.second; });
    if (same == distinct.end()) {
      distinct.push_back({call.second, {call.first}});
    } else {
      same->second.push_back(call.first);
    }
  }
  std::ostringstream s;
  s << "the ranks of " << group << " called different collectives: ";
  for (std::size_t i = 0; i < distinct.size(); ++i) {
    if (i == 1) s << " does not match ";
    if (i > 1) s << ", nor ";
    s << distinct[i].first.describe() << " on rank" << (distinct[i].second.size() > 1 ? "s" : "");
    for (std::size_t j = 0; j < distinct[i].second.size(); ++j) s << (j ? ", " : " ") << distinct[i].second[j];
  }
  s << "; every rank must issue the same collectives, in the same order, with the same counts and tags";
  return s.str();
}

}  // namespace detail

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

// The collectives, each with a tag (see above; empty when left out). The public calls number the
// collectives and make their records; an implementation receives the record and the buffers.
class communicator {
 public:
  virtual ~communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // A short description for error messages ("MPI, rank 1 of 4", "in-process, rank 0 of 2").
  virtual std::string describe() const = 0;

  request iall_gather_bytes(const void* send, void* recv, std::size_t bytes, const collective_tag& tag = {}) {
    return start_all_gather(next(collective_kind::all_gather, bytes, tag), send, recv);
  }
  request ireduce_scatter(const float* send, float* recv, std::size_t count, const collective_tag& tag = {}) {
    return start_reduce_scatter(next(collective_kind::reduce_scatter, count, tag), send, recv);
  }
  request iall_reduce(const float* send, float* recv, std::size_t count, const collective_tag& tag = {}) {
    return start_all_reduce(next(collective_kind::all_reduce, count, tag), send, recv);
  }

  // The ranks with the same `color` form a new communicator, ordered by `key` (then by rank). Collective:
  // every rank of this communicator must call it.
  std::unique_ptr<communicator> split(int color, int key, const collective_tag& tag = {}) {
    return start_split(next(collective_kind::split, 0, tag), color, key);
  }

  // Blocks until every rank has called it.
  void barrier(const collective_tag& tag = {}) { start_barrier(next(collective_kind::barrier, 0, tag)); }

  // How long a wait may take before it is an error. Default: 60 s.
  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds t) {
    if (t.count() <= 0) detail::fail("communicator::set_timeout: the time-out must be positive, got ", t.count(), " ms");
    timeout_ = t;
  }

  // Blocking forms.
  void reduce_scatter(const float* send, float* recv, std::size_t count, const collective_tag& tag = {}) {
    ireduce_scatter(send, recv, count, tag).wait();
  }
  void all_reduce(const float* send, float* recv, std::size_t count, const collective_tag& tag = {}) {
    iall_reduce(send, recv, count, tag).wait();
  }

  // Typed all-gather: count elements of T from every rank.
  template <class T>
  request iall_gather(const T* send, T* recv, std::size_t count, const collective_tag& tag = {}) {
    return iall_gather_bytes(static_cast<const void*>(send), static_cast<void*>(recv), count * sizeof(T), tag);
  }
  template <class T>
  void all_gather(const T* send, T* recv, std::size_t count, const collective_tag& tag = {}) {
    iall_gather(send, recv, count, tag).wait();
  }

 protected:
  // The implementations' side: start the collective `c` (its record: kind, sequence number, count, tag),
  // checking first that every rank started the same one.
  virtual request start_all_gather(const collective_record& c, const void* send, void* recv) = 0;
  virtual request start_reduce_scatter(const collective_record& c, const float* send, float* recv) = 0;
  virtual request start_all_reduce(const collective_record& c, const float* send, float* recv) = 0;
  virtual std::unique_ptr<communicator> start_split(const collective_record& c, int color, int key) = 0;
  virtual void start_barrier(const collective_record& c) = 0;

 private:
  collective_record next(collective_kind kind, std::size_t count, const collective_tag& tag) {
    collective_record c;
    c.kind = kind;
    c.seq = next_seq_++;
    c.count = count;
    c.tag = tag;
    return c;
  }

  std::chrono::milliseconds timeout_{60000};
  std::uint64_t next_seq_ = 0;
};

}  // namespace vitscale
