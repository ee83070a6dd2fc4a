// The in-process communicator (shard/in_process.hpp) and the mesh (shard/mesh.hpp): every collective with
// 1 to 4 ranks against directly computed results, splits, time-outs, mismatches, failing ranks, and Kokkos
// kernels run from rank threads.
#include <doctest/doctest.h>
#include <vitscale/shard/in_process.hpp>
#include <vitscale/shard/mesh.hpp>

#include "shard/collectives.hpp"
#include "support/errors.hpp"

#include <Kokkos_Core.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

namespace vs = vitscale;
using vs::shard::run_in_process;
using namespace std::chrono_literals;

namespace vitscale::test {
// Waits (at most `limit`) until no rank thread that run_in_process detached is still running.
inline bool detached_ranks_end(std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (vs::shard::detached_rank_threads() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(10ms);
  return vs::shard::detached_rank_threads() == 0;
}
}  // namespace vitscale::test

TEST_CASE("in-process collectives agree with direct sums and gathers, 1 to 4 ranks") {
  for (int p = 1; p <= 4; ++p) {
    for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(7), std::size_t(1001)}) {
      run_in_process(p, [&](vs::communicator& comm) {
        CHECK(comm.size() == p);
        vs::test::check_collectives(comm, n, static_cast<int>(n) + 3 * p);
      });
    }
  }
}

TEST_CASE("in-process splits into rows and columns, and splits of splits") {
  run_in_process(4, [](vs::communicator& comm) { vs::test::check_splits(comm, 2, 1); });
  run_in_process(3, [](vs::communicator& comm) { vs::test::check_splits(comm, 1, 2); });
  run_in_process(3, [](vs::communicator& comm) { vs::test::check_splits(comm, 3, 3); });
  // A negative color is an error on every rank.
  std::atomic<int> errors{0};
  run_in_process(2, [&](vs::communicator& comm) {
    const std::string m = vs::test::error_of([&] { comm.split(comm.rank() == 1 ? -1 : 0, 0); });
    errors += m.find("colors must be >= 0") != std::string::npos && m.find("rank 1 (color -1)") != std::string::npos;
  });
  CHECK(errors == 2);
}

TEST_CASE("in-process describe and set_timeout") {
  run_in_process(2, [](vs::communicator& comm) {
    CHECK(comm.describe() == "in-process, rank " + std::to_string(comm.rank()) + " of 2");
    auto sub = comm.split(7, 0);
    CHECK(sub->describe().find("world/color 7") != std::string::npos);
    CHECK_ERROR(comm.set_timeout(0ms), "positive");
  });
  CHECK_ERROR(run_in_process(0, [](vs::communicator&) {}), "at least 1");
}

TEST_CASE("Kokkos kernels run from rank threads, between collectives") {
  run_in_process(3, [](vs::communicator& comm) {
    for (int round = 0; round < 3; ++round) {
      const int n = 1000 + comm.rank();
      double sum = 0;
      Kokkos::parallel_reduce(
          "rank_sum", Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, n),
          KOKKOS_LAMBDA(int i, double& s) { s += i; }, sum);
      float mine = static_cast<float>(sum), total = 0;
      comm.all_reduce(&mine, &total, 1);
      double want = 0;
      for (int r = 0; r < comm.size(); ++r) want += (1000.0 + r) * (999.0 + r) / 2;
      CHECK(total == doctest::Approx(want));
    }
  });
}

TEST_CASE("a rank that skips a collective: the others time out with an error naming it") {
  std::atomic<int> named{0};
  const auto start = std::chrono::steady_clock::now();
  CHECK_ERROR(run_in_process(
                  3,
                  [&](vs::communicator& comm) {
                    std::vector<float> x(1024, 1.0f);
                    comm.all_reduce(x.data(), x.data(), x.size());  // #0: everyone
                    if (comm.rank() == 1) {
                      // Alive but elsewhere: give the others their turns while "busy".
                      vs::shard::released_baton away;
                      std::this_thread::sleep_for(600ms);
                      return;
                    }
                    const std::string m = vs::test::error_of([&] { comm.all_reduce(x.data(), x.data(), x.size()); });
                    INFO(m);
                    // The first to time out names the ranks missing; the other learns that it gave up.
                    const bool own = m.find("all_reduce #1 (1024 floats)") != std::string::npos &&
                                     m.find("timed out after 200 ms") != std::string::npos &&
                                     m.find("missing: rank 1") != std::string::npos &&
                                     m.find("a rank may have died or hung in compute, or the ranks called "
                                            "different collectives") != std::string::npos;
                    CHECK((own || m.find("gave up") != std::string::npos));
                    named += own;
                    throw vs::error("rank " + std::to_string(comm.rank()) + " saw: " + m);
                  },
                  200ms),
              "timed out after 200 ms");
  CHECK(named >= 1);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  // run_in_process left rank 1 sleeping (one time-out after the first time-out): it ends by itself.
  CHECK(vs::test::detached_ranks_end(5s));
}

TEST_CASE("a rank that returns without a collective the others wait in: an error at once, not a time-out") {
  const auto start = std::chrono::steady_clock::now();
  CHECK_ERROR(run_in_process(
                  2,
                  [](vs::communicator& comm) {
                    if (comm.rank() == 1) return;
                    comm.barrier();
                  },
                  30s),
              "rank 1 returned without calling barrier #0");
  CHECK(std::chrono::steady_clock::now() - start < 10s);
}

TEST_CASE("mismatched counts are an error on every rank, with both counts") {
  std::atomic<int> errors{0};
  run_in_process(
      3,
      [&](vs::communicator& comm) {
        std::vector<float> x(10, 1.0f);
        const std::size_t n = comm.rank() == 2 ? 9 : 10;
        const std::string m = vs::test::error_of([&] { comm.all_reduce(x.data(), x.data(), n); });
        INFO(m);
        const bool ok = m.find("all_reduce #0 (10 floats) on rank") != std::string::npos &&
                        m.find("all_reduce #0 (9 floats) on rank 2") != std::string::npos &&
                        m.find(" does not match ") != std::string::npos &&
                        m.find("called different collectives") != std::string::npos;
        CHECK(ok);
        errors += ok;
        // A different kind at the same sequence number, too.
        const std::string k = vs::test::error_of([&] {
          if (comm.rank() == 0)
            comm.barrier();
          else
            comm.all_gather(x.data(), x.data() + 0, 0);
        });
        CHECK(k.find("barrier #1 on rank 0") != std::string::npos);
        CHECK(k.find("all_gather #1 (0 bytes) on rank") != std::string::npos);
      },
      5s);
  CHECK(errors == 3);
}

TEST_CASE("a throwing rank: its exception is rethrown, and ranks waiting for it are woken") {
  const auto start = std::chrono::steady_clock::now();
  std::atomic<int> woken{0};
  try {
    run_in_process(
        4,
        [&](vs::communicator& comm) {
          float x = 1, y = 0;
          comm.all_reduce(&x, &y, 1);
          if (comm.rank() == 2) throw std::logic_error("rank two's own failure");
          try {
            comm.all_reduce(&x, &y, 1);
          } catch (const vs::error& e) {
            const std::string m = e.what();
            woken += m.find("rank 2 failed before all_reduce #1") != std::string::npos &&
                     m.find("rank two's own failure") != std::string::npos;
            throw;  // as in a rank's code: the error propagates out of its function
          }
        },
        30s);
    FAIL("run_in_process returned");
  } catch (const std::logic_error& e) {
    CHECK(std::string(e.what()) == "rank two's own failure");
  }
  CHECK(woken == 3);
  CHECK(std::chrono::steady_clock::now() - start < 10s);
}

TEST_CASE("test() lets a polling rank make progress") {
  run_in_process(3, [](vs::communicator& comm) {
    std::vector<float> x(33, static_cast<float>(comm.rank()));
    vs::request r = comm.iall_reduce(x.data(), x.data(), x.size());
    while (!r.test()) {
    }
    r.wait();
    CHECK(x[32] == 3.0f);
  });
}

TEST_CASE("make_mesh: axes, indices and ordering") {
  for (auto [d, m] : {std::pair{1, 1}, std::pair{2, 2}, std::pair{1, 4}, std::pair{4, 1}, std::pair{1, 3}}) {
    run_in_process(d * m, [d = d, m = m](vs::communicator& world) {
      auto mesh = vs::shard::make_mesh(world, d, m);
      CHECK(mesh.data_index == world.rank() / m);
      CHECK(mesh.model_index == world.rank() % m);
      CHECK(mesh.model_axis->size() == m);
      CHECK(mesh.model_axis->rank() == mesh.model_index);
      CHECK(mesh.data_axis->size() == d);
      CHECK(mesh.data_axis->rank() == mesh.data_index);
      // Model-axis neighbours are adjacent world ranks: gather the world ranks along the model axis.
      int mine = world.rank();
      std::vector<int> along(m);
      mesh.model_axis->all_gather(&mine, along.data(), 1);
      for (int i = 0; i < m; ++i) CHECK(along[i] == mesh.data_index * m + i);
      std::vector<int> across(d);
      mesh.data_axis->all_gather(&mine, across.data(), 1);
      for (int i = 0; i < d; ++i) CHECK(across[i] == i * m + mesh.model_index);
    });
  }
}

TEST_CASE("make_mesh: a wrong mesh is an error on every rank") {
  std::atomic<int> errors{0};
  auto expect_everywhere = [&](int p, auto mesh_of, std::vector<std::string> parts) {
    errors = 0;
    run_in_process(
        p,
        [&](vs::communicator& world) {
          const std::pair<int, int> dm = mesh_of(world.rank());  // (structured bindings: C++20 to capture)
          const std::string msg = vs::test::error_of([&] { vs::shard::make_mesh(world, dm.first, dm.second); });
          INFO(msg);
          bool all = true;
          for (const auto& part : parts) all = all && msg.find(part) != std::string::npos;
          CHECK(all);
          errors += all;
        },
        5s);
    CHECK(errors == p);
  };
  expect_everywhere(4, [](int) { return std::pair{3, 1}; }, {"needs 3 ranks", "has 4"});
  expect_everywhere(2, [](int) { return std::pair{0, 2}; }, {"at least 1", "data 0"});
  expect_everywhere(
      4, [](int r) { return r == 3 ? std::pair{4, 1} : std::pair{2, 2}; },
      {"different meshes", "rank 0 data 2 x model 2", "rank 3 data 4 x model 1"});
  expect_everywhere(
      3, [](int r) { return r == 1 ? std::pair{-1, 3} : std::pair{1, 3}; }, {"different meshes", "rank 1 data -1"});
}

TEST_CASE("collective tags: text kept in the object, cut at the capacity, compared by text") {
  const std::string name = "block 3 qkv row exchange";
  const vs::collective_tag a = name.c_str(), b = name, none;
  CHECK(a == b);
  CHECK(a.hash() == b.hash());
  CHECK(a != none);
  CHECK(none.empty());
  CHECK(a.hash() != vs::collective_tag("block 4 qkv row exchange").hash());
  const vs::collective_tag cut = std::string(100, 'x');
  CHECK(std::string(cut.c_str()) == std::string(vs::collective_tag::capacity, 'x'));
  vs::collective_record r;
  r.kind = vs::collective_kind::all_reduce;
  r.seq = 7;
  r.count = 1;
  r.tag = "loss";
  CHECK(r.describe() == "all_reduce #7 'loss' (1 float)");
  r.tag = {};
  r.kind = vs::collective_kind::all_gather;
  r.count = 52;
  CHECK(r.describe() == "all_gather #7 (52 bytes)");
}

TEST_CASE("same-shaped collectives that differ in tag or kind: an error on every rank naming both") {
  std::atomic<int> named{0};
  run_in_process(
      2,
      [&](vs::communicator& comm) {
        const bool first = comm.rank() == 0;
        float x = 1, y = 0;
        float two[2] = {1, 2};
        // One rank sums its loss where the other sums gradients: one float each.
        const std::string tags = vs::test::error_of([&] { comm.all_reduce(&x, &y, 1, first ? "loss" : "gradients"); });
        // Different kinds, the same count: an all-reduce of one float and a reduce-scatter of one per rank.
        const std::string kinds = vs::test::error_of([&] {
          if (first)
            comm.all_reduce(&x, &y, 1, "sum");
          else
            comm.reduce_scatter(two, &y, 1, "sum");
        });
        // A tag left out matches only an empty tag.
        const std::string untagged = vs::test::error_of([&] {
          if (first)
            comm.barrier();
          else
            comm.barrier("end of epoch");
        });
        INFO(tags << "\n" << kinds << "\n" << untagged);
        auto has = [](const std::string& m, const char* part) { return m.find(part) != std::string::npos; };
        // The first rank to post is named first: either order.
        const bool ok = has(tags, "all_reduce #0 'loss' (1 float) on rank 0") &&
                        has(tags, "all_reduce #0 'gradients' (1 float) on rank 1") && has(tags, " does not match ") &&
                        has(kinds, "all_reduce #1 'sum' (1 float) on rank 0") &&
                        has(kinds, "reduce_scatter #1 'sum' (1 float) on rank 1") && has(kinds, " does not match ") &&
                        has(untagged, "barrier #2 on rank 0") && has(untagged, "barrier #2 'end of epoch' on rank 1");
        CHECK(ok);
        named += ok;
        // The communicator still works afterwards.
        comm.all_reduce(&x, &y, 1, "after the mismatches");
        CHECK(y == 2.0f);
      },
      5s);
  CHECK(named == 2);
}

TEST_CASE("a rank hung in compute, keeping the baton: the others fail within the time-out") {
  // Rank 1 "hangs": it keeps the baton (no collective, no released_baton) for ten time-outs. Ranks 0 and 2 wait
  // either in all_reduce #1 or for their turn after #0 (whichever the baton's queue gives); either way they
  // time out without the baton, and run_in_process reports it one time-out later, long before the hang ends.
  const auto timeout = 300ms;
  const auto hang = 3000ms;
  std::atomic<bool> hang_over{false};
  const auto start = std::chrono::steady_clock::now();
  const std::string m = vs::test::expected_error([&] {
    run_in_process(
        3,
        [&](vs::communicator& comm) {
          float x = 1, y = 0;
          comm.all_reduce(&x, &y, 1, "before the hang");
          if (comm.rank() == 1) {
            std::this_thread::sleep_for(hang);
            hang_over = true;
            return;
          }
          comm.all_reduce(&x, &y, 1, "after the hang");
        },
        timeout);
  });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  INFO(m);
  INFO("run_in_process returned after " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                                        << " ms");
  CHECK(m.find("timed out after 300 ms") != std::string::npos);
  CHECK(m.find("rank 1") != std::string::npos);
  CHECK(m.find("were detached") != std::string::npos);
  CHECK(elapsed >= timeout);
  CHECK(elapsed < timeout + 1500ms);  // without the fix the time-out waited for the baton: the whole hang
  CHECK_FALSE(hang_over);
  // The hung rank ends after its sleep, and the ranks waiting for the baton after it: nothing is left running.
  CHECK(vs::test::detached_ranks_end(10s));
  CHECK(hang_over);
}
