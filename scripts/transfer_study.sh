#!/usr/bin/env bash
# A small-scale replica of AugReg's "transfer is the better option" (issue 21): pre-train the Fashion-MNIST ViT on
# classes 0-4, then, on classes 5-9 with n training images, compare
#   scratch    examples/train from random initialisation            (S steps of batch B: the downstream budget)
#   finetune   examples/train --init-from the pre-trained model      (the same S steps of batch B, new zero head,
#              --recipe transfer: SGD-momentum, no weight decay, clipping 1, warmup + cosine)
#   fewshot    examples/fewshot: big_vision's ridge regression on the frozen features of n/5 images per class
#   probe      examples/fewshot --probe: a linear probe on the cached features of the same n images
# for several n. Scratch and fine-tuning cost the same compute (S·B images forward and backward); few-shot and
# the probe cost n forward passes and a head trained on their features (much less). The CSV records the downstream
# compute as images through forward and backward (images_fwd_bwd) and through forward only (images_fwd); testing
# is not counted.
#
#   scripts/transfer_study.sh BUILD_DIR OUT_DIR            the study (~20 min on 2 cores)
#   scripts/transfer_study.sh BUILD_DIR OUT_DIR --smoke    a few steps of everything (a test that the pieces fit)
#
# Writes OUT_DIR/transfer_study.csv (method,train_size,seed,test_accuracy,images_fwd_bwd,images_fwd) and the
# runs' logs; scripts/plot_transfer_study.py draws it.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: scripts/transfer_study.sh BUILD_DIR OUT_DIR [--smoke]" >&2; exit 2; }
build=$(cd "$1" && pwd)
out=$2
smoke=${3:-}
mkdir -p "$out"
out=$(cd "$out" && pwd)
train=$build/examples/train
fewshot=$build/examples/fewshot
for tool in "$train" "$fewshot"; do
  [ -x "$tool" ] || { echo "transfer_study: $tool is not built (cmake --build $build --target train fewshot)" >&2; exit 1; }
done
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

if [ "$smoke" = --smoke ]; then
  pretrain=(--max-steps 20 --warmup 5)
  sizes=(50)
  steps=10
  batch=25
  seeds=1
  test_size=(--test-size 200)   # fewshot's test sample (train always tests on all 5000 images of classes 5-9)
else
  pretrain=(--epochs 2)   # 2 passes over the 30000 images of classes 0-4
  sizes=(50 250 1000 5000)
  steps=300
  batch=32
  seeds=3   # per size: samples, initialisations and orders
  test_size=()
fi
threads=(--threads "${VITSCALE_THREADS:-$(nproc)}")
log() { echo "[transfer_study $(date +%H:%M:%S)] $*" >&2; }

pre=$out/pretrained_0-4.safetensors
log "pre-training on classes 0-4 -> $pre"
"$train" --classes 0-4 "${pretrain[@]}" --seed 0 "${threads[@]}" --checkpoint "$pre" \
  --csv "$out/pretrain_metrics.csv" --evaluations 2 > "$out/pretrain.log" 2>&1
grep "final test accuracy" "$out/pretrain.log" >&2

csv=$out/transfer_study.csv
echo "method,train_size,seed,test_accuracy,images_fwd_bwd,images_fwd" > "$csv"
final_accuracy() { sed -n 's/^final test accuracy \([0-9.]*\)%.*/\1/p' "$1" | awk '{ print $1 / 100 }'; }

for n in "${sizes[@]}"; do
  k=$((n / 5))
  log "n = $n ($k per class)"
  # Each seed draws its own sample of n images (and, for the trained arms, initialisation and batch order).
  for ((s = 0; s < seeds; ++s)); do
    run=${n}_seed$s
    common=(--classes 5-9 --train-size "$n" --steps "$steps" --batch "$batch" --warmup $((steps / 10)) --seed "$s"
            "${threads[@]}" --evaluations 1)
    "$train" "${common[@]}" --checkpoint "$out/scratch_$run.safetensors" --csv "$out/scratch_$run.csv" \
      > "$out/scratch_$run.log" 2>&1
    echo "scratch,$n,$s,$(final_accuracy "$out/scratch_$run.log"),$((steps * batch)),0" >> "$csv"
    "$train" "${common[@]}" --init-from "$pre" --recipe transfer --checkpoint "$out/finetune_$run.safetensors" \
      --csv "$out/finetune_$run.csv" > "$out/finetune_$run.log" 2>&1
    echo "finetune,$n,$s,$(final_accuracy "$out/finetune_$run.log"),$((steps * batch)),0" >> "$csv"
    "$fewshot" --checkpoint "$pre" --classes 5-9 --shots "$k" --seeds 1 --seed "$s" --probe "$n" "${threads[@]}" \
      "${test_size[@]}" --csv "$out/fewshot_$run.csv" > "$out/fewshot_$run.log" 2>&1
    # fewshot's CSV: checkpoint,classes,method,examples,l2,seed,accuracy
    awk -F, -v n="$n" -v s="$s" 'NR > 1 { print $3 "," n "," s "," $7 ",0," n }' "$out/fewshot_$run.csv" >> "$csv"
    grep -h "^scratch\|^finetune\|^fewshot\|^probe" "$csv" | grep "^[a-z]*,$n,$s," | tr '\n' ' ' >&2
    echo >&2
  done
done
log "results in $csv"
