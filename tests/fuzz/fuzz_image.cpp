// libFuzzer target for vitscale::data::decode_image (include/vitscale/data/image_file.hpp): the checks that
// run before stb_image (format by magic bytes, dimensions against the limits, PNG's chunk walk and bounded
// inflate, JPEG's markers through EOI) and stb_image's decoding behind them. Each input is a whole file,
// decoded from memory under small limits (1 Mpx), so that nothing it may legitimately allocate comes near
// libFuzzer's -malloc_limit_mb. Anything but a vitscale::error is a bug: another exception, a crash, a
// sanitizer report, a leak, or an allocation over the limit.
//
// stb_image's implementation is compiled into the target (stb_image_impl.cpp), from the same header (Debian's
// libstb-dev) and with every format, as Debian's libstb has it, rather than linked from libstb: so it is
// instrumented, libFuzzer sees its coverage, and AddressSanitizer and UBSan check its own code, not only our
// calls into it (UBSan's shift checks excepted there: stb_image_impl.cpp says why).

#include "fuzz_common.hpp"

#include <vitscale/data/image_file.hpp>

#include <cstdint>
#include <string>

namespace {

using vitscale_fuzz::input_file;

void check(bool ok, const char* what) {
  if (!ok) input_file::die(std::string("decode_image broke a promise: ") + what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vitscale::data::image_limits limits;
  limits.max_pixels = 1u << 20;
  limits.max_side = 4096;
  vitscale_fuzz::run_expecting_only_vitscale_errors([&] {
    const vitscale::data::image_info info = vitscale::data::inspect_image("fuzz input", data, size, limits);
    check(info.width >= 1 && info.height >= 1 && std::uint64_t(info.width) * std::uint64_t(info.height) <= limits.max_pixels,
          "the dimensions are within the limits");
    check(info.decode_bytes <= limits.decode_budget(), "the decoding cost is within the budget");
    const vitscale::data::image img = vitscale::data::decode_image("fuzz input", data, size, limits);
    check(img.width == info.width && img.height == info.height && img.channels == info.channels,
          "the image is what inspect_image said");
    check(img.channels >= 1 && img.channels <= 4, "1 to 4 channels");
    check(img.pixels.size() == std::size_t(img.width) * std::size_t(img.height) * std::size_t(img.channels),
          "width x height x channels bytes");
  });
  return 0;
}
