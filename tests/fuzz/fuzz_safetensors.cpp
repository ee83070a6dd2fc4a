// libFuzzer target for vitscale::io::safetensors_reader (include/vitscale/io/safetensors.hpp).
// Each input is a whole file: it is opened, every tensor is listed and read through every read path (raw,
// float, bf16), and the entries are checked against what the reader promises (sizes, order, no overlap).
// Anything but a vitscale::error is a bug: another exception, a crash, a sanitizer report, a leak, or a
// single allocation above libFuzzer's -malloc_limit_mb.

#include "fuzz_common.hpp"

#include <vitscale/io/safetensors.hpp>

#include <cstdint>
#include <vector>

namespace {

using vitscale::bf16;
using vitscale::io::dtype;
using vitscale::io::safetensors_reader;
using vitscale_fuzz::input_file;

void check(bool ok, const char* what) {
  if (!ok) input_file::die(std::string("safetensors_reader broke a promise: ") + what);
}

void exercise(const std::string& path, std::size_t size) {
  safetensors_reader reader(path);
  check(reader.file_size() == size, "file_size() is the file's length");
  check(reader.data_offset() >= 8 && reader.data_offset() <= size, "data_offset() lies in the file");
  for (const auto& [key, value] : reader.metadata()) check(key.size() + value.size() <= size, "metadata from the file");

  std::uint64_t previous_end = 0;
  for (const auto& t : reader.tensors()) {
    check(t.begin <= t.end && reader.data_offset() + t.end <= size, "a tensor lies inside the file");
    if (t.begin != t.end) {
      check(t.begin >= previous_end, "tensors do not overlap");
      previous_end = t.end;
    }
    check(reader.contains(t.name) && reader.entry(t.name).name == t.name, "every listed tensor can be looked up");
    const std::int64_t numel = t.numel();
    check(numel >= 0 && static_cast<std::uint64_t>(numel) * vitscale::io::dtype_size(t.type) == t.bytes(),
          "shape x dtype size equals the tensor's bytes");

    std::vector<unsigned char> raw(static_cast<std::size_t>(t.bytes()));
    reader.read_raw(t.name, raw.data(), raw.size());
    vitscale_fuzz::expect_vitscale_error("read_raw with the wrong size",
                                         [&] { reader.read_raw(t.name, raw.data(), raw.size() + 1); });

    const bool converts = t.type == dtype::f32 || t.type == dtype::bf16 || t.type == dtype::f16 || t.type == dtype::f64;
    std::vector<float> f(static_cast<std::size_t>(numel));
    std::vector<bf16> b(static_cast<std::size_t>(numel));
    if (converts) {
      reader.read(t.name, f.data(), f.size());
      reader.read(t.name, b.data(), b.size());
      vitscale_fuzz::expect_vitscale_error("read with the wrong count",
                                           [&] { reader.read(t.name, f.data(), f.size() + 1); });
    } else {
      vitscale_fuzz::expect_vitscale_error("read of a non-float dtype as float",
                                           [&] { reader.read(t.name, f.data(), f.size()); });
      vitscale_fuzz::expect_vitscale_error("read of a non-float dtype as bf16",
                                           [&] { reader.read(t.name, b.data(), b.size()); });
    }
  }
  if (!reader.contains("\x01no such tensor"))
    vitscale_fuzz::expect_vitscale_error("a tensor that does not exist", [&] { (void)reader.entry("\x01no such tensor"); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static input_file file("safetensors");
  const std::string& path = file.write(data, size);
  vitscale_fuzz::run_expecting_only_vitscale_errors([&] { exercise(path, size); });
  return 0;
}
