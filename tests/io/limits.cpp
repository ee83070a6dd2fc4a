// The readers' size limits, at the sizes the fuzzers (16 kB inputs) never reach: safetensors' 100 MB header
// cap (refused above it before anything is allocated; accepted at exactly 100 MB), the .npz reader's deflate
// ratio limit and its streaming (a 194 kB archive holding a 200 MB array is opened, sliced, verified and
// refused by big_vision's shape check without any large allocation), the IDX reader's claimed sizes, and
// infer_shape's range checks on sizes a file gives (dimensions beyond 2^30, which an int cast would wrap).
//
// Allocations are measured by replacing the global operator new of this test executable: the readers'
// buffers are std::vector and std::string, so `peak` is what they held at once. (Kokkos's own allocations
// go through malloc and are not counted; none of these reads makes any.)

#include <doctest/doctest.h>
#include <support/errors.hpp>
#include <vitscale/data/idx.hpp>
#include <vitscale/io/big_vision.hpp>
#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/npz.hpp>
#include <vitscale/io/safetensors.hpp>

#include <zlib.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

std::atomic<std::size_t> live_bytes{0}, peak_bytes{0};

constexpr std::size_t header_size = 16;  // keeps the default new alignment (16) of malloc's result

void* counted_new(std::size_t n) {
  void* p = std::malloc(n + header_size);
  if (!p) throw std::bad_alloc();
  *static_cast<std::size_t*>(p) = n;
  const std::size_t now = live_bytes += n;
  std::size_t peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
  }
  return static_cast<char*>(p) + header_size;
}

void counted_delete(void* p) noexcept {
  if (!p) return;
  char* base = static_cast<char*>(p) - header_size;
  live_bytes -= *reinterpret_cast<std::size_t*>(base);
  std::free(base);
}

}  // namespace

void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void operator delete(void* p) noexcept { counted_delete(p); }
void operator delete[](void* p) noexcept { counted_delete(p); }
void operator delete(void* p, std::size_t) noexcept { counted_delete(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_delete(p); }
// The nothrow forms too (std::stable_sort's buffer uses them): a sanitizer runtime brings its own, which must
// not pair with the deletes above. The aligned forms stay the runtime's, new and delete alike.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_delete(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_delete(p); }

namespace {

using namespace vitscale;
namespace fs = std::filesystem;

// The most bytes allocated at once (beyond what was live before) while f runs.
template <class F>
std::size_t peak_allocation(F&& f) {
  const std::size_t before = live_bytes.load();
  peak_bytes = before;
  f();
  return peak_bytes.load() - before;
}

struct scratch {
  fs::path dir;
  scratch() : dir(fs::temp_directory_path() / ("vitscale_limits_" + std::to_string(::getpid()))) {
    fs::create_directories(dir);
  }
  ~scratch() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string path = (dir / name).string();
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
    return path;
  }
};

std::string le(std::uint64_t v, int bytes) {
  std::string s;
  for (int k = 0; k < bytes; ++k) s += static_cast<char>((v >> (8 * k)) & 0xFF);
  return s;
}

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// An .npz with one deflated member NAME.npy: an '<f4' array of `count` zeros, deflated in pieces (nothing of
// its size is ever held). `claimed`, if nonzero, replaces the uncompressed size the ZIP records give.
std::string zeros_npz(const std::string& name, std::uint64_t count, std::uint64_t claimed = 0) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(count) + ",), }";
  header += std::string((64 - (10 + header.size() + 1) % 64) % 64, ' ') + "\n";
  const std::string npy_head = std::string("\x93NUMPY\x01\x00", 8) + le(header.size(), 2) + header;
  const std::uint64_t size = npy_head.size() + 4 * count;

  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string compressed;
  std::vector<unsigned char> out(1 << 16);
  uLong crc = crc32(0L, Z_NULL, 0);
  auto feed = [&](const unsigned char* p, std::size_t n, int flush) {
    crc = crc32(crc, p, static_cast<uInt>(n));
    z.next_in = const_cast<unsigned char*>(p);
    z.avail_in = static_cast<uInt>(n);
    do {
      z.next_out = out.data();
      z.avail_out = static_cast<uInt>(out.size());
      REQUIRE(deflate(&z, flush) != Z_STREAM_ERROR);
      compressed.append(reinterpret_cast<const char*>(out.data()), out.size() - z.avail_out);
    } while (z.avail_out == 0 || (flush == Z_FINISH && z.avail_in != 0));
  };
  feed(reinterpret_cast<const unsigned char*>(npy_head.data()), npy_head.size(), Z_NO_FLUSH);
  const std::vector<unsigned char> zeros(1 << 20, 0);
  for (std::uint64_t left = 4 * count; left > 0;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, zeros.size()));
    left -= n;
    feed(zeros.data(), n, left == 0 ? Z_FINISH : Z_NO_FLUSH);
  }
  deflateEnd(&z);

  const std::string member = name + ".npy";
  const std::uint64_t usize = claimed ? claimed : size;
  const std::string sizes = le(crc, 4) + le(compressed.size(), 4) + le(usize, 4);
  const std::string local = le(0x04034b50, 4) + le(20, 2) + le(0, 2) + le(8, 2) + le(0, 4) + sizes +
                            le(member.size(), 2) + le(0, 2) + member;
  const std::string central = le(0x02014b50, 4) + le(20, 2) + le(20, 2) + le(0, 2) + le(8, 2) + le(0, 4) + sizes +
                              le(member.size(), 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) +
                              le(0, 4) + member;
  const std::uint64_t cd_offset = local.size() + compressed.size();
  const std::string end = le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(1, 2) + le(1, 2) + le(central.size(), 4) +
                          le(cd_offset, 4) + le(0, 2);
  return local + compressed + central + end;
}

}  // namespace

TEST_CASE("the allocation counter sees a vector's allocation (so that the limits below can fail)") {
  const std::size_t peak = peak_allocation([] {
    std::vector<char> v(10u << 20);
    v[123] = 1;
    CHECK(v[123] == 1);
  });
  CHECK(peak >= (10u << 20));
}

TEST_CASE("safetensors: a header length over 100 MB is refused before the header is read") {
  scratch dir;
  for (const std::uint64_t claimed : {std::uint64_t(100'000'001), std::uint64_t(1) << 40, ~std::uint64_t(0)}) {
    CAPTURE(claimed);
    const std::string path = dir.write("big_header.safetensors", le(claimed, 8) + "{}");
    const std::string length = "the header length " + std::to_string(claimed);
    const std::size_t peak = peak_allocation([&] {
      CHECK_ERROR((void)io::safetensors_reader(path), "big_header.safetensors", length.c_str(),
                  "is larger than the 100 MB safetensors allows");
    });
    CHECK(peak < (1u << 20));
  }
}

TEST_CASE("safetensors: a header of exactly 100 MB (the cap) is read") {
  scratch dir;
  const std::string header = "{\"__metadata__\":{\"k\":\"v\"}}";
  const std::string path =
      dir.write("cap.safetensors", le(100'000'000, 8) + header + std::string(100'000'000 - header.size(), ' '));
  const io::safetensors_reader reader(path);
  CHECK(reader.tensors().empty());
  CHECK(reader.metadata().at("k") == "v");
  CHECK(reader.data_offset() == 100'000'008u);
}

TEST_CASE("npz: a 194 kB archive holding a 200 MB array is streamed, never held") {
  scratch dir;
  constexpr std::uint64_t count = 50'000'000;  // 200 MB of float zeros
  const std::string bytes = zeros_npz("embedding/kernel", count);
  CHECK(bytes.size() < 200'000);  // zeros deflate at ~1030:1, just inside deflate's 1032:1
  const std::string path = dir.write("zeros.npz", bytes);

  std::size_t peak = peak_allocation([&] {
    io::npz_reader reader(path);
    REQUIRE(reader.entries().size() == 1);
    CHECK(reader.entry("embedding/kernel").numel == std::int64_t(count));
    std::vector<float> slice(1000, 1.0f);
    reader.read_slice("embedding/kernel", count - 1000, slice.size(), slice.data());  // inflates all but 4 kB
    CHECK(slice[999] == 0.0f);
    reader.verify("embedding/kernel");  // the whole member, CRC checked
  });
  CHECK(peak < (4u << 20));  // the reader's working buffers (at most 1 MiB each), not the 200 MB

  // big_vision checks every shape against the model before it reads a byte: refused, nothing allocated.
  parameter_arena<vit_shape<1, 8, 2, 16, 2, options<opt::classes<3>, opt::channels<1>, opt::resolution<4>>>,
                  float, Kokkos::HostSpace>
      arena;
  peak = peak_allocation([&] {
    CHECK_ERROR((void)io::load_big_vision(path, arena), "zeros.npz",
                "mis-shaped: embedding/kernel: the file has [50000000], the model needs [2, 2, 1, 8]");
  });
  CHECK(peak < (4u << 20));
}

TEST_CASE("npz: a member claiming more than deflate's 1032:1 is refused when the archive is opened") {
  scratch dir;
  const std::string bytes = zeros_npz("a", 1000, /*claimed=*/4'000'000'000u);
  const std::string path = dir.write("bomb.npz", bytes);
  const std::size_t peak = peak_allocation([&] {
    CHECK_ERROR((void)io::npz_reader(path), "bomb.npz", "to 4000000000",
                "more than deflate can (1032:1): the sizes are corrupt or a decompression bomb");
  });
  CHECK(peak < (1u << 20));
}

TEST_CASE("IDX: claimed sizes beyond what the file can hold are refused before the data is allocated") {
  scratch dir;
  const std::string header = std::string("\0\0\x08\x03", 4) + be32(60000) + be32(28) + be32(28);
  // A plain file: measured against its length.
  const std::string plain = dir.write("images-idx3-ubyte", header + std::string(100, '\0'));
  std::size_t peak = peak_allocation([&] {
    CHECK_ERROR((void)data::read_idx_images(plain), "images-idx3-ubyte", "truncated",
                "47040000 data bytes", "holds only 100 bytes");
  });
  CHECK(peak < (1u << 20));

  // A gzip file: bounded by deflate's ratio (65536 x 65536 images, 4 GiB each, claimed by ~60 bytes).
  const std::string huge = std::string("\0\0\x08\x03", 4) + be32(4) + be32(65536) + be32(65536);
  uLongf gz_size = compressBound(static_cast<uLong>(huge.size())) + 32;
  std::string gz(gz_size, '\0');
  {
    z_stream z{};
    REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) == Z_OK);  // gzip wrapper
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(huge.data()));
    z.avail_in = static_cast<uInt>(huge.size());
    z.next_out = reinterpret_cast<Bytef*>(gz.data());
    z.avail_out = static_cast<uInt>(gz.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    gz.resize(z.total_out);
    deflateEnd(&z);
  }
  const std::string gz_path = dir.write("huge-idx3-ubyte.gz", gz);
  peak = peak_allocation([&] {
    CHECK_ERROR((void)data::read_idx_images(gz_path), "huge-idx3-ubyte.gz", "more than a gzip file of",
                "1032:1");
  });
  CHECK(peak < (1u << 20));
}

namespace {

// A safetensors file of F32 tensors with these shapes and no data: every shape holds a 0, so that a file of a
// few hundred bytes can give any other dimension.
std::string empty_tensors(const std::vector<std::pair<std::string, std::string>>& shapes, const std::string& meta = "") {
  std::string header = "{";
  if (!meta.empty()) header += "\"__metadata__\":{" + meta + "},";
  for (const auto& [name, shape] : shapes)
    header += "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[0,0]},";
  header.back() = '}';
  return le(header.size(), 8) + header;
}

std::vector<std::pair<std::string, std::string>> vit_tensors(const std::string& pe, const std::string& fc1 = "[16,0]",
                                                             const std::string& head = "[3,0]") {
  return {{"patch_embed.proj.weight", pe}, {"blocks.0.attn.qkv.weight", "[0,8]"}, {"blocks.0.mlp.fc1.weight", fc1},
          {"norm.weight", "[0]"}, {"head.weight", head}};
}

}  // namespace

TEST_CASE("infer_shape: sizes beyond 2^30, zero sizes, malformed block indices and metadata are refused") {
  scratch dir;
  auto infer = [&](const std::string& bytes) {
    const std::string path = dir.write("shape.safetensors", bytes);
    return [path] { (void)io::infer_shape(path); };
  };
  // A width of 2^32 became 0 through int(); 2^31 became negative.
  CHECK_ERROR(infer(empty_tensors(vit_tensors("[4294967296,0,2,2]")))(), "shape.safetensors",
              "the width (patch_embed.proj.weight's first dimension) is 4294967296, not a size infer_shape accepts (1 to 2^30)");
  CHECK_ERROR(infer(empty_tensors(vit_tensors("[8,0,2,2]")))(), "the channels", "is 0");
  CHECK_ERROR(infer(empty_tensors(vit_tensors("[8,1,2,0]")))(), "is not a square patch");
  CHECK_ERROR(infer(empty_tensors(vit_tensors("[8,0,2147483648,2147483648]")))(), "the channels", "is 0");
  CHECK_ERROR(infer(empty_tensors(vit_tensors("[0,1,2,2]", "[2147483648,0]")))(), "the width", "is 0");
  // Valid dimensions but zero elements elsewhere: the MLP width and the classes are range-checked too.
  auto with = [](std::vector<std::pair<std::string, std::string>> t, const std::string& name, const std::string& shape) {
    for (auto& e : t)
      if (e.first == name) e.second = shape;
    return t;
  };
  const auto base = vit_tensors("[8,1,2,2]");
  // patch_embed [8,1,2,2] holds 32 floats: give it data.
  auto with_pe_data = [&](std::vector<std::pair<std::string, std::string>> t, const std::string& meta = "") {
    std::string header = "{";
    if (!meta.empty()) header += "\"__metadata__\":{" + meta + "},";
    for (const auto& [name, shape] : t)
      header += "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":" +
                (name == "patch_embed.proj.weight" ? "[0,128]" : "[128,128]") + "},";
    header.back() = '}';
    return le(header.size(), 8) + header + std::string(128, '\0');
  };
  CHECK_ERROR(infer(with_pe_data(with(base, "blocks.0.mlp.fc1.weight", "[2147483648,0]")))(),
              "the MLP width (blocks.0.mlp.fc1.weight's rows) is 2147483648");
  CHECK_ERROR(infer(with_pe_data(with(base, "head.weight", "[1099511627776,0]")))(),
              "the number of classes (head.weight's rows) is 1099511627776");
  // pos_embed with (2^31 - 1)^2 entries: a square grid whose side (2^31 - 1) times the patch overflowed int.
  auto pos = base;
  pos.push_back({"pos_embed", "[0,4611686014132420609,8]"});
  CHECK_ERROR(infer(with_pe_data(pos))(), "pos_embed has 4611686014132420609 entries: not a square grid");
  auto pos2 = base;
  pos2.push_back({"pos_embed", "[0,1073741824,8]"});  // a 32768^2 grid of 2-pixel patches: 65536 px, accepted
  const std::string ok = dir.write("pos.safetensors", with_pe_data(pos2));
  CHECK(io::infer_shape(ok).resolution == 65536);
  // Block indices: decimal digits without leading zeros, below 10^6.
  auto blocks = base;
  blocks.push_back({"blocks.01.norm1.weight", "[0]"});
  CHECK_ERROR(infer(with_pe_data(blocks))(), "unexpected tensor name blocks.01.norm1.weight");
  blocks.back().first = "blocks.1000000.norm1.weight";
  CHECK_ERROR(infer(with_pe_data(blocks))(), "unexpected tensor name blocks.1000000.norm1.weight");
  // Metadata integers: digits only, 1 to 2^30.
  for (const char* heads : {"+2", " 2", "2abc", "0", "99999999999", "1073741825", "-1", ""}) {
    CAPTURE(heads);
    CHECK_ERROR(infer(with_pe_data(base, std::string("\"vitscale.heads\":\"") + heads + "\""))(),
                "metadata vitscale.heads", "is not a positive integer");
  }
  const std::string two = dir.write("heads.safetensors", with_pe_data(base, "\"vitscale.heads\":\"2\""));
  CHECK(io::infer_shape(two).heads == 2);
}
