#!/usr/bin/env bash
# The demo recipe (60 steps) run twice, and the two loss curves compared:
#   cpu-vs-gpu   the GPU (bf16) against the CPU (fp32): every logged loss within 3%, the final loss within 2%;
#   nf4-vs-bf16  the GPU with an NF4 base (--load-in-4bit true) against a bf16 base (issue 8: the 4-bit path
#                trains): both curves fall by 10% or more, every logged loss within 5%, the final within 3% (NF4
#                rounds every projection weight by up to ~1/16 of its block's absmax: close, not equal).
#   demo_curves.sh COTUNE SOURCE_DIR MODE   (COTUNE may be a command with a wrapper: ".gpu/run cotune")
set -euo pipefail
read -ra cotune <<< "$1"
src=$2
mode=$3
case $mode in
  cpu-vs-gpu) runs=("cpu --device cpu" "cuda --device cuda"); worst_max=0.03; final_max=0.02 ;;
  nf4-vs-bf16) runs=("bf16 --device cuda --load-in-4bit false" "nf4 --device cuda --load-in-4bit true"); worst_max=0.05; final_max=0.03 ;;
  *) echo "demo_curves.sh: MODE must be cpu-vs-gpu or nf4-vs-bf16, got '$mode'" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src"
"${cotune[@]}" init-model --output "$work/model" --preset demo --vocab-from recipes/data/demo_medical.jsonl >/dev/null
names=()
for r in "${runs[@]}"; do
  read -ra args <<< "$r"
  name=${args[0]}
  names+=("$name")
  "${cotune[@]}" -q train --recipe recipes/demo.toml --model "$work/model" --output "$work/$name" "${args[@]:1}" \
    --data-cache false --report-to jsonl >/dev/null 2>"$work/$name.log" || { cat "$work/$name.log"; exit 1; }
done
python3 - "$work" "${names[0]}" "${names[1]}" "$worst_max" "$final_max" <<'PY'
import json, sys
w, ref_name, name, worst_max, final_max = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
load = lambda d: [json.loads(l) for l in open(f"{w}/{d}/metrics.jsonl") if '"loss"' in l]
ref, got = load(ref_name), load(name)
assert len(ref) == len(got) == 60, (len(ref), len(got))
worst = max(abs(g["loss"] - r["loss"]) / r["loss"] for r, g in zip(ref, got))
final = abs(got[-1]["loss"] - ref[-1]["loss"]) / ref[-1]["loss"]
falls = all(c[-1]["loss"] < 0.9 * c[0]["loss"] for c in (ref, got))
print(f"loss {ref_name} {ref[0]['loss']:.4f} -> {ref[-1]['loss']:.4f}, {name} {got[0]['loss']:.4f} -> {got[-1]['loss']:.4f}; "
      f"worst step rel diff {worst:.4f}, final {final:.4f}")
sys.exit(0 if falls and worst < worst_max and final < final_max else 1)
PY
