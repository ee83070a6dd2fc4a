// Fine-tuning the catalogue's GAP and GAP + fc_norm bodies (catalogue::finetune_gap, finetune_gap_fc_norm in
// finetune.hpp): examples/train's whole training loop for each, compiled once here for the
// vitscale_catalogue_finetune library (the other unit: finetune_cls_map.cpp).
#include "finetune.hpp"

namespace catalogue {

int train_gap(const vitscale::shape_descriptor& found, const train_example::run_options& o) {
  return vitscale::io::dispatch<vitscale::concat_t<finetune_gap, finetune_gap_fc_norm>>(found, [&](auto tag) {
    return train_example::train_shape<typename decltype(tag)::type, train_example::optimizer_set::finetuning>(o);
  });
}

}  // namespace catalogue
