// libFuzzer target for vitscale::io::npz_reader (include/vitscale/io/npz.hpp).
// Each input is a whole .npz file. It is opened twice (with and without npz_options::void2_as_bf16, chosen
// by the input's length so that both run without doubling the work), every array is listed, verified (CRC),
// read raw, read as float and as bf16 where it converts, and read in a slice; refusals are checked to be
// vitscale::errors. Anything but a vitscale::error is a bug: another exception, a crash, a sanitizer report,
// a leak, or a single allocation above libFuzzer's -malloc_limit_mb.

#include "fuzz_common.hpp"

#include <vitscale/io/npz.hpp>

#include <cstdint>
#include <vector>

namespace {

using vitscale::bf16;
using vitscale::io::npz_entry;
using vitscale::io::npz_options;
using vitscale::io::npz_reader;
using vitscale_fuzz::input_file;

void check(bool ok, const char* what) {
  if (!ok) input_file::die(std::string("npz_reader broke a promise: ") + what);
}

void exercise_entry(npz_reader& reader, const npz_entry& e, std::size_t file_size) {
  check(reader.contains(e.name) && &reader.entry(e.name) == &e, "every listed array can be looked up");
  check(e.data_offset + e.compressed <= file_size, "a member lies inside the file");
  check(e.header_bytes <= e.uncompressed, "the .npy header lies inside its member");
  check(e.numel >= 0, "the element count is not negative");
  // Deflate expands at most ~1032:1, which the reader enforces on the declared size.
  check(e.uncompressed <= e.compressed * 1032 + 1032, "a member's declared size is one deflate can produce");

  vitscale_fuzz::run_expecting_only_vitscale_errors([&] { reader.verify(e.name); });

  vitscale_fuzz::run_expecting_only_vitscale_errors([&] {
    const std::uint64_t bytes = e.uncompressed - e.header_bytes;
    std::vector<unsigned char> raw(static_cast<std::size_t>(bytes));
    reader.read_raw(e.name, raw.data(), raw.size());
    if (e.item_size != 0) check(static_cast<std::uint64_t>(e.numel) * e.item_size == bytes, "shape x item size");
  });

  if (!reader.unreadable_reason(e).empty()) {
    check(!reader.convertible(e), "an array with an unreadable reason does not convert");
    vitscale_fuzz::expect_vitscale_error("reading an unconvertible array as float", [&] { (void)reader.read(e.name); });
    return;
  }
  vitscale_fuzz::run_expecting_only_vitscale_errors([&] {
    const std::vector<float> all = reader.read(e.name);
    check(all.size() == static_cast<std::size_t>(e.numel), "read() returns numel elements");
    std::vector<bf16> b(all.size());
    reader.read(e.name, b.data(), b.size());
    const std::uint64_t first = all.size() / 3;
    const std::size_t count = all.size() - static_cast<std::size_t>(first) - all.size() / 5;
    std::vector<float> slice(count);
    reader.read_slice(e.name, first, count, slice.data());
    vitscale_fuzz::expect_vitscale_error("a slice past the end",
                                         [&] { reader.read_slice(e.name, first, all.size() + 1, slice.data()); });
    vitscale_fuzz::expect_vitscale_error("read with the wrong count",
                                         [&] { reader.read(e.name, slice.data(), all.size() + 1); });
  });
}

void exercise(const std::string& path, std::size_t size) {
  npz_options options;
  options.void2_as_bf16 = size % 2 == 1;
  npz_reader reader(path, options);
  check(reader.file_size() == size, "file_size() is the file's length");
  for (const npz_entry& e : reader.entries()) exercise_entry(reader, e, size);
  if (!reader.contains("\x01no such array"))
    vitscale_fuzz::expect_vitscale_error("an array that does not exist", [&] { (void)reader.entry("\x01no such array"); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static input_file file("npz");
  const std::string& path = file.write(data, size);
  vitscale_fuzz::run_expecting_only_vitscale_errors([&] { exercise(path, size); });
  return 0;
}
