#!/bin/sh
# examples/train_sharded on a 1x2 mesh (examples.train_sharded): a run saved at step 6 and resumed to step 12
# ends with every rank's checkpoint byte-identical to a run that was not interrupted; a learning rate that
# diverges stops every rank at the same step, naming the gradient; SIGTERM stops every rank after the same
# step, each saving its state, exit status 75.
#   train_sharded_runs.sh TRAIN_SHARDED MPIEXEC [MPIEXEC ARGS...]   (the MPI environment comes from ctest)
set -u
exe=$1
shift
dir=train_sharded_runs.d
rm -rf "$dir" && mkdir "$dir" && cd "$dir" || exit 1
fail() { echo "train_sharded_runs: $*" >&2; cat log >&2; exit 1; }
mpi="$*"
run() { $mpi "$exe" --data 1 --model 2 --batch 32 "$@" >log 2>&1; }

run --warmup 2 --max-steps 12 --save-every 12 --train-checkpoint straight.safetensors || fail "the straight run failed"
run --warmup 2 --max-steps 6 --save-every 6 --train-checkpoint resumed.safetensors || fail "the first half failed"
run --warmup 2 --max-steps 12 --save-every 6 --train-checkpoint resumed.safetensors --resume resumed.safetensors ||
  fail "the resumed half failed"
grep -q 'resumed from resumed.safetensors (one file per rank) at step 6' log || fail "no resume at step 6"
for r in 0 1; do
  cmp -s straight.rank$r-of-2.safetensors resumed.rank$r-of-2.safetensors ||
    fail "rank $r: the resumed run's checkpoint differs from the straight run's"
done
[ -f resumed.rank0-of-2.safetensors.prev ] || fail "the checkpoint before the last one was not kept"

run --max-steps 40 --lr 1e4 --warmup 1 --train-checkpoint diverged.safetensors && fail "lr 1e4 did not fail"
grep -q "train_sharded: rank 0: vitscale: step [0-9]*: optimizer::adamw: the gradient of '.*' is" log ||
  fail "no message naming the step and the gradient"

$mpi "$exe" --data 1 --model 2 --batch 32 --warmup 2 --max-steps 100000 --train-checkpoint stopped.safetensors \
  >log 2>&1 &
pid=$!
i=0
until grep -q '^mesh 1x2' log 2>/dev/null; do
  i=$((i + 1))
  [ $i -le 600 ] || { kill -9 $pid; fail "the job did not start within 60 s"; }
  sleep 0.1
done
sleep 2
pkill -TERM -x train_sharded
wait $pid
status=$?
grep -q 'stopped by a signal after step [0-9]*: every rank' log || fail "no clean stop after SIGTERM"
grep -q 'Exit code: *75' log || [ $status -eq 75 ] || fail "status $status after SIGTERM, and no rank exited 75"
[ -f stopped.rank0-of-2.safetensors ] && [ -f stopped.rank1-of-2.safetensors ] || fail "not every rank saved"
ls -a | grep -q '\.tmp-' && fail "temporary files left"
echo "train_sharded_runs: resumed = straight on both ranks; divergence stopped both ranks; SIGTERM saved both"
