"""The Hugging Face + PEFT LoRA baseline for bench_train, in the same settings and read the same way.

Model: the DeepSeek-R1-Distill-Qwen-1.5B shape (Qwen2, random init, bf16), SDPA attention, gradient
checkpointing, LoRA r=16 alpha=16 on the seven projections, torch fused AdamW, loss on all tokens.
  guide   batch 1, accumulation 4, the sequence lengths bench_train wrote (--lengths FILE), real tokens only
  packed  batch 4 x 2048
  single  one sequence of --length L tokens (random ids, labels = the ids), batch 1, one optimizer step
          (0 warm-up and 1 timed step unless --warmup / --steps say otherwise): issue 8 (c), the longest
          sequence that trains. Exit status 0 trained, 3 out of GPU memory, 4 non-finite loss, 1 any other
          error; a JSON line {"ok": false, ...} is printed in every failing case.
Memory: total - free from cudaMemGetInfo (CUDA context included), the maximum over the run: the same
reading as bench_train. Prints one JSON line per setting.

  python3 hf_baseline.py --config config.json --lengths lengths.json [--setting guide|packed|both] [--steps 8]
  python3 hf_baseline.py --config config.json --setting single --length 32768
(--device cpu runs on the CPU, for testing the script with a tiny config; memory then reads 0.)
"""
import argparse
import json
import math
import sys
import time
import traceback

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

EXIT_ERROR, EXIT_OOM, EXIT_NONFINITE = 1, 3, 4


def used_gib(device):
    if device != "cuda":
        return 0.0
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**30


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def gpu_name(device):
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def is_oom(e):
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e)
    return "out of memory" in msg or "CUBLAS_STATUS_ALLOC_FAILED" in msg


def make_config(c):
    heads = c["num_attention_heads"]
    return Qwen2Config(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
                       num_hidden_layers=c["num_hidden_layers"], num_attention_heads=heads,
                       num_key_value_heads=c["num_key_value_heads"], max_position_embeddings=c["max_position_embeddings"],
                       head_dim=c.get("head_dim", c["hidden_size"] // heads),
                       rope_theta=c.get("rope_theta", (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)),
                       rms_norm_eps=c["rms_norm_eps"], tie_word_embeddings=c.get("tie_word_embeddings", False),
                       use_sliding_window=False, hidden_act="silu")


def build(cfg, device, on_device_init):
    """Qwen2 (bf16, SDPA, gradient checkpointing) + PEFT LoRA r=16 on the seven projections, and its optimizer."""
    torch.manual_seed(0)
    if on_device_init:
        # The single setting starts one process per length: build the bf16 weights on the device directly (seconds,
        # where a CPU fp32 init takes tens of seconds); the values are random either way. As with
        # from_pretrained(dtype=bfloat16), the rotary inv_freq buffer stays fp32 (a .to(bfloat16) of the whole
        # model, as below, rounds it to bf16: no cost difference, but coarse angles at long positions).
        prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.device(device):
                model = Qwen2ForCausalLM(cfg)
        finally:
            torch.set_default_dtype(prev)
    else:
        model = Qwen2ForCausalLM(cfg).to(dtype=torch.bfloat16, device=device)
    model.config._attn_implementation = "sdpa"
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lcfg = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lcfg)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, fused=True)
    return model, params, opt


def run_single(a, cfg, vocab):
    """One sequence of a.length tokens: a.warmup + a.steps optimizer steps; one JSON line; exit status."""
    dev = a.device
    phase = "building the model"
    peak = 0.0
    try:
        t0 = time.perf_counter()
        model, params, opt = build(cfg, dev, on_device_init=True)
        load_s = time.perf_counter() - t0
        peak = used_gib(dev)
        g = torch.Generator(device="cpu").manual_seed(0)
        timed, loss = 0.0, float("nan")
        for step in range(a.warmup + a.steps):
            ids = torch.randint(0, min(vocab, 151000), (1, a.length), generator=g).to(dev)
            sync(dev)
            t0 = time.perf_counter()
            phase = f"step {step}: forward + backward of {a.length} tokens"
            out = model(input_ids=ids, labels=ids)
            out.loss.backward()
            phase = f"step {step}: optimizer update"
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss = out.loss.item()
            del out
            sync(dev)
            dt = time.perf_counter() - t0
            peak = max(peak, used_gib(dev))
            if not math.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss} at step {step}")
            if step >= a.warmup:
                timed += dt
        row = dict(system="hf-peft-bf16-sdpa", setting="single", ok=True, length=a.length, grad_ckpt=True,
                   loss=round(loss, 4), step_s=round(timed / a.steps, 4), tokens_per_s=round(a.length * a.steps / timed, 1),
                   peak_gib=round(peak, 2), load_s=round(load_s, 1), gpu=gpu_name(dev))
        if dev == "cuda":
            row["torch_max_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            row["gpu_total_gib"] = round(torch.cuda.mem_get_info()[1] / 2**30, 2)
        print(json.dumps(row), flush=True)
        return 0
    except Exception as e:  # noqa: BLE001 - every failure is reported as a JSON line with its kind
        oom = is_oom(e)
        nonfinite = isinstance(e, FloatingPointError)
        try:
            used_now = used_gib(dev)
        except Exception:  # noqa: BLE001 - a broken CUDA context must not hide the original error
            used_now = 0.0
        kind = "out of GPU memory" if oom else "non-finite loss" if nonfinite else "error"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(json.dumps(dict(system="hf-peft-bf16-sdpa", setting="single", ok=False, length=a.length, oom=oom,
                              failure=kind, phase=phase, error=f"{type(e).__name__}: {msg}"[:2000],
                              peak_gib=round(peak, 2), used_gib_at_failure=round(used_now, 2))), flush=True)
        print(f"hf_baseline: single sequence of {a.length} tokens does not train: {kind} while {phase}: "
              f"{type(e).__name__}: {msg}", file=sys.stderr)
        if not oom and not nonfinite:
            traceback.print_exc()
        return EXIT_OOM if oom else EXIT_NONFINITE if nonfinite else EXIT_ERROR


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--lengths", help="the guide setting's lengths (bench_train --lengths-out)")
    ap.add_argument("--setting", default="both", choices=["guide", "packed", "both", "single"])
    ap.add_argument("--length", type=int, default=0, help="single: tokens of the one sequence")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 8; single: 1)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; single: 0)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = ap.parse_args()
    single = a.setting == "single"
    if a.steps is None:
        a.steps = 1 if single else 8
    if a.warmup is None:
        a.warmup = 0 if single else 2
    if a.steps < 1 or a.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    if single and a.length < 2:
        ap.error("--setting single needs --length L (at least 2 tokens)")
    if a.setting in ("guide", "both") and not a.lengths:
        ap.error("the guide setting needs --lengths FILE (bench_train --lengths-out)")
    c = json.load(open(a.config))
    cfg = make_config(c)
    vocab = c["vocab_size"]
    if single:
        sys.exit(run_single(a, cfg, vocab))
    dev = a.device
    lengths = json.load(open(a.lengths)) if a.lengths else []
    model, params, opt = build(cfg, dev, on_device_init=False)
    peak = used_gib(dev)
    for setting in ("guide", "packed"):
        if a.setting not in ("both", setting):
            continue
        n_steps = a.warmup + a.steps
        g = torch.Generator(device="cpu").manual_seed(0)
        timed, tokens = 0.0, 0
        for step in range(n_steps):
            if setting == "guide":
                micro = [torch.randint(0, min(vocab, 151000), (1, lengths[step * 4 + i]), generator=g) for i in range(4)]
            else:
                micro = [torch.randint(0, min(vocab, 151000), (4, 2048), generator=g)]
            micro = [m.to(dev) for m in micro]
            n_items = sum(m.numel() - m.shape[0] for m in micro)
            sync(dev)
            t0 = time.perf_counter()
            for ids in micro:
                out = model(input_ids=ids, labels=ids)
                # sum over the micro-batch / items of the whole step, as cotune normalises
                (out.loss * (ids.numel() - ids.shape[0]) / n_items).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync(dev)
            dt = time.perf_counter() - t0
            peak = max(peak, used_gib(dev))
            if step >= a.warmup:
                timed += dt
                tokens += sum(m.numel() for m in micro)
        print(json.dumps(dict(system="hf-peft-bf16-sdpa", setting=setting, grad_ckpt=True, tokens_per_step=tokens // a.steps,
                              step_s=round(timed / a.steps, 4), tokens_per_s=round(tokens / timed, 1),
                              peak_gib=round(peak, 2), gpu=gpu_name(dev))), flush=True)


if __name__ == "__main__":
    main()
