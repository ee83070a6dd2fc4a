// Trains a Vision Transformer from scratch on Fashion-MNIST (the Debian package dataset-fashion-mnist) on
// the default host execution space: a progress line (step, loss, lr, images/s, ETA), test accuracy after
// each epoch, a CSV of metrics and, at the end, a safetensors file of the parameters under timm's names.
//
//   ./train                                  the defaults: bf16_mixed where the CPU has AVX-512 bf16, else
//                                            fp32; AdamW lr 2e-3, 14 epochs, label smoothing 0.1, flips and
//                                            ±1-pixel shifts (their accuracy and time: benchmarks/RESULTS.md)
//   ./train --optimizer adafactor --schedule rsqrt --epochs 3 --threads 2 --csv run.csv
//   ./train --save-every 500                 a training checkpoint (train_state.safetensors) every 500 steps
//   ./train --resume train_state.safetensors and, with the same options, on from where it was saved
//   SIGINT / SIGTERM (Ctrl-C, kill, a scheduler's preemption) stop after the current step: the training state
//                                            is saved, the program exits with status 75 (tool::exit_stopped) and
//                                            --resume continues; a second signal stops it at once
//   ./train --skip-non-finite 3              skip a step whose gradients are not finite (up to 3 in a row)
//                                            instead of stopping; by default the run stops, naming the tensor
//   OMP_WAIT_POLICY=PASSIVE ./train          idle threads sleep at once: steadier where cores are shared (the
//                                            program cannot choose this itself: examples/tool_runtime.hpp)
//   ./train --model xs --steps 400          another shape of the Fashion-MNIST ladder (model_ladder.hpp: xxs, xs,
//                                            s = the default, m), for scaling studies (scripts/sweep.py)
//   ./train --help
//
// The models are compiled in: the ladder of --model (model_ladder.hpp), whose default, s, is this example's
// model (fmnist_model.hpp); everything about the run is a command-line option. A resumed run (--resume) trains
// the shape its checkpoint holds.
// Fine-tuning: --init-from a checkpoint of this example's model, or of any body in the catalogue of timm /
// big_vision checkpoints (examples/catalogue/finetune.hpp: ViT-Ti/16 … L/32, class-token, GAP, GAP + fc_norm and
// MAP heads, compiled once into the vitscale_catalogue_finetune library), under a new 10-class head:
//   ./train --init-from vit_tiny_patch16_224.augreg_in21k.safetensors --recipe transfer --resolution 64 --steps 500
// trains ViT-Ti/16 at 64 px (its position embedding resampled from 224) on Fashion-MNIST resized to 64 px, 3
// channels (train_run.hpp says how). The training loop is in train_run.hpp.
#include <vitscale/io/dispatch.hpp>
#include <vitscale/io/pretrained.hpp>

#include "fmnist_model.hpp"
#include "model_ladder.hpp"
#include "train_run.hpp"
#if VITSCALE_HAVE_CATALOGUE_FINETUNE
#include "catalogue/finetune.hpp"
#endif

#include <cstdio>
#include <string>
#include <type_traits>

namespace vs = vitscale;
using namespace train_example;

int main(int argc, char** argv) {
  run_options o;
  std::string model = model_ladder::names[model_ladder::default_rung];
  // Idle threads that spin cost this model dearly where cores are shared (benchmarks/RESULTS.md, 2026-11-24).
  tool::program prog("train", "Train a ViT from scratch on Fashion-MNIST with vitscale");
  prog.wants_passive_wait();
  CLI::App& app = prog.app;
  app.add_option("--epochs", o.epochs, "passes over the 60000 training images")->check(CLI::PositiveNumber);
  app.add_option("--batch", o.batch, "images per step")->check(CLI::PositiveNumber);
  app.add_option("--lr", o.lr, "peak learning rate")->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "linear warmup steps")->check(CLI::NonNegativeNumber);
  app.add_option("--weight-decay", o.weight_decay, "decoupled weight decay on weights (times the lr, as AdamW)");
  app.add_option("--label-smoothing", o.label_smoothing, "softmax cross-entropy label smoothing");
  app.add_option("--drop-path", o.drop_path, "stochastic depth rate of the last block");
  app.add_option("--dropout", o.dropout, "dropout rate");
  app.add_flag("--remat", o.remat, "recompute each block's activations in backward: the same gradients, one block's "
                                   "activations kept instead of all, one more forward of the blocks per step (the "
                                   "metrics' compute column counts it; keep one setting for a run and its resumes)");
  app.add_option("--model", model, "the shape to train, from the Fashion-MNIST ladder (28 px, patch 4, GAP, 10 "
                                   "classes; FLOPs from the accounting):" + model_ladder::describe());
  app.add_option("--optimizer", o.optimizer,
                 vs::optimizer::registered_names<vs::vit<fmnist_vit, vs::precision::fp32, train_example::space>>() +
                     " (--model other than s: adamw)");
  app.add_option("--schedule", o.schedule, "cosine, linear, rsqrt (with a cooldown), constant (with a cooldown)");
  app.add_option("--precision", o.precision, "fp32, bf16 (bf16_mixed) or auto: bf16 where the CPU multiplies bf16 "
                                             "natively (AVX-512 bf16), else fp32, which is faster there");
  app.add_option("--seed", o.seed, "initialisation, shuffling and dropout seed");
  app.add_option("--data", o.data, "folder with Fashion-MNIST's IDX files");
  app.add_option("--csv", o.csv, "metrics file");
  app.add_option("--checkpoint", o.checkpoint, "safetensors file written at the end");
  app.add_option("--shift", o.shift, "augmentation: random horizontal flips and shifts by up to this many pixels "
                                     "(-1: no augmentation)");
  app.add_option("--clip", o.clip, "clip the gradients' global norm to this (0: off)");
  app.add_option("--max-steps", o.max_steps, "stop after this many steps, the schedule unchanged (a smoke run)");
  app.add_option("--resume", o.resume, "continue from this training checkpoint (written by --save-every; pass the "
                                       "same options: the schedule, model and optimizer come from them, the dropout "
                                       "settings and seeds from the checkpoint)");
  app.add_option("--save-every", o.save_every, "write a training checkpoint every this many steps and at the end "
                                               "(0: never)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--train-checkpoint", o.train_checkpoint, "where --save-every (and a stop by SIGINT or SIGTERM) "
                                                           "writes the training checkpoint; the one it replaces is "
                                                           "kept as <file>.prev");
  app.add_flag("--overwrite", o.overwrite, "replace an existing --train-checkpoint that this run does not --resume");
  app.add_option("--skip-non-finite", o.skip_non_finite, "skip a step whose gradients are not finite, up to this "
                                                         "many in a row, instead of stopping (0: stop at the first)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--classes", o.classes, "train and test on these classes only, e.g. 0-4 or 5,7,9 (the head keeps 10 "
                                         "outputs; predictions are the best of these classes)");
  app.add_option("--train-size", o.train_size, "train on a class-balanced sample of this many images (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--validation", o.validation, "hold this many class-balanced training images out as a validation set")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--keep-best", o.keep_best, "write the parameters here at each new best validation accuracy (the "
                                             "checkpoint chosen by upstream validation, as AugReg recommends)");
  app.add_option("--steps", o.steps, "the schedule's length in steps (0: --epochs passes), for runs of equal compute")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--recipe", o.recipe, "transfer: the papers' fine-tuning recipe (SGD-momentum 0.9, no weight decay, "
                                       "global-norm clipping 1, warmup + cosine, no label smoothing, lr 0.01) for the "
                                       "options not given");
  app.add_option("--init-from", o.init_from, "start from this pretrained checkpoint (a parameter file or training "
                                             "checkpoint of train, a timm safetensors file or a big_vision .npz) "
                                             "with a new zero head: fine-tuning");
  app.add_option("--resolution", o.resolution, "with --init-from a catalogue checkpoint: train at this many pixels "
                                             "(default: the checkpoint's); Fashion-MNIST is resized to it")
      ->check(CLI::Range(1, 4096));
  app.add_flag("--keep-head", o.keep_head, "with --init-from: keep the checkpoint's head instead of a new one");
  app.add_option("--ema", o.ema, "keep an exponential moving average of the parameters with this decay (e.g. 0.999); "
                                 "evaluation, --keep-best and --checkpoint use it (0: none)")
      ->check(CLI::Range(0.0, 0.999999999));
  app.add_option("--evaluations", o.evaluations, "evaluate at the end of every epoch, or of every k-th epoch so that "
                                               "a run has about this many evaluations (and one at the end)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--ema-warmup", o.ema_warmup, "with --ema: timm's warmup of the decay (ModelEmaV3, power 2/3)");
  return prog.run(argc, argv, [&] {
    if (!o.recipe.empty()) {
      if (o.recipe != "transfer") vs::detail::fail("unknown --recipe '", o.recipe, "' (transfer)");
      // big_vision configs/transfer.py: momentum SGD (0.9), no weight decay, clip_grad_norm 1, linear warmup then
      // cosine decay, no label smoothing; the lr is swept there ({0.001, 0.003, 0.01, 0.03}); 0.01 by default.
      const auto unset = [&](const char* name) { return app.count(name) == 0; };
      if (unset("--optimizer")) o.optimizer = "sgd";
      if (unset("--weight-decay")) o.weight_decay = 0;
      if (unset("--clip")) o.clip = 1;
      if (unset("--schedule")) o.schedule = "cosine";
      if (unset("--label-smoothing")) o.label_smoothing = 0;
      if (unset("--lr")) o.lr = 0.01;
      std::printf("recipe transfer: %s, lr %g, weight decay %g, clip %g, %s schedule, label smoothing %g\n",
                  o.optimizer.c_str(), o.lr, o.weight_decay, o.clip, o.schedule.c_str(), o.label_smoothing);
    }
    if (o.precision == "auto") {
      o.precision = vs::kernels::host_bf16_gemm_is_native() ? "bf16" : "fp32";
      std::printf("precision: %s (auto: this CPU %s bf16 products natively)\n", o.precision.c_str(),
                  o.precision == "bf16" ? "runs" : "does not run");
    }
    // The model: the ladder's rung --model names (an unknown name fails here, before the data are read), or the
    // shape of the checkpoint the run continues or starts from: a rung of the ladder, or a catalogue body.
    std::size_t rung = model_ladder::rung_named(model);
    const bool model_given = app.count("--model") > 0;
    const std::string source = !o.resume.empty() ? o.resume : o.init_from;
    if (!source.empty() && vs::io::detect_file_format(source) == vs::io::file_format::safetensors) {
      vs::shape_descriptor found = vs::io::infer_shape(source);
      if (o.resume.empty() && !o.keep_head) {
        found.classes = 10;  // a new head (zero, 10 classes): the file's head and pre-logits layer are not loaded
        found.pre_logits = 0;
      }
      const int fitting = model_ladder::rung_fitting(found);
      if (fitting >= 0) {
        // The file decides (a resumed run needs no --model); a --model naming another shape is a mistake to report.
        if (model_given && std::size_t(fitting) != rung)
          vs::detail::fail("--model ", model, ", but ", source, " holds the ladder's ", model_ladder::names[fitting],
                           " (", found.to_string(), "): leave --model out or pass --model ",
                           model_ladder::names[fitting]);
        rung = std::size_t(fitting);
      } else {
        if (model_given)
          vs::detail::fail("--model ", model, ", but ", source, " holds a shape outside the ladder (",
                           found.to_string(), "): leave --model out to fine-tune a catalogue body");
        if (o.resolution == 0) o.resolution = found.resolution.value_or(0);
#if VITSCALE_HAVE_CATALOGUE_FINETUNE
        return catalogue::finetune<model_ladder::shapes>(found, o);
#else
        return vs::io::dispatch<model_ladder::shapes>(found, [](auto) { return 0; });  // its error
#endif
      }
    }
    if (o.resolution != 0 && o.resolution != 28)
      vs::detail::fail("--resolution ", o.resolution, ": the ladder's models (--model) take Fashion-MNIST's 28 x 28 "
                       "images; another resolution is for fine-tuning a catalogue checkpoint (--init-from)");
    return model_ladder::with_rung(rung, [&](auto tag) {
      using shape = typename decltype(tag)::type;
      if constexpr (std::is_same_v<shape, fmnist_vit>)
        return train_shape<fmnist_vit>(o);  // every optimizer
      else
        return model_ladder::train_rung<shape>(o);  // AdamW, compiled in model_ladder_*.cpp
    });
  });
}
