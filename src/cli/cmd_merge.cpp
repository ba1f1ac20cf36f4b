// `cotune merge --model DIR|org/name --adapter DIR --output DIR [--dtype bf16|f16|f32] [--max-shard-size 5GB]`:
// folds a PEFT LoRA adapter into the base weights and writes a plain 16-bit model folder that transformers
// loads as is (the work is exporting::merge_lora, src/export/merge.h).
#include <cstdio>
#include <memory>
#include <string>

#include "cli/command.h"
#include "cli/model_path.h"
#include "export/merge.h"
#include "hub/hf_cache.h"

namespace cotune::cli {
namespace {

struct MergeCliOptions {
  std::string model, adapter, output;
  std::string dtype;  // "" = the checkpoint's
  std::string max_shard_size = "5GB";
};

void run_merge(const MergeCliOptions& o) {
  exporting::MergeOptions opts;
  if (!o.dtype.empty()) opts.dtype = exporting::parse_merge_dtype(o.dtype);
  opts.max_shard_size = exporting::parse_size(o.max_shard_size);
  const std::string model_dir = resolve_model_dir(o.model);
  const std::string adapter_dir = hub::resolve(o.adapter).path.string();
  const exporting::MergeResult r = exporting::merge_lora(model_dir, adapter_dir, o.output, opts);
  std::printf("merged %lld LoRA weights into %s: %lld tensors, %lld parameters, %.1f MB %s in %zu file(s)\n",
              static_cast<long long>(r.merged_weights), r.output_dir.c_str(), static_cast<long long>(r.tensors),
              static_cast<long long>(r.total_parameters), static_cast<double>(r.total_size) / 1e6,
              std::string(dtype_name(r.dtype)).c_str(), r.shards.size());
  for (const std::string& n : r.notes) std::printf("note: %s\n", n.c_str());
}

void setup_merge(CLI::App& app) {
  auto o = std::make_shared<MergeCliOptions>();
  app.add_option("--model,-m", o->model, "Base model: a folder, or org/name in the Hugging Face cache")->required();
  app.add_option("--adapter,-a", o->adapter, "PEFT adapter folder (adapter_config.json + adapter_model.safetensors)")
      ->required();
  app.add_option("--output,-o", o->output, "Folder to write the merged model to (replaced atomically)")->required();
  app.add_option("--dtype", o->dtype, "Output dtype: bf16, f16 or f32 (default: the checkpoint's)")
      ->check(CLI::IsMember({"bf16", "bfloat16", "f16", "fp16", "float16", "f32", "fp32", "float32"}));
  app.add_option("--max-shard-size", o->max_shard_size,
                 "Largest safetensors shard, e.g. 5GB, 500MB, 2GiB (default 5GB)");
  app.callback([o] { run_merge(*o); });
}

}  // namespace

COTUNE_COMMAND(merge, "merge", "Merge a LoRA adapter into the base model: 16-bit safetensors transformers loads as is",
               60, setup_merge);

}  // namespace cotune::cli
