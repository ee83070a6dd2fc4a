#!/bin/sh
# examples/train --remat (examples.train_remat): training that recomputes each block's activations in backward
# ends with the same parameters, byte for byte, as training that keeps them (dropout and drop-path on, so that
# backward must draw forward's masks again), the same losses and accuracy, and a compute column larger by the
# recomputed forward of the blocks.
#   train_remat.sh TRAIN_EXECUTABLE
set -u
train=$1
dir=train_remat.d
rm -rf "$dir" && mkdir "$dir" && cd "$dir" || exit 1
fail() { echo "train_remat: $*" >&2; for f in *.log; do echo "--- $f" >&2; cat "$f" >&2; done; exit 1; }
options="--max-steps 12 --warmup 4 --batch 32 --dropout 0.1 --drop-path 0.2 --evaluations 1"

"$train" $options --csv keep.csv --checkpoint keep.safetensors >keep.log 2>&1 || fail "the run without --remat failed"
"$train" $options --remat --csv remat.csv --checkpoint remat.safetensors >remat.log 2>&1 || fail "the --remat run failed"
grep -q "rematerialisation: the blocks' activations recomputed in backward" remat.log || fail "--remat said nothing"
cmp -s keep.safetensors remat.safetensors || fail "the final parameters differ"

# A column of the last row, by its header name.
column() { awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == name) c = i } END { print $c }' "$1"; }
for name in step train_loss test_accuracy images_seen; do
  [ "$(column keep.csv $name)" = "$(column remat.csv $name)" ] || fail "$name differs: $(column keep.csv $name) vs $(column remat.csv $name)"
done
keep=$(column keep.csv compute)
remat=$(column remat.csv compute)
awk -v k="$keep" -v r="$remat" 'BEGIN { exit !(r > k && r < 1.34 * k) }' || fail "compute $remat with --remat, $keep without"
echo "train_remat: the same parameters, loss $(column keep.csv train_loss) and accuracy $(column keep.csv test_accuracy); compute $keep -> $remat"
