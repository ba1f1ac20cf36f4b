// The decoder families (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen, Llama 3.x, Qwen3, Mistral; what differs is
// model/architecture.h's description, turned into one layer spec, model/layer.h): the model's public face, in
// files by job —
//   model/weights.h      the frozen base (bf16 / NF4): load, random init, the layer walker, the NF4 layer cache
//   model/layer.h        the decoder layer as data (blocks, norms, biases, q/k norm, rope, activation, LoRA targets)
//   model/batch.h        packed batches
//   model/runner.h       the training / evaluation runner (buffer plan, layer lowering, step graphs behind it)
// Callers include this header for all of them.
#pragma once
#include "model/architecture.h"
#include "model/batch.h"
#include "model/layer.h"
#include "model/lora.h"
#include "model/runner.h"
#include "model/weights.h"
