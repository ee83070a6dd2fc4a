// Evaluates a checkpoint's frozen features on Fashion-MNIST the way the seed papers report transfer: big_vision's
// few-shot linear evaluation (closed-form ridge regression on k examples per class, several seeds) and, with
// --probe, a linear probe trained on the cached features of a class-balanced training sample.
//
//   ./fewshot --checkpoint vit_fashion_mnist.safetensors                    1, 5, 10, 25 shots, 3 seeds, 10 classes
//   ./fewshot --checkpoint pretrained.safetensors --classes 5-9 --probe 1000 --csv transfer.csv
//
// The checkpoint is any parameter file of examples/train (or a training checkpoint, or a timm export) whose shape
// is one this program was compiled for (`candidates`); another shape is an error that prints what the file holds.
// Features are computed only for the examples used: the union of every seed's shots, the probe's sample and the
// test images of the chosen classes.
#include <vitscale/data/idx.hpp>
#include <vitscale/data/subset.hpp>
#include <vitscale/eval/features.hpp>
#include <vitscale/eval/fewshot.hpp>
#include <vitscale/eval/linear_probe.hpp>
#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/parameters.hpp>
#include <vitscale/vit.hpp>

#include "fmnist_model.hpp"
#include "tool_runtime.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace vs = vitscale;
using space = Kokkos::DefaultHostExecutionSpace;
using candidates = vs::type_list<fmnist_vit>;

namespace {

struct run_options {
  std::string checkpoint = "vit_fashion_mnist.safetensors";
  std::string data = vs::data::fashion_mnist_default_dir;
  std::string classes;  // "" : all ten
  std::vector<int> shots{1, 5, 10, 25};
  int seeds = 3;
  std::vector<double> l2{vs::eval::fewshot_default_l2};
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

template <class Shape>
int run(const run_options& o) {
  const auto t0 = std::chrono::steady_clock::now();
  vs::vit<Shape, vs::precision::fp32, space> model(28);
  vs::io::load_parameters(model, o.checkpoint);
  const vs::data::dataset train = vs::data::load_fashion_mnist(o.data, vs::data::split::train);
  const vs::data::dataset test = vs::data::load_fashion_mnist(o.data, vs::data::split::test);
  const vs::data::normalization norm = vs::data::pixel_statistics(train.images);  // as examples/train
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

  const auto progress = [](const char* what) {
    return [what](std::int64_t done, std::int64_t total) {
      std::fprintf(stderr, "\rfeatures of %s: %lld/%lld", what, static_cast<long long>(done), static_cast<long long>(total));
      if (done == total) std::fprintf(stderr, "\n");
    };
  };
  const vs::eval::feature_matrix x_shots = vs::eval::extract_features(model, train, shot_indices, o.batch, norm,
                                                                      progress("the shots"));
  const vs::eval::feature_matrix x_test = vs::eval::extract_features(model, test, test_indices, o.batch, norm,
                                                                     progress("the test images"));
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
              class_text.c_str(), test_indices.size(), Shape::features);
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
    const vs::eval::feature_matrix x = vs::eval::extract_features(model, train, sample, o.batch, norm,
                                                                  progress("the probe's sample"));
    vs::eval::linear_probe<space> probe(Shape::features, k);
    vs::eval::probe_options po;
    po.epochs = o.probe_epochs;
    po.batch = std::min(o.batch, o.probe);
    po.lr = o.probe_lr;
    po.seed = o.seed;
    const auto h = probe.fit(x, relabel(vs::eval::labels_of(train, sample)), po);
    const double acc = probe.accuracy(x_test, y_test);
    std::printf("linear probe on %d images (%d epochs, lr %g; loss %.4f -> %.4f): %.2f%% (head %.1f KiB, backbone "
                "frozen)\n",
                o.probe, o.probe_epochs, o.probe_lr, h.epoch_loss.front(), h.epoch_loss.back(), 100 * acc,
                probe.bytes() / 1024.0);
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
    const vs::io::safetensors_reader file(o.checkpoint);
    const vs::shape_descriptor found = vs::io::infer_shape(file);
    return vs::io::dispatch<candidates>(found, [&](auto tag) { return run<typename decltype(tag)::type>(o); });
  });
}
