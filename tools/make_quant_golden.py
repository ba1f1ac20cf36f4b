#!/usr/bin/env python3
"""Makes tests/golden/quant/: NF4 (bitsandbytes layout, double-quantized absmax) and blockwise 8-bit
dynamic quantization goldens, produced by bitsandbytes itself on the CPU.

Two 8-bit rounding flavours exist inside bitsandbytes and both are recorded:
  * "nearest": bnb's pure-PyTorch backend (`backends/default/ops.py`: bucketize on fp32 midpoints, a value
    on a midpoint goes to the lower code), which is what the CUDA kernel (`dQuantize<0>`) computes;
  * "bnb_cpu_lut": bnb's native CPU library (libbitsandbytes_cpu, `quantize_cpu_impl`), which rounds the
    normalised value to a 65536-point grid and looks the code up in a table built from the midpoints.
`bnb.functional.quantize_blockwise` on a CPU tensor runs the second one (and so does the nested absmax
quantization of `quantize_4bit(compress_statistics=True)` on CPU). NF4 itself always runs the PyTorch
backend on CPU (bucketize, ties to the lower code).

Usage: python3 tools/make_quant_golden.py [out_dir]     (needs torch, bitsandbytes, safetensors)
"""
import json
import os
import sys

import numpy as np
import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "quant")
os.makedirs(OUT, exist_ok=True)

_DEFAULT = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)


def quantize_blockwise_nearest(A, code, blocksize):
    """bnb's PyTorch-native backend kernel (exact nearest), called through the dispatcher."""
    return torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(_DEFAULT, A, code, blocksize)


def lut_emulation(A, code, blocksize):
    """numpy re-statement of bnb's native CPU quantizer, used only to check that the C library does what
    the cotune reference says it does (the goldens themselves come from bnb)."""
    c = code.numpy().astype(np.float32)
    mid = (np.float32(0.5) * (c[:-1] + c[1:])).astype(np.float32)
    i = np.arange(65536)
    grid = (np.float32(-1.0) + ((np.float32(2.0) * i.astype(np.float32)) / np.float32(65535)).astype(np.float32)).astype(np.float32)
    lut = np.searchsorted(mid, grid, side="left").astype(np.uint8)  # first midpoint >= val
    a = A.reshape(-1).numpy().astype(np.float32)
    n = a.size
    out = np.zeros(n, np.uint8)
    absmax = np.zeros((n + blocksize - 1) // blocksize, np.float32)
    for b in range(absmax.size):
        s = a[b * blocksize:(b + 1) * blocksize]
        am = np.float32(np.abs(s).max())
        absmax[b] = am
        if am == 0:
            continue
        inv = np.float32(1.0) / am
        v = np.clip((s * inv).astype(np.float32), -1, 1)
        t = ((v + np.float32(1)) * np.float32(0.5)).astype(np.float32)
        t = (t * np.float32(65535)).astype(np.float32)
        t = (t + np.float32(0.5)).astype(np.float32)
        out[b * blocksize:(b + 1) * blocksize] = lut[t.astype(np.uint16)]
    return out, absmax


manifest = {"generator": "tools/make_quant_golden.py", "torch": torch.__version__, "bitsandbytes": bnb.__version__,
            "nf4": [], "blockwise8": []}
tensors = {}
torch.manual_seed(1234)
dyn_signed = F.create_dynamic_map(signed=True)
dyn_unsigned = F.create_dynamic_map(signed=False)
tensors["dynamic_map_signed"] = dyn_signed.clone()
tensors["dynamic_map_unsigned"] = dyn_unsigned.clone()
tensors["nf4_map"] = F.get_4bit_type("nf4", device="cpu").clone()

# ---- self-check: the native CPU quantizer is the LUT algorithm, bit for bit ---------------------------
chk = torch.randn(1 << 18) * torch.exp(torch.randn(1 << 18) * 2)
for code in (dyn_signed,):
    q, st = F.quantize_blockwise(chk, code=code, blocksize=256)
    qe, ame = lut_emulation(chk, code, 256)
    assert np.array_equal(q.numpy(), qe), "bnb CPU quantize_blockwise is not the LUT algorithm"
    assert np.array_equal(st.absmax.numpy(), ame)
chk2 = chk.abs()
q, st = F.quantize_blockwise(chk2, code=dyn_unsigned, blocksize=256)
qe, _ = lut_emulation(chk2, dyn_unsigned, 256)
assert np.array_equal(q.numpy(), qe)
manifest["lut_selfcheck_elements"] = 2 * chk.numel()

# ---- NF4 ----------------------------------------------------------------------------------------------
def nf4_case(name, W, note):
    qw, st = F.quantize_4bit(W, blocksize=64, compress_statistics=True, quant_type="nf4")
    _, st_plain = F.quantize_4bit(W, blocksize=64, compress_statistics=False, quant_type="nf4")
    packed = st.as_dict(packed=True)
    deq = F.dequantize_4bit(qw, st, quant_type="nf4")          # in W's dtype
    st_plain.dtype = torch.float32                               # un-nested absmax, output in fp32
    deq_f32 = F.dequantize_4bit(qw, st_plain, quant_type="nf4")
    # dequantize with the nested absmax, written out in fp32
    st32 = F.QuantState(absmax=st.absmax, shape=st.shape, code=st.code, blocksize=64, quant_type="nf4",
                        dtype=torch.float32, offset=st.offset, state2=st.state2)
    deq_nested_f32 = F.dequantize_4bit(qw, st32, quant_type="nf4")
    absmax_dq = F.dequantize_blockwise(st.absmax, st.state2) + st.offset
    p = name + "."
    tensors[p + "input"] = W.contiguous()
    tensors[p + "weight"] = qw.reshape(-1).contiguous()
    tensors[p + "absmax_raw"] = st_plain.absmax.contiguous()      # fp32 absmax before double quantization
    tensors[p + "weight.absmax"] = packed["absmax"].contiguous()  # u8 codes of (absmax - offset)
    tensors[p + "weight.quant_map"] = packed["quant_map"].contiguous()
    tensors[p + "weight.nested_absmax"] = packed["nested_absmax"].contiguous()
    tensors[p + "weight.nested_quant_map"] = packed["nested_quant_map"].contiguous()
    tensors[p + "weight.quant_state.bitsandbytes__nf4"] = packed["quant_state.bitsandbytes__nf4"].contiguous()
    tensors[p + "offset"] = st.offset.reshape(1).float().contiguous()
    tensors[p + "absmax_dequantized"] = absmax_dq.contiguous()
    tensors[p + "dequant"] = deq.contiguous()
    tensors[p + "dequant_f32_plain"] = deq_f32.contiguous()
    tensors[p + "dequant_f32_nested"] = deq_nested_f32.contiguous()
    # nested codes as the exact-nearest (CUDA-like) quantizer makes them, from the same offset
    qn, amn = quantize_blockwise_nearest(st_plain.absmax - st.offset, dyn_signed, 256)
    tensors[p + "absmax_nearest"] = qn.contiguous()
    tensors[p + "nested_absmax_nearest"] = amn.contiguous()
    manifest["nf4"].append({"name": name, "shape": list(W.shape), "dtype": str(W.dtype).replace("torch.", ""),
                            "offset": float(st.offset), "note": note,
                            "rel_frobenius_error": float((deq_nested_f32 - W.float()).norm() / W.float().norm())})


W = torch.randn(64, 512) * 0.02
W[3, 17] = 0.9      # outliers: a block whose absmax is set by one value
W[10, 100] = -1.3
W[40, 0:64] = 0.0   # an all-zero block (absmax 0)
nf4_case("bf16_64x512", W.to(torch.bfloat16), "Gaussian 0.02 bf16 with outliers and a zero block; 512 absmax -> 2 nested blocks")
nf4_case("f32_96x200", torch.randn(96, 200) * 0.05, "fp32; 19200 elements = 300 blocks of 64 -> nested blocks 256 + 44")
nf4_case("bf16_10x50", (torch.randn(10, 50) * 0.1).to(torch.bfloat16), "500 elements: last NF4 block has 52 values")
Wu = torch.rand(32, 128).to(torch.bfloat16)  # all positive, absmax around 1
nf4_case("bf16_uniform_32x128", Wu, "uniform [0,1) bf16")

# ---- blockwise 8-bit --------------------------------------------------------------------------------
def b8_case(name, A, code_name, note):
    code = dyn_signed if code_name == "signed" else dyn_unsigned
    q_lut, st = F.quantize_blockwise(A, code=code.clone(), blocksize=256)
    q_near, am_near = quantize_blockwise_nearest(A, code, 256)
    assert torch.equal(am_near, st.absmax)
    deq = F.dequantize_blockwise(q_lut, absmax=st.absmax, code=code, blocksize=256)
    p = name + "."
    tensors[p + "input"] = A.contiguous()
    tensors[p + "absmax"] = st.absmax.contiguous()
    tensors[p + "q_lut"] = q_lut.contiguous()
    tensors[p + "q_nearest"] = q_near.contiguous()
    tensors[p + "dequant_lut"] = deq.contiguous()
    manifest["blockwise8"].append({"name": name, "n": A.numel(), "map": code_name, "note": note,
                                   "lut_vs_nearest_differ": int((q_lut != q_near).sum())})


x = torch.randn(256 * 6 + 100) * 1e-3
x[5] = 0.5
x[300:556] = 0.0
b8_case("signed_1636", x, "signed", "Adam m-like values, an outlier, a zero block, a 100-element tail block")
v = (torch.randn(256 * 5 + 17) * 1e-3) ** 2
b8_case("unsigned_1297", v, "unsigned", "Adam v-like values (squares), 17-element tail")
w = torch.randn(2048) * torch.exp(torch.randn(2048) * 3)
b8_case("signed_wide_2048", w, "signed", "values over many decades")

save_file(tensors, os.path.join(OUT, "quant_golden.safetensors"))
with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=2)
print(json.dumps(manifest, indent=2))
print("bytes", os.path.getsize(os.path.join(OUT, "quant_golden.safetensors")))
