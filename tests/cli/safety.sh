#!/usr/bin/env bash
# Issue 14 items 4 and 11 on the cotune binary: output folders that are the user's are never deleted, runs
# never mix, leftovers of a killed run are cleaned, broken checkpoints and non-regular inputs are errors naming
# the path, and NaN weights are reported at load. Each check runs a tiny CPU model for a step or two.
set -euo pipefail
cotune=$1; src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src"
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_error "what" "text the message must hold" cmd...: the command fails, naming the text.
expect_error() {
  local what=$1 needle=$2; shift 2
  if timeout 60 "$@" >"$work/out" 2>"$work/err"; then fail "$what: exit 0 (expected an error)"; fi
  [ "$?" -ne 124 ] || fail "$what: timed out (blocked?)"
  grep -qF -- "$needle" "$work/err" || fail "$what: the message lacks '$needle': $(cat "$work/err")"
}
# A short demo-recipe run on the tiny model: "${train[@]}" --output DIR --max-steps N [flags...]
train=("$cotune" -q train --recipe recipes/demo.toml --model "$work/model" --save-steps 1 --eval-steps 0
       --validation-count 0 --data-cache false --batch-size 2 --grad-accum 1)

"$cotune" init-model --output "$work/model" --preset tiny --vocab-from recipes/data/demo_medical.jsonl >/dev/null
# init-model writes its folder whole (temp + rename), and replaces only a model folder.
[ -z "$(ls -d "$work"/model.tmp-* 2>/dev/null)" ] || fail "init-model left a temp folder"
mkdir -p "$work/mine" && echo precious > "$work/mine/thesis.tex"
expect_error "init-model into a folder of other files" "thesis.tex" "$cotune" init-model --output "$work/mine" --preset tiny
[ -f "$work/mine/thesis.tex" ] || fail "init-model deleted the user's file"

# ---- never mix runs (item 4) ----
"${train[@]}" --max-steps 2 --output "$work/run" >/dev/null 2>&1 || fail "first run"
expect_error "a second run into the same folder" "--overwrite-output" "${train[@]}" --max-steps 2 --output "$work/run"
echo keep > "$work/run/notes.txt"
"${train[@]}" --output "$work/run" --overwrite-output --max-steps 1 >/dev/null 2>"$work/err" || fail "--overwrite-output: $(cat "$work/err")"
[ -f "$work/run/notes.txt" ] || fail "--overwrite-output removed a file cotune did not write"
[ ! -e "$work/run/checkpoint-2" ] || fail "--overwrite-output kept the old run's checkpoint-2"
[ "$(grep -c '"loss"' "$work/run/metrics.jsonl")" -eq 1 ] || fail "metrics.jsonl mixes two runs"
# --overwrite-output never removes a folder of the user's that shares a name with one cotune writes.
mkdir -p "$work/run/report" && echo mine > "$work/run/report/draft.docx"
expect_error "--overwrite-output over the user's report/ folder" "draft.docx" \
  "${train[@]}" --output "$work/run" --overwrite-output --max-steps 1
[ -f "$work/run/report/draft.docx" ] && [ -d "$work/run/adapter" ] || fail "a refused overwrite removed something"
rm "$work/run/report/draft.docx"
printf 'overwrite_output_dir = true\n' > "$work/ow.toml"
"$cotune" -q train --recipe "$work/ow.toml" --model "$work/model" --data recipes/data/demo_medical.jsonl \
  --template medical-o1-en --max-seq-length 64 --device cpu --output "$work/run" --max-steps 1 --data-cache false \
  >/dev/null 2>"$work/err" || fail "recipe key overwrite_output_dir: $(cat "$work/err")"
# --resume with other settings names the keys that differ.
"${train[@]}" --max-steps 2 --output "$work/r2" >/dev/null 2>&1 || fail "run r2"
rm -rf "$work/r2/checkpoint-2"
expect_error "resume with another lr" "lr: 0.005 -> 0.001" "${train[@]}" --max-steps 2 --output "$work/r2" --resume --lr 0.001

# ---- leftovers and broken checkpoints (item 11) ----
cp -r "$work/r2/checkpoint-1" "$work/r2/checkpoint-2.tmp-999999999"
"${train[@]}" --max-steps 2 --output "$work/r2" --resume >/dev/null 2>&1 || fail "resume after a killed run"
[ ! -e "$work/r2/checkpoint-2.tmp-999999999" ] || fail "the killed run's checkpoint-2.tmp-999999999 was not removed"
mkdir -p "$work/r3/checkpoint-99999999999999999999" && echo '{}' > "$work/r3/checkpoint-99999999999999999999/trainer_state.json"
expect_error "overflowing checkpoint name" "checkpoint-99999999999999999999: the step number" "${train[@]}" --max-steps 2 --output "$work/r3" --resume
grep -q stoll "$work/err" && fail "stoll reached the user"
"${train[@]}" --max-steps 2 --output "$work/r4" >/dev/null 2>&1 || fail "run r4"
rm -rf "$work/r4/checkpoint-2"
printf '{"global_step": 1,\n "fingerprint": ' > "$work/r4/checkpoint-1/trainer_state.json"
expect_error "torn trainer_state.json" "checkpoint-1/trainer_state.json: not valid JSON: line 2" "${train[@]}" --max-steps 2 --output "$work/r4" --resume
echo '{"global_step": "one", "fingerprint": {}, "iterator": ""}' > "$work/r4/checkpoint-1/trainer_state.json"
expect_error "wrong type in trainer_state.json" "field \"global_step\" must be an integer" "${train[@]}" --max-steps 2 --output "$work/r4" --resume

# ---- merge -o never deletes what is not cotune's (item 11) ----
echo precious > "$work/file.txt"
expect_error "merge onto a file" "not a folder" "$cotune" merge -m "$work/model" -a "$work/run/adapter" -o "$work/file.txt"
[ "$(cat "$work/file.txt")" = precious ] || fail "merge replaced a regular file"
expect_error "merge onto a folder of other files" "thesis.tex" "$cotune" merge -m "$work/model" -a "$work/run/adapter" -o "$work/mine"
[ -f "$work/mine/thesis.tex" ] || fail "merge deleted the user's folder"
"$cotune" merge -m "$work/model" -a "$work/run/adapter" -o "$work/merged" >/dev/null 2>&1 || fail "merge"
"$cotune" merge -m "$work/model" -a "$work/run/adapter" -o "$work/merged" >/dev/null 2>&1 || fail "merge over its own output"

# ---- FIFOs are refused, not read forever ----
mkfifo "$work/fifo.jsonl"
expect_error "FIFO as data" "not a regular file (a FIFO)" "${train[@]}" --max-steps 2 --output "$work/r5" --data "$work/fifo.jsonl"
mkfifo "$work/fifo.toml"
expect_error "FIFO as recipe" "not a regular file (a FIFO)" "$cotune" train --recipe "$work/fifo.toml"
mkdir "$work/fifomodel" && cp "$work/model/"* "$work/fifomodel/" && rm "$work/fifomodel/config.json" && mkfifo "$work/fifomodel/config.json"
expect_error "FIFO as config.json" "not a regular file (a FIFO)" "$cotune" forward -m "$work/fifomodel"

# ---- NaN weights are reported at load, naming the tensor ----
cp -r "$work/model" "$work/nanmodel"
f="$work/nanmodel/model.safetensors"
n=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
begin=$(head -c $((8 + n)) "$f" | tail -c "$n" | grep -o '"model.norm.weight":{[^}]*}' | sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
printf '\xc0\x7f' | dd of="$f" bs=1 seek=$((8 + n + begin + 2)) conv=notrunc status=none
expect_error "NaN weight" "tensor model.norm.weight holds a NaN" "$cotune" forward -m "$work/nanmodel"
echo "1 passed, 0 failed"
