#pragma once
// IDX: the file format of MNIST and Fashion-MNIST (yann.lecun.com/exdb/mnist, "FILE FORMATS").
//
//   [0x00 0x00 type ndim] [ndim × u32 big-endian dimensions] [data, row-major]
//   images: type 0x08 (unsigned byte), ndim 3: [count, rows, cols];  labels: type 0x08, ndim 1: [count]
//
// The files are read through zlib's gz* functions, which read gzip-compressed files and plain files alike:
// Debian's dataset-fashion-mnist ships them gzipped (train-images-idx3-ubyte.gz, ...), while a user who
// unpacked them has the plain files. Only unsigned-byte data is supported, the only type MNIST-like data sets
// use. Needs zlib at link time (CMake: find_package(ZLIB) and link ZLIB::ZLIB; Debian: zlib1g-dev), but only
// by a program that calls the readers; the structs alone need just the header <zlib.h>.
//
// Every size comes from the file, so every size is checked before memory is given to it: a plain file must
// be exactly as long as its header says, a gzip file cannot claim more bytes than deflate's best ratio
// (1032:1) allows it to hold, and data is read in chunks, so a file that lies about its size costs memory in
// proportion to the bytes it really holds, never to the bytes it claims.

#include <vitscale/core/error.hpp>

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace vitscale::data {

// Greyscale images as an IDX file holds them: pixels[(i * rows + r) * cols + c] is row r, column c of image i.
struct idx_images {
  int count = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> pixels;
};

// Images with one class label each, as a classifier trains on them.
struct dataset {
  idx_images images;
  std::vector<int> labels;  // labels[i] in [0, num_classes): the class of image i
  int num_classes = 0;

  int size() const noexcept { return images.count; }
};

enum class split { train, test };

// Where Debian's dataset-fashion-mnist package puts the files.
inline constexpr const char* fashion_mnist_default_dir = "/usr/share/datasets/fashion-mnist";

namespace detail {

using vitscale::detail::fail;

// Deflate never compresses better than about 1032:1 (a 258-byte match in at most 2 bits per symbol);
// a gzip file claiming more data than that bound is lying, and is refused before anything is read.
inline constexpr std::uint64_t max_deflate_ratio = 1032;
// No real image is larger; keeps rows × cols × count far from overflowing anything.
inline constexpr std::uint32_t max_image_side = 1u << 16;
// Bytes read per gzread call, and so the most memory a file that ends early costs beyond its real data.
inline constexpr std::size_t read_chunk_bytes = std::size_t{16} << 20;

struct gz_closer {
  void operator()(gzFile_s* file) const noexcept { gzclose(file); }
};

// One open IDX file: the header read and checked against the expected type and rank; the data to come.
class idx_file {
 public:
  idx_file(const std::string& path, int expected_ndim, const char* what) : path_(path), what_(what) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(status)) fail_here("no such file (", what_, " expected here)");
    if (std::filesystem::is_directory(status)) fail_here("it is a directory, not an IDX file");
    file_bytes_ = std::filesystem::file_size(path, ec);
    if (ec) fail_here("cannot find its length: ", ec.message());
    file_.reset(gzopen(path.c_str(), "rb"));
    if (!file_) fail_here("cannot open it");
    gzbuffer(file_.get(), 1u << 17);

    unsigned char magic[4];
    read_exact(magic, 4, "the 4-byte magic number");
    if (magic[0] != 0 || magic[1] != 0 || magic[3] != expected_ndim)
      fail_here("wrong magic number ", hex(magic[0]), ' ', hex(magic[1]), ' ', hex(magic[2]), ' ', hex(magic[3]),
                ": expected 00 00 08 ", hex(static_cast<unsigned char>(expected_ndim)), " (an IDX file of ",
                what_, ": unsigned bytes, ", expected_ndim, expected_ndim == 1 ? " dimension)" : " dimensions)");
    if (magic[2] != 0x08)
      fail_here("it holds IDX data type ", hex(magic[2]), " (", type_name(magic[2]),
                "); only unsigned bytes (08), the type of MNIST and Fashion-MNIST, are supported");

    for (int d = 0; d < expected_ndim; ++d) {
      unsigned char b[4];
      read_exact(b, 4, "the header's dimensions");
      const std::uint32_t dim = std::uint32_t{b[0]} << 24 | std::uint32_t{b[1]} << 16 | std::uint32_t{b[2]} << 8 | b[3];
      if (dim > static_cast<std::uint32_t>(std::numeric_limits<int>::max()))
        fail_here("dimension ", d, " is ", dim, ", more than this reader can index (at most 2^31 - 1)");
      dims_.push_back(static_cast<int>(dim));
    }
    header_bytes_ = 4 + 4 * static_cast<std::uint64_t>(expected_ndim);
  }

  const std::vector<int>& dims() const noexcept { return dims_; }
  const std::string& path() const noexcept { return path_; }

  // Reads exactly `bytes` bytes of data (what the header's dimensions make), checking first that the file
  // can hold them, and then that nothing follows them.
  std::vector<std::uint8_t> read_data(std::uint64_t bytes, const std::string& described) {
    const bool compressed = gzdirect(file_.get()) == 0;
    if (!compressed) {
      const std::uint64_t holds = file_bytes_ - std::min(file_bytes_, header_bytes_);
      if (holds < bytes)
        fail_here("truncated: the header claims ", described, " (", bytes, " data bytes) but the file holds only ",
                  holds, " bytes after its ", header_bytes_, "-byte header");
      if (holds > bytes)
        fail_here("it has ", holds - bytes, " bytes after the ", bytes, " data bytes its header claims (", described,
                  "); is it an IDX file?");
    } else if (bytes > file_bytes_ * max_deflate_ratio + 1024) {
      fail_here("the header claims ", described, " (", bytes, " bytes), more than a gzip file of ", file_bytes_,
                " bytes can hold (deflate compresses at most ~", max_deflate_ratio, ":1); absurd dimensions?");
    }
    if (bytes > std::numeric_limits<std::size_t>::max() / 2)
      fail_here("the header claims ", described, " (", bytes, " bytes), more than this machine can address");

    std::vector<std::uint8_t> data;
    if (!compressed) data.reserve(static_cast<std::size_t>(bytes));  // checked against the file's length above
    std::uint64_t done = 0;
    while (done < bytes) {
      const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(bytes - done, read_chunk_bytes));
      data.resize(static_cast<std::size_t>(done) + chunk);
      const int got = gzread(file_.get(), data.data() + done, static_cast<unsigned>(chunk));
      if (got < 0) fail_here("cannot read its data: ", gz_message());
      done += static_cast<std::uint64_t>(got);
      if (static_cast<std::size_t>(got) < chunk)
        fail_here("truncated: the header claims ", described, " (", bytes, " data bytes) but the file holds only ",
                  done, compressed ? " after decompression" : " bytes");
    }
    unsigned char extra = 0;
    const int more = gzread(file_.get(), &extra, 1);  // also makes zlib check the gzip trailer's CRC and length
    if (more < 0) fail_here("cannot read past its data: ", gz_message());
    if (more > 0)
      fail_here("it has bytes after the ", bytes, " data bytes its header claims (", described, "); is it an IDX file?");
    return data;
  }

  template <class... Parts>
  [[noreturn]] void fail_here(Parts&&... parts) const {
    fail("IDX file '", path_, "': ", std::forward<Parts>(parts)...);
  }

 private:
  static std::string hex(unsigned char b) {
    const char* digits = "0123456789abcdef";
    return std::string{digits[b >> 4], digits[b & 15]};
  }

  static const char* type_name(unsigned char type) {
    switch (type) {
      case 0x08: return "unsigned byte";
      case 0x09: return "signed byte";
      case 0x0B: return "16-bit integer";
      case 0x0C: return "32-bit integer";
      case 0x0D: return "32-bit float";
      case 0x0E: return "64-bit float";
      default: return "not an IDX type";
    }
  }

  std::string gz_message() const {
    int code = Z_OK;
    const char* message = gzerror(file_.get(), &code);
    if (code == Z_ERRNO) return std::generic_category().message(errno);
    std::string text = message ? message : "unknown error";
    if (text.rfind(path_ + ": ", 0) == 0) text.erase(0, path_.size() + 2);  // zlib prefixes the path we already name
    return code == Z_DATA_ERROR ? "corrupt gzip data (zlib: " + text + ")" : text;
  }

  void read_exact(unsigned char* out, unsigned bytes, const char* what) {
    const int got = gzread(file_.get(), out, bytes);
    if (got < 0) fail_here("cannot read ", what, ": ", gz_message());
    if (static_cast<unsigned>(got) < bytes)
      fail_here("truncated header: the file ends inside ", what, " (", file_bytes_, " bytes",
                gzdirect(file_.get()) ? "" : " compressed", ")");
  }

  std::string path_;
  const char* what_;
  std::unique_ptr<gzFile_s, gz_closer> file_;
  std::uint64_t file_bytes_ = 0;
  std::uint64_t header_bytes_ = 0;
  std::vector<int> dims_;
};

}  // namespace detail

// Reads an IDX file of unsigned-byte images [count, rows, cols], gzip-compressed or plain.
inline idx_images read_idx_images(const std::string& path) {
  detail::idx_file file(path, 3, "images");
  idx_images out;
  out.count = file.dims()[0];
  out.rows = file.dims()[1];
  out.cols = file.dims()[2];
  if (out.rows < 1 || out.cols < 1 || static_cast<std::uint32_t>(out.rows) > detail::max_image_side ||
      static_cast<std::uint32_t>(out.cols) > detail::max_image_side)
    file.fail_here("absurd image size ", out.rows, " x ", out.cols, " (each side must be 1 to ",
                   detail::max_image_side, ")");
  const std::uint64_t bytes =
      static_cast<std::uint64_t>(out.count) * static_cast<std::uint64_t>(out.rows) * static_cast<std::uint64_t>(out.cols);
  out.pixels = file.read_data(bytes, std::to_string(out.count) + " images of " + std::to_string(out.rows) + " x " +
                                         std::to_string(out.cols));
  return out;
}

// Reads an IDX file of unsigned-byte labels [count], gzip-compressed or plain; each must be < num_classes.
inline std::vector<int> read_idx_labels(const std::string& path, int num_classes = 10) {
  if (num_classes < 1 || num_classes > 256)
    detail::fail("read_idx_labels('", path, "'): num_classes is ", num_classes,
                 "; unsigned-byte labels allow 1 to 256 classes");
  detail::idx_file file(path, 1, "labels");
  const int count = file.dims()[0];
  const std::vector<std::uint8_t> bytes = file.read_data(static_cast<std::uint64_t>(count), std::to_string(count) + " labels");
  std::vector<int> labels(bytes.begin(), bytes.end());
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] >= num_classes)
      file.fail_here("label ", i, " is ", labels[i], ", outside the ", num_classes, " classes [0, ", num_classes - 1, "]");
  return labels;
}

// Reads an images file and its labels file, which must describe the same number of samples.
inline dataset read_idx_dataset(const std::string& images_path, const std::string& labels_path, int num_classes = 10) {
  dataset out;
  out.images = read_idx_images(images_path);
  out.labels = read_idx_labels(labels_path, num_classes);
  out.num_classes = num_classes;
  if (static_cast<std::size_t>(out.images.count) != out.labels.size())
    detail::fail("IDX labels file '", labels_path, "' holds ", out.labels.size(), " labels but the images file '",
                 images_path, "' holds ", out.images.count, " images; they must match one to one");
  return out;
}

// Fashion-MNIST (Xiao et al. 2017): 60000 training or 10000 test images of 28 × 28, 10 classes, read from
// `dir` under the file names of the original release and of Debian's dataset-fashion-mnist
// ({train,t10k}-{images-idx3,labels-idx1}-ubyte), plain if present, else with .gz.
inline dataset load_fashion_mnist(const std::string& dir = fashion_mnist_default_dir, split which = split::train) {
  const std::string prefix = which == split::train ? "train" : "t10k";
  const auto find = [&](const std::string& name) {
    const std::filesystem::path plain = std::filesystem::path(dir) / name;
    std::error_code ec;
    if (std::filesystem::is_regular_file(plain, ec)) return plain.string();
    const std::filesystem::path gz = std::filesystem::path(dir) / (name + ".gz");
    if (std::filesystem::is_regular_file(gz, ec)) return gz.string();
    detail::fail("Fashion-MNIST: neither '", plain.string(), "' nor '", gz.string(),
                 "' exists (on Debian: apt-get install dataset-fashion-mnist, or scripts/setup.sh)");
  };
  const std::string images = find(prefix + "-images-idx3-ubyte");  // images first: the message names them
  const std::string labels = find(prefix + "-labels-idx1-ubyte");
  return read_idx_dataset(images, labels, 10);
}

}  // namespace vitscale::data
