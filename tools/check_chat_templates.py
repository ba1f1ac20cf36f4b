#!/usr/bin/env python3
"""Breadth check of cotune's Jinja interpreter: every chat template TRL ships (trl/chat_templates/*.jinja: Llama,
Qwen, Gemma, Phi, Cohere, GLM, gpt-oss, DeepSeek, ... and their training variants) rendered by transformers and by
`cotune chat-template` over a few conversations (with and without system, multi-turn, reasoning, a tool call and
its result), with and without add_generation_prompt. Prints one line per template and a summary; exits 1 on a
mismatch.

    /tmp/venv/bin/pip install transformers jinja2 trl
    /tmp/venv/bin/python tools/check_chat_templates.py build/bin/cotune
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import trl
    from transformers.utils.chat_template_utils import _normalize_chat_messages, render_jinja_template
except ImportError as e:  # an optional check (CTest label `tools`): skipped without the packages
    print(f"SKIP: {e} (pip install transformers jinja2 trl)")
    sys.exit(77)

SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
TOOL_CALL = {"type": "function", "function": {"name": "get_dose", "arguments": {"drug": "aspirin", "mg": 75}}}
CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Fever? 发烧"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
    [{"role": "user", "content": "Why?"},
     {"role": "assistant", "content": "Because.", "reasoning_content": "Think it through."},
     {"role": "user", "content": "Ok"}],
    [{"role": "user", "content": "Dose?"}, {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
     {"role": "tool", "name": "get_dose", "content": "75 mg"}],
]


def main():
    cotune = sys.argv[1]
    folder = Path(trl.__file__).parent / "chat_templates"
    ok = mismatched = raised_both = 0
    bad = []
    for path in sorted(folder.glob("*.jinja")):
        src = path.read_text()
        cases, expected = [], []
        for conv in CONVERSATIONS:
            for agp in (False, True):
                try:
                    text = render_jinja_template([_normalize_chat_messages(conv)], chat_template=src,
                                                 add_generation_prompt=agp, **SPECIALS)[0][0]
                except Exception as e:  # the template refuses this conversation
                    text = None
                cases.append({"messages": conv, "add_generation_prompt": agp})
                expected.append(text)
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "tokenizer_config.json").write_text(json.dumps({**SPECIALS, "chat_template": src}))
            got = []
            for c in cases:  # one process a case, so a raise in one case does not hide the others
                p = subprocess.run([cotune, "chat-template", "--model", d], input=json.dumps(c) + "\n",
                                   capture_output=True, text=True)
                got.append(json.loads(p.stdout)["text"] if p.returncode == 0 and p.stdout else None)
        n_bad = 0
        for e, g in zip(expected, got):
            if e == g:
                if e is None:
                    raised_both += 1
                ok += 1
            else:
                n_bad += 1
        mismatched += n_bad
        print(f"{path.name:40s} {'ok' if n_bad == 0 else f'{n_bad} MISMATCHED'}")
        if n_bad:
            bad.append(path.name)
    print(f"\n{ok} renderings identical ({raised_both} of them an error in both), {mismatched} different; "
          f"templates with differences: {bad}")
    sys.exit(1 if mismatched else 0)


if __name__ == "__main__":
    main()
