// GGUF import: a llama.cpp model file (qwen2, qwen3 or llama architecture, gpt2 tokenizer) becomes a Hugging
// Face model folder that every cotune command reads like any other:
//   config.json             from the metadata (<arch>.block_count, embedding_length, ..., rope.freq_base,
//                           rope.scaling.*, attention.layer_norm_rms_epsilon; tied when output.weight is absent)
//   tokenizer.json          byte-level BPE rebuilt from tokenizer.ggml.tokens / token_type / merges and the
//                           pre-tokenizer named by tokenizer.ggml.pre (qwen2, llama-bpe, smollm, gpt2)
//   tokenizer_config.json   bos / eos / pad tokens, add_bos_token / add_eos_token, chat_template
//   model.safetensors       every tensor dequantized to F32 (ggml's dequantizers: F32, F16, BF16, Q4_0, Q4_1,
//                           Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), Hugging Face names, Llama's q/k
//                           row permutation undone; NF4 for QLoRA is then made from these values as for any
//                           safetensors checkpoint.
// Errors name the file, the tensor, its type and offset.
#pragma once
#include <string>

namespace cotune::exporting {

// True when `spec` is a .gguf file, or a folder holding one .gguf and no config.json.
bool is_gguf_model(const std::string& spec);
// The .gguf file `spec` names (itself, or the one inside the folder); errors when a folder holds several.
std::string gguf_file_of(const std::string& spec);

// Writes the Hugging Face folder `out_dir` (built beside it and renamed into place).
void convert_gguf_to_hf(const std::string& gguf_path, const std::string& out_dir);

// The converted folder of `spec` in the cache ($XDG_CACHE_HOME/cotune/gguf, else ~/.cache/cotune/gguf),
// keyed by the file's absolute path, size and modification time; converted on first use.
std::string gguf_model_dir(const std::string& spec);

}  // namespace cotune::exporting
