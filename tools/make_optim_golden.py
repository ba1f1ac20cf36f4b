#!/usr/bin/env python3
"""Makes tests/golden/optim/: torch.optim.AdamW steps, torch.nn.utils.clip_grad_norm_, bitsandbytes AdamW8bit
steps (bnb's CPU backend: 8-bit blockwise state for tensors >= 4096 elements, fp32 state below), and the
learning-rate schedules of transformers (linear, cosine, constant, constant_with_warmup).

Usage: python3 tools/make_optim_golden.py [out_dir]     (needs torch, bitsandbytes, transformers, safetensors)
"""
import json
import math
import os
import sys

import torch
import bitsandbytes as bnb
import transformers
from transformers.optimization import (get_constant_schedule, get_constant_schedule_with_warmup,
                                       get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup)
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "optim")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(4321)
tensors = {}
manifest = {"generator": "tools/make_optim_golden.py", "torch": torch.__version__, "bitsandbytes": bnb.__version__,
            "transformers": transformers.__version__}

# ---- torch AdamW (single-tensor path, the CPU default) ----------------------------------------------------
adamw_cases = []
for ci, (betas, eps, wds) in enumerate([((0.9, 0.999), 1e-8, (0.01, 0.0)), ((0.3, 0.95), 1e-6, (0.1, 0.5))]):
    shapes = {"a": (37,), "b": (32, 48), "c": (2100,)}
    params = {k: torch.nn.Parameter(torch.randn(*s) * 0.1) for k, s in shapes.items()}
    name = f"adamw{ci}"
    for k, p in params.items():
        tensors[f"{name}.{k}.init"] = p.detach().clone()
    opt = torch.optim.AdamW([{"params": [params["a"], params["b"]], "weight_decay": wds[0]},
                             {"params": [params["c"]], "weight_decay": wds[1]}],
                            lr=1e-3, betas=betas, eps=eps, foreach=False)
    lrs = [1e-3, 8e-4, 2e-3, 5e-4, 1e-3, 3e-4]
    for step, lr in enumerate(lrs, start=1):
        for gr in opt.param_groups:
            gr["lr"] = lr
        for k, p in params.items():
            g = torch.randn(*shapes[k]) * (0.05 if k != "c" else 2.0)
            p.grad = g
            tensors[f"{name}.{k}.grad{step}"] = g.clone()
        opt.step()
        for k, p in params.items():
            if k == "a" or step == len(lrs):  # every step for the small one, the last step for all
                tensors[f"{name}.{k}.param{step}"] = p.detach().clone()
    for k, p in params.items():
        tensors[f"{name}.{k}.exp_avg"] = opt.state[p]["exp_avg"].clone()
        tensors[f"{name}.{k}.exp_avg_sq"] = opt.state[p]["exp_avg_sq"].clone()
    adamw_cases.append({"name": name, "betas": list(betas), "eps": eps, "weight_decay": {"a": wds[0], "b": wds[0], "c": wds[1]},
                        "lrs": lrs, "params": {k: list(s) for k, s in shapes.items()}})
manifest["adamw"] = adamw_cases

# ---- clip_grad_norm_ ----------------------------------------------------------------------------------------
clip_cases = []
for ci, max_norm in enumerate([1.0, 1e3, 0.05]):
    gs = [torch.randn(37) * 0.3, torch.randn(32, 48) * 0.04, torch.randn(1000) * 0.1]
    ps = [torch.nn.Parameter(torch.zeros_like(g)) for g in gs]
    for i, (p, g) in enumerate(zip(ps, gs)):
        p.grad = g.clone()
        tensors[f"clip{ci}.grad{i}"] = g.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
    for i, p in enumerate(ps):
        tensors[f"clip{ci}.clipped{i}"] = p.grad.clone()
    tensors[f"clip{ci}.total_norm"] = total.reshape(1).float()
    clip_cases.append({"name": f"clip{ci}", "max_norm": max_norm, "total_norm": float(total), "count": len(gs)})
manifest["clip"] = clip_cases

# ---- bitsandbytes AdamW8bit (CPU backend) ---------------------------------------------------------------------
big = torch.nn.Parameter(torch.randn(64, 80) * 0.05)     # 5120 >= 4096: 8-bit blockwise state, 20 blocks
small = torch.nn.Parameter(torch.randn(300) * 0.05)      # < 4096: fp32 state (bnb's 32-bit update)
tensors["adamw8bit.big.init"] = big.detach().clone()
tensors["adamw8bit.small.init"] = small.detach().clone()
opt8 = bnb.optim.AdamW8bit([big, small], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
lrs8 = [1e-3, 2e-3, 1e-3, 5e-4, 1e-3]
for step, lr in enumerate(lrs8, start=1):
    for gr in opt8.param_groups:
        gr["lr"] = lr
    gb = torch.randn(64, 80) * 0.01
    gb[0, :5] = 0.3  # a few large gradients: their blocks get a large absmax
    gsm = torch.randn(300) * 0.01
    big.grad = gb
    small.grad = gsm
    tensors[f"adamw8bit.big.grad{step}"] = gb.clone()
    tensors[f"adamw8bit.small.grad{step}"] = gsm.clone()
    opt8.step()
    st = opt8.state[big]
    assert st["state1"].dtype == torch.uint8 and opt8.state[small]["state1"].dtype == torch.float32
    tensors[f"adamw8bit.big.param{step}"] = big.detach().clone()
    tensors[f"adamw8bit.big.state1_{step}"] = st["state1"].clone()
    tensors[f"adamw8bit.big.absmax1_{step}"] = st["absmax1"].clone()
    tensors[f"adamw8bit.big.state2_{step}"] = st["state2"].clone()
    tensors[f"adamw8bit.big.absmax2_{step}"] = st["absmax2"].clone()
    tensors[f"adamw8bit.small.param{step}"] = small.detach().clone()
    tensors[f"adamw8bit.small.state1_{step}"] = opt8.state[small]["state1"].clone()
    tensors[f"adamw8bit.small.state2_{step}"] = opt8.state[small]["state2"].clone()
manifest["adamw8bit"] = {"lrs": lrs8, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01,
                         "big_shape": [64, 80], "small_shape": [300], "min_8bit_size": 4096, "blocksize": 256,
                         "note": "bnb CPU backend: state requantized with the native LUT quantizer"}

# ---- schedules (transformers) ---------------------------------------------------------------------------------
sched = []
base_lr = 2e-4
for kind, total, warmup in [("linear", 100, 10), ("linear", 50, 0), ("cosine", 100, 10), ("cosine", 37, 0),
                            ("cosine", 20, 25), ("constant", 30, 0), ("constant_with_warmup", 40, 7), ("linear", 1, 1)]:
    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    if kind == "linear":
        s = get_linear_schedule_with_warmup(dummy, warmup, total)
    elif kind == "cosine":
        s = get_cosine_schedule_with_warmup(dummy, warmup, total)
    elif kind == "constant":
        s = get_constant_schedule(dummy)
    else:
        s = get_constant_schedule_with_warmup(dummy, warmup)
    lrs = []
    for _ in range(total + 3):  # the lr each optimizer step uses, and a few past the end
        lrs.append(dummy.param_groups[0]["lr"])
        dummy.step()
        s.step()
    sched.append({"kind": kind, "total_steps": total, "warmup_steps": warmup, "base_lr": base_lr, "lrs": lrs})
manifest["schedules"] = sched
warm = []
for total, w in [(1000, 0.03), (55, 0.1), (7, 0.5), (100, 0.0), (100, 20), (333, 0.07)]:
    args = transformers.TrainingArguments(output_dir="/tmp/unused_cotune_golden", warmup_steps=w, report_to=[])
    warm.append({"total_steps": total, "warmup": w, "warmup_steps": args.get_warmup_steps(total)})
manifest["warmup_resolution"] = warm

save_file(tensors, os.path.join(OUT, "optim_golden.safetensors"))
with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
print("bytes", os.path.getsize(os.path.join(OUT, "optim_golden.safetensors")))
