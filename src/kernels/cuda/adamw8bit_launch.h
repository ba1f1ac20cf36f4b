// Raw-pointer launcher of the 8-bit AdamW kernel (adamw8bit.cu). Kept free of fmt / tensor headers, which
// nvcc 13 cannot compile under C++20; the checked Tensor API is adamw8bit.h.
#pragma once
#include <cstdint>

namespace cotune::kernels::cuda {

struct Adam8bitCodes {
  float signed_code[256];    // kDynamicMapSigned (first moment)
  float unsigned_code[256];  // kDynamicMapUnsigned (second moment)
};

struct Adam8bitScalars {
  float b1, one_minus_b1, b2, one_minus_b2, c2, eps, neg_lr_c1, decay;
  int decays;
};

void launch_adamw8bit(float* p, const float* g, uint8_t* q1, float* absmax1, uint8_t* q2, float* absmax2, int64_t n,
                      const Adam8bitCodes& codes, const Adam8bitScalars& s, const float* grad_scale,
                      const int32_t* skip);

// Many tensors in one launch. table: device array [count]; block_start: device i64 [count + 1], the first
// 256-element block of each tensor (tensor t has ceil(n_t / 256) blocks, as if launched alone), total_blocks =
// block_start[count]. p16: optional bf16 copy of p (bits as uint16_t), written with the updated p.
struct Adam8bitTensor {
  float* p;
  const float* g;
  uint16_t* p16;
  uint8_t* q1;
  float* absmax1;
  uint8_t* q2;
  float* absmax2;
  int64_t n;
};
void launch_adamw8bit_multi(const Adam8bitTensor* table, const int64_t* block_start, int count, int64_t total_blocks,
                            const Adam8bitCodes& codes, const Adam8bitScalars& s, const float* grad_scale,
                            const int32_t* skip);

}  // namespace cotune::kernels::cuda
