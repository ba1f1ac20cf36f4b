// GGUF export for llama.cpp / Ollama / LM Studio: a Hugging Face model folder (optionally with a PEFT LoRA
// adapter merged in first) -> one GGUF file per requested type, written as llama.cpp's own
// `convert_hf_to_gguf.py` + `llama-quantize` would write it:
//   - tensor names as the converter maps them (token_embd, blk.N.attn_q, ..., output_norm, output); Llama's
//     q/k rows permuted as the converter does (so llama.cpp's rope sees interleaved pairs);
//   - per-tensor types of llama-quantize's mixes (llama_tensor_get_type): e.g. Q4_K_M keeps attn_v and
//     ffn_down of the "more bits" layers and the output in Q6_K; 1-D tensors (norms, biases) in F32; a row
//     length that is not a multiple of the block size falls back as llama.cpp does (Q4_K -> Q5_0,
//     Q5_K -> Q5_1, Q6_K -> Q8_0, a 32-block type -> F16);
//   - blocks from ggml's reference quantizers (kernels/ggml_quants.h), byte-identical to llama-quantize
//     without an importance matrix;
//   - metadata: general.*, the architecture's hyperparameters, the gpt2 tokenizer (tokens, token types,
//     merges, pre-tokenizer, special ids, add_bos/add_eos, chat template).
// Beside each file an Ollama Modelfile (FROM, TEMPLATE for the known chat formats, PARAMETER stop).
// Tensors are converted and written one at a time; files appear complete or not at all (temp + rename).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/model_config.h"

namespace cotune::exporting {

// The file types of `cotune export gguf --type`, with llama.cpp's llama_ftype values.
enum class GgufFileType : uint32_t {
  f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 7, q4_k_m = 15, q5_k_m = 17, q6_k = 18, bf16 = 32,
};
GgufFileType parse_gguf_file_type(const std::string& text);  // "q4_k_m", "Q4_K_M", ...; errors list the choices
std::string gguf_file_type_label(GgufFileType t);            // "Q4_K_M", "F16", ...
std::vector<std::string> gguf_file_type_choices();           // lower-case names

// llama.cpp's converter name for a Hugging Face tensor name ("model.layers.3.self_attn.q_proj.weight" ->
// "blk.3.attn_q.weight"); throws Error naming the tensor when it has no GGUF counterpart.
std::string gguf_tensor_name(const std::string& hf_name);
// The inverse (for import); nullopt-like empty string when unknown.
std::string hf_tensor_name(const std::string& gguf_name);

// llama.cpp's model-loader order: tensors outside blk.N first, then by layer, each group by name.
bool gguf_tensor_order(const std::string& a, const std::string& b);

// The type llama-quantize gives one tensor. `ne` in GGUF order; `layer` = N of blk.N (-1 otherwise);
// `n_layers` the block count; `tied` = the model has no output.weight (token_embd serves as the output).
kernels::GgmlType gguf_tensor_type(GgufFileType ftype, const std::string& gguf_name, const std::vector<int64_t>& ne,
                                   int layer, int n_layers, bool tied);

// llama3 rope scaling as llama.cpp takes it: the tensor rope_freqs.weight, one f32 divisor per rotary frequency
// (head_dim / 2 of them), computed as convert_hf_to_gguf.py does (in f32): 1 above the high-frequency wavelength,
// `factor` beyond the low-frequency one, the smooth blend between.
std::vector<float> llama3_rope_factors(double theta, int64_t head_dim, double factor, double low_freq_factor,
                                       double high_freq_factor, double original_max_position);

// Llama's q/k row permutation of convert_hf_to_gguf.py (`LlamaModel.permute`) on a [rows, cols] fp32 matrix:
// within each of `n_heads` heads, row j*half + i moves to 2*i + j. `inverse` undoes it (import).
void llama_permute_rows(std::vector<float>& w, int64_t rows, int64_t cols, int64_t n_heads, bool inverse);

struct GgufExportOptions {
  std::string model_dir;    // Hugging Face folder (config.json, *.safetensors, tokenizer files)
  std::string adapter_dir;  // PEFT adapter merged in first ("" = none)
  std::vector<GgufFileType> types{GgufFileType::q4_k_m};
  // Output: a .gguf path (one type; with several types the type is inserted before ".gguf"), or a folder
  // (files named "<name>-<TYPE>.gguf").
  std::string output;
  std::string name;       // general.name; "" = from the model folder's name
  std::string file_stem;  // "<stem>-<TYPE>.gguf" when `output` is a folder; "" = the model folder's name
  bool write_modelfile = true;
};

struct GgufExportResult {
  std::string path;
  GgufFileType type = GgufFileType::f16;
  uint64_t bytes = 0;
  std::map<std::string, int> tensor_types;  // ggml type name -> tensors written in it
  std::string modelfile;                    // path of the Modelfile ("" = none)
};

std::vector<GgufExportResult> export_gguf(const GgufExportOptions& options);

// Metadata of the model (general.*, hyperparameters, tokenizer) as the exporter writes it, for a model
// folder; `ftype` fills general.file_type.
void add_model_metadata(formats::GgufWriter& w, const std::string& model_dir, const formats::ModelConfig& cfg,
                        GgufFileType ftype, const std::string& name);

// (The Ollama Modelfile written beside each file: export/ollama.h.)

// The adapter alone as a llama.cpp LoRA adapter (convert_lora_to_gguf.py's format): general.type = adapter,
// adapter.type = lora, adapter.lora.alpha (alpha * sqrt(r) for rsLoRA, as llama.cpp scales by alpha / r),
// F32 tensors "<gguf name>.lora_a" (ne {in, r}) and ".lora_b" (ne {r, out}); Llama q/k lora_b rows
// permuted like the base weights. `model_dir` gives the base config (architecture, heads).
struct GgufLoraResult {
  std::string path;
  int64_t tensors = 0;
  float alpha = 0;
};
GgufLoraResult export_gguf_lora(const std::string& adapter_dir, const std::string& model_dir, const std::string& output);

}  // namespace cotune::exporting
