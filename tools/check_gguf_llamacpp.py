#!/usr/bin/env python3
"""cotune's GGUF export against llama.cpp itself.

  tools/check_gguf_llamacpp.py --cotune build/bin/cotune --model DIR [--adapter DIR] --llama-cpp LLAMA_SRC --work DIR

LLAMA_SRC is a llama.cpp source tree with a shared-library build in LLAMA_SRC/build/bin (llama-cpp-python's sdist
vendors one: `cmake -S vendor/llama.cpp -B build -DBUILD_SHARED_LIBS=ON && cmake --build build --target llama`);
its Python bindings (the sdist's llama_cpp/ folder, on PYTHONPATH) load that library through LLAMA_CPP_LIB_PATH.
convert_hf_to_gguf.py needs torch, transformers and the tree's gguf-py.

Checks, each printed with its figures (and written to WORK/report.json):
  (a) llama.cpp loads every type cotune exports (f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k)
  (b) llama.cpp's token ids for a corpus equal cotune's
  (c) logits of the F32 / F16 / BF16 exports in llama.cpp vs cotune's fp32 forward on the model folder, and the
      greedy continuations of both
  (d) the Q8_0 / Q4_K_M tensors are byte-identical to convert_hf_to_gguf.py + llama-quantize (llama_model_quantize)
      of the same folder; metadata keys that differ are listed with their values
  (e) with --adapter: the GGUF LoRA adapter applied by llama.cpp on the F32 base gives the logits of the merged F32
      export
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

CORPUS = [
    "Hello world", "  leading spaces and\ttabs\n\nnew lines", "数字 12345 和中文，标点。", "emoji 🙂🚀 and ünïcödé",
    "don't I'll we've", "def f(x):\n    return x**2  # comment",
    "A 45-year-old man presents with chest pain radiating to the left arm. What is the most likely diagnosis?",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
]
PROMPT = "<|im_start|>user\nWhat are the symptoms of iron deficiency anemia?<|im_end|>\n<|im_start|>assistant\n"
TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"]
FTYPE = {"q8_0": 7, "q4_k_m": 15}


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def cotune_tokens(cotune, model, texts):
    inp = "\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in texts) + "\n"
    out = run([cotune, "tokenize", "--tokenizer", model], input=inp).stdout
    return [json.loads(line)["ids"] for line in out.splitlines() if line.strip()]


def cotune_logits(cotune, model, ids, work, adapter=None):
    path = os.path.join(work, "cotune_logits.safetensors")
    cmd = [cotune, "forward", "--model", model, "--ids", ",".join(map(str, ids)), "--dump-logits", path]
    if adapter:
        cmd += ["--adapter", adapter]
    run(cmd)
    from safetensors.numpy import load_file
    return load_file(path)["logits"]


def llama_logits(llama_cpp, path, ids, lora=None):
    m = llama_cpp.Llama(path, n_ctx=max(64, len(ids) + 8), logits_all=True, verbose=False, n_threads=2,
                        lora_path=lora)
    m.eval(ids)
    out = np.array(m.scores[: len(ids)], dtype=np.float32)
    m.close()
    return out


def llama_greedy(llama_cpp, path, ids, n):
    m = llama_cpp.Llama(path, n_ctx=len(ids) + n + 8, verbose=False, n_threads=2)
    out = []
    for t in m.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
        if t == m.token_eos() or len(out) >= n:
            break
        out.append(int(t))
    m.close()
    return out


def gguf_tensors(path):
    import gguf
    r = gguf.GGUFReader(path)
    fields = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        try:
            v = f.contents()
        except Exception:  # noqa: BLE001
            v = None
        fields[k] = v
    return {t.name: (t.tensor_type.name, bytes(t.data.tobytes())) for t in r.tensors}, fields


def check_a(a, llama_cpp, files, report):
    loaded = {}
    for t, p in files.items():
        try:
            m = llama_cpp.Llama(p, n_ctx=64, verbose=False, n_threads=2)
            loaded[t] = {"ok": True, "n_vocab": m.n_vocab(), "bytes": os.path.getsize(p)}
            m.close()
        except Exception as e:  # noqa: BLE001
            loaded[t] = {"ok": False, "error": str(e)}
    report["a_load"] = loaded
    print("(a) loads:", {t: v["ok"] for t, v in loaded.items()})


def check_b(a, llama_cpp, files, report):
    ours = cotune_tokens(a.cotune, a.model, CORPUS)
    m = llama_cpp.Llama(files["f32"], n_ctx=64, verbose=False, vocab_only=True)
    theirs = [m.tokenize(t.encode(), add_bos=True, special=True) for t in CORPUS]
    m.close()
    same = [o == t for o, t in zip(ours, theirs)]
    report["b_tokens"] = {"texts": len(CORPUS), "equal": sum(same),
                          "differing": [{"text": CORPUS[i], "cotune": ours[i], "llama.cpp": theirs[i]}
                                        for i in range(len(CORPUS)) if not same[i]]}
    print(f"(b) tokens equal on {sum(same)}/{len(CORPUS)} texts")


def check_c(a, llama_cpp, files, report):
    ids = cotune_tokens(a.cotune, a.model, [PROMPT])[0]
    ref = cotune_logits(a.cotune, a.model, ids, a.work)
    c = {}
    for t in ["f32", "f16", "bf16", "q8_0"]:
        lg = llama_logits(llama_cpp, files[t], ids)
        d = np.abs(lg - ref)
        c[t] = {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
                "max_abs_logit": float(np.abs(ref).max()),
                "argmax_agree": float((lg.argmax(-1) == ref.argmax(-1)).mean())}
    gen = json.loads(run([a.cotune, "generate", "--model", a.model, "--prompt", PROMPT, "--greedy", "--json",
                          "--max-new-tokens", str(a.new_tokens), "--device", "cpu"]).stdout.splitlines()[-1])
    for t in ["f32", "bf16"]:
        g = llama_greedy(llama_cpp, files[t], ids, a.new_tokens)
        n = min(len(g), len(gen["ids"]))
        c[t]["greedy_llama_cpp"] = g
        c[t]["greedy_agree_prefix"] = next((i for i in range(n) if g[i] != gen["ids"][i]), n)
    c["greedy_cotune"] = gen["ids"]
    report["c_logits"] = c
    print("(c) logits:", json.dumps({t: {k: v for k, v in c[t].items() if "greedy_llama" not in k}
                                     for t in ["f32", "f16", "bf16", "q8_0"]}))


def check_d(a, llama_cpp, files, report):
    conv = os.path.join(a.llama_cpp, "convert_hf_to_gguf.py")
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    src_dtype = cfg.get("torch_dtype", cfg.get("dtype", "bfloat16"))
    outtype = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}[src_dtype]
    ref_gguf = os.path.join(a.work, f"ref-{outtype}.gguf")
    env = dict(os.environ, PYTHONPATH=os.path.join(a.llama_cpp, "gguf-py") + ":" + os.environ.get("PYTHONPATH", ""))
    if not os.path.exists(ref_gguf):
        run([sys.executable, conv, a.model, "--outtype", outtype, "--outfile", ref_gguf], env=env)
    d = {}
    for t, ft in FTYPE.items():
        q = os.path.join(a.work, f"ref-{t}.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ft
        params.nthread = 2
        rc = llama_cpp.llama_model_quantize(ref_gguf.encode(), q.encode(), params)
        assert rc == 0, f"llama_model_quantize {t} failed: {rc}"
        rt, rf = gguf_tensors(q)
        ct, cf = gguf_tensors(files[t])
        names = sorted(set(rt) | set(ct))
        diff_tensors = [n for n in names if rt.get(n) != ct.get(n)]
        diff_keys = {}
        for k in sorted(set(rf) | set(cf)):
            rv, cv = rf.get(k, "<absent>"), cf.get(k, "<absent>")
            if rv != cv:
                diff_keys[k] = {"llama.cpp": str(rv)[:120], "cotune": str(cv)[:120]}
        d[t] = {"tensors": len(names), "identical": len(names) - len(diff_tensors),
                "differing_tensors": diff_tensors[:20],
                "types_differing": [n for n in names if n in rt and n in ct and rt[n][0] != ct[n][0]][:20],
                "metadata_differing": diff_keys}
        print(f"(d) {t}: {len(names) - len(diff_tensors)}/{len(names)} tensors byte-identical; "
              f"metadata keys differing: {list(diff_keys)}")
    report["d_bytes"] = d


def check_e(a, llama_cpp, files, report):
    if not a.adapter:
        return
    ids = cotune_tokens(a.cotune, a.model, [PROMPT])[0]
    lora = os.path.join(a.work, "adapter.gguf")
    run([a.cotune, "export", "gguf-lora", "--adapter", a.adapter, "--model", a.model, "-o", lora])
    merged = os.path.join(a.work, "merged")
    run([a.cotune, "export", "gguf", "--model", a.model, "--adapter", a.adapter, "--type", "f32",
         "--no-modelfile", "-o", merged + "/"])
    merged_file = [os.path.join(merged, f) for f in os.listdir(merged) if f.endswith(".gguf")][0]
    with_lora = llama_logits(llama_cpp, files["f32"], ids, lora=lora)
    merged_lg = llama_logits(llama_cpp, merged_file, ids)
    base_lg = llama_logits(llama_cpp, files["f32"], ids)
    cot = cotune_logits(a.cotune, a.model, ids, a.work, adapter=a.adapter)
    e = {"max_abs_diff_lora_vs_merged": float(np.abs(with_lora - merged_lg).max()),
         "max_abs_diff_lora_vs_cotune_adapter": float(np.abs(with_lora - cot).max()),
         "max_abs_change_by_adapter": float(np.abs(merged_lg - base_lg).max()),
         "argmax_agree": float((with_lora.argmax(-1) == merged_lg.argmax(-1)).mean())}
    report["e_lora"] = e
    print("(e) lora:", json.dumps(e))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cotune", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter")
    ap.add_argument("--llama-cpp", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--checks", default="abcde", help="which checks to run, e.g. 'abd'")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    os.environ.setdefault("LLAMA_CPP_LIB_PATH", os.path.join(a.llama_cpp, "build", "bin"))
    import llama_cpp  # noqa: E402
    path = os.path.join(a.work, "report.json")
    report = json.load(open(path)) if os.path.exists(path) else {}

    # Every type exported once into WORK/cotune (kept for later runs with other --checks).
    out = os.path.join(a.work, "cotune")
    stem = os.path.basename(os.path.normpath(a.model))
    # (d) alone needs only the two quantized types (a 1.5B model's F32 export alone is 6 GB).
    types = TYPES if set(a.checks) - {"d"} else list(FTYPE)
    files = {t: os.path.join(out, f"{stem}-{t.upper()}.gguf") for t in types}
    if not all(os.path.exists(f) for f in files.values()):
        run([a.cotune, "export", "gguf", "--model", a.model, "--no-modelfile", "-o", out + "/", "--name", "check"] +
            sum([["--type", t] for t in types], []))
    for c, fn in [("a", check_a), ("b", check_b), ("c", check_c), ("d", check_d), ("e", check_e)]:
        if c in a.checks:
            fn(a, llama_cpp, files, report)
            with open(path, "w") as fh:
                json.dump(report, fh, ensure_ascii=False, indent=1)
    print("report:", path)


if __name__ == "__main__":
    main()
