#!/usr/bin/env bash
# Checks longest.py's search logic on the CPU with fake trials (no GPU, no model): a fake bench_train that
# "trains" up to FAKE_LIMIT tokens (memory probes up to FAKE_PROBE_LIMIT, to exercise the fallback when a real
# step fails where the probe passed), and a fake baseline that trains up to FAKE_HF_LIMIT.
#   bench/train/test_longest.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/fake_bench" <<'FAKE'
#!/usr/bin/env bash
# fake bench_train: --length L [--split N]; first argument of the multi-word command is a dummy word
L=0; split=0
while [ $# -gt 0 ]; do case $1 in --length) L=$2; shift;; --split) split=$2; shift;; esac; shift; done
limit=${FAKE_LIMIT:?}; [ "$split" != 0 ] && limit=${FAKE_PROBE_LIMIT:-$FAKE_LIMIT}
[ -n "${FAKE_HANG_AT:-}" ] && [ "$L" = "$FAKE_HANG_AT" ] && sleep 100
if [ "$L" -le "$limit" ]; then
  echo "{\"system\": \"cotune-nf4\", \"setting\": \"single\", \"ok\": true, \"length\": $L, \"loss\": 11.93, \"step_s\": 1.0, \"peak_gib\": $((L / 4096)).5, \"gpu\": \"fake\"}"
else
  echo "{\"system\": \"cotune-nf4\", \"setting\": \"single\", \"ok\": false, \"length\": $L, \"oom\": true, \"phase\": \"allocating\", \"error\": \"GPU out of memory\"}"
  echo "bench_train: out of memory" >&2; exit 3
fi
FAKE
cat > "$tmp/fake_python" <<'FAKE'
#!/usr/bin/env bash
# fake python: ignores the script path, answers like hf_baseline.py --setting single
L=0; while [ $# -gt 0 ]; do case $1 in --length) L=$2; shift;; esac; shift; done
if [ "$L" -le "${FAKE_HF_LIMIT:?}" ]; then
  echo "{\"system\": \"hf-peft-bf16-sdpa\", \"setting\": \"single\", \"ok\": true, \"length\": $L, \"loss\": 11.9, \"step_s\": 0.5, \"peak_gib\": 40.0, \"gpu\": \"fake\"}"
else
  echo "{\"system\": \"hf-peft-bf16-sdpa\", \"setting\": \"single\", \"ok\": false, \"length\": $L, \"oom\": true, \"error\": \"OutOfMemoryError\"}"; exit 3
fi
FAKE
chmod +x "$tmp/fake_bench" "$tmp/fake_python"
fail() { echo "test_longest: FAIL: $*"; exit 1; }
check() {  # check NAME OUTPUT_DIR KEY EXPECTED
  local got; got=$(tail -1 "$tmp/$2/stdout" | python3 -c "import json,sys; print(json.load(sys.stdin)['$3'])")
  [ "$got" = "$4" ] || fail "$1: $3 = $got, expected $4"
  echo "test_longest: ok: $1: $3 = $got"
}
run() {  # run NAME ARGS...
  local name=$1; shift
  "$here/longest.sh" "$tmp/fake_bench" cfg.json "$tmp/$name" --python "$tmp/fake_python" "$@" > "$tmp/$name.stdout" 2>&1 || true
  mkdir -p "$tmp/$name"; mv "$tmp/$name.stdout" "$tmp/$name/stdout"
}
count() { grep -c . "$tmp/$1/trials.jsonl"; }

# 1. cotune up to 300,000 tokens (probes and real steps agree), HF up to 33,000.
FAKE_LIMIT=300000 FAKE_HF_LIMIT=33000 run basic
check basic basic cotune_max 294912
check basic basic hf_max 32768
check basic basic cotune_verified True
check basic basic ratio 9.0
# 294912 -> next multiple of 1024 tried above it must have failed, within 5%
check basic basic cotune_first_fail 303104
n=$(count basic); echo "test_longest: basic used $n trials"; [ "$n" -le 24 ] || fail "too many trials: $n"

# 2. A rerun reuses every trial.
FAKE_LIMIT=300000 FAKE_HF_LIMIT=33000 run basic
[ "$(count basic)" = "$n" ] || fail "rerun ran new trials"
grep -q "(cached)" "$tmp/basic/stdout" || fail "rerun did not report cached trials"
echo "test_longest: ok: rerun reuses $n trials"

# 3. Probes pass up to 300,000 but real steps only up to 200,000: the answer comes from real steps.
FAKE_LIMIT=200000 FAKE_PROBE_LIMIT=300000 FAKE_HF_LIMIT=33000 run fallback cotune
check fallback fallback cotune_max 198656
check fallback fallback cotune_verified True
grep -q "failed a real step" "$tmp/fallback/stdout" || fail "fallback not reported"

# 4. Everything passes: stops at the cap.
FAKE_LIMIT=99999999 FAKE_HF_LIMIT=99999999 run cap --cap 65536
check cap cap cotune_max 65536
check cap cap hf_max 65536

# 5. A hanging trial is killed by the timeout and counts as a failure; a multi-word BENCH_TRAIN works.
printf '#!/usr/bin/env bash\nshift; exec "%s" "$@"\n' "$tmp/fake_bench" > "$tmp/wrapper"; chmod +x "$tmp/wrapper"
FAKE_LIMIT=300000 FAKE_HANG_AT=131072 FAKE_HF_LIMIT=1 \
  "$here/longest.sh" "$tmp/wrapper fake_bench" cfg.json "$tmp/hang" cotune --timeout 2 --timeout-linear 0 \
  > "$tmp/hang.stdout" 2>&1 || true
mv "$tmp/hang.stdout" "$tmp/hang/stdout"
grep -q '"status": "timeout"' "$tmp/hang/trials.jsonl" || fail "no timeout recorded"
check hang hang cotune_max 126976
pgrep -f "sleep 100" >/dev/null && echo "test_longest: note: a sleep 100 still runs (not ours?)"
echo "test_longest: all passed"
