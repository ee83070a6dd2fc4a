// libFuzzer target for vitscale::io::infer_shape (include/vitscale/io/dispatch.hpp) on a safetensors file:
// the shape read from tensor names, shapes and metadata (block indices, dimensions as int, square-grid
// position embeddings, vitscale.* metadata parsed as integers), then dispatch over a few compiled shapes.
// Each input is a whole file. Anything but a vitscale::error is a bug: another exception (std::stoi's
// out_of_range, say), a crash, a sanitizer report (signed overflow in a 64 -> 32-bit size), or a leak.

#include "fuzz_common.hpp"

#include <vitscale/config/presets.hpp>
#include <vitscale/io/dispatch.hpp>

#include <cstdint>
#include <string>

namespace {

namespace vs = vitscale;
using vitscale_fuzz::input_file;

// The seeds' shapes (make_seeds.py seeds_infer_shape) and two presets: dispatch must pick or refuse.
using tiny_cls = vs::vit_shape<2, 8, 2, 16, 2, vs::options<vs::opt::classes<3>, vs::opt::channels<1>, vs::opt::resolution<4>>>;
using tiny_map = vs::vit_shape<1, 8, 2, 16, 2,
                               vs::options<vs::opt::classes<3>, vs::opt::channels<1>, vs::opt::resolution<4>, vs::opt::pool_map>>;
using candidates = vs::type_list<tiny_cls, tiny_map, vs::presets::vit_ti16, vs::presets::vit_b16>;

void check(bool ok, const char* what) {
  if (!ok) input_file::die(std::string("infer_shape broke a promise: ") + what);
}

void exercise(const std::string& path) {
  const vs::io::safetensors_reader file(path);
  const vs::shape_descriptor d = vs::io::infer_shape(file);
  check(d.depth >= 1 && d.width >= 1 && d.channels >= 1 && d.patch >= 1 && d.mlp_dim >= 1 && d.classes >= 1,
        "every size is positive");
  check(!d.heads || (*d.heads >= 1 && d.width % *d.heads == 0), "heads divide the width");
  check(!d.resolution || *d.resolution >= 1, "the resolution is positive");
  check(!d.to_string().empty(), "the shape prints");
  vitscale_fuzz::run_expecting_only_vitscale_errors(
      [&] { (void)vs::io::dispatch<candidates>(d, [](auto tag) { return vs::describe<typename decltype(tag)::type>().depth; }); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static input_file file("infer_shape");
  const std::string& path = file.write(data, size);
  vitscale_fuzz::run_expecting_only_vitscale_errors([&] { exercise(path); });
  return 0;
}
