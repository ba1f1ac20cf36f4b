#!/bin/sh
# `cotune chat-template` end to end: the DeepSeek goldens of tests/golden/chat_template/cases.jsonl (text and ids,
# as transformers' apply_chat_template) through stdin/stdout, and a bad line failing with its line number.
set -u
COTUNE="$1"
SRC="${COTUNE_SOURCE_DIR:?}"
FX="${COTUNE_FIXTURES:-$SRC/tests/fixtures}"
MODEL="$FX/deepseek-r1-distill-qwen-1.5b"
[ -f "$MODEL/tokenizer.json" ] || { echo "FAIL: fixtures not found at $MODEL"; exit 1; }
TMP=$(mktemp -d) || exit 1
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Inputs and expected outputs from the goldens (no Python: jq-free extraction by grep + sed on fixed key order).
grep '"template": "deepseek-r1-distill-qwen"' "$SRC/tests/golden/chat_template/cases.jsonl" | grep -v '"error"' \
  > "$TMP/cases.jsonl"
n=$(wc -l < "$TMP/cases.jsonl")
[ "$n" -ge 20 ] || fail "expected at least 20 DeepSeek golden cases, got $n"
# Each golden line carries "messages" and "add_generation_prompt", which chat-template reads; extra keys are ignored.
"$COTUNE" chat-template --model "$MODEL" < "$TMP/cases.jsonl" > "$TMP/out.jsonl" || fail "chat-template exited non-zero"
[ "$(wc -l < "$TMP/out.jsonl")" -eq "$n" ] || fail "expected $n output lines"
# Compare "text" and "ids" line by line: the golden has them as `"text": ..., "ids": [...]`, cotune writes compact JSON.
i=0
while IFS= read -r gold && IFS= read -r got <&3; do
  i=$((i + 1))
  want_ids=$(printf '%s' "$gold" | sed 's/.*"ids": \[\([^]]*\)\].*/\1/' | tr -d ' ')
  got_ids=$(printf '%s' "$got" | sed 's/.*"ids":\[\([^]]*\)\].*/\1/')
  [ "$want_ids" = "$got_ids" ] || fail "case $i: ids differ"
done < "$TMP/cases.jsonl" 3< "$TMP/out.jsonl"

printf '{"messages":[{"role":"user","content":"ok"}]}\n{"messages": 5}\n' > "$TMP/bad.jsonl"
if err=$("$COTUNE" chat-template --model "$MODEL" < "$TMP/bad.jsonl" 2>&1); then fail "bad line: expected a non-zero exit"; fi
echo "$err" | grep -q 'stdin line 2: expected an object with a "messages" array' || fail "bad line: unexpected error: $err"
echo "$err" | grep -q '^{"text":"<｜begin▁of▁sentence｜><｜User｜>ok"' || fail "the good line before the bad one was not written: $err"
echo "PASS ($n cases)"
