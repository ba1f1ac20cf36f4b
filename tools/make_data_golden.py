#!/usr/bin/env python3
"""Golden token ids for the data pipeline tests (tests/data/dataset_test.cpp).

For every record of the medical-o1 fixtures, formats the training text exactly as the guide / seed script does
(template + tokenizer.eos_token), encodes it with the Hugging Face `tokenizers` library (add_special_tokens=True,
so the post-processor prepends BOS 151646), and records how many leading tokens belong to the inference prompt
(tokens whose character span ends at or before the prompt's end; the BOS added by the post-processor counts as
prompt; a token straddling the boundary counts as response, as in cotune).

Usage: python3 tools/make_data_golden.py [--fixtures ../shared/fixtures] [--out tests/golden/data]
Needs: pip package `tokenizers` (tested with 0.23.3).
"""
import argparse
import hashlib
import json
import os

import tokenizers

# The same texts as src/text/template.cpp (checked against GUIDE.md / seed_prompt_templates.json by
# tests/text/template_test.cpp). Python str.format slots are named after the dataset fields.
EN_PROMPT = (
    "Below is an instruction that describes a task.\n"
    "Please carefully reason step by step before answering.\n"
    "\n"
    "### Instruction:\n"
    "You are a medical expert specializing in clinical reasoning, diagnosis, and treatment planning.\n"
    "\n"
    "### Question:\n"
    "{Question}\n"
    "\n"
    "### Response:\n"
    "<think>\n"
)
TAIL = "{Complex_CoT}\n</think>\n{Response}"


def zh_prompt_from_seed(seed_path):
    """The seed script's train_prompt_style without its 24-space indentation, cut after '<think>\\n'."""
    with open(seed_path, encoding="utf-8") as f:
        seed = json.load(f)["seed_unsloth_qwen1.5b_zh"]["train_prompt_style"]
    clean = seed.replace("\n" + " " * 24, "\n")
    head = clean[: clean.index("<think>\n") + len("<think>\n")]
    return head.replace("{}", "{Question}", 1)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(here, "..", "..", "shared", "fixtures"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "golden", "data"))
    args = ap.parse_args()

    tok_path = os.path.join(args.fixtures, "deepseek-r1-distill-qwen-1.5b", "tokenizer.json")
    tok = tokenizers.Tokenizer.from_file(tok_path)
    eos = "<｜end▁of▁sentence｜>"
    assert tok.token_to_id(eos) == 151643

    templates = {
        "medical-o1-en": EN_PROMPT,
        "medical-o1-zh": zh_prompt_from_seed(os.path.join(args.fixtures, "medical-o1", "seed_prompt_templates.json")),
    }
    sources = [
        ("medical-o1/medical_o1_sft_en_first10.json", "medical-o1-en"),
        ("medical-o1/medical_o1_sft_Chinese_first1.json", "medical-o1-zh"),
    ]
    out = {
        "tokenizers_version": tokenizers.__version__,
        "tokenizer_sha256": hashlib.sha256(open(tok_path, "rb").read()).hexdigest(),
        "records": [],
    }
    for rel, tname in sources:
        with open(os.path.join(args.fixtures, rel), encoding="utf-8") as f:
            rows = json.load(f)
        prompt_tpl = templates[tname]
        for i, row in enumerate(rows):
            prompt = prompt_tpl.format(Question=row["Question"])
            text = (prompt_tpl + TAIL).format(**row) + eos
            assert text.startswith(prompt)
            enc = tok.encode(text)  # add_special_tokens=True: BOS from the post-processor
            n_prompt = 0
            for k, (tid, (s, e)) in enumerate(zip(enc.ids, enc.offsets)):
                if enc.special_tokens_mask[k] and k == 0:
                    n_prompt = 1  # BOS added by the post-processor
                    continue
                if e <= len(prompt):
                    n_prompt = k + 1
                else:
                    break
            prompt_only = tok.encode(prompt).ids
            out["records"].append({
                "file": rel,
                "index": i,
                "template": tname,
                "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "prompt_tokens": n_prompt,
                "ids": enc.ids,
                "prompt_ids": prompt_only,
            })
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "medical_o1_token_ids.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    n = sum(len(r["ids"]) for r in out["records"])
    print(f"wrote {path}: {len(out['records'])} records, {n} tokens")


if __name__ == "__main__":
    main()
