#!/usr/bin/env python3
"""A bounded loopback load test of `cotune serve` (issue 18.5), beside transformers answering the same requests
one after another.

For each concurrency N (default 1, 8, 32, 64) N client threads send streamed /v1/completions requests (greedy,
max_tokens fixed, ignore EOS is not available so prompts are random-model prompts that run to max_tokens) until
`--requests` requests are done; it reports aggregate completion tokens/s, p50 / p99 time to first token, p50 / p99
time per output token (after the first), and how many requests failed or were lost (must be 0). Only 127.0.0.1.

    python3 bench/serve/load_test.py --cotune "build/bin/cotune" --model DIR [--requests 64] [--max-tokens 128]
        [--concurrency 1,8,32,64] [--max-batch 64] [--hf] [--json OUT.json]

--hf also times transformers' model.generate on the same prompts sequentially (greedy, same max_new_tokens) on the
GPU, the way a Python user without a serving engine answers them.
"""
import argparse
import http.client
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PROMPTS = [
    "A 45-year-old man presents with crushing chest pain radiating to the left arm. What is the next step?",
    "What is the first-line treatment for uncomplicated hypertension?",
    "Explain why metformin is contraindicated in severe renal impairment.",
    "A child has a barking cough and inspiratory stridor. What is the diagnosis?",
    "List the causes of a raised anion gap metabolic acidosis.",
    "How do you manage diabetic ketoacidosis in the first hour?",
    "患者，女，32岁，发热伴咳嗽3天，最可能的诊断是什么？",
    "What are the signs of tension pneumothorax?",
]


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def one_request(port, model, prompt, max_tokens, out):
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    try:
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            out.append({"ok": False, "error": f"HTTP {r.status}: {r.read()[:200]!r}"})
            return
        first = None
        times = []
        tokens = 0
        done = False
        buf = b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1024)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if not event.startswith(b"data: "):
                    continue
                data = event[6:]
                if data == b"[DONE]":
                    done = True
                    continue
                j = json.loads(data)
                now = time.perf_counter()
                if j.get("usage"):
                    tokens = j["usage"]["completion_tokens"]
                if j.get("choices") and j["choices"][0].get("text"):
                    if first is None:
                        first = now - t0
                    times.append(now)
        t1 = time.perf_counter()
        if not done:
            out.append({"ok": False, "error": "stream ended without [DONE]"})
            return
        tpot = [(b - a) for a, b in zip(times, times[1:])]
        out.append({"ok": True, "ttft": first if first is not None else t1 - t0, "tpot": tpot, "tokens": tokens,
                    "seconds": t1 - t0})
    except Exception as e:  # noqa: BLE001 - a lost request is counted, not raised
        out.append({"ok": False, "error": repr(e)})
    finally:
        conn.close()


def run_level(port, model, n_clients, n_requests, max_tokens):
    results = []
    lock = threading.Lock()
    next_i = [0]

    def client():
        while True:
            with lock:
                i = next_i[0]
                if i >= n_requests:
                    return
                next_i[0] += 1
            local = []
            one_request(port, model, PROMPTS[i % len(PROMPTS)] + f" (case {i})", max_tokens, local)
            with lock:
                results.extend(local)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    tokens = sum(r["tokens"] for r in ok)
    tpot = [x for r in ok for x in r["tpot"]]
    return {"clients": n_clients, "requests": n_requests, "ok": len(ok), "failed": len(results) - len(ok),
            "lost": n_requests - len(results), "errors": [r["error"] for r in results if not r["ok"]][:3],
            "wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall if wall > 0 else 0.0,
            "ttft_p50_ms": 1e3 * pct([r["ttft"] for r in ok], 50), "ttft_p99_ms": 1e3 * pct([r["ttft"] for r in ok], 99),
            "tpot_p50_ms": 1e3 * pct(tpot, 50), "tpot_p99_ms": 1e3 * pct(tpot, 99)}


def hf_sequential(model_dir, n_requests, max_tokens):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()
    tokens = 0
    t0 = time.perf_counter()
    for i in range(n_requests):
        ids = tok(PROMPTS[i % len(PROMPTS)] + f" (case {i})", return_tensors="pt").to("cuda")
        out = m.generate(**ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                         pad_token_id=tok.eos_token_id)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"requests": n_requests, "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cotune", required=True, help="the cotune command (may include a wrapper: '.gpu/run cotune')")
    ap.add_argument("--model", required=True)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--extra", default="", help="more cotune serve flags, e.g. '--load-in-4bit'")
    ap.add_argument("--hf", action="store_true")
    ap.add_argument("--hf-requests", type=int, default=8)
    ap.add_argument("--json")
    a = ap.parse_args()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    cmd = shlex.split(a.cotune) + ["serve", "--model", a.model, "--name", "m", "--port", "0", "--max-batch",
                                   str(a.max_batch), "--context", "1024", "--device", a.device] + shlex.split(a.extra)
    srv = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    report = {"command": " ".join(cmd), "levels": []}
    try:
        port = None
        for _ in range(1800):
            log.seek(0)
            mt = re.search(r"127\.0\.0\.1:(\d+)", log.read())
            if mt:
                port = int(mt.group(1))
                break
            if srv.poll() is not None:
                break
            time.sleep(0.1)
        if port is None:
            log.seek(0)
            print("cotune serve did not start:\n" + log.read())
            return 1
        run_level(port, "m", 1, 2, 8)  # warm-up: buffers, GEMM plans
        for n in [int(x) for x in a.concurrency.split(",")]:
            r = run_level(port, "m", n, max(a.requests, n), a.max_tokens)
            report["levels"].append(r)
            print(f"cotune serve  N={n:3d}: {r['tokens_per_s']:9.1f} tok/s aggregate | TTFT p50 {r['ttft_p50_ms']:7.1f} "
                  f"p99 {r['ttft_p99_ms']:7.1f} ms | per token p50 {r['tpot_p50_ms']:6.2f} p99 {r['tpot_p99_ms']:6.2f} ms"
                  f" | ok {r['ok']}/{r['requests']}, failed {r['failed']}, lost {r['lost']} {r['errors'] or ''}",
                  flush=True)
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=60)
        except subprocess.TimeoutExpired:
            srv.kill()
    base = next((r for r in report["levels"] if r["clients"] == 1), None)
    for r in report["levels"]:
        if base and base["tokens_per_s"] > 0:
            r["x_batch1"] = r["tokens_per_s"] / base["tokens_per_s"]
            print(f"  N={r['clients']:3d}: {r['x_batch1']:.2f}x the one-client tokens/s")
    if a.hf:
        h = hf_sequential(a.model, a.hf_requests, a.max_tokens)
        report["transformers_sequential"] = h
        print(f"transformers generate, sequential: {h['tokens_per_s']:.1f} tok/s ({h['requests']} requests)")
        for r in report["levels"]:
            print(f"  cotune N={r['clients']:3d} / transformers sequential: {r['tokens_per_s'] / h['tokens_per_s']:.1f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    bad = sum(r["failed"] + r["lost"] for r in report["levels"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
