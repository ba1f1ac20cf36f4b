// libFuzzer target: a model's chat_template (our own Jinja interpreter) parsed and rendered with a short
// conversation, as `generate --chat`, `serve` and chat-format data do.
#include <string>

#include "base/error.h"
#include "text/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string source(reinterpret_cast<const char*>(data), size);
  try {
    auto tpl = cotune::text::ChatTemplate::from_source(std::move(source), {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
    (void)tpl.render({{"system", "Be brief."}, {"user", "Hi <think>"}, {"assistant", "Hello"}, {"user", "Why?"}}, true);
    cotune::text::ChatRenderOptions opts;
    opts.extra_variables_json = R"({"enable_thinking": false})";
    (void)tpl.render_json(R"([{"role": "user", "content": "x", "reasoning_content": "r"}])", opts);
  } catch (const cotune::Error&) {
  }
  return 0;
}
