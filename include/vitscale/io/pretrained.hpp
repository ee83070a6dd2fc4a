#pragma once
// One entry point for pretrained checkpoints: a safetensors file under timm's names (timm's releases, a
// vitscale parameter file or training checkpoint) or a big_vision .npz, told apart by their first bytes, loaded
// into a model that may have another head and another resolution (fine-tuning, transfer):
//
//   vs::vit<my_shape_with_5_classes> model(384);
//   vs::io::pretrained_options o;
//   o.new_head = true;
//   const auto report = vs::io::load_pretrained(model, "vit_ti16_224.safetensors", o);
//   std::cout << report.to_string() << "\n";
//   // loaded 150 tensors from vit_ti16_224.safetensors; head re-initialised (head.weight [5, 192], head.bias [5]:
//   // zero); unused: head.weight [1000, 192], head.bias [1000]; pos_embed resampled 14x14 -> 24x24
//
// Needs zlib (big_vision's .npz), as io/npz.hpp does.

#include <vitscale/config/describe.hpp>
#include <vitscale/core/error.hpp>
#include <vitscale/io/big_vision.hpp>
#include <vitscale/io/parameters.hpp>

#include <fstream>
#include <string>

namespace vitscale::io {

// load_options (io/parameters.hpp) with a transfer's defaults: a position embedding of another grid is
// resampled (new_head stays off: say so when the task changes), plus what a big_vision file needs.
struct pretrained_options {
  bool new_head = false;        // load_options::new_head: the classifier set to zero, not read
  bool resample_posemb = true;  // load_options::resample_posemb
  interpolation posemb_interpolation = interpolation::bicubic;
  bool posemb_antialias = true;
  big_vision_options big_vision{};  // prefix and bf16 reading of a .npz

  load_options load() const {
    load_options o;
    o.new_head = new_head;
    o.resample_posemb = resample_posemb;
    o.posemb_interpolation = posemb_interpolation;
    o.posemb_antialias = posemb_antialias;
    return o;
  }
};

// (Named file_format: io/checkpoint.hpp already has io::checkpoint_format, the training checkpoint's format string.)
enum class file_format { safetensors, npz };

// The format of the file at `path` from its first bytes: a ZIP archive ("PK\3\4", or "PK\5\6" when empty) is an
// .npz; 8 bytes of header length followed by '{' are safetensors. Anything else is a vitscale::error.
inline file_format detect_file_format(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::fail("load_pretrained: cannot open ", path);
  char b[9] = {};
  in.read(b, 9);
  const auto n = in.gcount();
  if (n >= 4 && b[0] == 'P' && b[1] == 'K' && ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6)))
    return file_format::npz;
  if (n == 9 && b[8] == '{') return file_format::safetensors;
  detail::fail("load_pretrained: ", path,
               " is neither a safetensors file (8 bytes of header length, then '{') nor an .npz (a ZIP archive, "
               "'PK'), judged by its first bytes");
}

// Loads a pretrained checkpoint into `model`, fitted as `options` say, and says what it did (to_string() is one
// line for a log). Every check of load_parameters / load_big_vision applies: a body that does not fit is one
// vitscale::error listing every mismatch, and the model is untouched.
template <class Shape, class Policy, class Space>
load_report load_pretrained(vit<Shape, Policy, Space>& model, const std::string& path,
                            const pretrained_options& options = {}) {
  if (detect_file_format(path) == file_format::npz) {
    if constexpr (detail::has_big_vision_layout<Shape>) {
      return load_big_vision(path, model, options.big_vision, options.load()).report;
    } else {
      detail::fail("load_pretrained: ", path, " is a big_vision .npz, and big_vision's ViT has no layout for this "
                   "model (", describe<Shape>().to_string(), "): a parallel block, fc_norm after GAP, QK-norm, no "
                   "q/k/v bias or a norm without bias is not one of its options");
    }
  }
  return load_parameters(model, path, options.load());
}

}  // namespace vitscale::io
