#!/usr/bin/env python3
"""The guide's whole training job in transformers + PEFT + bitsandbytes, timed from launch: what `cotune train` of
recipes/medical-o1-en.toml does, for bench/train/job.sh (issue 19 f).

  python3 bench/train/hf_job.py --model MODEL_DIR --data RECORDS.json --out OUT_DIR [--steps 60]

Model: a local folder (safetensors + tokenizer). 4-bit NF4 base with double quantization and bf16 compute
(BitsAndBytesConfig, as Unsloth's load_in_4bit), LoRA r 16 / alpha 16 / dropout 0 on the seven projections, gradient
checkpointing, bnb AdamW 8-bit (lr 2e-4, weight decay 0.01), linear schedule with 5 warm-up steps, gradient clipping
1.0, batch 1 x accumulation 4, max length 2048, loss on every token (the recipe's loss_on = "all"), the records in
order, cycled. Text: the guide's training prompt (cotune's built-in medical-o1-en template) + the tokenizer's EOS.
Saves the adapter (save_pretrained) at the end. Prints one JSON line: seconds from the interpreter's start to the
model being ready, to the first optimizer step, and to the saved adapter; the loss of the first and last steps.
"""
import argparse
import json
import os
import sys
import time

T0 = time.time()  # as close to launch as Python allows (imports follow)

# The guide's training text: the prompt and tail tools/make_data_golden.py holds (the texts of src/text/template.cpp).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from make_data_golden import EN_PROMPT, TAIL  # noqa: E402

PROMPT = EN_PROMPT + TAIL


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="JSON array or JSON Lines of {Question, Complex_CoT, Response}")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--launch-time", type=float, help="epoch seconds the caller launched this process at")
    a = ap.parse_args()
    t_launch = a.launch_time or T0
    import torch
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, get_linear_schedule_with_warmup

    text = open(a.data, encoding="utf-8").read().strip()
    records = json.loads(text) if text.startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    tok = AutoTokenizer.from_pretrained(a.model)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(a.model, quantization_config=q, dtype=torch.bfloat16,
                                                 device_map={"": 0})
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"]))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = bnb.optim.AdamW8bit(params, lr=2e-4, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, 5, a.steps)
    torch.cuda.synchronize()
    t_ready = time.time()
    seqs = []
    for r in records:
        ids = tok(PROMPT.format(**r) + tok.eos_token, add_special_tokens=True)["input_ids"][:2048]
        seqs.append(torch.tensor([ids], device="cuda"))
    t_first, losses, k = None, [], 0
    for step in range(a.steps):
        total = 0.0
        for _ in range(4):
            ids = seqs[k % len(seqs)]
            k += 1
            out = model(input_ids=ids, labels=ids)
            (out.loss / 4).backward()
            total += float(out.loss.detach()) / 4
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total)
        if t_first is None:
            torch.cuda.synchronize()
            t_first = time.time()
    model.save_pretrained(a.out)
    t_done = time.time()
    print(json.dumps({"system": "hf-peft-bnb", "steps": a.steps, "records": len(records),
                      "ready_s": round(t_ready - t_launch, 2), "first_step_s": round(t_first - t_launch, 2),
                      "total_s": round(t_done - t_launch, 2), "first_loss": round(losses[0], 4),
                      "last_loss": round(losses[-1], 4), "gpu": torch.cuda.get_device_name(0)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
