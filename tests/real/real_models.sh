#!/usr/bin/env bash
# Real GGUF weights (scripts/real-models.sh) through cotune:
#   generate  greedy ids from the imported SmolLM2-135M (Q4_1, Llama) and Qwen2.5-Coder-1.5B (Q4_K_M, Qwen2) equal
#             transformers' on the same dequantized weights (tests/golden/real, tools/make_real_gguf_golden.py)
#   lora      a CPU LoRA run of SmolLM2 on the medical records (recipes/smollm2-medical.toml) lowers the loss and
#             writes before/after answers that are real text
#   real_models.sh COTUNE REPO_ROOT generate|lora
set -euo pipefail
cotune=$1
root=$2
what=$3
models=$root/models/real
smol=$models/smollm2-135m-instruct-q4_1.gguf
qwen=$models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
if [[ ! -f $smol || ! -f $qwen ]]; then
  echo "skipped: the real models are not there (run scripts/real-models.sh)"
  exit 77
fi
export XDG_CACHE_HOME=$models/cache  # the converted folders live beside the GGUFs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check_generate() {  # GGUF GOLDEN
  local gguf=$1 golden=$2
  python3 - "$golden" > "$work/prompt.txt" <<'PY'
import json, sys
sys.stdout.write(json.load(open(sys.argv[1]))["prompt"])
PY
  local n
  n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["ids"]))' "$golden")
  # $(...) drops trailing newlines (the chat prompts end in one): keep them with a sentinel.
  local prompt
  prompt=$(cat "$work/prompt.txt"; echo x)
  prompt=${prompt%x}
  "$cotune" generate --model "$gguf" --prompt "$prompt" --greedy --json --max-new-tokens "$n" \
    --device cpu > "$work/out.json"
  python3 - "$golden" "$work/out.json" <<'PY'
import json, sys
want = json.load(open(sys.argv[1]))
got = json.loads(open(sys.argv[2]).read().splitlines()[-1])
print("cotune:      ", repr(got["text"]))
print("transformers:", repr(want["text"]))
# transformers' output ends with the EOS id when generation stopped there; cotune's ids stop before it.
want_ids = want["ids"]
if len(want_ids) == len(got["ids"]) + 1 and want_ids[:-1] == got["ids"]:
    want_ids = want_ids[:-1]
if got["ids"] != want_ids:
    n = next((i for i, (a, b) in enumerate(zip(got["ids"], want["ids"])) if a != b), min(len(got["ids"]), len(want["ids"])))
    sys.exit(f"{want['model']}: greedy ids differ from transformers at token {n}: {got['ids']} vs {want['ids']}")
print(f"{want['model']}: {len(got['ids'])} greedy tokens equal transformers'")
PY
}

case $what in
  generate)
    check_generate "$smol" "$root/tests/golden/real/smollm2.json"
    check_generate "$qwen" "$root/tests/golden/real/qwen2.5.json"
    ;;
  lora)
    cd "$root"
    "$cotune" train --recipe recipes/smollm2-medical.toml --output "$work/run" --report-to jsonl
    python3 - "$work/run" <<'PY'
import json, os, sys
run = sys.argv[1]
losses = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
train = [r["loss"] for r in losses if "loss" in r and r.get("split", "train") == "train"]
first, last = sum(train[:3]) / 3, sum(train[-3:]) / 3
print(f"loss {first:.3f} (first 3 logged) -> {last:.3f} (last 3)")
if not last < first - 0.1:
    sys.exit("the loss did not fall")
samples = os.path.join(run, "samples")
files = os.listdir(samples)
print("samples:", files)
text = open(os.path.join(samples, [f for f in files if f.endswith(".html")][0]), encoding="utf-8").read()
words = sum(c.isalpha() for c in text)
if words < 200:
    sys.exit("the before/after report holds no real text")
PY
    ;;
  *) echo "unknown check $what" >&2; exit 2 ;;
esac
