#!/usr/bin/env bash
# The demo recipe (60 steps) on the GPU and on the CPU: the loss curves must track each other
# (bf16 vs fp32: every logged loss within 3%, the final loss within 2%).
set -euo pipefail
read -ra cotune <<< "$1"  # a command, possibly with a wrapper (".gpu/run cotune")
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src"
"${cotune[@]}" init-model --output "$work/model" --preset demo --vocab-from recipes/data/demo_medical.jsonl >/dev/null
for d in cpu cuda; do
  "${cotune[@]}" -q train --recipe recipes/demo.toml --model "$work/model" --output "$work/$d" --device $d \
    --data-cache false --report-to jsonl >/dev/null 2>"$work/$d.log" || { cat "$work/$d.log"; exit 1; }
done
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
load = lambda d: [json.loads(l) for l in open(f"{w}/{d}/metrics.jsonl") if '"loss"' in l]
cpu, gpu = load("cpu"), load("cuda")
assert len(cpu) == len(gpu) == 60, (len(cpu), len(gpu))
worst = max(abs(g["loss"] - c["loss"]) / c["loss"] for c, g in zip(cpu, gpu))
final = abs(gpu[-1]["loss"] - cpu[-1]["loss"]) / cpu[-1]["loss"]
print(f"loss cpu {cpu[0]['loss']:.4f} -> {cpu[-1]['loss']:.4f}, gpu {gpu[0]['loss']:.4f} -> {gpu[-1]['loss']:.4f}; "
      f"worst step rel diff {worst:.4f}, final {final:.4f}")
sys.exit(0 if worst < 0.03 and final < 0.02 else 1)
PY
