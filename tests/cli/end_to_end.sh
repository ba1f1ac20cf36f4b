#!/usr/bin/env bash
# cotune end to end on the CPU: init-model, train (demo recipe, shortened), Ctrl-C-style stop + --resume,
# the adapter and report on disk, a GGUF export taken back by every model-taking command, a bad recipe key rejected, and the medical recipe on a 4-bit tiny base.
set -euo pipefail
cotune=$1; src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$cotune" init-model --output "$work/model" --preset demo --vocab-from recipes/data/demo_medical.jsonl >/dev/null
"$cotune" -q train --recipe recipes/demo.toml --model "$work/model" --output "$work/run" --max-steps 6 \
  --save-steps 2 --save-total-limit 2 --eval-steps 3 --data-cache false --sample-questions 2 \
  --sample-max-new-tokens 8 --save-merged true >/dev/null 2>"$work/log" || { cat "$work/log"; fail "demo train"; }
for f in adapter/adapter_config.json adapter/adapter_model.safetensors adapter/tokenizer.json checkpoint-4/optimizer.safetensors \
         checkpoint-6/trainer_state.json metrics.jsonl report/index.html report/loss.svg samples/report.html \
         merged/model.safetensors merged/config.json merged/tokenizer.json; do
  [ -s "$work/run/$f" ] || fail "missing $f"
done
[ ! -e "$work/run/checkpoint-2" ] || fail "save_total_limit 2 kept checkpoint-2"
[ "$(grep -c '"loss"' "$work/run/metrics.jsonl")" -eq 6 ] || fail "metrics.jsonl should hold 6 step records"
grep -q '"eval_loss"' "$work/run/metrics.jsonl" || fail "no eval_loss logged"
ls "$work/run/tb"/events.out.tfevents.* >/dev/null || fail "no TensorBoard event file"

# A GGUF file works wherever a model is taken: the merged model exported as F32 (exact for its 16-bit weights)
# answers every model-taking command as the folder does.
export XDG_CACHE_HOME="$work/cache"
"$cotune" -q export gguf --model "$work/run/merged" --type f32 -o "$work/m.gguf" >/dev/null 2>"$work/log" \
  || { cat "$work/log"; fail "export gguf"; }
"$cotune" inspect "$work/m.gguf" > "$work/inspect.txt" 2>"$work/log" || { cat "$work/log"; fail "inspect GGUF"; }
"$cotune" inspect "$work/run/merged" > "$work/inspect_dir.txt"
# The architecture part (lines 2-12: family, sizes, rope, eps, tying, biases) must be the folder's.
sed -n 2,12p "$work/inspect.txt" > "$work/a"; sed -n 2,12p "$work/inspect_dir.txt" > "$work/b"
cmp -s "$work/a" "$work/b" || fail "inspect of the GGUF differs from the folder's: $(diff "$work/a" "$work/b" | head -5)"
echo '{"text": "A 45-year-old man with chest pain"}' | "$cotune" tokenize --tokenizer "$work/m.gguf" > "$work/ids_gguf"
echo '{"text": "A 45-year-old man with chest pain"}' | "$cotune" tokenize --tokenizer "$work/run/merged" > "$work/ids_dir"
cmp -s "$work/ids_gguf" "$work/ids_dir" || fail "tokenize through the GGUF: $(cat "$work/ids_gguf") vs $(cat "$work/ids_dir")"
"$cotune" data stats --model "$work/m.gguf" --data recipes/data/demo_medical.jsonl --template medical-o1-en >/dev/null \
  2>"$work/log" || { cat "$work/log"; fail "data stats with a GGUF model"; }
for m in "$work/m.gguf" "$work/run/merged"; do
  "$cotune" generate --model "$m" --prompt "chest pain" --greedy --max-new-tokens 8 --json --device cpu 2>/dev/null \
    | tail -1 | grep -o '"ids":\[[0-9,]*\]' >> "$work/gen"
  "$cotune" forward --model "$m" --text "A 45-year-old man with chest pain" 2>/dev/null | tail -1 >> "$work/fwd"
done
[ "$(sort -u "$work/gen" | wc -l)" -eq 1 ] || fail "greedy ids from the GGUF differ from the folder's: $(cat "$work/gen")"
[ "$(sort -u "$work/fwd" | wc -l)" -eq 1 ] || fail "forward on the GGUF differs from the folder's: $(cat "$work/fwd")"
unset XDG_CACHE_HOME

# Stop after step 3 (by running 3 of 6 steps), resume, and compare with the straight run's adapter.
"$cotune" -q train --recipe recipes/demo.toml --model "$work/model" --output "$work/run2" --max-steps 6 \
  --save-steps 3 --eval-steps 3 --data-cache false >/dev/null 2>&1
rm -rf "$work/run2/checkpoint-6" "$work/run2/adapter"
"$cotune" -q train --recipe recipes/demo.toml --model "$work/model" --output "$work/run2" --max-steps 6 \
  --save-steps 3 --eval-steps 3 --data-cache false --resume >/dev/null 2>"$work/log" || { cat "$work/log"; fail "resume"; }
cmp -s "$work/run/adapter/adapter_model.safetensors" "$work/run2/adapter/adapter_model.safetensors" \
  || fail "resumed adapter differs from the straight run"

# A typo in a recipe is an error naming the key.
printf 'lora_rank = 8\n' > "$work/bad.toml"
if "$cotune" train --recipe "$work/bad.toml" --model "$work/model" --data recipes/data/demo_medical.jsonl 2>"$work/log"; then
  fail "unknown recipe key accepted"
fi
grep -q "lora_rank" "$work/log" || fail "error does not name the key: $(cat "$work/log")"

# Tuning keys: a bad value names the key; --verbose prints the tuning a run uses.
printf 'keep_attention = "sometimes"\n' > "$work/bad_tuning.toml"
if "$cotune" train --recipe "$work/bad_tuning.toml" --model "$work/model" --data recipes/data/demo_medical.jsonl \
  2>"$work/log"; then
  fail "keep_attention = sometimes accepted"
fi
grep -q "keep_attention must be auto, on or off" "$work/log" || fail "error does not name keep_attention: $(cat "$work/log")"
if "$cotune" train --recipe recipes/demo.toml --model "$work/model" --attention-split 1,2 2>"$work/log"; then
  fail "--attention-split 1,2 accepted"
fi
grep -q "attention_split must be three integers" "$work/log" || fail "error does not name attention_split: $(cat "$work/log")"
printf 'cuda_graphs = false\nattention_kernel = "simple"\n' > "$work/tuning.toml"
"$cotune" -v train --recipe "$work/tuning.toml" --model "$work/model" --data recipes/data/demo_medical.jsonl \
  --max-steps 1 --device cpu --output "$work/tuned" --data-cache false --keep-attention off --nf4-kernel v1 \
  --attention-split=-1,8,-1 >/dev/null 2>"$work/log" || { cat "$work/log"; fail "train with tuning keys"; }
grep -q "kernel tuning: attention simple, split fwd auto dq 8 dkdv auto, dS kept up to 128 MiB, ce current, nf4 v1" \
  "$work/log" || fail "--verbose does not show the kernel tuning: $(grep -i tuning "$work/log")"
grep -q "runner tuning: CUDA graphs off, keep attention off" "$work/log" || fail "--verbose does not show the runner tuning"

# The guide's recipe, as written, on a tiny 4-bit base for one step.
"$cotune" -q train --recipe recipes/medical-o1-zh.toml --model "$work/model" --data recipes/data/demo_medical.jsonl \
  --data-config "" --selection "train[0:8]" --max-steps 1 --device cpu --output "$work/med" --data-cache false \
  >/dev/null 2>"$work/log" || { cat "$work/log"; fail "medical recipe"; }
[ -s "$work/med/adapter/adapter_model.safetensors" ] || fail "medical recipe wrote no adapter"
echo "1 passed, 0 failed"
