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
      --no-cache -n 1 --color never) || fail "preview exited non-zero"
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
echo "cli data: OK"
