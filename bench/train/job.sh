#!/usr/bin/env bash
# The real command, not only bench_train (issue 19 f): `cotune train` of the guide's recipe from launch to saved
# adapter, beside the equivalent transformers + PEFT + bitsandbytes script (bench/train/hf_job.py), in one call.
#   bench/train/job.sh COTUNE MODEL_DIR RECORDS OUT_DIR [RECIPE] [--no-hf]
# MODEL_DIR: safetensors + tokenizer (e.g. the 1.5B-shaped model tools/make_fullshape_generate_golden.py writes);
# RECORDS: {Question, Complex_CoT, Response} records (tests/fixtures/medical-o1/...); RECIPE: recipes/medical-o1-en.toml.
# Rows (OUT_DIR/job.jsonl):
#   first_step_s  launch -> first optimizer step: `cotune train --max-steps 1`, whole process (load, NF4 on the GPU,
#                 one step, the one-step adapter written), an upper bound of the first step's time;
#   total_s       launch -> adapter saved, the whole --max-steps 60 job;
# and hf_job.py's own ready / first step / total, timed from its launch. The ratio is HF total / cotune total.
set -euo pipefail
cotune=$1; model=$2; records=$3; out=$4; recipe=${5:-recipes/medical-o1-en.toml}; hf=${6:-}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
: > "$out/job.jsonl"
now() { date +%s.%N; }
run_cotune() {  # steps tag
  local t0 t1
  t0=$(now)
  $cotune train --recipe "$recipe" --model "$model" --data "$records" --output "$out/cotune-$2" --max-steps "$1" \
    --report-to jsonl --overwrite-output > "$out/cotune-$2.log" 2>&1
  t1=$(now)
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$t1"
}
first=$(run_cotune 1 first)
total=$(run_cotune 60 job)
python3 - "$out" "$first" "$total" <<'PY' | tee -a "$out/job.jsonl"
import json, sys
out, first, total = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = [json.loads(l) for l in open(f"{out}/cotune-job/metrics.jsonl") if l.startswith("{")]
losses = [r["loss"] for r in rows if "loss" in r]
print(json.dumps({"system": "cotune", "steps": 60, "first_step_s": first, "total_s": total,
                  "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}))
PY
if [ "$hf" != "--no-hf" ]; then
  PYTHONUNBUFFERED=1 python3 "$here/hf_job.py" --model "$model" --data "$records" --out "$out/hf-job" --steps 60 \
    --launch-time "$(now)" 2> "$out/hf-job.log" | tee -a "$out/job.jsonl"
fi
python3 - "$out" <<'PY'
import json, sys
rows = {r["system"]: r for r in (json.loads(l) for l in open(f"{sys.argv[1]}/job.jsonl") if l.startswith("{"))}
c = rows["cotune"]
line = f"cotune: first step {c['first_step_s']:.2f} s after launch, 60-step job {c['total_s']:.2f} s"
if "hf-peft-bnb" in rows:
    h = rows["hf-peft-bnb"]
    line += (f" | HF + PEFT: first step {h['first_step_s']:.2f} s, job {h['total_s']:.2f} s"
             f" | cotune's job takes {c['total_s'] / h['total_s']:.3f} of HF's ({h['total_s'] / c['total_s']:.1f}x) | {h['gpu']}")
print(line)
PY
