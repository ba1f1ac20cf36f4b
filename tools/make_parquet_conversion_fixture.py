#!/usr/bin/env python3
"""tests/fixtures/hub-parquet-conversion: what the Hub's refs/convert/parquet branch holds for a dataset, in small.

The Hub converts every dataset to Parquet on the branch refs/convert/parquet, laid out {config}/{split}/NNNN.parquet.
This writes zh/train/0000.parquet with the first 8 records of recipes/data/demo_medical.jsonl (Question,
Complex_CoT, Response; Snappy, as the conversion writes), served by tests/cli/hub_end_to_end.sh for a dataset repo
that has no data files of its own.

  python3 tools/make_parquet_conversion_fixture.py      (needs: pip install pyarrow; made with pyarrow 26.0.1)
"""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
rows = [json.loads(line) for line in (ROOT / "recipes" / "data" / "demo_medical.jsonl").read_text().splitlines()[:8]]
table = pa.table({k: [r[k] for r in rows] for k in ("Question", "Complex_CoT", "Response")})
out = ROOT / "tests" / "fixtures" / "hub-parquet-conversion" / "zh" / "train" / "0000.parquet"
out.parent.mkdir(parents=True, exist_ok=True)
pq.write_table(table, out, compression="snappy")
print(f"wrote {out} ({out.stat().st_size} bytes, {table.num_rows} rows)")
