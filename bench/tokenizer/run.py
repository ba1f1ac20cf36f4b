#!/usr/bin/env python3
"""Tokenizer benchmark, cotune vs Hugging Face `tokenizers`, in one run on the same cores.

Builds ~50 MB of diverse text (make_corpus.py; cached), then for English+code and for Chinese separately
runs: cotune single-threaded (encode loop), HF single-threaded (encode loop), cotune batch (encode_batch on
all cores), HF encode_batch (all cores), each with a freshly loaded tokenizer, and prints throughputs,
ratios and whether both produced identical ids (checksum).

Usage: bench/tokenizer/run.sh [--build-dir build] [--corpus DIR] [--tokenizer PATH] [--mb-en 35] [--mb-zh 15]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    fixtures = os.environ.get("COTUNE_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--tokenizer", default=os.path.join(fixtures, "deepseek-r1-distill-qwen-1.5b", "tokenizer.json"))
    ap.add_argument("--mb-en", type=float, default=35)
    ap.add_argument("--mb-zh", type=float, default=15)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(args.tokenizer):
        sys.exit("tokenizer not found: {} (set COTUNE_FIXTURES)".format(args.tokenizer))
    corpus = args.corpus or os.path.join(args.build_dir, "bench_tokenizer_corpus")
    if not args.no_build:
        subprocess.run(["cmake", "--build", args.build_dir, "-j2", "--target", "bench_tokenizer"], check=True,
                       stdout=subprocess.DEVNULL)
    if not (os.path.exists(os.path.join(corpus, "en_code.jsonl")) and os.path.exists(os.path.join(corpus, "zh.jsonl"))):
        subprocess.run([sys.executable, os.path.join(HERE, "make_corpus.py"), corpus, "--mb-en", str(args.mb_en),
                        "--mb-zh", str(args.mb_zh), "--tokenizer", args.tokenizer], check=True)
    bench = os.path.join(args.build_dir, "bin", "bench_tokenizer")
    hf = [sys.executable, os.path.join(HERE, "hf_bench.py"), args.tokenizer]
    print("cores: {}  tokenizer: {}".format(os.cpu_count(), args.tokenizer))
    results = {}
    for lang in ("en_code", "zh"):
        data = os.path.join(corpus, lang + ".jsonl")
        for mode in ("single", "batch"):  # interleaved so that load drift hits both sides alike
            for r in run_json([bench, "--tokenizer", args.tokenizer, "--input", data, "--mode", mode]):
                results[(lang, "cotune", mode)] = r
            for r in run_json(hf + [data, mode]):
                results[(lang, "hf", mode)] = r

    print("\n{:<8} {:<7} {:<7} {:>4} {:>9} {:>9} {:>11} {:>8} {:>7}".format(
        "text", "impl", "mode", "thr", "MB", "MB/s", "Mtokens/s", "load s", "vs HF"))
    ok = True
    for lang in ("en_code", "zh"):
        for mode in ("single", "batch"):
            hf_r = results[(lang, "hf", mode)]
            for impl in ("hf", "cotune"):
                r = results[(lang, impl, mode)]
                mbps = r["bytes"] / 1e6 / r["seconds"]
                ratio = hf_r["seconds"] / r["seconds"]
                print("{:<8} {:<7} {:<7} {:>4} {:>9.1f} {:>9.2f} {:>11.3f} {:>8.3f} {:>6.2f}x".format(
                    lang, impl, mode, r["threads"], r["bytes"] / 1e6, mbps, r["tokens"] / 1e6 / r["seconds"],
                    r["load_seconds"], ratio))
            same = hf_r["checksum"] == results[(lang, "cotune", mode)]["checksum"] and \
                hf_r["tokens"] == results[(lang, "cotune", mode)]["tokens"]
            ok &= same
            if not same:
                print("  !! ids differ between cotune and HF ({} {})".format(lang, mode))
    print("\nsummary (time ratios HF / cotune):")
    for lang in ("en_code", "zh"):
        s = results[(lang, "hf", "single")]["seconds"] / results[(lang, "cotune", "single")]["seconds"]
        b = results[(lang, "hf", "batch")]["seconds"] / results[(lang, "cotune", "batch")]["seconds"]
        print("  {:<8} single-thread {:.2f}x (target >= 2)   batch {:.2f}x (target >= 1)".format(lang, s, b))
    def total(impl, mode):
        return sum(results[(lang, impl, mode)]["seconds"] for lang in ("en_code", "zh"))

    tot = {"cs": total("cotune", "single"), "hs": total("hf", "single"), "cb": total("cotune", "batch"),
           "hb": total("hf", "batch")}
    print("  {:<8} single-thread {:.2f}x               batch {:.2f}x".format("all", tot["hs"] / tot["cs"], tot["hb"] / tot["cb"]))
    print("ids identical to HF on the whole corpus: {}".format("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
