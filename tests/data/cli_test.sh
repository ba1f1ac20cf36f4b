#!/bin/sh
# `cotune data stats|preview` end to end: JSON stats of the demo dataset, the masked prompt in preview, and a bad
# record failing with its file, line and field. Fails when the fixtures (tests/fixtures) are missing.
set -u
COTUNE="$1"
SRC="${COTUNE_SOURCE_DIR:?}"
FX="${COTUNE_FIXTURES:-$SRC/tests/fixtures}"
TOK="$FX/deepseek-r1-distill-qwen-1.5b"
[ -f "$TOK/tokenizer.json" ] || { echo "FAIL: fixtures not found at $TOK (tests/fixtures, or COTUNE_FIXTURES)"; exit 1; }
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

out=$("$COTUNE" data stats --data "$SRC/recipes/data/demo_medical.jsonl" --tokenizer "$TOK" --template medical-o1-en \
      --cache-dir "$TMP/cache") || fail "stats exited non-zero"
echo "$out" | grep -q '"records": 48' || fail "stats: expected 48 records: $out"
echo "$out" | grep -q '"response_token_fraction": 0\.' || fail "stats: no response fraction: $out"
ls "$TMP"/cache/*.tokens > /dev/null 2>&1 || fail "stats: no token cache written"

out=$("$COTUNE" data preview --data "$SRC/recipes/data/demo_medical.jsonl" --tokenizer "$TOK" --template medical-o1-en \
      --no-cache -n 1 --color never --loss-on response) || fail "preview exited non-zero"
echo "$out" | grep -q '^\[\[<｜begin▁of▁sentence｜>Below is an instruction' || fail "preview: prompt not marked: $out"
echo "$out" | grep -q '^\]\]Fever, tender' || fail "preview: the marked prompt should end right before the reasoning: $out"
echo "$out" | grep -q '<｜end▁of▁sentence｜>$' || fail "preview: EOS not shown as trained: $out"

printf '{"Question":"q","Complex_CoT":"c","Response":"r"}\n{"Question":"q","Complex_CoT":7,"Response":"r"}\n' > "$TMP/bad.jsonl"
if err=$("$COTUNE" data stats --data "$TMP/bad.jsonl" --tokenizer "$TOK" --no-cache 2>&1); then
  fail "bad record: expected a non-zero exit"
fi
echo "$err" | grep -q "bad.jsonl:2 (byte 50): record 1: field 'Complex_CoT' is a number, expected a string" ||
  fail "bad record message: $err"
out=$("$COTUNE" data stats --data "$TMP/bad.jsonl" --tokenizer "$TOK" --no-cache --on-bad-record skip 2>/dev/null) ||
  fail "skip policy exited non-zero"
echo "$out" | grep -q '"skipped": 1' || fail "skip policy: $out"
# Parquet and CSV read like JSON Lines: the same records give the same stats (the golden Parquet file holds the first
# 12 demo records; the CSV is written here from the same records).
PQ="$SRC/tests/golden/data/parquet/medical.parquet"
out=$("$COTUNE" data stats --data "$PQ" --tokenizer "$TOK" --template medical-o1-en --no-cache) || fail "parquet stats exited non-zero"
echo "$out" | grep -q '"records": 12' || fail "parquet stats: expected 12 records: $out"
head -n 12 "$SRC/recipes/data/demo_medical.jsonl" > "$TMP/first12.jsonl"
want=$("$COTUNE" data stats --data "$TMP/first12.jsonl" --tokenizer "$TOK" --template medical-o1-en --no-cache) ||
  fail "jsonl stats exited non-zero"
[ "$out" = "$want" ] || fail "parquet stats differ from the same records as JSON Lines: $out vs $want"
out=$("$COTUNE" data stats --data "$PQ" --tokenizer "$TOK" --template medical-o1-en --no-cache --split 'train[:50%]') ||
  fail "parquet percent split exited non-zero"
echo "$out" | grep -q '"records": 6' || fail "parquet train[:50%]: expected 6 records: $out"
out=$("$COTUNE" data preview --data "$PQ" --tokenizer "$TOK" --template medical-o1-en --no-cache -n 1 --color never --loss-on response) ||
  fail "parquet preview exited non-zero"
echo "$out" | grep -q '^\[\[<｜begin▁of▁sentence｜>Below is an instruction' || fail "parquet preview: $out"
printf 'Question,Complex_CoT,Response\n"What, if anything, is wrong?","Think ""twice"".\nThen answer.",Nothing.\n' > "$TMP/d.csv"
out=$("$COTUNE" data stats --data "$TMP/d.csv" --tokenizer "$TOK" --template medical-o1-en --no-cache) ||
  fail "csv stats exited non-zero"
echo "$out" | grep -q '"records": 1' || fail "csv stats: expected 1 record: $out"
printf 'PAR1 but not really' > "$TMP/fake.parquet"
if err=$("$COTUNE" data stats --data "$TMP/fake.parquet" --tokenizer "$TOK" --no-cache 2>&1); then
  fail "broken parquet: expected a non-zero exit"
fi
echo "$err" | grep -q "fake.parquet: truncated or corrupt Parquet file" || fail "broken parquet message: $err"
# Conversational records through the model's chat template, trained on the assistant turns only.
printf '%s\n' '{"conversations":[{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello there"}]}' > "$TMP/sg.jsonl"
out=$("$COTUNE" data preview --data "$TMP/sg.jsonl" --tokenizer "$TOK" --template chat --mask assistant --no-cache \
      --color never 2>/dev/null) || fail "chat preview exited non-zero"
echo "$out" | grep -q '^\[\[<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>\]\]Hello there<｜end▁of▁sentence｜>$' ||
  fail "chat preview: the assistant turn should be the trained part: $out"
if err=$("$COTUNE" data stats --data "$TMP/sg.jsonl" --tokenizer "$TOK" --no-cache 2>&1); then
  fail "sharegpt without --template chat: expected an error"
fi
echo "$err" | grep -q 'sharegpt records need a chat template: give --template chat' || fail "sharegpt error: $err"
echo "cli data: OK"
