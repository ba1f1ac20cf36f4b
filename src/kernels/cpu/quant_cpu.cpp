// CPU reference of NF4 and blockwise 8-bit quantization (bitsandbytes layout and rounding); see quant.h.
// Every arithmetic step is a single fp32 operation in the order bnb performs it (no FMA contraction: the
// project builds with -std=c++20, where GCC keeps -ffp-contract=off), so results are bit-identical to bnb.
#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>

#include "base/half.h"
#include "base/parallel.h"
#include "kernels/quant.h"
#include "tensor/arena.h"
#ifdef COTUNE_WITH_CUDA
#include "kernels/cuda/nf4.h"
#endif

namespace cotune::kernels {
namespace {

// Index of the code a normalized value v (already clamped to [-1, 1]) takes under `nearest`: the number of
// midpoints strictly below v (torch.bucketize(v, midpoints, right=False)). `mid` has ncode-1 entries.
inline int bucketize(float v, const float* mid, int nmid) {
  // upper_bound of "mid < v" over an ascending array
  int lo = 0, hi = nmid;
  while (lo < hi) {
    int m = (lo + hi) / 2;
    if (mid[m] < v) lo = m + 1;
    else hi = m;
  }
  return lo;
}

struct Midpoints {
  float mid[255];
  explicit Midpoints(const float* code) {
    // torch: (code[:-1] + code[1:]) / 2, one fp32 add then an exact halving
    for (int i = 0; i < 255; ++i) mid[i] = (code[i] + code[i + 1]) / 2.0f;
  }
};

// bnb's native CPU quantizer table: lut[i] = code index nearest the grid point -1 + 2i/65535.
constexpr int kLutSize = 65536;
struct Lut {
  uint8_t lut[kLutSize];
  explicit Lut(const float* code) {
    float mid[255];
    for (int i = 0; i < 255; ++i) mid[i] = 0.5f * (code[i] + code[i + 1]);
    int ci = 0;
    for (int i = 0; i < kLutSize; ++i) {
      float val = -1.0f + (2.0f * static_cast<float>(i)) / static_cast<float>(kLutSize - 1);
      while (ci < 255 && mid[ci] < val) ++ci;
      lut[i] = static_cast<uint8_t>(ci);
    }
  }
};

inline uint16_t lut_index(float v) {
  v = std::clamp(v, -1.0f, 1.0f);
  float t = (v + 1.0f) * 0.5f;
  t = t * static_cast<float>(kLutSize - 1);
  t = t + 0.5f;
  return static_cast<uint16_t>(t);
}

// Tables for the two maps cotune uses are built once; any other code gets a table per call.
std::shared_ptr<const Lut> lut_for(const float* code) {
  static std::mutex mu;
  static std::shared_ptr<const Lut> signed_lut, unsigned_lut;
  auto same = [&](const float* table) { return std::equal(code, code + 256, table); };
  std::lock_guard<std::mutex> lock(mu);
  if (same(kDynamicMapSigned)) {
    if (!signed_lut) signed_lut = std::make_shared<Lut>(kDynamicMapSigned);
    return signed_lut;
  }
  if (same(kDynamicMapUnsigned)) {
    if (!unsigned_lut) unsigned_lut = std::make_shared<Lut>(kDynamicMapUnsigned);
    return unsigned_lut;
  }
  return std::make_shared<Lut>(code);
}

inline float block_absmax(const float* x, int64_t len) {
  float am = 0.0f;
  for (int64_t i = 0; i < len; ++i) am = std::max(am, std::fabs(x[i]));
  return am;
}

}  // namespace

namespace cpu {

void quantize_blockwise_8bit(const float* x, int64_t n, const float* code, int64_t blocksize, uint8_t* q,
                             float* absmax, QuantRounding r) {
  COTUNE_CHECK(blocksize > 0, "quantize_blockwise_8bit: blocksize must be positive, got {}", blocksize);
  const int64_t nb = num_blocks(n, blocksize);
  if (r == QuantRounding::nearest) {
    const Midpoints m(code);
    parallel_for(nb, [&](int64_t b) {
      const int64_t s = b * blocksize, e = std::min(n, s + blocksize);
      float am = block_absmax(x + s, e - s);
      absmax[b] = am;
      // bnb PyTorch backend: A * (1.0 / absmax.clamp(min=1e-38)), clamped to [-1, 1]
      const float inv = 1.0f / std::max(am, 1e-38f);
      for (int64_t i = s; i < e; ++i) {
        float v = std::clamp(x[i] * inv, -1.0f, 1.0f);
        q[i] = static_cast<uint8_t>(bucketize(v, m.mid, 255));
      }
    });
    return;
  }
  const std::shared_ptr<const Lut> lut = lut_for(code);
  parallel_for(nb, [&](int64_t b) {
    const int64_t s = b * blocksize, e = std::min(n, s + blocksize);
    float am = block_absmax(x + s, e - s);
    absmax[b] = am;
    if (am == 0.0f) {
      std::fill(q + s, q + e, uint8_t{0});
      return;
    }
    const float inv = 1.0f / am;
    for (int64_t i = s; i < e; ++i) q[i] = lut->lut[lut_index(x[i] * inv)];
  });
}

void dequantize_blockwise_8bit(const uint8_t* q, const float* absmax, const float* code, int64_t n,
                               int64_t blocksize, float* out) {
  parallel_for(n, [&](int64_t i) { out[i] = code[q[i]] * absmax[i / blocksize]; });
}

void nf4_quantize(const float* x, int64_t n, int64_t blocksize, uint8_t* packed, float* absmax) {
  COTUNE_CHECK(blocksize > 0, "nf4_quantize: blocksize must be positive, got {}", blocksize);
  float mid[15];
  for (int i = 0; i < 15; ++i) mid[i] = (kNf4Code[i] + kNf4Code[i + 1]) / 2.0f;
  const int64_t nb = num_blocks(n, blocksize);
  parallel_for(nb, [&](int64_t b) {
    const int64_t s = b * blocksize, e = std::min(n, s + blocksize);
    absmax[b] = block_absmax(x + s, e - s);
  });
  auto code_of = [&](int64_t i) -> uint8_t {
    if (i >= n) return static_cast<uint8_t>(bucketize(0.0f, mid, 15));  // bnb pads the scaled values with 0
    const float inv = 1.0f / std::max(absmax[i / blocksize], 1e-38f);
    return static_cast<uint8_t>(bucketize(std::clamp(x[i] * inv, -1.0f, 1.0f), mid, 15));
  };
  parallel_for((n + 1) / 2, [&](int64_t j) {
    packed[j] = static_cast<uint8_t>((code_of(2 * j) << 4) | code_of(2 * j + 1));
  });
}

void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize, float* out) {
  parallel_for(n, [&](int64_t i) {
    const uint8_t byte = packed[i / 2];
    const int c = (i % 2 == 0) ? (byte >> 4) : (byte & 0x0f);
    out[i] = kNf4Code[c] * absmax[i / blocksize];
  });
}

float mean_f32(const float* x, int64_t n) {
  COTUNE_CHECK(n > 0, "mean_f32: empty input");
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return static_cast<float>(s / static_cast<double>(n));
}

void double_quantize_absmax(const float* absmax, int64_t nblocks, float offset, uint8_t* qabsmax,
                            float* nested_absmax, QuantRounding r) {
  std::vector<float> centred(static_cast<size_t>(nblocks));
  for (int64_t i = 0; i < nblocks; ++i) centred[static_cast<size_t>(i)] = absmax[i] - offset;
  quantize_blockwise_8bit(centred.data(), nblocks, kDynamicMapSigned, kNestedBlocksize, qabsmax, nested_absmax, r);
}

void dequantize_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* nested_code, float offset,
                       int64_t nblocks, float* absmax) {
  for (int64_t b = 0; b < nblocks; ++b) {
    float a = nested_code[qabsmax[b]] * nested_absmax[b / kNestedBlocksize];
    absmax[b] = a + offset;
  }
}

}  // namespace cpu

// ---- whole weights ---------------------------------------------------------------------------------------

namespace {
std::string_view torch_dtype_name(DType d) {
  switch (d) {
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::f32: return "float32";
    default: fail("NF4: weights of dtype {} cannot be quantized (expected bf16, f16 or f32)", dtype_name(d));
  }
}

void expect_numel(const Tensor& t, int64_t n, DType d, std::string_view what, std::string_view field) {
  if (t.dtype != d || t.numel() != n)
    fail("{}: NF4 tensor {} is {} but {}[{}] was expected", what, field, t.str(), dtype_name(d), n);
}
}  // namespace

Nf4QuantState Nf4Weight::quant_state() const {
  Nf4QuantState s;
  s.blocksize = blocksize;
  s.dtype = std::string(torch_dtype_name(dtype));
  s.shape.assign(shape.dims.begin(), shape.dims.begin() + shape.ndim);
  s.nested = nested;
  s.nested_blocksize = nested_blocksize;
  s.nested_offset = static_cast<double>(offset);
  return s;
}

void Nf4Weight::validate(std::string_view what) const {
  const int64_t n = numel();
  if (blocksize <= 0) fail("{}: NF4 blocksize {} is not positive", what, blocksize);
  const int64_t nb = num_blocks(n, blocksize);
  expect_numel(packed, (n + 1) / 2, DType::u8, what, "weight");
  expect_numel(quant_map, 16, DType::f32, what, "quant_map");
  if (nested) {
    if (nested_blocksize <= 0) fail("{}: nested blocksize {} is not positive", what, nested_blocksize);
    expect_numel(absmax, nb, DType::u8, what, "absmax");
    expect_numel(nested_absmax, num_blocks(nb, nested_blocksize), DType::f32, what, "nested_absmax");
    expect_numel(nested_quant_map, 256, DType::f32, what, "nested_quant_map");
  } else {
    expect_numel(absmax, nb, DType::f32, what, "absmax");
  }
}

Nf4Buffers::Nf4Buffers(Shape s, DType original_dtype, bool nested_absmax_) : shape(s), dtype(original_dtype) {
  const int64_t n = s.numel();
  const int64_t nb = num_blocks(n, kNf4Blocksize);
  nested = nested_absmax_;
  packed.assign(static_cast<size_t>((n + 1) / 2), 0);
  absmax_f32.assign(static_cast<size_t>(nb), 0.f);
  if (nested) {
    absmax_q.assign(static_cast<size_t>(nb), 0);
    nested_absmax.assign(static_cast<size_t>(num_blocks(nb, kNestedBlocksize)), 0.f);
  }
  std::copy(kNf4Code, kNf4Code + 16, quant_map.begin());
  std::copy(kDynamicMapSigned, kDynamicMapSigned + 256, nested_quant_map.begin());
}

Nf4Weight Nf4Buffers::view() {
  Nf4Weight w;
  w.shape = shape;
  w.dtype = dtype;
  w.packed = Tensor(packed.data(), DType::u8, {static_cast<int64_t>(packed.size())});
  w.quant_map = Tensor(quant_map.data(), DType::f32, {16});
  w.nested = nested;
  w.offset = offset;
  if (nested) {
    w.absmax = Tensor(absmax_q.data(), DType::u8, {static_cast<int64_t>(absmax_q.size())});
    w.nested_absmax = Tensor(nested_absmax.data(), DType::f32, {static_cast<int64_t>(nested_absmax.size())});
    w.nested_quant_map = Tensor(nested_quant_map.data(), DType::f32, {256});
  } else {
    w.absmax = Tensor(absmax_f32.data(), DType::f32, {static_cast<int64_t>(absmax_f32.size())});
  }
  return w;
}

Nf4Buffers nf4_quantize(const Tensor& w, bool nested, QuantRounding nested_rounding) {
  if (w.device != Device::cpu) fail("nf4_quantize: {} is not a host tensor", w.str());
  Nf4Buffers out(w.shape, w.dtype, nested);
  (void)torch_dtype_name(w.dtype);  // rejects dtypes bnb does not quantize
  const int64_t n = w.numel();
  std::vector<float> x(static_cast<size_t>(n));
  if (w.dtype == DType::f32) {
    std::copy(w.ptr<float>(), w.ptr<float>() + n, x.begin());
  } else if (w.dtype == DType::bf16) {
    const uint16_t* p = w.ptr<uint16_t>();
    for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = bf16_to_f32(p[i]);
  } else {
    const uint16_t* p = w.ptr<uint16_t>();
    for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = f16_to_f32(p[i]);
  }
  cpu::nf4_quantize(x.data(), n, kNf4Blocksize, out.packed.data(), out.absmax_f32.data());
  if (nested) {
    const int64_t nb = static_cast<int64_t>(out.absmax_f32.size());
    out.offset = cpu::mean_f32(out.absmax_f32.data(), nb);
    cpu::double_quantize_absmax(out.absmax_f32.data(), nb, out.offset, out.absmax_q.data(), out.nested_absmax.data(),
                                nested_rounding);
  }
  return out;
}

Nf4Weight nf4_quantize_to(const Tensor& w, Arena& out, Arena& scratch) {
  const int64_t n = w.numel();
  const int64_t nb = num_blocks(n, kNf4Blocksize);
  auto put = [&](const void* src, DType dt, int64_t count, const char* what) {
    Tensor t = out.alloc(dt, {count}, what);
    copy_bytes(t, Tensor(const_cast<void*>(src), dt, {count}));
    return t;
  };
  Nf4Weight q;
  q.shape = w.shape;
  q.dtype = w.dtype;
  q.nested = true;
  std::vector<float> absmax_f32;
  if (w.device == Device::cpu) {
    Nf4Buffers h = nf4_quantize(w);
    q.packed = put(h.packed.data(), DType::u8, static_cast<int64_t>(h.packed.size()), "nf4 codes");
    absmax_f32 = std::move(h.absmax_f32);
  } else {
#ifdef COTUNE_WITH_CUDA
    (void)torch_dtype_name(w.dtype);  // rejects dtypes bnb does not quantize
    q.packed = out.alloc(DType::u8, {(n + 1) / 2}, "nf4 codes");
    Tensor am = scratch.alloc(DType::f32, {nb}, "nf4 block absmax");
    cuda::nf4_quantize_codes(w, q.packed, am);
    absmax_f32.resize(static_cast<size_t>(nb));
    copy_bytes(Tensor(absmax_f32.data(), DType::f32, {nb}), am);
#else
    (void)scratch;
    fail("nf4_quantize_to: {} is not a host tensor and this build has no CUDA", w.str());
#endif
  }
  // The double quantization (as nf4_quantize: fp64 mean, nearest rounding) on the host.
  q.offset = cpu::mean_f32(absmax_f32.data(), nb);
  std::vector<uint8_t> qabs(static_cast<size_t>(nb));
  std::vector<float> nested(static_cast<size_t>(num_blocks(nb, kNestedBlocksize)));
  cpu::double_quantize_absmax(absmax_f32.data(), nb, q.offset, qabs.data(), nested.data(), QuantRounding::nearest);
  q.absmax = put(qabs.data(), DType::u8, nb, "nf4 absmax");
  q.nested_absmax = put(nested.data(), DType::f32, static_cast<int64_t>(nested.size()), "nf4 nested absmax");
  q.quant_map = put(kNf4Code, DType::f32, 16, "nf4 map");
  q.nested_quant_map = put(kDynamicMapSigned, DType::f32, 256, "nf4 nested map");
  return q;
}

void nf4_dequantize_batch(std::span<const Nf4Weight> qs, std::span<const Tensor> outs) {
  if (qs.size() != outs.size()) fail("nf4_dequantize_batch: {} weights but {} outputs", qs.size(), outs.size());
#ifdef COTUNE_WITH_CUDA
  const bool batch = !outs.empty() && std::all_of(outs.begin(), outs.end(), [](const Tensor& t) {
    return t.device == Device::cuda && t.dtype == DType::bf16;
  });
  if (batch) {
    cuda::nf4_dequantize_batch(qs, outs);  // validates each weight
    return;
  }
#endif
  for (size_t i = 0; i < qs.size(); ++i) nf4_dequantize(qs[i], outs[i]);
}

void nf4_dequantize(const Nf4Weight& q, const Tensor& out) {
  q.validate("nf4_dequantize");
#ifdef COTUNE_WITH_CUDA
  if (q.packed.device == Device::cuda && out.device == Device::cuda) {
    cuda::nf4_dequantize(q, out);
    return;
  }
#endif
  if (q.packed.device != Device::cpu || out.device != Device::cpu)
    fail("nf4_dequantize: the CPU reference needs host tensors (got {} -> {})", q.packed.str(), out.str());
  const int64_t n = q.numel();
  if (out.numel() != n)
    fail("nf4_dequantize: output {} does not hold the {} elements of {}", out.str(), n, q.shape.str());
  const int64_t nb = num_blocks(n, q.blocksize);
  std::vector<float> absmax(static_cast<size_t>(nb));
  if (q.nested) {
    cpu::dequantize_absmax(q.absmax.ptr<uint8_t>(), q.nested_absmax.ptr<float>(), q.nested_quant_map.ptr<float>(),
                           q.offset, nb, absmax.data());
  } else {
    std::copy(q.absmax.ptr<float>(), q.absmax.ptr<float>() + nb, absmax.begin());
  }
  // The code table travels with the weight (quant_map); bnb dequantizes with its own NF4 table, which a
  // well-formed checkpoint repeats. Using the stored one keeps a foreign table honest.
  const float* code = q.quant_map.ptr<float>();
  const uint8_t* packed = q.packed.ptr<uint8_t>();
  auto value = [&](int64_t i) {
    const uint8_t byte = packed[i / 2];
    const int c = (i % 2 == 0) ? (byte >> 4) : (byte & 0x0f);
    return code[c] * absmax[static_cast<size_t>(i / q.blocksize)];
  };
  if (out.dtype == DType::f32) {
    float* o = out.ptr<float>();
    parallel_for(n, [&](int64_t i) { o[i] = value(i); });
  } else if (out.dtype == DType::bf16) {
    uint16_t* o = out.ptr<uint16_t>();
    parallel_for(n, [&](int64_t i) { o[i] = f32_to_bf16(value(i)); });
  } else if (out.dtype == DType::f16) {
    uint16_t* o = out.ptr<uint16_t>();
    parallel_for(n, [&](int64_t i) { o[i] = f32_to_f16(value(i)); });
  } else {
    fail("nf4_dequantize: output {} must be f32, bf16 or f16", out.str());
  }
}

}  // namespace cotune::kernels
