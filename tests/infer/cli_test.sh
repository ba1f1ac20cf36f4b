#!/usr/bin/env bash
# cotune generate / eval end to end on a tiny demo model: JSON lines with the documented keys, a streamed answer,
# seeded sampling reproducible, bad arguments rejected, and the eval report files.
#   cli_test.sh COTUNE_BINARY SOURCE_DIR
set -euo pipefail
cotune=$1; src=$2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
"$cotune" init-model --preset demo --vocab-from "$src/recipes/data/demo_medical.jsonl" --output "$dir/model" >/dev/null

out=$("$cotune" generate --model "$dir/model" --prompt "Fever and a rash" --max-new-tokens 12 --greedy --json)
echo "$out" | grep -q '^{"prompt":.*,"text":.*,"ids":\[.*\],"prompt_tokens":[0-9]*,"tokens_per_s":[0-9.e+-]*}$'
if command -v python3 >/dev/null; then python3 - "$out" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
assert list(j) == ["prompt", "text", "ids", "prompt_tokens", "tokens_per_s"], list(j)
assert len(j["ids"]) == 12 and j["prompt"] == "Fever and a rash"
PY
fi

head -3 "$src/recipes/data/demo_medical.jsonl" > "$dir/q.jsonl"
n=$("$cotune" generate --model "$dir/model" --template medical-o1-en --questions "$dir/q.jsonl" --max-new-tokens 5 --json | wc -l)
[ "$n" = 3 ] || { echo "expected 3 JSON lines, got $n"; exit 1; }

a=$("$cotune" generate --model "$dir/model" --prompt "Cough" --max-new-tokens 10 --seed 7 --temperature 1.2 2>/dev/null)
b=$("$cotune" generate --model "$dir/model" --prompt "Cough" --max-new-tokens 10 --seed 7 --temperature 1.2 2>/dev/null)
[ "$a" = "$b" ] || { echo "same seed, different text"; exit 1; }

if "$cotune" generate --model "$dir/model" --max-new-tokens 3 2>/dev/null; then echo "no prompt accepted"; exit 1; fi
if "$cotune" generate --model "$dir/model" --prompt x --top-p 2 2>/dev/null; then echo "top-p 2 accepted"; exit 1; fi

"$cotune" eval --model "$dir/model" --data "$src/recipes/data/demo_medical.jsonl" --template medical-o1-en \
  --selection "train[0:4]" --sample-questions 2 --max-new-tokens 8 --greedy --output "$dir/eval" >/dev/null 2>&1
for f in eval.json report.md report.html; do [ -s "$dir/eval/$f" ] || { echo "missing $f"; exit 1; }; done
grep -q "Held-out loss" "$dir/eval/report.md"
echo "infer cli ok"
