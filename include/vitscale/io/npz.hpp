#pragma once
// .npz: numpy's archive of arrays (np.savez, np.savez_compressed), which is how big_vision and the original
// ViT code publish checkpoints. An .npz is a ZIP file whose members are .npy files, one array each:
//
//   .npy = "\x93NUMPY" major minor [header length: u16 (1.0) or u32 (2.0, 3.0), little-endian]
//          header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//          then the elements, row-major when fortran_order is False.
//
// The reader trusts nothing in the file. When it opens a file it reads the ZIP central directory (ZIP64
// records and extra fields included: numpy writes them for members over 4 GiB) and every member's .npy
// header, and checks, before any allocation that depends on them: that every offset and size lies inside
// the file, that members do not overlap, that a stored member's sizes agree, that a deflated member does not
// claim more than deflate can expand to (1032:1), and that each array's shape × element size equals the
// member's size. Reading a member streams it in fixed-size pieces into the caller's memory, checks its
// CRC-32 and stops a deflate stream that would expand beyond its declared size. Every problem is a
// vitscale::error naming the file, the member and what is wrong. Nothing the file claims makes the reader
// allocate more than the file's own size: it holds the central directory (part of the file) and working
// buffers of at most 1 MiB; the caller's output is sized by a shape already checked against the member's
// size (which for a deflated member is at most 1032 times its bytes in the file).
//
// Element types: little-endian '<f2', '<f4', '<f8' convert to float; '|V2' (also '<V2') is how np.save writes
// jax's bfloat16 (numpy has no bfloat16: the elements become 2-byte "void" records, see big_vision's
// utils.recover_dtype) and is read as bf16 only when npz_options::void2_as_bf16 asks for it. Other types
// ('<i4', '|u1', ...) are listed and can be read raw; big-endian data and Fortran order are listed and
// refused on reading. Needs zlib (CMake: find_package(ZLIB), link ZLIB::ZLIB). Assumes a little-endian host.

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>
#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "vitscale/io/npz.hpp copies little-endian data straight into memory: big-endian hosts unsupported"
#endif

namespace vitscale::io {

// What an array's elements are, as far as vitscale reads them.
enum class npy_type {
  f16,    // '<f2'
  f32,    // '<f4'
  f64,    // '<f8'
  void2,  // '|V2' / '<V2': 2-byte opaque records, jax's bfloat16 as np.save writes it
  other,  // anything else: listed, readable raw if its element size is known, never converted
};

struct npz_options {
  // Read '|V2' arrays as bfloat16 (big_vision's bf16 checkpoints); off, they are refused as unknown data.
  bool void2_as_bf16 = false;
};

// One array of an archive.
struct npz_entry {
  std::string name;   // the array's name: the ZIP member name without ".npy"
  std::string descr;  // numpy's dtype string, e.g. "<f4"
  npy_type type = npy_type::other;
  std::size_t item_size = 0;  // bytes per element; 0 where the descr does not say
  bool fortran_order = false;
  bool big_endian = false;
  std::vector<std::int64_t> shape;
  std::int64_t numel = 1;

  // Where it lies (filled by the reader).
  std::uint16_t method = 0;  // 0 stored, 8 deflate
  std::uint32_t crc = 0;
  std::uint64_t compressed = 0, uncompressed = 0;  // bytes of the member (the .npy file)
  std::uint64_t local_offset = 0;                  // the member's local header in the archive
  std::uint64_t data_offset = 0;                   // its (compressed) bytes in the archive
  std::uint64_t header_bytes = 0;                  // the .npy header; the elements follow it in the member
};

namespace detail {

using vitscale::detail::fail;

inline constexpr std::size_t npy_max_rank = 64;
// numpy itself refuses headers over 10 000 bytes unless told otherwise; a little more room, still a bound.
inline constexpr std::uint64_t npy_max_header = 1u << 20;
// Deflate cannot expand beyond ~1032:1; a member that says otherwise lies about its size.
inline constexpr std::uint64_t deflate_max_ratio = 1032;
inline constexpr std::size_t npz_chunk = std::size_t{1} << 20;

inline std::string npz_quote(std::string_view name) {
  constexpr std::size_t limit = 200;
  std::string shown;
  for (char c : name.substr(0, limit)) {
    const auto u = static_cast<unsigned char>(c);
    shown += (u >= 0x20 && u != 0x7f) ? c : '?';
  }
  if (name.size() > limit) shown += "...";
  return "'" + shown + "'";
}

inline std::string npz_shape(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80u) {
      ++i;
      continue;
    }
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if ((c & 0xe0u) == 0xc0u) {
      n = 1;
      cp = c & 0x1fu;
    } else if ((c & 0xf0u) == 0xe0u) {
      n = 2;
      cp = c & 0x0fu;
    } else if ((c & 0xf8u) == 0xf0u) {
      n = 3;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0u) != 0x80u) return false;
      cp = (cp << 6) | (d & 0x3fu);
    }
    constexpr std::uint32_t smallest[4] = {0, 0x80u, 0x800u, 0x10000u};  // shorter forms are overlong
    if (cp < smallest[n] || cp > 0x10ffffu || (cp >= 0xd800u && cp <= 0xdfffu)) return false;
    i += n + 1;
  }
  return true;
}

inline std::uint64_t le(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int k = bytes - 1; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}

// binary16 -> binary32, exact.
inline float npy_half(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  return bit_cast<float>(sign | bit_cast<std::uint32_t>(static_cast<float>(mantissa) * 5.9604644775390625e-8f));
}

// The dict of an .npy header, parsed strictly: the three keys numpy writes, each once, nothing else.
// Returns an empty string on success, else the problem.
inline std::string parse_npy_dict(std::string_view text, npz_entry& e) {
  std::size_t i = 0;
  auto ws = [&] {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')) ++i;
  };
  auto literal = [&](std::string& out) -> bool {
    if (i >= text.size() || (text[i] != '\'' && text[i] != '"')) return false;
    const char q = text[i++];
    const std::size_t end = text.find(q, i);
    if (end == std::string_view::npos || end - i > 256) return false;
    out = std::string(text.substr(i, end - i));
    i = end + 1;
    return true;
  };
  bool has_descr = false, has_order = false, has_shape = false;
  ws();
  if (i >= text.size() || text[i++] != '{') return "the header is not a Python dict";
  for (;;) {
    ws();
    if (i < text.size() && text[i] == '}') {
      ++i;
      break;
    }
    std::string key;
    if (!literal(key)) return "the header dict has a key that is not a string";
    ws();
    if (i >= text.size() || text[i++] != ':') return "the header dict has no ':' after '" + key + "'";
    ws();
    if (key == "descr") {
      if (has_descr) return "the header has two 'descr' keys";
      has_descr = true;
      if (i < text.size() && text[i] == '[') return "structured dtypes (a 'descr' list) are not supported";
      if (!literal(e.descr)) return "'descr' is not a string";
    } else if (key == "fortran_order") {
      if (has_order) return "the header has two 'fortran_order' keys";
      has_order = true;
      if (text.substr(i, 4) == "True") {
        e.fortran_order = true;
        i += 4;
      } else if (text.substr(i, 5) == "False") {
        e.fortran_order = false;
        i += 5;
      } else {
        return "'fortran_order' is neither True nor False";
      }
    } else if (key == "shape") {
      if (has_shape) return "the header has two 'shape' keys";
      has_shape = true;
      if (i >= text.size() || text[i++] != '(') return "'shape' is not a tuple";
      for (;;) {
        ws();
        if (i < text.size() && text[i] == ')') {
          ++i;
          break;
        }
        if (i >= text.size() || text[i] < '0' || text[i] > '9') return "'shape' holds something other than integers";
        std::uint64_t v = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
          const auto digit = static_cast<std::uint64_t>(text[i++] - '0');
          if (v > (static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) - digit) / 10)
            return "'shape' has a dimension larger than 2^63 - 1";
          v = v * 10 + digit;
        }
        if (e.shape.size() == npy_max_rank) return "'shape' has more than 64 dimensions";
        e.shape.push_back(static_cast<std::int64_t>(v));
        ws();
        if (i < text.size() && text[i] == ',') {
          ++i;
        } else if (i >= text.size() || text[i] != ')') {
          return "'shape' is not a tuple of integers";
        }
      }
    } else {
      return "the header has an unknown key " + npz_quote(key);
    }
    ws();
    if (i < text.size() && text[i] == ',') {
      ++i;
    } else if (i >= text.size() || text[i] != '}') {
      return "the header dict is malformed after '" + key + "'";
    }
  }
  ws();
  if (i != text.size()) return "the header has bytes after its dict";
  if (!has_descr || !has_order || !has_shape) return "the header lacks one of 'descr', 'fortran_order', 'shape'";
  return {};
}

// Element type and size from a descr string ("<f4", "|V2", ">i8", ...).
inline void classify_descr(npz_entry& e) {
  const std::string& d = e.descr;
  e.type = npy_type::other;
  e.item_size = 0;
  e.big_endian = !d.empty() && d[0] == '>';
  if (d.size() < 3 || (d[0] != '<' && d[0] != '>' && d[0] != '|' && d[0] != '=')) return;
  std::size_t size = 0;
  for (std::size_t k = 2; k < d.size(); ++k) {
    if (d[k] < '0' || d[k] > '9' || size > 1'000'000) return;
    size = size * 10 + static_cast<std::size_t>(d[k] - '0');
  }
  const char kind = d[1];
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b' && kind != 'V' && kind != 'c') return;
  e.item_size = size;
  if (e.big_endian && size > 1) return;
  if (kind == 'f' && size == 2) e.type = npy_type::f16;
  if (kind == 'f' && size == 4) e.type = npy_type::f32;
  if (kind == 'f' && size == 8) e.type = npy_type::f64;
  if (kind == 'V' && size == 2) e.type = npy_type::void2;
}

}  // namespace detail

// Reads the arrays of an .npz archive, checking everything (see the top of this file).
class npz_reader {
 public:
  explicit npz_reader(const std::string& path, npz_options options = {})
      : path_(path), options_(options), file_(path, std::ios::binary) {
    if (!file_) fail_file("cannot open the file");
    file_.seekg(0, std::ios::end);
    const auto end = file_.tellg();
    if (end < 0) fail_file("cannot determine its size");
    size_ = static_cast<std::uint64_t>(end);
    read_directory();
    for (auto& e : entries_) read_npy_header(e);
  }

  const std::string& path() const noexcept { return path_; }
  std::uint64_t file_size() const noexcept { return size_; }
  // The arrays, in the order of the central directory (numpy's: the order they were saved).
  const std::vector<npz_entry>& entries() const noexcept { return entries_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }

  const npz_entry& entry(const std::string& name) const {
    const auto it = index_.find(name);
    if (it != index_.end()) return entries_[it->second];
    std::string known;
    for (std::size_t k = 0; k < std::min<std::size_t>(entries_.size(), 12); ++k)
      known += (k ? ", " : "") + detail::npz_quote(entries_[k].name);
    if (entries_.size() > 12) known += ", ...";
    fail_file("no array named ", detail::npz_quote(name), "; it holds ", entries_.size(), " arrays",
              entries_.empty() ? "" : ": ", known);
  }

  // Whether `name` converts to float / bf16 under this reader's options (f2, f4, f8; V2 if allowed).
  bool convertible(const npz_entry& e) const {
    return !e.fortran_order && (e.type == npy_type::f16 || e.type == npy_type::f32 || e.type == npy_type::f64 ||
                                (e.type == npy_type::void2 && options_.void2_as_bf16));
  }
  // Why an array cannot be read as numbers, or an empty string if it can.
  std::string unreadable_reason(const npz_entry& e) const {
    if (e.fortran_order) return "is stored in Fortran (column-major) order; vitscale reads C order only";
    if (e.big_endian && e.item_size > 1) return "is big-endian ('" + e.descr + "'); vitscale reads little-endian only";
    if (e.type == npy_type::void2 && !options_.void2_as_bf16)
      return "has dtype '" + e.descr +
             "' (2-byte void: jax's bfloat16 as numpy saves it); pass "
             "npz_options::void2_as_bf16 to read it as bfloat16";
    if (!convertible(e))
      return "has dtype '" + e.descr + "'; vitscale converts only '<f2', '<f4', '<f8' (and '|V2' as bfloat16)";
    return {};
  }

  // The whole array as float (f2 and bf16 exact, f8 rounded to nearest); `count` must be its element count.
  void read(const std::string& name, float* out, std::size_t count) { read_elements(name, 0, count, out, true); }
  std::vector<float> read(const std::string& name) {
    const npz_entry& e = entry(name);
    check_convertible(e);
    std::vector<float> out(static_cast<std::size_t>(e.numel));
    read(name, out.data(), out.size());
    return out;
  }

  // Elements [first, first + count) of the array in row-major order (e.g. one block of a scan-stacked
  // tensor), as float. A stored member's slice is read directly and its CRC is not checked (verify() does);
  // a deflated member is inflated from its start.
  void read_slice(const std::string& name, std::uint64_t first, std::size_t count, float* out) {
    read_elements(name, first, count, out, false);
  }

  // The array as bf16: '|V2' (with void2_as_bf16) copied, others converted through float.
  void read(const std::string& name, bf16* out, std::size_t count) {
    const npz_entry& e = entry(name);
    if (e.type == npy_type::void2 && options_.void2_as_bf16 && !e.fortran_order) {
      read_raw(name, out, count * sizeof(bf16));
      return;
    }
    if (count != static_cast<std::uint64_t>(e.numel))
      fail_entry(e, "has " + std::to_string(e.numel) + " elements (shape " + detail::npz_shape(e.shape) +
                        "), but room for " + std::to_string(count) + " was given");
    check_convertible(e);
    std::vector<float> values(count);
    read(name, values.data(), values.size());
    for (std::size_t k = 0; k < count; ++k) out[k] = bf16(values[k]);
  }

  // The array's element bytes as stored (little-endian, row-major); `bytes` must be their exact size.
  void read_raw(const std::string& name, void* out, std::size_t bytes) {
    const npz_entry& e = entry(name);
    if (e.item_size == 0) fail_entry(e, "has dtype '" + e.descr + "', whose element size vitscale does not know");
    if (e.fortran_order) fail_entry(e, unreadable_reason(e));
    const std::uint64_t size = e.uncompressed - e.header_bytes;
    if (bytes != size)
      fail_entry(e, "holds " + std::to_string(size) + " bytes, but " + std::to_string(bytes) + " were asked for");
    auto* dst = static_cast<unsigned char*>(out);
    std::size_t done = 0;
    stream(e, e.header_bytes, e.uncompressed, true, [&](const unsigned char* p, std::size_t n) {
      std::memcpy(dst + done, p, n);
      done += n;
    });
  }

  // Reads the whole member once and checks its size and CRC-32 (read() does this too; read_slice() of a
  // stored member does not).
  void verify(const std::string& name) {
    const npz_entry& e = entry(name);
    stream(e, 0, e.uncompressed, true, [](const unsigned char*, std::size_t) {});
  }

 private:
  // Elements [first, first + count) as float; `whole`: all of them, CRC checked.
  void read_elements(const std::string& name, std::uint64_t first, std::size_t count, float* out, bool whole) {
    const npz_entry& e = entry(name);
    check_convertible(e);
    const auto n = static_cast<std::uint64_t>(e.numel);
    if (whole ? count != n : (first > n || count > n - first))
      fail_entry(e, whole ? "has " + std::to_string(n) + " elements (shape " + detail::npz_shape(e.shape) +
                                "), but room for " + std::to_string(count) + " was given"
                          : "has " + std::to_string(n) + " elements; elements [" + std::to_string(first) + ", " +
                                std::to_string(first) + " + " + std::to_string(count) + ") were asked for");
    const std::uint64_t from = e.header_bytes + first * e.item_size;
    const std::uint64_t to = from + count * e.item_size;
    std::size_t done = 0;
    unsigned char carry[8];
    std::size_t carried = 0;
    const std::size_t item = e.item_size;
    auto convert_one = [&](const unsigned char* p) {
      switch (e.type) {
        case npy_type::f32: {
          float v;
          std::memcpy(&v, p, 4);
          out[done++] = v;
          break;
        }
        case npy_type::f64: {
          double v;
          std::memcpy(&v, p, 8);
          out[done++] = static_cast<float>(v);
          break;
        }
        case npy_type::f16:
          out[done++] = detail::npy_half(static_cast<std::uint16_t>(detail::le(p, 2)));
          break;
        default:
          out[done++] = float(bf16::from_bits(static_cast<std::uint16_t>(detail::le(p, 2))));
          break;
      }
    };
    stream(e, from, to, whole, [&](const unsigned char* p, std::size_t bytes) {
      std::size_t k = 0;
      if (carried) {  // an element split between two pieces
        while (carried < item && k < bytes) carry[carried++] = p[k++];
        if (carried < item) return;
        convert_one(carry);
        carried = 0;
      }
      if (e.type == npy_type::f32 && (bytes - k) >= 4) {  // the common case, copied in one go
        const std::size_t whole_items = (bytes - k) / 4;
        std::memcpy(out + done, p + k, whole_items * 4);
        done += whole_items;
        k += whole_items * 4;
      }
      for (; k + item <= bytes; k += item) convert_one(p + k);
      while (k < bytes) carry[carried++] = p[k++];
    });
  }

  template <class... Parts>
  [[noreturn]] void fail_file(Parts&&... parts) const {
    detail::fail("npz file '", path_, "': ", std::forward<Parts>(parts)...);
  }
  [[noreturn]] void fail_entry(const npz_entry& e, const std::string& what) const {
    fail_file("array ", detail::npz_quote(e.name), " ", what);
  }

  void check_convertible(const npz_entry& e) const {
    const std::string why = unreadable_reason(e);
    if (!why.empty()) fail_entry(e, why);
  }

  void read_at(std::uint64_t offset, void* out, std::size_t bytes, const char* what) {
    if (bytes == 0) return;
    if (offset > size_ || bytes > size_ - offset)
      fail_file(what, " (", bytes, " bytes at offset ", offset, ") lies beyond the end of the file (", size_,
                " bytes)");
    file_.clear();
    file_.seekg(static_cast<std::streamoff>(offset));
    file_.read(static_cast<char*>(out), static_cast<std::streamsize>(bytes));
    if (!file_ || static_cast<std::size_t>(file_.gcount()) != bytes)
      fail_file("the file ended or failed while reading ", what, " (", bytes, " bytes at offset ", offset,
                "); did it change after it was opened?");
  }

  void read_directory() {
    // End of central directory record: 22 bytes and a comment of at most 65535, at the very end.
    if (size_ < 22) fail_file("is not a ZIP archive (", size_, " bytes, shorter than a ZIP end record)");
    const std::uint64_t tail_size = std::min<std::uint64_t>(size_, 22 + 65535);
    std::vector<unsigned char> tail(static_cast<std::size_t>(tail_size));
    read_at(size_ - tail_size, tail.data(), tail.size(), "the end of the archive");
    std::optional<std::uint64_t> eocd;
    for (std::uint64_t k = tail_size - 22 + 1; k-- > 0;) {
      const unsigned char* p = tail.data() + k;
      if (detail::le(p, 4) == 0x06054b50u && k + 22 + detail::le(p + 20, 2) == tail_size) {
        eocd = size_ - tail_size + k;
        break;
      }
    }
    if (!eocd) fail_file("is not a ZIP archive (no end-of-central-directory record); is it an .npz?");
    const unsigned char* r = tail.data() + (*eocd - (size_ - tail_size));
    std::uint64_t disk = detail::le(r + 4, 2), cd_disk = detail::le(r + 6, 2);
    std::uint64_t count = detail::le(r + 10, 2), cd_size = detail::le(r + 12, 4), cd_offset = detail::le(r + 16, 4);
    std::uint64_t cd_end_limit = *eocd;  // the central directory ends before this

    // ZIP64: a locator just before the end record points at the ZIP64 end record, which holds the real values.
    if (*eocd >= 20) {
      unsigned char loc[20];
      read_at(*eocd - 20, loc, 20, "the ZIP64 locator");
      if (detail::le(loc, 4) == 0x07064b50u) {
        const std::uint64_t z = detail::le(loc + 8, 8);
        if (detail::le(loc + 16, 4) > 1) fail_file("is a multi-disk ZIP archive, which is not supported");
        if (z > *eocd - 20 || *eocd - 20 - z < 56)
          fail_file("the ZIP64 end record offset ", z, " lies outside the file");
        unsigned char rec[56];
        read_at(z, rec, 56, "the ZIP64 end record");
        if (detail::le(rec, 4) != 0x06064b50u) fail_file("the ZIP64 locator does not point at a ZIP64 end record");
        disk = detail::le(rec + 16, 4);
        cd_disk = detail::le(rec + 20, 4);
        count = detail::le(rec + 32, 8);
        cd_size = detail::le(rec + 40, 8);
        cd_offset = detail::le(rec + 48, 8);
        cd_end_limit = z;
      }
    }
    if (disk != 0 || cd_disk != 0) fail_file("is a multi-disk ZIP archive, which is not supported");
    if (cd_offset > cd_end_limit || cd_size > cd_end_limit - cd_offset)
      fail_file("the central directory (", cd_size, " bytes at offset ", cd_offset,
                ") lies beyond the end of the file or overlaps its end record (file: ", size_, " bytes)");
    if (count > cd_size / 46)
      fail_file("the central directory claims ", count, " members but its ", cd_size, " bytes hold at most ",
                cd_size / 46);
    std::vector<unsigned char> cd(static_cast<std::size_t>(cd_size));
    read_at(cd_offset, cd.data(), cd.size(), "the central directory");

    entries_.reserve(static_cast<std::size_t>(count));
    std::size_t at = 0;
    for (std::uint64_t m = 0; m < count; ++m) {
      if (cd.size() - at < 46 || detail::le(cd.data() + at, 4) != 0x02014b50u)
        fail_file("central directory record ", m, " is truncated or corrupt");
      const unsigned char* h = cd.data() + at;
      const auto flags = detail::le(h + 8, 2);
      npz_entry e;
      e.method = static_cast<std::uint16_t>(detail::le(h + 10, 2));
      e.crc = static_cast<std::uint32_t>(detail::le(h + 16, 4));
      e.compressed = detail::le(h + 20, 4);
      e.uncompressed = detail::le(h + 24, 4);
      const std::size_t name_len = detail::le(h + 28, 2), extra_len = detail::le(h + 30, 2),
                        comment_len = detail::le(h + 32, 2);
      std::uint64_t member_disk = detail::le(h + 34, 2);
      e.local_offset = detail::le(h + 42, 4);
      if (cd.size() - at - 46 < name_len + extra_len + comment_len)
        fail_file("central directory record ", m, " runs past the end of the directory");
      std::string member(reinterpret_cast<const char*>(h + 46), name_len);
      if (!detail::valid_utf8(member))
        fail_file("member ", m, " has a name that is not valid UTF-8: ", detail::npz_quote(member));
      // ZIP64 extended information: the 64-bit values of the fields that hold all ones, in this order.
      const unsigned char* x = h + 46 + name_len;
      for (std::size_t k = 0; k + 4 <= extra_len;) {
        const std::size_t id = detail::le(x + k, 2), len = detail::le(x + k + 2, 2);
        if (k + 4 + len > extra_len) fail_file("member ", detail::npz_quote(member), " has a truncated extra field");
        if (id == 0x0001) {
          const unsigned char* z = x + k + 4;
          std::size_t used = 0;
          auto take = [&](std::uint64_t& field, std::uint64_t all_ones, int bytes) {
            if (field != all_ones) return;
            if (used + static_cast<std::size_t>(bytes) > len)
              fail_file("member ", detail::npz_quote(member), " has a ZIP64 extra field too short for its sizes");
            field = detail::le(z + used, bytes);
            used += static_cast<std::size_t>(bytes);
          };
          take(e.uncompressed, 0xffffffffu, 8);
          take(e.compressed, 0xffffffffu, 8);
          take(e.local_offset, 0xffffffffu, 8);
          take(member_disk, 0xffffu, 4);
        }
        k += 4 + len;
      }
      at += 46 + name_len + extra_len + comment_len;

      const std::string what = "member " + detail::npz_quote(member);
      if (member_disk != 0) fail_file(what, " lies on another disk of a multi-disk archive");
      if (flags & 0x1u) fail_file(what, " is encrypted");
      if (e.method != 0 && e.method != 8)
        fail_file(what, " uses compression method ", e.method, "; vitscale reads stored (0) and deflate (8)");
      if (member.size() < 4 || member.compare(member.size() - 4, 4, ".npy") != 0)
        fail_file(what, " is not an .npy array (an .npz holds only NAME.npy members)");
      e.name = member.substr(0, member.size() - 4);

      // The local header: only its variable lengths matter (the central directory is authoritative).
      if (e.local_offset > cd_offset || cd_offset - e.local_offset < 30)
        fail_file(what, ": its local header offset ", e.local_offset, " lies beyond the archive's data (which ends at ",
                  cd_offset, ")");
      unsigned char local[30];
      read_at(e.local_offset, local, 30, "a local header");
      if (detail::le(local, 4) != 0x04034b50u) fail_file(what, ": no local header at offset ", e.local_offset);
      const std::uint64_t local_name = detail::le(local + 26, 2), local_extra = detail::le(local + 28, 2);
      e.data_offset = e.local_offset + 30 + local_name + local_extra;
      if (e.data_offset > cd_offset || e.compressed > cd_offset - e.data_offset)
        fail_file(what, " claims ", e.compressed, " bytes at offset ", e.data_offset,
                  ", beyond the end of the archive's data (", cd_offset, " bytes; the file is ", size_, " bytes)");
      if (local_name != name_len) fail_file(what, ": its local header names a different member");
      std::string local_member(static_cast<std::size_t>(local_name), '\0');
      read_at(e.local_offset + 30, local_member.data(), local_member.size(), "a local header's name");
      if (local_member != member) fail_file(what, ": its local header names a different member");
      if (e.method == 0 && e.compressed != e.uncompressed)
        fail_file(what, " is stored uncompressed but claims ", e.uncompressed, " bytes in ", e.compressed);
      if (e.method == 8 && e.uncompressed > e.compressed * detail::deflate_max_ratio + 64)
        fail_file(what, " claims to inflate ", e.compressed, " bytes to ", e.uncompressed,
                  ", more than deflate can (1032:1): the sizes are corrupt or a decompression bomb");
      if (index_.count(e.name)) fail_file("two members are named ", detail::npz_quote(member));
      index_.emplace(e.name, entries_.size());
      entries_.push_back(std::move(e));
    }
    if (at != cd.size()) fail_file("the central directory has ", cd.size() - at, " bytes after its last record");

    // No two members may share bytes.
    std::vector<const npz_entry*> order;
    for (const auto& e : entries_) order.push_back(&e);
    std::sort(order.begin(), order.end(),
              [](const npz_entry* a, const npz_entry* b) { return a->local_offset < b->local_offset; });
    for (std::size_t k = 1; k < order.size(); ++k)
      if (order[k]->local_offset < order[k - 1]->data_offset + order[k - 1]->compressed)
        fail_file("members ", detail::npz_quote(order[k - 1]->name), " and ", detail::npz_quote(order[k]->name),
                  " overlap");
  }

  void read_npy_header(npz_entry& e) {
    if (e.uncompressed < 10)
      fail_entry(e, "is " + std::to_string(e.uncompressed) + " bytes, too short for an .npy file");
    std::string head;
    const std::uint64_t prefix_end = std::min<std::uint64_t>(e.uncompressed, 12);
    read_header_bytes(e, 0, prefix_end, head);
    if (head.compare(0, 6, "\x93NUMPY") != 0) fail_entry(e, "is not an .npy file (no \\x93NUMPY magic)");
    const int major = static_cast<unsigned char>(head[6]);
    const auto* u = reinterpret_cast<const unsigned char*>(head.data());
    std::uint64_t length = 0, start = 0;
    if (major == 1) {
      length = detail::le(u + 8, 2);
      start = 10;
    } else if (major == 2 || major == 3) {
      if (head.size() < 12) fail_entry(e, "is too short for an .npy version 2 header");
      length = detail::le(u + 8, 4);
      start = 12;
    } else {
      fail_entry(e, "has .npy format version " + std::to_string(major) + "." +
                        std::to_string(static_cast<unsigned char>(head[7])) + "; vitscale reads 1.0, 2.0 and 3.0");
    }
    if (length > detail::npy_max_header || length > e.uncompressed - start)
      fail_entry(e, "claims an .npy header of " + std::to_string(length) + " bytes in a member of " +
                        std::to_string(e.uncompressed) + " bytes (at most " + std::to_string(detail::npy_max_header) +
                        " accepted)");
    std::string text;
    read_header_bytes(e, start, start + length, text);
    if (major < 3) {
      for (char c : text)
        if (static_cast<unsigned char>(c) >= 0x80) fail_entry(e, "has a non-ASCII .npy header (version < 3.0)");
    } else if (!detail::valid_utf8(text)) {
      fail_entry(e, "has an .npy header that is not valid UTF-8");
    }
    const std::string problem = detail::parse_npy_dict(text, e);
    if (!problem.empty()) fail_entry(e, "has a bad .npy header: " + problem);
    detail::classify_descr(e);
    e.header_bytes = start + length;

    std::uint64_t n = 1;
    bool zero = false;
    for (std::int64_t d : e.shape) zero = zero || d == 0;
    for (std::int64_t d : e.shape) {
      if (zero) break;
      if (n > std::numeric_limits<std::uint64_t>::max() / static_cast<std::uint64_t>(d) ||
          n * static_cast<std::uint64_t>(d) > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail_entry(e, "has shape " + detail::npz_shape(e.shape) + ", more than 2^63 elements");
      n *= static_cast<std::uint64_t>(d);
    }
    if (zero) n = 0;
    e.numel = static_cast<std::int64_t>(n);
    if (e.item_size != 0) {
      const std::uint64_t data = e.uncompressed - e.header_bytes;
      if (n > data / e.item_size || n * e.item_size != data)
        fail_entry(e, "has shape " + detail::npz_shape(e.shape) + " of '" + e.descr + "' (" + std::to_string(n) +
                          " elements of " + std::to_string(e.item_size) + " bytes), but its member holds " +
                          std::to_string(data) + " bytes of data");
    }
  }

  void read_header_bytes(const npz_entry& e, std::uint64_t from, std::uint64_t to, std::string& out) {
    out.clear();  // grows with what the member really holds, not with what its header claims
    stream(e, from, to, false,
           [&](const unsigned char* p, std::size_t n) { out.append(reinterpret_cast<const char*>(p), n); });
  }

  // Hands sink(pointer, bytes) the member's uncompressed bytes [from, to), in pieces. With `check`, the
  // whole member is read (from 0 to its end, whatever [from, to) is) so that its size and CRC-32 are checked.
  template <class Sink>
  void stream(const npz_entry& e, std::uint64_t from, std::uint64_t to, bool check, Sink&& sink) {
    if (from > to || to > e.uncompressed) fail_entry(e, "was asked for bytes beyond its end");
    if (e.method == 0 && !check) {
      std::vector<unsigned char> buffer(
          static_cast<std::size_t>(std::min<std::uint64_t>(to - from, detail::npz_chunk)));
      for (std::uint64_t at = from; at < to;) {
        const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(to - at, buffer.size()));
        read_at(e.data_offset + at, buffer.data(), take, "an array's data");
        sink(buffer.data(), take);
        at += take;
      }
      return;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    std::uint64_t produced = 0;  // uncompressed bytes so far
    auto deliver = [&](const unsigned char* p, std::size_t n) {
      if (check) crc = crc32(crc, p, static_cast<uInt>(n));
      const std::uint64_t lo = std::max(produced, from), hi = std::min(produced + n, to);
      if (lo < hi) sink(p + (lo - produced), static_cast<std::size_t>(hi - lo));
      produced += n;
    };
    std::vector<unsigned char> in(
        static_cast<std::size_t>(std::min<std::uint64_t>(std::max<std::uint64_t>(e.compressed, 1), detail::npz_chunk)));
    if (e.method == 0) {
      for (std::uint64_t at = 0; at < e.uncompressed;) {
        const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(e.uncompressed - at, in.size()));
        read_at(e.data_offset + at, in.data(), take, "an array's data");
        deliver(in.data(), take);
        at += take;
      }
    } else {
      std::vector<unsigned char> out(
          static_cast<std::size_t>(std::min<std::uint64_t>(e.uncompressed + 1, detail::npz_chunk)));
      z_stream z{};
      if (inflateInit2(&z, -MAX_WBITS) != Z_OK) fail_entry(e, "cannot be inflated (zlib could not start)");
      struct guard {
        z_stream* z;
        ~guard() { inflateEnd(z); }
      } g{&z};
      std::uint64_t consumed = 0;  // compressed bytes handed to zlib
      bool ended = false;
      while (!ended) {
        if (z.avail_in == 0 && consumed < e.compressed) {
          const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(e.compressed - consumed, in.size()));
          read_at(e.data_offset + consumed, in.data(), take, "an array's compressed data");
          z.next_in = in.data();
          z.avail_in = static_cast<uInt>(take);
          consumed += take;
        }
        // Room for at most one byte beyond the declared size: producing it proves the size a lie.
        const std::uint64_t room = std::min<std::uint64_t>(out.size(), e.uncompressed - produced + 1);
        z.next_out = out.data();
        z.avail_out = static_cast<uInt>(room);
        const int rc = inflate(&z, Z_NO_FLUSH);
        const std::size_t have = static_cast<std::size_t>(room - z.avail_out);
        if (produced + have > e.uncompressed)
          fail_entry(e, "inflates to more than its declared " + std::to_string(e.uncompressed) +
                            " bytes (corrupt sizes or a decompression bomb)");
        deliver(out.data(), have);
        if (rc == Z_STREAM_END) {
          ended = true;
        } else if (rc == Z_BUF_ERROR && z.avail_in == 0 && consumed == e.compressed) {
          fail_entry(e, "has a truncated deflate stream (" + std::to_string(produced) + " of " +
                            std::to_string(e.uncompressed) + " bytes inflated)");
        } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
          fail_entry(e, std::string("has corrupt deflate data (zlib: ") + (z.msg ? z.msg : "error") + ")");
        }
        if (!check && produced >= to) return;
      }
      if (produced != e.uncompressed)
        fail_entry(e, "inflates to " + std::to_string(produced) + " bytes, not the declared " +
                          std::to_string(e.uncompressed));
    }
    if (check && static_cast<std::uint32_t>(crc) != e.crc)
      fail_entry(e, "fails its CRC-32 check (the archive says " + std::to_string(e.crc) + ", the data gives " +
                        std::to_string(static_cast<std::uint32_t>(crc)) + "): the file is corrupt");
  }

  std::string path_;
  npz_options options_;
  std::ifstream file_;
  std::uint64_t size_ = 0;
  std::vector<npz_entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace vitscale::io
