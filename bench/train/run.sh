#!/usr/bin/env bash
# Runs cotune's bench_train and the HF + PEFT baseline side by side on this GPU and prints the ratios.
#   bench/train/run.sh BENCH_TRAIN_BINARY CONFIG_JSON OUT_DIR
# (On the GPU machine: .gpu/run bench_train ... is the binary; see bench/train/README.md.)
# Rows: cotune NF4 + 8-bit AdamW (guide, packed), cotune bf16 + AdamW (guide, packed), cotune NF4 + 8-bit AdamW
# packed without checkpointing (issue 8 b lets cotune choose its checkpointing while its memory stays under the
# baseline's), then the baseline (guide, packed; checkpointing on).
set -euo pipefail
bin=$1; config=$2; out=$3
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
$bin --config "$config" --setting both --json --4bit --optim adamw8bit --lengths-out "$out/lengths.json" | tee "$out/cotune_nf4.jsonl"
$bin --config "$config" --setting both --json --optim adamw | tee "$out/cotune_bf16.jsonl"
$bin --config "$config" --setting packed --json --4bit --optim adamw8bit --no-checkpointing | tee "$out/cotune_nf4_nockpt.jsonl"
# HF_ARGS: extra hf_baseline.py arguments (for a CPU test of this script: HF_ARGS="--device cpu --steps 1 --warmup 0"
# with BENCH_TRAIN_BINARY "bench_train --device cpu --steps 1 --warmup 0").
PYTHONUNBUFFERED=1 python3 "$here/hf_baseline.py" --config "$config" --lengths "$out/lengths.json" ${HF_ARGS:-} | tee "$out/hf.jsonl"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = lambda f: [json.loads(l) for l in open(f"{out}/{f}") if l.startswith("{")]
hf = {r["setting"]: r for r in rows("hf.jsonl")}
for name in ("cotune_nf4.jsonl", "cotune_bf16.jsonl", "cotune_nf4_nockpt.jsonl"):
    for r in rows(name):
        b = hf.get(r["setting"])
        if not b: continue
        ckpt = "ckpt" if r.get("grad_ckpt", True) else "no ckpt"
        mem = f'{r["peak_gib"]/b["peak_gib"]:.2f}x' if b["peak_gib"] > 0 else "n/a"
        print(f'{r["system"]:12s} {r["setting"]:6s} {ckpt:7s}: {r["tokens_per_s"]:9.0f} tok/s vs HF {b["tokens_per_s"]:8.0f} '
              f'= {r["tokens_per_s"]/b["tokens_per_s"]:.2f}x | memory {r["peak_gib"]:.2f} vs {b["peak_gib"]:.2f} GiB '
              f'= {mem} | MFU {100*r["mfu"]:.1f}% ({100*r["mfu_datasheet"]:.1f}% of datasheet) | {r["gpu"]}')
PY
