// Choosing the next token of many rows of logits at once, on the device that holds them (serving: only the n chosen
// ids leave the GPU, not n x 151,936 logits). One algorithm, with a CPU twin (cpu/select.cpp) that picks the same
// ids from the same logits bit for bit (kernels/select_math.h: exactly rounded arithmetic, fixed summation order).
//
// Per row, over ids [0, vocab) (the rest of the row, e.g. a model's padded vocabulary, is never picked):
// - greedy: the arg-max, the lowest id on ties (as infer::argmax); NaN never wins.
// - sampling: y = logit / temperature (NaN as -inf); w = exp(y - max y) in double;
//   top_k (0 < k < vocab): only ids whose y is at least the k-th largest y (ties with it stay, as HF);
//   top_p (< 1): of those, the smallest set of the largest y whose w sums to >= top_p of their total (the token
//   that crosses top_p stays, as HF; ties with the last kept y stay);
//   then the inverse CDF in id order at u * (kept total), u = the request's Philox word `draw` (base/rng.h: the
//   same uniform the host sampler's Rng(seed, 0) gives its draw-th call).
// This is HF's sampling chain (infer::select_token without the repetition penalty) up to ties and rounding; the
// host sampler stays the CPU serving path.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/select_math.h"
#include "tensor/tensor.h"

namespace cotune::kernels {

using SelectParams = select_math::Params;

// ids i32 [n] = the choice of each row of logits f32 [n, V] (ids [0, vocab) only, vocab <= V). params i32 [n, 8]
// (SelectParams a row), on the logits' device. scratch: i64 [n, vocab] (the rows' weights as doubles; unused by
// greedy rows). CPU or CUDA tensors.
void select_tokens(const Tensor& ids, const Tensor& logits, const Tensor& params, const Tensor& scratch,
                   int64_t vocab);

// The CPU twin on host rows (what select_tokens runs for CPU tensors).
int32_t select_row_reference(const float* logits, int64_t vocab, const SelectParams& p);

}  // namespace cotune::kernels
