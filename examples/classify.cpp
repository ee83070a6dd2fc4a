// classify: PNG or JPEG images through a ViT checkpoint, printing the top-k labels and probabilities.
//
//   classify --checkpoint fmnist_vit.safetensors --crop-pct 1 shirt.png boot.jpg
//   classify --checkpoint vit_tiny_patch16_224.safetensors --top-k 5 cat.jpg
//
// The model's compiled shape is chosen from the file (io/dispatch.hpp): the example's Fashion-MNIST model,
// the small timm ViT of tests/reference/classify_reference.py (both compiled here), then the catalogue of
// the common timm / big_vision checkpoints (examples/catalogue/catalogue.hpp: Ti/16 … L/32 with class-token,
// GAP, GAP + fc_norm and MAP heads, compiled once in the vitscale_catalogue library; at 224, 384 or any
// resolution, which is the file's). A file of any other shape is an error that prints the shape found and
// every candidate. Add yours to `candidates`. Without the catalogue (-DVITSCALE_BUILD_CATALOGUE=OFF, as the
// sanitized build), the candidates are the two models and timm's ViT-Ti/16 and ViT-B/16 (1000 classes).
//
// Preprocessing is timm's eval transform (examples/image_transform.hpp): the shorter side resized to
// floor(img_size / crop_pct) (PIL's bicubic or bilinear, antialiased when downscaling), a centre crop of
// img_size, pixel/255, then (x − mean) / std. mean, std (a number or a comma list, one per channel),
// crop_pct, interpolation and labels (comma separated) come from the checkpoint's metadata when it has
// them; otherwise ImageNet's mean and std (timm's IMAGENET_DEFAULT_MEAN/STD), crop_pct 0.875, bicubic and
// class indices. Command-line options (--crop-pct, --interpolation, --mean, --std) override the metadata;
// whichever is used must be finite, std > 0 and crop_pct in [0.25, 1], or classify stops with an error.
// Images are read by vitscale/data/image_file.hpp: PNG and JPEG only (by their magic bytes), at most
// --max-pixels pixels (default PIL's MAX_IMAGE_PIXELS, 89,478,485), checked from the header before
// decoding, truncated files refused; then decoded by stb_image. Grey images
// are replicated to RGB for a 3-channel model, colour images reduced to grey for a 1-channel model with
// the ITU-R 601 luma weights (0.299 R + 0.587 G + 0.114 B, as PIL's convert("L")), alpha dropped.
// A checkpoint whose logits are not finite is an error, never NaN probabilities.
#include "catalogue/catalogue.hpp"
#include "catalogue/inference_model_impl.hpp"
#include "fmnist_model.hpp"
#include "image_transform.hpp"
#include "tool_runtime.hpp"

#include <vitscale/config/presets.hpp>
#include <vitscale/data/image_file.hpp>
#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/vit.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace vs = vitscale;

// The small timm ViT tests/reference/classify_reference.py builds (depth 2, width 64, 2 heads, 224 px).
using timm_test_vit = vs::vit_shape<2, 64, 2, 256, 16, vs::options<vs::opt::classes<10>>>;
#if VITSCALE_HAVE_CATALOGUE
using candidates = vs::type_list<fmnist_vit, timm_test_vit>;  // then catalogue::shapes
#else
using candidates = vs::type_list<fmnist_vit, timm_test_vit, vs::presets::vit_ti16, vs::presets::vit_b16>;
#endif

namespace {

struct options {
  std::string checkpoint;
  std::vector<std::string> images;
  int top_k = 5;
  double crop_pct = 0;  // used when crop_pct_given, else the metadata's, else 0.875
  bool crop_pct_given = false;
  std::string interpolation;
  std::string mean, stdev;  // override the metadata's
  std::string expect;  // JSON of reference top-k probabilities to compare with
  double tolerance = 1e-4;
  std::uint64_t max_pixels = vs::data::image_limits::default_max_pixels;
};

// The smallest crop_pct accepted: timm's models use 0.8 to 1.0; a smaller one resizes the image to more than
// 4 x the model's resolution before the crop (and at 0, to infinity).
constexpr double min_crop_pct = 0.25;
// The largest model resolution classify accepts from a file (a ViT-22B fine-tune runs at 560 px).
constexpr int max_resolution = 4096;

struct result {
  std::string file;
  std::vector<double> probs;
  std::uint64_t crop_checksum;  // sum over i of (i mod 251 + 1) * byte i of the resized, cropped image
};

// The model for the file's shape, at the file's resolution (checked first: the model is allocated for it).
std::unique_ptr<catalogue::inference_model> open_model(const options& o, const vs::shape_descriptor& found) {
  if (found.resolution && (*found.resolution < found.patch || *found.resolution > max_resolution))
    vs::detail::fail(o.checkpoint, ": resolution ", *found.resolution, " is not in [", found.patch, ", ",
                     max_resolution, "] pixels (the patch size up to classify's limit)");
#if VITSCALE_HAVE_CATALOGUE
  return catalogue::open<candidates>(found);
#else
  return vs::io::dispatch<candidates>(found, [&](auto tag) {
    using shape = typename decltype(tag)::type;
    return catalogue::make<shape>(found.resolution.value_or(shape::resolution));
  });
#endif
}

std::vector<result> run(const options& o, const vs::shape_descriptor& found, const vs::io::safetensors_reader& file) {
  // The file's channels and classes are the chosen shape's: the options and metadata are checked before the
  // model is allocated.
  const int classes = found.classes, C = found.channels;
  const auto& meta = file.metadata();
  auto meta_or = [&](const char* key, const std::string& otherwise) {
    const auto it = meta.find(key);
    return it == meta.end() ? otherwise : it->second;
  };
  const std::string mean_text = !o.mean.empty() ? o.mean : meta_or("mean", "0.485,0.456,0.406");
  const std::string std_text = !o.stdev.empty() ? o.stdev : meta_or("std", "0.229,0.224,0.225");
  // Where a value came from, for its error: the option, the checkpoint's metadata, or classify's default.
  auto source = [&](bool option, const char* flag, const char* key) {
    return option ? std::string("option --") + flag
                  : meta.count(key) ? "the metadata of " + o.checkpoint : std::string("the default");
  };
  const std::vector<double> mean = image_transform::per_channel(mean_text, C, "mean", source(!o.mean.empty(), "mean", "mean"));
  const std::vector<double> stdev = image_transform::per_channel(std_text, C, "std", source(!o.stdev.empty(), "std", "std"));
  for (double s : stdev)
    if (!(s > 0))
      vs::detail::fail(source(!o.stdev.empty(), "std", "std"), ": std = \"", std_text,
                       "\" has a value that is not positive; the standard deviation divides each pixel, so every "
                       "value must be > 0");
  const bool crop_option = o.crop_pct_given;
  const std::string crop_text = crop_option ? std::string() : meta_or("crop_pct", "0.875");
  const std::optional<double> crop_value = crop_option ? std::optional<double>(o.crop_pct) : image_transform::finite_number(crop_text);
  if (!crop_value)
    vs::detail::fail(source(false, "crop-pct", "crop_pct"), ": crop_pct = \"", crop_text, "\" is not a finite number");
  const double crop_pct = *crop_value;
  if (!(crop_pct >= min_crop_pct && crop_pct <= 1))
    vs::detail::fail(source(crop_option, "crop-pct", "crop_pct"), ": crop_pct ", crop_pct, " is not in [", min_crop_pct,
                     ", 1] (the image is resized to resolution / crop_pct, then the centre cropped)");
  const std::string interp = !o.interpolation.empty() ? o.interpolation : meta_or("interpolation", "bicubic");
  if (interp != "bicubic" && interp != "bilinear") vs::detail::fail("interpolation \"", interp, "\": bicubic or bilinear");
  const auto filter = interp == "bicubic" ? image_transform::filter::bicubic : image_transform::filter::bilinear;
  std::vector<std::string> labels = image_transform::split(meta_or("labels", ""));
  if (int(labels.size()) != classes) {
    if (!labels.empty())
      std::fprintf(stderr, "classify: %zu labels in the metadata for %d classes; printing class indices\n",
                   labels.size(), classes);
    labels.clear();
    for (int c = 0; c < classes; ++c) labels.push_back(std::to_string(c));
  }

  const std::unique_ptr<catalogue::inference_model> model = open_model(o, found);
  if (model->classes() != classes || model->channels() != C)
    vs::detail::fail("classify: the model chosen for ", o.checkpoint, " has ", model->classes(), " classes and ",
                     model->channels(), " channels, the file ", classes, " and ", C);
  const int res = model->resolution();
  model->load(o.checkpoint);
  const std::string name = model->name();
  std::printf("%s: %s\n  %s\n  crop_pct %g, mean %s, std %s\n", o.checkpoint.c_str(),
              name.empty() ? "ViT" : name.c_str(), found.to_string().c_str(), crop_pct, mean_text.c_str(),
              std_text.c_str());

  catalogue::host_images images("images", 1, res, res, C);
  std::vector<result> results;
  for (const std::string& path : o.images) {
    vs::data::image_limits limits;
    limits.max_pixels = o.max_pixels;
    vs::data::image decoded = vs::data::read_image(path, limits);
    const int w = decoded.width, h = decoded.height, n = decoded.channels;
    const image_transform::image img{w, h, n, std::move(decoded.pixels)};
    const image_transform::image crop =
        image_transform::eval_resize_crop(image_transform::convert(img, C), res, crop_pct, filter);
    const std::vector<float> x = image_transform::normalise(crop, mean, stdev);
    std::copy(x.begin(), x.end(), images.data());
    const std::vector<float> logits = model->predict(images);
    for (int c = 0; c < classes; ++c)
      if (!std::isfinite(logits[std::size_t(c)]))
        vs::detail::fail("the checkpoint ", o.checkpoint, " gives a non-finite logit (", logits[std::size_t(c)],
                         " for class ", c, ") on ", path, ": its parameters are damaged or not finite");
    std::vector<double> p(classes);
    double top = -INFINITY, sum = 0;
    for (int c = 0; c < classes; ++c) top = std::max(top, double(logits[std::size_t(c)]));
    for (int c = 0; c < classes; ++c) sum += p[c] = std::exp(double(logits[std::size_t(c)]) - top);
    for (double& v : p) v /= sum;
    std::vector<int> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    const int k = std::min(o.top_k, classes);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return p[a] > p[b]; });
    std::printf("%s (%dx%d, %d channel%s):\n", path.c_str(), w, h, n, n == 1 ? "" : "s");
    double shown = 0;
    for (int i = 0; i < k; ++i) {
      shown += p[order[i]];
      std::printf("  %.4f  %s\n", p[order[i]], labels[order[i]].c_str());
    }
    std::printf("  top-%d sum %.4f, all %d classes %.4f\n", k, shown, classes,
                std::accumulate(p.begin(), p.end(), 0.0));
    std::uint64_t checksum = 0;
    for (std::size_t i = 0; i < crop.pixels.size(); ++i) checksum += (i % 251 + 1) * crop.pixels[i];
    results.push_back({path, p, checksum});
  }
  return results;
}

// Compares with reference top-k probabilities: {"images": [{"file": name, "top": [i...], "probs": [p...],
// "crop_checksum": n}]}, files matched by their last path component; the checksum of the preprocessed 8-bit
// image (optional) must be equal: the resize and crop are meant to give PIL's bytes. Returns whether every image agrees within the tolerance.
bool compare(const std::vector<result>& results, const std::string& expect, double tolerance) {
  std::ifstream in(expect);
  if (!in) vs::detail::fail("cannot open ", expect);
  const nlohmann::json ref = nlohmann::json::parse(in);
  bool ok = true;
  double worst = 0;
  int compared = 0;
  for (const auto& r : results) {
    const std::string base = r.file.substr(r.file.find_last_of('/') + 1);
    for (const auto& e : ref.at("images")) {
      if (e.at("file").get<std::string>() != base) continue;
      const auto top = e.at("top").get<std::vector<int>>();
      const auto probs = e.at("probs").get<std::vector<double>>();
      if (e.contains("crop_checksum") && e.at("crop_checksum").get<std::uint64_t>() != r.crop_checksum) {
        std::printf("%s: the resized and cropped image differs from the reference's (checksum %llu, not %llu)\n",
                    base.c_str(), static_cast<unsigned long long>(r.crop_checksum),
                    static_cast<unsigned long long>(e.at("crop_checksum").get<std::uint64_t>()));
        ok = false;
      }
      const int ours = int(std::max_element(r.probs.begin(), r.probs.end()) - r.probs.begin());
      if (top.empty() || ours != top[0]) {
        std::printf("%s: top-1 %d, the reference's %d\n", base.c_str(), ours, top.empty() ? -1 : top[0]);
        ok = false;
      }
      for (std::size_t i = 0; i < top.size() && i < probs.size(); ++i)
        worst = std::max(worst, std::fabs(r.probs.at(std::size_t(top[i])) - probs[i]));
      ++compared;
    }
  }
  ok = ok && compared == int(results.size()) && worst <= tolerance;
  std::printf("reference %s: %d of %zu images compared, max |p - p_ref| over the reference's top-k = %.3g "
              "(tolerance %.3g): %s\n",
              expect.c_str(), compared, results.size(), worst, tolerance, ok ? "agree" : "DIFFER");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  tool::program prog("classify", "classify images with a ViT checkpoint (timm's names; shape chosen from the file)");
  CLI::App& app = prog.app;
  app.add_option("--checkpoint", o.checkpoint, "safetensors parameter file")->required()->check(CLI::ExistingFile);
  app.add_option("--top-k", o.top_k, "labels printed per image")->check(CLI::PositiveNumber);
  CLI::Option* crop_pct_option = app.add_option("--crop-pct", o.crop_pct, "resize the shorter side to img_size / crop_pct, then crop the centre "
                                           "(default: the metadata's crop_pct, else timm's 0.875)");
  app.add_option("--interpolation", o.interpolation, "bicubic or bilinear (default: the metadata's, else bicubic)")
      ->check(CLI::IsMember({"bicubic", "bilinear"}));
  app.add_option("--mean", o.mean, "per-channel mean, a number or a comma list (default: the metadata's, else "
                                   "ImageNet's 0.485,0.456,0.406)");
  app.add_option("--std", o.stdev, "per-channel standard deviation (default: the metadata's, else ImageNet's "
                                 "0.229,0.224,0.225)");
  app.add_option("--expect", o.expect, "JSON of reference top-k probabilities (tests/reference/classify_reference.py)");
  app.add_option("--tolerance", o.tolerance, "largest |p - p_ref| --expect accepts");
  app.add_option("--max-pixels", o.max_pixels, "largest image (width x height) decoded; a larger one is refused "
                                               "from its header (default: PIL's MAX_IMAGE_PIXELS, 89478485)")
      ->check(CLI::PositiveNumber);
  app.add_option("images", o.images, "PNG or JPEG files")->required()->check(CLI::ExistingFile);
  return prog.run(argc, argv, [&] {
    o.crop_pct_given = crop_pct_option->count() > 0;
    const vs::io::safetensors_reader file(o.checkpoint);
    const vs::shape_descriptor found = vs::io::infer_shape(file);
    const auto results = run(o, found, file);
    return !o.expect.empty() && !compare(results, o.expect, o.tolerance) ? 1 : 0;
  });
}
