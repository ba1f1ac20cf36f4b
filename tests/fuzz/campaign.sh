#!/usr/bin/env bash
# A longer fuzzing campaign (tests/fuzz/README.md): every target in turn, niced, for SECONDS each, with a
# persistent corpus outside the repository (CORPUS_DIR/<target>, seeded from tests/fuzz/corpus/<target>).
# Prints per target: CPU seconds (user + sys), executions, new corpus size, and any crash/oom/leak/timeout
# inputs (written to CORPUS_DIR/artifacts/). Add each crash input to tests/fuzz/corpus/<target>/ once fixed.
# With --parallel every target runs at once (one process each, a machine with as many cores as targets), so a
# many-core machine gives each target SECONDS of CPU in SECONDS of wall time; the lines come in target order.
# With --fork N each target runs N libFuzzer workers (-fork=N, one shared corpus): --parallel --fork 12 on a
# 128-core machine gives each of the ten targets 12 CPU-seconds a second. cpu_s counts the workers too.
#   tests/fuzz/campaign.sh [--parallel] [--fork N] BUILD_DIR SECONDS [CORPUS_DIR] [targets...]
set -uo pipefail
parallel=0; fork=0
while [ $# -gt 0 ]; do
  case $1 in
    --parallel) parallel=1; shift ;;
    --fork) fork=$2; shift 2 ;;
    *) break ;;
  esac
done
build=$(realpath "$1")
cd "$(dirname "$0")/../.."
build=$build; seconds=$2; corpus=${3:-/tmp/cotune-fuzz-corpus}; shift 2; [ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || read -r -a targets <<<"$(sed -n 's/^set(fuzz_targets \(.*\))$/\1/p' tests/fuzz/CMakeLists.txt)"
mkdir -p "$corpus/artifacts"
TIMEFORMAT='%U %S'
run_one() {  # target
  local t=$1 log cpu execs
  mkdir -p "$corpus/$t"
  log="$corpus/$t.log"
  local extra=()
  [ "$fork" -gt 0 ] && extra=(-fork="$fork")
  cpu=$( { time nice -n 19 "$build/fuzz/fuzz_$t" "${extra[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 \
            -print_final_stats=1 -artifact_prefix="$corpus/artifacts/$t-" "$corpus/$t" "tests/fuzz/corpus/$t" \
            >"$log" 2>&1; } 2>&1 )
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # -fork: the parent prints no final stats; its last status line "#N: cov: ..." counts every worker's executions.
  [ -z "$execs" ] && execs=$(sed -n 's/^#\([0-9][0-9]*\): .*/\1/p' "$log" | tail -1)
  echo "$t: cpu_s $(echo "$cpu" | awk '{print $1 + $2}') execs ${execs:-?} corpus $(ls "$corpus/$t" | wc -l) artifacts $(ls "$corpus/artifacts" | grep -c "^$t-")"
}
if [ $parallel = 1 ]; then
  for t in "${targets[@]}"; do run_one "$t" > "$corpus/$t.summary" & done
  wait
  for t in "${targets[@]}"; do cat "$corpus/$t.summary"; done
else
  for t in "${targets[@]}"; do run_one "$t"; done
fi
