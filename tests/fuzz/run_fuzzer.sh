#!/bin/sh
# Runs one vitscale libFuzzer target for CTest (tests/fuzz/CMakeLists.txt).
#
#   run_fuzzer.sh fuzz BINARY SECONDS MALLOC_MB MAX_LEN DICT WORK_DIR ARTIFACT_DIR SEED_DIR
#       fuzzes for SECONDS from WORK_DIR (created; new inputs are written there) and the read-only seeds.
#   run_fuzzer.sh regress BINARY MALLOC_MB DIR...
#       runs every file in the DIRs once, without fuzzing.
# Exits non-zero on any crash, sanitizer report, leak, or allocation above MALLOC_MB.
set -eu
mode=$1
shift
case "$mode" in
  fuzz)
    bin=$1 seconds=$2 malloc_mb=$3 max_len=$4 dict=$5 work=$6 artifacts=$7 seeds=$8
    mkdir -p "$work" "$artifacts"
    exec "$bin" -max_total_time="$seconds" -malloc_limit_mb="$malloc_mb" -rss_limit_mb=2048 \
      -max_len="$max_len" -timeout=25 -print_final_stats=1 -dict="$dict" \
      -artifact_prefix="$artifacts/" "$work" "$seeds"
    ;;
  regress)
    bin=$1 malloc_mb=$2
    shift 2
    files=""
    count=0
    for dir in "$@"; do
      for f in "$dir"/*; do
        [ -f "$f" ] || continue
        count=$((count + 1))
        # Each file is run in its own process so that one failure names its input.
        if ! "$bin" -malloc_limit_mb="$malloc_mb" -rss_limit_mb=2048 "$f" >/dev/null 2>"${TMPDIR:-/tmp}/vitscale-fuzz-regress.$$"; then
          cat "${TMPDIR:-/tmp}/vitscale-fuzz-regress.$$" >&2
          rm -f "${TMPDIR:-/tmp}/vitscale-fuzz-regress.$$"
          echo "FAILED: $bin on $f" >&2
          exit 1
        fi
      done
    done
    rm -f "${TMPDIR:-/tmp}/vitscale-fuzz-regress.$$"
    echo "$count inputs ran without a failure"
    ;;
  *)
    echo "usage: $0 fuzz|regress ..." >&2
    exit 2
    ;;
esac
