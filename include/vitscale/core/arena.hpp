#pragma once
// Arenas: one allocation carved into many typed buffers.
//
// A layout is written once, as a function of an arena_cursor, and run twice: first on a cursor without
// memory, which only measures, then on the allocation. So the buffers' sizes and order are stated in one
// place, and nothing is allocated per buffer:
//
//   auto plan = [&](arena_cursor& a) { x = a.take<float>(n); y = a.take<bf16>(m); };
//   arena<Kokkos::HostSpace> memory;  memory.build(plan);
//
// Every buffer starts on a 64-byte boundary (a cache line; the widest vector loads want no less).

#include <vitscale/core/error.hpp>
#include <vitscale/core/kokkos_compat.hpp>

#include <cstddef>
#include <exception>
#include <cstdint>
#include <cstdio>
#include <string>

namespace vitscale {

class arena_cursor {
 public:
  static constexpr std::size_t alignment = 64;

  explicit arena_cursor(unsigned char* base = nullptr) : base_(base) {}

  // Room for n elements of T; nullptr while measuring.
  template <class T>
  T* take(std::size_t n) {
    offset_ = (offset_ + alignment - 1) / alignment * alignment;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += n * sizeof(T);
    return p;
  }
  // As a planner of declared buffers (config/activations.hpp): slot = take<T>(n), whatever the buffer's use.
  template <class T, class Use>
  void operator()(T*& slot, std::size_t n, Use) {
    slot = take<T>(n);
  }
  std::size_t bytes() const { return offset_; }

 private:
  unsigned char* base_;
  std::size_t offset_ = 0;
};

template <class MemorySpace>
class arena {
 public:
  explicit arena(std::string label = "vitscale::arena") : label_(std::move(label)) {}

  // Runs layout(cursor) to measure, allocates when the current allocation is too small (never shrinks), and
  // runs layout(cursor) again on the memory. Returns the bytes the layout uses.
  template <class Layout>
  std::size_t build(Layout&& layout) {
    arena_cursor measure;
    layout(measure);
    const std::size_t need = measure.bytes();
    if (need > storage_.extent(0)) {
      storage_ = Kokkos::View<unsigned char*, MemorySpace>();  // free the old one first: peak memory
      try {
        storage_ = Kokkos::View<unsigned char*, MemorySpace>(
            Kokkos::view_alloc(Kokkos::WithoutInitializing, label_), need + arena_cursor::alignment);
      } catch (const std::exception& e) {  // Kokkos' allocation failure: say what was asked for, and why
        char gib[32];
        std::snprintf(gib, sizeof gib, "%.1f", double(need) / double(1 << 30));
        detail::fail(label_, ": cannot allocate ", gib, " GiB in ", MemorySpace::name(),
                     " memory (activations grow with the batch): ", e.what());
      }
      ++allocations_;
    }
    arena_cursor place(aligned_base());
    layout(place);
    used_ = need;
    return need;
  }

  std::size_t capacity() const { return storage_.extent(0) == 0 ? 0 : storage_.extent(0) - arena_cursor::alignment; }
  std::size_t used() const { return used_; }
  // How many times build() had to allocate (tests check that steady-state use does not).
  std::size_t allocations() const { return allocations_; }
  void release() {
    storage_ = Kokkos::View<unsigned char*, MemorySpace>();
    used_ = 0;
  }

 private:
  unsigned char* aligned_base() const {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
    const std::uintptr_t aligned = (address + arena_cursor::alignment - 1) / arena_cursor::alignment *
                                   arena_cursor::alignment;
    return storage_.data() + (aligned - address);
  }

  std::string label_;
  Kokkos::View<unsigned char*, MemorySpace> storage_;
  std::size_t used_ = 0;
  std::size_t allocations_ = 0;
};

}  // namespace vitscale
