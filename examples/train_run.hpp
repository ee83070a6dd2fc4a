#pragma once
// The training loop of examples/train (train.cpp has the options and main): train_shape<Shape>(options) trains a
// model of Shape on Fashion-MNIST with the optimizer and precision the options name. train.cpp instantiates it
// for its own model (fmnist_model.hpp); examples/model_ladder_*.cpp for the other shapes of --model
// (model_ladder.hpp); examples/catalogue/finetune_*.cpp for the catalogue's bodies under a 10-class head
// (fine-tuning a timm / big_vision checkpoint), so that train.cpp compiles none of those.
//
// Inputs: Fashion-MNIST's 28 x 28 grey images, normalised by the training set's mean and std, flipped and shifted
// (--shift); a model of another resolution or channel count gets them resized with PIL's bicubic weights in
// float (examples/image_transform.hpp: batch_resizer) and replicated to its channels.
#include <vitscale/data/augment.hpp>
#include <vitscale/data/batches.hpp>
#include <vitscale/data/idx.hpp>
#include <vitscale/data/subset.hpp>
#include <vitscale/explore/compute.hpp>
#include <vitscale/eval/metrics.hpp>
#include <vitscale/io/checkpoint.hpp>
#include <vitscale/io/files.hpp>
#include <vitscale/io/pretrained.hpp>
#include <vitscale/train/loss.hpp>
#include <vitscale/train/optimizers.hpp>
#include <vitscale/train/schedule.hpp>
#include <vitscale/vit.hpp>

#include "image_transform.hpp"
#include "tool_runtime.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <unistd.h>

namespace train_example {

namespace vs = vitscale;

using space = Kokkos::DefaultHostExecutionSpace;


struct run_options {
  int epochs = 14;
  int batch = 128;
  double lr = 2e-3;
  int warmup = 500;
  double weight_decay = 0.05;
  double label_smoothing = 0.1;
  double drop_path = 0.0;
  double dropout = 0.0;
  bool remat = false;  // recompute each block's activations in backward (config/activations.hpp)
  std::string optimizer = "adamw";
  std::string schedule = "cosine";
  std::string precision = "auto";
  std::uint64_t seed = 0;
  std::string data = vs::data::fashion_mnist_default_dir;
  std::string csv = "train_metrics.csv";
  std::string checkpoint = "vit_fashion_mnist.safetensors";
  long max_steps = 0;  // 0: all; a smoke run stops early
  double clip = 0.0;   // global gradient-norm clipping (0: off)
  int shift = 1;       // augmentation: random flips and translations by up to this many pixels (-1: none)
  std::string resume;  // a training checkpoint to continue from ("": start afresh)
  long save_every = 0; // write a training checkpoint every this many steps and at the end (0: never)
  std::string train_checkpoint = "train_state.safetensors";
  bool overwrite = false;  // replace an existing training checkpoint that --resume does not continue
  int skip_non_finite = 0;  // steps with non-finite gradients skipped in a row before the run stops
  // Transfer studies: which data, how long, which checkpoint to keep.
  std::string classes;      // a class list ("5-9"): train and test on those classes only ("": all ten)
  int train_size = 0;       // a class-balanced sample of this many training images (0: all of the classes')
  int validation = 0;       // class-balanced training images held out as a validation set (0: none)
  std::string keep_best;    // write the parameters here whenever validation accuracy reaches a new best
  long steps = 0;           // the schedule's length in steps (0: --epochs passes over the training images)
  std::string recipe;       // "transfer": the papers' fine-tuning recipe (see main)
  std::string init_from;    // start from this pretrained checkpoint (safetensors or big_vision .npz)
  bool keep_head = false;   // ... keeping its head (default: a new zero head, as for a new task)
  double ema = 0;           // decay of an EMA of the parameters, which evaluation and the saved files use (0: none)
  bool ema_warmup = false;  // timm's EMA warmup (ModelEmaV3: power 2/3)
  int evaluations = 20;     // at most about this many test evaluations per run (at the ends of epochs, and the last)
  int resolution = 0;       // the model's input size in pixels (0: the shape's; main sets a checkpoint's)
};

// The model's input from a batch of normalised Fashion-MNIST images [n, h, w, 1]: the batch itself for a
// model of that size and 1 channel, else resized (image_transform::batch_resizer) into a buffer of `batch`
// images, allocated once.
class model_input {
 public:
  model_input(int batch, int h, int w, int resolution, int channels) {
    if (h == resolution && w == resolution && channels == 1) return;
    resizer_.emplace(h, w, resolution, channels);
    buffer_ = vs::data::host_image_batch("vitscale::train::model_input", std::size_t(batch), std::size_t(resolution),
                                         std::size_t(resolution), std::size_t(channels));
  }
  // A View of the images as the model takes them (valid until the next call).
  vs::data::host_image_batch operator()(const vs::data::host_image_batch& images) {
    if (!resizer_) return images;
    const auto n = images.extent(0);
    (*resizer_)(images.data(), int(n), buffer_.data());
    return Kokkos::subview(buffer_, std::make_pair(std::size_t(0), n), Kokkos::ALL, Kokkos::ALL, Kokkos::ALL);
  }

 private:
  std::optional<image_transform::batch_resizer> resizer_;
  vs::data::host_image_batch buffer_;
};

inline const char* const class_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",   "Coat",
                                     "Sandal",      "Shirt",   "Sneaker",  "Bag",     "Ankle boot"};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline std::string clock_text(double s) {
  char buf[32];
  const long t = static_cast<long>(s + 0.5);
  std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

// A double as text that reads back exactly (17 significant digits).
inline std::string exact_text(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

inline std::function<double(std::int64_t)> make_schedule(const run_options& o, std::int64_t total) {
  const std::int64_t warmup = std::min<std::int64_t>(o.warmup, total / 2);
  const std::int64_t cooldown = total / 10;
  if (o.schedule == "cosine") return vs::schedule::warmup_cosine{o.lr, warmup, total, 0.0, 0};
  if (o.schedule == "linear") return vs::schedule::warmup_linear{o.lr, warmup, total, 0.0, 0};
  if (o.schedule == "rsqrt")
    return vs::schedule::warmup_rsqrt_cooldown{o.lr, warmup, double(std::max<std::int64_t>(warmup, 1)), cooldown, total};
  if (o.schedule == "constant") return vs::schedule::warmup_constant{o.lr, warmup, cooldown, total};
  vs::detail::fail("unknown schedule '", o.schedule, "' (cosine, linear, rsqrt, constant)");
}

// Accuracy on `test`, in batches of the training batch size (the arena laid out for training serves them), the
// prediction being the largest logit among `classes` (a class subset evaluated on the 10-class head, as ImageNet-R
// and -A are on 1000-class heads).
template <class Model>
double evaluate(Model& model, const vs::data::dataset& test, int batch, const vs::data::normalization& norm,
                const std::vector<int>& classes, model_input& input) {
  vs::data::host_image_batch images("images", batch, 28, 28, 1);
  vs::data::host_label_batch labels("labels", batch);
  std::vector<int> order(static_cast<std::size_t>(test.size()));
  for (int i = 0; i < test.size(); ++i) order[static_cast<std::size_t>(i)] = i;
  vs::eval::classification_options top1;
  top1.top_k = {1};
  if (int(classes.size()) < 10) top1.subset = vs::eval::class_subset(10, classes);
  vs::eval::classification_accumulator metrics(10, top1);
  for (int start = 0; start < test.size(); start += batch) {
    const int n = std::min(batch, test.size() - start);
    auto im = Kokkos::subview(images, std::make_pair(0, n), Kokkos::ALL, Kokkos::ALL, Kokkos::ALL);
    auto lb = Kokkos::subview(labels, std::make_pair(0, n));
    vs::data::fill_batch(test, order.data() + start, n, norm, im, lb);
    metrics.add(vs::eval::to_host(model.predict(input(im))), std::vector<int>(lb.data(), lb.data() + n));
  }
  return metrics.accuracy(1);
}

// Everything about the options and the outputs that can be checked before a long run, checked before it: the
// learning rate as the float the update uses, the outputs writable, and no training checkpoint of another
// run replaced silently.
inline void check_run(const run_options& o) {
  if (!o.keep_best.empty()) {
    vs::io::check_writable(o.keep_best, "the best checkpoint (--keep-best)");
    if (o.validation == 0) vs::detail::fail("--keep-best selects by validation accuracy: hold out images with --validation N");
  }
  if (!(o.lr <= double(std::numeric_limits<float>::max())))
    vs::detail::fail("--lr ", o.lr, " is not finite as the float the update uses (floats reach 3.4e38)");
  vs::io::check_writable(o.csv, "the metrics file (--csv)");
  vs::io::check_writable(o.checkpoint, "the parameter file (--checkpoint)");
  vs::io::check_writable(o.train_checkpoint, "the training checkpoint (--train-checkpoint)");
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool continues = !o.resume.empty() && fs::equivalent(o.resume, o.train_checkpoint, ec);
  if (fs::exists(o.train_checkpoint, ec) && !continues && !o.overwrite)
    vs::detail::fail("the training checkpoint '", o.train_checkpoint, "' exists already and this run ",
                     o.resume.empty() ? "starts afresh" : "continues another file",
                     ": it would replace it at its first save (or when stopped). Pass --resume ", o.train_checkpoint,
                     " to continue that run, --train-checkpoint to save elsewhere, or --overwrite to replace it");
}

// The model runs with the optimizer's EMA of the parameters while the result lives, when there is one.
template <class Optimizer>
std::optional<typename Optimizer::ema_scope> optional_ema(Optimizer& optimizer) {
  if (!optimizer.has_ema()) return std::nullopt;
  return optimizer.use_ema();
}

// The model's parameters under timm's names, with what classify needs to use them (examples/classify.cpp).
template <class Model>
void save_parameters_to(const std::string& path, const Model& model, const vs::data::normalization& norm,
                        double test_accuracy, std::map<std::string, std::string> extra) {
  std::string labels;
  for (int c = 0; c < 10; ++c) labels += std::string(c ? "," : "") + class_names[c];
  using shape = typename Model::shape;
  const std::string res = std::to_string(model.resolution());
  std::map<std::string, std::string> metadata = {
      {"format", "timm state dict (vitscale)"},
      {"model", vs::describe<shape>().to_string() + ", " + res + " px"},
      {"input", "[B, " + res + ", " + res + ", " + std::to_string(shape::in_channels) +
                    "] channels last; (pixel/255 - mean)/std" +
                    (model.resolution() == 28 && shape::in_channels == 1
                         ? std::string()
                         : std::string(", 28-px grey images resized with PIL's bicubic weights and replicated"))},
      {"mean", std::to_string(norm.mean)},
      {"std", std::to_string(norm.std)},
      {"crop_pct", "1"},  // whole 28-pixel images: classify must not crop
      {"labels", labels},
      {"test_accuracy", std::to_string(test_accuracy)}};
  for (auto& [key, value] : extra) metadata[key] = value;
  vs::io::save_parameters(model, path, metadata);
}

template <class Shape, class Policy, class Optimizer>
int train(const run_options& o, const typename Optimizer::options& opt_options) {
  check_run(o);
  const auto t_load = std::chrono::steady_clock::now();
  const vs::data::dataset train_full = vs::data::load_fashion_mnist(o.data, vs::data::split::train);
  const vs::data::dataset test_full = vs::data::load_fashion_mnist(o.data, vs::data::split::test);
  // The whole training set's statistics, whatever subset trains: a transferred model sees the same inputs.
  const vs::data::normalization norm = vs::data::pixel_statistics(train_full.images);
  // The classes, the validation split (held out first, so it does not depend on --train-size) and the sample.
  const std::vector<int> classes = vs::data::parse_classes(o.classes.empty() ? "0-9" : o.classes, 10);
  std::vector<int> train_indices = vs::data::examples_of_classes(train_full, classes);
  const std::vector<int> validation_indices =
      o.validation > 0 ? vs::data::balanced_sample(train_full, train_indices, o.validation, o.seed + 0x5641u)
                       : std::vector<int>();
  train_indices = vs::data::remaining(train_indices, validation_indices);
  if (o.train_size > 0) train_indices = vs::data::balanced_sample(train_full, train_indices, o.train_size, o.seed);
  const vs::data::dataset train_set = vs::data::subset(train_full, train_indices);
  const vs::data::dataset validation_set = vs::data::subset(train_full, validation_indices);
  const vs::data::dataset test_set = vs::data::subset(test_full, vs::data::examples_of_classes(test_full, classes));
  std::printf("Fashion-MNIST: %d training, %d validation and %d test images%s%s (%.1f s to load), pixels normalised "
              "by mean %.4f, std %.4f\n",
              train_set.size(), validation_set.size(), test_set.size(), o.classes.empty() ? "" : " of classes ",
              o.classes.c_str(), seconds_since(t_load), double(norm.mean), double(norm.std));
  if (train_set.size() < o.batch)
    vs::detail::fail("--batch ", o.batch, " is larger than the ", train_set.size(), " training images");

  vs::vit<Shape, Policy, space> model(vs::init::timm{o.seed}, o.resolution > 0 ? o.resolution : Shape::resolution);
  model_input input(o.batch, train_set.images.rows, train_set.images.cols, model.resolution(), Shape::in_channels);
  const vs::flop_counts flops = Shape::flops(model.resolution());
  model.set_regularization({o.dropout, o.drop_path, o.seed});
  const auto remat = o.remat ? vs::rematerialization::blocks : vs::rematerialization::none;
  model.set_rematerialization(remat);
  if (o.remat)
    std::printf("rematerialisation: the blocks' activations recomputed in backward (%.1f of %.1f MiB kept at batch "
                "%d; %.3g instead of %.3g FLOPs per image)\n",
                vs::training_memory<Shape, Policy, vs::optim::sgd_momentum>(o.batch, model.resolution(),
                                                                            vs::parameter_ema::off, remat)
                        .activations / 1048576.0,
                vs::training_memory<Shape, Policy, vs::optim::sgd_momentum>(o.batch, model.resolution()).activations /
                    1048576.0,
                o.batch, double(flops.training_with(remat)), double(flops.training));
  if (!o.init_from.empty() && o.resume.empty()) {
    vs::io::pretrained_options load;
    load.new_head = !o.keep_head;
    std::printf("%s\n", vs::io::load_pretrained(model, o.init_from, load).to_string().c_str());
  }
  Optimizer optimizer(model, opt_options);
  // A resumed run takes the model, the optimizer's state, the step, the data order's position and the seeds
  // (and dropout settings) from the checkpoint; the schedule and the rest come from the options as given.
  vs::io::training_state state;
  state.data_seed = o.seed;
  state.augment_seed = o.seed;
  if (!o.resume.empty()) {
    state = vs::io::load_checkpoint(o.resume, model, optimizer);
    std::printf("resumed from %s at step %lld (epoch %u, sample %lld of its order)\n", o.resume.c_str(),
                static_cast<long long>(state.step), state.data.epoch + 1, static_cast<long long>(state.data.index));
  }
  vs::data::batcher batches(train_set, {o.batch, state.data_seed, true, true, norm}, state.data);
  const std::int64_t steps_per_epoch = batches.batches_per_epoch();
  const std::int64_t schedule_steps = o.steps > 0 ? std::int64_t(o.steps) : steps_per_epoch * o.epochs;
  // Evaluations at the end of an epoch, at most about --evaluations per run (a small training set has many short
  // epochs), and always after the last step.
  const std::int64_t epoch_count = (schedule_steps + steps_per_epoch - 1) / steps_per_epoch;
  const std::int64_t eval_stride = std::max<std::int64_t>(1, epoch_count / o.evaluations);
  // --max-steps stops the run early without changing the schedule (a smoke run, or a probe of a recipe).
  const std::int64_t total = o.max_steps > 0 ? std::min<std::int64_t>(schedule_steps, o.max_steps) : schedule_steps;
  const auto lr_at = make_schedule(o, schedule_steps);
  const auto metadata = [&](const char* key) {
    const auto it = state.metadata.find(key);
    return it == state.metadata.end() ? 0.0 : std::strtod(it->second.c_str(), nullptr);
  };
  if (!o.resume.empty() && metadata("schedule_steps") != double(schedule_steps))
    std::fprintf(stderr, "note: %s was saved by a run with a %.0f-step schedule; this one has %lld steps\n",
                 o.resume.c_str(), metadata("schedule_steps"), static_cast<long long>(schedule_steps));
  std::printf("model: ViT depth %d, width %d, %d heads, MLP %d, patch %d, %d px, %d channel%s, %lld parameters (%s); "
              "%s, %s schedule, peak lr %g, %lld steps of batch %d, %d threads; optimizer state %.1f MiB\n",
              Shape::depth, Shape::width, Shape::heads, Shape::mlp_dim, Shape::patch, model.resolution(),
              Shape::in_channels, Shape::in_channels == 1 ? "" : "s",
              static_cast<long long>(Shape::params(model.resolution()).total), o.precision.c_str(), o.optimizer.c_str(),
              o.schedule.c_str(), o.lr, static_cast<long long>(total), o.batch, space().concurrency(),
              optimizer.state_bytes() / 1048576.0);

  // A resumed run appends to the metrics of the run it continues.
  const bool append = !o.resume.empty() && std::ifstream(o.csv).peek() != std::ifstream::traits_type::eof();
  std::ofstream csv(o.csv, append ? std::ios::app : std::ios::trunc);
  if (!csv) vs::detail::fail("cannot write the metrics file '", o.csv, "'");
  if (!append)
    csv << "epoch,step,train_loss,test_accuracy,lr,images_per_second,elapsed_seconds,validation_accuracy,"
           "raw_test_accuracy,images_seen,compute\n";
  double best_validation = o.resume.empty() ? -1.0 : metadata("best_validation");

  Kokkos::View<float**, Kokkos::LayoutRight, space::memory_space> dlogits("dlogits", o.batch, 10);
  const bool tty = isatty(fileno(stderr));
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t first_step = state.step;
  std::int64_t step = first_step;
  double loss_ema = metadata("loss_ema"), epoch_loss = metadata("epoch_loss");
  long epoch_batches = static_cast<long>(metadata("epoch_batches"));
  double accuracy = 0;
  // Where the batcher is: epoch e, batch k of it (drop_last: every epoch has steps_per_epoch batches).
  int first_epoch = static_cast<int>(state.data.epoch);
  std::int64_t first_batch = state.data.index / o.batch;
  if (first_batch >= steps_per_epoch) {
    ++first_epoch;
    first_batch = 0;
  }
  // The last training checkpoint this run wrote or resumed from: what an error says is safe.
  std::string last_saved = o.resume.empty() ? std::string() : o.resume + " (step " + std::to_string(state.step) + ")";
  const auto save_state = [&]() {
    state.step = step;
    state.data = batches.position();
    state.metadata = {{"loss_ema", exact_text(loss_ema)},
                      {"epoch_loss", exact_text(epoch_loss)},
                      {"epoch_batches", std::to_string(epoch_batches)},
                      {"schedule_steps", std::to_string(schedule_steps)},
                      {"best_validation", exact_text(best_validation)}};
    vs::io::save_checkpoint(o.train_checkpoint, model, optimizer, state);
    last_saved = o.train_checkpoint + " (step " + std::to_string(step) + ")";
  };
  // A failed step: the message, the step, and where the last good state is (nothing non-finite is ever saved).
  const auto fail_at = [&](const std::string& what) {
    vs::detail::fail("step ", step, ": ", what, "; ",
                     last_saved.empty() ? std::string("no training checkpoint was written (--save-every)")
                                        : "the last training checkpoint, " + last_saved + ", is intact",
                     ". Lower the learning rate (--lr), clip the gradients (--clip 1) or lengthen the warmup");
  };
  const tool::graceful_stop stop;
  long skipped = 0;
  for (int epoch = first_epoch; step < total; ++epoch) {
    if (epoch != first_epoch || first_batch == 0) {
      epoch_loss = 0;
      epoch_batches = 0;
    }
    for (std::int64_t k = epoch == first_epoch ? first_batch : 0; k < steps_per_epoch && step < total; ++k) {
      const vs::data::batch b = batches.next();
      if (o.shift >= 0)
        vs::data::flip_and_shift(b.images, state.augment_seed, static_cast<std::uint32_t>(step), o.shift,
                                 -norm.mean / norm.std);
      auto logits = model.forward(input(b.images), static_cast<std::uint32_t>(step));
      const double loss = vs::loss::softmax_xent(space(), logits, b.labels, dlogits, o.label_smoothing);
      // A non-finite loss makes non-finite gradients: with --skip-non-finite the optimizer skips (or fails) the
      // step; without, the run stops here.
      const bool finite_loss = std::isfinite(loss);
      if (!finite_loss && o.skip_non_finite == 0) fail_at("the loss is " + std::to_string(loss));
      model.backward(dlogits);
      const double lr = lr_at(step);
      try {
        // Decoupled weight decay scaled by the lr, as PyTorch's AdamW.
        if (!optimizer.step(lr, lr).applied) {
          ++skipped;
          std::fprintf(stderr, "%sstep %lld: a gradient is not finite; the update is skipped (%d in a row, %ld in "
                               "this run)\n", tty ? "\n" : "", static_cast<long long>(step), optimizer.skipped_in_a_row(),
                       skipped);
        }
      } catch (const vs::non_finite_error& e) {
        fail_at(e.reason());
      }
      if (finite_loss) {  // the averages leave a skipped step's loss out
        loss_ema = step == 0 ? loss : 0.98 * loss_ema + 0.02 * loss;
        epoch_loss += loss;
        ++epoch_batches;
      }
      ++step;
      if (stop.requested()) {
        save_state();
        if (tty) std::fprintf(stderr, "\n");
        std::printf("stopped by %s after step %lld: the training state is in %s; continue with --resume %s\n",
                    tool::graceful_stop::name(stop.requested()), static_cast<long long>(step),
                    o.train_checkpoint.c_str(), o.train_checkpoint.c_str());
        std::fflush(stdout);
        return tool::exit_stopped;
      }
      if (o.save_every > 0 && (step % o.save_every == 0 || step == total)) save_state();
      const bool report = tty ? ((step - 1) % 10 == 0 || step == total) : ((step - 1) % 100 == 0 || step == total);
      if (report) {
        const double elapsed = seconds_since(t0);
        const double rate = double(step - first_step) * o.batch / elapsed;
        const double eta = elapsed / double(step - first_step) * double(total - step);
        std::fprintf(stderr, "%sstep %6lld/%lld  epoch %d  loss %.4f  lr %.2e  %.0f img/s  elapsed %s  ETA %s%s",
                     tty ? "\r" : "", static_cast<long long>(step), static_cast<long long>(total), epoch + 1,
                     loss_ema, lr, rate, clock_text(elapsed).c_str(), clock_text(eta).c_str(), tty ? "   " : "\n");
      }
    }
    if ((epoch + 1) % eval_stride != 0 && step < total) continue;
    // With an EMA, evaluation, the validation choice and the saved parameters use it; the training parameters'
    // test accuracy is reported beside.
    const double raw_accuracy = optimizer.has_ema() ? evaluate(model, test_set, o.batch, norm, classes, input) : -1;
    auto ema_scope = optional_ema(optimizer);
    accuracy = evaluate(model, test_set, o.batch, norm, classes, input);
    const double validation = validation_set.size() > 0 ? evaluate(model, validation_set, o.batch, norm, classes, input) : -1;
    const double elapsed = seconds_since(t0);
    if (tty) std::fprintf(stderr, "\n");
    std::string kept;
    if (!o.keep_best.empty() && validation > best_validation) {
      best_validation = validation;
      save_parameters_to(o.keep_best, model, norm, accuracy,
                         {{"validation_accuracy", std::to_string(validation)}, {"step", std::to_string(step)}});
      kept = ", kept in " + o.keep_best;
    }
    std::printf("epoch %d: train loss %.4f, test accuracy %.2f%%", epoch + 1,
                epoch_loss / double(std::max(1L, epoch_batches)), 100.0 * accuracy);
    if (raw_accuracy >= 0) std::printf(" with the EMA (%.2f%% without)", 100.0 * raw_accuracy);
    if (validation >= 0) std::printf(", validation accuracy %.2f%%%s", 100.0 * validation, kept.c_str());
    std::printf(" (%s elapsed)\n", clock_text(elapsed).c_str());
    std::fflush(stdout);
    csv << epoch + 1 << ',' << step << ',' << epoch_loss / double(std::max(1L, epoch_batches)) << ',' << accuracy
        << ',' << lr_at(std::min(step, schedule_steps)) << ',' << double(step - first_step) * o.batch / elapsed << ','
        << elapsed << ',';
    if (validation >= 0) csv << validation;
    csv << ',';
    if (raw_accuracy >= 0) csv << raw_accuracy;
    // The training compute so far (explore/compute.hpp: the accounting's forward + backward FLOPs per image times
    // the images seen, with the recomputed forward under --remat), the x of a scaling-law fit
    // (explore/scaling_law.hpp).
    const std::int64_t images_seen = step * std::int64_t(o.batch);
    csv << ',' << images_seen << ',' << exact_text(vs::explore::cumulative_training_flops(flops, images_seen, remat))
        << '\n';
    csv.flush();
  }

  {
    auto ema_scope = optional_ema(optimizer);
    if (step == first_step) accuracy = evaluate(model, test_set, o.batch, norm, classes, input);  // nothing left to do
    save_parameters_to(o.checkpoint, model, norm, accuracy,
                       {{"classes", o.classes.empty() ? "0-9" : o.classes},
                        {"parameters", optimizer.has_ema() ? "ema" : "training"}});
  }
  std::printf("final test accuracy %.2f%% after %lld steps in %s; metrics in %s, parameters in %s%s%s\n",
              100.0 * accuracy, static_cast<long long>(step), clock_text(seconds_since(t0)).c_str(), o.csv.c_str(),
              o.checkpoint.c_str(), o.save_every > 0 ? ", training state in " : "",
              o.save_every > 0 ? o.train_checkpoint.c_str() : "");
  return 0;
}

// Which optimizers a shape is compiled with: every registered one (this example's model), those of the
// fine-tuning recipes (the catalogue's bodies: each optimizer is another instantiation of the whole loop, and
// these are what fine-tuning uses — SGD-momentum in big_vision's transfer recipe, AdamW in timm's), or AdamW
// alone (the other shapes of the --model ladder, model_ladder.hpp: the scaling studies' optimizer).
enum class optimizer_set { all, finetuning, adamw };
inline constexpr const char* finetuning_optimizers = "sgd, adamw";

template <class Shape, class Policy, optimizer_set Set>
int train_with_optimizer(const run_options& o) {
  using model_t = vs::vit<Shape, Policy, space>;
  // Every optimizer's options share the decay and clipping fields; the rest keep their defaults.
  auto run = [&](auto* tag) {
    using optimizer_t = std::remove_pointer_t<decltype(tag)>;
    typename optimizer_t::options opt;
    opt.weight_decay = {o.weight_decay, o.weight_decay};
    opt.clip = {o.clip, 0.0};
    opt.non_finite.skip_in_a_row = o.skip_non_finite;
    opt.ema.decay = o.ema;
    opt.ema.use_warmup = o.ema_warmup;
    return train<Shape, Policy, optimizer_t>(o, opt);
  };
  if constexpr (Set == optimizer_set::all) {
    return vs::optimizer::with_registered<model_t>(o.optimizer, run);
  } else if constexpr (Set == optimizer_set::finetuning) {
    if (o.optimizer == "sgd") return run(static_cast<vs::optimizer::sgd_momentum<model_t>*>(nullptr));
    if (o.optimizer == "adamw") return run(static_cast<vs::optimizer::adamw<model_t>*>(nullptr));
    vs::detail::fail("--optimizer ", o.optimizer, ": fine-tuning a catalogue checkpoint is compiled with ",
                     finetuning_optimizers, " (examples/catalogue/finetune.hpp)");
  } else {
    if (o.optimizer == "adamw") return run(static_cast<vs::optimizer::adamw<model_t>*>(nullptr));
    vs::detail::fail("--optimizer ", o.optimizer, ": the --model ladder's shapes other than the example's model (s) "
                     "are compiled with adamw only (examples/model_ladder.hpp)");
  }
}

// Trains a model of Shape with the options' precision ("fp32" or "bf16"; main resolves "auto") and optimizer.
template <class Shape, optimizer_set Set = optimizer_set::all>
int train_shape(const run_options& o) {
  if (o.precision == "fp32") return train_with_optimizer<Shape, vs::precision::fp32, Set>(o);
  if (o.precision == "bf16") return train_with_optimizer<Shape, vs::precision::bf16_mixed, Set>(o);
  vs::detail::fail("unknown precision '", o.precision, "' (fp32, bf16, auto)");
}

}  // namespace train_example
