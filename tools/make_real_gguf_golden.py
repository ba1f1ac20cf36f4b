#!/usr/bin/env python3
"""Golden greedy continuations of the real GGUF models (scripts/real-models.sh) by `transformers`, which
reads the GGUF itself (gguf-py dequantizes every tensor to fp32 and undoes Llama's q/k permutation; the
tokenizer is rebuilt from the GGUF metadata): an independent path to the same dequantized weights cotune
imports. The `real` CTest (tests/real) compares cotune's greedy ids with these.

  python tools/make_real_gguf_golden.py models/real/smollm2-135m-instruct-q4_1.gguf tests/golden/real/smollm2.json
  python tools/make_real_gguf_golden.py models/real/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf tests/golden/real/qwen2.5.json --new-tokens 24

Needs torch, transformers (>= 4.46, GGUF support) and gguf.
"""
import argparse
import json
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = {
    "smollm2": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "qwen2.5": ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\nWrite a Python function that returns the square of a number.<|im_end|>\n"
                "<|im_start|>assistant\n"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--new-tokens", type=int, default=32)
    a = ap.parse_args()
    key = "smollm2" if "smollm2" in os.path.basename(a.gguf) else "qwen2.5"
    prompt = PROMPTS[key]
    d, f = os.path.dirname(os.path.abspath(a.gguf)), os.path.basename(a.gguf)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=a.new_tokens, do_sample=False, num_beams=1,
                             eos_token_id=model.generation_config.eos_token_id)
        logits = model(ids).logits[0, -1]
    new = out[0, ids.shape[1]:].tolist()
    top = torch.topk(logits, 5)
    res = {"model": f, "prompt": prompt, "prompt_ids": ids[0].tolist(), "ids": new,
           "text": tok.decode(new, skip_special_tokens=False),
           "last_logits_top5": {"ids": top.indices.tolist(), "values": [round(v, 4) for v in top.values.tolist()]},
           "made_by": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, fp32 CPU"}
    with open(a.out, "w") as fh:
        json.dump(res, fh, ensure_ascii=False, indent=1)
    print(json.dumps(res, ensure_ascii=False)[:600])


if __name__ == "__main__":
    main()
