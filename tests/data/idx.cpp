// The IDX reader: small files written here byte by byte (plain and gzip; valid, truncated, lying about their
// size, of the wrong kind) and, where Debian's dataset-fashion-mnist is installed, the real Fashion-MNIST.
#include <support/files.hpp>
#include <doctest/doctest.h>
#include <vitscale/data/idx.hpp>

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using namespace vitscale::data;

namespace {

using bytes = std::vector<std::uint8_t>;

// A folder of its own for this process, removed at the end.
struct scratch_dir {
  fs::path path = fs::temp_directory_path() / ("vitscale-test-data-" + std::to_string(::getpid()));
  scratch_dir() { fs::create_directories(path); }
  ~scratch_dir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

bytes idx_header(std::uint8_t type, std::initializer_list<std::uint32_t> dims) {
  bytes out{0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(d >> shift));
  return out;
}

bytes concat(bytes a, const bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void write_plain(const std::string& path, const bytes& content) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
  REQUIRE(out.good());
}

void write_gz(const std::string& path, const bytes& content) {
  gzFile file = gzopen(path.c_str(), "wb9");
  REQUIRE(file != nullptr);
  if (!content.empty()) REQUIRE(gzwrite(file, content.data(), static_cast<unsigned>(content.size())) == static_cast<int>(content.size()));
  REQUIRE(gzclose(file) == Z_OK);
}

bytes read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

using vitscale::test::error_of;

void check_mentions(const std::string& message, std::initializer_list<const char*> parts) {
  INFO("message: " << message);
  if (std::getenv("VITSCALE_SHOW_ERRORS")) MESSAGE(message);
  for (const char* part : parts)
    CHECK_MESSAGE(message.find(part) != std::string::npos, "should mention \"" << std::string(part) << "\"");
}

bytes random_bytes(std::size_t n, unsigned seed, int below = 256) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, below - 1);
  bytes out(n);
  for (auto& b : out) b = static_cast<std::uint8_t>(dist(rng));
  return out;
}

}  // namespace

TEST_CASE("IDX: images and labels read back exactly, plain and gzip") {
  scratch_dir dir;
  const int count = 7, rows = 3, cols = 5;  // odd sizes, rows != cols so a transposition shows
  const bytes pixels = random_bytes(count * rows * cols, 1);
  const bytes labels = random_bytes(count, 2, 10);
  const bytes images_file = concat(idx_header(0x08, {count, rows, cols}), pixels);
  const bytes labels_file = concat(idx_header(0x08, {count}), labels);
  write_plain(dir / "images", images_file);
  write_plain(dir / "labels", labels_file);
  write_gz(dir / "images.gz", images_file);
  write_gz(dir / "labels.gz", labels_file);

  for (const char* suffix : {"", ".gz"}) {
    CAPTURE(suffix);
    const idx_images im = read_idx_images(dir / (std::string("images") + suffix));
    CHECK(im.count == count);
    CHECK(im.rows == rows);
    CHECK(im.cols == cols);
    CHECK(im.pixels == pixels);
    const std::vector<int> lb = read_idx_labels(dir / (std::string("labels") + suffix));
    CHECK(lb == std::vector<int>(labels.begin(), labels.end()));
    const dataset ds = read_idx_dataset(dir / (std::string("images") + suffix), dir / (std::string("labels") + suffix));
    CHECK(ds.size() == count);
    CHECK(ds.num_classes == 10);
    CHECK(ds.labels == lb);
  }

  SUBCASE("zero images is a valid, empty file") {
    write_plain(dir / "empty", idx_header(0x08, {0, 28, 28}));
    const idx_images im = read_idx_images(dir / "empty");
    CHECK(im.count == 0);
    CHECK(im.pixels.empty());
  }
  SUBCASE("labels up to 255 with num_classes 256") {
    write_plain(dir / "wide", concat(idx_header(0x08, {3}), bytes{0, 255, 17}));
    CHECK(read_idx_labels(dir / "wide", 256) == std::vector<int>{0, 255, 17});
  }
}

TEST_CASE("IDX: broken and hostile files are refused with a message naming the file and the problem") {
  scratch_dir dir;
  const bytes good = concat(idx_header(0x08, {4, 2, 3}), random_bytes(24, 3));

  SUBCASE("missing file") {
    check_mentions(error_of([&] { read_idx_images(dir / "nowhere"); }), {"nowhere", "no such file"});
  }
  SUBCASE("a directory") {
    check_mentions(error_of([&] { read_idx_labels(dir.path.string()); }), {"directory"});
  }
  SUBCASE("truncated header, plain and gzip") {
    for (std::size_t keep : {0, 3, 4, 9, 15}) {
      CAPTURE(keep);
      write_plain(dir / "short", bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(keep)));
      check_mentions(error_of([&] { read_idx_images(dir / "short"); }), {"'" , "short", "truncated header"});
      write_gz(dir / "short.gz", bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(keep)));
      check_mentions(error_of([&] { read_idx_images(dir / "short.gz"); }), {"short.gz", "truncated header"});
    }
  }
  SUBCASE("truncated data, plain and gzip") {
    const bytes cut(good.begin(), good.end() - 5);
    write_plain(dir / "cut", cut);
    check_mentions(error_of([&] { read_idx_images(dir / "cut"); }), {"cut", "truncated", "4 images of 2 x 3", "24 data bytes", "only 19"});
    write_gz(dir / "cut.gz", cut);
    check_mentions(error_of([&] { read_idx_images(dir / "cut.gz"); }), {"cut.gz", "truncated", "only 19"});
  }
  SUBCASE("a gzip file cut short in its compressed stream") {
    write_gz(dir / "whole.gz", concat(idx_header(0x08, {50, 28, 28}), random_bytes(50 * 28 * 28, 4)));
    bytes raw = read_raw(dir / "whole.gz");
    raw.resize(raw.size() / 2);
    write_plain(dir / "half.gz", raw);
    check_mentions(error_of([&] { read_idx_images(dir / "half.gz"); }), {"half.gz", "truncated"});
  }
  SUBCASE("a gzip file whose compressed bytes are corrupted") {
    write_gz(dir / "whole.gz", concat(idx_header(0x08, {50, 28, 28}), random_bytes(50 * 28 * 28, 5)));
    bytes raw = read_raw(dir / "whole.gz");
    for (std::size_t k = raw.size() / 2; k < raw.size() / 2 + 64; ++k) raw[k] ^= 0x5a;
    write_plain(dir / "bad.gz", raw);
    check_mentions(error_of([&] { read_idx_images(dir / "bad.gz"); }), {"bad.gz", "corrupt gzip data"});
  }
  SUBCASE("bytes after the data") {
    write_plain(dir / "long", concat(good, bytes{1, 2}));
    check_mentions(error_of([&] { read_idx_images(dir / "long"); }), {"long", "2 bytes after"});
    write_gz(dir / "long.gz", concat(good, bytes{1, 2}));
    check_mentions(error_of([&] { read_idx_images(dir / "long.gz"); }), {"long.gz", "bytes after"});
  }
  SUBCASE("wrong magic: not IDX, labels read as images, images read as labels, not unsigned bytes") {
    write_plain(dir / "png", concat(bytes{0x89, 'P', 'N', 'G'}, bytes(40, 0)));
    check_mentions(error_of([&] { read_idx_images(dir / "png"); }), {"png", "wrong magic", "89 50 4e 47", "00 00 08 03"});
    write_plain(dir / "labels", concat(idx_header(0x08, {4}), bytes{1, 2, 3, 4}));
    check_mentions(error_of([&] { read_idx_images(dir / "labels"); }), {"wrong magic", "00 00 08 01", "00 00 08 03"});
    check_mentions(error_of([&] { read_idx_labels(dir / "png"); }), {"wrong magic", "00 00 08 01"});
    write_plain(dir / "float", concat(idx_header(0x0D, {1, 2, 3}), bytes(24, 0)));
    check_mentions(error_of([&] { read_idx_images(dir / "float"); }), {"float", "0d", "32-bit float", "only unsigned bytes"});
  }
  SUBCASE("absurd dimensions are refused before any allocation") {
    // ~2^31 × 28 × 28 bytes claimed by a 16-byte file: plain files are measured, gzip files bounded by deflate.
    write_plain(dir / "huge", idx_header(0x08, {0x7fffffffu, 28, 28}));
    check_mentions(error_of([&] { read_idx_images(dir / "huge"); }), {"huge", "truncated", "2147483647 images", "only 0"});
    write_gz(dir / "huge.gz", idx_header(0x08, {0x7fffffffu, 28, 28}));
    check_mentions(error_of([&] { read_idx_images(dir / "huge.gz"); }), {"huge.gz", "more than a gzip file", "absurd"});
    write_plain(dir / "neg", idx_header(0x08, {0xffffffffu, 28, 28}));
    check_mentions(error_of([&] { read_idx_images(dir / "neg"); }), {"neg", "4294967295"});
    write_plain(dir / "wide", idx_header(0x08, {1, 100000, 28}));
    check_mentions(error_of([&] { read_idx_images(dir / "wide"); }), {"wide", "absurd image size 100000 x 28"});
    write_plain(dir / "flat", idx_header(0x08, {1, 0, 28}));
    check_mentions(error_of([&] { read_idx_images(dir / "flat"); }), {"flat", "absurd image size 0 x 28"});
    write_plain(dir / "many", idx_header(0x08, {0x7fffffffu}));
    check_mentions(error_of([&] { read_idx_labels(dir / "many"); }), {"many", "truncated", "2147483647 labels"});
  }
  SUBCASE("labels out of range, and a bad num_classes") {
    write_plain(dir / "labels", concat(idx_header(0x08, {5}), bytes{0, 9, 3, 10, 1}));
    check_mentions(error_of([&] { read_idx_labels(dir / "labels"); }), {"labels", "label 3 is 10", "10 classes"});
    CHECK(read_idx_labels(dir / "labels", 11).size() == 5);
    check_mentions(error_of([&] { read_idx_labels(dir / "labels", 0); }), {"num_classes is 0"});
    check_mentions(error_of([&] { read_idx_labels(dir / "labels", 257); }), {"num_classes is 257"});
  }
  SUBCASE("a labels file whose count differs from the images file") {
    write_plain(dir / "images", good);
    write_plain(dir / "labels", concat(idx_header(0x08, {5}), bytes{0, 1, 2, 3, 4}));
    check_mentions(error_of([&] { read_idx_dataset(dir / "images", dir / "labels"); }),
                   {"labels", "holds 5 labels", "holds 4 images", "images"});
  }
}

TEST_CASE("IDX: load_fashion_mnist finds plain or gzip files under the release's names") {
  scratch_dir dir;
  const bytes pixels = random_bytes(3 * 28 * 28, 6);
  write_plain(dir / "t10k-images-idx3-ubyte", concat(idx_header(0x08, {3, 28, 28}), pixels));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", concat(idx_header(0x08, {3}), bytes{9, 0, 4}));
  const dataset test = load_fashion_mnist(dir.path.string(), split::test);
  CHECK(test.size() == 3);
  CHECK(test.images.pixels == pixels);
  CHECK(test.labels == std::vector<int>{9, 0, 4});
  check_mentions(error_of([&] { load_fashion_mnist(dir.path.string(), split::train); }),
                 {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "dataset-fashion-mnist"});
}

TEST_CASE("IDX: the real Fashion-MNIST from Debian's dataset-fashion-mnist") {
  if (!fs::exists(fashion_mnist_default_dir)) {
    MESSAGE("skipped: " << fashion_mnist_default_dir << " is absent (apt-get install dataset-fashion-mnist)");
    return;
  }
  const dataset train = load_fashion_mnist();
  CHECK(train.size() == 60000);
  CHECK(train.images.rows == 28);
  CHECK(train.images.cols == 28);
  CHECK(train.images.pixels.size() == 60000u * 28 * 28);
  std::vector<int> per_class(10, 0);
  for (int label : train.labels) ++per_class.at(static_cast<std::size_t>(label));
  for (int c = 0; c < 10; ++c) CHECK(per_class[static_cast<std::size_t>(c)] == 6000);  // balanced by construction

  const dataset test = load_fashion_mnist(fashion_mnist_default_dir, split::test);
  CHECK(test.size() == 10000);
  CHECK(test.images.rows == 28);
  CHECK(test.images.cols == 28);
  std::vector<int> test_per_class(10, 0);
  for (int label : test.labels) ++test_per_class.at(static_cast<std::size_t>(label));
  for (int c = 0; c < 10; ++c) CHECK(test_per_class[static_cast<std::size_t>(c)] == 1000);
}
