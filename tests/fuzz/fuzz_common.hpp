#pragma once
// Shared by the libFuzzer targets in tests/fuzz/: the readers under test take file paths, so each input is
// written to one temporary file per process (in /dev/shm where it is writable, else $TMPDIR, else /tmp),
// reused for every input and removed when the process exits. A vitscale::error is the expected outcome
// for a bad input; any other exception is reported and aborts, so that libFuzzer records the input as a
// crash. VITSCALE_FUZZ_VERBOSE=1 in the environment prints each refusal (to check what the seeds reach).

#include <vitscale/core/error.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <unistd.h>

namespace vitscale_fuzz {

class input_file {
 public:
  explicit input_file(const char* tag) {
    std::string dir = "/dev/shm";
    if (::access(dir.c_str(), W_OK) != 0) {
      const char* tmp = std::getenv("TMPDIR");
      dir = tmp && *tmp ? tmp : "/tmp";
    }
    path_ = dir + "/vitscale-fuzz-" + tag + "-" + std::to_string(static_cast<long>(::getpid()));
  }
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;
  ~input_file() { std::remove(path_.c_str()); }

  // Replaces the file's contents with data[0, size).
  const std::string& write(const std::uint8_t* data, std::size_t size) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) die("cannot create the temporary file " + path_);
    if (size != 0 && std::fwrite(data, 1, size, f) != size) die("cannot write the temporary file " + path_);
    if (std::fclose(f) != 0) die("cannot write the temporary file " + path_);
    return path_;
  }

  [[noreturn]] static void die(const std::string& why) {
    std::fprintf(stderr, "vitscale fuzz target: %s\n", why.c_str());
    std::abort();
  }

 private:
  std::string path_;
};

// Runs body(); a vitscale::error is a normal outcome, anything else aborts with its description.
template <class Body>
void run_expecting_only_vitscale_errors(Body&& body) {
  try {
    body();
  } catch (const vitscale::error& e) {
    // the reader refused the input with a sentence: the expected outcome for hostile bytes. With
    // VITSCALE_FUZZ_VERBOSE set, the sentence is printed (to see what the seeds reach).
    static const bool verbose = std::getenv("VITSCALE_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
  } catch (const std::exception& e) {
    input_file::die(std::string("an exception other than vitscale::error escaped the reader: ") + e.what());
  } catch (...) {
    input_file::die("an exception of unknown type escaped the reader");
  }
}

// A vitscale::error is required here (e.g. asking for a tensor that does not exist): anything else aborts.
template <class Body>
void expect_vitscale_error(const char* what, Body&& body) {
  try {
    body();
  } catch (const vitscale::error&) {
    return;
  }
  input_file::die(std::string("no vitscale::error for ") + what);
}

}  // namespace vitscale_fuzz
