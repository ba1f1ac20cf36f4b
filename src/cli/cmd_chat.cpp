// `cotune chat --model M [--adapter A]`: a conversation in the terminal. Each turn renders the whole history
// through the model's chat template (add_generation_prompt), streams the reply, and keeps it in the history.
// Reasoning inside <think> ... </think> is shown dimmed (--hide-thinking: hidden). Commands: /reset, /system TEXT,
// /save FILE, /help, /exit. Ctrl-C interrupts a reply (the partial reply stays in the history), not the
// conversation; Ctrl-D (or /exit) ends it.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/mmap.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/device.h"
#include "hub/hf_cache.h"
#include "infer/generator.h"
#include "infer/reasoning_stream.h"
#include "model/qwen2.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"


namespace cotune::cli {
namespace {

struct ChatArgs {
  std::string model, adapter, system, tokenizer, device = "auto", vars;
  bool hide_thinking = false, greedy = false, load_in_4bit = false;
  std::string color = "auto";
  int64_t max_new_tokens = 0;
  float temperature = 1.0f, top_p = 1.0f;
  uint64_t seed = 0;
  CLI::Option *o_max = nullptr, *o_temp = nullptr, *o_top_p = nullptr, *o_seed = nullptr;
};

// SIGINT while chatting: counted, never fatal. A signal handler reaches nothing but statics; this counter is the
// one piece of process state, installed for the chat's lifetime (ChatSignals restores the previous handler).
std::atomic<int> g_interrupts{0};
void on_sigint(int) { g_interrupts.fetch_add(1, std::memory_order_relaxed); }

class ChatSignals {
 public:
  ChatSignals() {
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a Ctrl-C at the prompt interrupts the read
    sigaction(SIGINT, &sa, &old_);
  }
  ~ChatSignals() { sigaction(SIGINT, &old_, nullptr); }
  ChatSignals(const ChatSignals&) = delete;
  ChatSignals& operator=(const ChatSignals&) = delete;

 private:
  struct sigaction old_ {};
};

void out(std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// Reads one line; false at end of input. A Ctrl-C while reading gives an empty line (`interrupted` set).
bool read_line(std::string& line, bool& interrupted) {
  line.clear();
  interrupted = false;
  const int before = g_interrupts.load();
  while (true) {
    const int c = std::fgetc(stdin);
    if (c == EOF) {
      if (std::ferror(stdin) && g_interrupts.load() != before) {
        std::clearerr(stdin);
        interrupted = true;
        return true;
      }
      return !line.empty();
    }
    if (c == '\n') return true;
    line += static_cast<char>(c);
  }
}

nlohmann::ordered_json to_json(const std::vector<text::ChatMessage>& messages) {
  nlohmann::ordered_json j = nlohmann::ordered_json::array();
  for (const auto& m : messages) j.push_back({{"role", m.role}, {"content", m.content}});
  return j;
}

void run_chat(const ChatArgs& a) {
  const std::string model_dir = hub::resolve(a.model).path.string();
  const std::string tok_dir = a.tokenizer.empty() ? model_dir : a.tokenizer;
  const text::Tokenizer tok = text::Tokenizer::load(tok_dir);
  const text::ChatTemplate tpl = text::ChatTemplate::from_tokenizer_config(tok_dir);
  model::LoadOptions lo;
  lo.device = parse_device(a.device);
  lo.load_in_4bit = a.load_in_4bit;
  const model::Qwen2Model model = model::Qwen2Model::load(model_dir, lo);
  std::unique_ptr<model::LoraWeights> lora;
  if (!a.adapter.empty()) lora = infer::load_adapter(model, hub::resolve(a.adapter).path.string());

  infer::GenerationOptions gen_opts = infer::GenerationOptions::from_model_folder(model_dir, &tok);
  if (a.o_max->count()) gen_opts.max_new_tokens = a.max_new_tokens;
  if (a.greedy) gen_opts.sampling.do_sample = false;
  if (a.o_temp->count()) gen_opts.sampling.temperature = a.temperature;
  if (a.o_top_p->count()) gen_opts.sampling.top_p = a.top_p;
  if (a.o_seed->count()) gen_opts.sampling.seed = a.seed;
  if (!a.greedy && (a.o_temp->count() || a.o_top_p->count())) gen_opts.sampling.do_sample = true;
  gen_opts.sampling.validate();
  infer::GeneratorOptions go;
  go.max_batch = 1;
  infer::Generator gen(model, lora.get(), go);

  const bool ansi = a.color == "always" || (a.color == "auto" && ::isatty(STDOUT_FILENO));
  const std::string dim = ansi ? "\x1b[2m" : "", reset = ansi ? "\x1b[0m" : "";
  std::string system = a.system;
  std::vector<text::ChatMessage> history;
  ChatSignals signals;
  out(fmt::format("cotune chat: {}{}. /help for commands; Ctrl-C stops a reply, Ctrl-D quits.\n", a.model,
                  a.adapter.empty() ? "" : " + " + a.adapter));
  std::string line;
  bool interrupted = false;
  while (true) {
    out("> ");
    if (!read_line(line, interrupted)) {
      out("\n");
      break;
    }
    if (interrupted) {
      out("\n(Ctrl-D or /exit to quit)\n");
      continue;
    }
    if (line.empty()) continue;
    if (line[0] == '/') {
      const size_t sp = line.find(' ');
      const std::string cmd = line.substr(0, sp);
      const std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
      if (cmd == "/exit" || cmd == "/quit") break;
      if (cmd == "/reset") {
        history.clear();
        out("(conversation cleared)\n");
      } else if (cmd == "/system") {
        system = arg;
        out(system.empty() ? "(system prompt removed)\n" : "(system prompt set)\n");
      } else if (cmd == "/save") {
        if (arg.empty()) {
          out("usage: /save FILE\n");
          continue;
        }
        std::vector<text::ChatMessage> all;
        if (!system.empty()) all.push_back({"system", system});
        all.insert(all.end(), history.begin(), history.end());
        nlohmann::ordered_json j;
        j["messages"] = to_json(all);
        const std::string text = j.dump(2) + "\n";
        try {
          write_file_atomic(arg, text.data(), text.size());
          out(fmt::format("(saved {} messages to {})\n", all.size(), arg));
        } catch (const Error& e) {
          out(fmt::format("(could not save: {})\n", e.what()));
        }
      } else if (cmd == "/help") {
        out("/reset          clear the conversation (the system prompt stays)\n"
            "/system TEXT    set the system prompt (empty: none)\n"
            "/save FILE      write the conversation as JSON {\"messages\": [...]}\n"
            "/exit           quit (or Ctrl-D)\n");
      } else {
        out(fmt::format("unknown command {} (/help lists them)\n", cmd));
      }
      continue;
    }

    history.push_back({"user", line});
    std::vector<text::ChatMessage> all;
    if (!system.empty()) all.push_back({"system", system});
    all.insert(all.end(), history.begin(), history.end());
    text::ChatRenderOptions ro;
    ro.add_generation_prompt = true;
    ro.extra_variables_json = a.vars;
    std::string prompt;
    try {
      prompt = tpl.render_value(text::ChatTemplate::to_value(all), ro).text;
    } catch (const Error& e) {
      history.pop_back();
      out(fmt::format("(the chat template refused this conversation: {})\n", e.what()));
      continue;
    }
    const bool opens = infer::ReasoningStream::prompt_opens_reasoning(prompt);
    infer::ReasoningStream rs(opens);
    bool shown_thinking_note = false, dimmed = false;
    const auto set_dim = [&](bool on) {
      if (on != dimmed) out(on ? dim : reset);
      dimmed = on;
    };
    const auto show = [&](const std::vector<infer::ReasoningStream::Segment>& segs) {
      for (const auto& s : segs) {
        if (!s.reasoning) {
          set_dim(false);
          out(s.text);
        } else if (a.hide_thinking) {
          if (!shown_thinking_note) out(dim + "(thinking…)" + reset + "\n");
          shown_thinking_note = true;
        } else {
          set_dim(true);
          out(s.text);
        }
      }
    };
    const int before = g_interrupts.load();
    gen_opts.cancelled = [before] { return g_interrupts.load(std::memory_order_relaxed) != before; };
    const auto ids = tok.encode(prompt, false);
    auto result = gen.generate({ids}, gen_opts, &tok, [&](size_t, std::string_view piece) { show(rs.push(piece)); });
    show(rs.finish());
    set_dim(false);
    const auto& r = result.at(0);
    std::string reply = (opens ? "<think>\n" : "") + r.text;
    if (r.finish_reason == "cancelled") out(dim + " [interrupted]" + reset);
    else if (r.finish_reason == "length") out(dim + " [max tokens]" + reset);
    out("\n");
    history.push_back({"assistant", reply});
    log::debug("{} tokens ({} prompt), {:.1f} tokens/s, {}", r.ids.size(), r.prompt_ids.size(), r.tokens_per_s,
               r.finish_reason);
  }
}

void setup_chat(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  app.add_option("--model,-m", a->model, "Model folder or Hub name")->required();
  app.add_option("--adapter", a->adapter, "PEFT LoRA adapter folder, applied on top of the model");
  app.add_option("--system", a->system, "System prompt (also /system in the chat)");
  app.add_option("--tokenizer", a->tokenizer, "Folder with tokenizer.json + tokenizer_config.json (default: the model)");
  app.add_flag("--hide-thinking", a->hide_thinking, "Hide the reasoning inside <think> (shown dimmed by default)");
  a->o_max = app.add_option("--max-new-tokens", a->max_new_tokens, "Tokens a reply may have (default 512)");
  app.add_flag("--greedy", a->greedy, "Greedy decoding instead of sampling");
  a->o_temp = app.add_option("--temperature", a->temperature, "Sampling temperature (default: generation_config.json)");
  a->o_top_p = app.add_option("--top-p", a->top_p, "Nucleus sampling threshold");
  a->o_seed = app.add_option("--seed", a->seed, "Sampling seed");
  app.add_option("--vars", a->vars, "Extra chat template variables, JSON, e.g. '{\"enable_thinking\": false}'");
  app.add_option("--color", a->color, "auto | always | never (dimmed reasoning)")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  app.add_option("--device", a->device, "auto | cpu | cuda");
  app.add_flag("--load-in-4bit", a->load_in_4bit, "Quantize the base's projections to NF4");
  app.callback([a] { run_chat(*a); });
}

}  // namespace

COTUNE_COMMAND(chat, "chat", "Talk to a model (+ adapter) in the terminal through its chat template, streamed", 55,
               setup_chat);

}  // namespace cotune::cli
