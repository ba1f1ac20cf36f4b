#!/usr/bin/env python3
"""Unsloth's kit (../shared/anchors/unsloth, sent to the GPU machine as .unsloth) at another model's shape.

  python3 bench/train/unsloth_shape.py --kit .unsloth --config bench/train/configs/r1-distill-llama-8b.json \
      --lengths OUT/lengths.json [--settings guide,packed] [--steps 8] [--warmup 2] [--out FILE]

The kit's bench_unsloth.py builds and measures the 1.5B shape only. This script builds a random bf16 model of any
config.json (transformers' class for its model_type, initialised on the GPU, saved with a stand-in tokenizer whose
ids lie inside the vocabulary), then runs the kit's own measuring code on it, unchanged: `run_mode` (from_pretrained
with load_in_4bit, get_peft_model r=16 on the 7 projections with "unsloth" checkpointing, bnb AdamW 8-bit, the
guide and packed loops, peak memory as total - free). The one thing set from outside is the kit's SHAPE vocab_size,
which bounds the random token ids (Llama's 128,256 rows are fewer than the ids the 1.5B shape draws).
Each phase runs in its own process, as the kit does. Prints the kit's RESULT_JSON lines (and writes them to --out).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def log(msg):
    print(f"[unsloth_shape {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prepare(config_path, out_dir):
    import torch
    import transformers
    cfg_d = json.load(open(config_path))
    cfg = transformers.AutoConfig.for_model(**cfg_d)
    cls = getattr(transformers, cfg_d["architectures"][0])
    t0 = time.perf_counter()
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = cls(cfg)
    finally:
        torch.set_default_dtype(prev)
    model = model.to(torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    log(f"prepare: {cls.__name__} {n / 1e9:.3f} B params on the GPU in {time.perf_counter() - t0:.1f}s")
    model.save_pretrained(out_dir, safe_serialization=True)
    # A stand-in tokenizer (speed does not depend on it) whose eos is the config's, inside the vocabulary.
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    eos = cfg_d.get("eos_token_id", 0)
    eos = eos[0] if isinstance(eos, list) else eos
    vocab = {f"t{i}": i for i in range(1000)}
    vocab["<eos>"] = int(eos)
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<eos>").save_pretrained(out_dir)
    log(f"prepare: saved to {out_dir} in {time.perf_counter() - t0:.1f}s total")


def run(kit, model_dir, vocab, settings, lengths, steps, warmup):
    sys.path.insert(0, os.path.abspath(kit))
    import bench_unsloth as bu
    bu.SHAPE = dict(bu.SHAPE, vocab_size=vocab)
    a = argparse.Namespace(child_mode="nf4", model_dir=model_dir, settings=settings, lengths=lengths, steps=steps,
                           warmup=warmup, sync_loss=False)
    return bu.run_mode(a)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kit", default=".unsloth", help="the kit folder (setup.sh already run there)")
    ap.add_argument("--config", required=True, help="config.json of the shape")
    ap.add_argument("--lengths", help="guide lengths (bench_train --lengths-out)")
    ap.add_argument("--settings", default="guide,packed")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    settings = [s for s in a.settings.split(",") if s]
    if a.child == "prepare":
        prepare(a.config, a.model_dir)
        return 0
    if a.child == "run":
        vocab = json.load(open(a.config))["vocab_size"]
        return run(a.kit, a.model_dir, vocab, settings, os.path.abspath(a.lengths) if a.lengths else None, a.steps,
                   a.warmup)
    if "guide" in settings and not a.lengths:
        ap.error("the guide setting needs --lengths")
    model_dir = tempfile.mkdtemp(prefix="unsloth_shape_")
    results = []
    for phase in ("prepare", "run"):
        cmd = [sys.executable, "-u", os.path.abspath(__file__), "--child", phase, "--model-dir", model_dir,
               "--kit", a.kit, "--config", a.config, "--settings", ",".join(settings), "--steps", str(a.steps),
               "--warmup", str(a.warmup)] + (["--lengths", a.lengths] if a.lengths else [])
        log(f"--- {phase}")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in p.stdout:
            sys.stdout.write(line)
            if line.startswith("RESULT_JSON "):
                r = json.loads(line[len("RESULT_JSON "):])
                r["config"] = os.path.basename(a.config)
                results.append(r)
        rc = p.wait()
        log(f"--- {phase} exit {rc}")
        if rc != 0 and phase == "prepare":
            results = [dict(system="unsloth-nf4", setting=s, ok=False, stage="prepare", config=os.path.basename(a.config))
                       for s in settings]
            break
    if a.out:
        with open(a.out, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    for r in results:
        print(json.dumps(r))
    return 0 if results and all(r.get("ok", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
