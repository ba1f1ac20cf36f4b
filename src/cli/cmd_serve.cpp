// `cotune serve --model M [--adapter NAME=DIR ...] [--port P]`: an OpenAI-compatible HTTP server (serve/) over one
// loaded base model and any number of LoRA adapters on it, picked per request by `model`. Concurrent requests are
// batched continuously on the GPU (or the CPU). SIGTERM / Ctrl-C: stop taking requests, finish those in flight
// (a second signal cancels them), then exit.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "cli/command.h"
#include "cli/model_path.h"
#include "cli/device.h"
#include "cli/tuning_config.h"
#include "hub/hf_cache.h"
#include "infer/generator.h"
#include "model/qwen2.h"
#include "serve/engine.h"
#include "serve/openai_server.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace cotune::cli {
namespace {

struct ServeArgs {
  TuningConfig tuning;  // kernel variants (--help: Kernel tuning)
  std::string model, name, tokenizer, host = "127.0.0.1", device = "auto";
  std::vector<std::string> adapters;
  int port = 8000;
  int64_t max_batch = 8, context = 0, prefill_chunk = 256, kv_page = 16, kv_pages = 0;
  bool load_in_4bit = false;
};

volatile std::sig_atomic_t g_signals = 0;
void on_signal(int) { g_signals = g_signals + 1; }

void run_serve(const ServeArgs& a) {
  a.tuning.apply_kernels("serve");
  const std::string model_dir = resolve_model_dir(a.model);
  text::Tokenizer tok = text::Tokenizer::load(a.tokenizer.empty() ? model_dir : hub::resolve(a.tokenizer).path.string());
  std::optional<text::ChatTemplate> chat = text::ChatTemplate::find(a.tokenizer.empty() ? model_dir : a.tokenizer);
  if (!chat) log::warn("{} has no chat template: /v1/chat/completions will answer 400", model_dir);
  model::LoadOptions lo;
  lo.device = parse_device(a.device);
  lo.load_in_4bit = a.load_in_4bit;
  model::Qwen2Model model = model::Qwen2Model::load(model_dir, lo);

  std::vector<serve::ServedModel> served;
  // The name requests use for the base: --name, else the folder's name, else the Hub id as given.
  std::string base_name = a.name;
  if (base_name.empty()) {
    std::error_code ec;
    base_name = std::filesystem::exists(a.model, ec)
                    ? std::filesystem::weakly_canonical(a.model, ec).filename().string()
                    : a.model;
  }
  served.push_back({base_name, nullptr});
  std::vector<std::unique_ptr<model::LoraWeights>> loras;
  for (const auto& spec : a.adapters) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      fail("--adapter takes NAME=DIR (the name requests use as `model`), got \"{}\"", spec);
    const std::string name = spec.substr(0, eq), dir = hub::resolve(spec.substr(eq + 1)).path.string();
    loras.push_back(infer::load_adapter(model, dir));
    served.push_back({name, loras.back().get()});
  }
  serve::EngineOptions eo;
  eo.max_batch = a.max_batch;
  eo.prefill_chunk = a.prefill_chunk;
  eo.kv_page = a.kv_page;
  eo.kv_pages = a.kv_pages;
  eo.context = a.context > 0 ? a.context : std::min<int64_t>(model.config().max_position_embeddings, 4096);
  eo.eos_ids = infer::GenerationOptions::from_model_folder(model_dir, &tok).eos_ids;
  log::info("serve: {} ({}{}), {} adapter(s), {} sequences of {} tokens a model, on {}", base_name,
            model.nf4() ? "NF4 base" : "16-bit", lo.device == Device::cuda ? ", cuda" : ", cpu", loras.size(),
            eo.max_batch, eo.context, lo.device == Device::cuda ? "the GPU" : "the CPU");
  serve::Engine engine(model, tok, served, eo);
  log::info("serve: KV cache of {} pages of {} tokens ({} per model); requests wait for pages when it is full",
            engine.stats().kv_pages_total.load(), eo.kv_page, engine.stats().kv_pages_total.load() / static_cast<int64_t>(served.size()));
  serve::ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  serve::OpenAiServer server(engine, tok, chat ? &*chat : nullptr, so);
  const int port = server.bind();
  std::printf("cotune serve: listening on http://%s:%d/v1 (models: ", a.host.c_str(), port);
  for (size_t i = 0; i < served.size(); ++i) std::printf("%s%s", i ? ", " : "", served[i].name.c_str());
  std::printf(")\n");
  std::fflush(stdout);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::thread http([&] { server.listen(); });
  while (g_signals == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  log::info("serve: stopping: finishing {} request(s) in flight (signal again to cancel them)", engine.in_flight());
  std::thread drain([&] { engine.shutdown(/*finish=*/true); });
  while (engine.in_flight() > 0 && g_signals < 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (g_signals >= 2) engine.shutdown(/*finish=*/false);
  drain.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the last events reach their clients
  server.stop();
  http.join();
  log::info("serve: stopped after {} request(s)", server.requests_served());
}

void setup_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  app.add_option("--model,-m", a->model, "Model folder or Hub name (the base every adapter shares)")->required();
  app.add_option("--adapter", a->adapters, "NAME=DIR: a PEFT LoRA adapter served as model NAME (repeatable)");
  app.add_option("--name", a->name, "The base model's name in requests (default: the model folder's name)");
  app.add_option("--tokenizer", a->tokenizer, "tokenizer.json + tokenizer_config.json folder (default: the model)");
  app.add_option("--host", a->host, "Address to listen on (default 127.0.0.1)");
  app.add_option("--port", a->port, "Port (default 8000; 0: any free port, printed at start)")->check(CLI::Range(0, 65535));
  app.add_option("--max-batch", a->max_batch, "Sequences decoded together per model (default 8)")->check(CLI::Range(int64_t{1}, int64_t{256}));
  app.add_option("--context", a->context,
                 "Tokens per sequence, prompt + completion (default: max_position_embeddings, at most 4096)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  app.add_option("--prefill-chunk", a->prefill_chunk, "Prompt tokens a prefill forward takes (default 256)")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  app.add_option("--kv-page-size", a->kv_page, "Tokens a KV-cache page holds (default 16)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("--kv-pages", a->kv_pages,
                 "KV-cache pages per model (default 0: --max-batch sequences of --context tokens); fewer pages use "
                 "less memory, and requests wait when the running ones may need the rest")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--device", a->device, "auto | cpu | cuda (default auto: cuda when a GPU is visible)");
  app.add_flag("--load-in-4bit", a->load_in_4bit, "Quantize the base's projections to NF4 (less memory)");
  a->tuning.add_kernel_flags(app);
  app.callback([a] { run_serve(*a); });
}

}  // namespace

COTUNE_COMMAND(serve, "serve", "An OpenAI-compatible HTTP server (chat and completions, streaming, adapters per request)",
               55, setup_serve);

}  // namespace cotune::cli
