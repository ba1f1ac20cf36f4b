#!/usr/bin/env python3
"""One bf16 LoRA training step at a real model shape (DeepSeek-R1-Distill-Qwen-1.5B; with tools/gpu_families.sh
Qwen2.5-7B, Llama-3.1-8B, Qwen3-8B and Mistral-7B shapes): transformers + peft against cotune
(bench/train/step_dump), on the GPU machine. Random weights, the same seeded inputs. The config's model_type
picks the transformers class (qwen2, llama, qwen3, mistral).

transformers side: base weights bf16, LoRA weights fp32 under torch.autocast(bfloat16) (the QLoRA/Unsloth
arrangement, and cotune's: fp32 LoRA, bf16 activations), SDPA attention, each sequence run alone; loss = sum of
token losses / counted predictions. Compares the loss (rel. tol 1e-2) and every LoRA gradient norm
(rel. tol 5e-2 each; the median error is printed) — what fp32 CPU twins cannot catch (where HF rounds to bf16).

  python3 tools/compare_hf_step.py --config CONFIG.json --step-dump "PATH/step_dump" --work DIR
"""
import argparse
import json
import os
import subprocess
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--step-dump", required=True, help="command that runs cotune's step_dump")
    ap.add_argument("--work", required=True)
    ap.add_argument("--lengths", default="700,1300")
    ap.add_argument("--device", default="cuda", help="torch device of the transformers side (cpu: a quick local check)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    c = json.load(open(a.config))
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "rope_theta", "rms_norm_eps", "head_dim",
            "tie_word_embeddings", "attention_bias", "mlp_bias", "rope_scaling", "sliding_window")
    cfg = AutoConfig.for_model(c.get("model_type", "qwen2"), **{k: c[k] for k in keys if k in c},
                               hidden_act="silu", use_sliding_window=False)
    cfg.tie_word_embeddings = c.get("tie_word_embeddings", False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).to(dtype=torch.bfloat16)
    with torch.no_grad():  # non-trivial norms and biases, as a trained model has
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_((1.0 + 0.2 * torch.randn_like(p, dtype=torch.float32)).to(p.dtype))
            elif n.endswith(".bias"):
                p.copy_((0.1 * torch.randn_like(p, dtype=torch.float32)).to(p.dtype))
    model_dir = os.path.join(a.work, "model")
    model.save_pretrained(model_dir, safe_serialization=True)
    model = model.to(a.device)
    model.config._attn_implementation = "sdpa"
    lcfg = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    pm = get_peft_model(model, lcfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.data = p.data.float()
                if "lora_B" in n:
                    p.copy_(torch.randn_like(p) * 0.01)
    adapter_dir = os.path.join(a.work, "adapter")
    pm.save_pretrained(adapter_dir)
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, cfg.vocab_size, (int(n),), generator=g).tolist() for n in a.lengths.split(",")]
    json.dump({"sequences": seqs}, open(os.path.join(a.work, "batch.json"), "w"))

    count = sum(len(s) - 1 for s in seqs)
    total = 0.0
    with torch.autocast(a.device, dtype=torch.bfloat16):
        for s in seqs:
            ids = torch.tensor([s], device=a.device)
            logits = pm(input_ids=ids).logits.float()
            l = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
            (l / count).backward()
            total += float(l.detach())
    hf = dict(loss=total / count, grad_norms={n.replace(".default", ""): float(p.grad.float().norm())
                                              for n, p in pm.named_parameters() if p.requires_grad})
    del pm, model
    torch.cuda.empty_cache()
    out = subprocess.run(a.step_dump.split() + ["--model", model_dir, "--adapter", adapter_dir, "--batch",
                                                 os.path.join(a.work, "batch.json")], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr)
        sys.exit("step_dump failed")
    ct = json.loads(out.stdout.strip().splitlines()[-1])
    rel_loss = abs(ct["loss"] - hf["loss"]) / hf["loss"]
    errs = []
    worst = (0, "")
    for n, v in hf["grad_norms"].items():
        if n not in ct["grad_norms"]:
            sys.exit(f"cotune has no gradient for {n}")
        e = abs(ct["grad_norms"][n] - v) / max(v, 1e-30)
        errs.append(e)
        worst = max(worst, (e, n))
    errs.sort()
    print(json.dumps(dict(hf_loss=hf["loss"], cotune_loss=ct["loss"], rel_loss=rel_loss, tensors=len(errs),
                          median_rel_grad_norm_err=errs[len(errs) // 2], max_rel_grad_norm_err=worst[0],
                          worst_tensor=worst[1], model_type=cfg.model_type,
                          gpu=torch.cuda.get_device_name() if a.device == "cuda" else "cpu")))
    ok = rel_loss < 1e-2 and worst[0] < 5e-2
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
