#!/usr/bin/env python3
"""Greedy-generation goldens from transformers at the full DeepSeek-R1-Distill-Qwen-1.5B shape (issue 14.1).

Runs on the GPU machine (torch + transformers + peft there; bitsandbytes from the Unsloth kit's wheel for the
NF4 variant). Writes OUT/:
  model/            random bf16 weights built by transformers from the fixture config (RMSNorm weights
                    1 + 0.1 N(0,1), so a wrong rounding or a dropped norm weight shows), save_pretrained, plus the
                    fixture tokenizer files
  adapter/          a PEFT LoRA adapter (r 16, alpha 16, all seven projections) with random A and B
  golden.safetensors
                    for each variant V in base, base_fp32, adapter, nf4 and prompt i:
                      V.i.tokens  i32 [n]      greedy ids of model.generate(do_sample=False)
                      V.i.logits  f32 [n, vocab] the raw logits of each step (output_logits)
                    and prompt.i (i32): the prompt ids (BOS included)
  nf4 is the bf16 model whose seven projections hold bitsandbytes' NF4 round trip (blocks of 64, double
  quantised absmax), which is what a bnb Linear4bit computes with.

    python3 tools/make_fullshape_generate_golden.py --fixtures tests/fixtures/deepseek-r1-distill-qwen-1.5b --out DIR
"""
import argparse
import json
import os
import shutil
import time

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "A 45-year-old man presents with crushing chest pain radiating to the left arm. What is the next step?",
    "What is the first-line treatment for uncomplicated hypertension in a 50-year-old woman?",
    "患者，女，32岁，发热伴咳嗽3天，最可能的诊断是什么？",
    "Explain why metformin is contraindicated in severe renal impairment.",
    "<think>\nA child with a barking cough and stridor.",
]
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def generate(model, prompts, n, eos):
    out = {}
    for i, ids in enumerate(prompts):
        x = torch.tensor([ids], device="cuda")
        g = model.generate(x, max_new_tokens=n, do_sample=False, output_logits=True, return_dict_in_generate=True,
                           eos_token_id=eos, pad_token_id=eos, attention_mask=torch.ones_like(x))
        toks = g.sequences[0, len(ids):].to(torch.int32).cpu()
        out[f"{i}.tokens"] = toks.contiguous()
        out[f"{i}.logits"] = torch.stack([l[0].float() for l in g.logits]).cpu().contiguous()
    return out


T0 = time.time()


def say(what):
    print(f"[{time.time() - T0:6.1f} s] {what}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--no-nf4", action="store_true")
    ap.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many of the built-in prompts")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    mdir, adir = os.path.join(a.out, "model"), os.path.join(a.out, "adapter")
    cfg = AutoConfig.from_pretrained(a.fixtures)
    torch.manual_seed(a.seed)
    with torch.device("cuda"):
        try:
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        except TypeError:  # transformers < 4.56 spells it torch_dtype
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_((1.0 + 0.1 * torch.randn(p.shape, device=p.device)).to(p.dtype))
            elif name.endswith(".bias"):  # q/k/v biases: transformers initialises them to 0; make them count
                p.copy_((0.02 * torch.randn(p.shape, device=p.device)).to(p.dtype))
    model.eval()
    say("model built")
    model.save_pretrained(mdir, safe_serialization=True)
    say("model saved")
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(os.path.join(a.fixtures, f), mdir)
    tok = AutoTokenizer.from_pretrained(mdir)
    prompts = [tok(p)["input_ids"] for p in PROMPTS[:a.prompts]]
    eos = tok.eos_token_id
    golden = {f"prompt.{i}": torch.tensor(ids, dtype=torch.int32) for i, ids in enumerate(prompts)}

    for k, v in generate(model, prompts, a.steps, eos).items():
        golden[f"base.{k}"] = v
    say("bf16 greedy done")
    model32 = model.float()
    for k, v in generate(model32, prompts, a.steps, eos).items():
        golden[f"base_fp32.{k}"] = v
    say("fp32 greedy done")
    model = model32.to(torch.bfloat16)
    del model32

    from peft import LoraConfig, get_peft_model
    pm = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=list(PROJ),
                                          task_type="CAUSAL_LM"))
    torch.manual_seed(a.seed + 1)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.copy_(0.02 * torch.randn(p.shape, device=p.device))
    pm.save_pretrained(adir)
    for k, v in generate(pm, prompts, a.steps, eos).items():
        golden[f"adapter.{k}"] = v
    say("adapter greedy done")
    model = pm.unload()

    if not a.no_nf4:
        import bitsandbytes.functional as bnbf
        with torch.no_grad():
            for name, mod in model.named_modules():
                if name.split(".")[-1] in PROJ:
                    w = mod.weight.data
                    q, st = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
                    mod.weight.data = bnbf.dequantize_4bit(q, st).to(w.dtype)
        for k, v in generate(model, prompts, a.steps, eos).items():
            golden[f"nf4.{k}"] = v
        say("nf4 greedy done")
    save_file(golden, os.path.join(a.out, "golden.safetensors"))
    agree = []
    for i in range(len(prompts)):
        b, f = golden[f"base.{i}.tokens"], golden[f"base_fp32.{i}.tokens"]
        n = min(len(b), len(f))
        m = next((j for j in range(n) if b[j] != f[j]), n)
        agree.append(m)
    print(json.dumps({"prompts": [len(p) for p in prompts], "bf16_vs_fp32_agree": agree}))


if __name__ == "__main__":
    main()
