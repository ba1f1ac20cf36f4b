#!/usr/bin/env bash
# Issue 8's check that the 4-bit path trains: the demo recipe (60 steps) on the GPU with a bf16 base and with an
# NF4 base (--load-in-4bit true): both loss curves fall, and the NF4 curve stays close to the bf16 one (every
# logged loss within 5%, the final loss within 3%; NF4 rounds every projection weight by up to ~1/16 of its
# block's absmax, so the curves are close, not equal).
set -euo pipefail
read -ra cotune <<< "$1"  # a command, possibly with a wrapper (".gpu/run cotune")
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src"
"${cotune[@]}" init-model --output "$work/model" --preset demo --vocab-from recipes/data/demo_medical.jsonl >/dev/null
for q in false true; do
  "${cotune[@]}" -q train --recipe recipes/demo.toml --model "$work/model" --output "$work/nf4-$q" --device cuda \
    --load-in-4bit $q --data-cache false --report-to jsonl >/dev/null 2>"$work/nf4-$q.log" || { cat "$work/nf4-$q.log"; exit 1; }
done
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
load = lambda d: [json.loads(l) for l in open(f"{w}/{d}/metrics.jsonl") if '"loss"' in l]
bf16, nf4 = load("nf4-false"), load("nf4-true")
assert len(bf16) == len(nf4) == 60, (len(bf16), len(nf4))
worst = max(abs(q["loss"] - b["loss"]) / b["loss"] for b, q in zip(bf16, nf4))
final = abs(nf4[-1]["loss"] - bf16[-1]["loss"]) / bf16[-1]["loss"]
falls = all(c[-1]["loss"] < 0.9 * c[0]["loss"] for c in (bf16, nf4))
print(f"loss bf16 {bf16[0]['loss']:.4f} -> {bf16[-1]['loss']:.4f}, nf4 {nf4[0]['loss']:.4f} -> {nf4[-1]['loss']:.4f}; "
      f"worst step rel diff {worst:.4f}, final {final:.4f}")
sys.exit(0 if falls and worst < 0.05 and final < 0.03 else 1)
PY
