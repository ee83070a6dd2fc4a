// libFuzzer target for the IDX readers (include/vitscale/data/idx.hpp): read_idx_images and
// read_idx_labels (with 10 and with 256 classes) on the same input, which zlib reads as plain or as gzip
// data alike. The input's fourth byte (the IDX rank) decides which of them can succeed; the others must
// refuse it with a vitscale::error. Anything but a vitscale::error is a bug: another exception, a crash, a
// sanitizer report, a leak, or a single allocation above libFuzzer's -malloc_limit_mb.

#include "fuzz_common.hpp"

#include <vitscale/data/idx.hpp>

#include <cstdint>
#include <vector>

namespace {

using vitscale_fuzz::input_file;

void check(bool ok, const char* what) {
  if (!ok) input_file::die(std::string("IDX reader broke a promise: ") + what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static input_file file("idx");
  const std::string& path = file.write(data, size);
  vitscale_fuzz::run_expecting_only_vitscale_errors([&] {
    const vitscale::data::idx_images images = vitscale::data::read_idx_images(path);
    check(images.count >= 0 && images.rows >= 1 && images.cols >= 1, "image dimensions are sane");
    check(images.pixels.size() == static_cast<std::size_t>(images.count) * static_cast<std::size_t>(images.rows) *
                                      static_cast<std::size_t>(images.cols),
          "pixels hold count x rows x cols bytes");
  });
  for (int classes : {10, 256}) {
    vitscale_fuzz::run_expecting_only_vitscale_errors([&] {
      const std::vector<int> labels = vitscale::data::read_idx_labels(path, classes);
      for (int label : labels) check(label >= 0 && label < classes, "labels lie in [0, num_classes)");
    });
  }
  return 0;
}
