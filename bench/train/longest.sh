#!/usr/bin/env bash
# The longest single sequence that trains on this GPU (issue 8 c): cotune (NF4 base + 8-bit AdamW, checkpointing)
# against the HF + PEFT baseline (hf_baseline.py), batch 1, one optimizer step per trial, each trial a separate
# process under a timeout; doubling from 8192, then bisection to 5% (multiples of 1024), cap 1,048,576.
#   bench/train/longest.sh BENCH_TRAIN CONFIG OUT [cotune] [hf] [--timeout S] [--no-verify] [--resume FILE] ...
# BENCH_TRAIN may be several words (".gpu/run bench_train"). Prints a table and, last, one JSON line
# {"cotune_max": ..., "hf_max": ..., "ratio": ...}. Options and cost: bench/train/README.md, longest.py --help.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "${PYTHON:-python3}" "$here/longest.py" "$@"
