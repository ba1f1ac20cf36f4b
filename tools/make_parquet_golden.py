#!/usr/bin/env python3
"""Parquet goldens for cotune's own Parquet reader (tests/data/parquet_test.cpp).

Writes small Parquet files with pyarrow covering what datasets use -- every codec cotune reads (UNCOMPRESSED,
SNAPPY, GZIP, ZSTD), data pages v1 and v2, dictionary and PLAIN encodings (and a dictionary that falls back to PLAIN
mid-chunk), RLE booleans, DELTA_BINARY_PACKED / DELTA_BYTE_ARRAY / DELTA_LENGTH_BYTE_ARRAY / BYTE_STREAM_SPLIT, nulls, empty lists, a `messages` column (list<struct<role, content>>), nested lists,
structs and maps, several row groups and pages, a zero-row row group -- and beside each `NAME.parquet` a
`NAME.jsonl` (`all.jsonl` for the files holding the same table): the rows as pyarrow reads them (Table.to_pylist), one JSON object a line, in cotune's rendering:
dates / times / timestamps as ISO 8601 strings (UTC-adjusted timestamps end in Z), decimals as numbers, NaN / Inf as
null, maps as objects, binary as text.

Usage: python3 tools/make_parquet_golden.py [--out tests/golden/data/parquet]
Needs: pip package `pyarrow` (tested with 26.0.1).
"""
import argparse
import datetime
import decimal
import json
import math
import os

import pyarrow as pa
import pyarrow.parquet as pq

ROWS = 41  # with row_group_size=8: six row groups, the last one short


def make_table(n=ROWS):
    texts = ["plain", "with \"quotes\" and \\ backslash", "line\nbreak\ttab", "中文 é ✓ 🙂", "", "ctl \x01\x1f"]
    rows = {
        "id": pa.array(range(n), pa.int64()),
        "small": pa.array([(i * 37) % 256 - 128 for i in range(n)], pa.int8()),
        "count": pa.array([None if i % 5 == 3 else (i * 2654435761) % 2**32 for i in range(n)], pa.uint32()),
        "big": pa.array([(-1) ** i * (i * 10**15 + 7) for i in range(n)], pa.int64()),
        "ratio": pa.array([None if i % 7 == 2 else i / 8 - 1.3 for i in range(n)], pa.float32()),
        "score": pa.array([float("nan") if i == 5 else (float("inf") if i == 6 else i * 1.0e-3 + 1e10 * (i % 2))
                           for i in range(n)], pa.float64()),
        "flag": pa.array([None if i % 6 == 1 else i % 3 == 0 for i in range(n)], pa.bool_()),
        "text": pa.array([None if i % 9 == 4 else texts[i % len(texts)] + f" #{i % 13}" for i in range(n)], pa.string()),
        "messages": pa.array(
            [None if i % 10 == 7 else [] if i % 10 == 8 else
             [{"role": "system" if k == 0 else ("user" if k % 2 else "assistant"),
               "content": None if (i + k) % 11 == 5 else f"turn {k} of row {i}: {texts[(i + k) % len(texts)]}"}
              for k in range(1 + i % 4)] for i in range(n)],
            pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        "tags": pa.array([None if i % 8 == 6 else [None if (i + j) % 5 == 0 else f"t{(i + j) % 4}" for j in range(i % 3)]
                          for i in range(n)], pa.list_(pa.string())),
        "matrix": pa.array([[[i, j, None if j == 1 else i * j] for j in range(i % 3)] if i % 4 else None
                            for i in range(n)], pa.list_(pa.list_(pa.int32()))),
        "meta": pa.array([None if i % 6 == 5 else {"source": f"src{i % 3}", "weight": i * 0.5, "inner": {"ok": i % 2 == 0}}
                          for i in range(n)],
                         pa.struct([("source", pa.string()), ("weight", pa.float64()),
                                    ("inner", pa.struct([("ok", pa.bool_())]))])),
        "attrs": pa.array([None if i % 7 == 0 else [(f"k{j}", i + j) for j in range(i % 3)] for i in range(n)],
                          pa.map_(pa.string(), pa.int32())),
        "day": pa.array([datetime.date(1969, 12, 25) + datetime.timedelta(days=i * 400) for i in range(n)], pa.date32()),
        "at": pa.array([datetime.datetime(2024, 2, 29, 23, 59, 58, tzinfo=datetime.timezone.utc)
                        + datetime.timedelta(seconds=i * 3607, microseconds=(i * 123457) % 1000000 if i % 2 else 0)
                        for i in range(n)], pa.timestamp("us", tz="UTC")),
        "price": pa.array([None if i % 8 == 0 else decimal.Decimal(f"{(i - 20) * 12345 // 7}.{i % 100:02d}")
                           for i in range(n)], pa.decimal128(12, 2)),
        "blob": pa.array([f"bytes{i}".encode() for i in range(n)], pa.binary()),
    }
    return pa.table(rows)


def to_json_value(v, t):
    """A value of pyarrow type `t` (from Table.to_pylist) in cotune's JSON rendering."""
    if v is None:
        return None
    if pa.types.is_map(t):
        return {str(k): to_json_value(x, t.item_type) for k, x in v}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [to_json_value(x, t.value_type) for x in v]
    if pa.types.is_struct(t):
        return {f.name: to_json_value(v[f.name], f.type) for f in t}
    if isinstance(v, float):
        return None if (math.isnan(v) or math.isinf(v)) else v
    if isinstance(v, datetime.datetime):
        s = v.strftime("%Y-%m-%dT%H:%M:%S")
        if v.microsecond:
            s += f".{v.microsecond:06d}"
        return s + ("Z" if v.tzinfo is not None else "")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)  # compared as numbers
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v


def write_expected(path, table):
    with open(path, "w", encoding="utf-8") as f:
        for row in table.to_pylist():
            f.write(json.dumps({k: to_json_value(v, table.schema.field(k).type) for k, v in row.items()},
                               ensure_ascii=False) + "\n")


def write(out, name, table, expected=None, **kw):
    """Writes NAME.parquet and the rows pyarrow reads back from it as EXPECTED.jsonl (default NAME.jsonl)."""
    path = os.path.join(out, name + ".parquet")
    pq.write_table(table, path, **kw)
    write_expected(os.path.join(out, (expected or name) + ".jsonl"), pq.read_table(path))  # pyarrow's reading
    meta = pq.ParquetFile(path).metadata
    encodings = sorted({e for g in range(meta.num_row_groups) for c in range(meta.num_columns)
                        for e in meta.row_group(g).column(c).encodings})
    print(f"{name}: {os.path.getsize(path)} bytes, {meta.num_rows} rows, {meta.num_row_groups} row groups, {encodings}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/golden/data/parquet")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t = make_table()
    common = dict(row_group_size=8, data_page_size=200, write_batch_size=3)
    for codec in ["NONE", "SNAPPY", "GZIP", "ZSTD"]:
        for version in ["1.0", "2.0"]:
            write(a.out, f"all_{codec.lower()}_v{version[0]}", t, "all", compression=codec, data_page_version=version, **common)
    # PLAIN everywhere (no dictionary), booleans RLE-encoded.
    for version in ["1.0", "2.0"]:
        write(a.out, f"plain_snappy_v{version[0]}", t, "all", compression="SNAPPY", data_page_version=version,
              use_dictionary=False, column_encoding={"flag": "RLE"}, **common)
    # The v2-era encodings (Spark / DuckDB write them): DELTA_BINARY_PACKED integers, DELTA_BYTE_ARRAY and
    # DELTA_LENGTH_BYTE_ARRAY strings (nested ones too), BYTE_STREAM_SPLIT floats.
    delta = {"id": "DELTA_BINARY_PACKED", "big": "DELTA_BINARY_PACKED", "small": "DELTA_BINARY_PACKED",
             "count": "DELTA_BINARY_PACKED", "text": "DELTA_BYTE_ARRAY", "blob": "DELTA_LENGTH_BYTE_ARRAY",
             "messages.list.element.content": "DELTA_LENGTH_BYTE_ARRAY", "messages.list.element.role": "DELTA_BYTE_ARRAY",
             "ratio": "BYTE_STREAM_SPLIT", "score": "BYTE_STREAM_SPLIT", "matrix.list.element.list.element": "DELTA_BINARY_PACKED"}
    for codec, version in [("NONE", "1.0"), ("ZSTD", "2.0")]:
        write(a.out, f"delta_{codec.lower()}_v{version[0]}", t, "all", compression=codec, data_page_version=version,
              use_dictionary=False, column_encoding=delta, **common)
    # A dictionary that outgrows its limit: dictionary pages first, then PLAIN pages in the same chunk.
    words = pa.table({"word": pa.array([f"word-{i % 97}-{'x' * (i % 13)}" for i in range(600)], pa.string()),
                      "n": pa.array([i % 5 for i in range(600)], pa.int32())})
    write(a.out, "dict_fallback", words, compression="ZSTD", dictionary_pagesize_limit=256, data_page_size=128,
          row_group_size=400)
    # No rows at all, and a zero-row row group between two others.
    write(a.out, "empty", t.slice(0, 0), compression="SNAPPY")
    path = os.path.join(a.out, "zero_row_group.parquet")
    with pq.ParquetWriter(path, t.schema, compression="SNAPPY") as w:
        w.write_table(t.slice(0, 3))
        w.write_table(t.slice(3, 0))
        w.write_table(t.slice(3, 4))
    write_expected(os.path.join(a.out, "zero_row_group.jsonl"), pq.read_table(path))
    print(f"zero_row_group: {pq.ParquetFile(path).metadata.num_row_groups} row groups")
    # The medical-o1 fields, for the data pipeline end to end.
    med = [json.loads(line) for line in open("recipes/data/demo_medical.jsonl", encoding="utf-8")][:12]
    write(a.out, "medical", pa.Table.from_pylist(med), compression="SNAPPY", row_group_size=5)


if __name__ == "__main__":
    main()
