#!/usr/bin/env python3
"""Check that an adapter folder written by cotune loads in peft exactly: every key used, none missing.

Usage: python3 tools/check_peft_adapter.py MODEL_DIR ADAPTER_DIR

Loads the base with transformers (fp32), then the adapter with `peft.PeftModel.from_pretrained`, and fails
(exit 1) when
  - peft warns about missing or unexpected adapter keys (warnings are captured), or
  - the set of keys in adapter_model.safetensors differs from the LoRA state dict peft builds for this base
    from adapter_config.json (compared with peft's own get_peft_model_state_dict), or
  - a loaded LoRA tensor differs from the file's.
Then prints logits statistics on a few inputs: base vs base + adapter (the adapter's effect; an adapter
with B = 0 moves nothing).

Not part of the product: a cross-check that cotune's PEFT export is what peft reads.
"""
import logging
import os
import sys
import warnings

import torch
from safetensors.torch import load_file


def inputs_for(model_dir, adapter_dir, vocab):
    """A few token sequences: the tokenizer's encoding of fixed texts when there is one, else seeded ids."""
    texts = ["A 45-year-old man presents with chest pain radiating to the left arm.",
             "What is the first-line treatment for uncomplicated hypertension?",
             "<think>\nThe patient is febrile.\n</think>\nAnswer: start antibiotics."]
    for d in (model_dir, adapter_dir):
        if os.path.exists(os.path.join(d, "tokenizer.json")):
            try:
                from transformers import AutoTokenizer
                tok = AutoTokenizer.from_pretrained(d)
                seqs = [tok(t, return_tensors="pt").input_ids for t in texts]
                if all(int(s.max()) < vocab for s in seqs):
                    return seqs, f"tokenizer of {d}"
            except Exception as e:  # fall back to ids
                print(f"(tokenizer in {d} not usable: {e})")
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (1, n), generator=g) for n in (7, 19, 33)], "seeded random ids"


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    model_dir, adapter_dir = sys.argv[1], sys.argv[2]
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    problems = []
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab = base.config.vocab_size
    seqs, source = inputs_for(model_dir, adapter_dir, vocab)
    with torch.no_grad():
        base_logits = [base(s).logits.float() for s in seqs]

    # Capture both warnings.warn and logging records from peft / transformers while loading.
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Collect()
    for name in ("peft", "transformers"):
        logging.getLogger(name).addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, adapter_dir).eval()
    for name in ("peft", "transformers"):
        logging.getLogger(name).removeHandler(handler)
    messages = [str(w.message) for w in caught] + records
    for m in messages:
        low = m.lower()
        if "missing" in low or "unexpected" in low or "not found" in low or "mismatch" in low:
            problems.append(f"peft warned: {m.strip()[:500]}")
        else:
            print(f"(note while loading: {m.strip()[:200]})")

    file_sd = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    peft_sd = get_peft_model_state_dict(model)
    missing = sorted(set(peft_sd) - set(file_sd))
    unexpected = sorted(set(file_sd) - set(peft_sd))
    if missing:
        problems.append(f"{len(missing)} LoRA keys peft expects are missing from the file, e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} keys in the file peft does not use, e.g. {unexpected[:3]}")
    max_value_diff = 0.0
    for k in sorted(set(file_sd) & set(peft_sd)):
        d = (file_sd[k].float() - peft_sd[k].float().cpu()).abs().max().item()
        max_value_diff = max(max_value_diff, d)
    if max_value_diff != 0.0:
        problems.append(f"loaded LoRA tensors differ from the file by up to {max_value_diff}")
    nonzero_b = sum(1 for k, v in file_sd.items() if "lora_B" in k and v.abs().max() > 0)
    n_b = sum(1 for k in file_sd if "lora_B" in k)

    cfg = model.peft_config["default"]
    print(f"base: {model_dir} ({base.config.model_type}, {base.config.num_hidden_layers} layers, vocab {vocab})")
    print(f"adapter: {adapter_dir}: r={cfg.r} alpha={cfg.lora_alpha} targets={sorted(cfg.target_modules)}")
    print(f"keys: {len(file_sd)} in file, {len(peft_sd)} expected by peft, missing {len(missing)}, "
          f"unexpected {len(unexpected)}; loaded values identical: {max_value_diff == 0.0}; "
          f"lora_B non-zero in {nonzero_b}/{n_b}")
    print(f"inputs: {len(seqs)} sequences ({source}), lengths {[int(s.shape[1]) for s in seqs]}")
    with torch.no_grad():
        for i, s in enumerate(seqs):
            lo = model(s).logits.float()
            b = base_logits[i]
            print(f"  seq {i}: logits mean {lo.mean():+.4f} std {lo.std():.4f} max|.| {lo.abs().max():.4f}; "
                  f"adapter effect max|d| {(lo - b).abs().max():.4f}; argmax changed at "
                  f"{int((lo.argmax(-1) != b.argmax(-1)).sum())}/{lo.shape[1]} positions")
    if problems:
        for p in problems:
            print(f"FAIL: {p}")
        return 1
    print("OK: peft loads the adapter with no missing or unexpected keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
