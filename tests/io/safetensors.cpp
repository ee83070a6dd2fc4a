// safetensors: round trips through vitscale's writer and reader, files written by Python's `safetensors`
// package (tests/reference/safetensors_reference.py -> tests/golden/io/), and hostile files built here byte by
// byte, each of which must be refused with a message that names the file, the tensor and the problem.
#include <doctest/doctest.h>
#include <support/scratch.hpp>
#include <support/errors.hpp>
#include <vitscale/io/safetensors.hpp>

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace io = vitscale::io;
namespace fs = std::filesystem;
using vitscale::bf16;

namespace {

using vitscale::test::scratch;  // support/scratch.hpp

std::string scratch_file(const std::string& name) { return (scratch() / name).string(); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int k = 0; k < 8; ++k) s[static_cast<std::size_t>(k)] = static_cast<char>((v >> (8 * k)) & 0xffu);
  return s;
}

// A file of [8-byte header length][header][data]; the length written is the header's unless `claimed` is given.
std::string raw_file(const std::string& name, const std::string& header, const std::string& data = "",
                     std::optional<std::uint64_t> claimed = std::nullopt) {
  const std::string path = scratch_file(name);
  spit(path, le64(claimed ? *claimed : header.size()) + header + data);
  return path;
}


void check_mentions(const std::string& message, std::initializer_list<const char*> parts) {
  INFO("message: " << message);
  for (const char* part : parts)
    CHECK_MESSAGE(message.find(part) != std::string::npos, "should mention \"" << std::string(part) << "\"");
}

// Opening `header` + `data` as a file named `name` must fail, and the message mention the file and `parts`.
void refused(const std::string& name, const std::string& header, const std::string& data,
             std::initializer_list<const char*> parts, std::optional<std::uint64_t> claimed = std::nullopt) {
  const std::string path = raw_file(name, header, data, claimed);
  const std::string message = vitscale::test::expected_error([&] { io::safetensors_reader reader(path); });
  check_mentions(message, {name.c_str()});
  check_mentions(message, parts);
}

// One F32 tensor "w" of shape [2] and its 8 bytes, valid: the base the hostile cases change one thing in.
const std::string one_tensor = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
const std::string eight_bytes(8, '\x01');

std::string tensor_json(const std::string& name, const std::string& dtype, const std::string& shape,
                        const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

}  // namespace

TEST_CASE("safetensors dtypes: names, sizes and parsing agree") {
  for (io::dtype t : {io::dtype::f64, io::dtype::f32, io::dtype::f16, io::dtype::bf16, io::dtype::i64, io::dtype::i32,
                      io::dtype::i16, io::dtype::i8, io::dtype::u8, io::dtype::boolean}) {
    INFO(io::dtype_name(t));
    REQUIRE(io::parse_dtype(io::dtype_name(t)).has_value());
    CHECK(*io::parse_dtype(io::dtype_name(t)) == t);
    CHECK(io::dtype_from_name(io::dtype_name(t)) == t);
  }
  CHECK(io::dtype_size(io::dtype::f64) == 8);
  CHECK(io::dtype_size(io::dtype::bf16) == 2);
  CHECK(io::dtype_size(io::dtype::boolean) == 1);
  CHECK(std::string(io::dtype_name(io::dtype::boolean)) == "BOOL");
  CHECK_FALSE(io::parse_dtype("f32").has_value());  // names are case-sensitive in the format
  check_mentions(vitscale::test::expected_error([] { (void)io::dtype_from_name("F17"); }), {"F17", "BF16"});
}

TEST_CASE("safetensors: f32 and bf16 round trip through the writer and reader, bit for bit") {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
  std::vector<float> w(197 * 3);
  for (float& x : w) x = dist(rng);
  w[5] = std::numeric_limits<float>::infinity();
  w[6] = -0.0f;
  std::vector<bf16> b(50);
  for (bf16& x : b) x = bf16(dist(rng));
  const float scalar = 0.1f;

  io::safetensors_writer writer;
  writer.add("blocks.0.bias", {50}, b.data());  // a 100-byte tensor first: the next one starts unaligned to 8
  writer.add("blocks.0.weight", {197, 3}, w.data());
  writer.add("scalar", {}, &scalar);
  writer.add("empty", {0, 5}, static_cast<const float*>(nullptr));
  writer.set_metadata("format", "pt");
  writer.set_metadata("note", "replaced below");
  writer.set_metadata("note", "ünïcödé ok");
  CHECK(writer.size() == 4);
  const std::string path = scratch_file("round_trip.safetensors");
  writer.write(path);

  io::safetensors_reader reader(path);
  CHECK(reader.data_offset() % 8 == 0);
  CHECK(reader.file_size() == reader.data_offset() + 100 + 197 * 3 * 4 + 4);
  CHECK(reader.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "ünïcödé ok"}});
  REQUIRE(reader.tensors().size() == 4);
  // In the order added, back to back from offset 0 (no gaps: the reference implementation refuses gaps).
  CHECK(reader.tensors()[0].name == "blocks.0.bias");
  CHECK(reader.tensors()[1].name == "blocks.0.weight");
  CHECK(reader.tensors()[2].name == "scalar");
  CHECK(reader.tensors()[3].name == "empty");
  CHECK(reader.tensors()[1].begin == 100);
  CHECK(reader.tensors()[1].end == 100 + 197 * 3 * 4);
  const io::tensor_entry& e = reader.entry("blocks.0.weight");
  CHECK(e.type == io::dtype::f32);
  CHECK(e.shape == std::vector<std::int64_t>{197, 3});
  CHECK(e.numel() == 591);
  CHECK(reader.entry("scalar").shape.empty());
  CHECK(reader.entry("scalar").numel() == 1);
  CHECK(reader.entry("empty").numel() == 0);
  CHECK(reader.contains("empty"));
  CHECK_FALSE(reader.contains("missing"));

  std::vector<float> w_back(w.size());
  reader.read("blocks.0.weight", w_back.data(), w_back.size());
  CHECK(std::memcmp(w_back.data(), w.data(), w.size() * sizeof(float)) == 0);
  std::vector<bf16> b_back(b.size());
  reader.read("blocks.0.bias", b_back.data(), b_back.size());
  CHECK(std::memcmp(b_back.data(), b.data(), b.size() * sizeof(bf16)) == 0);
  float s_back = 0;
  reader.read("scalar", &s_back, 1);
  CHECK(s_back == scalar);
  reader.read("empty", static_cast<float*>(nullptr), 0);

  // Conversions: bf16 -> float is exact; float -> bf16 rounds once, as bf16(float) does.
  std::vector<float> b_as_float(b.size());
  reader.read("blocks.0.bias", b_as_float.data(), b_as_float.size());
  for (std::size_t k = 0; k < b.size(); ++k) CHECK(b_as_float[k] == float(b[k]));
  std::vector<bf16> w_as_bf16(w.size());
  reader.read("blocks.0.weight", w_as_bf16.data(), w_as_bf16.size());
  std::size_t differ = 0;
  for (std::size_t k = 0; k < w.size(); ++k) differ += w_as_bf16[k].bits != bf16(w[k]).bits;
  CHECK(differ == 0);

  // The raw bytes are the stored little-endian ones.
  std::vector<unsigned char> raw(100);
  reader.read_raw("blocks.0.bias", raw.data(), raw.size());
  CHECK(std::memcmp(raw.data(), b.data(), 100) == 0);
  // The writer wrote exactly: [length][header padded with spaces][bytes].
  const std::string bytes = slurp(path);
  const std::string header = bytes.substr(8, reader.data_offset() - 8);
  CHECK(header.front() == '{');
  CHECK(header.find_last_not_of(' ') + 1 > header.size() - 8);
  CHECK(header[header.find_last_not_of(' ')] == '}');
}

TEST_CASE("safetensors: reads what Python's safetensors package wrote (F32, BF16, F16, F64, I64, scalar, empty)") {
  const std::string path = std::string(VITSCALE_TEST_GOLDEN_DIR) + "/io/python_mixed.safetensors";
  io::safetensors_reader reader(path);
  CHECK(reader.metadata() ==
        std::map<std::string, std::string>{{"format", "pt"}, {"source", "tests/reference/safetensors_reference.py"}});
  // Python orders by alignment then name; tensors() lists them by offset (the zero-size one before the
  // tensor starting at the same byte).
  std::vector<std::string> names;
  for (const auto& t : reader.tensors()) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"i64", "f64", "empty", "f32", "scalar", "bf16", "f16"});

  SUBCASE("F32 [2, 3, 4]: arange * 0.25 - 3") {
    CHECK(reader.entry("f32").shape == std::vector<std::int64_t>{2, 3, 4});
    std::vector<float> v(24);
    reader.read("f32", v.data(), v.size());
    for (int k = 0; k < 24; ++k) CHECK(v[static_cast<std::size_t>(k)] == static_cast<float>(k) * 0.25f - 3.0f);
    std::vector<bf16> h(24);
    reader.read("f32", h.data(), h.size());  // every value is exact in bf16
    for (int k = 0; k < 24; ++k) CHECK(float(h[static_cast<std::size_t>(k)]) == static_cast<float>(k) * 0.25f - 3.0f);
  }
  SUBCASE("BF16 [10]: (arange - 5) * 0.5") {
    CHECK(reader.entry("bf16").type == io::dtype::bf16);
    std::vector<float> v(10);
    reader.read("bf16", v.data(), v.size());
    for (int k = 0; k < 10; ++k) CHECK(v[static_cast<std::size_t>(k)] == static_cast<float>(k - 5) * 0.5f);
    std::vector<bf16> h(10);
    reader.read("bf16", h.data(), h.size());
    for (int k = 0; k < 10; ++k) CHECK(float(h[static_cast<std::size_t>(k)]) == static_cast<float>(k - 5) * 0.5f);
  }
  SUBCASE("F16 [2, 5]: normals, the largest, the smallest normal and subnormal, infinities, NaN, -0") {
    CHECK(reader.entry("f16").shape == std::vector<std::int64_t>{2, 5});
    std::vector<float> v(10);
    reader.read("f16", v.data(), v.size());
    CHECK(v[0] == 0.0f);
    CHECK_FALSE(std::signbit(v[0]));
    CHECK(v[1] == 1.0f);
    CHECK(v[2] == -2.0f);
    CHECK(v[3] == 65504.0f);
    CHECK(v[4] == std::ldexp(1.0f, -14));
    CHECK(v[5] == std::ldexp(1.0f, -24));
    CHECK(v[6] == std::numeric_limits<float>::infinity());
    CHECK(v[7] == -std::numeric_limits<float>::infinity());
    CHECK(std::isnan(v[8]));
    CHECK(v[9] == 0.0f);
    CHECK(std::signbit(v[9]));
    std::vector<bf16> h(10);
    reader.read("f16", h.data(), h.size());
    CHECK(float(h[3]) == 65536.0f);  // 65504 = 0x477fe000 rounds up to 2^16 in bf16
    CHECK(float(h[5]) == std::ldexp(1.0f, -24));
    CHECK(std::isnan(float(h[8])));
  }
  SUBCASE("F64 [3]: rounded to float, and to bf16 once (not via float)") {
    std::vector<float> v(3);
    reader.read("f64", v.data(), v.size());
    CHECK(v[0] == static_cast<float>(1.0 / 3.0));
    CHECK(v[1] == static_cast<float>(-0.1));
    CHECK(v[2] == 1.00390625f);  // 1 + 2^-8 + 2^-30 in float is 1 + 2^-8
    std::vector<bf16> h(3);
    reader.read("f64", h.data(), h.size());
    CHECK(h[0].bits == 0x3eab);
    CHECK(h[1].bits == 0xbdcd);
    CHECK(h[2].bits == 0x3f81);  // 1 + 2^-7: above the tie, though rounding via float would give 1 (0x3f80)
  }
  SUBCASE("I64 [5] as raw bytes; not convertible to float") {
    std::int64_t v[5] = {};
    reader.read_raw("i64", v, sizeof v);
    for (int k = 0; k < 5; ++k) CHECK(v[k] == k - 2);
    float f[5];
    check_mentions(vitscale::test::expected_error([&] { reader.read("i64", f, 5); }), {"python_mixed", "'i64'", "I64", "read_raw"});
  }
  SUBCASE("scalar [] and zero-size [0, 3]") {
    float s = 0;
    reader.read("scalar", &s, 1);
    CHECK(s == 7.5f);
    CHECK(reader.entry("empty").shape == std::vector<std::int64_t>{0, 3});
    CHECK(reader.entry("empty").begin == reader.entry("empty").end);
    reader.read("empty", static_cast<bf16*>(nullptr), 0);
  }
}

// With VITSCALE_SAFETENSORS_FOR_PYTHON=FILE this also writes FILE, for
//   python tests/reference/safetensors_reference.py check FILE
// to open with safetensors.torch.load_file and compare.
TEST_CASE("safetensors: writer output for Python (F32, BF16, I32, scalar, zero-size, metadata)") {
  std::vector<float> weight(15);
  for (int k = 0; k < 15; ++k) weight[static_cast<std::size_t>(k)] = static_cast<float>(k) * 0.25f - 3.0f;
  std::vector<bf16> bias(7);
  for (int k = 0; k < 7; ++k) bias[static_cast<std::size_t>(k)] = bf16(static_cast<float>(k - 3) * 0.5f);
  const float scalar = -1.5f;
  const std::int32_t steps[3] = {1, -2, 3};
  io::safetensors_writer writer;
  writer.add("weight", {3, 5}, weight.data());
  writer.add("bias", {7}, bias.data());
  writer.add("scalar", {}, &scalar);
  writer.add("empty", {4, 0}, static_cast<const bf16*>(nullptr));
  writer.add("steps", io::dtype::i32, {3}, steps, sizeof steps);
  writer.set_metadata("format", "pt");
  writer.set_metadata("written_by", "vitscale");
  std::vector<std::string> paths{scratch_file("for_python.safetensors")};
  if (const char* extra = std::getenv("VITSCALE_SAFETENSORS_FOR_PYTHON")) paths.emplace_back(extra);
  for (const auto& path : paths) {
    writer.write(path);
    io::safetensors_reader reader(path);
    CHECK(reader.tensors().size() == 5);
    std::int32_t back[3] = {};
    reader.read_raw("steps", back, sizeof back);
    CHECK(back[1] == -2);
    CHECK(reader.entry("empty").type == io::dtype::bf16);
    if (path != paths.front()) MESSAGE("wrote " << path);
  }
}

TEST_CASE("safetensors: hostile and broken files are refused with a message naming the problem") {
  SUBCASE("missing file") {
    check_mentions(vitscale::test::expected_error([] { io::safetensors_reader r(scratch_file("no_such.safetensors")); }),
                   {"no_such.safetensors", "cannot open"});
    check_mentions(vitscale::test::expected_error([] { io::safetensors_reader r(scratch().string()); }), {"is a directory"});
  }
  SUBCASE("shorter than the 8-byte length") {
    const std::string path = scratch_file("short.safetensors");
    spit(path, std::string("\x10\x00\x00", 3));
    check_mentions(vitscale::test::expected_error([&] { io::safetensors_reader r(path); }), {"short.safetensors", "3 bytes", "too short"});
    spit(path, "");
    check_mentions(vitscale::test::expected_error([&] { io::safetensors_reader r(path); }), {"0 bytes", "too short"});
  }
  SUBCASE("header length larger than the file") {
    refused("claims_more.safetensors", one_tensor, eight_bytes, {"header length 1000", "truncated"}, 1000);
  }
  SUBCASE("header length absurd") {
    refused("absurd_length.safetensors", one_tensor, eight_bytes, {"100 MB"}, std::uint64_t{1} << 62);
    refused("absurd_length2.safetensors", one_tensor, eight_bytes, {"100 MB"}, 100'000'001);
  }
  SUBCASE("invalid JSON") {
    refused("bad_json.safetensors", R"({"w":{"dtype":"F32",)", "", {"not valid JSON"});
    refused("trailing.safetensors", one_tensor + "x", eight_bytes, {"not valid JSON"});
    refused("empty_header.safetensors", "", "", {"not valid JSON"});
    refused("nul_padding.safetensors", one_tensor + std::string(3, '\0'), eight_bytes,
            {"not valid JSON", "NUL byte at byte 54"});
  }
  SUBCASE("not an object") {
    refused("array.safetensors", "[1, 2]", "", {"must be a JSON object", "found a list"});
    refused("number.safetensors", "42", "", {"must be a JSON object", "number"});
  }
  SUBCASE("a name that is not UTF-8") {
    refused("latin1.safetensors", "{" + tensor_json("caf\xe9", "\"F32\"", "[2]", "[0,8]") + "}", eight_bytes,
            {"not valid UTF-8"});
    // Nothing of the offending bytes reaches the message.
    const std::string message = vitscale::test::expected_error([] { io::safetensors_reader r(scratch_file("latin1.safetensors")); });
    CHECK(message.find('\xe9') == std::string::npos);
  }
  SUBCASE("duplicate names") {
    refused("duplicate.safetensors",
            "{" + tensor_json("w", "\"F32\"", "[1]", "[0,4]") + "," + tensor_json("w", "\"F32\"", "[1]", "[4,8]") + "}",
            eight_bytes, {"two tensors named 'w'"});
    refused("duplicate_meta.safetensors", R"({"__metadata__":{"a":"1","a":"2"}})", "", {"__metadata__", "'a'"});
  }
  SUBCASE("tensor entry of the wrong kind") {
    refused("entry_string.safetensors", R"({"w":"F32"})", "", {"tensor 'w'", "must be an object", "string"});
    refused("entry_missing.safetensors", R"({"w":{"dtype":"F32","shape":[2]}})", eight_bytes,
            {"tensor 'w'", "no data_offsets field"});
    refused("entry_no_dtype.safetensors", R"({"w":{"shape":[2],"data_offsets":[0,8]}})", eight_bytes,
            {"tensor 'w'", "no dtype field"});
    refused("entry_twice.safetensors", R"({"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
            eight_bytes, {"tensor 'w'", "two 'dtype' fields"});
  }
  SUBCASE("unknown or malformed dtype") {
    refused("dtype_unknown.safetensors", "{" + tensor_json("w", "\"F17\"", "[2]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "unknown dtype \"F17\""});
    refused("dtype_lower.safetensors", "{" + tensor_json("w", "\"f32\"", "[2]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "unknown dtype \"f32\""});
    refused("dtype_number.safetensors", "{" + tensor_json("w", "4", "[2]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "dtype must be a string", "number"});
  }
  SUBCASE("shapes that are not lists of non-negative integers") {
    refused("shape_negative.safetensors", "{" + tensor_json("w", "\"F32\"", "[-2]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "negative dimension -2"});
    refused("shape_float.safetensors", "{" + tensor_json("w", "\"F32\"", "[2.5]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "2.5", "not a 64-bit integer"});
    refused("shape_string.safetensors", "{" + tensor_json("w", "\"F32\"", "[\"2\"]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "shape must be a list of non-negative integers", "it holds a string"});
    refused("shape_scalar.safetensors", "{" + tensor_json("w", "\"F32\"", "2", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "shape must be a list", "number"});
    refused("shape_nested.safetensors", "{" + tensor_json("w", "\"F32\"", "[[2]]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "shape must be a list", "it holds a list"});
    refused("shape_huge_dim.safetensors", "{" + tensor_json("w", "\"F32\"", "[18446744073709551615]", "[0,8]") + "}",
            eight_bytes, {"tensor 'w'", "larger than 2^63 - 1"});
    refused("shape_beyond_u64.safetensors", "{" + tensor_json("w", "\"F32\"", "[99999999999999999999]", "[0,8]") + "}",
            eight_bytes, {"tensor 'w'", "99999999999999999999", "not a 64-bit integer"});
    std::string rank65 = "[1";
    for (int k = 0; k < 64; ++k) rank65 += ",1";
    refused("shape_rank.safetensors", "{" + tensor_json("w", "\"F32\"", rank65 + "]", "[0,4]") + "}", "abcd",
            {"tensor 'w'", "more than 64 dimensions"});
  }
  SUBCASE("absurd shapes whose sizes overflow") {
    refused("shape_2p80.safetensors", "{" + tensor_json("w", "\"F32\"", "[1099511627776,1099511627776]", "[0,8]") + "}",
            eight_bytes, {"tensor 'w'", "[1099511627776, 1099511627776]", "more than 2^63 elements"});
    refused("shape_2p64_bytes.safetensors", "{" + tensor_json("w", "\"F32\"", "[2147483648,2147483648]", "[0,8]") + "}",
            eight_bytes, {"tensor 'w'", "more than 2^64 bytes"});
    // A zero makes the product 0 however large the rest; then the 8 bytes are too many.
    refused("shape_zero_huge.safetensors",
            "{" + tensor_json("w", "\"F32\"", "[1099511627776,0,1099511627776]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "span 8 bytes", "needs 0 bytes"});
  }
  SUBCASE("data_offsets that are not [begin, end] with begin <= end") {
    refused("offsets_one.safetensors", "{" + tensor_json("w", "\"F32\"", "[2]", "[8]") + "}", eight_bytes,
            {"tensor 'w'", "data_offsets must be two numbers", "found 1"});
    refused("offsets_three.safetensors", "{" + tensor_json("w", "\"F32\"", "[2]", "[0,8,8]") + "}", eight_bytes,
            {"tensor 'w'", "more than two"});
    refused("offsets_negative.safetensors", "{" + tensor_json("w", "\"F32\"", "[2]", "[-8,0]") + "}", eight_bytes,
            {"tensor 'w'", "negative offset -8"});
    refused("offsets_object.safetensors", "{" + tensor_json("w", "\"F32\"", "[2]", "{\"begin\":0}") + "}", eight_bytes,
            {"tensor 'w'", "data_offsets must be two non-negative integers", "found an object"});
    refused("offsets_reversed.safetensors", "{" + tensor_json("w", "\"F32\"", "[0]", "[8,0]") + "}", eight_bytes,
            {"tensor 'w'", "[8, 0]", "begins after it ends"});
  }
  SUBCASE("truncated data: a tensor ends beyond the buffer") {
    refused("truncated.safetensors", one_tensor, "\x01\x02\x03\x04\x05",
            {"tensor 'w'", "[0, 8]", "beyond the data buffer", "5 bytes"});
    refused("truncated_huge.safetensors",
            "{" + tensor_json("w", "\"U8\"", "[18446744073709551615]", "[0,18446744073709551615]") + "}", eight_bytes,
            {"tensor 'w'", "larger than 2^63 - 1"});
    refused("far_offsets.safetensors",
            "{" + tensor_json("w", "\"U8\"", "[4]", "[18446744073709551610,18446744073709551614]") + "}", eight_bytes,
            {"tensor 'w'", "beyond the data buffer"});
  }
  SUBCASE("byte count differs from shape x dtype size") {
    refused("numel_mismatch.safetensors", "{" + tensor_json("w", "\"F32\"", "[3]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "span 8 bytes", "[3]", "F32", "needs 12 bytes"});
    refused("dtype_mismatch.safetensors", "{" + tensor_json("w", "\"F64\"", "[2]", "[0,8]") + "}", eight_bytes,
            {"tensor 'w'", "needs 16 bytes"});
  }
  SUBCASE("overlapping tensors") {
    refused("overlap.safetensors",
            "{" + tensor_json("a", "\"F32\"", "[2]", "[0,8]") + "," + tensor_json("b", "\"F32\"", "[1]", "[4,8]") + "}",
            eight_bytes, {"'a'", "'b'", "overlap"});
    // Overlap with a tensor that is not the previous one in file order.
    refused("overlap_far.safetensors",
            "{" + tensor_json("big", "\"U8\"", "[8]", "[0,8]") + "," + tensor_json("x", "\"U8\"", "[2]", "[1,3]") +
                "," + tensor_json("y", "\"U8\"", "[2]", "[5,7]") + "}",
            eight_bytes, {"'big'", "'x'", "overlap"});
  }
  SUBCASE("__metadata__ that is not an object of strings") {
    refused("meta_number.safetensors", R"({"__metadata__":{"epoch":3}})", "",
            {"__metadata__", "'epoch'", "must be a string", "number"});
    refused("meta_nested.safetensors", R"({"__metadata__":{"cfg":{"a":"b"}}})", "",
            {"__metadata__", "'cfg'", "found an object"});
    refused("meta_list.safetensors", R"({"__metadata__":["a"]})", "", {"__metadata__ must be an object", "list"});
  }
}

TEST_CASE("safetensors: what the reader accepts beyond the writer's own files") {
  SUBCASE("padding spaces, __metadata__ null, unknown fields (deeply nested ones too), gaps, no tensors") {
    std::string nested(100000, '[');
    nested += std::string(100000, ']');
    const std::string header = R"({"__metadata__":null,"w":{"extra":{"x":[1,{"y":null}]},"dtype":"F32","deep":)" +
                               nested + R"(,"shape":[1],"data_offsets":[4,8]}}      )";
    const std::string path =
        raw_file("lenient.safetensors", header, std::string("\x00\x00\x00\x00\x00\x00\x80\x3f", 8));
    io::safetensors_reader reader(path);
    CHECK(reader.metadata().empty());
    float w = 0;
    reader.read("w", &w, 1);
    CHECK(w == 1.0f);

    io::safetensors_reader none(raw_file("no_tensors.safetensors", "{}        "));
    CHECK(none.tensors().empty());
    check_mentions(vitscale::test::expected_error([&] { (void)none.entry("w"); }), {"no tensor named 'w'", "no tensors"});
  }
}

TEST_CASE("safetensors: reads are checked against the entry") {
  std::vector<float> v(6, 1.0f);
  io::safetensors_writer writer;
  for (const char* name : {"alpha", "beta", "gamma"}) writer.add(name, {2, 3}, v.data());
  const std::string path = scratch_file("checked_reads.safetensors");
  writer.write(path);
  io::safetensors_reader reader(path);
  std::vector<float> out(6);
  check_mentions(vitscale::test::expected_error([&] { reader.read("alpha", out.data(), 5); }),
                 {"checked_reads.safetensors", "'alpha'", "6 elements", "[2, 3]", "5"});
  std::vector<bf16> out16(6);
  check_mentions(vitscale::test::expected_error([&] { reader.read("beta", out16.data(), 7); }), {"'beta'", "6 elements", "7"});
  check_mentions(vitscale::test::expected_error([&] { reader.read_raw("gamma", out.data(), 20); }), {"'gamma'", "24 bytes", "20"});
  check_mentions(vitscale::test::expected_error([&] { (void)reader.entry("delta"); }),
                 {"checked_reads.safetensors", "no tensor named 'delta'", "3 tensors", "'alpha'", "'beta'", "'gamma'"});
  check_mentions(vitscale::test::expected_error([&] { reader.read("delta", out.data(), 6); }), {"no tensor named 'delta'"});

  // The file shrinks after the header was validated: the read fails with a message, not garbage.
  fs::resize_file(path, reader.data_offset() + 30);
  check_mentions(vitscale::test::expected_error([&] { reader.read("beta", out.data(), 6); }),
                 {"checked_reads.safetensors", "tensor 'beta'", "ended", "change after it was opened"});
  check_mentions(vitscale::test::expected_error([&] { reader.read("beta", out16.data(), 6); }), {"tensor 'beta'", "ended"});
}

TEST_CASE("safetensors writer: mistakes are refused before anything is written") {
  const float data[6] = {1, 2, 3, 4, 5, 6};
  io::safetensors_writer writer;
  writer.add("w", {2, 3}, data);
  check_mentions(vitscale::test::expected_error([&] { writer.add("w", {6}, data); }), {"'w'", "already added"});
  // A raw add() whose byte count disagrees with shape × dtype size.
  const auto add_bytes = [&](io::dtype type, std::vector<std::int64_t> shape, std::size_t bytes) {
    return vitscale::test::expected_error([&] { writer.add("x", type, shape, data, bytes); });
  };
  check_mentions(add_bytes(io::dtype::f32, {2, 3}, 20), {"'x'", "F32", "[2, 3]", "needs 24 bytes", "20"});
  check_mentions(add_bytes(io::dtype::bf16, {2, 3}, 24), {"'x'", "BF16", "needs 12 bytes"});
  check_mentions(add_bytes(io::dtype::u8, {std::int64_t{1} << 40, std::int64_t{1} << 40}, 6),
                 {"'x'", "more than 2^63 elements"});
  check_mentions(add_bytes(io::dtype::f64, {std::int64_t{1} << 31, std::int64_t{1} << 31}, 6),
                 {"'x'", "more than 2^64 bytes"});
  check_mentions(vitscale::test::expected_error([&] { writer.add("x", {2, -3}, data); }), {"'x'", "negative dimension", "[2, -3]"});
  check_mentions(vitscale::test::expected_error([&] { writer.add("x", {2}, static_cast<const float*>(nullptr)); }), {"'x'", "null"});
  check_mentions(vitscale::test::expected_error([&] { writer.add("__metadata__", {1}, data); }), {"__metadata__", "reserved"});
  check_mentions(vitscale::test::expected_error([&] { writer.add("caf\xe9", {1}, data); }), {"tensor name", "not valid UTF-8"});
  check_mentions(vitscale::test::expected_error([&] { writer.set_metadata("k", "\xff"); }), {"metadata value", "not valid UTF-8"});
  CHECK(writer.size() == 1);  // nothing refused was kept
}

TEST_CASE("safetensors writer: a failed write leaves the previous file intact") {
  const std::string path = scratch_file("keep.safetensors");
  const float old_values[2] = {1.0f, 2.0f};
  io::safetensors_writer first;
  first.add("w", {2}, old_values);
  first.write(path);
  const std::string before = slurp(path);

  const float new_values[3] = {7.0f, 8.0f, 9.0f};
  io::safetensors_writer second;
  second.add("w", {3}, new_values);
  // A size mismatch is refused at add(), long before write() could touch the target.
  CHECK_THROWS_AS(second.add("v", io::dtype::f32, {3}, new_values, 8), vitscale::error);

  SUBCASE("links and stale files at temporary names are neither followed nor written") {
    const std::string other = scratch_file("links.safetensors"), victim = scratch_file("victim.txt");
    { std::ofstream(victim) << "precious"; }
    // Names an earlier version used (<path>.tmp-<pid>), with a process id that no process has and with ours
    // (ids repeat: a process of an earlier run may have had it), and this version's name of an ended process.
    const std::string dead = other + ".tmp-999999999", own = other + ".tmp-" + std::to_string(::getpid());
    const std::string stale = other + ".tmp-" + io::detail::host_name() + "-999999999-0123456789abcdef";
    const std::string alive = other + ".tmp-" + io::detail::host_name() + "-1-0123456789abcdef";  // init runs
    fs::create_symlink(victim, dead);
    fs::create_symlink(victim, own);
    { std::ofstream(stale) << "partial"; }
    { std::ofstream(alive) << "someone else's"; }
    second.write(other);
    CHECK(slurp(victim) == "precious");
    CHECK_FALSE(fs::exists(fs::symlink_status(dead)));
    CHECK_FALSE(fs::exists(fs::symlink_status(own)));
    CHECK_FALSE(fs::exists(stale));
    CHECK(slurp(alive) == "someone else's");  // a running process's temporary is left alone
    CHECK(io::safetensors_reader(other).entry("w").numel() == 3);
    CHECK(slurp(path) == before);
    // A new file is created only where nothing is: not through a link, not over a file.
    fs::create_symlink(victim, scratch_file("link"));
    errno = 0;
    CHECK(io::detail::create_new_file(scratch_file("link")) == -1);
    CHECK(errno == EEXIST);
    CHECK(io::detail::create_new_file(victim) == -1);
    CHECK(slurp(victim) == "precious");
    fs::remove(alive);
  }
  SUBCASE("keep::previous keeps the replaced file as <path>.prev") {
    const std::string kept = scratch_file("kept.safetensors");
    // What a process killed while linking the previous file leaves: removed by the next save of that path.
    const std::string stale_link = kept + ".prev.tmp-" + io::detail::host_name() + "-999999999-0123456789abcdef";
    { std::ofstream(stale_link) << "partial"; }
    first.write(kept, io::keep::previous);
    CHECK_FALSE(fs::exists(stale_link));
    CHECK_FALSE(fs::exists(kept + ".prev"));  // nothing was replaced
    const std::string first_bytes = slurp(kept);
    second.write(kept, io::keep::previous);
    CHECK(slurp(kept + ".prev") == first_bytes);
    CHECK(io::safetensors_reader(kept).entry("w").numel() == 3);
    for (const auto& entry : fs::directory_iterator(scratch()))
      CHECK_MESSAGE(entry.path().string().find("kept.safetensors.prev.tmp-") == std::string::npos, "left behind: " << entry.path());
  }
  SUBCASE("the rename fails: the temporary file is removed") {
    const std::string dir_target = scratch_file("a_directory.safetensors");
    fs::create_directories(fs::path(dir_target) / "occupied");
    check_mentions(vitscale::test::expected_error([&] { second.write(dir_target); }), {"a_directory.safetensors", "cannot rename"});
    CHECK(fs::is_directory(fs::path(dir_target) / "occupied"));
    for (const auto& entry : fs::directory_iterator(scratch()))
      CHECK_MESSAGE(entry.path().string().find("a_directory.safetensors.tmp-") == std::string::npos,
                    "left behind: " << entry.path());
  }
  SUBCASE("the directory does not exist") {
    check_mentions(vitscale::test::expected_error([&] { second.write(scratch_file("no/such/dir.safetensors")); }), {"cannot create"});
  }
  // The old file is still readable and holds the old values; a successful write then replaces it.
  {
    io::safetensors_reader reader(path);
    float back[2] = {};
    reader.read("w", back, 2);
    CHECK(back[1] == 2.0f);
  }
  second.write(path);
  io::safetensors_reader reader(path);
  CHECK(reader.entry("w").numel() == 3);
  for (const auto& entry : fs::directory_iterator(scratch()))
    CHECK_MESSAGE(entry.path().string().find(".tmp-") == std::string::npos, "left behind: " << entry.path());
}
