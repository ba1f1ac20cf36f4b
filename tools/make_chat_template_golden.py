#!/usr/bin/env python3
"""Goldens for cotune's chat templates (tests/text/chat_template_test.cpp), from transformers + jinja2 + trl.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install transformers jinja2 trl tokenizers
    /tmp/venv/bin/python tools/make_chat_template_golden.py

Writes tests/golden/chat_template/:
  <model>/tokenizer_config.json   the model's chat_template and special tokens (only those fields), for the models
                                  whose files are not in tests/fixtures. Sources (all public):
      qwen2.5, qwen3, llama-3.2: the original templates TRL ships for identity comparison
          (trl/chat_templates/{qwen2_5,qwen3,llama3_2}.jinja; TRL's check_chat_templates.py keeps them byte-identical
          to Qwen/Qwen2.5-*-Instruct, Qwen/Qwen3-*, meta-llama/Llama-3.2-*-Instruct on the Hub);
      mistral-nemo-instruct-2407: mistralai/Mistral-Nemo-Instruct-2407 as copied by llama.cpp
          (models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja);
      smollm2: HuggingFaceTB/SmolLM2-*-Instruct tokenizer_config.json (as quoted verbatim in public tests).
  deepseek-r1-distill-training/chat_template.jinja   TRL's training variant of the DeepSeek template (generation
                                  blocks), to check assistant masks against TRL.
  cases.jsonl   one line per (template, conversation, add_generation_prompt): the rendered text (or the error the
                template raises) and, for the DeepSeek tokenizer in tests/fixtures, the token ids and (training
                template) the assistant mask of apply_chat_template(return_assistant_tokens_mask=True).
"""
import json
import os
import sys
from pathlib import Path

import trl
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import _normalize_chat_messages, render_jinja_template

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "chat_template"
FIXTURE = ROOT / "tests" / "fixtures" / "deepseek-r1-distill-qwen-1.5b"
TRL_TEMPLATES = Path(trl.__file__).parent / "chat_templates"

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

MODELS = {
    # name: (template source, special tokens)
    "qwen2.5": (lambda: (TRL_TEMPLATES / "qwen2_5.jinja").read_text(),
                {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "qwen3": (lambda: (TRL_TEMPLATES / "qwen3.jinja").read_text(),
              {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "llama-3.2": (lambda: (TRL_TEMPLATES / "llama3_2.jinja").read_text(),
                  {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "mistral-nemo-instruct-2407": (lambda: json.loads((OUT / "mistral-nemo-instruct-2407" / "tokenizer_config.json").read_text())["chat_template"],
                                   {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "smollm2": (lambda: SMOLLM2_TEMPLATE,
                {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                 "pad_token": "<|im_end|>"}),
}

LONG = ("Patient history: " + "咳嗽三周，伴低热。 The cough is worse at night; no haemoptysis. " * 100).strip()

CONVERSATIONS = [
    ("user", [{"role": "user", "content": "What is the capital of France?"}]),
    ("system_user", [{"role": "system", "content": "You are a careful clinician. Answer briefly."},
                     {"role": "user", "content": "A 45-year-old has chest pain on exertion. Next test?"}]),
    ("multi_turn", [{"role": "user", "content": "Hi!"},
                    {"role": "assistant", "content": "Hello. How can I help?"},
                    {"role": "user", "content": "Explain anemia in one line."}]),
    ("multi_turn_system_ends_assistant", [
        {"role": "system", "content": "Be concise."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3*3?"},
        {"role": "assistant", "content": "9"}]),
    ("unicode", [{"role": "system", "content": "Réponds en français. 你好 🌍"},
                 {"role": "user", "content": "患者男，45岁，胸痛2小时。Ελληνικά, עברית, العربية, e\u0301, \u200b zero-width, 🩺🫀"}]),
    ("empty_messages", [{"role": "system", "content": ""}, {"role": "user", "content": ""},
                        {"role": "assistant", "content": ""}, {"role": "user", "content": ""}]),
    ("long", [{"role": "user", "content": LONG}, {"role": "assistant", "content": LONG[::-1]},
              {"role": "user", "content": "Summarise."}]),
    ("reasoning_in_content", [
        {"role": "user", "content": "Why does aspirin help in MI?"},
        {"role": "assistant", "content": "<think>\nPlatelets drive thrombus growth; aspirin inhibits COX-1.\n</think>\n\nIt blocks platelet aggregation."},
        {"role": "user", "content": "Any risk?"}]),
    ("reasoning_last", [
        {"role": "user", "content": "Dose of adrenaline in anaphylaxis?"},
        {"role": "assistant", "content": "<think>\nAdult IM dose 0.5 mg of 1:1000.\n</think>\n\n0.5 mg IM (adult)."}]),
    ("reasoning_content_field", [
        {"role": "user", "content": "Is fever a symptom?"},
        {"role": "assistant", "content": "Yes.", "reasoning_content": "Fever is a classic sign of infection."},
        {"role": "user", "content": "Thanks"}]),
    ("template_syntax_in_content", [
        {"role": "user", "content": "Print {{ bos_token }} and {% if x %}y{% endif %} and <|im_end|> literally"}]),
    ("whitespace", [{"role": "system", "content": "  padded system \n"},
                    {"role": "user", "content": "\n\n  leading and trailing  \t\n"},
                    {"role": "assistant", "content": "  \n answer with spaces \n\n"},
                    {"role": "user", "content": "ok\r\nwindows line"}]),
    ("null_content_field", [{"role": "user", "content": "hello", "name": None}]),
    ("not_alternating", [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]),
]

# Per-template extra variables (Llama's date is fixed so the goldens do not change with the day).
VARIABLES = {
    "llama-3.2": [{"date_string": "26 Jul 2024"}],
    "qwen3": [{}, {"enable_thinking": False}],
}


def render(source, specials, messages, add_generation_prompt, variables, mask=False):
    chat = _normalize_chat_messages(messages)
    kwargs = {**specials, **variables}
    texts, spans = render_jinja_template(conversations=[chat], chat_template=source,
                                         add_generation_prompt=add_generation_prompt,
                                         return_assistant_tokens_mask=mask, **kwargs)
    return texts[0], (spans[0] if mask else None)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    lines = []
    deepseek_tok = AutoTokenizer.from_pretrained(str(FIXTURE))
    deepseek_specials = {k: v for k, v in deepseek_tok.special_tokens_map.items()}

    for name, (source_fn, specials) in MODELS.items():
        source = source_fn()
        d = OUT / name
        d.mkdir(exist_ok=True)
        cfg = dict(specials)
        cfg["chat_template"] = source
        (d / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n")

    templates = {name: (fn(), sp) for name, (fn, sp) in MODELS.items()}
    templates["deepseek-r1-distill-qwen"] = (deepseek_tok.chat_template, deepseek_specials)

    for tname, (source, specials) in templates.items():
        for variables in VARIABLES.get(tname, [{}]):
            for cname, messages in CONVERSATIONS:
                for agp in (False, True):
                    case = {"template": tname, "conversation": cname, "messages": messages,
                            "add_generation_prompt": agp, "variables": variables}
                    try:
                        text, _ = render(source, specials, messages, agp, variables)
                        case["text"] = text
                        if tname == "deepseek-r1-distill-qwen":
                            ids = deepseek_tok.apply_chat_template(messages, add_generation_prompt=agp,
                                                                   tokenize=True, return_dict=False, **variables)
                            if isinstance(ids, dict):
                                ids = ids["input_ids"]
                            assert ids == deepseek_tok(text, add_special_tokens=False)["input_ids"]
                            case["ids"] = ids
                    except Exception as e:  # the template raised (raise_exception or a Python error)
                        case["error"] = str(e)
                    lines.append(case)

    # TRL's training template for DeepSeek (generation blocks): text, ids and assistant masks.
    training_src = (TRL_TEMPLATES / "deepseek_r1_distill_training.jinja").read_text()
    d = OUT / "deepseek-r1-distill-training"
    d.mkdir(exist_ok=True)
    (d / "chat_template.jinja").write_text(training_src)
    for cname, messages in CONVERSATIONS:
        if cname in ("long",):
            continue
        try:
            out = deepseek_tok.apply_chat_template(messages, chat_template=training_src, tokenize=True,
                                                   return_dict=True, return_assistant_tokens_mask=True)
        except Exception as e:
            lines.append({"template": "deepseek-r1-distill-training", "conversation": cname, "messages": messages,
                          "add_generation_prompt": False, "variables": {}, "error": str(e)})
            continue
        text, spans = render(training_src, deepseek_specials, messages, False, {}, mask=True)
        lines.append({"template": "deepseek-r1-distill-training", "conversation": cname, "messages": messages,
                      "add_generation_prompt": False, "variables": {}, "text": text,
                      "ids": list(out["input_ids"]), "assistant_masks": list(out["assistant_masks"]),
                      "generation_spans_chars": [list(s) for s in spans]})

    with open(OUT / "cases.jsonl", "w", encoding="utf-8") as f:
        for c in lines:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"{len(lines)} cases -> {OUT / 'cases.jsonl'}", file=sys.stderr)


if __name__ == "__main__":
    main()
