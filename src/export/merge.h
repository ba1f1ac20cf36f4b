// Merged 16-bit export: base model + PEFT LoRA adapter -> a plain Hugging Face model folder that
// `transformers.AutoModelForCausalLM.from_pretrained(DIR)` loads as is (no peft needed).
//
//   W' = W + scale * B @ A        for every targeted projection (B [out, r], A [r, in], scale = alpha/r
//                                 or alpha/sqrt(r) with rsLoRA)
//
// computed in fp32 from the ORIGINAL weights of the model folder's safetensors (the 16-bit values, never
// NF4-rounded ones), then rounded once (round-to-nearest-even) to the output dtype. Every other tensor
// is copied bit-exact when its dtype is the output dtype, else converted (bf16 -> f32 is exact).
//
// A model folder holding only a bitsandbytes 4-bit checkpoint (`x.weight` u8 + `.absmax` + `.quant_map`
// + `.nested_absmax` + `.nested_quant_map` + `.quant_state.bitsandbytes__nf4`) is merged into the
// DEQUANTISED weights (the original 16-bit values are not there any more): this is logged and reported
// in MergeResult::notes, and `quantization_config` is dropped from config.json.
//
// Output folder (built in "<out>.tmp-<pid>" and renamed into place at the end, so an interrupted merge
// leaves the old folder or none, never a partial one):
//   model.safetensors                     when the tensors fit in max_shard_size, else
//   model-00001-of-0000N.safetensors ...  + model.safetensors.index.json {"metadata": {"total_parameters",
//                                           "total_size"}, "weight_map": {name: file}}
//   config.json                           the model's own config.json, dtype / torch_dtype set to the output dtype
//   generation_config.json, tokenizer files, chat_template.jinja (when the model folder has them; tokenizer
//                                           files fall back to the adapter folder)
// Sharding follows huggingface_hub's split_state_dict_into_shards: tensors in checkpoint order, a new
// shard when the next tensor would overflow, a tensor larger than the limit alone in its own shard.
//
// Memory: tensors are produced and written one at a time (the source is memory-mapped), so a merge of a
// 3.5 GB model needs about one tensor's worth of fp32 scratch, not a second copy of the model.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace cotune::exporting {

struct MergeOptions {
  std::optional<DType> dtype;                // bf16 | f16 | f32; nullopt: the checkpoint's dtype (normally bf16)
  uint64_t max_shard_size = 5'000'000'000;   // bytes of tensor data per shard (transformers 4.x default, "5GB")
};

struct MergeResult {
  std::string output_dir;
  DType dtype = DType::bf16;
  int64_t merged_weights = 0;      // linear weights that received a LoRA delta
  int64_t tensors = 0;             // tensors written
  uint64_t total_size = 0;         // bytes of tensor data
  int64_t total_parameters = 0;
  std::vector<std::string> shards;  // file names, in order
  bool dequantized_4bit = false;   // merged into NF4-dequantised weights (no 16-bit originals available)
  std::vector<std::string> notes;  // things the user should know (e.g. the 4-bit source)
};

MergeResult merge_lora(const std::string& model_dir, const std::string& adapter_dir, const std::string& output_dir,
                       const MergeOptions& options = {});

// "5GB" (10^9), "500MB", "2GiB" (2^30), "100KB", "123" (bytes): as transformers / huggingface_hub parse it.
uint64_t parse_size(const std::string& text);
// "bf16" | "bfloat16", "f16" | "fp16" | "float16", "f32" | "fp32" | "float32".
DType parse_merge_dtype(const std::string& text);

}  // namespace cotune::exporting
