#!/usr/bin/env bash
# Issue 14, as a user meets it: cotune never misleads. Unknown subcommands / flags / keys get "did you mean",
# TRL spellings work, runs that would train or score nothing are refused with the max_seq_length that keeps
# them, several data files are never mixed, Hub names work in every command, unsupported formats are named,
# and the samples page of `train` says it was written by train.
set -uo pipefail
cotune=$1; src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
data=$src/recipes/data/demo_medical.jsonl
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# expect_error "what" "text the message must hold" cotune-args...: non-zero exit and the text on stderr.
expect_error() {
  local what=$1 want=$2; shift 2
  if "$cotune" "$@" >out.txt 2>err.txt; then fail "$what: exited 0"; return; fi
  grep -qF -- "$want" err.txt || fail "$what: '$want' not in: $(cat err.txt)"
}

"$cotune" init-model -o model --preset tiny --max-positions 96 --vocab-from "$data" >/dev/null || { echo "init-model failed"; exit 1; }

# ---- item 6: one vocabulary, did-you-mean ------------------------------------------------------------------
expect_error "unknown subcommand" "did you mean 'train'" trian --model model
grep -q "A subcommand is required" err.txt && fail "unknown subcommand still says 'A subcommand is required'"
expect_error "unknown data subcommand" "did you mean 'stats'" data stat
expect_error "unknown flag" "did you mean '--learning-rate'" train -m model --data "$data" --lerning-rate 1
printf 'lerning_rate = 1e-3\n' > typo.toml
expect_error "unknown recipe key" "did you mean 'learning_rate'" train --recipe typo.toml -m model --data "$data"
grep -qF "typo.toml" err.txt || fail "recipe error does not name the file: $(cat err.txt)"

# TRL / Unsloth spellings in a recipe and as flags (with underscores, as HfArgumentParser takes them).
cat > trl.toml <<TOML
learning_rate = 1e-3
per_device_train_batch_size = 2
gradient_accumulation_steps = 1
num_train_epochs = 1
r = 4
lora_alpha = 8
lr_scheduler_type = "cosine"
optim = "adamw_8bit"
use_gradient_checkpointing = "unsloth"
random_state = 3407
bf16 = true
max_length = 96
TOML
"$cotune" -q train --recipe trl.toml -m model --data "$data" --template medical-o1-en --max_steps 1 --output_dir trl \
  --data-cache false --report-to jsonl >/dev/null 2>err.txt || fail "TRL spellings: $(cat err.txt)"
grep -q '"r": 4' trl/adapter/adapter_config.json || fail "r = 4 (PEFT spelling) not applied"

# ---- item 7: bad values name the flag or key and the range ---------------------------------------------------
expect_error "negative max-steps" "--max-steps: must be in [0," train -m model --data "$data" --max-steps -5
expect_error "nan lr" "finite" train -m model --data "$data" --lr nan
printf 'bf16 = "maybe"\n' > maybe.toml
expect_error "bf16 maybe" "maybe.toml:1: key 'bf16': expected a boolean" train --recipe maybe.toml -m model --data "$data"
printf 'lora_r = 4294967312\n' > wide.toml
expect_error "lora_r narrowed" "wide.toml:1: key 'lora_r'" train --recipe wide.toml -m model --data "$data"
expect_error "grad_accum bound" "--grad-accum: must be in [1, 65536]" train -m model --data "$data" --grad-accum 4294967297
expect_error "seed -1" "--seed: expected a non-negative integer" train -m model --data "$data" --seed -1
expect_error "generate seed -1" "--seed" generate -m model --prompt hi --seed -1
mkdir -p runs
expect_error "mistyped local path" "does not exist" train -m runs/nope --data "$data"
grep -q "huggingface-cli" err.txt && fail "a mistyped local path is still treated as a Hub name: $(cat err.txt)"

# Formats cotune cannot read are named, not reported as malformed JSON or missing safetensors.
printf 'PAR1\x15\x04junk' > train.parquet
expect_error "broken parquet data" "train.parquet" data stats -m model --data train.parquet
grep -qi "malformed JSON" err.txt && fail "a Parquet file is reported as malformed JSON: $(cat err.txt)"
printf 'GGUF\x03\x00\x00\x00' > model.gguf
expect_error "gguf model" "GGUF" inspect model.gguf
mkdir -p torch && cp model/config.json model/tokenizer.json torch/ && printf 'PK\x03\x04junk' > torch/pytorch_model.bin
expect_error "pytorch_model.bin" "pytorch_model.bin (pickle) is not supported, convert to safetensors" forward -m torch

# --on-bad-record is offered only where it exists: generate --questions has it now.
printf '{"prompt": "a"}\n{"prompt": 7}\n' > q.jsonl
expect_error "bad question" "--on-bad-record skip" generate -m model --questions q.jsonl --max-new-tokens 2 --json
"$cotune" generate -m model --questions q.jsonl --max-new-tokens 2 --json --on-bad-record skip >gen.txt 2>/dev/null ||
  fail "generate --on-bad-record skip"
[ "$(wc -l < gen.txt)" -eq 1 ] || fail "generate --on-bad-record skip: expected 1 answer, got $(wc -l < gen.txt)"

# ---- item 3: runs that measure nothing fail loudly ------------------------------------------------------------
expect_error "train on nothing" "no trained tokens" train -m model --data "$data" --template medical-o1-en \
  --loss-on response --max-seq-length 16 --max-steps 1 -o zero --data-cache false
grep -qF "keeps every sequence whole" err.txt || fail "no max_seq_length advice: $(cat err.txt)"
[ -e zero/adapter ] && fail "a run with no trained tokens wrote an adapter"
expect_error "eval on nothing" "no counted tokens" eval -m model --data "$data" --template medical-o1-en \
  --loss-on response --max-seq-length 16 --sample-questions 0 -o zero-eval
"$cotune" train -m model --data "$data" --template medical-o1-en --max-seq-length 128 --max-steps 1 -o cut \
  --data-cache false --report-to jsonl >/dev/null 2>err.txt || fail "truncating run: $(cat err.txt)"
grep -q "sequences were cut to max_seq_length 128" err.txt || fail "no truncation warning: $(cat err.txt)"
grep -q "above the model's max_position_embeddings (96)" err.txt || fail "no max_position_embeddings warning"

# ---- item 5: never mix data ---------------------------------------------------------------------------------
mkdir -p two && cp "$data" two/en.jsonl && cp "$data" two/zh.jsonl
expect_error "several data files" "choose one with --data-files (or --data-config)" train -m model --data two --max-steps 1
grep -qF "en.jsonl, zh.jsonl" err.txt || fail "the data files are not listed: $(cat err.txt)"
expect_error "eval several data files" "--data-files" eval -m model --data two -o e2
"$cotune" data stats -m model --data two --data-files zh.jsonl --no-cache >/dev/null 2>&1 || fail "data stats --data-files"
# --data FILE on the command line replaces the recipe's data and data_files together.
"$cotune" -q train --recipe "$src/recipes/medical-o1-zh.toml" -m model --data "$data" --selection "train[0:4]" \
  --max-steps 1 --device cpu -o med --data-cache false --report-to jsonl >/dev/null 2>err.txt ||
  fail "--data should replace the recipe's data_files: $(cat err.txt)"

# ---- item 8: Hub names everywhere ---------------------------------------------------------------------------
commit=0123456789abcdef0123456789abcdef01234567
export HF_HUB_CACHE=$work/hub
mkdir -p "hub/models--org--tiny/snapshots/$commit" "hub/models--org--tiny/refs" \
         "hub/datasets--org--med/snapshots/$commit" "hub/datasets--org--med/refs"
cp model/* "hub/models--org--tiny/snapshots/$commit/"
cp "$data" "hub/datasets--org--med/snapshots/$commit/train.jsonl"
echo "$commit" > hub/models--org--tiny/refs/main
echo "$commit" > hub/datasets--org--med/refs/main
"$cotune" inspect org/tiny >/dev/null 2>err.txt || fail "inspect org/tiny: $(cat err.txt)"
"$cotune" forward -m org/tiny >/dev/null 2>err.txt || fail "forward -m org/tiny: $(cat err.txt)"
"$cotune" data stats -m org/tiny --data org/med --no-cache >/dev/null 2>err.txt || fail "data stats org/med: $(cat err.txt)"
"$cotune" data preview --tokenizer org/tiny --data org/med --no-cache -n 1 >/dev/null 2>err.txt ||
  fail "data preview org/med: $(cat err.txt)"
"$cotune" tokenize --tokenizer org/tiny <<<'{"text": "fever"}' >/dev/null 2>err.txt || fail "tokenize org/tiny: $(cat err.txt)"
unset HF_HUB_CACHE

# ---- item 9: the samples page of train says train --------------------------------------------------------------
"$cotune" -q train -m model --data "$data" --template medical-o1-en --max-seq-length 96 --max-steps 1 -o samples \
  --data-cache false --report-to jsonl --sample-questions 1 --sample-max-new-tokens 2 >/dev/null 2>err.txt ||
  fail "train with samples: $(cat err.txt)"
grep -q "Written by cotune train" samples/samples/report.html || fail "samples page does not say cotune train"
grep -q "Written by cotune eval" samples/samples/report.html && fail "samples page of train says cotune eval"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
