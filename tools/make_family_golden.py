#!/usr/bin/env python3
"""Make the per-family golden fixtures in tests/golden/families/ with torch + transformers + peft, on the CPU.

Not part of the product: it only writes reference values that tests/model/family_test.cpp compares against.

One tiny random model per decoder family cotune implements, each exercising what makes the family differ:
  qwen25       Qwen2.5: q/k/v bias, tied embeddings, rope base 1e6, sliding-window keys present but off
  llama3       Llama 3.1: no biases, rope_scaling llama3 (an original context short enough that all three
               frequency bands occur at head_dim 32), untied
  llama_tied   Llama (SmolLM / Llama 3.2 style): tied embeddings, rope base 1e5, rope_scaling linear x2
  llama_bias   Llama with attention_bias (q/k/v and o) and mlp_bias, 1 layer
  qwen3        Qwen3: q_norm / k_norm before rope, no bias, head_dim 64 != hidden 128 / 4 heads
  mistral      Mistral: no bias, sliding_window 8 (shorter than the test sequences, so it matters)
Each folder holds config.json + model.safetensors (bf16; the references are computed in fp32 from those same
rounded values) and
  forward.safetensors   a packed batch (ids, positions, cu_seqlens, targets) with the logits and per-token
                        losses of each sequence run ALONE in transformers (eager attention), concatenated
  lora/adapter_init/    a PEFT adapter (r 4, alpha 8, all seven projections) with non-zero B
  lora/grads.safetensors  the LoRA gradients of (sum of the batch's token losses) / (counted tokens), PEFT keys
  lora/loss.json        that loss
  generate.json         greedy continuations (12 new tokens, no EOS id: every id may be generated) of three prompts, base and with the adapter

Usage: python3 tools/make_family_golden.py [OUT_DIR]   (default tests/golden/families)
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
import transformers as tf

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "families")
VOCAB = 320
COMMON = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=4096, rms_norm_eps=1e-6, hidden_act="silu", bos_token_id=1, eos_token_id=2)

FAMILIES = {
    "qwen25": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(
        num_hidden_layers=2, rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False,
        sliding_window=16, max_window_layers=1)),
    "llama3": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(
        num_hidden_layers=2, rope_theta=500000.0, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=64))),
    "llama_tied": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(
        num_hidden_layers=2, rope_theta=100000.0, tie_word_embeddings=True,
        rope_scaling=dict(rope_type="linear", factor=2.0))),
    "llama_bias": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(
        num_hidden_layers=1, rope_theta=10000.0, tie_word_embeddings=False, attention_bias=True, mlp_bias=True)),
    "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, dict(
        num_hidden_layers=2, head_dim=64, rope_theta=1000000.0, tie_word_embeddings=False, attention_bias=False,
        use_sliding_window=False, sliding_window=None, max_window_layers=2)),
    "mistral": (tf.MistralConfig, tf.MistralForCausalLM, dict(
        num_hidden_layers=2, rope_theta=10000.0, tie_word_embeddings=False, sliding_window=8)),
}

SEQS = [[5, 17, 9, 250, 31, 8, 3, 111, 42, 7, 300, 12, 64],
        [99],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23],
        [210, 45, 67, 3, 3, 3, 88]]
PROMPTS = [[1, 5, 17, 42, 99], [1, 200, 3], [1, 7, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15, 250, 251, 252, 31]]
NEW = 12
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_model(name, seed):
    cfg_cls, model_cls, extra = FAMILIES[name]
    torch.manual_seed(seed)
    cfg = cfg_cls(**COMMON, **extra)
    cfg._attn_implementation = "eager"
    model = model_cls(cfg).float().eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))  # non-trivial norms (q_norm / k_norm too)
            elif n.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.08)
        for p in model.parameters():  # the reference uses exactly the bf16-rounded values, in fp32
            p.copy_(p.to(torch.bfloat16).float())
    return cfg, model_cls, model


def save_model(cfg, model_cls, model, d):
    os.makedirs(d, exist_ok=True)
    m16 = model_cls(cfg)
    m16.load_state_dict(model.state_dict())
    m16.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
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


def logits_alone(model, seqs):
    return torch.cat([model(input_ids=torch.tensor([s])).logits[0].float() for s in seqs], 0)


def forward_golden(model, d):
    ids, pos, tgt, cu = packed(SEQS)
    with torch.no_grad():
        logits = logits_alone(model, SEQS)
    t = torch.tensor(tgt)
    losses = torch.nn.functional.cross_entropy(logits, t.clamp(min=0), reduction="none")
    losses = torch.where(t >= 0, losses, torch.zeros_like(losses))
    save_file({"input_ids": torch.tensor(ids, dtype=torch.int32), "position_ids": torch.tensor(pos, dtype=torch.int32),
               "targets": torch.tensor(tgt, dtype=torch.int32), "cu_seqlens": torch.tensor(cu, dtype=torch.int32),
               "logits": logits.contiguous(), "losses": losses.contiguous()}, os.path.join(d, "forward.safetensors"))
    return float(losses.sum()) / int((t >= 0).sum())


def greedy(model, prompts):
    # No EOS: exactly NEW tokens each (the test's generator gets no EOS ids either). min_new_tokens would instead
    # forbid the EOS id, which changes the arg-max.
    model.generation_config.eos_token_id = None
    outs = []
    for p in prompts:
        ids = torch.tensor([p])
        with torch.no_grad():
            g = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW,
                               pad_token_id=0, top_k=None, top_p=None, temperature=None)
        outs.append(g[0, len(p):].tolist())
    return outs


def lora_golden(model, d):
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(1234)
    pm = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, bias="none",
                                          task_type="CAUSAL_LM"))
    with torch.no_grad():
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
    # The forward golden's batch, with the first 3 predictions of each sequence masked (a prompt).
    ids, pos, tgt, cu = packed(SEQS)
    for si in range(len(SEQS)):
        for j in range(cu[si], min(cu[si] + 3, cu[si + 1])):
            tgt[j] = -100
    t = torch.tensor(tgt)
    n = int((t >= 0).sum())
    logits = logits_alone(pm, SEQS)
    loss = torch.nn.functional.cross_entropy(logits, t, ignore_index=-100, reduction="sum") / n
    loss.backward()
    grads = {name.replace(".default", ""): p.grad.detach().clone().contiguous()
             for name, p in pm.named_parameters() if p.requires_grad}
    save_file(grads, os.path.join(d, "grads.safetensors"))
    json.dump(dict(loss=float(loss), input_ids=ids, position_ids=pos, targets=tgt, cu_seqlens=cu),
              open(os.path.join(d, "loss.json"), "w"))
    pm.eval()
    with torch.no_grad():
        for p in pm.parameters():
            p.grad = None
    return pm, float(loss)


def main():
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    summary = {"transformers": tf.__version__, "torch": torch.__version__}
    for seed, name in enumerate(FAMILIES):
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        cfg, model_cls, model = make_model(name, seed)
        save_model(cfg, model_cls, model, d)
        mean_loss = forward_golden(model, d)
        base = greedy(model, PROMPTS)
        pm, lora_loss = lora_golden(model, os.path.join(d, "lora"))
        with_lora = greedy(pm, PROMPTS)
        json.dump(dict(prompts=PROMPTS, max_new_tokens=NEW, base=base, lora=with_lora),
                  open(os.path.join(d, "generate.json"), "w"), indent=1)
        summary[name] = dict(mean_loss=mean_loss, lora_loss=lora_loss)
        print(name, summary[name], flush=True)
    json.dump(summary, open(os.path.join(OUT, "summary.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
