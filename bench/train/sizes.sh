#!/usr/bin/env bash
# cotune's training benchmark at the family's larger shapes (issue 20 item 3), and at 8B beside Unsloth.
#   bench/train/sizes.sh BENCH_TRAIN OUT_DIR [SIZES] [UNSLOTH_KIT] [BENCH_TRAIN ARGS...]
# SIZES: a comma list of 7b, 8b, 14b, 32b (default all), the configs in bench/train/configs/:
#   7b  DeepSeek-R1-Distill-Qwen-7B (Qwen2.5-7B's shape)     8b  DeepSeek-R1-Distill-Llama-8B (Llama-3.1-8B's)
#   14b DeepSeek-R1-Distill-Qwen-14B                         32b DeepSeek-R1-Distill-Qwen-32B
# Each: random weights drawn on the GPU, NF4 base + 8-bit AdamW, LoRA r=16 on the 7 projections, checkpointing;
# the guide setting (batch 1 x accumulation 4, the 40 lengths bench_train draws) and packed 4 x 2048. Rows: one
# JSON line per setting (tokens/s, MFU, peak GiB as total - free, the memory plan, load_s: the model's build).
# UNSLOTH_KIT (the kit folder, setup.sh run): Unsloth NF4 on the 8B shape with the same lengths, right after cotune's
# 8B rows on the same GPU (bench/train/unsloth_shape.py), then the side-by-side ratio. Further arguments go to every
# bench_train (e.g. --keep-attention off --ce-chunk 256: cotune's least memory) and name the rows' files (OUT_DIR/TAG).
set -uo pipefail
bin=$1; out=$2; sizes=${3:-7b,8b,14b,32b}; kit=${4:-}; shift $(( $# < 4 ? $# : 4 )); extra=("$@")
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
declare -A cfg=([7b]=r1-distill-qwen-7b [8b]=r1-distill-llama-8b [14b]=r1-distill-qwen-14b [32b]=r1-distill-qwen-32b)
rc=0
for s in ${sizes//,/ }; do
  c=${cfg[$s]:-}
  [ -n "$c" ] || { echo "sizes.sh: unknown size $s (7b, 8b, 14b, 32b)" >&2; exit 2; }
  echo "--- cotune $s ($c) $(date +%T)"
  $bin --config "$here/configs/$c.json" --setting both --json --4bit --optim adamw8bit \
    --lengths-out "$out/lengths.json" "${extra[@]}" | tee "$out/cotune_$s.jsonl" || rc=1
  if [ "$s" = 8b ] && [ -n "$kit" ]; then
    echo "--- unsloth $s ($c) $(date +%T)"
    python3 "$here/unsloth_shape.py" --kit "$kit" --config "$here/configs/$c.json" --lengths "$out/lengths.json" \
      --out "$out/unsloth_$s.jsonl" || rc=1
  fi
done
python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def rows(f): return [json.loads(l) for l in open(f) if l.startswith("{")]
for f in sorted(glob.glob(f"{out}/cotune_*.jsonl")):
    size = os.path.basename(f)[len("cotune_"):-len(".jsonl")]
    uns = {}
    if os.path.exists(f"{out}/unsloth_{size}.jsonl"):
        uns = {r["setting"]: r for r in rows(f"{out}/unsloth_{size}.jsonl") if r.get("ok")}
    for r in rows(f):
        if not r.get("ok", True):
            print(f"{size:4s} {r.get('setting', '?'):6s}: FAILED {r.get('error', '')}")
            continue
        line = (f"{size:4s} {r['setting']:6s} keep_attention {r.get('keep_attention', 'auto'):4s}: {r['tokens_per_s']:8.0f} tok/s | MFU {100 * r['mfu']:.1f}% | "
                f"peak {r['peak_gib']:.2f} GiB | build {r.get('load_s', 0):.1f} s | {r['gpu']}")
        u = uns.get(r["setting"])
        if u:
            line += (f" || Unsloth {u['tokens_per_s']:.0f} tok/s, {u['peak_gib']:.2f} GiB: "
                     f"{r['tokens_per_s'] / u['tokens_per_s']:.2f}x speed, memory {r['peak_gib'] / u['peak_gib']:.2f}x")
        print(line)
PY
exit $rc
