#pragma once
// Writing files so that nothing is lost: every file vitscale writes (parameters, training checkpoints) goes
// through atomic_file, and a training loop checks its outputs with check_writable before it starts.
//
//   io::atomic_file f(path, "save_checkpoint", io::keep::previous);
//   f.write(bytes, n); ...; f.commit();   // or destroy it uncommitted: the temporary is removed, path untouched
//
// atomic_file writes `<path>.tmp-<host>-<pid>-<random>` and renames it over `path` after fsync, so a crash, an
// error or a kill part-way leaves any previous file at `path` as it was. The temporary is created with
// O_CREAT | O_EXCL | O_NOFOLLOW: it is always a new file of this process, never an existing file nor the target
// of a symbolic link someone planted at a predictable name (the random part makes the name unpredictable as
// well). A process killed while writing leaves its temporary behind; the next atomic_file for the same path
// removes those of processes that no longer run on this host (remove_stale_temporaries), including the
// `<path>.tmp-<pid>` names of earlier vitscale versions. keep::previous first makes `<path>.prev` a hard link
// to the file being replaced (a copy of it where the file system has no hard links), so the checkpoint before
// the last one survives too.

#include <vitscale/core/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#define VITSCALE_IO_POSIX 1
#elif defined(_WIN32)
#include <process.h>
#endif

namespace vitscale::io {

// What atomic_file does with the file it replaces.
enum class keep { nothing, previous };

namespace detail {

using ::vitscale::detail::fail;

inline std::string errno_text(int code) { return std::generic_category().message(code); }

inline long process_id() {
#if defined(VITSCALE_IO_POSIX)
  return static_cast<long>(::getpid());
#elif defined(_WIN32)
  return static_cast<long>(::_getpid());
#else
  return 0;
#endif
}

// This host's name, as a temporary's name carries it ("-" and "/" replaced): a process id means something only
// on the host that gave it (several hosts may write into one shared folder).
inline std::string host_name() {
  std::string name = "host";
#if defined(VITSCALE_IO_POSIX)
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) == 0 && buf[0] != '\0') name = buf;
#endif
  for (char& c : name)
    if (c == '-' || c == '/' || c == '.') c = '_';
  return name;
}

// The temporaries this process has open: never removed as stale, whatever their process id says.
struct open_temporaries {
  std::mutex mutex;
  std::set<std::string> paths;
  static open_temporaries& instance() {
    static open_temporaries t;
    return t;
  }
};

inline std::string random_suffix() {
  static std::mutex mutex;
  static std::mt19937_64 generator{(std::uint64_t(std::random_device{}()) << 32) ^ std::random_device{}() ^
                                   std::uint64_t(process_id())};
  std::lock_guard<std::mutex> lock(mutex);
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(generator()));
  return buf;
}

// Whether process `pid` of this host has ended (false when unknown: a temporary is then left alone).
inline bool process_ended([[maybe_unused]] long pid) {
#if defined(VITSCALE_IO_POSIX)
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
#else
  return false;
#endif
}

// Creates `path` as a new file for writing: fails (errno set) if anything exists there, a symbolic link
// included, rather than open or follow it. Returns the descriptor, or -1.
inline int create_new_file([[maybe_unused]] const std::string& path) {
#if defined(VITSCALE_IO_POSIX)
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
#else
  errno = ENOSYS;
  return -1;
#endif
}

}  // namespace detail

// Removes the temporaries that atomic_file left for `target` when its process died while writing
// (`<target>.tmp-<host>-<pid>-<random>` of this host whose process has ended, and earlier versions'
// `<target>.tmp-<pid>`); returns their paths. Only those names are touched, and unlink removes a symbolic link
// itself, never what it points to.
inline std::vector<std::string> remove_stale_temporaries(const std::string& target) {
  namespace fs = std::filesystem;
  std::vector<std::string> removed;
  const fs::path t(target);
  const fs::path dir = t.parent_path().empty() ? fs::path(".") : t.parent_path();
  const std::string prefix = t.filename().string() + ".tmp-";
  const std::string host = detail::host_name();
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) return removed;
  std::set<std::string> open;
  {
    auto& reg = detail::open_temporaries::instance();
    std::lock_guard<std::mutex> lock(reg.mutex);
    open = reg.paths;
  }
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string rest = name.substr(prefix.size());
    // "<host>-<pid>-<random>" (this version) or "<pid>" (earlier ones).
    if (rest.find('-') != std::string::npos) {
      if (rest.compare(0, host.size() + 1, host + "-") != 0) continue;  // another host's: its pid means nothing here
      rest = rest.substr(host.size() + 1);
      const std::size_t dash = rest.find('-');
      if (dash == std::string::npos || dash + 1 == rest.size()) continue;
      rest = rest.substr(0, dash);
    }
    if (rest.empty() || rest.size() > 18 || !std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    const long pid = std::stol(rest);
    const std::string path = it->path().string();
    if (open.count(path)) continue;
    // Ours but not open: a process with our id wrote it before (process ids repeat, in containers especially).
    if (pid == detail::process_id() || detail::process_ended(pid)) {
      std::error_code rm;
      if (fs::remove(it->path(), rm)) removed.push_back(path);
    }
  }
  return removed;
}

// A file written in full or not at all (see the top of this file). `who` starts the error messages
// ("save_checkpoint"). Not copyable; one writer at a time per path.
class atomic_file {
 public:
  atomic_file(std::string target, std::string who, keep previous = keep::nothing)
      : target_(std::move(target)), who_(std::move(who)), keep_(previous) {
    (void)remove_stale_temporaries(target_);
    // keep::previous's link to the replaced file goes through `<target>.prev.tmp-…`: a process killed between
    // making that link and renaming it leaves one (seen in tests/io/checkpoint.cpp's kill test, 1 run in ~10).
    (void)remove_stale_temporaries(target_ + ".prev");
    const std::string stem = target_ + ".tmp-" + detail::host_name() + "-" + std::to_string(detail::process_id()) + "-";
#if defined(VITSCALE_IO_POSIX)
    for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
      tmp_ = stem + detail::random_suffix();
      fd_ = detail::create_new_file(tmp_);
      if (fd_ < 0 && errno != EEXIST) fail("cannot create ", tmp_);
    }
    if (fd_ < 0) fail("cannot create a temporary next to it (16 names taken), the last ", tmp_);
#else
    tmp_ = stem + detail::random_suffix();
    errno = 0;
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (!file_) fail("cannot create ", tmp_);
#endif
    auto& reg = detail::open_temporaries::instance();
    std::lock_guard<std::mutex> lock(reg.mutex);
    reg.paths.insert(tmp_);
  }
  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;
  ~atomic_file() {
#if defined(VITSCALE_IO_POSIX)
    if (fd_ >= 0) ::close(fd_);
#else
    if (file_) std::fclose(file_);
#endif
    if (!committed_) std::remove(tmp_.c_str());
    auto& reg = detail::open_temporaries::instance();
    std::lock_guard<std::mutex> lock(reg.mutex);
    reg.paths.erase(tmp_);
  }

  const std::string& temporary_path() const { return tmp_; }

  void write(const void* data, std::size_t bytes) {
#if defined(VITSCALE_IO_POSIX)
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, p, std::min<std::size_t>(bytes, std::size_t(1) << 30));
      if (n < 0 && errno == EINTR) continue;  // a signal (a training loop's graceful stop) interrupted it
      if (n <= 0) fail("cannot write ", tmp_);
      p += n;
      bytes -= static_cast<std::size_t>(n);
    }
#else
    if (bytes != 0 && std::fwrite(data, 1, bytes, file_) != bytes) fail("cannot write ", tmp_);
#endif
  }

  // Flushes the temporary to disk and renames it over the target (after linking the target to
  // `<target>.prev` with keep::previous).
  void commit() {
    namespace fs = std::filesystem;
#if defined(VITSCALE_IO_POSIX)
    if (::fsync(fd_) != 0) fail("cannot flush ", tmp_, " to disk");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot write ", tmp_);
#else
    if (std::fflush(file_) != 0) fail("cannot write ", tmp_);
    std::FILE* f = file_;
    file_ = nullptr;
    if (std::fclose(f) != 0) fail("cannot write ", tmp_);
#endif
    if (keep_ == keep::previous) keep_previous();
    std::error_code ec;
    fs::rename(tmp_, target_, ec);
    if (ec) {
      errno = ec.value();
      fail("cannot rename ", tmp_, " over it");
    }
    committed_ = true;
    sync_directory();
  }

 private:
  // `<target>.prev` becomes the file at `target` (if any), replaced atomically itself.
  void keep_previous() {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_regular_file(fs::symlink_status(target_, ec))) return;
    const std::string prev = target_ + ".prev";
    const std::string link = prev + ".tmp-" + detail::host_name() + "-" + std::to_string(detail::process_id()) + "-" +
                             detail::random_suffix();
    fs::create_hard_link(target_, link, ec);
    if (ec) {  // no hard links here (some network and FAT file systems): a copy
      ec.clear();
      fs::copy_file(target_, link, fs::copy_options::overwrite_existing, ec);
    }
    if (!ec) fs::rename(link, prev, ec);
    if (ec) {
      fs::remove(link, ec);
      errno = ec.value();
      fail("cannot keep the previous file as ", prev);
    }
  }

  void sync_directory() const {
#if defined(VITSCALE_IO_POSIX)
    // The rename itself is durable only once the directory is flushed; best effort (some file systems refuse).
    const std::string dir = std::filesystem::path(target_).parent_path().string();
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      (void)::fsync(fd);
      ::close(fd);
    }
#endif
  }

  [[noreturn]] void fail(const char* what, const std::string& file, const char* after = "") const {
    const int code = errno;
    ::vitscale::detail::fail(who_, ": cannot save '", target_, "': ", what, file, after,
                             code ? ": " + detail::errno_text(code) : std::string());
  }

  std::string target_, who_, tmp_;
  keep keep_;
#if defined(VITSCALE_IO_POSIX)
  int fd_ = -1;
#else
  std::FILE* file_ = nullptr;
#endif
  bool committed_ = false;
};

// Fails unless a file can be written at `path`: its folder exists and takes a new file (tried by creating and
// removing a temporary there), and `path` is not a folder. `what` names the file in the message ("the metrics
// file"). For a program to check every output before a long run rather than at its end.
inline void check_writable(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (path.empty()) ::vitscale::detail::fail(what, ": no file name given");
  if (fs::is_directory(p, ec))
    ::vitscale::detail::fail(what, " '", path, "' is a folder; give a file name");
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  if (!fs::is_directory(dir, ec))
    ::vitscale::detail::fail("cannot write ", what, " '", path, "': the folder '", dir.string(), "' does not exist");
  atomic_file probe(path, what);  // creates a temporary next to it; removed, uncommitted
}

}  // namespace vitscale::io
