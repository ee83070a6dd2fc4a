// The MPI communicator (shard/mpi.hpp) and the mesh over it, run by every rank of an MPI job
// (tests/shard/mpi_main.cpp; 1, 2 and 4 ranks in tests/shard/shard.cmake).
#include <doctest/doctest.h>
#include <vitscale/shard/mesh.hpp>
#include <vitscale/shard/mpi.hpp>

#include "shard/collectives.hpp"
#include "support/errors.hpp"

#include <Kokkos_Core.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace vs = vitscale;
using namespace std::chrono_literals;

namespace {
std::unique_ptr<vs::shard::mpi_communicator> world() {
  auto w = vs::shard::mpi_communicator::world();
  w->set_timeout(60s);
  return w;
}
}  // namespace

TEST_CASE("MPI collectives agree with direct sums and gathers") {
  auto comm = world();
  for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(7), std::size_t(1001)})
    vs::test::check_collectives(*comm, n, static_cast<int>(n));
  CHECK(comm->describe() == "MPI, rank " + std::to_string(comm->rank()) + " of " + std::to_string(comm->size()));
}

TEST_CASE("MPI collectives without the matching check") {
  auto comm = world();
  comm->set_check_matching(false);
  vs::test::check_collectives(*comm, 33, 5);
}

TEST_CASE("MPI splits into rows and columns, and splits of splits") {
  auto comm = world();
  const int p = comm->size();
  vs::test::check_splits(*comm, p % 2 == 0 && p > 2 ? 2 : 1, 1);
  vs::test::check_splits(*comm, p, 2);
  auto sub = comm->split(3, 0);
  CHECK(sub->describe().find("world/color 3") != std::string::npos);
  // (CHECK_ERROR's parts are C strings: built first, they outlive the check.)
  const std::string negative = "rank " + std::to_string(p - 1) + " (color -2)";
  CHECK_ERROR(comm->split(comm->rank() == p - 1 ? -2 : 0, 0), "colors must be >= 0", negative.c_str());
}

TEST_CASE("MPI counts above the per-call limit go in pieces (limit lowered to 5)") {
  auto comm = world();
  const int p = comm->size(), r = comm->rank();
  struct restore {
    ~restore() { vs::shard::detail::mpi_max_count() = static_cast<std::size_t>(INT_MAX); }
  } restore_limit;
  vs::shard::detail::mpi_max_count() = 5;
  const std::size_t n = 13;
  const auto mine = vs::test::rank_input(r, 77, n);
  std::vector<float> all(p * n);
  comm->all_gather(mine.data(), all.data(), n);  // 52 bytes: pieces of 5
  int bad = 0;
  for (int q = 0; q < p; ++q) {
    const auto theirs = vs::test::rank_input(q, 77, n);
    for (std::size_t i = 0; i < n; ++i) bad += all[q * n + i] != theirs[i];
  }
  CHECK(bad == 0);
  auto sum = mine;
  comm->all_reduce(sum.data(), sum.data(), n);
  CHECK(vs::test::check_sum(sum.data(), vs::test::rank_sum(p, 77, n), 0, n) == 0);
  std::vector<float> out(n);
  CHECK_ERROR(comm->reduce_scatter(all.data(), out.data(), n, "pieces"), "reduce_scatter #2 'pieces' (13 floats)",
              "more than MPI can count");
}

TEST_CASE("MPI: mismatched counts, kinds and tags are errors on every rank, naming each side") {
  auto comm = world();
  const int p = comm->size();
  if (p == 1) return;
  const bool first = comm->rank() == 0;
  // Rank 0's record is named first, then the others' (every rank but 0 calls the same here).
  const std::string others = p == 2 ? "on rank 1" : "on ranks 1, 2, 3";
  const std::string counts = "all_reduce #0 (10 floats) on rank 0 does not match all_reduce #0 (9 floats) " + others;
  const std::string kinds = "barrier #1 on rank 0 does not match all_reduce #1 (10 floats) " + others;
  const std::string tags = "all_reduce #2 'loss' (1 float) on rank 0 does not match all_reduce #2 'gradients' (1 float) " + others;
  const std::string same_count =
      "all_reduce #3 'sum' (1 float) on rank 0 does not match reduce_scatter #3 'sum' (1 float) " + others;
  std::vector<float> x(10, 1.0f);
  CHECK_ERROR(comm->all_reduce(x.data(), x.data(), first ? 10 : 9), "called different collectives", counts.c_str());
  CHECK_ERROR(first ? comm->barrier() : comm->all_reduce(x.data(), x.data(), 10), kinds.c_str());
  // Same kind and count, different tags: one rank sums its loss where the others sum gradients.
  CHECK_ERROR(comm->all_reduce(x.data(), x.data(), 1, first ? "loss" : "gradients"), tags.c_str());
  // Different kinds with the same count.
  std::vector<float> out(1);
  CHECK_ERROR(first ? comm->all_reduce(x.data(), x.data(), 1, "sum") : comm->reduce_scatter(x.data(), out.data(), 1, "sum"),
              same_count.c_str());
  // The communicator is still fine afterwards.
  vs::test::check_collectives(*comm, 3, 9);
}

TEST_CASE("MPI: a non-blocking all_reduce progresses while the caller computes") {
  auto comm = world();
  std::vector<float> x(1 << 16, 1.0f);
  vs::request r = comm->iall_reduce(x.data(), x.data(), x.size());
  double sum = 0;
  Kokkos::parallel_reduce(
      "work", Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, 1 << 20),
      KOKKOS_LAMBDA(int i, double& s) { s += 1.0 / (1.0 + i); }, sum);
  CHECK(sum > 0);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!r.test() && std::chrono::steady_clock::now() < deadline) {
  }
  CHECK(r.test());
  r.wait();
  CHECK(x[12345] == static_cast<float>(comm->size()));
}

TEST_CASE("MPI make_mesh: axes, indices and ordering") {
  auto comm = world();
  const int p = comm->size();
  std::vector<std::pair<int, int>> meshes = {{1, p}, {p, 1}};
  if (p == 4) meshes.push_back({2, 2});
  for (auto [d, m] : meshes) {
    auto mesh = vs::shard::make_mesh(*comm, d, m);
    CHECK(mesh.data_index == comm->rank() / m);
    CHECK(mesh.model_index == comm->rank() % m);
    CHECK(mesh.model_axis->size() == m);
    CHECK(mesh.model_axis->rank() == mesh.model_index);
    CHECK(mesh.data_axis->size() == d);
    CHECK(mesh.data_axis->rank() == mesh.data_index);
    int mine = comm->rank();
    std::vector<int> along(m);
    mesh.model_axis->all_gather(&mine, along.data(), 1);
    for (int i = 0; i < m; ++i) CHECK(along[i] == mesh.data_index * m + i);
    vs::test::check_collectives(*mesh.data_axis, 5, 40);
  }
}

TEST_CASE("MPI make_mesh: a wrong mesh is an error on every rank") {
  auto comm = world();
  const int p = comm->size();
  const std::string needs = "needs " + std::to_string(p + 1) + " ranks", has = "has " + std::to_string(p);
  CHECK_ERROR(vs::shard::make_mesh(*comm, p + 1, 1), needs.c_str(), has.c_str());
  CHECK_ERROR(vs::shard::make_mesh(*comm, 1, 0), "at least 1");
  if (p > 1) {
    const int last = p - 1;
    const std::string differs = "rank " + std::to_string(last) + " data " + std::to_string(p);
    CHECK_ERROR(vs::shard::make_mesh(*comm, comm->rank() == last ? p : 1, comm->rank() == last ? 1 : p),
                "different meshes", differs.c_str());
  }
  // And the communicator still works.
  comm->barrier();
}
