#!/usr/bin/env bash
# Two cotune builds (e.g. main and a refactoring branch) train the demo recipe on the GPU from the same random model
# and data, with a bf16 base and with an NF4 base (60 steps each), and must log the same losses and gradient norms
# bit for bit (metrics.jsonl's values, printed by both with full precision): a move of code that changes no numerics.
#   same_numbers.sh COTUNE_A COTUNE_B SOURCE_DIR   (each COTUNE may be a command with a wrapper: ".gpu/run cotune")
# DEVICE=cpu (default cuda) and MAX_STEPS=N (default: the recipe's 60) make a quick CPU check of the same.
set -euo pipefail
device=${DEVICE:-cuda}
steps=()
if [ -n "${MAX_STEPS:-}" ]; then steps=(--max-steps "$MAX_STEPS"); fi
read -ra cotune_a <<< "$1"
read -ra cotune_b <<< "$2"
src=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src"
"${cotune_a[@]}" init-model --output "$work/model" --preset demo --vocab-from recipes/data/demo_medical.jsonl >/dev/null
for base in "bf16 false" "nf4 true"; do
  read -r name four <<< "$base"
  for side in a b; do
    if [ "$side" = a ]; then cmd=("${cotune_a[@]}"); else cmd=("${cotune_b[@]}"); fi
    "${cmd[@]}" -q train --recipe recipes/demo.toml --model "$work/model" --output "$work/$name-$side" --device "$device" \
      --load-in-4bit "$four" --data-cache false --report-to jsonl "${steps[@]}" >/dev/null 2>"$work/$name-$side.log" \
      || { cat "$work/$name-$side.log"; exit 1; }
  done
  python3 - "$work/$name-a/metrics.jsonl" "$work/$name-b/metrics.jsonl" "$name" <<'PY'
import json, sys
a, b, name = sys.argv[1], sys.argv[2], sys.argv[3]
keys = ("loss", "grad_norm", "mean_token_accuracy")
load = lambda f: [{k: r[k] for k in keys if k in r} for r in map(json.loads, open(f)) if "loss" in r]
ra, rb = load(a), load(b)
diff = [i for i, (x, y) in enumerate(zip(ra, rb)) if x != y]
print(f"{name}: {len(ra)} vs {len(rb)} logged steps, {len(diff)} differ"
      + (f" (first: step {diff[0] + 1}: {ra[diff[0]]} vs {rb[diff[0]]})" if diff else ", bit-identical"))
sys.exit(0 if ra and len(ra) == len(rb) and not diff else 1)
PY
done
