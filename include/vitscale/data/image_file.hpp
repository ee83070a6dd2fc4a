#pragma once
// PNG and JPEG files into 8-bit pixels, for files nobody vouches for.
//
//   vitscale::data::image img = vitscale::data::read_image("cat.jpg");         // default limits
//   vitscale::data::image img = vitscale::data::decode_image(name, bytes, size, limits);
//
// Decoding is stb_image's (stbi_load_from_memory, 8 bits per sample, the file's channels: grey, grey+alpha,
// RGB, RGBA; a palette expands to RGB or RGBA; 16-bit PNG samples are reduced to 8 bits). stb_image decodes
// every format it was built with and trusts the sizes a file declares, so before it sees a byte this header
// checks, from the file's own structure:
//   - the format, by magic bytes: PNG (\x89PNG\r\n\x1a\n) and JPEG (FF D8 FF) only; any other file (PGM/PPM,
//     GIF, BMP, PSD, HDR, PIC, TGA, ...) is refused with its name, even where stb could decode it;
//   - the file's size (image_limits::max_file_bytes) before it is read;
//   - the dimensions: neither side 0 or above max_side, width × height at most max_pixels, and the memory the
//     decoder works in at most max_decode_bytes (see image_limits: a 16-bit or progressive image costs more
//     per pixel than the 8-bit image returned);
//   - PNG: the chunk structure up to IEND (a truncated file is refused), IHDR's depth and colour type, and
//     the image data inflated (zlib, streamed through 64 KiB, nothing kept) must be at least what the
//     dimensions need and at most that plus 64 KiB: stb_image grows its inflate buffer by doubling (each
//     realloc holding old and new) for as long as the stream produces bytes, so a 65 KB file whose IDAT
//     inflates to 67 MB made stb allocate ~200 MB for a 1×1 image; a short stream is a truncated file;
//   - JPEG: the marker structure from SOI through a frame header (SOF) to EOI: a file that ends before its
//     EOI marker is refused as truncated (stb_image's own message for it is "expected marker");
//     arithmetic-coded, lossless and hierarchical JPEGs, which stb_image does not decode, are refused; every
//     Huffman table holds at most 256 codes (stb_image 2.27, Debian 12's, writes past its tables otherwise),
//     and every scan uses Huffman and quantisation tables defined before it (stb_image does not clear its
//     tables, and reads past them decoding with one never defined): both found by tests/fuzz/fuzz_image.
// stb_image's own failures become errors naming the file and stbi_failure_reason(). Every refusal is a
// vitscale::error naming the file, what was found and what is accepted.
//
// Dependencies: stb_image (not needed by the rest of vitscale, and not included by vitscale/vit.hpp): its
// header on the include path and its implementation linked (Debian's libstb-dev: -I/usr/include/stb -lstb;
// or STB_IMAGE_IMPLEMENTATION defined in one translation unit of yours), and zlib (ZLIB::ZLIB).

#include <vitscale/core/error.hpp>

#if !__has_include(<stb_image.h>)
#error "vitscale/data/image_file.hpp needs stb_image.h on the include path (Debian: libstb-dev, /usr/include/stb)"
#endif
#include <stb_image.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace vitscale::data {

// What read_image/decode_image accept. The defaults suit photographs and datasets; lower them for a server.
struct image_limits {
  // PIL's Image.MAX_IMAGE_PIXELS (above it PIL warns of a decompression bomb; at twice it, refuses): the same
  // photographs open in both. 89,478,485 px is e.g. 9459 × 9459, or a 100-megapixel sensor's image refused.
  static constexpr std::uint64_t default_max_pixels = 89'478'485;
  std::uint64_t max_pixels = default_max_pixels;
  // Either side: JPEG cannot exceed 65535; a PNG wider or taller than this is refused as implausible.
  std::uint32_t max_side = 65535;
  // The memory stb_image decodes in, estimated from the header: width × height × channels × bytes per sample
  // (2 for 16-bit PNG, whose samples are decoded at 16 bits before the reduction to 8) for PNG, and × 3 for a
  // progressive JPEG (stb_image keeps 16-bit coefficients besides the 8-bit planes). 0 means 4 × max_pixels:
  // an 8-bit RGBA image at the pixel limit (358 MB at the default); a 16-bit RGBA PNG then gets 44.7 Mpx, a
  // progressive RGB JPEG 39.8 Mpx. stb_image's peak is about 2–3 times this (compressed data, inflated rows,
  // the image, the 16→8-bit copy).
  std::uint64_t max_decode_bytes = 0;
  // The file itself is read into memory whole.
  std::uint64_t max_file_bytes = std::uint64_t(512) << 20;

  std::uint64_t decode_budget() const { return max_decode_bytes ? max_decode_bytes : 4 * max_pixels; }
};

enum class image_format { png, jpeg };

inline const char* to_string(image_format f) { return f == image_format::png ? "PNG" : "JPEG"; }

// What a file's header says, checked against the limits.
struct image_info {
  image_format format = image_format::png;
  int width = 0, height = 0;
  int channels = 0;         // what decode_image returns: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
  int bits = 8;             // bits per sample in the file (PNG: 1, 2, 4, 8, 16; JPEG: 8)
  bool progressive = false; // JPEG: progressive (SOF2)
  bool interlaced = false;  // PNG: Adam7
  std::uint64_t decode_bytes = 0;  // the estimate checked against image_limits::decode_budget()
};

// 8-bit pixels, [height, width, channels] row-major.
struct image {
  int width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;
};

namespace detail {

inline std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}
inline std::uint32_t be16(const unsigned char* p) { return (std::uint32_t(p[0]) << 8) | p[1]; }

// The format a file's first bytes show, for the message that refuses it; empty if none is recognised.
inline std::string other_format_name(const unsigned char* d, std::size_t n) {
  auto starts = [&](const char* magic, std::size_t len) { return n >= len && std::memcmp(d, magic, len) == 0; };
  if (n >= 2 && d[0] == 'P' && d[1] >= '1' && d[1] <= '7') {
    const char* kinds[] = {"PBM", "PGM", "PPM", "PBM", "PGM", "PPM", "PAM"};
    return std::string(kinds[d[1] - '1']) + " (netpbm) image (P" + char(d[1]) + ")";
  }
  if (starts("GIF87a", 6) || starts("GIF89a", 6)) return "GIF image";
  if (starts("BM", 2)) return "BMP image";
  if (starts("8BPS", 4)) return "Photoshop (PSD) image";
  if (starts("#?RADIANCE", 10) || starts("#?RGBE", 6)) return "Radiance HDR image";
  if (starts("\x53\x80\xF6\x34", 4)) return "Softimage PIC image";
  if (starts("II*\0", 4) || starts("MM\0*", 4)) return "TIFF image";
  if (n >= 12 && starts("RIFF", 4) && std::memcmp(d + 8, "WEBP", 4) == 0) return "WebP image";
  if (starts("qoif", 4)) return "QOI image";
  if (n >= 12 && std::memcmp(d + 4, "ftyp", 4) == 0) return "HEIF/AVIF (ISO media) file";
  if (starts("\0\0\0\x0CjP  ", 8) || starts("\xFF\x4F\xFF\x51", 4)) return "JPEG 2000 image";
  if (starts("\xFF\x0A", 2)) return "JPEG XL image";
  if (starts("\x89PNG", 4)) return "damaged PNG file (its 8-byte signature is wrong)";
  return {};
}

inline std::string first_bytes(const unsigned char* d, std::size_t n) {
  std::string s;
  char hex[4];
  for (std::size_t i = 0; i < std::min<std::size_t>(n, 8); ++i) {
    std::snprintf(hex, sizeof hex, "%s%02X", i ? " " : "", d[i]);
    s += hex;
  }
  return n == 0 ? "no bytes: the file is empty" : s;
}

inline std::uint64_t png_row_bytes(std::uint64_t width, int samples, int bits) {
  return (width * std::uint64_t(samples) * std::uint64_t(bits) + 7) / 8;
}

// The inflated size of a PNG's image data: filter byte + samples per row, per row, per Adam7 pass if interlaced.
inline std::uint64_t png_raw_bytes(std::uint64_t w, std::uint64_t h, int samples, int bits, bool interlaced) {
  if (!interlaced) return h * (1 + png_row_bytes(w, samples, bits));
  static constexpr int x0[7] = {0, 4, 0, 2, 0, 1, 0}, y0[7] = {0, 0, 4, 0, 2, 0, 1};
  static constexpr int dx[7] = {8, 8, 4, 4, 2, 2, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
  std::uint64_t total = 0;
  for (int p = 0; p < 7; ++p) {
    const std::uint64_t pw = w > std::uint64_t(x0[p]) ? (w - x0[p] + dx[p] - 1) / dx[p] : 0;
    const std::uint64_t ph = h > std::uint64_t(y0[p]) ? (h - y0[p] + dy[p] - 1) / dy[p] : 0;
    if (pw && ph) total += ph * (1 + png_row_bytes(pw, samples, bits));
  }
  return total;
}

class image_checker {
 public:
  image_checker(const std::string& name, const image_limits& limits) : name_(name), limits_(limits) {}

  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    ::vitscale::detail::fail("image file '", name_, "' ", std::forward<Parts>(parts)...);
  }

  void check_dimensions(image_info& info) const {
    const char* kind = to_string(info.format);
    if (info.width < 1 || info.height < 1)
      fail("is a ", kind, " of ", info.width, " x ", info.height, " pixels: an image has at least one pixel");
    if (std::uint32_t(info.width) > limits_.max_side || std::uint32_t(info.height) > limits_.max_side)
      fail("is a ", kind, " of ", info.width, " x ", info.height, " pixels; a side of more than ", limits_.max_side,
           " pixels is refused (image_limits::max_side)");
    const std::uint64_t pixels = std::uint64_t(info.width) * std::uint64_t(info.height);
    if (pixels > limits_.max_pixels)
      fail("is a ", kind, " of ", info.width, " x ", info.height, " = ", pixels, " pixels, more than the limit of ",
           limits_.max_pixels, " pixels (image_limits::max_pixels; classify: --max-pixels)");
    if (info.decode_bytes > limits_.decode_budget())
      fail("is a ", kind, " of ", info.width, " x ", info.height, " pixels, ", info.channels, " channel(s) of ",
           info.bits, " bits", info.progressive ? ", progressive" : "", ", which stb_image decodes in about ",
           info.decode_bytes, " bytes, more than the limit of ", limits_.decode_budget(),
           " bytes (image_limits::max_decode_bytes; 4 bytes per pixel of the pixel limit by default)");
  }

  image_info inspect_png(const unsigned char* d, std::size_t n) const {
    image_info info;
    info.format = image_format::png;
    std::size_t at = 8;
    auto chunk_name = [](const unsigned char* t) {
      std::string s;
      for (int i = 0; i < 4; ++i) s += (t[i] >= 0x20 && t[i] < 0x7F) ? char(t[i]) : '?';
      return s;
    };
    bool seen_ihdr = false, seen_plte = false, seen_trns = false, in_idat_run = false, idat_done = false;
    int samples = 0, colour = 0;
    std::uint64_t expected = 0, produced = 0;
    bool stream_ended = false;
    z_stream z{};
    bool z_started = false;
    struct guard {
      z_stream* z;
      bool* started;
      ~guard() {
        if (*started) inflateEnd(z);
      }
    } g{&z, &z_started};
    std::vector<unsigned char> scratch;
    for (;;) {
      if (n - at < 12)
        fail("is a truncated PNG: it ends ", at == n ? "" : "inside a chunk header ", "at byte ", n,
             " without an IEND chunk");
      const std::uint32_t length = be32(d + at);
      const unsigned char* type = d + at + 4;
      const std::string tname = chunk_name(type);
      if (length > 0x7FFFFFFFu || length > n - at - 12)
        fail("is a truncated PNG: its ", tname, " chunk at byte ", at, " claims ", length, " bytes, but ",
             n - at - 12, " follow");
      const unsigned char* body = d + at + 8;
      if (!seen_ihdr && tname != "IHDR" && tname != "CgBI")
        fail("is not a valid PNG: its first chunk is ", tname, ", not IHDR");
      if (tname == "CgBI") fail("is an Apple CgBI PNG (iOS-optimised), not a standard PNG; convert it first");
      if (tname == "IHDR") {
        if (seen_ihdr) fail("is not a valid PNG: it has two IHDR chunks");
        if (length != 13) fail("is not a valid PNG: its IHDR chunk is ", length, " bytes, not 13");
        seen_ihdr = true;
        const std::uint32_t w = be32(body), h = be32(body + 4);
        const int bits = body[8];
        colour = body[9];
        if (body[10] != 0 || body[11] != 0)
          fail("is a PNG with compression method ", int(body[10]), " and filter method ", int(body[11]),
               "; PNG defines only 0 for both");
        if (body[12] > 1) fail("is a PNG with interlace method ", int(body[12]), "; PNG defines 0 (none) and 1 (Adam7)");
        static const struct {
          int colour, samples;
          const char* depths;
        } kinds[] = {{0, 1, "\x01\x02\x04\x08\x10"}, {2, 3, "\x08\x10"}, {3, 1, "\x01\x02\x04\x08"},
                     {4, 2, "\x08\x10"}, {6, 4, "\x08\x10"}};
        bool ok = false;
        for (const auto& k : kinds)
          if (k.colour == colour) {
            samples = k.samples;
            ok = bits > 0 && std::strchr(k.depths, bits) != nullptr;
          }
        if (!ok)
          fail("is a PNG with colour type ", colour, " and bit depth ", bits,
               ", a combination PNG does not define (colour types 0, 2, 3, 4, 6)");
        if (w > 0x7FFFFFFFu || h > 0x7FFFFFFFu)
          fail("is a PNG of ", w, " x ", h, " pixels: PNG's sides are at most 2^31 - 1");
        info.width = int(w);
        info.height = int(h);
        info.bits = bits;
        info.interlaced = body[12] == 1;
        info.channels = colour == 3 ? 3 : samples;
        // Checked now, before anything is inflated; a palette's alpha (tRNS) is added below.
        info.decode_bytes = std::uint64_t(w) * h * std::uint64_t(info.channels) * (bits == 16 ? 2 : 1);
        check_dimensions(info);
        expected = png_raw_bytes(w, h, samples, bits, info.interlaced);
      } else if (tname == "PLTE") {
        seen_plte = true;
      } else if (tname == "tRNS") {
        seen_trns = true;  // a palette's alpha, or a grey or RGB PNG's colour key: stb_image adds an alpha channel
      } else if (tname == "IDAT") {
        if (idat_done) fail("is not a valid PNG: its IDAT chunks are not consecutive");
        if (colour == 3 && !seen_plte) fail("is a palette PNG without a PLTE chunk before its image data");
        in_idat_run = true;
        if (!z_started) {
          if (inflateInit(&z) != Z_OK) fail("could not be checked: zlib could not start");
          z_started = true;
          scratch.resize(64 * 1024);
        }
        const std::uint64_t allowed = expected + 64 * 1024;
        z.next_in = const_cast<unsigned char*>(body);
        z.avail_in = length;
        // Until this chunk's bytes are used up and zlib holds no more output (a full scratch may mean more).
        while (!stream_ended) {
          z.next_out = scratch.data();
          z.avail_out = static_cast<uInt>(scratch.size());
          const int rc = inflate(&z, Z_NO_FLUSH);
          produced += scratch.size() - z.avail_out;
          if (produced > allowed)
            fail("is a PNG of ", info.width, " x ", info.height, " pixels whose image data inflates to more than ",
                 allowed, " bytes, where ", expected,
                 " are needed: corrupt, or a decompression bomb (stb_image would keep all of it)");
          if (rc == Z_STREAM_END) stream_ended = true;
          else if (rc == Z_BUF_ERROR) break;  // no progress possible: it needs the next IDAT's bytes
          else if (rc != Z_OK)
            fail("is a corrupt PNG: its image data does not inflate (zlib: ", z.msg ? z.msg : "error", ")");
          if (z.avail_in == 0 && z.avail_out != 0) break;
        }
      } else if (tname == "IEND") {
        break;
      } else if (!(type[0] & 0x20)) {  // an unknown critical chunk: a decoder must not ignore it
        fail("is a PNG with an unknown critical chunk ", tname, "; PNG's critical chunks are IHDR, PLTE, IDAT, IEND");
      }
      if (in_idat_run && tname != "IDAT") idat_done = true;
      at += 12 + std::size_t(length);
    }
    if (!z_started) fail("is a PNG without image data (no IDAT chunk)");
    if (!stream_ended || produced < expected)
      fail("is a truncated or corrupt PNG: its image data ", stream_ended ? "inflates to " : "stops after ", produced,
           " bytes, where its ", info.width, " x ", info.height, " pixels need ", expected);
    if (seen_trns && (colour == 0 || colour == 2 || colour == 3)) {
      info.channels = colour == 0 ? 2 : 4;
      info.decode_bytes = std::uint64_t(info.width) * std::uint64_t(info.height) * std::uint64_t(info.channels) *
                          (info.bits == 16 ? 2 : 1);
      check_dimensions(info);
    }
    return info;
  }

  image_info inspect_jpeg(const unsigned char* d, std::size_t n) const {
    image_info info;
    info.format = image_format::jpeg;
    std::size_t at = 2;  // after SOI
    bool frame = false, scan = false;
    // The tables defined so far (stb_image 2.27 does not clear its tables: a scan that uses one never defined
    // decodes with whatever memory held, reading past its arrays), and the frame's components' quantisation
    // tables.
    bool dc_defined[4] = {}, ac_defined[4] = {}, quant_defined[4] = {};
    std::vector<std::pair<int, int>> frame_components;  // (id, quantisation table)
    auto truncated = [&](const char* where) {
      fail("is a truncated JPEG: it ends ", where, " at byte ", n, " without an end-of-image (EOI) marker");
    };
    for (;;) {
      // The next marker: 0xFF, any fill 0xFF bytes, then the marker code.
      if (at >= n) truncated(scan ? "in its compressed data" : "between segments");
      if (d[at] != 0xFF)
        fail("is a corrupt JPEG: byte ", at, " is 0x", first_bytes(d + at, 1), " where a marker (0xFF..) belongs");
      while (at < n && d[at] == 0xFF) ++at;
      if (at >= n) truncated("inside a marker");
      const unsigned marker = d[at++];
      if (marker == 0xD9) break;  // EOI
      if (marker == 0xD8 || marker == 0x00) fail("is a corrupt JPEG: a stray marker 0x", first_bytes(d + at - 1, 1));
      if (marker >= 0xD0 && marker <= 0xD7) continue;  // RSTn outside a scan: no length, harmless
      if (marker == 0x01) continue;                    // TEM: no length
      if (n - at < 2) truncated("inside a segment's length");
      const std::uint32_t length = be16(d + at);
      if (length < 2) fail("is a corrupt JPEG: a segment at byte ", at, " has length ", length);
      if (length > n - at) truncated("inside a segment");
      const unsigned char* body = d + at + 2;
      if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
        if (marker != 0xC0 && marker != 0xC1 && marker != 0xC2)
          fail("is a JPEG coded with SOF", marker - 0xC0,
               " (lossless, hierarchical or arithmetic-coded), which the decoder (stb_image) does not read; "
               "baseline and progressive Huffman JPEGs are read");
        if (frame) fail("is a JPEG with two frame headers (SOF)");
        if (length < 8) fail("is a corrupt JPEG: its frame header is ", length, " bytes");
        frame = true;
        info.bits = body[0];
        info.height = int(be16(body + 1));
        info.width = int(be16(body + 3));
        const int components = body[5];
        info.progressive = marker == 0xC2;
        if (info.bits != 8) fail("is a ", info.bits, "-bit JPEG; the decoder (stb_image) reads 8-bit JPEGs");
        if (components != 1 && components != 3 && components != 4)
          fail("is a JPEG with ", components, " components; 1 (grey), 3 (colour) and 4 (CMYK) are read");
        if (length < 8 + 3 * std::uint32_t(components))
          fail("is a corrupt JPEG: its frame header is too short for ", components, " components");
        for (int c = 0; c < components; ++c) frame_components.emplace_back(body[6 + 3 * c], body[8 + 3 * c]);
        info.channels = components == 1 ? 1 : 3;
        if (info.height == 0)
          fail("is a JPEG whose height is given after its first scan (DNL marker), which is not read");
        info.decode_bytes = std::uint64_t(info.width) * std::uint64_t(info.height) * std::uint64_t(components) *
                            (info.progressive ? 3 : 1);
        check_dimensions(info);
      } else if (marker == 0xC4) {
        // Huffman tables: stb_image 2.27 trusts the 16 code counts, and a table of more than 256 codes writes
        // past its arrays (stbi__build_huffman), so each table is checked here.
        std::uint32_t left = length - 2;
        const unsigned char* t = body;
        while (left > 0) {
          if (left < 17) fail("is a corrupt JPEG: a Huffman table (DHT) at byte ", at, " is cut short");
          if ((t[0] >> 4) > 1 || (t[0] & 15) > 3)
            fail("is a corrupt JPEG: a Huffman table (DHT) has class ", t[0] >> 4, " and slot ", t[0] & 15,
                 " (at most 1 and 3)");
          std::uint32_t codes = 0;
          for (int i = 1; i <= 16; ++i) codes += t[i];
          if (codes > 256)
            fail("is a corrupt JPEG: a Huffman table (DHT) at byte ", at, " defines ", codes,
                 " codes; a table holds at most 256");
          if (17 + codes > left)
            fail("is a corrupt JPEG: a Huffman table (DHT) at byte ", at, " lists ", codes, " codes but its segment ",
                 "holds ", left - 17);
          (t[0] >> 4 ? ac_defined : dc_defined)[t[0] & 15] = true;
          left -= 17 + codes;
          t += 17 + codes;
        }
      } else if (marker == 0xDB) {
        std::uint32_t left = length - 2;
        const unsigned char* t = body;
        while (left > 0) {
          const std::uint32_t bytes = 1 + ((t[0] >> 4) ? 128 : 64);
          if ((t[0] >> 4) > 1 || (t[0] & 15) > 3 || left < bytes)
            fail("is a corrupt JPEG: a quantisation table (DQT) at byte ", at, " is malformed");
          quant_defined[t[0] & 15] = true;
          left -= bytes;
          t += bytes;
        }
      } else if (marker == 0xDA) {
        if (!frame) fail("is a corrupt JPEG: a scan (SOS) comes before the frame header (SOF)");
        const std::uint32_t ns = length >= 3 ? body[0] : 0;
        if (ns < 1 || ns > 4 || length != 6 + 2 * ns)
          fail("is a corrupt JPEG: a scan header (SOS) at byte ", at, " is malformed");
        const int ss = body[1 + 2 * ns], ah = body[3 + 2 * ns] >> 4;
        for (std::uint32_t k = 0; k < ns; ++k) {
          const int id = body[1 + 2 * k], td = body[2 + 2 * k] >> 4, ta = body[2 + 2 * k] & 15;
          const auto c = std::find_if(frame_components.begin(), frame_components.end(),
                                      [&](const std::pair<int, int>& f) { return f.first == id; });
          if (c == frame_components.end())
            fail("is a corrupt JPEG: a scan uses component ", id, ", which its frame header does not have");
          if (c->second > 3 || !quant_defined[c->second])
            fail("is a corrupt JPEG: component ", id, " uses quantisation table ", c->second, ", never defined");
          const bool needs_dc = !info.progressive || (ss == 0 && ah == 0), needs_ac = !info.progressive || ss > 0;
          if ((needs_dc && (td > 3 || !dc_defined[td])) || (needs_ac && (ta > 3 || !ac_defined[ta])))
            fail("is a corrupt JPEG: a scan at byte ", at, " uses a Huffman table (DC ", td, ", AC ", ta,
                 ") that no DHT segment before it defines");
        }
        scan = true;
        at += length;
        // The entropy-coded data: 0xFF is followed by 0x00 (a stuffed byte) or RSTn; anything else is a marker.
        for (;;) {
          const void* ff = std::memchr(d + at, 0xFF, n - at);
          if (!ff) truncated("in its compressed data");
          at = std::size_t(static_cast<const unsigned char*>(ff) - d);
          if (at + 1 >= n) truncated("in its compressed data");
          const unsigned next = d[at + 1];
          if (next == 0x00 || (next >= 0xD0 && next <= 0xD7)) {
            at += 2;
          } else if (next == 0xFF) {
            ++at;  // fill byte
          } else {
            break;
          }
        }
        continue;
      }
      at += length;
    }
    if (!frame) fail("is a JPEG without a frame header (SOF): no image in it");
    if (!scan) fail("is a JPEG without image data (no SOS scan)");
    return info;
  }

 private:
  const std::string& name_;
  const image_limits& limits_;
};

}  // namespace detail

// The format, dimensions and decoding cost of an image in memory, all checked against `limits` (see the top
// of the file); `name` names it in errors. Reads no pixels, allocates at most 64 KiB (PNG's check inflates
// the image data through it).
inline image_info inspect_image(const std::string& name, const unsigned char* data, std::size_t size,
                                const image_limits& limits = {}) {
  const detail::image_checker check(name, limits);
  if (size >= 8 && std::memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return check.inspect_png(data, size);
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return check.inspect_jpeg(data, size);
  const std::string other = detail::other_format_name(data, size);
  if (!other.empty()) check.fail("is a ", other, "; only PNG and JPEG images are read");
  check.fail("is not a PNG or JPEG image (it starts with ", detail::first_bytes(data, size),
             "); only PNG and JPEG images are read");
}

// Decodes a PNG or JPEG in memory to 8-bit samples with the file's channels (see image_info::channels), after
// inspect_image's checks.
inline image decode_image(const std::string& name, const unsigned char* data, std::size_t size,
                          const image_limits& limits = {}) {
  const image_info info = inspect_image(name, data, size, limits);
  const detail::image_checker check(name, limits);
  if (size > std::size_t(0x7FFFFFFF)) check.fail("is ", size, " bytes; the decoder (stb_image) reads at most 2 GiB");
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(data, int(size), &w, &h, &n))
    check.fail("is a ", to_string(info.format), " the decoder (stb_image) cannot read: ", stbi_failure_reason());
  if (w != info.width || h != info.height)
    check.fail("is a ", to_string(info.format), " whose size the decoder reads as ", w, " x ", h, ", not ",
               info.width, " x ", info.height);
  struct freer {
    void operator()(stbi_uc* p) const { stbi_image_free(p); }
  };
  // The channels are asked for explicitly: with 0, stb_image 2.27 reports a grey or RGB PNG with a colour key
  // (tRNS) as 1 or 3 channels but returns 2 or 4.
  std::unique_ptr<stbi_uc, freer> pixels(stbi_load_from_memory(data, int(size), &w, &h, &n, info.channels));
  if (!pixels) check.fail("is a ", to_string(info.format), " that could not be decoded: ", stbi_failure_reason());
  if (w != info.width || h != info.height)
    check.fail("decoded to ", w, " x ", h, " pixels, not the ", info.width, " x ", info.height, " its header gives");
  const int channels = info.channels;
  image out;
  out.width = w;
  out.height = h;
  out.channels = channels;
  out.pixels.assign(pixels.get(), pixels.get() + std::size_t(w) * std::size_t(h) * std::size_t(channels));
  return out;
}

// The whole file, refused before it is read if larger than max_bytes.
inline std::vector<unsigned char> read_file_bytes(const std::string& path, std::uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ::vitscale::detail::fail("cannot open the image file '", path, "'");
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  if (end < 0) ::vitscale::detail::fail("cannot read the size of the image file '", path, "'");
  if (std::uint64_t(end) > max_bytes)
    ::vitscale::detail::fail("image file '", path, "' is ", std::uint64_t(end), " bytes, more than the limit of ",
                             max_bytes, " bytes (image_limits::max_file_bytes)");
  std::vector<unsigned char> bytes(static_cast<std::size_t>(end));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!in || in.gcount() != static_cast<std::streamsize>(bytes.size()))
    ::vitscale::detail::fail("cannot read the image file '", path, "' (it changed while being read?)");
  return bytes;
}

// A PNG or JPEG file, checked (see the top of the file) and decoded.
inline image read_image(const std::string& path, const image_limits& limits = {}) {
  const std::vector<unsigned char> bytes = read_file_bytes(path, limits.max_file_bytes);
  return decode_image(path, bytes.data(), bytes.size(), limits);
}

}  // namespace vitscale::data
