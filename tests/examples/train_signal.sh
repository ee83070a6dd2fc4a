#!/bin/sh
# examples/train stopped by SIGTERM (examples.train_signal): the run finishes its step, saves the training
# state and exits with status 75; no temporary file is left; the checkpoint holds the step the run reported,
# and --resume continues from it.
#   train_signal.sh TRAIN_EXECUTABLE
set -u
train=$1
dir=train_signal.d
rm -rf "$dir" && mkdir "$dir" && cd "$dir" || exit 1
fail() { echo "train_signal: $*" >&2; echo "--- stdout" >&2; cat out.log >&2; echo "--- stderr" >&2; cat err.log >&2; exit 1; }

"$train" --max-steps 100000 --save-every 100000 --warmup 10 --train-checkpoint state.safetensors \
  --csv metrics.csv --checkpoint final.safetensors >out.log 2>err.log &
pid=$!
# The first progress line comes after step 1; then let it run a few more steps.
i=0
until grep -q 'step  *1/' err.log 2>/dev/null; do
  i=$((i + 1))
  [ $i -le 600 ] || { kill -9 $pid; fail "no progress line within 60 s"; }
  kill -0 $pid 2>/dev/null || fail "train ended before its first step"
  sleep 0.1
done
sleep 1
kill -TERM $pid
wait $pid
status=$?
[ $status -eq 75 ] || fail "exit status $status after SIGTERM, expected 75"
step=$(sed -n 's/^stopped by SIGTERM after step \([0-9][0-9]*\):.*/\1/p' out.log)
[ -n "$step" ] || fail "no 'stopped by SIGTERM after step N' line"
[ "$step" -ge 2 ] || fail "stopped after step $step: expected a few steps"
ls -a | grep -q '\.tmp-' && fail "temporary files left: $(ls -a | grep '\.tmp-')"
[ -f state.safetensors ] || fail "no training checkpoint"

# The checkpoint is at that step: resumed with that many steps in all, nothing is left to train.
"$train" --max-steps "$step" --warmup 10 --resume state.safetensors --csv metrics.csv --checkpoint final.safetensors \
  >out.log 2>err.log || fail "resuming failed"
grep -q "resumed from state.safetensors at step $step " out.log || fail "the checkpoint is not at step $step"
grep -q "final test accuracy .* after $step steps" out.log || fail "the resumed run did not end at step $step"
echo "train_signal: stopped by SIGTERM after step $step with status 75, checkpoint at step $step, no temporary files"
