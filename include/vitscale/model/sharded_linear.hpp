#pragma once
// The collectives of ViT-22B's sharded linear layers, pipelined so that communication overlaps the products
// (the paper's "asynchronous parallel linear operations"). config/sharding.hpp says which tensors are split
// and why; this file moves the rows.
//
// Rows. Between blocks each model rank holds the residual stream of its own images (local rows). Inside a
// sharded block every rank needs the rows of the whole model-axis group: an output-split product (in_proj)
// reads all of them (all-gather in), an input-split product (the output products) produces a partial sum for
// all of them (reduce-scatter out). The local rows are cut into `chunks` equal chunks of whole images; the
// gathered buffer is chunk-major, then rank-major:
//     gathered rows of chunk c = [rank 0's chunk c | rank 1's chunk c | ...]
// so each chunk's collective is one contiguous rank-major buffer, every image stays contiguous (attention
// runs on the gathered rows as on m·B images), and the reduce-scatter of a chunk lands each rank's rows back
// in its own chunk c.
//
// Overlap. gather_rows posts every chunk's all-gather at once and runs compute(c) as soon as chunk c has
// arrived, so chunk c + 1 travels while chunk c is multiplied. reduce_scatter_rows runs produce(c), then
// posts that chunk's reduce-scatter and goes on with produce(c + 1). With an MPI communicator the collectives
// progress on their own thread (shard/mpi.hpp); time spent blocked in a wait is counted in `comm_stats`, so
// what was not hidden is measured, not guessed.

#include <vitscale/core/communicator.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <utility>

namespace vitscale {

// What the sharded layers communicated and how long they waited for it, since the last reset().
struct comm_stats {
  std::size_t collectives = 0;
  std::size_t bytes = 0;         // bytes sent into collectives by this rank (payload, not wire volume)
  double wait_seconds = 0.0;     // time blocked in wait(): the communication that was not hidden
  void reset() { *this = comm_stats{}; }
};

namespace model_detail {

// The local rows of a model rank, cut into chunks of whole images, and where they sit when gathered.
struct row_chunks {
  std::size_t local_rows = 0;  // this rank's rows (its images × tokens)
  std::size_t chunks = 1;
  std::size_t ranks = 1;
  std::size_t rows() const { return local_rows / chunks; }  // local rows per chunk
  std::size_t local_begin(std::size_t c) const { return c * rows(); }
  std::size_t gathered_begin(std::size_t c) const { return c * ranks * rows(); }
  std::size_t gathered_rows() const { return ranks * rows(); }  // gathered rows per chunk
  std::pair<std::size_t, std::size_t> gathered_range(std::size_t c) const {
    return {gathered_begin(c), gathered_begin(c) + gathered_rows()};
  }
};

// The most chunks, up to `wanted`, that split `images` images evenly.
inline std::size_t chunks_for(int images, int wanted) {
  int c = wanted < 1 ? 1 : wanted;
  if (c > images) c = images;
  while (c > 1 && images % c != 0) --c;
  return static_cast<std::size_t>(c < 1 ? 1 : c);
}

inline constexpr std::size_t max_chunks = 16;

class timed_wait {
 public:
  explicit timed_wait(comm_stats* stats) : stats_(stats), start_(std::chrono::steady_clock::now()) {}
  ~timed_wait() {
    if (stats_) stats_->wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  comm_stats* stats_;
  std::chrono::steady_clock::time_point start_;
};

// local: [local_rows, cols] -> gathered: [ranks · local_rows, cols] (chunk-major); compute(c) after chunk c.
template <class Space, class T, class Compute>
void gather_rows(const Space& space, communicator& comm, const row_chunks& rc, const T* local, std::size_t cols,
                 T* gathered, comm_stats* stats, Compute&& compute) {
  if (rc.chunks > max_chunks) detail::fail("sharded linear: at most ", max_chunks, " chunks, ", rc.chunks, " asked");
  space.fence();  // the collective reads what kernels queued on the space wrote
  std::array<request, max_chunks> pending;
  const std::size_t n = rc.rows() * cols;
  for (std::size_t c = 0; c < rc.chunks; ++c) {
    pending[c] = comm.iall_gather(local + rc.local_begin(c) * cols, gathered + rc.gathered_begin(c) * cols, n,
                                  "row exchange: gather rows");
    if (stats) {
      ++stats->collectives;
      stats->bytes += n * sizeof(T);
    }
  }
  for (std::size_t c = 0; c < rc.chunks; ++c) {
    {
      timed_wait t(stats);
      pending[c].wait();
    }
    compute(c);
  }
}

// produce(c) writes chunk c of partial: [ranks · local_rows, cols] (chunk-major) -> local: [local_rows, cols],
// the sum over the model axis of this rank's rows. local is complete when this returns.
template <class Space, class Produce>
void reduce_scatter_rows(const Space& space, communicator& comm, const row_chunks& rc, float* partial,
                         std::size_t cols, float* local, comm_stats* stats, Produce&& produce) {
  if (rc.chunks > max_chunks) detail::fail("sharded linear: at most ", max_chunks, " chunks, ", rc.chunks, " asked");
  std::array<request, max_chunks> pending;
  const std::size_t n = rc.rows() * cols;
  for (std::size_t c = 0; c < rc.chunks; ++c) {
    produce(c);
    space.fence();
    pending[c] = comm.ireduce_scatter(partial + rc.gathered_begin(c) * cols, local + rc.local_begin(c) * cols, n,
                                      "row exchange: sum partial rows");
    if (stats) {
      ++stats->collectives;
      stats->bytes += rc.ranks * n * sizeof(float);
    }
  }
  timed_wait t(stats);
  for (std::size_t c = 0; c < rc.chunks; ++c) pending[c].wait();
}

// How a block moves its rows: one code path for the whole model and for a rank of a model axis. Without an
// axis the block's rows are the local rows, in one piece; on an axis they are the group's, gathered and
// reduce-scattered chunk by chunk as above.
template <class Space>
struct row_exchange {
  using matrix = Kokkos::View<float**, Kokkos::LayoutRight, typename Space::memory_space, Kokkos::MemoryUnmanaged>;
  Space space;
  communicator* axis = nullptr;  // null: no model axis
  row_chunks rc;                 // the whole model: one chunk of the local rows on one rank
  comm_stats* stats = nullptr;

  std::size_t block_rows() const { return rc.ranks * rc.local_rows; }

  // Products that read the group's rows of a [local_rows, cols] matrix: body(k, rows_k, all) for each chunk
  // k, `all` the [block_rows, cols] matrix (the local one itself without an axis; `gathered` on one) and
  // rows_k its rows that have arrived.
  template <class T, class Body>
  void gather(T* local, std::size_t cols, T* gathered, Body&& body) const {
    if (!axis) {
      body(std::size_t(0), rc.gathered_range(0), local);
      return;
    }
    gather_rows(space, *axis, rc, local, cols, gathered, stats, [&](std::size_t k) { body(k, rc.gathered_range(k), gathered); });
  }

  // Products whose sum over the axis gives the local rows of `out` ([local_rows, cols]): produce(k, rows_k,
  // target, once) writes the rows rows_k of `target`. Without an axis `target` is `out` itself and `once` is
  // true (add what is added once: the biases); on an axis `target` is the float partial sums ([block_rows,
  // cols] at `partial`), reduce-scattered into `sum` ([local_rows, cols] float), and finish(sum) writes `out`.
  template <class Out, class Produce, class Finish>
  void reduce(const Out& out, float* partial, float* sum, Produce&& produce, Finish&& finish) const {
    if (!axis) {
      produce(std::size_t(0), rc.gathered_range(0), out, true);
      return;
    }
    const std::size_t cols = out.extent(1);
    const matrix part(partial, block_rows(), cols);
    reduce_scatter_rows(space, *axis, rc, partial, cols, sum, stats,
                        [&](std::size_t k) { produce(k, rc.gathered_range(k), part, false); });
    finish(matrix(sum, rc.local_rows, cols));
  }
};

// y = convert(sum + b1 + b2): the output products' replicated biases, added once after the reduce-scatter.
// sum: [rows, cols] float, b1, b2: [cols] -> y: [rows, cols]
template <class Space, class Sum, class B1, class B2, class Y>
void add_two_biases(const Space& space, const Sum& sum, const B1& b1, const B2& b2, const Y& y) {
  using T = typename Y::value_type;
  const std::size_t cols = sum.extent(1);
  Kokkos::parallel_for(
      "vitscale::add_two_biases", Kokkos::RangePolicy<Space>(space, 0, sum.extent(0) * cols), KOKKOS_LAMBDA(std::size_t e) {
        const std::size_t i = e / cols, j = e % cols;
        y(i, j) = static_cast<T>(sum(i, j) + static_cast<float>(b1(j)) + static_cast<float>(b2(j)));
      });
}

}  // namespace model_detail
}  // namespace vitscale
