#!/usr/bin/env bash
# Batch-1 decode: cotune (fused step with and without programmatic dependent launch, and the unfused step; bf16 and
# NF4) and transformers generate, in one invocation on this GPU, then the bandwidth-bound summary.
#   bench/decode/run.sh "BENCH_DECODE" OUT_DIR [--no-hf]
# (On the GPU machine BENCH_DECODE is ".gpu/run bench_decode"; see bench/decode/README.md.)
set -euo pipefail
bin=$1; out=$2; hf=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
: > "$out/cotune.jsonl"
for cfg in "--fused 1 --pdl 1" "--fused 1 --pdl 0" "--fused 0"; do
  $bin --device cuda $cfg | tee -a "$out/cotune.jsonl"
done
if [ "$hf" != "--no-hf" ]; then
  PYTHONUNBUFFERED=1 python3 "$here/hf_generate.py" | tee "$out/hf.json"
fi
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/cotune.jsonl") if l.startswith("{")]
hf = json.load(open(f"{out}/hf.json")) if os.path.exists(f"{out}/hf.json") else None
for r in rows:
    name = f'{r["mode"]:4s} fused={str(r["fused"]).lower():5s} pdl={str(r["pdl"]).lower():5s}'
    line = f'cotune {name}: {r["tok_s"]:7.1f} tok/s (runs {r["runs_tok_s"]})'
    if hf:
        line += f' | {100 * r["tok_s"] / hf["bound_tok_s"]:5.1f}% of the bf16 bound {hf["bound_tok_s"]}'
        line += f' | {r["tok_s"] / hf["hf_generate_default_tok_s"]:5.1f}x transformers'
    print(line)
best = {m: max((r["tok_s"] for r in rows if r["mode"] == m), default=0) for m in ("bf16", "nf4")}
print(f'best bf16 {best["bf16"]:.1f} tok/s, best nf4 {best["nf4"]:.1f} tok/s: nf4 {"faster" if best["nf4"] > best["bf16"] else "NOT faster"} than bf16')
if hf:
    print(f'transformers generate: {hf["hf_generate_default_tok_s"]} tok/s; copy {hf["copy_GBps"]} GB/s, '
          f'{hf["weight_bytes_per_token_GB"]} GB a token, bound {hf["bound_tok_s"]} tok/s; {hf["gpu"]}')
PY
