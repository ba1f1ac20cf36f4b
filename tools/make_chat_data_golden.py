#!/usr/bin/env python3
"""Goldens for conversational datasets (tests/data/chat_data_test.cpp): TRL's SFTTrainer with
assistant_only_loss=True on `messages` records, with the DeepSeek-R1-Distill-Qwen tokenizer of tests/fixtures.

    /tmp/venv/bin/pip install transformers jinja2 trl tokenizers torch datasets accelerate
    /tmp/venv/bin/python tools/make_chat_data_golden.py

TRL swaps in its training variant of the DeepSeek template (generation blocks, reasoning kept in assistant turns),
then tokenizes with apply_chat_template(return_assistant_tokens_mask=True). We record what its prepared dataset
holds: input_ids and labels per record (assistant_masks = labels != -100; TRL folds the mask into the labels). The model is a tiny random Qwen2 (SFTTrainer needs one; only the
data preparation is used).

Writes tests/golden/data/trl_assistant_masks.jsonl: {"messages": [...], "input_ids": [...],
"assistant_masks": [...]} per record.
"""
import json
import tempfile
from pathlib import Path

from datasets import Dataset
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
from trl import SFTConfig, SFTTrainer

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "deepseek-r1-distill-qwen-1.5b"
MEDICAL = ROOT / "tests" / "fixtures" / "medical-o1" / "medical_o1_sft_en_first10.json"
OUT = ROOT / "tests" / "golden" / "data" / "trl_assistant_masks.jsonl"


def medical_messages(rec):
    # The same mapping cotune uses for medical-o1 records with --template chat.
    return [{"role": "user", "content": rec["Question"]},
            {"role": "assistant",
             "content": "<think>\n" + rec["Complex_CoT"] + "\n</think>\n\n" + rec["Response"]}]


def main():
    tok = AutoTokenizer.from_pretrained(str(FIXTURE))
    records = json.loads(MEDICAL.read_text())[:3]
    conversations = [medical_messages(r) for r in records]
    conversations.append([
        {"role": "system", "content": "You are a careful clinician."},
        {"role": "user", "content": "Fever and stiff neck: first step?"},
        {"role": "assistant", "content": "<think>\nMeningitis must be excluded.\n</think>\n\nBlood cultures, then empirical antibiotics."},
        {"role": "user", "content": "And then? 谢谢"},
        {"role": "assistant", "content": "<think>\nLP if no contraindication.\n</think>\n\nLumbar puncture."},
    ])
    conversations.append([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])

    config = Qwen2Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)
    model = Qwen2ForCausalLM(config)
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, assistant_only_loss=True, max_length=None, report_to=[], use_cpu=True, bf16=False,
                         dataset_num_proc=None)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"messages": c} for c in conversations]),
                             processing_class=tok)
        ds = trainer.train_dataset
        OUT.parent.mkdir(parents=True, exist_ok=True)
        with open(OUT, "w", encoding="utf-8") as f:
            for conv, row in zip(conversations, ds):
                f.write(json.dumps({"messages": conv, "input_ids": list(row["input_ids"]),
                                    "assistant_masks": [int(l != -100) for l in row["labels"]]}, ensure_ascii=False) + "\n")
    print(f"{len(conversations)} records -> {OUT}")


if __name__ == "__main__":
    main()
