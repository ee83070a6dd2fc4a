#pragma once
// Fine-tuning the catalogue's checkpoints with examples/train (--init-from a timm / big_vision file): the
// catalogue's bodies (catalogue.hpp: Ti/16 … L/32) under a new 10-class head for Fashion-MNIST, with each of
// the catalogue's head kinds (class token, GAP, GAP + fc_norm, MAP), 3 channels, at any resolution (the file's,
// or train's --resolution: the position embedding is resampled at load). The head is always new (zero, as the
// papers' transfer): the file's class count (1000, 21843, …) does not matter, only its body and head kind.
//
// train_example::train_shape<Shape> (examples/train_run.hpp) instantiates the whole training loop: forward,
// backward, the optimizers, both precisions and the checkpoints. Compiling that for every entry is the expensive
// part, so it is done once, in the translation units of the vitscale_catalogue_finetune library (finetune_*.cpp),
// one function per unit, and with the fine-tuning recipes' optimizers only (SGD-momentum, AdamW;
// train_example::optimizer_set); train.cpp compiles none of it.

#include "catalogue.hpp"

#include "../train_run.hpp"

namespace catalogue {

// The entries: a body, 10 classes, a head kind.
template <class Body, class... Head>
using finetune_entry = entry<Body, opt::classes<10>, Head...>;
template <class... Head>
using finetune_family =
    vitscale::type_list<finetune_entry<bodies::ti16, Head...>, finetune_entry<bodies::s16, Head...>,
                        finetune_entry<bodies::s32, Head...>, finetune_entry<bodies::b16, Head...>,
                        finetune_entry<bodies::b32, Head...>, finetune_entry<bodies::l16, Head...>,
                        finetune_entry<bodies::l32, Head...>>;
using finetune_cls = finetune_family<>;
using finetune_gap = finetune_family<opt::pool_gap>;
using finetune_gap_fc_norm = finetune_family<opt::pool_gap_fc_norm>;
using finetune_map = finetune_family<opt::pool_map>;
using finetune_shapes = vitscale::concat_t<finetune_cls, finetune_gap, finetune_gap_fc_norm, finetune_map>;

// Trains the entry of `found` (a file's shape with 10 classes and no pre-logits: the new head) with the options; each defined in its unit
// (finetune_cls_map.cpp, finetune_gap.cpp); a shape outside the unit's families is dispatch's error.
int train_cls_map(const vitscale::shape_descriptor& found, const train_example::run_options& o);
int train_gap(const vitscale::shape_descriptor& found, const train_example::run_options& o);

// Whether a compiled shape of the list fits `found`.
template <class... S>
bool fits_any(vitscale::type_list<S...>, const vitscale::shape_descriptor& found) {
  return (vitscale::matches(vitscale::describe<S>(), found) || ...);
}

// Trains the catalogue entry that fits `found`, or fails with dispatch's message listing `Extra` (the program's
// own shapes) and every entry.
template <class Extra>
int finetune(const vitscale::shape_descriptor& found, const train_example::run_options& o) {
  if (fits_any(vitscale::concat_t<finetune_cls, finetune_map>{}, found)) return train_cls_map(found, o);
  if (fits_any(vitscale::concat_t<finetune_gap, finetune_gap_fc_norm>{}, found)) return train_gap(found, o);
  return vitscale::io::dispatch<vitscale::concat_t<Extra, finetune_shapes>>(found, [](auto) { return 0; });
}

}  // namespace catalogue
