// libFuzzer target for the big_vision .npz mapping (include/vitscale/io/big_vision.hpp, load_big_vision into
// a parameter arena): per-block and scan-stacked names, the params/ and opt/target/ prefixes, the original
// ViT code's names, every tensor's shape checked against the model before anything is read. Each input is a
// whole .npz, loaded into three tiny shapes (class token with big_vision's position embedding, MAP head of
// depth 2, class token with the original code's class-token entry), with '|V2' read as bf16 for inputs of odd
// length. Anything but a vitscale::error is a bug: another exception, a crash, a sanitizer report, a leak, or
// an allocation above libFuzzer's -malloc_limit_mb. Seeds: make_seeds.py seeds_big_vision.

#include "fuzz_common.hpp"

#include <vitscale/io/big_vision.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

namespace vs = vitscale;
using vitscale_fuzz::input_file;

// make_seeds.py's BV_* constants: width 8, 2 heads, MLP 16, patch 2, 1 channel, 3 classes, resolution 4.
template <int Depth, class... O>
using bv_shape = vs::vit_shape<Depth, 8, 2, 16, 2,
                               vs::options<vs::opt::classes<3>, vs::opt::channels<1>, vs::opt::resolution<4>, O...>>;
using cls_shape = bv_shape<1, vs::opt::cls_posemb<false>>;
using map_shape = bv_shape<2, vs::opt::pool_map>;
using legacy_shape = bv_shape<1>;

template <class Shape>
using arena_t = vs::parameter_arena<Shape, float, Kokkos::HostSpace>;

// Made once and never destroyed: their Views must not outlive Kokkos, which is never finalised.
arena_t<cls_shape>* cls = nullptr;
arena_t<map_shape>* map = nullptr;
arena_t<legacy_shape>* legacy = nullptr;

void check(bool ok, const char* what) {
  if (!ok) input_file::die(std::string("load_big_vision broke a promise: ") + what);
}

template <class Shape>
void load(const std::string& path, arena_t<Shape>& arena, bool bf16) {
  vitscale_fuzz::run_expecting_only_vitscale_errors([&] {
    vs::io::big_vision_options options;
    options.void2_as_bf16 = bf16;
    const vs::io::big_vision_import r = vs::io::load_big_vision(path, arena, options);
    check(r.tensors == int(arena.table().size()), "a successful import fills every tensor");
  });
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  setenv("OMP_NUM_THREADS", "1", 1);
  setenv("OMP_PROC_BIND", "false", 1);
  Kokkos::initialize(*argc, *argv);
  cls = new arena_t<cls_shape>();
  map = new arena_t<map_shape>();
  legacy = new arena_t<legacy_shape>();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static input_file file("big_vision");
  const std::string& path = file.write(data, size);
  const bool bf16 = size % 2 == 1;
  load(path, *cls, bf16);
  load(path, *map, bf16);
  load(path, *legacy, bf16);
  return 0;
}
