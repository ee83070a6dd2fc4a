// Fine-tuning the catalogue's class-token and MAP bodies (catalogue::finetune_cls, finetune_map in finetune.hpp):
// examples/train's whole training loop for each, compiled once here for the vitscale_catalogue_finetune library.
// Two units of 14 entries each (this and finetune_gap.cpp), built in parallel: each entry costs ~13 s of
// compilation past the headers' ~30 s (finetune.hpp's notes).
#include "finetune.hpp"

namespace catalogue {

int train_cls_map(const vitscale::shape_descriptor& found, const train_example::run_options& o) {
  return vitscale::io::dispatch<vitscale::concat_t<finetune_cls, finetune_map>>(found, [&](auto tag) {
    return train_example::train_shape<typename decltype(tag)::type, train_example::optimizer_set::finetuning>(o);
  });
}

}  // namespace catalogue
