// Evaluates a checkpoint's frozen features on Fashion-MNIST the way the seed papers report transfer: big_vision's
// few-shot linear evaluation (closed-form ridge regression on k examples per class, several seeds) and, with
// --probe, a linear probe trained on the cached features of a class-balanced training sample.
//
//   ./fewshot --checkpoint vit_fashion_mnist.safetensors                    1, 5, 10, 25 shots, 3 seeds, 10 classes
//   ./fewshot --checkpoint pretrained.safetensors --classes 5-9 --probe 1000 --csv transfer.csv
//
//   ./fewshot --checkpoint vit_base_patch16_224.augreg_in21k.safetensors --batch 32    a timm file, at 224 px
//
// The checkpoint is any parameter file of examples/train (or a training checkpoint), or one of the common timm /
// big_vision ViT checkpoints of the catalogue (examples/catalogue/catalogue.hpp: Ti/16 … L/32, class-token,
// GAP, GAP + fc_norm and MAP heads; under timm's names in safetensors); its shape is chosen from the file's
// tensors (io/dispatch.hpp), and another shape is an error that prints what the file holds and every candidate.
// The model runs at the file's resolution, or at --resolution (a learned position embedding resampled at load).
// Fashion-MNIST's 28 x 28 grey images are brought to the model's input as a transfer evaluation does: replicated
// to RGB for a 3-channel model (PIL's convert("RGB")), resized to the model's resolution with PIL's bicubic
// filter (examples/image_transform.hpp), pixel/255, then (x − mean) / std with mean and std from --mean/--std,
// else the file's metadata (examples/train writes them), else Fashion-MNIST's for a 1-channel model and
// ImageNet's (timm's default) for a 3-channel one. Features are the pooled representation the classifier reads
// (inference_model::features), computed only for the examples used: the union of every seed's shots, the probe's
// sample and the test images of the chosen classes.
#include <vitscale/config/accounting.hpp>
#include <vitscale/data/idx.hpp>
#include <vitscale/data/subset.hpp>
#include <vitscale/eval/features.hpp>
#include <vitscale/eval/fewshot.hpp>
#include <vitscale/eval/linear_probe.hpp>
#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/io/safetensors.hpp>

#if VITSCALE_HAVE_CATALOGUE
#include "catalogue/catalogue.hpp"
#endif
#include "catalogue/inference_model_impl.hpp"
#include "fmnist_model.hpp"
#include "image_transform.hpp"
#include "tool_runtime.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vs = vitscale;
using space = Kokkos::DefaultHostExecutionSpace;
// The shapes compiled here (before the catalogue's): the training example's model.
using candidates = vs::type_list<fmnist_vit>;

namespace {

struct run_options {
  std::string checkpoint = "vit_fashion_mnist.safetensors";
  std::string data = vs::data::fashion_mnist_default_dir;
  std::string classes;  // "" : all ten
  std::vector<int> shots{1, 5, 10, 25};
  int seeds = 3;
  std::vector<double> l2{vs::eval::fewshot_default_l2};
  int resolution = 0;  // 0: the file's
  std::string mean, stdev;  // "" : the file's metadata, else the default of the model's channel count
  int probe = 0;       // training images of the linear probe (0: no probe)
  int probe_epochs = 20;
  double probe_lr = 0.1;
  int test_size = 0;   // 0: every test image of the classes
  int batch = 256;
  std::uint64_t seed = 0;
  std::string csv;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The model for the file's shape (this program's candidates, then the catalogue's) at `resolution` pixels (0: the
// file's).
std::unique_ptr<catalogue::inference_model> open_model(const vs::shape_descriptor& found, int resolution) {
  const std::optional<int> res = resolution > 0 ? std::optional<int>(resolution) : std::nullopt;
#if VITSCALE_HAVE_CATALOGUE
  return catalogue::open<candidates>(found, res);
#else
  return vs::io::dispatch<candidates>(found, [&](auto tag) {
    using shape = typename decltype(tag)::type;
    return catalogue::make<shape>(res.value_or(found.resolution.value_or(shape::resolution)));
  });
#endif
}

// Fashion-MNIST examples as the model takes them: grey → `channels`, 28 px → `resolution` (PIL's bicubic), then
// normalised per channel.
struct model_input {
  int resolution, channels;
  std::vector<double> mean, stdev;

  void fill(const vs::data::dataset& set, const std::vector<int>& indices, std::int64_t first, int n,
            const vs::eval::host_images& images) const {
    const int rows = set.images.rows, cols = set.images.cols;
    const std::size_t pixels = std::size_t(rows) * std::size_t(cols);
    const std::size_t per_image = std::size_t(resolution) * std::size_t(resolution) * std::size_t(channels);
    for (int i = 0; i < n; ++i) {
      const int example = indices[std::size_t(first + i)];
      const std::uint8_t* src = set.images.pixels.data() + std::size_t(example) * pixels;
      image_transform::image img{cols, rows, 1, std::vector<std::uint8_t>(src, src + pixels)};
      if (channels != 1) img = image_transform::convert(img, channels);
      if (rows != resolution || cols != resolution)
        img = image_transform::resize(img, resolution, resolution, image_transform::filter::bicubic);
      const std::vector<float> x = image_transform::normalise(img, mean, stdev);
      std::copy(x.begin(), x.end(), images.data() + std::size_t(i) * per_image);
    }
  }
};

int run(const run_options& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const vs::io::safetensors_reader file(o.checkpoint);
  const vs::shape_descriptor found = vs::io::infer_shape(file);
  const std::unique_ptr<catalogue::inference_model> model = open_model(found, o.resolution);
  vs::io::load_options load;
  load.resample_posemb = o.resolution > 0;  // the file's grid to the model's (nothing to do when they agree)
  model->load(o.checkpoint, load);
  const vs::data::dataset train = vs::data::load_fashion_mnist(o.data, vs::data::split::train);
  const vs::data::dataset test = vs::data::load_fashion_mnist(o.data, vs::data::split::test);

  // Normalisation: the option, the file's metadata, or the default for the model's channels.
  const int C = model->channels();
  const auto& meta = file.metadata();
  const auto setting = [&](const std::string& option, const char* flag, const char* key, const std::string& fallback,
                           const char* fallback_name) {
    const auto it = meta.find(key);
    const bool in_file = it != meta.end();
    const std::string text = !option.empty() ? option : in_file ? it->second : fallback;
    const std::string source = !option.empty() ? std::string("option --") + flag
                               : in_file        ? "the metadata of " + o.checkpoint
                                                : std::string(fallback_name);
    return std::make_pair(image_transform::per_channel(text, C, key, source), source);
  };
  const vs::data::normalization fmnist = vs::data::pixel_statistics(train.images);  // as examples/train
  const bool grey = C == 1;
  const auto [input_mean, mean_source] =
      setting(o.mean, "mean", "mean", grey ? std::to_string(fmnist.mean) : "0.485,0.456,0.406",
              grey ? "Fashion-MNIST's statistics" : "ImageNet's (timm's default)");
  const auto [input_std, std_source] =
      setting(o.stdev, "std", "std", grey ? std::to_string(fmnist.std) : "0.229,0.224,0.225",
              grey ? "Fashion-MNIST's statistics" : "ImageNet's (timm's default)");
  for (double s : input_std)
    if (!(s > 0)) vs::detail::fail(std_source, ": a standard deviation is ", s, "; each must be > 0");
  const model_input input{model->resolution(), C, input_mean, input_std};
  const std::string name = model->name();
  std::printf("%s: %s at %d px, %d channel%s; inputs: Fashion-MNIST%s, mean %s, std %s (%s)\n", o.checkpoint.c_str(),
              name.empty() ? "ViT" : name.c_str(), input.resolution, C, C == 1 ? "" : "s",
              input.resolution == train.images.rows ? "" : " resized (bicubic)",
              image_transform::join(input_mean).c_str(), image_transform::join(input_std).c_str(), mean_source.c_str());
  const std::vector<int> classes = vs::data::parse_classes(o.classes.empty() ? "0-9" : o.classes, 10);
  const int k = static_cast<int>(classes.size());
  // Labels as positions in the class list: few-shot regression and the probe see k classes.
  std::vector<int> position(10, -1);
  for (int i = 0; i < k; ++i) position[std::size_t(classes[std::size_t(i)])] = i;
  const auto relabel = [&](const std::vector<int>& labels) {
    std::vector<int> out;
    for (int l : labels) out.push_back(position[std::size_t(l)]);
    return out;
  };

  std::vector<int> test_indices = vs::data::examples_of_classes(test, classes);
  if (o.test_size > 0) test_indices = vs::data::balanced_sample(test, test_indices, o.test_size, o.seed + 1);
  const std::vector<int> pool = vs::data::examples_of_classes(train, classes);
  const std::vector<int> pool_labels = relabel(vs::eval::labels_of(train, pool));

  // The shots each seed takes (vitscale's Philox orders over the pool), and the union of what they use.
  vs::eval::fewshot_options fo;
  fo.shots = o.shots;
  fo.seeds = o.seeds;
  fo.l2_regs = o.l2;
  fo.selection_seed = o.seed;
  const int most = *std::max_element(o.shots.begin(), o.shots.end());
  const vs::eval::fewshot_orders orders = vs::eval::fewshot_draw_orders(pool_labels, k, o.seeds, o.seed);
  std::map<std::int64_t, std::int64_t> used;  // position in pool -> row of the shot features
  for (const auto& seed_orders : orders)
    for (const auto& order : seed_orders)
      for (int j = 0; j < std::min<int>(most, int(order.size())); ++j) used.emplace(order[std::size_t(j)], 0);
  std::vector<int> shot_indices;
  for (auto& [p, row] : used) {
    row = std::int64_t(shot_indices.size());
    shot_indices.push_back(pool[std::size_t(p)]);
  }
  vs::eval::fewshot_orders compact = orders;  // the orders as rows of the shot features (truncated to `most`)
  for (auto& seed_orders : compact)
    for (auto& order : seed_orders) {
      order.resize(std::min<std::size_t>(order.size(), std::size_t(most)));
      for (auto& p : order) p = used.at(p);
    }

  // The features of examples `indices` of a data set, batch by batch, with progress.
  const vs::eval::feature_geometry geometry{input.resolution, C, model->feature_width()};
  const auto features = [&](const vs::data::dataset& set, const std::vector<int>& indices, const char* what) {
    return vs::eval::extract_features(
        geometry, std::int64_t(indices.size()), o.batch,
        [&](std::int64_t first, int n, const vs::eval::host_images& images) { input.fill(set, indices, first, n, images); },
        [&](const vs::eval::host_images& images, const auto& rows) {
          const std::vector<float> f = model->features(images);
          for (std::size_t i = 0; i < rows.extent(0); ++i)
            for (std::size_t j = 0; j < rows.extent(1); ++j) rows(i, j) = f[i * rows.extent(1) + j];
        },
        [what](std::int64_t done, std::int64_t total) {
          std::fprintf(stderr, "\rfeatures of %s: %lld/%lld", what, static_cast<long long>(done),
                       static_cast<long long>(total));
          if (done == total) std::fprintf(stderr, "\n");
        });
  };
  const vs::eval::feature_matrix x_shots = features(train, shot_indices, "the shots");
  const vs::eval::feature_matrix x_test = features(test, test_indices, "the test images");
  const std::vector<int> y_shots = relabel(vs::eval::labels_of(train, shot_indices));
  const std::vector<int> y_test = relabel(vs::eval::labels_of(test, test_indices));
  const auto as_eigen = [](const vs::eval::feature_matrix& x) {
    return Eigen::Map<const vs::eval::host_features>(x.data(), Eigen::Index(x.extent(0)), Eigen::Index(x.extent(1)));
  };
  const vs::eval::fewshot_result r =
      vs::eval::fewshot_evaluate(as_eigen(x_shots), y_shots, as_eigen(x_test), y_test, k, compact, fo);

  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    if (!csv) vs::detail::fail("cannot write the results file '", o.csv, "'");
    csv << "checkpoint,classes,method,examples,l2,seed,accuracy\n";
  }
  const std::string class_text = o.classes.empty() ? "0-9" : o.classes;
  std::printf("%s: %d classes (%s), %zu test images, features of width %d\n", o.checkpoint.c_str(), k,
              class_text.c_str(), test_indices.size(), geometry.features);
  for (std::size_t l = 0; l < r.l2_regs.size(); ++l)
    for (std::size_t s = 0; s < r.shots.size(); ++s) {
      double mean = r.mean_accuracy(l, s), var = 0;
      for (int seed = 0; seed < r.seeds; ++seed) {
        var += std::pow(r.accuracy(l, s, seed) - mean, 2) / std::max(1, r.seeds - 1);
        if (csv)
          csv << o.checkpoint << ',' << class_text << ",fewshot," << r.shots[s] * k << ',' << r.l2_regs[l] << ','
              << seed << ',' << r.accuracy(l, s, seed) << '\n';
      }
      std::printf("%2d-shot (l2 %g): %.2f%% +- %.2f over %d seeds\n", r.shots[s], r.l2_regs[l], 100 * mean,
                  100 * std::sqrt(var), r.seeds);
    }

  if (o.probe > 0) {
    const std::vector<int> sample = vs::data::balanced_sample(train, pool, o.probe, o.seed + 2);
    const vs::eval::feature_matrix x = features(train, sample, "the probe's sample");
    vs::eval::linear_probe<space> probe(geometry.features, k);
    vs::eval::probe_options po;
    po.epochs = o.probe_epochs;
    po.batch = std::min(o.batch, o.probe);
    po.lr = o.probe_lr;
    po.seed = o.seed;
    const auto h = probe.fit(x, relabel(vs::eval::labels_of(train, sample)), po);
    const double acc = probe.accuracy(x_test, y_test);
    // The memory of the probe's training, as the accounting says: the frozen backbone (parameters and the
    // inference arena of a batch; no gradients, no optimizer state), the cached features and the head.
    const vs::inference_memory_bytes frozen = vs::inference_memory(
        model->shape(), vs::precision_bytes::of<vs::precision::fp32>(), std::min<std::int64_t>(o.batch, o.probe),
        input.resolution);
    std::printf("linear probe on %d images (%d epochs, lr %g; loss %.4f -> %.4f): %.2f%% (head %.1f KiB; backbone "
                "frozen: %.1f MiB of parameters and %.1f MiB of inference activations, no gradients or optimizer "
                "state; features %.1f MiB)\n",
                o.probe, o.probe_epochs, o.probe_lr, h.epoch_loss.front(), h.epoch_loss.back(), 100 * acc,
                probe.bytes() / 1024.0, frozen.parameters / 1048576.0, frozen.activations / 1048576.0,
                double(x.size() * sizeof(float)) / 1048576.0);
    if (csv) csv << o.checkpoint << ',' << class_text << ",probe," << o.probe << ",," << o.seed << ',' << acc << '\n';
  }
  std::printf("done in %.1f s%s%s\n", seconds_since(t0), o.csv.empty() ? "" : "; results in ", o.csv.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  run_options o;
  tool::program prog("fewshot", "Few-shot linear evaluation (big_vision's) and linear probes of a checkpoint on Fashion-MNIST");
  prog.wants_passive_wait();
  CLI::App& app = prog.app;
  app.add_option("--checkpoint", o.checkpoint, "parameter file (safetensors, timm's names)")->check(CLI::ExistingFile);
  app.add_option("--resolution", o.resolution, "run the model at this many pixels (default: the file's)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--mean", o.mean, "input normalisation's mean, one value or one per channel (default: the file's)");
  app.add_option("--std", o.stdev, "input normalisation's std, one value or one per channel (default: the file's)");
  app.add_option("--data", o.data, "folder with Fashion-MNIST's IDX files");
  app.add_option("--classes", o.classes, "evaluate on these classes only, e.g. 5-9");
  app.add_option("--shots", o.shots, "examples per class of each few-shot evaluation")->check(CLI::PositiveNumber);
  app.add_option("--seeds", o.seeds, "draws of the shots per count")->check(CLI::PositiveNumber);
  app.add_option("--l2", o.l2, "ridge regression's L2 constants (big_vision: 1024)")->check(CLI::PositiveNumber);
  app.add_option("--probe", o.probe, "also train a linear probe on this many class-balanced training images (0: no)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--probe-epochs", o.probe_epochs, "the probe's passes over its cached features")->check(CLI::PositiveNumber);
  app.add_option("--probe-lr", o.probe_lr, "the probe's peak learning rate (SGD-momentum, cosine)")->check(CLI::PositiveNumber);
  app.add_option("--test-size", o.test_size, "a class-balanced sample of this many test images (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", o.batch, "images per forward pass")->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "the shots', the samples' and the probe's seed");
  app.add_option("--csv", o.csv, "write every accuracy here");
  return prog.run(argc, argv, [&] {
    if (o.shots.empty() || o.l2.empty()) vs::detail::fail("--shots and --l2 need at least one value");
    return run(o);
  });
}
