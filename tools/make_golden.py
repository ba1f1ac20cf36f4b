#!/usr/bin/env python3
"""Make the model golden fixtures in tests/golden/model/ with torch + transformers (+ peft), on the CPU.

Not part of the product: it only writes reference values that the C++ tests compare against.

Writes, for two tiny random Qwen2 models that keep the real head dimension (128) and grouped-query
attention (several query heads per KV head):
  r1like/  qkv bias, untied embeddings (like DeepSeek-R1-Distill-Qwen), 2 layers
  tied/    tied embeddings, 1 layer
each with config.json + model.safetensors (bf16: the reference is computed in fp32 from those same
rounded values), and forward.safetensors: the packed input (ids, positions, cu_seqlens, targets) and the
logits and per-token losses. Packed references are made by running each sequence ALONE in transformers
and concatenating, so nothing trusts transformers' packed-position handling.

For r1like it also writes lora/: a PEFT adapter with non-zero B (adapter_init/), the micro-batches of 3
optimizer steps with gradient accumulation 2, and the expected loss of every step, the LoRA gradients of
the first step and the adapter after 3 AdamW steps with gradient clipping and a linear schedule.

Usage: python3 tools/make_golden.py [OUT_DIR]   (default tests/golden/model)
"""
import json
import math
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "model")
VOCAB = 320


def make_model(seed, tied, layers):
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=VOCAB, hidden_size=256, intermediate_size=256, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=128, max_position_embeddings=4096,
        rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=tied, use_sliding_window=False,
        sliding_window=4096, hidden_act="silu", bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16")
    cfg._attn_implementation = "eager"
    model = Qwen2ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))  # non-trivial norms
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))  # non-trivial biases
            else:
                p.copy_(torch.randn_like(p) * 0.06)
        # A few outlier channels of large magnitude, as real Qwen2 residual streams have.
        emb = model.model.embed_tokens.weight
        for ch in (3, 77, 200):
            emb[:, ch] *= 25.0
        # Round every weight to bf16 once; the reference uses exactly these rounded values in fp32.
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return cfg, model


def save_model(cfg, model, d):
    os.makedirs(d, exist_ok=True)
    m16 = Qwen2ForCausalLM(cfg)
    m16.load_state_dict(model.state_dict())
    m16 = m16.to(torch.bfloat16)
    m16.save_pretrained(d, safe_serialization=True)
    # Keep the folder small and predictable: config + weights only.
    for f in os.listdir(d):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(d, f))


def packed(seqs):
    ids, pos, tgt, cu = [], [], [], [0]
    for s in seqs:
        for i, t in enumerate(s):
            ids.append(t)
            pos.append(i)
            tgt.append(s[i + 1] if i + 1 < len(s) else -100)
        cu.append(len(ids))
    return ids, pos, tgt, cu


def forward_golden(model, seqs, d):
    ids, pos, tgt, cu = packed(seqs)
    logits = []
    with torch.no_grad():
        for s in seqs:  # each sequence alone
            out = model(input_ids=torch.tensor([s]))
            logits.append(out.logits[0].float())
    logits = torch.cat(logits, 0)
    t = torch.tensor(tgt)
    losses = torch.nn.functional.cross_entropy(logits, t.clamp(min=0), reduction="none")
    losses = torch.where(t >= 0, losses, torch.zeros_like(losses))
    save_file({
        "input_ids": torch.tensor(ids, dtype=torch.int32),
        "position_ids": torch.tensor(pos, dtype=torch.int32),
        "targets": torch.tensor(tgt, dtype=torch.int32),
        "cu_seqlens": torch.tensor(cu, dtype=torch.int32),
        "logits": logits.contiguous(),
        "losses": losses.contiguous(),
    }, os.path.join(d, "forward.safetensors"))
    n = int((t >= 0).sum())
    return float(losses.sum()) / n


def lora_golden(cfg, model, d):
    from peft import LoraConfig, get_peft_model, PeftModel

    torch.manual_seed(1234)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lcfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, bias="none",
                      task_type="CAUSAL_LM")
    pm = get_peft_model(model, lcfg)
    with torch.no_grad():  # non-zero B, so every gradient path is exercised from step 1
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.05)
    init_dir = os.path.join(d, "adapter_init")
    pm.save_pretrained(init_dir)
    for f in os.listdir(init_dir):
        if f not in ("adapter_config.json", "adapter_model.safetensors"):
            os.remove(os.path.join(init_dir, f))
    cfg_path = os.path.join(init_dir, "adapter_config.json")
    ac = json.load(open(cfg_path))
    ac["base_model_name_or_path"] = None
    json.dump(ac, open(cfg_path, "w"), indent=2)

    # 3 optimizer steps x 2 micro-batches; each micro-batch packs sequences; some positions are masked
    # (as a response-only loss mask would), by setting targets to -100.
    g = torch.Generator().manual_seed(7)
    steps = []
    for s in range(3):
        micro = []
        for m in range(2):
            lens = [int(x) for x in torch.randint(4, 24, (2,), generator=g)]
            seqs = [[int(x) for x in torch.randint(3, VOCAB, (n,), generator=g)] for n in lens]
            ids, pos, tgt, cu = packed(seqs)
            # mask the first 3 predictions of each sequence (a "prompt")
            for si in range(len(seqs)):
                for j in range(cu[si], min(cu[si] + 3, cu[si + 1])):
                    tgt[j] = -100
            micro.append(dict(input_ids=ids, position_ids=pos, targets=tgt, cu_seqlens=cu, seqs=seqs))
        steps.append(micro)

    params = [p for p in pm.parameters() if p.requires_grad]
    names = [n for n, p in pm.named_parameters() if p.requires_grad]
    lr, wd, max_norm, warmup, total = 1e-3, 0.01, 1.0, 1, 3
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    from transformers import get_linear_schedule_with_warmup
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total)
    # warmup 1 makes step 1's rate 0 (transformers' convention); step 2 and 3 then move the weights.
    losses, lrs, norms = [], [], []
    grads0 = None
    for s, micro in enumerate(steps):
        opt.zero_grad()
        n_items = sum(sum(1 for t in mb["targets"] if t >= 0) for mb in micro)
        loss_sum = 0.0
        for mb in micro:
            out_logits = []
            for si, seq in enumerate(mb["seqs"]):
                out_logits.append(pm(input_ids=torch.tensor([seq])).logits[0])
            logits = torch.cat(out_logits, 0)
            t = torch.tensor(mb["targets"])
            l = torch.nn.functional.cross_entropy(logits, t, ignore_index=-100, reduction="sum")
            (l / n_items).backward()
            loss_sum += float(l)
        losses.append(loss_sum / n_items)
        if s == 0:
            grads0 = {n: p.grad.detach().clone() for n, p in zip(names, params)}
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        norms.append(float(norm))
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    final = {n: p.detach().clone() for n, p in zip(names, params)}

    def peft_key(n):  # base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight -> PEFT file key
        return n.replace(".default", "")

    save_file({peft_key(n): v.contiguous() for n, v in grads0.items()}, os.path.join(d, "grads_step1.safetensors"))
    save_file({peft_key(n): v.contiguous() for n, v in final.items()}, os.path.join(d, "adapter_after3.safetensors"))
    json.dump(dict(
        lora=dict(r=4, alpha=8, dropout=0.0, target_modules=targets),
        optim=dict(lr=lr, weight_decay=wd, betas=[0.9, 0.999], eps=1e-8, max_grad_norm=max_norm,
                   scheduler="linear", warmup_steps=warmup, total_steps=total, grad_accum=2),
        steps=[[{k: v for k, v in mb.items() if k != "seqs"} for mb in micro] for micro in steps],
        expected=dict(loss=losses, lr=lrs, grad_norm=norms),
    ), open(os.path.join(d, "training.json"), "w"))
    return losses


def main():
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    summary = {}
    seqs = [[5, 17, 9, 250, 31, 8, 3, 111, 42, 7, 300, 12, 64],
            [99],
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23],
            [210, 45, 67, 3, 3, 3, 88]]
    for name, tied, layers, seed in [("r1like", False, 2, 0), ("tied", True, 1, 1)]:
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        cfg, model = make_model(seed, tied, layers)
        save_model(cfg, model, d)
        summary[name] = dict(mean_loss=forward_golden(model, seqs, d))
        if name == "r1like":
            summary[name]["lora_step_losses"] = lora_golden(cfg, model, os.path.join(d, "lora"))
    json.dump(summary, open(os.path.join(OUT, "summary.json"), "w"), indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
