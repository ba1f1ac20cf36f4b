#!/bin/sh
# Parquet reading side by side: cotune's reader (rows as JSON text) vs pyarrow (rows as Python dicts), same file,
# same machine, one invocation. Usage: bench/data/run.sh BENCH_DATA_READER [WORKDIR]
#   e.g. bench/data/run.sh build/bin/bench_data_reader /tmp/cotune-bench-data
set -eu
BIN="$1"
WORK="${2:-/tmp/cotune-bench-data}"
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
[ -f "$WORK/medical.parquet" ] || python3 "$HERE/make_parquet.py" "$WORK/medical.parquet"
"$BIN" "$WORK/medical.parquet" 3
python3 "$HERE/pyarrow_read.py" "$WORK/medical.parquet" 3
