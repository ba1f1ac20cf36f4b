#!/usr/bin/env bash
# The guide without Python, against the loopback fake Hub: from an empty cache, `cotune train --recipe
# recipes/medical-o1-zh.toml` downloads the model (a tiny one from init-model, served under the guide's name) and
# the zh config of a fake medical-o1 dataset (only that file), trains, and pushes the adapter + the merged model
# with model cards; then cotune downloads what was pushed and checks it. Also: offline with an empty cache fails
# with a message that says what to do.
set -euo pipefail
cotune=$1; fake_hub=$2; src=$3
work=$(mktemp -d)
hub_pid=""
cleanup() { [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$src"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$cotune" init-model --output "$work/model" --preset demo --vocab-from recipes/data/demo_medical.jsonl >/dev/null
mkdir -p "$work/ds"
cat > "$work/ds/README.md" <<'CARD'
---
license: apache-2.0
configs:
- config_name: en
  data_files: medical_o1_sft.json
- config_name: zh
  data_files: medical_o1_sft_Chinese.json
- config_name: en_mix
  data_files:
  - split: train
    path: medical_o1_sft_mix.json
---
# fake medical-o1-reasoning-SFT
CARD
cp tests/fixtures/medical-o1/medical_o1_sft_en_first10.json "$work/ds/medical_o1_sft.json"
cp tests/fixtures/medical-o1/medical_o1_sft_en_first10.json "$work/ds/medical_o1_sft_mix.json"
{ echo '['; paste -sd, recipes/data/demo_medical.jsonl; echo ']'; } > "$work/ds/medical_o1_sft_Chinese.json"

# A dataset with a loading script and no data files: only its Parquet conversion can be read.
mkdir -p "$work/scripted"
printf '# a script-based dataset\n' > "$work/scripted/README.md"
printf 'import datasets\n' > "$work/scripted/scripted.py"

"$fake_hub" --port-file "$work/endpoint" --token hf_e2e_secret_token \
  --model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B="$work/model" \
  --dataset FreedomIntelligence/medical-o1-reasoning-SFT="$work/ds" \
  --dataset org/scripted="$work/scripted" \
  --dataset-ref org/scripted@refs/convert/parquet=tests/fixtures/hub-parquet-conversion &
hub_pid=$!
for _ in $(seq 100); do [ -s "$work/endpoint" ] && break; sleep 0.05; done
[ -s "$work/endpoint" ] || fail "fake_hub did not start"
export HF_ENDPOINT=$(cat "$work/endpoint") HF_HOME="$work/hf" HF_TOKEN=hf_e2e_secret_token
unset HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_HUB_OFFLINE

# Offline with an empty cache: an actionable error, nothing downloaded.
if HF_HUB_OFFLINE=1 "$cotune" train --recipe recipes/medical-o1-zh.toml --max-steps 1 --device cpu \
     --output "$work/off" 2>"$work/log"; then fail "offline train with an empty cache succeeded"; fi
grep -q "HF_HUB_OFFLINE" "$work/log" || fail "offline error does not name HF_HUB_OFFLINE: $(cat "$work/log")"
grep -q "cotune download" "$work/log" || fail "offline error does not say how to download: $(cat "$work/log")"

"$cotune" train --recipe recipes/medical-o1-zh.toml --max-steps 2 --device cpu --output "$work/run" \
  --grad-accum 1 --max-seq-length 256 --data-cache false --save-merged true --sample-questions 1 \
  --sample-max-new-tokens 4 \
  --push-to-hub me/medical-o1-zh-lora >"$work/out" 2>"$work/log" || { cat "$work/log"; fail "train"; }
grep -q "config zh, split train: medical_o1_sft_Chinese.json" "$work/log" || fail "zh config not used: $(cat "$work/log")"
grep -q "hf_e2e_secret_token" "$work/log" "$work/out" "$work/run"/*.jsonl && fail "the token appears in the output"

cache="$work/hf/hub"
m="$cache/models--deepseek-ai--DeepSeek-R1-Distill-Qwen-1.5B"
d="$cache/datasets--FreedomIntelligence--medical-o1-reasoning-SFT"
[ -s "$m/refs/main" ] || fail "no refs/main for the model"
snap="$m/snapshots/$(cat "$m/refs/main")"
for f in config.json model.safetensors tokenizer.json; do
  [ -L "$snap/$f" ] && [ -s "$snap/$f" ] || fail "model snapshot lacks $f"
done
case "$(readlink "$snap/config.json")" in ../../blobs/*) ;; *) fail "snapshot link is not ../../blobs/<etag>";; esac
dsnap="$d/snapshots/$(cat "$d/refs/main")"
[ -s "$dsnap/medical_o1_sft_Chinese.json" ] || fail "zh file not downloaded"
[ ! -e "$dsnap/medical_o1_sft.json" ] || fail "the en file was downloaded too (only the chosen config should be)"
[ -s "$cache/CACHEDIR.TAG" ] || fail "no CACHEDIR.TAG"

# The same recipe again, offline: model and the zh config come from the cache alone.
HF_HUB_OFFLINE=1 "$cotune" -q train --recipe recipes/medical-o1-zh.toml --max-steps 1 --device cpu --output "$work/run2" \
  --grad-accum 1 --max-seq-length 128 --data-cache false >/dev/null 2>"$work/log" || { cat "$work/log"; fail "offline train from the cache"; }

# A local folder gets the same config logic: three configs and none chosen is an error listing them.
if HF_HUB_OFFLINE=1 "$cotune" train --recipe recipes/medical-o1-zh.toml --data "$work/ds" --data-config "" \
     --max-steps 1 --device cpu --output "$work/local" 2>"$work/log"; then fail "a folder with 3 configs and no choice trained"; fi
grep -q "3 configs and none was chosen.*en, zh, en_mix" "$work/log" || fail "no config list: $(cat "$work/log")"
HF_HUB_OFFLINE=1 "$cotune" train --recipe recipes/medical-o1-zh.toml --data "$work/ds" --selection "train[0:4]" \
  --max-steps 1 --device cpu --grad-accum 1 --max-seq-length 128 --data-cache false --output "$work/local" \
  >/dev/null 2>"$work/log" || { cat "$work/log"; fail "local folder with data_config zh"; }
grep -q "config zh, split train: medical_o1_sft_Chinese.json" "$work/log" || fail "local zh config not used: $(cat "$work/log")"

# refs/convert/parquet: the zh config's train split of the conversion is fetched and read (cotune's Parquet reader).
"$cotune" train --recipe recipes/medical-o1-zh.toml --data org/scripted --max-steps 1 --device cpu \
  --grad-accum 1 --max-seq-length 128 --data-cache false --output "$work/pq" >/dev/null 2>"$work/log" \
  || { cat "$work/log"; fail "training on the Parquet conversion"; }
grep -q "data: 8 sequences" "$work/log" || fail "the conversion's 8 records were not read: $(cat "$work/log")"
grep -q "using its Parquet conversion (refs/convert/parquet)" "$work/log" || fail "conversion not announced: $(cat "$work/log")"
p="$cache/datasets--org--scripted"
[ -s "$p/refs/refs/convert/parquet" ] || fail "no refs/refs/convert/parquet (huggingface_hub's place for that ref)"
cmp -s "$p/snapshots/$(cat "$p/refs/refs/convert/parquet")/zh/train/0000.parquet" \
  tests/fixtures/hub-parquet-conversion/zh/train/0000.parquet || fail "the converted Parquet file was not downloaded"

# What was pushed, read back through the Hub API into another cache.
export HF_HOME="$work/hf2"
a=$("$cotune" download me/medical-o1-zh-lora --all 2>/dev/null) || fail "download of the pushed adapter"
cmp -s "$a/adapter_model.safetensors" "$work/run/adapter/adapter_model.safetensors" || fail "pushed adapter differs"
[ -s "$a/adapter_config.json" ] && [ -s "$a/figures/loss.svg" ] || fail "adapter repo lacks adapter_config.json or figures/loss.svg"
grep -q "^base_model: deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B$" "$a/README.md" || fail "card lacks base_model"
grep -q "^library_name: peft$" "$a/README.md" || fail "card lacks library_name: peft"
grep -q "FreedomIntelligence/medical-o1-reasoning-SFT" "$a/README.md" || fail "card lacks the dataset"
grep -q "data_config = \"zh\"" "$a/README.md" || fail "card lacks the recipe"
grep -q "figures/loss.svg" "$a/README.md" || fail "card lacks the loss figure"
grep -q "Answers before and after" "$a/README.md" || fail "card lacks the before/after answers"
mm=$("$cotune" download me/medical-o1-zh-lora-merged --all 2>/dev/null) || fail "download of the pushed merged model"
cmp -s "$mm/model.safetensors" "$work/run/merged/model.safetensors" || fail "pushed merged model differs"
grep -q "^library_name: transformers$" "$mm/README.md" || fail "merged card lacks library_name: transformers"

# A second push of the same folder changes nothing.
out=$("$cotune" push "$work/run/adapter" me/medical-o1-zh-lora 2>&1) || fail "second push: $out"
echo "1 passed, 0 failed"
