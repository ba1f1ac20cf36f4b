#!/usr/bin/env python3
"""Writes the hand-made seeds of tests/fuzz/corpus/ (the rest are copies of real files: see
tests/fuzz/README.md). Standard library only. Run from the repository root: python3 tools/make_fuzz_seeds.py"""
import json
import struct
from pathlib import Path

corpus = Path("tests/fuzz/corpus")


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes). Returns the file's bytes as the safetensors crate writes."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def write(folder, name, content):
    p = corpus / folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content if isinstance(content, bytes) else content.encode())


write("safetensors", "f32_2x3.safetensors",
      safetensors([("w", "F32", [2, 3], struct.pack("<6f", *range(6)))], {"format": "pt"}))
write("safetensors", "bf16_u8_i64.safetensors",
      safetensors([("a.weight", "BF16", [4], b"\x80\x3f" * 4), ("b.absmax", "U8", [3], b"\x01\x02\x03"),
                   ("c.shape", "I64", [1], struct.pack("<q", 7)), ("empty", "F16", [0, 5], b"")]))
write("safetensors", "scalar.safetensors", safetensors([("s", "F32", [], struct.pack("<f", 1.5))]))

llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 256, "hidden_size": 64,
         "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 16, "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
         "tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True, "hidden_act": "silu",
         "bos_token_id": 1, "eos_token_id": [2, 3], "rope_scaling": None, "torch_dtype": "bfloat16"}
write("model_config", "llama_tiny.json", json.dumps(llama, indent=2))
qwen5 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 300, "hidden_size": 32,
         "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2, "dtype": "float32",
         "layer_types": ["full_attention"] * 3, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
         "use_sliding_window": False, "sliding_window": None}
write("model_config", "qwen2_transformers5.json", json.dumps(qwen5))

vocab = {c: i for i, c in enumerate("abcdefgh")}
vocab.update({"ab": 8, "cd": 9, "abcd": 10, "Ġ": 11, "Ġa": 12})
tok = {"version": "1.0", "truncation": None, "padding": None,
       "added_tokens": [{"id": 13, "content": "<eos>", "special": True, "normalized": False},
                        {"id": 14, "content": "<think>", "special": False, "normalized": True, "lstrip": True}],
       "normalizer": {"type": "NFC"},
       "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
           {"type": "Split", "pattern": {"Regex": "\\s+|\\w+|[^\\s\\w]+"}, "behavior": "Isolated", "invert": False},
           {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
       "post_processor": {"type": "TemplateProcessing",
                          "single": [{"SpecialToken": {"id": "<eos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                          "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                          "special_tokens": {"<eos>": {"id": "<eos>", "ids": [13], "tokens": ["<eos>"]}}},
       "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                 "vocab": vocab, "merges": ["a b", ["c", "d"], "ab cd", "Ġ a"]}}
write("tokenizer", "tiny_bpe.json", json.dumps(tok, ensure_ascii=False, indent=1))

write("dataset", "array.json", json.dumps([
    {"Question": "Q1?", "Complex_CoT": "think", "Response": "A1"},
    {"Question": "Q2 \u4f60\u597d", "Complex_CoT": "t\n2", "Response": "A2", "extra": [1, {"x": None}]}]))
write("dataset", "lines_with_bad.jsonl",
      '{"Question": "q", "Complex_CoT": "c", "Response": "r"}\n{"Question": 5}\n\n{"Question": "q2", "Complex_CoT": "", '
      '"Response": "r2"}\n{broken\n')

write("template", "qa.json", json.dumps({"name": "qa", "train": "Q: {Question}\nA: <think>{Complex_CoT}</think>{Response}",
                                         "prompt": "Q: {Question}\nA: <think>"}))
write("template", "braces.json", json.dumps({"train": "{{literal}} {Question} }} {Response}", "prompt": "{{literal}} "}))
write("template", "no_prompt.json", json.dumps({"train": "{Text}"}))

peft = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "org/base", "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layers_pattern": None,
        "layers_to_transform": None, "lora_alpha": 32, "lora_dropout": 0.05, "modules_to_save": None,
        "peft_type": "LORA", "r": 16, "rank_pattern": {}, "revision": None,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": True}
write("peft_config", "adapter_config.json", json.dumps(peft, indent=2))
write("peft_config", "minimal.json", json.dumps({"r": 4, "target_modules": ["q_proj"]}))
