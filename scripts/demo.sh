#!/usr/bin/env bash
# The demo: make a tiny random Qwen2 model with its own byte-level BPE tokenizer (trained on the demo
# data), fine-tune a LoRA adapter on the project's demo medical dataset on the CPU, and show the report.
#   scripts/demo.sh [PATH/TO/cotune]
set -euo pipefail
cd "$(dirname "$0")/.."
cotune=${1:-build/bin/cotune}
"$cotune" init-model --output runs/demo-model --preset demo --vocab-from recipes/data/demo_medical.jsonl
"$cotune" forward --model runs/demo-model
rm -rf runs/demo
"$cotune" train --recipe recipes/demo.toml
echo
echo "adapter:  runs/demo/adapter   (PEFT format: adapter_config.json + adapter_model.safetensors)"
echo "metrics:  runs/demo/metrics.jsonl, TensorBoard: tensorboard --logdir runs/demo/tb"
echo "report:   runs/demo/report/index.html"
