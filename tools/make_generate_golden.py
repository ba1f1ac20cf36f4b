#!/usr/bin/env python3
"""Make tests/golden/infer/generate.json: greedy generation on the tiny r1like golden model with transformers
(CPU, fp32, eager attention), without and with the PEFT adapter tests/golden/model/r1like/lora/adapter_init.

Not part of the product: it writes the reference ids that tests/infer compares cotune's Generator against.
Each prompt runs alone (batch 1, no padding), do_sample=False, max_new_tokens=20, EOS = config's (2); a
second set uses repetition_penalty=1.3 (HF applies it in greedy decoding too).

Usage: python3 tools/make_generate_golden.py [OUT_FILE]
"""
import json
import os
import sys

import torch
from transformers import Qwen2ForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODEL = os.path.join(ROOT, "tests", "golden", "model", "r1like")
ADAPTER = os.path.join(MODEL, "lora", "adapter_init")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "golden", "infer", "generate.json")

PROMPTS = [
    [1, 5, 17, 42, 99],
    [1, 200, 3],
    [1, 7, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15, 250, 251, 252, 31],
    [1],
]
NEW = 20


def run(model, penalty):
    outs = []
    for p in PROMPTS:
        ids = torch.tensor([p])
        with torch.no_grad():
            g = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW,
                               repetition_penalty=penalty, eos_token_id=2, pad_token_id=0, top_k=None, top_p=None,
                               temperature=None)
        outs.append(g[0, len(p):].tolist())
    return outs


def load():
    m = Qwen2ForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32, attn_implementation="eager")
    return m.eval()


def main():
    torch.manual_seed(0)
    base = load()
    result = {"model": "tests/golden/model/r1like", "adapter": "tests/golden/model/r1like/lora/adapter_init",
              "max_new_tokens": NEW, "eos_token_id": 2, "prompts": PROMPTS,
              "base": run(base, 1.0), "base_penalty_1_3": run(base, 1.3)}
    from peft import PeftModel
    lora = PeftModel.from_pretrained(load(), ADAPTER).eval()
    result["lora"] = run(lora, 1.0)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
