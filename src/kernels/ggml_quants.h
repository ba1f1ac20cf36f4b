// ggml's tensor types and their block quantization, bit-identical to ggml's reference code
// (`quantize_row_*_ref` / `dequantize_row_*` in ggml/src/ggml-quants.c; block layouts in ggml-common.h),
// which is what llama.cpp's `llama-quantize` runs when no importance matrix is given.
//
// Blocks (bytes in order; "half" = IEEE fp16, little-endian), QK_K = 256:
//   q4_0  32 el, 18 B: half d, u8 qs[16]      x = (nibble - 8) * d; element j in the low nibble of qs[j],
//                                             element j+16 in the high one
//   q4_1  32 el, 20 B: half d, half m, u8 qs[16]          x = nibble * d + m
//   q5_0  32 el, 22 B: half d, u8 qh[4], u8 qs[16]        x = (nibble | bit5 << 4) - 16) * d; bit j of qh is
//                                                         element j's 5th bit
//   q5_1  32 el, 24 B: half d, half m, u8 qh[4], u8 qs[16]
//   q8_0  32 el, 34 B: half d, i8 qs[32]                  x = q * d
//   q2_K 256 el, 84 B: u8 scales[16] (4-bit scale | 4-bit min << 4), u8 qs[64], half d, half dmin
//   q3_K 256 el, 110 B: u8 hmask[32], u8 qs[64], u8 scales[12] (16 6-bit scales), half d
//   q4_K 256 el, 144 B: half d, half dmin, u8 scales[12] (8 6-bit scales + 8 6-bit mins), u8 qs[128]
//   q5_K 256 el, 176 B: half d, half dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//   q6_K 256 el, 210 B: u8 ql[128], u8 qh[64], i8 scales[16], half d
// f32 / f16 / bf16 are plain arrays (bf16 and f16 rounded to nearest even, as ggml does).
#pragma once
#include <cstdint>

namespace cotune::kernels {

// Values as in ggml.h.
enum class GgmlType : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
  q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15, i8 = 24, i16 = 25, i32 = 26,
  i64 = 27, f64 = 28, bf16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  const char* name;    // ggml's spelling: "f32", "q4_K", ...
  int64_t block_size;  // elements a block holds (1 for plain types)
  int64_t type_size;   // bytes a block takes
};
const GgmlTypeInfo* ggml_type_info(uint32_t type);  // nullptr when unknown to cotune
const GgmlTypeInfo& ggml_type_info(GgmlType type);
const char* ggml_type_name(GgmlType type);
// Bytes of `n` elements; throws Error when n is not a multiple of the block size.
int64_t ggml_bytes(GgmlType type, int64_t n);

// True when ggml_dequantize / ggml_quantize handle `type`.
bool ggml_can_dequantize(GgmlType type);
bool ggml_can_quantize(GgmlType type);

// `n` values (a multiple of the block size) from `src` (ggml_bytes(type, n) bytes) into `dst`.
// Blocks are independent, so both run over all cores with results independent of the thread count.
void ggml_dequantize(GgmlType type, const void* src, float* dst, int64_t n);
// `n` values from `src` into `dst` (ggml_bytes(type, n) bytes), as ggml's reference quantizer writes them.
void ggml_quantize(GgmlType type, const float* src, void* dst, int64_t n);

}  // namespace cotune::kernels
