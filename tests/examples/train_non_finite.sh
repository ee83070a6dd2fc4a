#!/bin/sh
# examples/train with a learning rate that diverges (examples.train_non_finite): the run stops at the step whose
# gradient (or loss) is not finite, naming it, and the training checkpoint saved every step before is left
# exactly as it was: a resume with the same options fails at the same step and the file's bytes do not change.
#   train_non_finite.sh TRAIN_EXECUTABLE
set -u
train=$1
dir=train_non_finite.d
rm -rf "$dir" && mkdir "$dir" && cd "$dir" || exit 1
fail() { echo "train_non_finite: $*" >&2; echo "--- stdout" >&2; cat out.log >&2; echo "--- stderr" >&2; cat err.log >&2; exit 1; }
options="--lr 1e4 --save-every 1 --max-steps 200 --train-checkpoint state.safetensors --csv metrics.csv --checkpoint final.safetensors"

"$train" $options >out.log 2>err.log && fail "a learning rate of 1e4 trained without an error"
message=$(grep 'train: vitscale: step [0-9][0-9]*: ' err.log)
[ -n "$message" ] || fail "no message naming the step"
echo "$message" | grep -q "gradient of '.*' is \(NaN\|[+-]Inf\)\|the loss is" || fail "the message names no non-finite gradient or loss"
echo "first run: $message"
[ -f state.safetensors ] || fail "no training checkpoint was saved before the failure"
before=$(cksum <state.safetensors)

"$train" $options --resume state.safetensors >out.log 2>err.log && fail "the resumed run did not fail"
again=$(grep 'train: vitscale: step [0-9][0-9]*: ' err.log)
echo "resumed run: $again"
[ "$again" = "$message" ] || fail "the resumed run failed differently"
[ "$(cksum <state.safetensors)" = "$before" ] || fail "the checkpoint changed"
ls -a | grep -q '\.tmp-' && fail "temporary files left"
echo "train_non_finite: both runs stopped at the same step, the checkpoint unchanged"
