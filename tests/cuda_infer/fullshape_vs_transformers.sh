#!/usr/bin/env bash
# Issue 14.1 on the GPU machine: transformers makes a random model of the full DeepSeek-R1-Distill-Qwen-1.5B shape,
# an adapter and greedy goldens (tools/make_fullshape_generate_golden.py: base bf16, fp32, adapter, NF4), then
# test_cuda_infer's FullShapeGenerate tests compare cotune's per-step logits and greedy ids with them.
#   fullshape_vs_transformers.sh TEST_BINARY SOURCE_DIR [WORK_DIR]   (TEST_BINARY may be ".gpu/run test_cuda_infer")
# FULLSHAPE_PROMPTS=N uses the first N of the golden script's five prompts (a shorter run).
set -euo pipefail
read -ra test_bin <<< "$1"
src=$2
work=${3:-}
if [ -z "$work" ]; then work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
if [ ! -f "$work/golden.safetensors" ]; then
  python3 "$src/tools/make_fullshape_generate_golden.py" --fixtures "$src/tests/fixtures/deepseek-r1-distill-qwen-1.5b" \
    --out "$work" ${FULLSHAPE_PROMPTS:+--prompts "$FULLSHAPE_PROMPTS"}
fi
COTUNE_FULLSHAPE_DIR="$work" "${test_bin[@]}" --gtest_filter='FullShapeGenerate.*'
