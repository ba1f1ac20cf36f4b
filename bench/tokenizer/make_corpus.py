#!/usr/bin/env python3
"""Builds the tokenizer benchmark corpus: ~50 MB of diverse text as JSON lines {"text": ...}, documents of
about 4 KB, in two files so Chinese is reported separately.

  en_code.jsonl  English (and some other Latin-script) prose from /usr/share/doc (READMEs, changelogs,
                 copyright files), /usr/share/common-licenses and man pages, plus Python standard-library
                 sources as code. Each file is read once: nothing is repeated.
  zh.jsonl       Chinese: the medical-o1 Chinese record, then text generated from the tokenizer's own
                 vocabulary: random sequences of pure-CJK vocab tokens decoded to characters, cut into
                 clauses of 2..60 characters by Chinese punctuation, with the odd ASCII number or word.
                 (Clauses between punctuation are single pre-tokens, so this stresses BPE on long words.)

Usage: make_corpus.py OUT_DIR [--mb-en 35] [--mb-zh 15] [--tokenizer PATH]
"""
import argparse
import gzip
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC_BYTES = 4096


def read_text(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read(2_000_000)
        else:
            with open(path, "rb") as f:
                data = f.read(2_000_000)
    except OSError:
        return None
    if b"\0" in data[:4096]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def chunks(text):
    """~DOC_BYTES documents cut at line ends."""
    out, cur, size = [], [], 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        size += len(line)
        if size >= DOC_BYTES:
            out.append("".join(cur))
            cur, size = [], 0
    if cur:
        out.append("".join(cur))
    return out


def english_and_code(budget):
    roots = [("/usr/share/common-licenses", 0.05), ("/usr/share/doc", 0.45), ("/usr/share/man", 0.2),
             (os.path.dirname(os.__file__), 0.30)]
    docs = []
    for root, share in roots:
        limit, used = int(budget * share), 0
        paths = []
        for d, _, files in os.walk(root):
            for name in files:
                if root == os.path.dirname(os.__file__) and not name.endswith(".py"):
                    continue
                if "site-packages" in d or "/test" in d:
                    continue
                paths.append(os.path.join(d, name))
        paths.sort()
        random.Random(1).shuffle(paths)
        seen = set()
        for p in paths:
            if used >= limit:
                break
            real = os.path.realpath(p)
            if real in seen:
                continue
            seen.add(real)
            text = read_text(real)
            if not text or len(text) < 200:
                continue
            h = hash(text[:2000])
            if h in seen:
                continue
            seen.add(h)
            for c in chunks(text):
                docs.append(c)
                used += len(c.encode("utf-8"))
    random.Random(2).shuffle(docs)
    return docs


def chinese(budget, tokenizer_path, fixtures):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_path)
    cjk_tokens = []
    for token, idx in tok.get_vocab().items():
        s = tok.decode([idx])
        if s and all("\u4e00" <= ch <= "\u9fff" for ch in s):
            cjk_tokens.append(s)
    cjk_tokens.sort()
    rng = random.Random(3)
    punct = ["，", "。", "、", "；", "：", "？", "！", "（", "）", "“", "”", "\n"]
    docs = []
    base = os.path.join(fixtures, "medical-o1", "medical_o1_sft_Chinese_first1.json")
    if os.path.exists(base):
        with open(base, encoding="utf-8") as f:
            for r in json.load(f):
                docs.append("\n".join(r.values()))
    used = sum(len(d.encode()) for d in docs)
    while used < budget:
        parts, size = [], 0
        while size < DOC_BYTES:
            clause_len = rng.randint(2, 60)
            clause = []
            n = 0
            while n < clause_len:
                t = rng.choice(cjk_tokens)
                clause.append(t)
                n += len(t)
            if rng.random() < 0.1:
                clause.insert(rng.randrange(len(clause) + 1), rng.choice(["3", "12", "2024年", " mg ", "CT", " HIV "]))
            parts.append("".join(clause) + rng.choice(punct))
            size += 3 * n + 3
        doc = "".join(parts)
        docs.append(doc)
        used += len(doc.encode("utf-8"))
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--mb-en", type=float, default=35)
    ap.add_argument("--mb-zh", type=float, default=15)
    fixtures = os.environ.get("COTUNE_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures"))
    ap.add_argument("--tokenizer", default=os.path.join(fixtures, "deepseek-r1-distill-qwen-1.5b", "tokenizer.json"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, docs in (("en_code", english_and_code(int(args.mb_en * 1e6))),
                       ("zh", chinese(int(args.mb_zh * 1e6), args.tokenizer, fixtures))):
        path = os.path.join(args.out, name + ".jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
        print("{}: {} documents, {:.1f} MB".format(path, len(docs), sum(len(d.encode()) for d in docs) / 1e6),
              file=sys.stderr)


if __name__ == "__main__":
    main()
