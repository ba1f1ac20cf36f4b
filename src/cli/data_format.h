// How a command's --template / --template-file / --data-format turn into a data::DatasetFormat: a prompt template
// (medical-o1-zh, medical-o1-en, a template file), or `chat` = the model's own chat template.
#pragma once
#include <optional>
#include <string>

#include "data/chat_data.h"
#include "text/chat_template.h"
#include "text/template.h"

namespace cotune::cli {

struct TemplateChoice {
  std::optional<text::PromptTemplate> prompt;  // unset with `chat`
  std::optional<text::ChatTemplate> chat;      // the model's template with `chat`
  data::RecordFormat record_format = data::RecordFormat::automatic;
  bool from_file = false;

  std::string name() const { return chat ? "chat" : prompt->name(); }
  // Pointers into this object: keep it alive while the format is used.
  data::DatasetFormat format() const;
};

// `tokenizer_dir` holds tokenizer_config.json (the chat template's source).
TemplateChoice choose_template(const std::string& template_name, const std::string& template_file,
                               const std::string& data_format, const std::string& tokenizer_dir);

}  // namespace cotune::cli
