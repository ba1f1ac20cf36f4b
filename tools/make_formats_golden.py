#!/usr/bin/env python3
"""Writes tests/golden/formats/tiny.safetensors with the reference implementation
(`safetensors.torch.save_file`), so cotune's reader and writer are checked byte for byte against it.

The values are closed-form (tensor i, element k) so the C++ test recomputes them without reading a
second file; mixed dtypes and names pin the writer's ordering (dtype width first, then name).
Usage: python3 tools/make_formats_golden.py [out_dir]
"""
import os
import sys

import torch
from safetensors.torch import save_file


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "formats")
    os.makedirs(out, exist_ok=True)
    t = {
        # name: values k * 0.5 - 1 (exact in every float dtype used here)
        "model.w": (torch.arange(6, dtype=torch.float32) * 0.5 - 1).reshape(2, 3),
        "a.bias": torch.arange(3, dtype=torch.float32).to(torch.bfloat16) * 0.5 - 1,
        "half": (torch.arange(4, dtype=torch.float32) * 0.5 - 1).to(torch.float16),
        "ids": torch.tensor([[1, -2], [3, 40000]], dtype=torch.int32),
        "big": torch.tensor([-5, 1 << 40], dtype=torch.int64),
        "bytes": torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "dbl": torch.tensor([0.25], dtype=torch.float64),
        "flag": torch.tensor([True, False, True], dtype=torch.bool),
    }
    save_file(t, os.path.join(out, "tiny.safetensors"), metadata={"format": "pt"})

    # config.json as the installed transformers (5.x: rope_parameters, layer_types) writes it.
    import tempfile

    from transformers import LlamaConfig, Qwen2Config

    configs = {
        "qwen2_config_tf5.json": Qwen2Config(
            vocab_size=1000, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=True, eos_token_id=[7, 8]),
        "llama_config_tf5.json": LlamaConfig(
            vocab_size=500, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=8,
            num_key_value_heads=2, attention_bias=True, architectures=["LlamaForCausalLM"]),
    }
    for name, cfg in configs.items():
        with tempfile.TemporaryDirectory() as d:
            cfg.save_pretrained(d)
            with open(os.path.join(d, "config.json")) as f, open(os.path.join(out, name), "w") as g:
                g.write(f.read())


if __name__ == "__main__":
    main()
