#!/bin/bash
# `cotune chat` in a real terminal (tmux send-keys / capture-pane) with a tiny random model: the banner, /system,
# a streamed reply with the reasoning dimmed (the DeepSeek template opens "<think>", and a random model never
# closes it), Ctrl-C interrupting a long reply without ending the chat, Ctrl-C at the prompt, /save with the
# history, /reset, --hide-thinking, Ctrl-D ending it. Exits 77 (skipped) when tmux is missing.
set -u
COTUNE="$1"
command -v tmux > /dev/null || { echo "SKIP: tmux not installed (scripts/setup.sh installs it)"; exit 77; }
TMP=$(mktemp -d) || exit 1
SESSION=""
SOCKET="$TMP/tmux.sock"
tmx() { tmux -S "$SOCKET" "$@"; }
cleanup() { tmx kill-server > /dev/null 2>&1; rm -rf "$TMP"; }
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "---- pane ----"
  tmx capture-pane -p -t "$SESSION" 2> /dev/null | tail -40
  exit 1
}
pane() { tmx capture-pane -p -J -S - -t "$SESSION" 2> /dev/null; }
# wait_for PATTERN [SECONDS]: until the pane (whole history) matches the extended regex.
wait_for() {
  local deadline=$((SECONDS + ${2:-30}))
  while [ $SECONDS -lt $deadline ]; do
    pane | grep -Eq -- "$1" && return 0
    sleep 0.05
  done
  fail "timed out waiting for: $1"
}
count() { pane | grep -Ec -- "$1"; }

"$COTUNE" init-model -o "$TMP/model" --preset tiny > /dev/null 2>&1 || fail "init-model"

# Each chat gets its own session (killing the last session of a server while starting the next one races with
# the server's exit); kill-server at the end removes them all.
n_sessions=0
start() {
  n_sessions=$((n_sessions + 1))
  SESSION="chat$n_sessions"
  tmx new-session -d -s "$SESSION" -x 160 -y 50 \
    "OMP_NUM_THREADS=1 '$COTUNE' chat --model '$TMP/model' --greedy --color always $*; echo CHAT-EXITED \$?; sleep 60" ||
    fail "tmux new-session"
  wait_for '^cotune chat: .*/help for commands'
}

# 1. A short reply, streamed and dimmed; /system; /save; /reset; an unknown command.
start --max-new-tokens 12
tmx send-keys -t "$SESSION" '/system You are a terse clinician.' Enter
wait_for '\(system prompt set\)'
tmx send-keys -t "$SESSION" 'What causes fever?' Enter
wait_for '\[max tokens\]'
tmx capture-pane -p -e -t "$SESSION" | grep -q $'\x1b\\[2m' || fail "the reasoning should be dimmed (ESC[2m)"
tmx send-keys -t "$SESSION" "/save $TMP/conv.json" Enter
wait_for "\\(saved 3 messages to $TMP/conv.json\\)"
grep -q '"content": "You are a terse clinician."' "$TMP/conv.json" || fail "/save: no system message"
grep -q '"content": "What causes fever?"' "$TMP/conv.json" || fail "/save: no user message"
grep -q '"role": "assistant"' "$TMP/conv.json" || fail "/save: no assistant message"
grep -q '"content": "<think>\\n' "$TMP/conv.json" || fail "/save: the reply should keep its opened <think>"
tmx send-keys -t "$SESSION" '/reset' Enter
wait_for '\(conversation cleared\)'
tmx send-keys -t "$SESSION" '/nonsense' Enter
wait_for 'unknown command /nonsense'

# 2. Ctrl-C at the prompt does not end the chat.
tmx send-keys -t "$SESSION" C-c
wait_for '\(Ctrl-D or /exit to quit\)'

tmx send-keys -t "$SESSION" '/exit' Enter
wait_for 'CHAT-EXITED 0'

# 3. Ctrl-C during a long reply (up to 4000 tokens, a second or two) interrupts it; the chat goes on.
start --max-new-tokens 4000
tmx send-keys -t "$SESSION" 'Tell me everything.' Enter
wait_for '> Tell me everything\.$|> Tell me everything\..+' 10
sleep 0.2
tmx send-keys -t "$SESSION" C-c
wait_for '\[interrupted\]' 30
n_prompts=$(count '^> ')
tmx send-keys -t "$SESSION" '/reset' Enter
wait_for '\(conversation cleared\)'
[ "$(count '^> ')" -gt "$n_prompts" ] || fail "no new prompt after the interrupted reply"

# 4. Ctrl-D ends the chat with status 0.
tmx send-keys -t "$SESSION" C-d
wait_for 'CHAT-EXITED 0'
echo "interrupt + commands: OK"

# 5. --hide-thinking: the reasoning is replaced by one note.
start --max-new-tokens 12 --hide-thinking
tmx send-keys -t "$SESSION" 'Hello' Enter
wait_for '\[max tokens\]'
pane | grep -q '(thinking…)' || fail "--hide-thinking: no (thinking…) note"
tmx send-keys -t "$SESSION" '/exit' Enter
wait_for 'CHAT-EXITED 0'
echo "PASS"
