#pragma once
// In-process communicator: the ranks of a group are threads of one process, so sharded code can be tested
// (and run on one machine) without MPI.
//
//   vitscale::shard::run_in_process(4, [](vitscale::communicator& comm) { ... });
//
// The baton. Kokkos 3.4 cannot dispatch kernels from several host threads at once, so the rank threads take
// turns: a rank holds a process-wide baton while it runs and gives it up only while it is blocked in a
// collective's wait() (taking it back before wait() returns or throws). Rank code may therefore call Kokkos
// freely, and the ranks interleave only at waits, like processes whose communication is the only thing
// that overlaps. A rank that must block on something else (a sleep, another thread) without holding up the
// others can give the baton up for a scope with `released_baton` (no Kokkos calls inside). request::test()
// gives other ranks one turn before it reports "not yet", so a rank polling test() cannot starve the rest.
//
// Collectives of a communicator match by their sequence number on it. The copying is done inside wait():
// the first rank to wait once every rank has posted stages the result (the gathered bytes or the sums, in
// rank order, so results are deterministic) into memory of the collective's own, and each rank copies its
// part out. No rank reads another's buffers after staging, so a rank may reuse its send buffer as soon as
// its wait() returns, and all_reduce in place is safe. Buffers are host memory.
//
// Failures are errors on every rank, never hangs: different collectives or counts at the same sequence
// number, a wait past the communicator's time-out (it names the collective and the ranks that had not
// arrived), a rank that returned or threw without calling a collective the others wait in.

#include <vitscale/core/communicator.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace vitscale::shard {

namespace detail {

// A fair (first come, first served) lock: a rank that gives the baton up and asks again queues behind the
// ranks already waiting, so test() loops and wait() returns hand the turn on instead of taking it back.
class baton {
 public:
  static baton& instance() {
    static baton b;
    return b;
  }
  void acquire() {
    std::unique_lock<std::mutex> lock(m_);
    const std::uint64_t ticket = next_++;
    cv_.wait(lock, [&] { return serving_ == ticket; });
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(m_);
      ++serving_;
    }
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::uint64_t next_ = 0;
  std::uint64_t serving_ = 0;
};

// Whether this thread holds the baton (only rank threads of run_in_process ever do).
inline bool& holds_baton() {
  thread_local bool holds = false;
  return holds;
}

// An error raised on a rank because another rank failed first; run_in_process rethrows the first error of
// a rank's own (by rank order) in preference to these.
class peer_failure : public vitscale::error {
 public:
  using vitscale::error::error;
};

enum class op_kind { all_gather, reduce_scatter, all_reduce, split, barrier };

inline const char* kind_name(op_kind k) {
  switch (k) {
    case op_kind::all_gather: return "all_gather";
    case op_kind::reduce_scatter: return "reduce_scatter";
    case op_kind::all_reduce: return "all_reduce";
    case op_kind::split: return "split";
    case op_kind::barrier: return "barrier";
  }
  return "collective";
}

// "all_reduce #7 of 1024 floats"
inline std::string op_name(op_kind k, std::uint64_t seq, std::size_t count) {
  std::ostringstream s;
  s << kind_name(k) << " #" << seq;
  if (k == op_kind::all_gather) s << " of " << count << " bytes";
  if (k == op_kind::reduce_scatter || k == op_kind::all_reduce) s << " of " << count << " floats";
  return s.str();
}

// What every group of one run_in_process shares: one lock and one condition variable (a handful of
// threads; one lock keeps "a rank ended" visible to every wait of every group), and how each rank ended.
struct run_state {
  explicit run_state(int n) : ended(n, 0), failure(n) {}
  std::mutex m;
  std::condition_variable cv;
  std::vector<int> ended;  // 0: running, 1: returned, 2: threw
  std::vector<std::string> failure;
};

struct group;

// One collective, from the first rank's post until every rank has copied its result out.
struct op {
  op(op_kind k, std::size_t n, int rank, int p)
      : kind(k), count(n), first_rank(rank), arrived_flag(p, 0), send(p, nullptr), recv(p, nullptr),
        color_key(p, {0, 0}), split_groups(p), split_rank(p, 0) {}
  op_kind kind;
  std::size_t count;
  int first_rank;
  std::vector<char> arrived_flag;
  int arrived = 0;
  int finished = 0;
  std::vector<const void*> send;
  std::vector<void*> recv;
  std::vector<std::pair<int, int>> color_key;
  // Set once the collective cannot complete; every rank that waits throws it. peer: raised because of
  // another rank's failure (see peer_failure).
  std::string error;
  bool error_is_peer = false;
  bool staging = false;
  bool staged = false;
  std::vector<unsigned char> bytes;  // all_gather's staged result
  std::vector<float> sums;           // the reductions' staged result
  std::vector<std::shared_ptr<group>> split_groups;
  std::vector<int> split_rank;
};

struct group {
  std::shared_ptr<run_state> run;
  std::vector<int> members;  // world rank of each rank of the group
  std::string name;          // "world", "world/color 1", ...
  std::map<std::uint64_t, std::shared_ptr<op>> ops;
  int size() const { return static_cast<int>(members.size()); }
};

}  // namespace detail

// Gives up the calling rank thread's baton for its lifetime (other ranks run meanwhile) and takes it back
// at the end. Make no Kokkos calls in its scope. Does nothing on a thread that does not hold the baton.
class released_baton {
 public:
  released_baton() : held_(detail::holds_baton()) {
    if (held_) {
      detail::holds_baton() = false;
      detail::baton::instance().release();
    }
  }
  ~released_baton() {
    if (held_) {
      detail::baton::instance().acquire();
      detail::holds_baton() = true;
    }
  }
  released_baton(const released_baton&) = delete;
  released_baton& operator=(const released_baton&) = delete;

 private:
  bool held_;
};

class in_process_communicator;

namespace detail {

class in_process_request final : public request::state {
 public:
  in_process_request(std::shared_ptr<group> g, std::shared_ptr<op> o, int rank, std::uint64_t seq,
                     std::chrono::milliseconds timeout, std::string where)
      : g_(std::move(g)), o_(std::move(o)), rank_(rank), seq_(seq), timeout_(timeout), where_(std::move(where)) {}

  void wait() override {
    if (done_) return;
    done_ = true;
    released_baton give_way;
    run_state& run = *g_->run;
    std::unique_lock<std::mutex> lock(run.m);
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    const int p = g_->size();
    for (;;) {
      if (!o_->error.empty()) {
        const bool peer = o_->error_is_peer;
        const std::string message = o_->error;
        finish(lock);
        if (peer) throw peer_failure(message);
        throw vitscale::error(message);
      }
      if (o_->staged) break;
      if (o_->arrived == p) {
        if (!o_->staging) {
          o_->staging = true;
          lock.unlock();
          std::string problem = stage(*o_, *g_);
          lock.lock();
          if (!problem.empty()) {
            o_->error = std::move(problem);
          } else {
            o_->staged = true;
          }
          run.cv.notify_all();
          continue;
        }
        run.cv.wait(lock);  // another rank is staging: bounded work, no deadline
        continue;
      }
      // Not every rank has posted: has one of the missing ended? Then it never will.
      for (int q = 0; q < p; ++q) {
        const int w = g_->members[q];
        if (o_->arrived_flag[q] || run.ended[w] == 0) continue;
        std::ostringstream s;
        if (run.ended[w] == 2) {
          s << "in-process rank " << w << " failed before " << op_name(o_->kind, seq_, o_->count) << " of "
            << g_->name << " (" << run.failure[w] << "), so it cannot complete";
          o_->error_is_peer = true;
        } else {
          s << "in-process rank " << w << " returned without calling " << op_name(o_->kind, seq_, o_->count)
            << " of " << g_->name << ", which the other ranks wait in: the ranks called different collectives";
        }
        o_->error = s.str();
        break;
      }
      if (!o_->error.empty()) {
        run.cv.notify_all();
        continue;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        std::ostringstream s;
        s << op_name(o_->kind, seq_, o_->count) << " on " << where_ << " timed out after " << timeout_.count()
          << " ms: " << o_->arrived << " of " << p << " ranks had arrived (missing:";
        for (int q = 0; q < p; ++q)
          if (!o_->arrived_flag[q]) s << " rank " << q;
        s << "); a rank may have died, or the ranks called different collectives";
        const std::string mine = s.str();
        // The others must not wait for this rank, nor read its buffers once it has given up.
        o_->error = "in-process rank " + std::to_string(g_->members[rank_]) + " gave up: " + mine;
        o_->error_is_peer = true;
        run.cv.notify_all();
        finish(lock);
        throw vitscale::error(mine);
      }
      run.cv.wait_until(lock, deadline);
    }
    lock.unlock();
    copy_out(*o_, rank_, p);
    lock.lock();
    finish(lock);
  }

  bool test() override {
    if (done_) return true;
    {
      std::lock_guard<std::mutex> lock(g_->run->m);
      if (o_->arrived == g_->size() || !o_->error.empty()) return true;
    }
    { released_baton give_way; }  // one turn for the others, which may be the ranks this one waits for
    std::lock_guard<std::mutex> lock(g_->run->m);
    return o_->arrived == g_->size() || !o_->error.empty();
  }

 private:
  // Called with the run's lock held, once per rank that posted: the last one forgets the collective.
  void finish(std::unique_lock<std::mutex>&) {
    if (++o_->finished == g_->size()) g_->ops.erase(seq_);
  }

  // Runs on one rank once every rank has posted; reads every rank's send buffer. Returns an error message,
  // empty when the result is staged.
  static std::string stage(op& o, const group& g) {
    const int p = g.size();
    const std::size_t n = o.count;
    switch (o.kind) {
      case op_kind::all_gather:
        o.bytes.resize(static_cast<std::size_t>(p) * n);
        if (n > 0)
          for (int q = 0; q < p; ++q) std::memcpy(o.bytes.data() + q * n, o.send[q], n);
        break;
      case op_kind::reduce_scatter:
      case op_kind::all_reduce: {
        const std::size_t total = o.kind == op_kind::all_reduce ? n : static_cast<std::size_t>(p) * n;
        o.sums.assign(total, 0.0f);
        if (total > 0) {
          std::memcpy(o.sums.data(), o.send[0], total * sizeof(float));
          for (int q = 1; q < p; ++q) {
            const float* s = static_cast<const float*>(o.send[q]);
            for (std::size_t i = 0; i < total; ++i) o.sums[i] += s[i];
          }
        }
        break;
      }
      case op_kind::split: {
        std::ostringstream bad;
        for (int q = 0; q < p; ++q)
          if (o.color_key[q].first < 0) bad << " rank " << q << " (color " << o.color_key[q].first << ")";
        if (!bad.str().empty())
          return "split of " + g.name + ": colors must be >= 0, but" + bad.str() + " passed a negative one";
        std::vector<int> order(p);
        for (int q = 0; q < p; ++q) order[q] = q;
        // By color, then key, then rank: each color's ranks end up adjacent, in their new order.
        std::sort(order.begin(), order.end(), [&](int a, int b) {
          if (o.color_key[a] != o.color_key[b]) return o.color_key[a] < o.color_key[b];
          return a < b;
        });
        std::size_t i = 0;
        while (i < order.size()) {
          const int color = o.color_key[order[i]].first;
          auto sub = std::make_shared<group>();
          sub->run = g.run;
          sub->name = g.name + "/color " + std::to_string(color);
          for (; i < order.size() && o.color_key[order[i]].first == color; ++i) {
            o.split_rank[order[i]] = sub->size();
            o.split_groups[order[i]] = sub;
            sub->members.push_back(g.members[order[i]]);
          }
        }
        break;
      }
      case op_kind::barrier:
        break;
    }
    return {};
  }

  static void copy_out(const op& o, int rank, int p) {
    const std::size_t n = o.count;
    if (n == 0) return;
    switch (o.kind) {
      case op_kind::all_gather:
        std::memcpy(o.recv[rank], o.bytes.data(), static_cast<std::size_t>(p) * n);
        break;
      case op_kind::reduce_scatter:
        std::memcpy(o.recv[rank], o.sums.data() + static_cast<std::size_t>(rank) * n, n * sizeof(float));
        break;
      case op_kind::all_reduce:
        std::memcpy(o.recv[rank], o.sums.data(), n * sizeof(float));
        break;
      default:
        break;
    }
  }

  std::shared_ptr<group> g_;
  std::shared_ptr<op> o_;
  int rank_;
  std::uint64_t seq_;
  std::chrono::milliseconds timeout_;
  std::string where_;
  bool done_ = false;
};

}  // namespace detail

// One rank's handle on a group of run_in_process's threads. Made by run_in_process and split(), not by users.
class in_process_communicator final : public communicator {
 public:
  in_process_communicator(std::shared_ptr<detail::group> g, int rank) : g_(std::move(g)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return g_->size(); }
  std::string describe() const override {
    std::ostringstream s;
    s << "in-process, rank " << rank_ << " of " << size();
    if (g_->name != "world") s << " in " << g_->name << " (world rank " << g_->members[rank_] << ")";
    return s.str();
  }

  request iall_gather_bytes(const void* send, void* recv, std::size_t bytes) override {
    return post(detail::op_kind::all_gather, bytes, send, recv, {0, 0});
  }
  request ireduce_scatter(const float* send, float* recv, std::size_t count) override {
    return post(detail::op_kind::reduce_scatter, count, send, recv, {0, 0});
  }
  request iall_reduce(const float* send, float* recv, std::size_t count) override {
    return post(detail::op_kind::all_reduce, count, send, recv, {0, 0});
  }

  std::unique_ptr<communicator> split(int color, int key) override {
    std::shared_ptr<detail::op> o;
    {
      request r = post(detail::op_kind::split, 0, nullptr, nullptr, {color, key}, &o);
      r.wait();
    }
    auto sub = std::make_unique<in_process_communicator>(o->split_groups[rank_], o->split_rank[rank_]);
    sub->set_timeout(timeout());
    return sub;
  }

  void barrier() override { post(detail::op_kind::barrier, 0, nullptr, nullptr, {0, 0}).wait(); }

 private:
  request post(detail::op_kind kind, std::size_t count, const void* send, void* recv, std::pair<int, int> color_key,
               std::shared_ptr<detail::op>* out = nullptr) {
    const std::uint64_t seq = next_seq_++;
    const int p = size();
    std::shared_ptr<detail::op> o;
    {
      std::lock_guard<std::mutex> lock(g_->run->m);
      auto& slot = g_->ops[seq];
      if (!slot) slot = std::make_shared<detail::op>(kind, count, rank_, p);
      o = slot;
      if (o->error.empty() && (o->kind != kind || o->count != count)) {
        std::ostringstream s;
        s << "the ranks of " << g_->name << " called different collectives as #" << seq << ": rank "
          << o->first_rank << " called " << detail::op_name(o->kind, seq, o->count) << ", rank " << rank_
          << " called " << detail::op_name(kind, seq, count)
          << "; every rank must issue the same collectives in the same order with the same counts";
        o->error = s.str();
      }
      o->arrived_flag[rank_] = 1;
      ++o->arrived;
      o->send[rank_] = send;
      o->recv[rank_] = recv;
      o->color_key[rank_] = color_key;
    }
    g_->run->cv.notify_all();
    if (out) *out = o;
    return request(std::make_unique<detail::in_process_request>(g_, o, rank_, seq, timeout(), describe()));
  }

  std::shared_ptr<detail::group> g_;
  int rank_;
  std::uint64_t next_seq_ = 0;
};

// Runs fn(communicator&) on `ranks` threads, one per rank of a new group, and returns when all have ended.
// Collective waits give up after `timeout`. If ranks throw, the first exception by rank order is rethrown
// once every thread has ended, preferring an error of a rank's own to one raised because another rank
// failed (ranks waiting for a rank that threw are woken with an error naming it).
template <class F>
void run_in_process(int ranks, F fn, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  if (ranks < 1) vitscale::detail::fail("run_in_process: the number of ranks must be at least 1, got ", ranks);
  if (timeout.count() <= 0)
    vitscale::detail::fail("run_in_process: the time-out must be positive, got ", timeout.count(), " ms");
  auto run = std::make_shared<detail::run_state>(ranks);
  auto world = std::make_shared<detail::group>();
  world->run = run;
  world->name = "world";
  for (int r = 0; r < ranks; ++r) world->members.push_back(r);

  std::vector<std::exception_ptr> errors(ranks);
  std::vector<char> secondary(ranks, 0);
  const auto kokkos = vitscale::detail::kokkos_host_context::capture();

  auto ended = [&](int r, int how, std::string what) {
    {
      std::lock_guard<std::mutex> lock(run->m);
      run->ended[r] = how;
      run->failure[r] = std::move(what);
    }
    run->cv.notify_all();
  };

  auto body = [&](int r) {
    kokkos.adopt();
    detail::baton::instance().acquire();
    detail::holds_baton() = true;
    int how = 1;
    std::string what;
    try {
      in_process_communicator comm(world, r);
      comm.set_timeout(timeout);
      fn(static_cast<communicator&>(comm));
    } catch (const detail::peer_failure& e) {
      errors[r] = std::current_exception();
      secondary[r] = 1;
      how = 2;
      what = e.what();
    } catch (const std::exception& e) {
      errors[r] = std::current_exception();
      how = 2;
      what = e.what();
    } catch (...) {
      errors[r] = std::current_exception();
      how = 2;
      what = "an exception not derived from std::exception";
    }
    detail::holds_baton() = false;
    detail::baton::instance().release();
    ended(r, how, std::move(what));
  };

  std::vector<std::thread> threads;
  threads.reserve(ranks);
  std::exception_ptr start_failure;
  for (int r = 0; r < ranks; ++r) {
    try {
      threads.emplace_back(body, r);
    } catch (...) {
      // The ranks already running must not wait for ones that will never start.
      start_failure = std::current_exception();
      for (int q = r; q < ranks; ++q) ended(q, 2, "its thread could not be started");
      break;
    }
  }
  for (auto& t : threads) t.join();
  if (start_failure) std::rethrow_exception(start_failure);
  for (int r = 0; r < ranks; ++r)
    if (errors[r] && !secondary[r]) std::rethrow_exception(errors[r]);
  for (int r = 0; r < ranks; ++r)
    if (errors[r]) std::rethrow_exception(errors[r]);
}

}  // namespace vitscale::shard
