#pragma once
// The catalogue: compiled shapes for the ViT checkpoints people have (timm's and big_vision's, under timm's
// names in safetensors), chosen from a file's tensors with io::infer_shape and io::dispatch, each compiled once
// in one of the two translation units of the vitscale_catalogue library (examples/catalogue/shapes_*.cpp) so
// that a program using it compiles none of them: examples/classify.cpp (predict) and examples/fewshot.cpp (few-shot
// evaluation and linear probes of the frozen features: inference_model::features). Fine-tuning needs backward and
// an optimizer, which this library does not compile: examples/train fine-tunes the same bodies through a second
// library over the same lists under a 10-class head (finetune.hpp, vitscale_catalogue_finetune).
//
//   const vitscale::io::safetensors_reader file(path);
//   const auto found = vitscale::io::infer_shape(file);
//   auto model = catalogue::open(found);  // at the file's resolution, or an error listing every entry
//   model->load(path);
//   std::vector<float> logits = model->predict(images);
//
// The entries (34): the bodies Ti/16, S/16, S/32, B/16, B/32, L/16, L/32 (the original ViT and AugReg shapes,
// every preset at /16 and /32; S/32 and L/32 are not in config/presets.hpp and are written out here), with
//   - a class token and 1000 classes (timm's vit_*_patch{16,32}_{224,384}.augreg_in21k_ft_in1k, .augreg_in1k,
//     .orig_in21k_ft_in1k; L/32 only in this form: timm's L/32 in-21k file has no head);
//   - a class token and 21843 classes (timm's .augreg_in21k: ImageNet-21k with big_vision's 21843 classes), for
//     every body but L/32;
//   - GAP (class_token=False, global_pool='avg', fc_norm=False: the final norm on every token), 1000 classes;
//   - GAP then timm's fc_norm (global_pool='avg' with fc_norm, MAE/BEiT-style fine-tuning), 1000 classes;
//   - MAP (timm's global_pool='map', big_vision's MAPHead, as SigLIP), 1000 classes.
// All with learned position embeddings (with a class-token entry exactly when there is a class token, as
// timm's), QKV bias, LayerNorm with bias, and exact (erf) GELU, as timm builds these models. The resolution is
// a run-time value of every model: the same entry runs a /16 file at 224 or 384 px (pos_embed says which).
//
// Compile cost (GCC 12, -O3 -march=native, measured one unit at a time on the 2-core CI machine): the headers
// take ~12 s, the first entry of a translation unit ~15 s more (the kernels, shared by every shape), each
// further entry ~1 s (its own constants and tables). So the entries are in two units, not one per family
// (five units took 170 s of CPU time, two take ~90 s): shapes_class_token.cpp (13 entries) and
// shapes_pooled.cpp (21), built in parallel and once; an edit to a program that links the library recompiles
// neither. Examples are not part of scripts/quickstart.sh's sanitized build, so the catalogue is not built
// there; -DVITSCALE_BUILD_CATALOGUE=OFF leaves it out of any build (classify then compiles its former four
// candidates itself).
//
// A timm file has no vitscale.* metadata, so the heads, the GELU and the norm's centering are not known from
// it: the catalogue holds one entry per (body, head, classes), so a file of these shapes fits one entry only
// (checked below at compile time), whose 12/6/3/16 heads and erf GELU are timm's for these bodies. A
// timm file with other heads for one of these bodies would be taken for the entry and run with the wrong
// heads: timm's vit_base_patch16_gap_224 recipe has 16 heads, but timm 1.0.31 publishes no weights for it
// (among its pretrained VisionTransformer files, every one with a head at these widths has the standard heads).
//
// Left out (a file of these shapes gets dispatch's "no compiled shape fits … / candidates (N): …" message):
//   - timm files without a head (num_classes=0: SigLIP's and MAE's towers, the .orig_in21k bodies): vitscale's
//     shapes have at least one class; a features-only entry would serve the few-shot evaluation later;
//   - other class counts (11221, 115217, fine-tunes to N classes): the class count is compile-time, one entry
//     each; a program adds its own with open<type_list<...>>();
//   - H/14, g/14, G/14, e/14 and ViT-22B (timm's H/14 files have no head; g, G, e and 22B are not public),
//     /8 and /14 patches (timm's B/8, S/8 DINO, CLIP's /14), and SO400M;
//   - what vitscale cannot represent yet: register tokens (reg_token), LayerScale (ls1/ls2), a pre-norm
//     (norm_pre, CLIP), a class token without a position-embedding entry (no_embed_class);
//   - big_vision's .npz files (classify reads safetensors; timm converts them) and big_vision's own GELU (tanh):
//     a file saved by vitscale with vitscale.mlp_activation = gelu_tanh fits no entry.

#include "inference_model.hpp"

#include <vitscale/config/describe.hpp>
#include <vitscale/config/presets.hpp>
#include <vitscale/core/type_list.hpp>
#include <vitscale/io/dispatch.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

namespace catalogue {

// The bodies: depth, width, heads, MLP width, patch (timm's and the papers' shapes).
namespace bodies {
using ti16 = vitscale::presets::vit_ti16;
using s16 = vitscale::presets::vit_s16;
using s32 = vitscale::vit_shape<12, 384, 6, 1536, 32>;
using b16 = vitscale::presets::vit_b16;
using b32 = vitscale::presets::vit_b32;
using l16 = vitscale::presets::vit_l16;
using l32 = vitscale::vit_shape<24, 1024, 16, 4096, 32>;
}  // namespace bodies

template <class Body, class... Opts>
using entry = typename Body::template with<Opts...>;
namespace opt = vitscale::opt;

// One list per family; shapes_class_token.cpp and shapes_pooled.cpp instantiate make<> for each entry.
using cls_in1k = vitscale::type_list<bodies::ti16, bodies::s16, bodies::s32, bodies::b16, bodies::b32, bodies::l16,
                                     bodies::l32>;
using cls_in21k = vitscale::type_list<entry<bodies::ti16, opt::classes<21843>>, entry<bodies::s16, opt::classes<21843>>,
                                      entry<bodies::s32, opt::classes<21843>>, entry<bodies::b16, opt::classes<21843>>,
                                      entry<bodies::b32, opt::classes<21843>>, entry<bodies::l16, opt::classes<21843>>>;
using gap = vitscale::type_list<entry<bodies::ti16, opt::pool_gap>, entry<bodies::s16, opt::pool_gap>,
                                entry<bodies::s32, opt::pool_gap>, entry<bodies::b16, opt::pool_gap>,
                                entry<bodies::b32, opt::pool_gap>, entry<bodies::l16, opt::pool_gap>,
                                entry<bodies::l32, opt::pool_gap>>;
using gap_fc_norm =
    vitscale::type_list<entry<bodies::ti16, opt::pool_gap_fc_norm>, entry<bodies::s16, opt::pool_gap_fc_norm>,
                        entry<bodies::s32, opt::pool_gap_fc_norm>, entry<bodies::b16, opt::pool_gap_fc_norm>,
                        entry<bodies::b32, opt::pool_gap_fc_norm>, entry<bodies::l16, opt::pool_gap_fc_norm>,
                        entry<bodies::l32, opt::pool_gap_fc_norm>>;
using map = vitscale::type_list<entry<bodies::ti16, opt::pool_map>, entry<bodies::s16, opt::pool_map>,
                                entry<bodies::s32, opt::pool_map>, entry<bodies::b16, opt::pool_map>,
                                entry<bodies::b32, opt::pool_map>, entry<bodies::l16, opt::pool_map>,
                                entry<bodies::l32, opt::pool_map>>;

// Every entry, in the order dispatch tries them.
using shapes = vitscale::concat_t<cls_in1k, cls_in21k, gap, gap_fc_norm, map>;

namespace detail {
// The I-th type of a type_list (for the translation units' explicit instantiations).
template <std::size_t I, class List>
struct at_impl;
template <std::size_t I, class First, class... Rest>
struct at_impl<I, vitscale::type_list<First, Rest...>> : at_impl<I - 1, vitscale::type_list<Rest...>> {};
template <class First, class... Rest>
struct at_impl<0, vitscale::type_list<First, Rest...>> {
  using type = First;
};
template <std::size_t I, class List>
using at = typename at_impl<I, List>::type;

// A descriptor as a file without vitscale.* metadata shows it.
constexpr vitscale::shape_descriptor as_timm_file(vitscale::shape_descriptor d) {
  // (assigned empty optionals: reset() is constexpr only from C++20)
  d.heads = std::optional<int>();
  d.mlp_activation = std::optional<vitscale::activation>();
  d.norm_centered = std::optional<bool>();
  return d;
}
template <class... S>
constexpr bool distinguishable(vitscale::type_list<S...>) {
  constexpr vitscale::shape_descriptor d[] = {vitscale::describe<S>()...};
  for (std::size_t i = 0; i < sizeof...(S); ++i)
    for (std::size_t j = 0; j < sizeof...(S); ++j)
      if (i != j && vitscale::matches(d[j], as_timm_file(d[i]))) return false;
  return true;
}
}  // namespace detail

static_assert(shapes::size == 34, "catalogue: update the count in the notes above");
static_assert(detail::distinguishable(shapes{}),
              "catalogue: two entries differ only in what a timm file does not show (heads, GELU, norm centering); "
              "a timm file of that shape would fit both and dispatch would refuse it");

// The model for a file's shape: the first of Extra (a program's own shapes, whose make<> it compiles by
// including inference_model_impl.hpp), then the catalogue's, that fits `found`, at `resolution` pixels (by
// default the file's, else the shape's default); no fit is io::dispatch's error, which gives the shape found
// and every candidate.
template <class Extra = vitscale::type_list<>>
std::unique_ptr<inference_model> open(const vitscale::shape_descriptor& found,
                                      std::optional<int> resolution = std::nullopt) {
  return vitscale::io::dispatch<vitscale::concat_t<Extra, shapes>>(found, [&](auto tag) {
    using shape = typename decltype(tag)::type;
    return make<shape>(resolution.value_or(found.resolution.value_or(shape::resolution)));
  });
}

}  // namespace catalogue
