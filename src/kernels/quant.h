// Quantization references in bitsandbytes' formats: NF4 weights (blocks of 64, double-quantized absmax)
// and blockwise 8-bit dynamic quantization (Adam state, and the nested absmax of NF4).
//
// These CPU functions are the spec the CUDA kernels are tested against, and they reproduce bitsandbytes
// bit for bit (goldens in tests/golden/quant/, made by tools/make_quant_golden.py with bnb itself).
//
// Layout of an NF4 weight of n elements (row-major [out, in] flattened; n need not be a multiple of 64):
//   packed          u8  [ceil(n/2)]          code of element 2i in the HIGH nibble, of 2i+1 in the low one
//   absmax          u8  [nblocks]            nblocks = ceil(n/64); codes of (absmax_f32 - offset) in the
//                                            signed dynamic map, blockwise over 256 absmax values
//   nested_absmax   f32 [ceil(nblocks/256)]  absmax of each group of 256 (absmax_f32 - offset)
//   offset          f32                      mean of absmax_f32 (torch .mean(), see nf4_quantize)
//   quant_map       f32 [16]                 the NF4 code table (kNf4Code)
//   nested_quant_map f32 [256]               create_dynamic_map(signed=True)
// Element i dequantizes to quant_map[code_i] * (nested_quant_map[absmax[b]] * nested_absmax[b/256] + offset)
// with b = i/64, every product and sum rounded to fp32 in that order (what bnb computes).
//
// A checkpoint saved by bitsandbytes (and read by transformers) names these, for a Linear `x`:
//   x.weight (u8 [ceil(n/2), 1]), x.weight.absmax, x.weight.quant_map, x.weight.nested_absmax,
//   x.weight.nested_quant_map, x.weight.quant_state.bitsandbytes__nf4 (u8: a JSON blob, see Nf4QuantState).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tensor.h"

namespace cotune {
class Arena;
}

namespace cotune::kernels {

// The 16 NF4 values, ascending (bitsandbytes get_4bit_type("nf4"); code 7 is 0, code 15 is 1).
extern const float kNf4Code[16];
// bitsandbytes create_dynamic_map(signed=True) and (signed=False): 256 ascending fp32 values each.
// Signed: first moment of 8-bit Adam and the nested absmax of NF4. Unsigned: second moment of 8-bit Adam.
extern const float kDynamicMapSigned[256];
extern const float kDynamicMapUnsigned[256];

inline constexpr int64_t kNf4Blocksize = 64;
inline constexpr int64_t kNestedBlocksize = 256;   // NF4 double quantization
inline constexpr int64_t kOptimBlocksize = 256;    // 8-bit optimizer state

inline int64_t num_blocks(int64_t n, int64_t blocksize) { return (n + blocksize - 1) / blocksize; }

// How a normalized value in [-1, 1] picks its 8-bit code.
//  nearest:     the nearest code, a value exactly on the midpoint of two codes takes the lower one. This is
//               bnb's PyTorch backend (bucketize on fp32 midpoints) and what bnb's CUDA kernels compute.
//  bnb_cpu_lut: bnb's native CPU library (libbitsandbytes_cpu >= 0.47, `quantize_cpu_impl`): the value is
//               rounded to a 65536-point grid over [-1, 1], idx = (u16)(((v + 1) * 0.5f) * 65535 + 0.5f),
//               and lut[idx] is the code nearest that grid point. Coarser near 0 (grid step 3e-5), so it
//               differs from `nearest` on ~0.1-20% of values; it is what `bnb.functional.quantize_blockwise`
//               and bnb's CPU AdamW8bit produce, so it is kept for bit-exact comparison with them.
// A block whose absmax is 0 gets code 0 everywhere under bnb_cpu_lut, and the code nearest 0 under nearest.
enum class QuantRounding : uint8_t { nearest, bnb_cpu_lut };

namespace cpu {

// ---- blockwise 8-bit (bnb quantize_blockwise / dequantize_blockwise) ----------------------------------
// x f32 [n] -> q u8 [n], absmax f32 [ceil(n/blocksize)]; code f32 [256] ascending.
// absmax_b = max |x| over the block; v = clamp(x * (1.0f / absmax_b), -1, 1); q = code index chosen by `r`.
void quantize_blockwise_8bit(const float* x, int64_t n, const float* code, int64_t blocksize, uint8_t* q,
                             float* absmax, QuantRounding r);
// out[i] = code[q[i]] * absmax[i / blocksize]  (one fp32 multiply)
void dequantize_blockwise_8bit(const uint8_t* q, const float* absmax, const float* code, int64_t n,
                               int64_t blocksize, float* out);

// ---- NF4 -----------------------------------------------------------------------------------------------
// x f32 [n] -> packed u8 [ceil(n/2)] (first element in the high nibble; an odd n pads the last low nibble
// with 7, the code of a scaled 0.0, as bnb pads), absmax f32 [ceil(n/blocksize)]. Code = number of NF4
// midpoints (kNf4Code[i] + kNf4Code[i+1]) / 2 strictly below v, v = clamp(x * (1.0f / max(absmax, 1e-38)), -1, 1).
void nf4_quantize(const float* x, int64_t n, int64_t blocksize, uint8_t* packed, float* absmax);
// out[i] = kNf4Code[code_i] * absmax[i / blocksize]
void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize, float* out);

// Double quantization of NF4 absmax (bnb quantize_4bit(compress_statistics=True)):
//   offset = mean(absmax) (fp64 sum, rounded to fp32: within 1 ulp of torch's fp32 .mean());
//   qabsmax u8 [nblocks], nested_absmax f32 [ceil(nblocks/256)] = quantize_blockwise_8bit(absmax - offset,
//   kDynamicMapSigned, 256). bnb on a CPU tensor uses bnb_cpu_lut, on a CUDA tensor nearest.
float mean_f32(const float* x, int64_t n);
void double_quantize_absmax(const float* absmax, int64_t nblocks, float offset, uint8_t* qabsmax,
                            float* nested_absmax, QuantRounding r);
// absmax[b] = kDynamicMapSigned-like code[qabsmax[b]] * nested_absmax[b / 256] + offset (two fp32 roundings).
void dequantize_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* nested_code,
                       float offset, int64_t nblocks, float* absmax);

}  // namespace cpu

// ---- quant_state JSON blob (`<name>.weight.quant_state.bitsandbytes__nf4`) ------------------------------
// bnb writes json.dumps of {"quant_type", "blocksize", "dtype", "shape", and when nested "nested_blocksize",
// "nested_dtype", "nested_offset"} in that key order, ", " and ": " separators, floats as Python repr.
struct Nf4QuantState {
  std::string quant_type = "nf4";  // "nf4" or "fp4" (cotune handles nf4)
  int64_t blocksize = kNf4Blocksize;
  std::string dtype = "bfloat16";  // original weight dtype as torch spells it: bfloat16, float16, float32
  std::vector<int64_t> shape;
  bool nested = true;
  int64_t nested_blocksize = kNestedBlocksize;
  std::string nested_dtype = "float32";
  double nested_offset = 0.0;  // the fp32 offset, widened
};
// Byte-identical to what bitsandbytes writes for the same state.
std::string write_nf4_quant_state(const Nf4QuantState& s);
// Throws Error naming `what` (e.g. the tensor name) and the field when the blob is malformed.
Nf4QuantState parse_nf4_quant_state(std::string_view json, std::string_view what);
// Python's repr(float): shortest round-trip digits, exponent form when exp < -4 or >= 16 ("1e-05", "0.0001").
std::string python_float_repr(double v);

// ---- whole NF4 weights ---------------------------------------------------------------------------------
// Non-owning view of an NF4 weight with its state (the tensors bitsandbytes saves, see the top comment).
struct Nf4Weight {
  Shape shape;                    // logical shape, e.g. [out, in]
  DType dtype = DType::bf16;      // dtype of the weight before quantization (quant_state "dtype")
  int64_t blocksize = kNf4Blocksize;
  Tensor packed;                  // u8 [ceil(n/2)] (bnb saves [ceil(n/2), 1]; any shape of that numel)
  Tensor absmax;                  // u8 [nblocks] when nested, else f32 [nblocks]
  Tensor quant_map;               // f32 [16]
  bool nested = true;
  Tensor nested_absmax;           // f32 [ceil(nblocks/256)]
  Tensor nested_quant_map;        // f32 [256]
  float offset = 0.f;
  int64_t nested_blocksize = kNestedBlocksize;

  int64_t numel() const { return shape.numel(); }
  Nf4QuantState quant_state() const;
  // Throws Error naming `what` unless the tensors have the sizes above (host or device alike).
  void validate(std::string_view what) const;
};

// Host storage for one NF4 weight, sized for `shape`; view() points into it.
struct Nf4Buffers {
  Shape shape;
  DType dtype = DType::bf16;
  std::vector<uint8_t> packed, absmax_q;
  std::vector<float> absmax_f32, nested_absmax;
  std::array<float, 16> quant_map{};
  std::array<float, 256> nested_quant_map{};
  float offset = 0.f;
  bool nested = true;

  Nf4Buffers() = default;
  Nf4Buffers(Shape s, DType original_dtype, bool nested_absmax = true);
  Nf4Weight view();
};

// Quantizes a host f32/bf16 weight like bnb quantize_4bit(w, blocksize=64, compress_statistics=nested,
// quant_type="nf4"). `nested_rounding` picks the 8-bit rounding of the absmax (see QuantRounding).
Nf4Buffers nf4_quantize(const Tensor& w, bool nested = true, QuantRounding nested_rounding = QuantRounding::nearest);
// nf4_quantize(w) (nested, nearest) into tensors allocated from `out` (on its device), bit-identical to it. A CUDA
// weight (bf16/f32) is quantized on the GPU: codes and block absmax there, and only the absmax (1/32 of a bf16
// weight's bytes) makes a round trip through the host for the double quantization; `scratch` (a CUDA arena) holds
// that absmax while it is needed. A host weight is quantized on the host and copied to `out`'s device.
Nf4Weight nf4_quantize_to(const Tensor& w, Arena& out, Arena& scratch);
// ---- checkpoint names -----------------------------------------------------------------------------------
// Finds a tensor of a checkpoint by full name (host or device view); nullopt when absent.
using TensorLookup = std::function<std::optional<Tensor>(const std::string& name)>;
// The NF4 weight bitsandbytes saved for the Linear `prefix` (e.g. "model.layers.0.mlp.up_proj"): reads
// prefix.weight, .weight.absmax, .weight.quant_map, .weight.quant_state.bitsandbytes__nf4 and, when the JSON
// says nested, .weight.nested_absmax and .weight.nested_quant_map. A packed weight stored in another
// quant_storage dtype (bnb_4bit_quant_storage=bfloat16, ...) is viewed as its bytes. The JSON's dtype,
// shape, blocksize and nested offset fill the description; sizes are validated. Errors name the tensor.
Nf4Weight nf4_weight_from_tensors(const std::string& prefix, const TensorLookup& lookup);
// The (name, tensor) pairs bitsandbytes would save for `q` under `prefix`, in its order: weight
// (u8 [ceil(n/2), 1]), weight.absmax, weight.quant_map, [weight.nested_absmax, weight.nested_quant_map,]
// weight.quant_state.bitsandbytes__nf4 (u8 view of `json_storage`, which must outlive the tensors).
std::vector<std::pair<std::string, Tensor>> nf4_checkpoint_tensors(const std::string& prefix, const Nf4Weight& q,
                                                                    std::string& json_storage);

// Dequantizes into a host f32 or bf16 tensor of q.numel() elements (bf16: fp32 value rounded to nearest even).
void nf4_dequantize(const Nf4Weight& q, const Tensor& out);
// nf4_dequantize of several weights (e.g. one layer's seven projections into its bf16 scratch), bit-identical to one
// call each; on CUDA with bf16 outputs one launch per 8 weights.
void nf4_dequantize_batch(std::span<const Nf4Weight> qs, std::span<const Tensor> outs);

}  // namespace cotune::kernels
