// Conversational and other non-template record formats, and how they become training text.
//
// Record formats (detected from the record's fields, or forced with --data-format):
//   medical-o1         {"Question", "Complex_CoT", "Response"}     (the prompt-template path, text/template.h)
//   messages           {"messages": [{"role", "content", ...}]}    OpenAI style; extra fields go to the template
//   sharegpt           {"conversations": [{"from", "value"}]}      from: system | human/user | gpt/assistant/... | tool
//   alpaca             {"instruction", "input"?, "output", "system"?}
//   prompt-completion  {"prompt", "completion"}                    strings, or lists of messages (TRL style)
//   text               {"text"}                                    plain language modelling
//
// With a chat template (`--template chat`) every format but `text` becomes messages and is rendered through the
// model's template; medical-o1 maps Question -> user, "<think>\n" + Complex_CoT + "\n</think>\n\n" + Response ->
// assistant (how DeepSeek-R1 answers). Without one, alpaca uses the Stanford Alpaca prompt, prompt-completion is
// prompt + completion + EOS, text is text + EOS; messages / sharegpt need a chat template.
//
// What is trained (the spans below; loss_on = assistant trains exactly them, response trains from the first one):
//   - a template with `{% generation %}` blocks: what they wrap (as TRL's assistant_only_loss);
//   - otherwise every assistant turn from where the generation prompt ends to the end of the turn (its end-of-turn
//     token included), i.e. exactly the text the model writes at inference after
//     render(history, add_generation_prompt=True). The last assistant turn is kept as written even when the
//     template rewrites assistant turns in the history: DeepSeek-R1's template drops everything up to `</think>`
//     from assistant messages (right for inference history, where old reasoning is not shown again), which would
//     train the model to answer without reasoning. So the last turn is rendered as
//     render(history, add_generation_prompt=True) + content + end-of-turn text, with the part of the generation
//     prompt the content repeats (DeepSeek's "<think>\n") not written twice; a content that does not continue the
//     generation prompt (no reasoning) keeps the template's rendering. Earlier assistant turns stay as the
//     template renders them (as the model will see them in a conversation).
//   Compared with TRL (which swaps in its own training variant of a known template, keeping reasoning in every
//   turn): a single-turn record gives the same text and ids, and the same trained tokens except the generation
//   prompt's ("<｜Assistant｜><think>\n"), which at inference belong to the prompt (tests/data/chat_data_test.cpp).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/dataset.h"
#include "text/chat_template.h"
#include "text/jinja.h"
#include "text/tokenizer.h"

namespace cotune::data {

enum class RecordFormat { automatic, medical_o1, messages, sharegpt, alpaca, prompt_completion, text };
RecordFormat parse_record_format(std::string_view s);  // auto | medical-o1 | messages | sharegpt | alpaca | ...
std::string_view to_string(RecordFormat f);
// The format a record's fields say (never `automatic`); throws naming the fields found when none fits.
RecordFormat detect_record_format(std::string_view record_json);

// One record in a format-neutral form.
struct Example {
  RecordFormat format = RecordFormat::text;
  text::jinja::Value messages;           // chat form: a list of message dicts (all formats but text)
  std::string prompt, completion, text;  // plain forms: alpaca / string prompt-completion (prompt, completion), text
  bool has_plain = false;                // prompt / completion (or text) are set
};
// Parses one record (JSON object text) of the given format (automatic = detect). Throws Error naming the field.
Example parse_example(std::string_view record_json, RecordFormat format);

// Training text and the byte spans of it the loss trains on (sorted, disjoint).
struct TrainingText {
  std::string text;
  std::vector<std::pair<size_t, size_t>> trained_spans;
  bool add_special = false;  // encode with the post-processor's tokens (BOS): plain formats; a chat template writes its own
};

// Through the model's chat template (rules in the header comment). The messages must hold an assistant turn;
// turns after the last assistant message are left out (nothing to learn from them).
TrainingText render_chat_for_training(const text::ChatTemplate& tpl, const text::jinja::Value& messages);
// Without a chat template (alpaca, prompt-completion with strings, text). Throws for messages / sharegpt.
TrainingText render_plain_for_training(const Example& ex, std::string_view eos_text);

// Token mask from byte spans, as transformers' assistant mask: mask[i] = 1 when token i overlaps a span.
// `ids` = tok.encode(text, add_special); tokens the post-processor put in front (BOS) are never in a span.
std::vector<uint8_t> spans_to_token_mask(const text::Tokenizer& tok, std::span<const int32_t> ids,
                                         std::string_view text, bool add_special,
                                         const std::vector<std::pair<size_t, size_t>>& spans);

}  // namespace cotune::data

namespace cotune::data {

// How the records of a dataset become training text.
struct DatasetFormat {
  RecordFormat format = RecordFormat::automatic;  // automatic: detected from the first record
  // A prompt template (text/template.h): used for medical-o1 records, or for every record when
  // prompt_template_for_all (a --template-file naming its own fields).
  const text::PromptTemplate* prompt_template = nullptr;
  bool prompt_template_for_all = false;
  const text::ChatTemplate* chat_template = nullptr;      // `--template chat`: the model's chat template
};

// Reads, formats, encodes and truncates the selected records (token cache as build_dataset). With a chat template
// every format goes through it; else a prompt template takes medical-o1 records (build_dataset(opt, tpl, tok)),
// and alpaca / prompt-completion / text records take render_plain_for_training. Otherwise each sequence carries its
// assistant mask (trained spans -> tokens) and prompt_lengths = the first trained token.
TokenizedDataset build_dataset(const DataOptions& opt, const DatasetFormat& format, const text::Tokenizer& tok);

// The first record's format under --data-format `requested` (automatic: detected). Throws naming the file.
RecordFormat resolve_record_format(const DataOptions& opt, RecordFormat requested);

}  // namespace cotune::data
