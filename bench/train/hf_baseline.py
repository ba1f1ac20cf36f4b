"""The Hugging Face + PEFT LoRA baseline for bench_train, in the same settings and read the same way.

Model: the DeepSeek-R1-Distill-Qwen-1.5B shape (Qwen2, random init, bf16), SDPA attention, gradient
checkpointing, LoRA r=16 alpha=16 on the seven projections, torch fused AdamW, loss on all tokens.
  guide   batch 1, accumulation 4, the sequence lengths bench_train wrote (--lengths FILE), real tokens only
  packed  batch 4 x 2048
Memory: total - free from cudaMemGetInfo (CUDA context included), the maximum over the run: the same
reading as bench_train. Prints one JSON line per setting.

  python3 hf_baseline.py --config config.json --lengths lengths.json [--setting guide|packed|both] [--steps 8]
"""
import argparse
import json
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM


def used_gib():
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**30


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--lengths", required=True)
    ap.add_argument("--setting", default="both")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    c = json.load(open(a.config))
    cfg = Qwen2Config(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
                      num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
                      num_key_value_heads=c["num_key_value_heads"], max_position_embeddings=c["max_position_embeddings"],
                      rope_theta=c.get("rope_theta", 10000.0), rms_norm_eps=c["rms_norm_eps"],
                      tie_word_embeddings=c.get("tie_word_embeddings", False), use_sliding_window=False,
                      hidden_act="silu")
    lengths = json.load(open(a.lengths))
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).to(dtype=torch.bfloat16, device="cuda")
    model.config._attn_implementation = "sdpa"
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lcfg = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lcfg)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, fused=True)
    peak = used_gib()
    for setting in ("guide", "packed"):
        if a.setting not in ("both", setting):
            continue
        n_steps = a.warmup + a.steps
        g = torch.Generator(device="cpu").manual_seed(0)
        timed, tokens = 0.0, 0
        for step in range(n_steps):
            if setting == "guide":
                micro = [torch.randint(0, 151000, (1, lengths[step * 4 + i]), generator=g) for i in range(4)]
            else:
                micro = [torch.randint(0, 151000, (4, 2048), generator=g)]
            micro = [m.cuda() for m in micro]
            n_items = sum(m.numel() - m.shape[0] for m in micro)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for ids in micro:
                out = model(input_ids=ids, labels=ids)
                # sum over the micro-batch / items of the whole step, as cotune normalises
                (out.loss * (ids.numel() - ids.shape[0]) / n_items).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            peak = max(peak, used_gib())
            if step >= a.warmup:
                timed += dt
                tokens += sum(m.numel() for m in micro)
        print(json.dumps(dict(system="hf-peft-bf16-sdpa", setting=setting, grad_ckpt=True, tokens_per_step=tokens // a.steps,
                              step_s=round(timed / a.steps, 4), tokens_per_s=round(tokens / timed, 1),
                              peak_gib=round(peak, 2), gpu=torch.cuda.get_device_name())), flush=True)


if __name__ == "__main__":
    main()
