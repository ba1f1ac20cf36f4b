#include "cli/data_format.h"

namespace cotune::cli {

data::DatasetFormat TemplateChoice::format() const {
  data::DatasetFormat f;
  f.format = record_format;
  f.prompt_template = prompt ? &*prompt : nullptr;
  f.prompt_template_for_all = from_file;
  f.chat_template = chat ? &*chat : nullptr;
  return f;
}

TemplateChoice choose_template(const std::string& template_name, const std::string& template_file,
                               const std::string& data_format, const std::string& tokenizer_dir) {
  TemplateChoice c;
  c.record_format = data::parse_record_format(data_format);
  if (!template_file.empty()) {
    c.prompt = text::PromptTemplate::load_file(template_file);
    c.from_file = true;
  } else if (template_name == "chat") {
    c.chat = text::ChatTemplate::from_tokenizer_config(tokenizer_dir);
  } else {
    c.prompt = text::PromptTemplate::builtin(template_name.empty() ? "medical-o1-zh" : template_name);
  }
  return c;
}

}  // namespace cotune::cli
