#!/usr/bin/env python3
"""`cotune serve` checked with the official `openai` Python client (issue 18): models.list, completions and chat
completions, streamed and not, usage counts, a stop string, seeded sampling, and the client's own error types for
an unknown model and a prompt longer than the context. Exit 0 on success, 1 on a failed check, 77 when the
`openai` package is missing (CTest: skipped).

    python3 tools/check_openai_client.py --cotune build/bin/cotune --source .   [--model DIR]
Without --model it makes the demo model (`cotune init-model --preset demo`) in a temporary folder.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

try:
    import openai
except ImportError:
    print("openai package not installed: skipped (pip install openai)")
    sys.exit(77)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cotune", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--model")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cotune-openai-")
    model = a.model
    if not model:
        model = os.path.join(work, "model")
        subprocess.run([a.cotune, "init-model", "--output", model, "--preset", "demo", "--vocab-from",
                        os.path.join(a.source, "recipes/data/demo_medical.jsonl")], check=True,
                       stdout=subprocess.DEVNULL)
    log = open(os.path.join(work, "serve.log"), "w+")
    srv = subprocess.Popen([a.cotune, "serve", "--model", model, "--name", "demo", "--port", "0", "--device", "cpu",
                            "--context", "512"], stdout=log, stderr=subprocess.STDOUT)
    failures = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    try:
        port = None
        for _ in range(600):
            log.seek(0)
            m = re.search(r"127\.0\.0\.1:(\d+)", log.read())
            if m:
                port = int(m.group(1))
                break
            if srv.poll() is not None:
                break
            time.sleep(0.1)
        if port is None:
            log.seek(0)
            print("cotune serve did not start:\n" + log.read())
            return 1
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=60)

        models = client.models.list()
        check([m.id for m in models.data] == ["demo"], f"models.list -> {[m.id for m in models.data]}")

        c = client.completions.create(model="demo", prompt="The patient", max_tokens=12, temperature=0)
        check(c.object == "text_completion" and len(c.choices) == 1, "completions.create object")
        check(c.usage.completion_tokens >= 1 and c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens,
              f"completion usage {c.usage}")
        text = c.choices[0].text
        pieces = list(client.completions.create(model="demo", prompt="The patient", max_tokens=12, temperature=0,
                                                stream=True))
        streamed = "".join(p.choices[0].text for p in pieces if p.choices)
        check(streamed == text, f"streamed completion equals the plain one ({streamed!r} vs {text!r})")
        check(pieces[-1].choices[0].finish_reason in ("stop", "length"), "the last chunk has a finish_reason")

        msgs = [{"role": "system", "content": "You are a careful physician."},
                {"role": "user", "content": "A 45-year-old man has chest pain. What next?"}]
        r = client.chat.completions.create(model="demo", messages=msgs, max_tokens=16, temperature=0)
        check(r.object == "chat.completion" and r.choices[0].message.role == "assistant", "chat.completions.create")
        answer = r.choices[0].message.content
        chunks = list(client.chat.completions.create(model="demo", messages=msgs, max_tokens=16, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
        streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        check(streamed == answer, "streamed chat equals the plain one")
        check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens,
              "stream_options.include_usage sends the usage chunk")

        s1 = client.completions.create(model="demo", prompt="Fever", max_tokens=16, temperature=0.9, top_p=0.9, seed=3)
        s2 = client.completions.create(model="demo", prompt="Fever", max_tokens=16, temperature=0.9, top_p=0.9, seed=3)
        check(s1.choices[0].text == s2.choices[0].text, "seeded sampling repeats")
        if len(text) > 3 and text[2].isascii():
            cut = client.completions.create(model="demo", prompt="The patient", max_tokens=12, temperature=0,
                                            stop=[text[2]])
            check(cut.choices[0].text == text[:2] and cut.choices[0].finish_reason == "stop", "stop string cuts")

        try:
            client.chat.completions.create(model="gpt-4o", messages=msgs)
            check(False, "unknown model raises NotFoundError")
        except openai.NotFoundError as e:
            check(e.status_code == 404 and "gpt-4o" in str(e), "unknown model raises NotFoundError (404)")
        try:
            client.completions.create(model="demo", prompt="word " * 600, max_tokens=10)
            check(False, "a prompt over the context raises BadRequestError")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and "context length" in str(e), "a prompt over the context raises BadRequestError")
        check(client.completions.create(model="demo", prompt="ok", max_tokens=2).choices[0].finish_reason is not None,
              "the server keeps serving after errors")
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=20)
        except subprocess.TimeoutExpired:
            srv.kill()
    check(srv.returncode == 0, f"SIGTERM stops the server cleanly (exit {srv.returncode})")
    print(f"{'PASS' if not failures else 'FAIL'}: openai {openai.__version__} against cotune serve, "
          f"{len(failures)} failed check(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
