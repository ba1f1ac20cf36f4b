#include "export/peft_export.h"

#include "base/fs.h"

namespace cotune::exporting {

void save_peft_adapter(const std::string& dir, const model::LoraWeights& lora, const AdapterExportOptions& opts) {
  require_replaceable_directory(dir, kAdapterFolder);
  const std::string tmp = fresh_temp_dir_for(dir);
  lora.save_peft(tmp, opts.base_model_name_or_path);
  copy_tokenizer_files(opts.tokenizer_dir, tmp);
  replace_directory(tmp, dir, kAdapterFolder);
}

}  // namespace cotune::exporting
