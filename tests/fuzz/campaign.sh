#!/usr/bin/env bash
# A longer fuzzing campaign (tests/fuzz/README.md): every target in turn, niced, for SECONDS each, with a
# persistent corpus outside the repository (CORPUS_DIR/<target>, seeded from tests/fuzz/corpus/<target>).
# Prints per target: CPU seconds (user + sys), executions, new corpus size, and any crash/oom/leak/timeout
# inputs (written to CORPUS_DIR/artifacts/). Add each crash input to tests/fuzz/corpus/<target>/ once fixed.
#   tests/fuzz/campaign.sh BUILD_DIR SECONDS [CORPUS_DIR] [targets...]
set -uo pipefail
cd "$(dirname "$0")/../.."
build=$1; seconds=$2; corpus=${3:-/tmp/cotune-fuzz-corpus}; shift 2; [ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || read -r -a targets <<<"$(sed -n 's/^set(fuzz_targets \(.*\))$/\1/p' tests/fuzz/CMakeLists.txt)"
mkdir -p "$corpus/artifacts"
TIMEFORMAT='%U %S'
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t"
  log="$corpus/$t.log"
  cpu=$( { time nice -n 19 "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 \
            -print_final_stats=1 -artifact_prefix="$corpus/artifacts/$t-" "$corpus/$t" "tests/fuzz/corpus/$t" \
            >"$log" 2>&1; } 2>&1 )
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "$t: cpu_s $(echo "$cpu" | awk '{print $1 + $2}') execs ${execs:-?} corpus $(ls "$corpus/$t" | wc -l) artifacts $(ls "$corpus/artifacts" | grep -c "^$t-")"
done
