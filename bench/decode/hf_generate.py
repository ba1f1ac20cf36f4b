"""transformers generate() batch-1 decode speed at the DeepSeek-R1-Distill-Qwen-1.5B shape (random bf16), and the
GPU's copy bandwidth for the bandwidth bound, measured as ../shared/anchors/hf_generate_baseline.py measures them
(64-token prompt, greedy, 256 new tokens, 2 warm-ups; bound = copy bandwidth / bytes of weights read a token, the
embedding excluded). Only the default cache (the static cache without torch.compile is slower). One JSON line."""
import json
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

cfg = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                  num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072, rope_theta=10000.0,
                  rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=151643, eos_token_id=151643)
x = torch.empty(2**30, dtype=torch.uint8, device="cuda")
y = torch.empty_like(x)
for _ in range(3):
    y.copy_(x)
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(20):
    y.copy_(x)
torch.cuda.synchronize()
bw = 20 * 2 * 2**30 / (time.perf_counter() - t)
del x, y
m = Qwen2ForCausalLM(cfg).to(torch.bfloat16).cuda().eval()
wbytes = sum(p.numel() * 2 for n, p in m.named_parameters() if "embed_tokens" not in n)
ids = torch.randint(0, 151000, (1, 64), device="cuda")
res = {"copy_GBps": round(bw / 1e9, 1), "weight_bytes_per_token_GB": round(wbytes / 1e9, 3),
       "bound_tok_s": round(bw / wbytes, 1), "gpu": torch.cuda.get_device_name()}
for _ in range(2):
    m.generate(ids, do_sample=False, max_new_tokens=32, min_new_tokens=32, pad_token_id=0)
torch.cuda.synchronize()
t = time.perf_counter()
m.generate(ids, do_sample=False, max_new_tokens=256, min_new_tokens=256, pad_token_id=0)
torch.cuda.synchronize()
res["hf_generate_default_tok_s"] = round(256 / (time.perf_counter() - t), 1)
print(json.dumps(res))
