// libFuzzer target for vitscale::io::load_checkpoint (include/vitscale/io/checkpoint.hpp): a training
// checkpoint (a safetensors file of parameters, optimizer state and metadata) loaded into a tiny fp32 model
// and its optimizer on the host, with SGD-momentum and with AdamW. Each input is a whole file. Anything but a vitscale::error is a bug: another exception, a crash, a sanitizer report, a leak,
// or an allocation above libFuzzer's -malloc_limit_mb.
//
// Seeds: run the target with VITSCALE_FUZZ_WRITE_SEEDS=DIR: it writes a checkpoint of each optimizer there
// with io::save_checkpoint and exits (tests/fuzz/corpus/checkpoint/ holds them).

#include "fuzz_common.hpp"

#include <vitscale/io/checkpoint.hpp>
#include <vitscale/model/vit.hpp>
#include <vitscale/train/optimizers.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

namespace vs = vitscale;
using vitscale_fuzz::input_file;

using tiny = vs::vit_shape<1, 8, 2, 16, 2, vs::options<vs::opt::classes<3>, vs::opt::channels<1>, vs::opt::resolution<4>>>;
using model_t = vs::vit<tiny, vs::precision::fp32, Kokkos::DefaultHostExecutionSpace>;
using sgd_t = vs::optimizer::sgd_momentum<model_t>;
using adamw_t = vs::optimizer::adamw<model_t>;

// Made once and never destroyed: their Views must not outlive Kokkos, which is never finalised.
model_t* model = nullptr;
sgd_t* sgd = nullptr;
adamw_t* adamw = nullptr;

void write_seeds(const std::string& dir) {
  vs::io::training_state state;
  state.step = 7;
  state.data = {1, 3};
  state.data_seed = 11;
  state.augment_seed = 5;
  state.metadata = {{"run", "fuzz seed"}};
  vs::io::save_checkpoint(dir + "/sgd_momentum.safetensors", *model, *sgd, state);
  vs::io::save_checkpoint(dir + "/adamw.safetensors", *model, *adamw, state);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  setenv("OMP_NUM_THREADS", "1", 1);
  setenv("OMP_PROC_BIND", "false", 1);
  Kokkos::initialize(*argc, *argv);
  model = new model_t(vs::init::timm{1}, 4);
  sgd = new sgd_t(*model);
  adamw = new adamw_t(*model);
  if (const char* dir = std::getenv("VITSCALE_FUZZ_WRITE_SEEDS")) {
    write_seeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static input_file file("checkpoint");
  const std::string& path = file.write(data, size);
  vitscale_fuzz::run_expecting_only_vitscale_errors([&] { (void)vs::io::load_checkpoint(path, *model, *sgd); });
  vitscale_fuzz::run_expecting_only_vitscale_errors([&] { (void)vs::io::load_checkpoint(path, *model, *adamw); });
  return 0;
}
