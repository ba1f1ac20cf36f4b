#!/usr/bin/env python3
"""transformers loads, offline, a model that cotune downloaded into the Hugging Face cache.

Makes a tiny Qwen2 model with `cotune init-model`, serves it from the tests' loopback fake Hub as org/tiny-qwen2,
downloads it with `cotune download` (the default file set: weights, configs, tokenizer) into an empty HF_HOME, then
with HF_HUB_OFFLINE=1 loads it with AutoModelForCausalLM / AutoTokenizer.from_pretrained(local_files_only=True) and
runs one forward pass.

  python3 tools/check_transformers_loads_cotune_cache.py --cotune build/bin/cotune --fake-hub build/tests/fake_hub
Needs: pip install torch transformers. Exits 77 when they are missing (CTest: skipped).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cotune", required=True)
    ap.add_argument("--fake-hub", required=True)
    args = ap.parse_args()
    import importlib.util
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        print("torch / transformers not installed: skipped")
        return 77  # (not imported yet: huggingface_hub reads HF_HOME when first imported, below)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([args.cotune, "init-model", "--output", str(work / "model"), "--preset", "demo", "--vocab-from",
                        str(ROOT / "recipes" / "data" / "demo_medical.jsonl")], check=True, capture_output=True)
        port_file = work / "endpoint"
        hub = subprocess.Popen([args.fake_hub, "--port-file", str(port_file), "--model", f"org/tiny-qwen2={work / 'model'}"])
        try:
            for _ in range(200):
                if port_file.exists() and port_file.read_text().strip():
                    break
                time.sleep(0.05)
            env = dict(os.environ, HF_ENDPOINT=port_file.read_text().strip(), HF_HOME=str(work / "hf"))
            env.pop("HF_HUB_CACHE", None)
            r = subprocess.run([args.cotune, "download", "org/tiny-qwen2"], env=env, capture_output=True, text=True)
            if r.returncode != 0:
                print("FAIL: cotune download:", r.stderr)
                return 1
        finally:
            hub.terminate()
            hub.wait()
        # The fake Hub is gone and the Hub is off: only the cache can answer.
        os.environ.update(HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        os.environ.pop("HF_ENDPOINT", None)
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained("org/tiny-qwen2", local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained("org/tiny-qwen2", local_files_only=True)
        ids = tok("A 24-year-old has a sore throat", return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(ids).logits
        print(f"transformers {transformers.__version__} loaded org/tiny-qwen2 from cotune's cache: "
              f"{sum(p.numel() for p in model.parameters())} parameters, logits {tuple(logits.shape)}")
        return 0 if torch.isfinite(logits).all() else 1


if __name__ == "__main__":
    sys.exit(main())
