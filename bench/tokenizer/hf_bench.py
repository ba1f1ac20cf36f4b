#!/usr/bin/env python3
"""HF `tokenizers` side of the tokenizer benchmark: encode (single-threaded loop) and encode_batch (all cores,
RAYON_NUM_THREADS), each with a freshly loaded tokenizer. Same output and checksum as bench_tokenizer.
Usage: hf_bench.py TOKENIZER_JSON INPUT.jsonl [single|batch|both] [--no-special]"""
import json
import os
import sys
import time

from tokenizers import Tokenizer


def checksum(all_ids):
    h = 0
    for ids in all_ids:
        h = (h * 1000003 + sum(ids) * 31 + len(ids)) % (1 << 64)
    return h


def main():
    tok_path, inp = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else "both"
    add_special = "--no-special" not in sys.argv
    with open(inp, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    for m in ("single", "batch"):
        if mode not in ("both", m):
            continue
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(tok_path)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if m == "single":
            ids = [tok.encode(t, add_special_tokens=add_special).ids for t in texts]
        else:
            ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=add_special)]
        s = time.perf_counter() - t0
        print(json.dumps({"impl": "hf", "mode": m, "threads": 1 if m == "single" else int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count())),
                          "docs": len(texts), "bytes": nbytes, "tokens": sum(len(x) for x in ids), "seconds": round(s, 4),
                          "load_seconds": round(load_s, 4), "checksum": str(checksum(ids))}), flush=True)


if __name__ == "__main__":
    main()
