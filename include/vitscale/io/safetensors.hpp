#pragma once
// safetensors: the tensor file format of PyTorch, timm and Hugging Face (github.com/huggingface/safetensors).
//
//   [8 bytes: N, little-endian u64] [N bytes: UTF-8 JSON header] [byte buffer]
//   header: {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}, ...}
//
// Offsets are relative to the byte buffer; data is little-endian and row-major.
//
// The reader validates the whole header when the file is opened (every tensor inside the buffer, sizes that
// match shape × dtype, no overlaps) and then reads tensors one at a time, on demand: a ViT-22B checkpoint is
// ~90 GB and is never read into memory whole. The header is parsed with a SAX handler rather than into a
// DOM, so a hostile header costs memory proportional to its length (which is capped at 100 MB, as in the
// reference implementation), duplicate names are detected (a DOM keeps only the last), and every error
// names the file, the tensor and the problem.
//
// Unlike the reference implementation, the reader accepts gaps between tensors (padding some writers add);
// overlaps are still errors. The writer leaves no gaps, so its files are also valid for the reference.
// Needs nlohmann-json (link nlohmann_json::nlohmann_json). Assumes a little-endian host, as every
// platform Kokkos supports is.

#include <vitscale/core/bf16.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/io/files.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "vitscale/io/safetensors.hpp copies little-endian data straight into memory: big-endian hosts unsupported"
#endif

namespace vitscale::io {

// The element types of safetensors that vitscale knows (the reference also has U16/U32/U64 and two F8 kinds;
// a file holding one of those is reported as having an unknown dtype).
enum class dtype { f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean };

// Bytes per element.
constexpr std::size_t dtype_size(dtype type) noexcept {
  switch (type) {
    case dtype::f64:
    case dtype::i64: return 8;
    case dtype::f32:
    case dtype::i32: return 4;
    case dtype::f16:
    case dtype::bf16:
    case dtype::i16: return 2;
    case dtype::i8:
    case dtype::u8:
    case dtype::boolean: return 1;
  }
  return 0;
}

// The name the header uses: "F32", "BF16", "BOOL", ...
constexpr const char* dtype_name(dtype type) noexcept {
  switch (type) {
    case dtype::f64: return "F64";
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::i64: return "I64";
    case dtype::i32: return "I32";
    case dtype::i16: return "I16";
    case dtype::i8: return "I8";
    case dtype::u8: return "U8";
    case dtype::boolean: return "BOOL";
  }
  return "?";
}

// The dtype a header name stands for ("F32" -> f32), or nothing if vitscale does not know it.
inline std::optional<dtype> parse_dtype(std::string_view name) noexcept {
  for (dtype t : {dtype::f64, dtype::f32, dtype::f16, dtype::bf16, dtype::i64, dtype::i32, dtype::i16, dtype::i8,
                  dtype::u8, dtype::boolean})
    if (name == dtype_name(t)) return t;
  return std::nullopt;
}

// As parse_dtype, but an unknown name is a vitscale::error listing the known ones.
inline dtype dtype_from_name(std::string_view name) {
  if (auto t = parse_dtype(name)) return *t;
  detail::fail("unknown safetensors dtype \"", name, "\" (known: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
}

// One tensor of a file: where its bytes lie in the data buffer (after the header) and what they hold.
struct tensor_entry {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte offsets in the data buffer: [begin, end)

  // Elements: the product of the shape (1 for a scalar, shape []). A reader's entries never overflow: a
  // product of non-zero dimensions is checked to fit, and a shape with a zero dimension anywhere (e.g.
  // [2^32, 2^32, 0], which the reader accepts as empty) has 0 elements without multiplying the others.
  std::int64_t numel() const {
    if (std::find(shape.begin(), shape.end(), std::int64_t{0}) != shape.end()) return 0;
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    return n;
  }
  std::uint64_t bytes() const { return end - begin; }
};

namespace detail {

using vitscale::detail::fail;

// The reference implementation's cap: a larger header is not a safetensors file (or is an attack).
inline constexpr std::uint64_t max_header_bytes = 100'000'000;
// More dimensions than any real tensor has; bounds the memory a hostile shape can make us hold per tensor.
inline constexpr std::size_t max_rank = 64;

// Names come from files and may be arbitrarily long: messages show at most the first 200 bytes, cut at a
// UTF-8 character boundary.
inline std::string quote_name(std::string_view name) {
  constexpr std::size_t limit = 200;
  if (name.size() <= limit) return "'" + std::string(name) + "'";
  std::size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0u) == 0x80u) --cut;
  return "'" + std::string(name.substr(0, cut)) + "...' (" + std::to_string(name.size()) + " bytes)";
}

inline std::string format_shape(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

// binary16 -> binary32, exact (subnormals, infinities and NaN payloads included).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  const std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa × 2^-24, exact in binary32.
  return bit_cast<float>(sign | bit_cast<std::uint32_t>(static_cast<float>(mantissa) * 5.9604644775390625e-8f));
}

// binary64 -> bf16 rounded once, to nearest even. Going through a float rounded to nearest would round
// twice (and can land on the wrong neighbour); rounding to float by "round to odd" first keeps the
// information the second rounding needs, since float has far more than 2 extra bits over bf16.
inline bf16 double_to_bf16(double value) {
  float f = static_cast<float>(value);
  if (static_cast<double>(f) != value && value == value) {
    if (std::fabs(static_cast<double>(f)) > std::fabs(value))  // rounded away from zero: step back toward it
      f = bit_cast<float>(bit_cast<std::uint32_t>(f) - 1u);
    f = bit_cast<float>(bit_cast<std::uint32_t>(f) | 1u);
  }
  return bf16(f);
}

// a * b, or nothing if it does not fit in a signed 64-bit integer (both are non-negative).
inline std::optional<std::int64_t> checked_mul(std::int64_t a, std::int64_t b) {
  if (b != 0 && a > std::numeric_limits<std::int64_t>::max() / b) return std::nullopt;
  return a * b;
}

// The SAX handler that turns a header into tensor entries and metadata, checking each value as it arrives
// and stopping at the first problem with a sentence in error().
class header_parser final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit header_parser(std::uint64_t buffer_bytes) : buffer_bytes_(buffer_bytes) {}

  const std::string& error() const { return error_; }
  std::vector<tensor_entry>& tensors() { return tensors_; }
  std::map<std::string, std::string>& metadata() { return metadata_; }
  bool complete() const { return state_ == state::done; }

  bool null() override {
    if (state_ == state::metadata_value) {  // "__metadata__": null is how some writers say "none"
      state_ = state::top;
      return true;
    }
    return value("a null");
  }
  bool boolean(bool) override { return value("a boolean"); }
  bool binary(binary_t&) override { return value("a binary value"); }

  bool number_integer(number_integer_t v) override {
    if (v >= 0) return number_unsigned(static_cast<number_unsigned_t>(v));
    if (state_ == state::skip) return skip(0);
    if (state_ == state::shape) return problem("shape has a negative dimension ", v);
    if (state_ == state::offsets) return problem("data_offsets has a negative offset ", v);
    return value("a number");
  }

  bool number_unsigned(number_unsigned_t v) override {
    if (state_ == state::skip) return skip(0);
    if (state_ == state::shape) {
      if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return problem("shape has a dimension ", v, " larger than 2^63 - 1");
      if (current_.shape.size() == max_rank) return problem("shape has more than ", max_rank, " dimensions");
      current_.shape.push_back(static_cast<std::int64_t>(v));
      return true;
    }
    if (state_ == state::offsets) {
      if (offsets_seen_ == 2) return problem("data_offsets has more than two numbers (it must be [begin, end])");
      (offsets_seen_++ == 0 ? current_.begin : current_.end) = v;
      return true;
    }
    return value("a number");
  }

  bool number_float(number_float_t, const string_t& text) override {
    if (state_ == state::skip) return skip(0);
    // Integers too large for 64 bits arrive here too.
    if (state_ == state::shape) return problem("shape has a dimension ", text, " that is not a 64-bit integer");
    if (state_ == state::offsets)
      return problem("data_offsets has an offset ", text, " that is not a 64-bit unsigned integer");
    return value("a number");
  }

  bool string(string_t& v) override {
    if (state_ == state::skip) return skip(0);
    if (state_ == state::dtype_value) {
      const auto t = parse_dtype(v);
      if (!t)
        return problem("unknown dtype \"", v.substr(0, 50),
                       "\" (vitscale reads F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
      current_.type = *t;
      state_ = state::tensor;
      return true;
    }
    if (state_ == state::metadata_string) {
      metadata_.emplace(std::move(metadata_key_), std::move(v));
      state_ = state::metadata;
      return true;
    }
    return value("a string");
  }

  bool start_object(std::size_t) override {
    switch (state_) {
      case state::root: state_ = state::top; return true;
      case state::metadata_value: state_ = state::metadata; return true;
      case state::tensor_value:
        state_ = state::tensor;
        has_dtype_ = has_shape_ = has_offsets_ = false;
        return true;
      case state::skip: return skip(+1);
      default: return value("an object");
    }
  }

  bool start_array(std::size_t) override {
    switch (state_) {
      case state::shape_value: state_ = state::shape; return true;
      case state::offsets_value:
        state_ = state::offsets;
        offsets_seen_ = 0;
        return true;
      case state::skip: return skip(+1);
      default: return value("a list");
    }
  }

  bool end_array() override {
    switch (state_) {
      case state::shape: state_ = state::tensor; return true;
      case state::offsets:
        if (offsets_seen_ != 2) return problem("data_offsets must be two numbers [begin, end], found ", offsets_seen_);
        state_ = state::tensor;
        return true;
      case state::skip: return skip(-1);
      default: return true;  // unreachable: every other array is refused when it starts
    }
  }

  bool key(string_t& k) override {
    switch (state_) {
      case state::top:
        if (!names_.insert(k).second)
          return fail_top(k == "__metadata__" ? "the header has two __metadata__ entries"
                                              : "the header has two tensors named " + quote_name(k));
        if (k == "__metadata__") {
          state_ = state::metadata_value;
        } else {
          current_ = tensor_entry{};
          current_.name = std::move(k);
          state_ = state::tensor_value;
        }
        return true;
      case state::metadata:
        if (metadata_.count(k)) return fail_top("__metadata__ has two entries named " + quote_name(k));
        metadata_key_ = std::move(k);
        state_ = state::metadata_string;
        return true;
      case state::tensor: {
        bool* seen = k == "dtype"          ? &has_dtype_
                     : k == "shape"        ? &has_shape_
                     : k == "data_offsets" ? &has_offsets_
                                           : nullptr;
        if (!seen) {  // a field vitscale does not know: ignored, as the reference implementation does
          state_ = state::skip;
          skip_depth_ = 0;
          return true;
        }
        if (*seen) return problem("two '", k, "' fields");
        *seen = true;
        state_ = k == "dtype" ? state::dtype_value : k == "shape" ? state::shape_value : state::offsets_value;
        return true;
      }
      default: return true;  // state::skip: keys of an ignored value
    }
  }

  bool end_object() override {
    switch (state_) {
      case state::top: state_ = state::done; return true;
      case state::metadata: state_ = state::top; return true;
      case state::tensor: return finish_tensor();
      case state::skip: return skip(-1);
      default: return true;  // unreachable
    }
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    // nlohmann's message quotes the last token read, which may be long or hold the very bytes that are not
    // UTF-8: it is shortened and kept to printable ASCII.
    const std::string what = ex.what();
    std::string shown;
    for (char c : what.substr(0, 300)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (what.size() > 300) shown += "...";
    error_ = std::string(what.find("UTF-8") != std::string::npos ? "the header is not valid UTF-8"
                                                                 : "the header is not valid JSON") +
             " (near byte " + std::to_string(position) + "): " + shown;
    return false;
  }

 private:
  enum class state {
    root,
    top,
    done,
    metadata_value,
    metadata,
    metadata_string,
    tensor_value,
    tensor,
    dtype_value,
    shape_value,
    shape,
    offsets_value,
    offsets,
    skip
  };

  template <class... Parts>
  bool problem(Parts&&... parts) {
    std::ostringstream s;
    s << "tensor " << quote_name(current_.name) << ": ";
    (s << ... << std::forward<Parts>(parts));
    error_ = s.str();
    return false;
  }

  bool fail_top(std::string message) {
    error_ = std::move(message);
    return false;
  }

  // A value of the wrong kind where the state expects something else.
  bool value(const char* kind) {
    switch (state_) {
      case state::skip: return skip(0);
      case state::root: return fail_top(std::string("the header must be a JSON object, found ") + kind);
      case state::metadata_value:
        return fail_top(std::string("__metadata__ must be an object of strings, found ") + kind);
      case state::metadata_string:
        return fail_top("__metadata__ value of " + quote_name(metadata_key_) + " must be a string, found " + kind);
      case state::tensor_value:
        return problem("the entry must be an object {\"dtype\", \"shape\", \"data_offsets\"}, found ", kind);
      case state::dtype_value: return problem("dtype must be a string such as \"F32\", found ", kind);
      case state::shape_value: return problem("shape must be a list of non-negative integers, found ", kind);
      case state::shape: return problem("shape must be a list of non-negative integers, but it holds ", kind);
      case state::offsets_value:
        return problem("data_offsets must be two non-negative integers [begin, end], found ", kind);
      case state::offsets:
        return problem("data_offsets must be two non-negative integers [begin, end], but it holds ", kind);
      default: return fail_top(std::string("unexpected: ") + kind + " in the header");
    }
  }

  // Events inside a field that is ignored: nesting is counted, never stored.
  bool skip(int delta) {
    skip_depth_ += delta;
    if (skip_depth_ == 0) state_ = state::tensor;
    return true;
  }

  bool finish_tensor() {
    state_ = state::top;
    if (!has_dtype_) return problem("no dtype field");
    if (!has_shape_) return problem("no shape field");
    if (!has_offsets_) return problem("no data_offsets field");
    auto& t = current_;
    // The product in exact arithmetic: a zero dimension makes it 0 whatever the others are.
    std::int64_t numel = 1;
    if (std::find(t.shape.begin(), t.shape.end(), std::int64_t{0}) != t.shape.end()) {
      numel = 0;
    } else {
      for (std::int64_t d : t.shape) {
        const auto product = checked_mul(numel, d);
        if (!product) return problem("shape ", format_shape(t.shape), " has more than 2^63 elements");
        numel = *product;
      }
    }
    const std::uint64_t size = dtype_size(t.type);
    if (static_cast<std::uint64_t>(numel) > std::numeric_limits<std::uint64_t>::max() / size)
      return problem("shape ", format_shape(t.shape), " of ", dtype_name(t.type), " needs more than 2^64 bytes");
    const std::uint64_t needed = static_cast<std::uint64_t>(numel) * size;
    if (t.begin > t.end) return problem("data_offsets [", t.begin, ", ", t.end, "] begins after it ends");
    if (t.end > buffer_bytes_)
      return problem("data_offsets [", t.begin, ", ", t.end, "] end beyond the data buffer, which holds ",
                     buffer_bytes_, " bytes after the header (is the file truncated?)");
    if (t.end - t.begin != needed)
      return problem("data_offsets [", t.begin, ", ", t.end, "] span ", t.end - t.begin, " bytes, but shape ",
                     format_shape(t.shape), " of ", dtype_name(t.type), " needs ", needed, " bytes");
    tensors_.push_back(std::move(t));
    return true;
  }

  std::uint64_t buffer_bytes_;
  state state_ = state::root;
  std::string error_;
  std::vector<tensor_entry> tensors_;
  std::map<std::string, std::string> metadata_;
  std::unordered_set<std::string> names_;
  tensor_entry current_;
  std::string metadata_key_;
  bool has_dtype_ = false, has_shape_ = false, has_offsets_ = false;
  int offsets_seen_ = 0;
  long skip_depth_ = 0;
};

// Throws vitscale::error if `text` is not valid UTF-8 (the JSON header must be).
inline void check_utf8(const std::string& text, const char* what) {
  try {
    (void)nlohmann::json(text).dump();
  } catch (const nlohmann::json::type_error&) {
    fail("safetensors: ", what, " ", quote_name(text), " is not valid UTF-8");
  }
}

}  // namespace detail

// Reads a safetensors file: the header is validated in the constructor, tensors are read on demand.
// One reader per thread (reads move the file position).
class safetensors_reader {
 public:
  explicit safetensors_reader(const std::string& path) : path_(path) {
    std::error_code ignored;
    if (std::filesystem::is_directory(path, ignored)) fail("it is a directory");  // opens, then fails every read
    errno = 0;
    file_.open(path, std::ios::binary);
    if (!file_) fail("cannot open it: ", errno ? detail::errno_text(errno) : std::string("unknown reason"));
    file_.seekg(0, std::ios::end);
    const std::streamoff length = file_.tellg();
    if (length < 0) fail("cannot find its length");
    file_size_ = static_cast<std::uint64_t>(length);
    if (file_size_ < 8)
      fail("it is ", file_size_, " bytes long, too short for the 8-byte header length that starts a safetensors file");

    unsigned char prefix[8];
    read_at(0, prefix, 8, "the header length");
    std::uint64_t header_bytes = 0;
    for (int k = 7; k >= 0; --k) header_bytes = header_bytes << 8 | prefix[k];
    if (header_bytes > detail::max_header_bytes)
      fail("the header length ", header_bytes,
           " is larger than the 100 MB safetensors allows (is this a safetensors file?)");
    if (header_bytes > file_size_ - 8)
      fail("the header length ", header_bytes, " is larger than the ", file_size_ - 8,
           " bytes that follow it (is the file truncated?)");
    data_offset_ = 8 + header_bytes;

    std::string header(static_cast<std::size_t>(header_bytes), '\0');
    read_at(8, header.data(), header.size(), "the header");
    // nlohmann stops at a NUL byte as if the text ended there; JSON never holds a raw one, and whatever
    // follows it would be bytes nobody validated.
    if (const auto nul = header.find('\0'); nul != std::string::npos)
      fail("the header is not valid JSON: it holds a NUL byte at byte ", nul);
    detail::header_parser parser(file_size_ - data_offset_);
    // Exceptions from nlohmann are reported through parse_error(); anything else is a bug to surface as is.
    const bool ok = nlohmann::json::sax_parse(header.begin(), header.end(), &parser);
    if (!ok || !parser.complete())
      fail(parser.error().empty() ? std::string("the header is incomplete") : parser.error());
    tensors_ = std::move(parser.tensors());
    metadata_ = std::move(parser.metadata());

    // File order; zero-size tensors occupy no bytes and overlap nothing.
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const tensor_entry& a, const tensor_entry& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const tensor_entry* last = nullptr;
    for (const auto& t : tensors_) {
      if (t.begin == t.end) continue;
      if (last && t.begin < last->end)
        fail("tensors ", detail::quote_name(last->name), " (bytes [", last->begin, ", ", last->end, ")) and ",
             detail::quote_name(t.name), " (bytes [", t.begin, ", ", t.end, ")) overlap");
      if (!last || t.end > last->end) last = &t;
    }
    index_.reserve(tensors_.size());
    for (std::size_t k = 0; k < tensors_.size(); ++k) index_.emplace(tensors_[k].name, k);
  }

  const std::string& path() const noexcept { return path_; }
  std::uint64_t file_size() const noexcept { return file_size_; }
  // Where the data buffer starts in the file (8 + header length): a tensor's bytes are at data_offset() + begin.
  std::uint64_t data_offset() const noexcept { return data_offset_; }

  // Every tensor, in the order of their bytes in the file.
  const std::vector<tensor_entry>& tensors() const noexcept { return tensors_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }

  const tensor_entry& entry(const std::string& name) const {
    const auto it = index_.find(name);
    if (it != index_.end()) return tensors_[it->second];
    std::ostringstream known;
    if (tensors_.empty()) {
      known << "it holds no tensors";
    } else {
      known << "it holds " << tensors_.size() << (tensors_.size() == 1 ? " tensor: " : " tensors: ");
      constexpr std::size_t listed = 12;
      for (std::size_t k = 0; k < std::min(listed, tensors_.size()); ++k)
        known << (k ? ", " : "") << detail::quote_name(tensors_[k].name);
      if (tensors_.size() > listed) known << ", ...";
    }
    fail("no tensor named ", detail::quote_name(name), "; ", known.str());
  }

  // The tensor's bytes as stored (little-endian); `bytes` must be its exact size.
  void read_raw(const std::string& name, void* out, std::size_t bytes) {
    const tensor_entry& t = entry(name);
    if (bytes != t.bytes())
      fail("tensor ", detail::quote_name(name), " is ", t.bytes(), " bytes (", dtype_name(t.type), " ",
           detail::format_shape(t.shape), "), but ", bytes, " bytes were asked for");
    read_at(data_offset_ + t.begin, out, bytes, "tensor " + detail::quote_name(t.name));
  }

  // The tensor as float, converted from F32 (copied), BF16 and F16 (exact) or F64 (rounded to nearest even);
  // `count` must be its number of elements.
  void read(const std::string& name, float* out, std::size_t count) {
    const tensor_entry& t = convertible(name, count, "float");
    switch (t.type) {
      case dtype::f32: read_at(data_offset_ + t.begin, out, t.bytes(), "tensor " + detail::quote_name(t.name)); break;
      case dtype::bf16:
        convert<std::uint16_t>(t, out, [](std::uint16_t b) { return float(bf16::from_bits(b)); });
        break;
      case dtype::f16: convert<std::uint16_t>(t, out, [](std::uint16_t h) { return detail::half_to_float(h); }); break;
      default: convert<double>(t, out, [](double d) { return static_cast<float>(d); }); break;
    }
  }

  // The tensor as bf16, converted from BF16 (copied) or F32, F16, F64 (each rounded once, to nearest even);
  // `count` must be its number of elements.
  void read(const std::string& name, bf16* out, std::size_t count) {
    const tensor_entry& t = convertible(name, count, "bf16");
    switch (t.type) {
      case dtype::bf16: read_at(data_offset_ + t.begin, out, t.bytes(), "tensor " + detail::quote_name(t.name)); break;
      case dtype::f32: convert<float>(t, out, [](float f) { return bf16(f); }); break;
      case dtype::f16:
        convert<std::uint16_t>(t, out, [](std::uint16_t h) { return bf16(detail::half_to_float(h)); });
        break;
      default: convert<double>(t, out, [](double d) { return detail::double_to_bf16(d); }); break;
    }
  }

 private:
  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    detail::fail("safetensors file '", path_, "': ", std::forward<Parts>(parts)...);
  }

  const tensor_entry& convertible(const std::string& name, std::size_t count, const char* to) const {
    const tensor_entry& t = entry(name);
    if (t.type != dtype::f32 && t.type != dtype::bf16 && t.type != dtype::f16 && t.type != dtype::f64)
      fail("tensor ", detail::quote_name(name), " is ", dtype_name(t.type), "; only F64, F32, F16 and BF16 convert to ",
           to, " (read_raw gives the bytes)");
    if (count != static_cast<std::uint64_t>(t.numel()))
      fail("tensor ", detail::quote_name(name), " has ", t.numel(), " elements (shape ", detail::format_shape(t.shape),
           "), but room for ", count, " was given");
    return t;
  }

  // Reads the stored elements (type Stored) in chunks and writes op(element) to out.
  template <class Stored, class Out, class Op>
  void convert(const tensor_entry& t, Out* out, Op op) {
    constexpr std::size_t chunk = (std::size_t{1} << 20) / sizeof(Stored);
    const std::size_t n = static_cast<std::size_t>(t.numel());
    std::vector<Stored> buffer(std::min(chunk, n));
    const std::string what = "tensor " + detail::quote_name(t.name);
    for (std::size_t done = 0; done < n;) {
      const std::size_t take = std::min(chunk, n - done);
      read_at(data_offset_ + t.begin + done * sizeof(Stored), buffer.data(), take * sizeof(Stored), what);
      for (std::size_t k = 0; k < take; ++k) out[done + k] = op(buffer[k]);
      done += take;
    }
  }

  // `what` names the bytes for the error message ("the header", "tensor 'x'").
  void read_at(std::uint64_t offset, void* out, std::size_t bytes, const std::string& what) {
    if (bytes == 0) return;
    file_.clear();
    file_.seekg(static_cast<std::streamoff>(offset));
    auto* dst = static_cast<char*>(out);
    // In pieces of at most 1 GiB, so that no single call's size can overflow a platform's streamsize.
    for (std::size_t done = 0; done < bytes && file_;) {
      const std::size_t take = std::min<std::size_t>(bytes - done, std::size_t{1} << 30);
      file_.read(dst + done, static_cast<std::streamsize>(take));
      done += static_cast<std::size_t>(file_.gcount());
    }
    if (!file_)
      fail("the file ended or failed while reading ", what, " (", bytes, " bytes at offset ", offset,
           "); did it change after it was opened?");
  }

  std::string path_;
  std::ifstream file_;
  std::uint64_t file_size_ = 0;
  std::uint64_t data_offset_ = 0;
  std::vector<tensor_entry> tensors_;
  std::map<std::string, std::string> metadata_;
  std::unordered_map<std::string, std::size_t> index_;
};

// Collects tensors and metadata, then writes them as one safetensors file, atomically.
//
// add() references the caller's memory and does not copy it (a checkpoint is the size of the model): the
// data must stay valid and unchanged until write() returns. Everything that can be checked before writing
// (names, shapes, sizes) is checked in add(), so that a mistake never gets as far as the file system.
class safetensors_writer {
 public:
  // A tensor of `type` and `shape` whose row-major little-endian bytes are data[0, bytes).
  void add(const std::string& name, dtype type, const std::vector<std::int64_t>& shape, const void* data,
           std::size_t bytes) {
    if (name == "__metadata__") detail::fail("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
    detail::check_utf8(name, "tensor name");
    if (index_.count(name))
      detail::fail("safetensors writer: a tensor named ", detail::quote_name(name), " was already added");
    std::int64_t numel = 1;
    for (std::int64_t d : shape) {
      if (d < 0)
        detail::fail("safetensors writer: tensor ", detail::quote_name(name), " has a negative dimension in shape ",
                     detail::format_shape(shape));
    }
    if (std::find(shape.begin(), shape.end(), std::int64_t{0}) != shape.end()) {
      numel = 0;
    } else {
      for (std::int64_t d : shape) {
        const auto product = detail::checked_mul(numel, d);
        if (!product)
          detail::fail("safetensors writer: tensor ", detail::quote_name(name), " shape ", detail::format_shape(shape),
                       " has more than 2^63 elements");
        numel = *product;
      }
    }
    const std::uint64_t size = dtype_size(type);
    if (static_cast<std::uint64_t>(numel) > std::numeric_limits<std::uint64_t>::max() / size)
      detail::fail("safetensors writer: tensor ", detail::quote_name(name), " of ", dtype_name(type), " shape ",
                   detail::format_shape(shape), " needs more than 2^64 bytes");
    if (static_cast<std::uint64_t>(numel) * size != bytes)
      detail::fail("safetensors writer: tensor ", detail::quote_name(name), " of ", dtype_name(type), " shape ",
                   detail::format_shape(shape), " needs ", static_cast<std::uint64_t>(numel) * size, " bytes, but ",
                   bytes, " were given");
    if (bytes != 0 && data == nullptr)
      detail::fail("safetensors writer: tensor ", detail::quote_name(name), " has no data (a null pointer)");
    index_.emplace(name, pending_.size());
    pending_.push_back(pending{name, type, shape, data, bytes});
  }

  // An F32 tensor of `shape` read from data[0, numel).
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const float* data) {
    add(name, dtype::f32, shape, data, element_bytes(shape, sizeof(float)));
  }
  // A BF16 tensor of `shape` read from data[0, numel).
  void add(const std::string& name, const std::vector<std::int64_t>& shape, const bf16* data) {
    add(name, dtype::bf16, shape, data, element_bytes(shape, sizeof(bf16)));
  }

  // A "__metadata__" entry (a later call with the same key replaces the value).
  void set_metadata(const std::string& key, const std::string& value) {
    detail::check_utf8(key, "metadata key");
    detail::check_utf8(value, "metadata value");
    metadata_[key] = value;
  }

  std::size_t size() const noexcept { return pending_.size(); }

  // Writes the file: tensors in the order added, the header padded with spaces to a multiple of 8 bytes so
  // that every tensor starting at a multiple of its alignment in the buffer is aligned in the file too.
  // Atomically (io/files.hpp: a new temporary file, fsync, rename): a crash, an error or a kill part-way leaves
  // any previous file at `path` as it was; keep::previous also keeps that file as `path`.prev.
  void write(const std::string& path, keep previous = keep::nothing) const {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const auto& p : pending_) {
      header[p.name] = {
          {"dtype", dtype_name(p.type)}, {"shape", p.shape}, {"data_offsets", {offset, offset + p.bytes}}};
      offset += p.bytes;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    unsigned char prefix[8];
    for (int k = 0; k < 8; ++k)
      prefix[k] = static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * k));

    atomic_file file(path, "safetensors writer", previous);
    file.write(prefix, 8);
    file.write(text.data(), text.size());
    for (const auto& p : pending_) file.write(p.data, p.bytes);
    file.commit();
  }

 private:
  struct pending {
    std::string name;
    dtype type;
    std::vector<std::int64_t> shape;
    const void* data;
    std::size_t bytes;
  };

  // numel × element size for the typed add()s (overflow is left for the checked add() to report).
  static std::size_t element_bytes(const std::vector<std::int64_t>& shape, std::size_t size) {
    std::size_t n = size;
    for (std::int64_t d : shape) n *= static_cast<std::size_t>(d < 0 ? 0 : d);
    return n;
  }

  std::vector<pending> pending_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace vitscale::io
