#!/usr/bin/env python3
"""Writes a ~50 MB medical-o1-like Parquet file (pyarrow defaults: SNAPPY, dictionary where it pays, data page v1)
for bench/data/run.sh: Question / Complex_CoT / Response strings of pseudo-random words (so compression is
realistic), an int64 id, and a `messages` column (list<struct<role, content>>) holding the same text as a chat.

Usage: python3 bench/data/make_parquet.py OUT.parquet [--rows N]
"""
import argparse
import random

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=11500)
    a = ap.parse_args()
    rng = random.Random(3407)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 11))) for _ in range(30000)]
    vocab += ["患者", "诊断", "治疗", "发热", "咳嗽", "é", "\"quoted\"", "line\nbreak"]

    def text(n):
        return " ".join(rng.choice(vocab) for _ in range(n))

    q, c, r, msgs = [], [], [], []
    for _ in range(a.rows):
        q.append(text(rng.randint(20, 80)))
        c.append(text(rng.randint(150, 500)))
        r.append(text(rng.randint(30, 120)))
        msgs.append([{"role": "user", "content": q[-1]}, {"role": "assistant", "content": r[-1]}])
    t = pa.table({"id": pa.array(range(a.rows), pa.int64()), "Question": q, "Complex_CoT": c, "Response": r,
                  "messages": pa.array(msgs, pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())])))})
    pq.write_table(t, a.out)
    m = pq.ParquetFile(a.out).metadata
    print(f"{a.out}: {m.num_rows} rows, {m.num_row_groups} row groups")


if __name__ == "__main__":
    main()
