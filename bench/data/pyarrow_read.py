#!/usr/bin/env python3
"""The peer of bench_data_reader: pyarrow reading a Parquet file to Python dicts (what `datasets` rows are),
best of REPEATS, one JSON line like bench_data_reader's. Two ways: the whole table then Table.to_pylist(), and
streaming by record batch (iter_batches, bounded memory like cotune).

Usage: python3 bench/data/pyarrow_read.py FILE [REPEATS]
"""
import json
import os
import resource
import sys
import time

import pyarrow
import pyarrow.parquet as pq


def main():
    path = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    size = os.path.getsize(path)
    for mode in ["read_table+to_pylist", "iter_batches+to_pylist"]:
        best, rows = 1e30, 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            if mode.startswith("read_table"):
                rows = len(pq.read_table(path).to_pylist())
            else:
                rows = sum(len(b.to_pylist()) for b in pq.ParquetFile(path).iter_batches(batch_size=1024))
            best = min(best, time.perf_counter() - t0)
        print(json.dumps({"system": f"pyarrow {pyarrow.__version__} {mode}", "rows": rows, "file_bytes": size,
                          "seconds": round(best, 4), "rows_per_s": round(rows / best),
                          "file_mb_per_s": round(size / 1e6 / best, 1),
                          "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
