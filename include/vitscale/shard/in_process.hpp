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
// Collectives of a communicator match by their sequence number on it, and must agree on their record
// (core/communicator.hpp: kind, sequence number, count, tag): the first rank to post one records it, and
// a rank posting a different record makes the collective an error on every rank, naming both ("all_reduce
// #7 'loss' (1 float) on rank 0 does not match all_reduce #7 'gradients' (1 float) on rank 1"). The copying
// is done inside wait(): the first rank to wait once every rank has posted stages the result (the gathered
// bytes or the sums, in rank order, so results are deterministic) into memory of the collective's own, and
// each rank copies its part out. No rank reads another's buffers after staging, so a rank may reuse its
// send buffer as soon as its wait() returns, and all_reduce in place is safe. Buffers are host memory.
//
// Failures are errors on every rank: different records at the same sequence number; a wait past the
// communicator's time-out (it names the collective and the ranks that had not arrived); a rank that
// returned or threw without calling a collective the others wait in. A rank hung in compute keeps the
// baton, so the time-outs are measured without it: a collective's wait runs without the baton, and a rank
// waiting to take the baton back (after a collective, at the end of a released_baton scope, or to start)
// times out when one holder has kept it for longer than the time-out ("rank 1 has kept the baton for 300
// ms without reaching a collective"). So the time-out also bounds how long one rank may compute between two
// collectives while others wait for their turn.
//
// What a rank does after its time-out. It records the time-out at once, without the baton (run_in_process
// and the other ranks see it), but throws only once it holds the baton again: unwinding the rank's
// function may run Kokkos kernels (in Kokkos 3.4 destroying a View of a class type, such as bf16, runs a
// destruction kernel), which must not overlap the hung rank's. run_in_process therefore does not wait for
// the hung rank: once a rank has timed out it waits at most one more time-out for every rank to end, then
// detaches the threads of the ranks still running (the hung one, and those waiting for the baton it
// keeps) and throws the first time-out, naming them. A detached rank ends when the hung one gives the
// baton up; a truly hung one never does. Until then the detached threads go on running the ranks'
// functions, which may refer to the caller's objects, and hold or wait for the baton, so that no other
// run_in_process can start its ranks (they time out waiting for their turn): treat the error as fatal
// and end the process (as an MPI program ends the job), or wait until detached_rank_threads() is 0 before
// touching what the ranks' functions use.

#include <vitscale/core/communicator.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <algorithm>
#include <atomic>
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

using steady = std::chrono::steady_clock;

inline long long milliseconds_of(steady::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// An error raised on a rank because another rank failed first; run_in_process rethrows the first error of
// a rank's own (by rank order) in preference to these.
class peer_failure : public vitscale::error {
 public:
  using vitscale::error::error;
};

// What every group of one run_in_process shares: one lock and one condition variable (a handful of
// threads; one lock keeps "a rank ended" visible to every wait of every group), how each rank ended, and
// the time-outs ranks hit before they could end.
struct run_state {
  explicit run_state(int n) : ended(n, 0), failure(n), timed_out(n), detached(n, 0) {}
  std::mutex m;
  std::condition_variable cv;
  std::vector<int> ended;  // 0: running, 1: returned, 2: threw
  std::vector<std::string> failure;
  std::vector<std::string> timed_out;  // a rank's first time-out, recorded when it happens
  std::vector<char> detached;          // run_in_process stopped waiting for the rank's thread
  bool any_timed_out = false;
  steady::time_point first_time_out;

  // Called with m held.
  void record_time_out(int rank, const std::string& message) {
    if (timed_out[rank].empty()) timed_out[rank] = message;
    if (!any_timed_out) {
      any_timed_out = true;
      first_time_out = steady::now();
    }
    cv.notify_all();
  }
};

// The calling thread as a rank of run_in_process (a default one on other threads: no run, no baton).
struct rank_thread {
  run_state* run = nullptr;
  int world_rank = -1;
  std::chrono::milliseconds patience{60000};  // the run's time-out, for turns outside a collective
  bool holds = false;                         // whether it holds the baton
  std::string overdue;                        // a time-out waiting for its turn, not thrown yet

  static rank_thread& current() {
    thread_local rank_thread me;
    return me;
  }
};

// A fair (first come, first served) lock: a rank that gives the baton up and asks again queues behind the
// ranks already waiting, so test() loops and wait() returns hand the turn on instead of taking it back.
// It knows its holder and since when, so that a waiting rank can tell that one holder kept it too long.
class baton {
 public:
  // Never destroyed: threads of ranks that run_in_process detached may still wait for it at exit.
  static baton& instance() {
    static baton* b = new baton();
    return *b;
  }

  struct holder {
    const run_state* run = nullptr;
    int rank = -1;
  };

  // Waits for the baton. If one holder keeps it for `patience` while this thread waits, calls
  // overdue(holder, held_for) once (without the baton's lock) and goes on waiting.
  template <class Overdue>
  void acquire(holder me, std::chrono::milliseconds patience, Overdue&& overdue) {
    std::unique_lock<std::mutex> lock(m_);
    const std::uint64_t ticket = next_++;
    bool told = false;
    while (serving_ != ticket) {
      if (told || !held_) {
        cv_.wait(lock);
        continue;
      }
      const steady::time_point due = since_ + patience;
      if (steady::now() < due) {
        cv_.wait_until(lock, due);
        continue;
      }
      told = true;
      const holder h = holder_;
      const steady::duration held_for = steady::now() - since_;
      lock.unlock();
      overdue(h, held_for);
      lock.lock();
    }
    held_ = true;
    holder_ = me;
    since_ = steady::now();
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(m_);
      ++serving_;
      held_ = false;
      holder_ = {};
      since_ = steady::now();
    }
    cv_.notify_all();
  }

 private:
  baton() = default;
  std::mutex m_;
  std::condition_variable cv_;
  std::uint64_t next_ = 0;
  std::uint64_t serving_ = 0;
  bool held_ = false;
  holder holder_;
  steady::time_point since_ = steady::now();
};

// Takes the baton back for the calling rank thread. If another rank keeps it for longer than `patience`
// meanwhile, records a time-out for this rank at once (run_in_process and the other ranks see it) and keeps
// it in rank_thread::overdue, to be thrown once this thread holds the baton (throw_overdue).
inline void take_turn(std::chrono::milliseconds patience) {
  rank_thread& me = rank_thread::current();
  baton::instance().acquire({me.run, me.world_rank}, patience, [&](baton::holder h, steady::duration held_for) {
    std::ostringstream s;
    s << "in-process rank " << me.world_rank << " timed out after " << patience.count()
      << " ms waiting for its turn: ";
    if (h.run == me.run) {
      s << "rank " << h.rank;
    } else {
      s << "a rank of another run_in_process (its rank " << h.rank << ")";
    }
    s << " has kept the baton for " << milliseconds_of(held_for)
      << " ms without reaching a collective; it may be hung in compute";
    me.overdue = s.str();
    if (me.run) {
      std::lock_guard<std::mutex> lock(me.run->m);
      me.run->record_time_out(me.world_rank, me.overdue);
    }
  });
  me.holds = true;
}

inline void give_turn() {
  rank_thread& me = rank_thread::current();
  me.holds = false;
  baton::instance().release();
}

inline void throw_overdue() {
  rank_thread& me = rank_thread::current();
  if (me.overdue.empty()) return;
  const std::string message = std::move(me.overdue);
  me.overdue.clear();
  throw vitscale::error(message);
}

// Rank threads that run_in_process detached and that have not ended yet.
inline std::atomic<int>& detached_rank_count() {
  static std::atomic<int> n{0};
  return n;
}

struct group;

// One collective, from the first rank's post until every rank has copied its result out.
struct op {
  op(const collective_record& c, int rank, int p)
      : record(c), first_rank(rank), arrived_flag(p, 0), send(p, nullptr), recv(p, nullptr), color_key(p, {0, 0}),
        split_groups(p), split_rank(p, 0) {}
  collective_record record;  // the first rank's; every other rank's must equal it
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

// The number of rank threads that run_in_process detached after a time-out and that are still running
// (see the header comment). A program that goes on after such an error waits for 0 before it touches what
// the ranks' functions use, or shuts Kokkos down.
inline int detached_rank_threads() { return detail::detached_rank_count().load(); }

// Gives up the calling rank thread's baton for its lifetime (other ranks run meanwhile) and takes it back
// at the end. Make no Kokkos calls in its scope. Does nothing on a thread that does not hold the baton. If
// another rank keeps the baton for longer than the run's time-out while this one waits for it at the end,
// the time-out is recorded then and thrown by this rank's next collective.
class released_baton {
 public:
  released_baton() : held_(detail::rank_thread::current().holds) {
    if (held_) detail::give_turn();
  }
  ~released_baton() {
    if (held_) detail::take_turn(detail::rank_thread::current().patience);
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
  in_process_request(std::shared_ptr<group> g, std::shared_ptr<op> o, int rank, std::chrono::milliseconds timeout,
                     std::string where)
      : g_(std::move(g)), o_(std::move(o)), rank_(rank), timeout_(timeout), where_(std::move(where)) {}

  // Waits for the collective without the baton, then takes the baton back and returns or throws.
  void wait() override {
    if (done_) return;
    done_ = true;
    const bool held = rank_thread::current().holds;
    if (held) give_turn();
    bool peer = false;
    const std::string error = complete(peer);
    if (held) take_turn(timeout_);
    if (!error.empty()) {
      rank_thread::current().overdue.clear();  // the collective's error says more
      if (peer) throw peer_failure(error);
      throw vitscale::error(error);
    }
    throw_overdue();
  }

  // True also once this rank timed out waiting for its turn, so that a rank polling test() reaches the
  // wait() that raises it.
  bool test() override {
    if (done_) return true;
    if (ready()) return true;
    if (rank_thread::current().holds) {  // one turn for the others, which may be the ranks this one waits for
      give_turn();
      take_turn(timeout_);
    }
    return ready() || !rank_thread::current().overdue.empty();
  }

 private:
  bool ready() {
    std::lock_guard<std::mutex> lock(g_->run->m);
    return o_->arrived == g_->size() || !o_->error.empty();
  }

  // Waits, without the baton, until the collective is complete on this rank (its result copied out) or
  // cannot complete; returns the error then (empty on success), and in `peer` whether another rank's
  // failure caused it. A time-out is recorded for run_in_process at once.
  std::string complete(bool& peer) {
    run_state& run = *g_->run;
    std::unique_lock<std::mutex> lock(run.m);
    const auto deadline = steady::now() + timeout_;
    const int p = g_->size();
    const collective_record& rec = o_->record;
    for (;;) {
      if (!o_->error.empty()) {
        peer = o_->error_is_peer;
        std::string message = o_->error;
        finish(lock);
        return message;
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
          s << "in-process rank " << w << " failed before " << rec.describe() << " of " << g_->name << " ("
            << run.failure[w] << "), so it cannot complete";
          o_->error_is_peer = true;
        } else {
          s << "in-process rank " << w << " returned without calling " << rec.describe() << " of " << g_->name
            << ", which the other ranks wait in: the ranks called different collectives";
        }
        o_->error = s.str();
        break;
      }
      if (!o_->error.empty()) {
        run.cv.notify_all();
        continue;
      }
      if (steady::now() >= deadline) {
        std::ostringstream s;
        s << rec.describe() << " on " << where_ << " timed out after " << timeout_.count() << " ms: " << o_->arrived
          << " of " << p << " ranks had arrived (missing:";
        for (int q = 0; q < p; ++q)
          if (!o_->arrived_flag[q]) s << " rank " << q;
        s << "); a rank may have died or hung in compute, or the ranks called different collectives";
        std::string mine = s.str();
        // The others must not wait for this rank, nor read its buffers once it has given up.
        o_->error = "in-process rank " + std::to_string(g_->members[rank_]) + " gave up: " + mine;
        o_->error_is_peer = true;
        run.record_time_out(g_->members[rank_], mine);
        finish(lock);
        return mine;
      }
      run.cv.wait_until(lock, deadline);
    }
    lock.unlock();
    copy_out(*o_, rank_, p);
    lock.lock();
    finish(lock);
    return {};
  }

  // Called with the run's lock held, once per rank that posted: the last one forgets the collective.
  void finish(std::unique_lock<std::mutex>&) {
    if (++o_->finished == g_->size()) g_->ops.erase(o_->record.seq);
  }

  // Runs on one rank once every rank has posted; reads every rank's send buffer. Returns an error message,
  // empty when the result is staged.
  static std::string stage(op& o, const group& g) {
    const int p = g.size();
    const std::size_t n = o.record.count;
    switch (o.record.kind) {
      case collective_kind::all_gather:
        o.bytes.resize(static_cast<std::size_t>(p) * n);
        if (n > 0)
          for (int q = 0; q < p; ++q) std::memcpy(o.bytes.data() + q * n, o.send[q], n);
        break;
      case collective_kind::reduce_scatter:
      case collective_kind::all_reduce: {
        const std::size_t total = o.record.kind == collective_kind::all_reduce ? n : static_cast<std::size_t>(p) * n;
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
      case collective_kind::split: {
        std::ostringstream bad;
        for (int q = 0; q < p; ++q)
          if (o.color_key[q].first < 0) bad << " rank " << q << " (color " << o.color_key[q].first << ")";
        if (!bad.str().empty())
          return o.record.describe() + " of " + g.name + ": colors must be >= 0, but" + bad.str() + " passed a negative one";
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
      case collective_kind::barrier:
        break;
    }
    return {};
  }

  static void copy_out(const op& o, int rank, int p) {
    const std::size_t n = o.record.count;
    if (n == 0) return;
    switch (o.record.kind) {
      case collective_kind::all_gather:
        std::memcpy(o.recv[rank], o.bytes.data(), static_cast<std::size_t>(p) * n);
        break;
      case collective_kind::reduce_scatter:
        std::memcpy(o.recv[rank], o.sums.data() + static_cast<std::size_t>(rank) * n, n * sizeof(float));
        break;
      case collective_kind::all_reduce:
        std::memcpy(o.recv[rank], o.sums.data(), n * sizeof(float));
        break;
      default:
        break;
    }
  }

  std::shared_ptr<group> g_;
  std::shared_ptr<op> o_;
  int rank_;
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

 protected:
  request start_all_gather(const collective_record& c, const void* send, void* recv) override {
    return post(c, send, recv, {0, 0});
  }
  request start_reduce_scatter(const collective_record& c, const float* send, float* recv) override {
    return post(c, send, recv, {0, 0});
  }
  request start_all_reduce(const collective_record& c, const float* send, float* recv) override {
    return post(c, send, recv, {0, 0});
  }

  std::unique_ptr<communicator> start_split(const collective_record& c, int color, int key) override {
    std::shared_ptr<detail::op> o;
    {
      request r = post(c, nullptr, nullptr, {color, key}, &o);
      r.wait();
    }
    auto sub = std::make_unique<in_process_communicator>(o->split_groups[rank_], o->split_rank[rank_]);
    sub->set_timeout(timeout());
    return sub;
  }

  void start_barrier(const collective_record& c) override { post(c, nullptr, nullptr, {0, 0}).wait(); }

 private:
  request post(const collective_record& c, const void* send, void* recv, std::pair<int, int> color_key,
               std::shared_ptr<detail::op>* out = nullptr) {
    detail::throw_overdue();  // a rank that timed out waiting for its turn starts nothing more
    const int p = size();
    std::shared_ptr<detail::op> o;
    {
      std::lock_guard<std::mutex> lock(g_->run->m);
      auto& slot = g_->ops[c.seq];
      if (!slot) slot = std::make_shared<detail::op>(c, rank_, p);
      o = slot;
      if (o->error.empty() && o->record != c)
        o->error = vitscale::detail::mismatch_message("in-process group " + g_->name, {{o->first_rank, o->record}, {rank_, c}});
      o->arrived_flag[rank_] = 1;
      ++o->arrived;
      o->send[rank_] = send;
      o->recv[rank_] = recv;
      o->color_key[rank_] = color_key;
    }
    g_->run->cv.notify_all();
    if (out) *out = o;
    return request(std::make_unique<detail::in_process_request>(g_, o, rank_, timeout(), describe()));
  }

  std::shared_ptr<detail::group> g_;
  int rank_;
};

namespace detail {

// What run_in_process's threads share with it, kept alive by each of them: a detached thread may outlive
// the call.
template <class F>
struct run_control {
  run_control(F f, int ranks, std::chrono::milliseconds t)
      : fn(std::move(f)), run(std::make_shared<run_state>(ranks)), world(std::make_shared<group>()), errors(ranks),
        secondary(ranks, 0), timeout(t), kokkos(vitscale::detail::kokkos_host_context::capture()) {
    world->run = run;
    world->name = "world";
    for (int r = 0; r < ranks; ++r) world->members.push_back(r);
  }

  // Marks rank r ended; returns whether run_in_process detached its thread.
  bool end(int r, int how, std::string what) {
    bool was_detached = false;
    {
      std::lock_guard<std::mutex> lock(run->m);
      run->ended[r] = how;
      run->failure[r] = std::move(what);
      was_detached = run->detached[r] != 0;
    }
    run->cv.notify_all();
    return was_detached;
  }

  // The body of rank r's thread, until its function has ended (returned or thrown) and the baton is given up.
  void run_rank(int r, int& how, std::string& what) {
    rank_thread& me = rank_thread::current();
    me.run = run.get();
    me.world_rank = r;
    me.patience = timeout;
    kokkos.adopt();
    try {
      take_turn(timeout);
      throw_overdue();
      in_process_communicator comm(world, r);
      comm.set_timeout(timeout);
      fn(static_cast<communicator&>(comm));
    } catch (const peer_failure& e) {
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
    if (me.holds) give_turn();
    me = rank_thread{};
  }

  F fn;
  std::shared_ptr<run_state> run;
  std::shared_ptr<group> world;
  std::vector<std::exception_ptr> errors;
  std::vector<char> secondary;  // errors[r] is a peer_failure
  std::chrono::milliseconds timeout;
  vitscale::detail::kokkos_host_context kokkos;
};

}  // namespace detail

// Runs fn(communicator&) on `ranks` threads, one per rank of a new group, and returns when all have ended.
// Collective waits, and waits for a turn with the baton, give up after `timeout`. If ranks throw, the first
// exception by rank order is rethrown once every thread has ended, preferring an error of a rank's own to
// one raised because another rank failed (ranks waiting for a rank that threw are woken with an error
// naming it). Once a rank has timed out, it waits at most one more `timeout` for the ranks to end, then
// detaches the threads still running and throws the first time-out (see the header comment).
template <class F>
void run_in_process(int ranks, F fn, std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  if (ranks < 1) vitscale::detail::fail("run_in_process: the number of ranks must be at least 1, got ", ranks);
  if (timeout.count() <= 0)
    vitscale::detail::fail("run_in_process: the time-out must be positive, got ", timeout.count(), " ms");
  auto control = std::make_shared<detail::run_control<F>>(std::move(fn), ranks, timeout);
  detail::run_state& run = *control->run;

  std::vector<std::thread> threads;
  threads.reserve(ranks);
  std::exception_ptr start_failure;
  for (int r = 0; r < ranks; ++r) {
    try {
      threads.emplace_back([control, r]() mutable {
        int how = 1;
        std::string what;
        control->run_rank(r, how, what);
        const bool detached = control->end(r, how, std::move(what));
        control.reset();
        if (detached) --detail::detached_rank_count();
      });
    } catch (...) {
      // The ranks already running must not wait for ones that will never start.
      start_failure = std::current_exception();
      for (int q = r; q < ranks; ++q) control->end(q, 2, "its thread could not be started");
      break;
    }
  }

  // Every rank ends, or, once one has timed out, one more time-out passes: the ranks still running then are
  // left behind (a hung one, and those waiting for the baton it keeps).
  std::vector<int> left;
  {
    std::unique_lock<std::mutex> lock(run.m);
    for (;;) {
      if (std::all_of(run.ended.begin(), run.ended.end(), [](int e) { return e != 0; })) break;
      if (!run.any_timed_out) {
        run.cv.wait(lock);
        continue;
      }
      const auto give_up = run.first_time_out + timeout;
      if (detail::steady::now() < give_up) {
        run.cv.wait_until(lock, give_up);
        continue;
      }
      for (int r = 0; r < ranks; ++r) {
        if (run.ended[r] != 0) continue;
        run.detached[r] = 1;
        left.push_back(r);
      }
      detail::detached_rank_count() += static_cast<int>(left.size());
      break;
    }
  }
  for (std::size_t r = 0; r < threads.size(); ++r) {
    if (std::find(left.begin(), left.end(), static_cast<int>(r)) != left.end()) {
      threads[r].detach();
    } else {
      threads[r].join();
    }
  }
  if (start_failure) std::rethrow_exception(start_failure);
  if (!left.empty()) {
    std::ostringstream s;
    {
      std::lock_guard<std::mutex> lock(run.m);
      const auto first = std::find_if(run.timed_out.begin(), run.timed_out.end(), [](const std::string& m) { return !m.empty(); });
      s << *first;
    }
    s << " (run_in_process stopped waiting " << timeout.count() << " ms later for rank";
    s << (left.size() > 1 ? "s" : "");
    for (std::size_t i = 0; i < left.size(); ++i) s << (i ? ", " : " ") << left[i];
    s << ", which had not ended: their threads were detached, and go on until the baton is free; end the process, "
         "or wait until shard::detached_rank_threads() is 0)";
    throw vitscale::error(s.str());
  }
  for (int r = 0; r < ranks; ++r)
    if (control->errors[r] && !control->secondary[r]) std::rethrow_exception(control->errors[r]);
  for (int r = 0; r < ranks; ++r)
    if (control->errors[r]) std::rethrow_exception(control->errors[r]);
}

}  // namespace vitscale::shard
