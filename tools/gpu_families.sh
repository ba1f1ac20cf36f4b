#!/usr/bin/env bash
# The decoder families at their real shapes on the GPU machine: one bf16 LoRA step of transformers + peft against
# cotune's step_dump (tools/compare_hf_step.py: loss within 1e-2, every LoRA gradient norm within 5e-2), random
# weights, LAYERS decoder layers (default 2: the per-layer math and every width are the real ones; the depth only
# multiplies). Shapes: Qwen2.5-7B (q/k/v bias, rope 1e6), Llama-3.1-8B (rope llama3), Llama-3.2-1B (tied, llama3
# x32, head_dim 64), Qwen3-8B and Qwen3-4B (q/k norm; 4B: head_dim 128 != 2560 / 32, tied), Mistral-7B-v0.3.
#
#   bash tools/gpu_families.sh BUILD_DIR [WORK_DIR] [LAYERS]     (BUILD_DIR: a CUDA build with bench/train/step_dump)
# Needs python3 with torch (CUDA), transformers and peft. Prints one JSON line and PASS/FAIL per family; exits 1
# if any failed.
set -u
build=${1:?usage: gpu_families.sh BUILD_DIR [WORK_DIR] [LAYERS]}
work=${2:-/tmp/cotune_gpu_families}
layers=${3:-2}
here=$(cd "$(dirname "$0")" && pwd)
step_dump=$(find "$build" -name step_dump -type f -perm -u+x | head -1)
[ -n "$step_dump" ] || { echo "no step_dump under $build (cmake --build $build --target step_dump)"; exit 2; }
mkdir -p "$work"

write_config() {  # name json
  printf '%s\n' "$2" | sed "s/LAYERS/$layers/" > "$work/$1.json"
}
write_config qwen25_7b '{"model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
  "num_hidden_layers": LAYERS, "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 32768,
  "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": false}'
write_config llama31_8b '{"model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
  "num_hidden_layers": LAYERS, "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
  "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "attention_bias": false, "mlp_bias": false,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192}}'
write_config llama32_1b '{"model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
  "num_hidden_layers": LAYERS, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
  "max_position_embeddings": 131072, "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": true,
  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192}}'
write_config qwen3_8b '{"model_type": "qwen3", "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,
  "num_hidden_layers": LAYERS, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
  "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": false,
  "attention_bias": false}'
write_config qwen3_4b '{"model_type": "qwen3", "vocab_size": 151936, "hidden_size": 2560, "intermediate_size": 9728,
  "num_hidden_layers": LAYERS, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
  "max_position_embeddings": 40960, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": true,
  "attention_bias": false}'
write_config mistral_7b '{"model_type": "mistral", "vocab_size": 32768, "hidden_size": 4096, "intermediate_size": 14336,
  "num_hidden_layers": LAYERS, "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 32768,
  "rope_theta": 1000000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "sliding_window": null}'

failed=0
for name in qwen25_7b llama31_8b llama32_1b qwen3_8b qwen3_4b mistral_7b; do
  echo "== $name ($layers layers)"
  python3 "$here/compare_hf_step.py" --config "$work/$name.json" --step-dump "$step_dump" --work "$work/$name" \
    || failed=1
  rm -rf "$work/$name/model"  # GBs of random weights
done
exit $failed
