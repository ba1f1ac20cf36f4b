#!/usr/bin/env python3
"""Check a merged model written by `cotune merge` against transformers + peft.

Usage: python3 tools/check_merged.py MERGED_DIR MODEL_DIR ADAPTER_DIR [--cotune-logits FILE ...]

1. Loads MERGED_DIR with `AutoModelForCausalLM.from_pretrained` as is (its own dtype, no peft) and fails on
   missing / unexpected / mismatched keys.
2. Reference: the base (fp32) + the adapter through `peft.PeftModel.from_pretrained`, unmerged.
3. Weights: every merged tensor vs peft's fp32 merge (merge_and_unload) rounded once to the merged dtype;
   prints the largest difference in units of the dtype's ulp (cotune rounds W + scale*B@A once from fp32,
   so at most 1 ulp where fp32 summation orders differ near a rounding midpoint).
4. Logits, fp32 compute (the merged model cast to fp32 after loading), on a few inputs, vs the reference.
   Tolerance: the merged weights carry one rounding to the output dtype; the yardstick is the logit error
   of peft's own fp32 merge rounded the same way (`rounding_floor`); the check passes when
   max|d| <= 1.5 * rounding_floor + 1e-4 (fp32 output: 1e-4 absolute).
5. With --cotune-logits FILE (written by `cotune forward --model M [--adapter A] --ids ... --dump-logits FILE`:
   tensors `logits` [T, V] f32 and `input_ids` [T]): cotune's logits vs the reference on the same ids
   (CPU fp32 both; tolerance: that of step 4 + 1e-3, so the file may come from the base + --adapter or from
   the merged model).
Exit 1 on any failure. Not part of the product.
"""
import argparse
import sys

import torch
from safetensors.torch import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("merged")
    ap.add_argument("model")
    ap.add_argument("adapter")
    ap.add_argument("--cotune-logits", action="append", default=[])
    a = ap.parse_args()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    fails = []
    merged, info = AutoModelForCausalLM.from_pretrained(a.merged, output_loading_info=True)
    merged_dtype = next(merged.parameters()).dtype
    keys = ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")
    bad = {k: v for k, v in info.items() if v and k in keys}
    print(f"merged: {a.merged} loads as is: dtype {merged_dtype}, {sum(p.numel() for p in merged.parameters())} "
          f"parameters, loading info problems: {bad or 'none'}")
    if bad:
        fails.append(f"loading the merged model reported {bad}")
    merged = merged.float().eval()

    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    ref = PeftModel.from_pretrained(base, a.adapter).eval()
    vocab = base.config.vocab_size

    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, vocab, (1, n), generator=g) for n in (5, 16, 40)]
    for path in a.cotune_logits:
        ids = load_file(path)["input_ids"].long().reshape(1, -1)
        seqs.append(ids)
    with torch.no_grad():
        ref_logits = [ref(s).logits.float()[0] for s in seqs]

    # peft's own fp32 merge, rounded once to the merged dtype: the yardstick for rounding.
    with torch.no_grad():
        peft_merged = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32), a.adapter).merge_and_unload().eval()
        psd = peft_merged.state_dict()
        msd = merged.state_dict()
        worst, worst_name = 0.0, ""
        for k, v in msd.items():
            if k not in psd:
                continue
            want = psd[k].to(merged_dtype)
            diff = (v.to(merged_dtype).float() - want.float()).abs()
            if merged_dtype == torch.float32:
                ulps = (diff / want.float().abs().clamp_min(1e-30)).max().item() / 2**-23
            else:
                eps = torch.finfo(merged_dtype).eps
                # ulp of each reference value: eps * 2^floor(log2|x|)
                ulp = eps * torch.exp2(torch.floor(torch.log2(want.float().abs().clamp_min(1e-30))))
                ulps = (diff / ulp).max().item()
            if ulps > worst:
                worst, worst_name = ulps, k
        rounded = peft_merged.to(merged_dtype).float().eval()
        floor = max((rounded(s).logits.float()[0] - r).abs().max().item() for s, r in zip(seqs, ref_logits))
    print(f"weights: merged vs peft fp32 merge rounded to {merged_dtype}: max {worst:.2f} ulp"
          + (f" ({worst_name})" if worst_name else ""))
    if worst > 1.0 + 1e-6:
        fails.append(f"merged weights differ from peft's merge by {worst:.2f} ulp in {worst_name}")

    tol = 1e-4 if merged_dtype == torch.float32 else 1.5 * floor + 1e-4
    print(f"logits (fp32 compute), {len(seqs)} inputs; rounding floor (peft merge rounded to {merged_dtype}) "
          f"{floor:.6f}; tolerance {tol:.6f}")
    with torch.no_grad():
        for i, (s, r) in enumerate(zip(seqs, ref_logits)):
            m = merged(s).logits.float()[0]
            d = (m - r).abs().max().item()
            print(f"  input {i} (T={s.shape[1]}): max|merged - base+adapter| {d:.6f}  max|logit| {r.abs().max():.3f}"
                  f"  argmax agree {int((m.argmax(-1) == r.argmax(-1)).sum())}/{s.shape[1]}")
            if d > tol:
                fails.append(f"input {i}: merged logits differ by {d} > {tol}")
    for j, path in enumerate(a.cotune_logits):
        c = load_file(path)["logits"].float()
        r = ref_logits[3 + j]
        d = (c - r).abs().max().item()
        ctol = tol + 1e-3
        print(f"cotune logits {path} (T={c.shape[0]}): max|cotune - transformers base+adapter| {d:.6f} "
              f"(tolerance {ctol:.6f})")
        if d > ctol:
            fails.append(f"cotune logits {path} differ by {d}")
    for f in fails:
        print(f"FAIL: {f}")
    if not fails:
        print("OK: the merged model loads in transformers and matches base + adapter")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
