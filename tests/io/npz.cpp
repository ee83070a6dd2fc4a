// .npz reading and big_vision import: archives numpy wrote (tests/reference/big_vision_reference.py ->
// tests/golden/big_vision/), timm's own big_vision loader as the oracle for every imported tensor and for the
// logits, and hostile archives built here byte by byte, each of which must be refused with a vitscale::error
// that names the problem.
#include <doctest/doctest.h>
#include <support/scratch.hpp>
#include <support/errors.hpp>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <support/spaces.hpp>
#include <vector>
#include <vitscale/io/big_vision.hpp>
#include <vitscale/io/npz.hpp>
#include <vitscale/io/safetensors.hpp>
#include <vitscale/model/vit.hpp>

namespace io = vitscale::io;
namespace fs = std::filesystem;
using namespace vitscale;

namespace {

const std::string data_dir = std::string(VITSCALE_TEST_GOLDEN_DIR) + "/big_vision/";

using vitscale::test::scratch;  // support/scratch.hpp

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string spit(const std::string& name, const std::string& bytes) {
  const std::string path = (scratch() / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}



std::string le(std::uint64_t v, int bytes) {
  std::string s(static_cast<std::size_t>(bytes), '\0');
  for (int k = 0; k < bytes; ++k) s[static_cast<std::size_t>(k)] = static_cast<char>((v >> (8 * k)) & 0xffu);
  return s;
}
void poke(std::string& bytes, std::size_t at, std::uint64_t v, int width) {
  bytes.replace(at, static_cast<std::size_t>(width), le(v, width));
}
std::uint64_t peek(const std::string& bytes, std::size_t at, int width) {
  std::uint64_t v = 0;
  for (int k = width - 1; k >= 0; --k)
    v = (v << 8) | static_cast<unsigned char>(bytes[at + static_cast<std::size_t>(k)]);
  return v;
}

// An .npy file from its header dict: magic, version, the dict padded to a multiple of 64 bytes, the data.
std::string npy_text(std::string dict, const std::string& data, int version = 1) {
  const std::size_t prefix = version == 1 ? 10 : 12;
  while ((prefix + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  return std::string("\x93NUMPY", 6) + char(version) + '\0' + le(dict.size(), version == 1 ? 2 : 4) + dict + data;
}

// As numpy writes it: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
std::string npy(const std::string& descr, const std::vector<std::int64_t>& shape, const std::string& data,
                bool fortran = false, int version = 1) {
  std::string tuple = "(";
  for (std::size_t k = 0; k < shape.size(); ++k) tuple += (k ? ", " : "") + std::to_string(shape[k]);
  tuple += shape.size() == 1 ? ",)" : ")";
  return npy_text(
      "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + tuple + ", }",
      data, version);
}

std::string floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::string raw_deflate(const std::string& in) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(&out[0]);
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

struct member {
  member(std::string n, std::string d, bool z = false, std::optional<std::uint64_t> claimed = std::nullopt)
      : name(std::move(n)), data(std::move(d)), deflate(z), claimed_size(claimed) {}
  std::string name;  // with ".npy"
  std::string data;  // the uncompressed member
  bool deflate = false;
  std::optional<std::uint64_t> claimed_size;  // an uncompressed size to write instead of the true one
};

// Opens an archive and reads every member whole (sizes and CRCs checked).
void verify_all(const std::string& path) {
  io::npz_reader file(path);
  for (const auto& e : file.entries()) file.verify(e.name);
}

// A ZIP archive of the members, as numpy / Python's zipfile write it; zip64 writes ZIP64 end records and
// extra fields (all-ones 32-bit fields) as numpy does for members over 4 GiB.
std::string zip(const std::vector<member>& members, bool zip64 = false) {
  std::string out, cd;
  for (const auto& m : members) {
    const std::string body = m.deflate ? raw_deflate(m.data) : m.data;
    const auto crc = static_cast<std::uint32_t>(
        crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(m.data.data()), static_cast<uInt>(m.data.size())));
    const std::uint64_t usize = m.claimed_size.value_or(m.data.size()), csize = body.size(), offset = out.size();
    const std::uint64_t ones = 0xffffffffu;
    const std::string local_extra = zip64 ? le(1, 2) + le(16, 2) + le(usize, 8) + le(csize, 8) : "";
    out += le(0x04034b50u, 4) + le(zip64 ? 45 : 20, 2) + le(0, 2) + le(m.deflate ? 8 : 0, 2) + le(0, 2) + le(0x21, 2) +
           le(crc, 4) + le(zip64 ? ones : csize, 4) + le(zip64 ? ones : usize, 4) + le(m.name.size(), 2) +
           le(local_extra.size(), 2) + m.name + local_extra + body;
    const std::string extra = zip64 ? le(1, 2) + le(24, 2) + le(usize, 8) + le(csize, 8) + le(offset, 8) : "";
    cd += le(0x02014b50u, 4) + le(45, 2) + le(zip64 ? 45 : 20, 2) + le(0, 2) + le(m.deflate ? 8 : 0, 2) + le(0, 2) +
          le(0x21, 2) + le(crc, 4) + le(zip64 ? ones : csize, 4) + le(zip64 ? ones : usize, 4) + le(m.name.size(), 2) +
          le(extra.size(), 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(zip64 ? ones : offset, 4) + m.name +
          extra;
  }
  const std::uint64_t cd_offset = out.size();
  out += cd;
  if (zip64) {
    const std::uint64_t record = out.size();
    out += le(0x06064b50u, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) + le(members.size(), 8) +
           le(members.size(), 8) + le(cd.size(), 8) + le(cd_offset, 8);
    out += le(0x07064b50u, 4) + le(0, 4) + le(record, 8) + le(1, 4);
  }
  out += le(0x06054b50u, 4) + le(0, 2) + le(0, 2) + le(zip64 ? 0xffff : members.size(), 2) +
         le(zip64 ? 0xffff : members.size(), 2) + le(zip64 ? 0xffffffffu : cd.size(), 4) +
         le(zip64 ? 0xffffffffu : cd_offset, 4) + le(0, 2);
  return out;
}

// The members of an archive, re-encoded as float32 .npy (the order kept).
std::vector<member> members_of(const std::string& path) {
  io::npz_reader file(path);
  std::vector<member> out;
  for (const auto& e : file.entries())
    out.push_back(member{e.name + ".npy", npy("<f4", e.shape, floats(file.read(e.name)))});
  return out;
}

// Where the archive's central directory starts (from its end record; no ZIP64 here).
std::size_t cd_offset_of(const std::string& bytes) {
  return static_cast<std::size_t>(peek(bytes, bytes.size() - 22 + 16, 4));
}

// The values of tests/reference/big_vision_reference.py write_formats(): arange(24) * 0.25 - 3, [2, 3, 4].
std::vector<float> formats_values(int repeat = 1) {
  std::vector<float> v;
  for (int r = 0; r < repeat; ++r)
    for (int k = 0; k < 24; ++k) v.push_back(float(k) * 0.25f - 3.0f);
  return v;
}

template <class... O>
using bv_shape = vit_shape<2, 16, 2, 32, 4, options<opt::classes<5>, opt::resolution<16>, opt::gelu_tanh, O...>>;
using bv_cls = bv_shape<opt::cls_posemb<false>>;
using bv_map = bv_shape<opt::pool_map>;

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double err = 0, scale = 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    if (!std::isfinite(got[k])) return INFINITY;
    err = std::max(err, std::abs(double(got[k]) - double(want[k])));
    scale = std::max(scale, std::abs(double(want[k])));
  }
  return err / scale;
}

// Imports `variant`.npz into a model of Shape and compares every tensor with timm's (exactly) and the
// logits with timm's (fp32: 1e-4 relative to the largest logit).
template <class Shape, class Space>
void check_variant(const std::string& variant, bool scanned, const std::string& prefix, bool legacy = false) {
  vit<Shape, precision::fp32, Space> model(Shape::resolution);
  const auto result = io::load_big_vision(data_dir + variant + ".npz", model);
  CHECK(result.scanned == scanned);
  CHECK(result.legacy == legacy);
  CHECK(result.prefix == prefix);
  CHECK(result.ignored.empty());
  io::safetensors_reader timm(data_dir + variant + ".safetensors");
  const auto& table = model.parameters().table();
  CHECK(result.tensors == int(table.size()));
  int timm_tensors = 0;
  for (const auto& e : timm.tensors())
    timm_tensors += e.name.rfind("input.", 0) != 0 && e.name.rfind("output.", 0) != 0;
  CHECK(timm_tensors == int(table.size()));  // the same tensor set: nothing of timm's is left out
  for (int i = 0; i < int(table.size()); ++i) {
    const std::string name = table[i].full_name();
    REQUIRE(timm.contains(name));
    std::vector<float> want(static_cast<std::size_t>(table[i].numel()));
    timm.read(name, want.data(), want.size());
    INFO(name);
    CHECK(model.parameter(i) == want);  // bit for bit: a rearrangement, no arithmetic
  }
  const auto& ie = timm.entry("input.images");
  Kokkos::View<float****, Kokkos::LayoutRight, typename Space::memory_space> images("images", ie.shape[0], ie.shape[1],
                                                                                    ie.shape[2], ie.shape[3]);
  auto host = Kokkos::create_mirror_view(images);
  timm.read("input.images", host.data(), host.size());
  Kokkos::deep_copy(images, host);
  const auto logits = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), model.forward(images));
  std::vector<float> got(logits.data(), logits.data() + logits.size()), want(got.size());
  timm.read("output.logits", want.data(), want.size());
  const double e = relative_error(got, want);
  if (std::getenv("VITSCALE_TEST_VERBOSE")) MESSAGE(variant << " logits vs timm: relative error " << e);
  CHECK(e <= 1e-4);
}

}  // namespace

TEST_CASE("npz: .npy versions 1.0 / 2.0 / 3.0, dtypes, order, 0-d, empty and deflated arrays") {
  const std::string path = data_dir + "formats.npz";
  io::npz_reader file(path);
  REQUIRE(file.entries().size() == 10);
  const auto a = formats_values();
  for (const char* name : {"f4_v1", "f2_v2", "f8_v3"}) {
    INFO(name);
    CHECK(file.entry(name).shape == std::vector<std::int64_t>{2, 3, 4});
    CHECK(file.read(name) == a);
  }
  CHECK(file.entry("f2_v2").descr == "<f2");
  CHECK(file.entry("f8_v3").type == io::npy_type::f64);

  // Integers are listed and read raw, never converted.
  CHECK(file.entry("i4").descr == "<i4");
  CHECK_ERROR(file.read("i4"), "'i4'", "'<i4'");
  std::int32_t ints[6];
  file.read_raw("i4", ints, sizeof ints);
  CHECK(ints[0] == -2);
  CHECK(ints[5] == 3);

  // jax bfloat16 as np.save writes it: '|V2', read only when asked for.
  CHECK(file.entry("bf16").type == io::npy_type::void2);
  CHECK_ERROR(file.read("bf16"), "'bf16'", "void2_as_bf16");
  io::npz_options bf16_options;
  bf16_options.void2_as_bf16 = true;
  io::npz_reader bf16_file(path, bf16_options);
  CHECK(bf16_file.read("bf16") == a);
  std::vector<bf16> raw(24);
  bf16_file.read("bf16", raw.data(), raw.size());
  CHECK(float(raw[23]) == a[23]);

  CHECK(file.entry("fortran").fortran_order);
  CHECK_ERROR(file.read("fortran"), "'fortran'", "Fortran");
  CHECK_ERROR(file.read("big_endian"), "'big_endian'", "big-endian");

  CHECK(file.entry("scalar").shape.empty());
  CHECK(file.read("scalar") == std::vector<float>{7.5f});
  CHECK(file.entry("empty").numel == 0);
  CHECK(file.read("empty").empty());

  const auto& d = file.entry("deflated");
  CHECK(d.method == 8);
  CHECK(d.compressed < d.uncompressed);
  CHECK(file.read("deflated") == formats_values(8));
  std::vector<float> slice(5);
  file.read_slice("deflated", 100, 5, slice.data());
  CHECK(slice == std::vector<float>(a.begin() + 4, a.begin() + 9));  // 100 = 4 * 24 + 4
  file.read_slice("f4_v1", 20, 4, slice.data());
  CHECK(std::vector<float>(slice.begin(), slice.begin() + 4) == std::vector<float>(a.begin() + 20, a.end()));
  file.verify("deflated");
  CHECK_ERROR(file.read("nothing"), "no array named 'nothing'", "f4_v1");
  std::vector<float> small(3);
  CHECK_ERROR(file.read("f4_v1", small.data(), small.size()), "24 elements", "room for 3");
}

TEST_CASE("npz: archives written here, stored and deflated, with and without ZIP64 records") {
  const auto a = formats_values();
  for (bool zip64 : {false, true})
    for (bool deflate : {false, true}) {
      INFO("zip64 " << zip64 << ", deflate " << deflate);
      const std::string path =
          spit("ok.npz", zip({member{"w/kernel.npy", npy("<f4", {4, 6}, floats(a)), deflate},
                              member{"b.npy", npy("<f4", {3}, floats({1, 2, 3}), false, 2), deflate}},
                             zip64));
      io::npz_reader file(path);
      REQUIRE(file.entries().size() == 2);
      CHECK(file.entries()[0].name == "w/kernel");
      CHECK(file.read("w/kernel") == a);
      CHECK(file.read("b") == std::vector<float>{1, 2, 3});
    }
}

TEST_CASE_TEMPLATE_DEFINE("big_vision: per-block names, class token, stored npz = timm's _load_weights", Space,
                          bv_cls_id) {
  check_variant<bv_cls, Space>("cls_perblock", false, "");
}
VITSCALE_ON_HOST_SPACES(bv_cls_id);

TEST_CASE_TEMPLATE_DEFINE("big_vision: scan-stacked names, MAP head, params/ prefix, deflated npz = timm", Space,
                          bv_map_id) {
  check_variant<bv_map, Space>("map_scan", true, "params/");
}
VITSCALE_ON_HOST_SPACES(bv_map_id);

TEST_CASE("big_vision: the original ViT code's names (AugReg), class-token entry in the position embedding = timm") {
  check_variant<bv_shape<>, Kokkos::DefaultHostExecutionSpace>("legacy_cls", false, "", true);
  parameter_arena<bv_cls, float, Kokkos::HostSpace> big_vision_layout;
  CHECK_ERROR(io::load_big_vision(data_dir + "legacy_cls.npz", big_vision_layout), "original ViT names",
              "Transformer/posembed_input/pos_embedding: the file has [1, 17, 16], the model needs "
              "[1, 16, 16]",
              "drop opt::cls_posemb<false>");
}

TEST_CASE("big_vision: a parameter arena, and one error listing every missing, unexpected, mis-shaped tensor") {
  // Into an arena (float and bf16): the same values as into the model.
  parameter_arena<bv_map, float, Kokkos::HostSpace> arena;
  io::load_big_vision(data_dir + "map_scan.npz", arena);
  io::safetensors_reader timm(data_dir + "map_scan.safetensors");
  const int q = arena.index("attn_pool.q.weight");
  std::vector<float> want(static_cast<std::size_t>(arena.info(q).numel()));
  timm.read("attn_pool.q.weight", want.data(), want.size());
  CHECK(std::vector<float>(arena.data() + arena.offset(q), arena.data() + arena.offset(q) + want.size()) == want);
  parameter_arena<bv_map, bf16, Kokkos::HostSpace> arena16;
  io::load_big_vision(data_dir + "map_scan.npz", arena16);
  CHECK(float(arena16.data()[arena16.offset(q)]) == float(bf16(want[0])));

  // The wrong model: a class-token model with timm's class-token position entry, a MAP file.
  parameter_arena<bv_shape<>, float, Kokkos::HostSpace> timm_cls;
  CHECK_ERROR(io::load_big_vision(data_dir + "cls_perblock.npz", timm_cls), "pos_embedding", "[1, 16, 16]",
              "[1, 17, 16]", "cls_posemb<false>");
  parameter_arena<bv_cls, float, Kokkos::HostSpace> cls;
  CHECK_ERROR(io::load_big_vision(data_dir + "map_scan.npz", cls), "missing: params/cls [1, 1, 16]",
              "unexpected: params/MAPHead_0/probe", "scan-stacked");

  // GAP pooling (no class token, no head parameters of its own) with a pre-logits layer: the same file without
  // cls, with pre_logits/kernel [16, 8] and a head on 8 features.
  {
    std::vector<member> gap;
    std::vector<float> pre(16 * 8), pre_bias(8, 0.5f), head(8 * 5, 0.25f);
    for (std::size_t k = 0; k < pre.size(); ++k) pre[k] = float(k);
    for (const auto& m : members_of(data_dir + "cls_perblock.npz"))
      if (m.name != "cls.npy" && m.name.rfind("head/", 0) != 0) gap.push_back(m);
    gap.emplace_back("pre_logits/kernel.npy", npy("<f4", {16, 8}, floats(pre)));
    gap.emplace_back("pre_logits/bias.npy", npy("<f4", {8}, floats(pre_bias)));
    gap.emplace_back("head/kernel.npy", npy("<f4", {8, 5}, floats(head)));
    gap.emplace_back("head/bias.npy", npy("<f4", {5}, floats(std::vector<float>(5, 1.0f))));
    parameter_arena<bv_shape<opt::pool_gap, opt::pre_logits<8>>, float, Kokkos::HostSpace> gap_arena;
    io::load_big_vision(spit("gap.npz", zip(gap)), gap_arena);
    const int w = gap_arena.index("pre_logits.fc.weight");
    const float* fc = gap_arena.data() + gap_arena.offset(w);  // [8, 16] = the kernel [16, 8] transposed
    CHECK(fc[0 * 16 + 1] == pre[1 * 8 + 0]);
    CHECK(fc[7 * 16 + 15] == pre[15 * 8 + 7]);
    CHECK(fc[3 * 16 + 2] == pre[2 * 8 + 3]);
    parameter_arena<bv_shape<opt::pool_gap>, float, Kokkos::HostSpace> no_pre;
    CHECK_ERROR(io::load_big_vision(spit("gap.npz", zip(gap)), no_pre), "unexpected: pre_logits/kernel [16, 8]",
                "mis-shaped: head/kernel: the file has [8, 5], the model needs [16, 5]");
  }

  // A file with one array gone, one renamed, one reshaped, one of the wrong dtype: all four in one message.
  auto members = members_of(data_dir + "cls_perblock.npz");
  std::vector<member> edited;
  for (auto m : members) {
    if (m.name == "head/bias.npy") continue;
    if (m.name == "Transformer/encoderblock_1/LayerNorm_1/bias.npy")
      m.name = "Transformer/encoderblock_1/LayerNorm_9/bias.npy";
    if (m.name == "Transformer/encoder_norm/scale.npy") m.data = npy("<f4", {17}, floats(std::vector<float>(17, 1.0f)));
    if (m.name == "embedding/bias.npy") m.data = npy("<i4", {16}, std::string(64, '\0'));
    edited.push_back(m);
  }
  const std::string path = spit("edited.npz", zip(edited));
  CHECK_ERROR(io::load_big_vision(path, cls), "(5 problems", "missing: head/bias [5]",
              "missing: Transformer/encoderblock_1/LayerNorm_1/bias [16]",
              "unexpected: Transformer/encoderblock_1/LayerNorm_9/bias [16]",
              "mis-shaped: Transformer/encoder_norm/scale: the file has [17], the model needs [16]",
              "unreadable: embedding/bias has dtype '<i4'");
  // f8 and f2 arrays convert, and a stored-bytes copy of the file loads.
  for (auto& m : members)
    if (m.name == "cls.npy") {
      io::npz_reader f(data_dir + "cls_perblock.npz");
      std::vector<double> v;
      for (float x : f.read("cls")) v.push_back(x);
      m.data = npy("<f8", {1, 1, 16}, std::string(reinterpret_cast<const char*>(v.data()), v.size() * 8));
    }
  io::load_big_vision(spit("f8.npz", zip(members)), cls);
  // A NaN in a kernel, and an f8 value that is finite as a double but not as the float the model holds: errors
  // naming the model's tensor (core/finite.hpp).
  for (auto& m : members)
    if (m.name == "head/bias.npy") m.data = npy("<f4", {5}, floats({0.0f, 1.0f, std::nanf(""), 0.0f, 0.0f}));
  CHECK_ERROR(io::load_big_vision(spit("nan.npz", zip(members)), cls), "load_big_vision:", "parameter 'head.bias' is NaN at element 2 of 5");
  for (auto& m : members)
    if (m.name == "head/bias.npy") {
      const double v[5] = {0, 0, 0, 1e300, 0};
      m.data = npy("<f8", {5}, std::string(reinterpret_cast<const char*>(v), sizeof v));
    }
  CHECK_ERROR(io::load_big_vision(spit("inf.npz", zip(members)), cls), "parameter 'head.bias' is +Inf at element 3 of 5");
}

TEST_CASE("npz: hostile archives are refused with a message, before any allocation the file cannot back") {
  const std::string stored = slurp(data_dir + "cls_perblock.npz");
  const std::string deflated = slurp(data_dir + "map_scan.npz");
  const std::size_t cd = cd_offset_of(stored);
  REQUIRE(peek(stored, cd, 4) == 0x02014b50u);

  // Truncated: the end record is gone.
  CHECK_ERROR(io::npz_reader(spit("t1.npz", stored.substr(0, stored.size() / 2))), "not a ZIP archive");
  CHECK_ERROR(io::npz_reader(spit("t2.npz", stored.substr(0, 10))), "not a ZIP archive");
  CHECK_ERROR(io::npz_reader(spit("t3.npz", "")), "not a ZIP archive");
  // Cut inside the central directory, the end record rebuilt: the directory lies past the end record.
  {
    std::string cut = stored.substr(0, cd + 30) + stored.substr(stored.size() - 22);
    CHECK_ERROR(io::npz_reader(spit("t4.npz", cut)), "central directory");
  }
  // A member claiming more bytes than the file holds (stored: both sizes).
  {
    std::string b = stored;
    poke(b, cd + 20, 0x7fffff00u, 4);
    poke(b, cd + 24, 0x7fffff00u, 4);
    CHECK_ERROR(io::npz_reader(spit("big.npz", b)), "claims 2147483392 bytes", "beyond the end");
  }
  // The central directory offset past the end of the file.
  {
    std::string b = stored;
    poke(b, b.size() - 22 + 16, b.size() + 100, 4);
    CHECK_ERROR(io::npz_reader(spit("cd.npz", b)), "central directory", "beyond the end");
  }
  // A local header offset past the data.
  {
    std::string b = stored;
    poke(b, cd + 42, 0x7fff0000u, 4);
    CHECK_ERROR(io::npz_reader(spit("local.npz", b)), "local header offset 2147418112");
  }
  // Two members sharing bytes: the first one's sizes stretched over the second.
  {
    std::string b = stored;
    const std::uint64_t size = peek(b, cd + 20, 4) + 200;
    poke(b, cd + 20, size, 4);
    poke(b, cd + 24, size, 4);
    CHECK_ERROR(io::npz_reader(spit("overlap.npz", b)), "overlap");
  }
  // A flipped data byte: the CRC-32 catches it when the array is read.
  {
    std::string b = stored;
    const std::size_t name_len = peek(b, 26, 2), extra_len = peek(b, 28, 2);
    const std::size_t last = 30 + name_len + extra_len + peek(b, cd + 20, 4) - 1;  // the first member's last byte
    b[last] = static_cast<char>(b[last] ^ 0x40);
    io::npz_reader file(spit("crc.npz", b));
    CHECK_ERROR(file.read(file.entries()[0].name), "CRC-32");
    parameter_arena<bv_cls, float, Kokkos::HostSpace> arena;
    CHECK_ERROR(io::load_big_vision(spit("crc.npz", b), arena), "CRC-32");
  }
  // Corrupt deflate data (a scan-stacked archive, every member deflated).
  {
    std::string b = deflated;
    const std::size_t name_len = peek(b, 26, 2), extra_len = peek(b, 28, 2);
    const std::size_t start = 30 + name_len + extra_len;
    for (std::size_t k = 0; k < 8; ++k) b[start + 4 + k] = '\xff';
    CHECK_ERROR(verify_all(spit("inflate.npz", b)), "inflate.npz");
  }

  const auto a = formats_values();
  // Shapes: 2^40 elements in 96 bytes is refused when the archive is opened — before anything is read or
  // allocated for the array — and a product past 2^63 is an overflow, not a small number.
  CHECK_ERROR(io::npz_reader(spit("huge.npz", zip({member{"x.npy", npy("<f4", {1 << 20, 1 << 20}, floats(a))}}))),
              "'x'", "1099511627776 elements", "holds 96 bytes");
  CHECK_ERROR(io::npz_reader(spit("ovf.npz", zip({member{"x.npy", npy("<f4", {1LL << 40, 1LL << 40}, floats(a))}}))),
              "'x'", "more than 2^63 elements");
  CHECK_ERROR(
      io::npz_reader(spit("long.npz", zip({member{"x.npy", npy_text("{'descr': '<f4', 'fortran_order': "
                                                                    "False, 'shape': (99999999999999999999,), }",
                                                                    floats(a))}}))),
      "'x'", "larger than 2^63");
  CHECK_ERROR(io::npz_reader(spit("neg.npz", zip({member{"x.npy", npy_text("{'descr': '<f4', 'fortran_order': "
                                                                           "False, 'shape': (-24,), }",
                                                                           floats(a))}}))),
              "'x'", "integers");
  // Header length past the member, unknown keys, not-npy data, a version vitscale does not read.
  {
    std::string h = npy("<f4", {24}, floats(a));
    poke(h, 8, 60000, 2);
    CHECK_ERROR(io::npz_reader(spit("hlen.npz", zip({member{"x.npy", h}}))), "claims an .npy header of 60000 bytes");
    std::string k = npy("<f4", {24}, floats(a));
    k.replace(k.find("descr"), 5, "DESCR");
    CHECK_ERROR(io::npz_reader(spit("key.npz", zip({member{"x.npy", k}}))), "unknown key 'DESCR'");
    CHECK_ERROR(io::npz_reader(spit("magic.npz", zip({member{"x.npy", std::string(200, 'A')}}))),
                "no \\x93NUMPY magic");
    std::string v = npy("<f4", {24}, floats(a));
    v[6] = 9;
    CHECK_ERROR(io::npz_reader(spit("ver.npz", zip({member{"x.npy", v}}))), "format version 9.0");
  }
  // Names: not UTF-8, not .npy, twice.
  CHECK_ERROR(io::npz_reader(spit("utf8.npz", zip({member{"\xff\xfe.npy", npy("<f4", {24}, floats(a))}}))), "UTF-8");
  CHECK_ERROR(io::npz_reader(spit("name.npz", zip({member{"x.txt", "hello"}}))), "not an .npy array");
  CHECK_ERROR(io::npz_reader(spit("dup.npz", zip({member{"x.npy", npy("<f4", {24}, floats(a))},
                                                  member{"x.npy", npy("<f4", {24}, floats(a))}}))),
              "two members are named 'x.npy'");
  // Fortran order and a wrong dtype are listed, and refused on reading.
  {
    io::npz_reader file(spit("order.npz", zip({member{"f.npy", npy("<f4", {4, 6}, floats(a), true)},
                                               member{"c.npy", npy("<c8", {12}, floats(a))}})));
    CHECK_ERROR(file.read("f"), "'f'", "Fortran");
    CHECK_ERROR(file.read("c"), "'c'", "'<c8'");
  }
  // A deflate bomb: the member says 16 bytes of data follow the header, the stream holds a megabyte.
  {
    const std::string header = npy("<f4", {4}, "");
    member bomb{"bomb.npy", header + std::string(1 << 20, '\0'), true, header.size() + 16};
    // (Found as soon as the .npy header is inflated, when the archive is opened: the first piece overflows.)
    CHECK_ERROR(verify_all(spit("bomb.npz", zip({bomb}))), "'bomb'", "inflates to more than its declared 144 bytes");
    // And one whose declared size is more than deflate can produce from its bytes.
    member liar{"liar.npy", header + std::string(16, '\0'), true, std::uint64_t{1} << 40};
    CHECK_ERROR(io::npz_reader(spit("liar.npz", zip({liar}, true))), "'liar.npy'", "more than deflate can");
    // Shorter than declared.
    member shortish{"short.npy", npy("<f4", {24}, floats(a)).substr(0, 150), true, npy("<f4", {24}, "").size() + 96};
    io::npz_reader s(spit("short.npz", zip({shortish})));
    CHECK_ERROR(s.read("short"), "'short'", "inflates to");
  }
}
