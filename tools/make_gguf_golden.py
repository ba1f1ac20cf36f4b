#!/usr/bin/env python3
"""Goldens for cotune's GGUF reader/writer and ggml block (de)quantizers.

  tools/make_gguf_golden.py --ggml-lib PATH/libggml-base.so [--out tests/golden/gguf]

quants/input.f32            4096 fp32 values: blocks of different shapes (gaussian, uniform, all-positive,
                            all-negative, zeros, tiny, one outlier, constants, huge) so every branch of
                            the reference quantizers runs
quants/<type>.bin           ggml_quantize_chunk(type, input) from ggml itself (its reference quantizer)
quants/<type>.deq.f32       ggml's to_float of those bytes
gguf-py/<...>.gguf          a small file written by the `gguf` package (gguf-py): every metadata value type,
                            arrays, tensors of several ggml types; cotune's reader and writer are checked
                            against it byte for byte.

libggml-base.so comes from llama.cpp (llama-cpp-python's sdist vendors it; build it with CMake).
"""
import argparse
import ctypes
import os

import numpy as np

TYPES = {  # name: (ggml type id, block size, bytes a block)
    "f32": (0, 1, 4), "f16": (1, 1, 2), "bf16": (30, 1, 2),
    "q4_0": (2, 32, 18), "q4_1": (3, 32, 20), "q5_0": (6, 32, 22), "q5_1": (7, 32, 24), "q8_0": (8, 32, 34),
    "q2_K": (10, 256, 84), "q3_K": (11, 256, 110), "q4_K": (12, 256, 144), "q5_K": (13, 256, 176),
    "q6_K": (14, 256, 210),
}


def make_input(n=4096, seed=16):
    rng = np.random.default_rng(seed)
    parts = [
        rng.normal(0, 0.02, 512),               # weight-like
        rng.uniform(-1, 1, 256),
        np.abs(rng.normal(0, 1, 256)) + 0.5,      # all positive, min above zero
        -np.abs(rng.normal(0, 1, 256)) - 0.1,     # all negative
        np.zeros(256),                            # zero block
        rng.normal(0, 1e-20, 256),                # below GROUP_MAX_EPS
        np.where(np.arange(256) == 77, 9.0, rng.normal(0, 0.01, 256)),  # one outlier
        np.full(256, 0.3),                        # constant
        rng.normal(0, 3000.0, 256),               # large
        rng.standard_t(2, 512) * 0.05,            # heavy tails
        np.round(rng.normal(0, 4, 256)) / 8,      # exactly representable steps, ties
        rng.normal(0.2, 0.05, 256),               # offset mean
        rng.laplace(0, 0.1, 512),
    ]
    x = np.concatenate(parts).astype(np.float32)
    assert x.size == n, x.size
    return x


def quant_goldens(lib_path, out):
    lib = ctypes.CDLL(lib_path)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]

    class Traits(ctypes.Structure):
        _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                    ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                    ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                    ("from_float_ref", ctypes.c_void_p)]
    lib.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    to_float_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)

    os.makedirs(f"{out}/quants", exist_ok=True)
    x = make_input()
    x.tofile(f"{out}/quants/input.f32")
    n_per_row = 1024
    for name, (tid, bs, ts) in TYPES.items():
        if name == "f32":
            continue
        nbytes = x.size // bs * ts
        dst = ctypes.create_string_buffer(nbytes)
        got = lib.ggml_quantize_chunk(tid, x.ctypes.data, dst, 0, x.size // n_per_row, n_per_row, None)
        assert got == nbytes, (name, got, nbytes)
        q = np.frombuffer(dst.raw, dtype=np.uint8)
        q.tofile(f"{out}/quants/{name}.bin")
        tr = lib.ggml_get_type_traits(tid).contents
        assert tr.type_size == ts and tr.blck_size == bs, name
        y = np.zeros(x.size, dtype=np.float32)
        to_float_t(tr.to_float)(q.ctypes.data, y.ctypes.data, x.size)
        y.tofile(f"{out}/quants/{name}.deq.f32")
        print(f"{name}: {nbytes} bytes, max |x - deq| on the weight-like part {np.abs(x[:512] - y[:512]).max():.3g}")


def gguf_golden(out):
    import gguf
    os.makedirs(f"{out}/gguf-py", exist_ok=True)
    path = f"{out}/gguf-py/all_types.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 1.5)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ▁ 世界")
    w.add_uint64("t.u64", 1 << 40)
    w.add_int64("t.i64", -(1 << 40))
    w.add_float64("t.f64", 2.25)
    w.add_array("t.arr_str", ["a", "", "ĠĠ", "<|im_end|>"])
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, -1.25])
    w.add_array("t.arr_empty", [])
    w.add_string("general.name", "tiny")
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, (3, 64)).astype(np.float32)
    w.add_tensor("a.f32", a)
    w.add_tensor("b.f16", a.astype(np.float16))
    q = gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("c.q8_0", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("d.vec", np.arange(5, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    a.tofile(f"{out}/gguf-py/all_types.a.f32")
    print(path, os.path.getsize(path), "bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ggml-lib", required=True)
    ap.add_argument("--out", default="tests/golden/gguf")
    a = ap.parse_args()
    quant_goldens(a.ggml_lib, a.out)
    gguf_golden(a.out)


if __name__ == "__main__":
    main()
