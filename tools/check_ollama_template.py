#!/usr/bin/env python3
"""cotune's Ollama Modelfiles against Go's text/template, the engine Ollama renders prompts with.

  tools/check_ollama_template.py --cotune build/bin/cotune [--work DIR]

For each chat template in tests/golden/chat_template (Qwen2.5, Qwen3, SmolLM2, Llama 3.2, Mistral-Nemo) and the
DeepSeek-R1-Distill fixture: `cotune export modelfile` writes the Modelfile; the conversations of
tests/golden/chat_template/cases.jsonl that Ollama could send for a reply (roles system / user / assistant, the
last one the user's, plain string contents) are rendered by `cotune chat-template --add-generation-prompt`
(byte-identical to transformers' apply_chat_template, by the chat-template goldens); tools/check_ollama_template
(Go) renders the same conversations with the Modelfile's TEMPLATE as Ollama's template.Execute does and compares.
When the template writes BOS but the TEMPLATE leaves it out, the GGUF's tokenizer adds it (add_bos_token), so the
expected text is compared without it. Needs `go` (Debian: golang-go); exits 77 without it.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = {
    "deepseek-r1-distill-qwen": os.path.join(ROOT, "tests/fixtures/deepseek-r1-distill-qwen-1.5b"),
    "qwen2.5": os.path.join(ROOT, "tests/golden/chat_template/qwen2.5"),
    "qwen3": os.path.join(ROOT, "tests/golden/chat_template/qwen3"),
    "smollm2": os.path.join(ROOT, "tests/golden/chat_template/smollm2"),
    "llama-3.2": os.path.join(ROOT, "tests/golden/chat_template/llama-3.2"),
    "mistral-nemo-instruct-2407": os.path.join(ROOT, "tests/golden/chat_template/mistral-nemo-instruct-2407"),
}


def ollama_conversations():
    seen, out = set(), []
    for line in open(os.path.join(ROOT, "tests/golden/chat_template/cases.jsonl"), encoding="utf-8"):
        c = json.loads(line)
        msgs = c["messages"]
        if not msgs or msgs[-1]["role"] != "user":
            continue
        if any(set(m) != {"role", "content"} or m["role"] not in ("system", "user", "assistant")
               or not isinstance(m["content"], str) for m in msgs):
            continue
        # Ollama by design: consecutive messages of one role are merged into one (collate), and an assistant's
        # reasoning is kept apart from its content (the `thinking` field), so history never holds </think>.
        if any(a["role"] == b["role"] for a, b in zip(msgs, msgs[1:])) or any("</think>" in m["content"] for m in msgs):
            continue
        key = json.dumps(msgs, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(msgs)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cotune", required=True)
    ap.add_argument("--work")
    a = ap.parse_args()
    go = shutil.which("go")
    if not go:
        print("skipped: no `go` (apt-get install golang-go)")
        return 77
    work = a.work or tempfile.mkdtemp(prefix="ollama-check-")
    os.makedirs(work, exist_ok=True)
    checker = os.path.join(work, "check_ollama_template")
    env = dict(os.environ, GOCACHE=os.path.join(work, "gocache"), GOFLAGS="-mod=mod", GO111MODULE="on")
    subprocess.run([go, "build", "-o", checker, "."], cwd=os.path.join(ROOT, "tools/check_ollama_template"),
                   check=True, env=env)
    convs = ollama_conversations()
    failed = 0
    for name, model in TEMPLATES.items():
        mf = os.path.join(work, f"Modelfile.{name}")
        subprocess.run([a.cotune, "export", "modelfile", "--model", model, "--gguf", f"{name}.gguf", "-o", mf],
                       check=True, capture_output=True)
        template = open(mf, encoding="utf-8").read()
        texts = []  # None where the template refuses the conversation (raise_exception): Ollama would not serve it
        for m in convs:
            r = subprocess.run([a.cotune, "chat-template", "--model", model, "--add-generation-prompt"],
                               input=json.dumps({"messages": m}, ensure_ascii=False) + "\n", text=True,
                               capture_output=True)
            texts.append(json.loads(r.stdout)["text"] if r.returncode == 0 else None)
        cases = os.path.join(work, f"cases.{name}.jsonl")
        trims = "| trim" in open(os.path.join(model, "tokenizer_config.json"), encoding="utf-8").read()
        with open(cases, "w", encoding="utf-8") as fh:
            for m, t in zip(convs, texts):
                if t is None:
                    continue
                # Ollama has no trim: a trimming template (Llama 3) differs on padded contents, by design.
                if trims and any(x["content"] != x["content"].strip() for x in m):
                    continue
                fh.write(json.dumps({"messages": m, "text": t}, ensure_ascii=False) + "\n")
        bos = ""
        cfg = json.load(open(os.path.join(model, "tokenizer_config.json"), encoding="utf-8"))
        b = cfg.get("bos_token")
        b = b.get("content") if isinstance(b, dict) else b
        first = next((t for t in texts if t is not None), "")
        if b and first.startswith(b) and b not in template:
            bos = b
        r = subprocess.run([checker, mf, cases, bos], text=True, capture_output=True)
        print(f"== {name}" + (f" (BOS {bos} from the tokenizer)" if bos else ""))
        print(r.stdout.strip() or r.stderr.strip())
        failed += r.returncode != 0
    print("PASS" if failed == 0 else f"FAIL: {failed} template(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
