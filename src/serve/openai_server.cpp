#include "serve/openai_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>

#include "base/error.h"
#include "base/log.h"

namespace cotune::serve {
namespace {

using nlohmann::json;

// A request that cannot be served, answered with OpenAI's error body.
struct ApiError {
  int status;
  std::string message, type, param, code;
};

[[noreturn]] void bad(std::string message, std::string param = "", std::string code = "") {
  throw ApiError{400, std::move(message), "invalid_request_error", std::move(param), std::move(code)};
}

void reply_error(httplib::Response& res, const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  res.status = e.status;
  res.set_content(json{{"error", err}}.dump(), "application/json");
}

std::string new_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  return fmt::format("{}{:016x}{:08x}", prefix, salt, ++counter);
}

// The sampling and length fields both endpoints share, checked as OpenAI checks them.
struct CommonFields {
  std::string model;
  std::optional<int64_t> max_tokens;
  infer::SamplingOptions sampling;
  std::vector<std::string> stop;
  bool stream = false, include_usage = false;
};

CommonFields common_fields(const json& body, bool chat) {
  CommonFields f;
  if (!body.is_object()) bad("the request body must be a JSON object");
  if (!body.contains("model") || !body["model"].is_string()) bad("you must provide a model parameter", "model");
  f.model = body["model"].get<std::string>();
  auto number = [&](const char* key, double lo, double hi, double dflt) {
    if (!body.contains(key) || body[key].is_null()) return dflt;
    if (!body[key].is_number()) bad(fmt::format("'{}' must be a number", key), key);
    const double v = body[key].get<double>();
    if (!std::isfinite(v) || v < lo || v > hi) bad(fmt::format("'{}' must be in [{}, {}], got {}", key, lo, hi, v), key);
    return v;
  };
  const char* max_key = chat && body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (body.contains(max_key) && !body[max_key].is_null()) {
    if (!body[max_key].is_number_integer() || body[max_key].get<int64_t>() < 1)
      bad(fmt::format("'{}' must be an integer >= 1", max_key), max_key);
    f.max_tokens = body[max_key].get<int64_t>();
  }
  const double temperature = number("temperature", 0.0, 2.0, 1.0);
  const double top_p = number("top_p", 0.0, 1.0, 1.0);
  if (top_p <= 0.0) bad("'top_p' must be in (0, 1]", "top_p");
  for (const char* k : {"presence_penalty", "frequency_penalty"})
    if (number(k, -2.0, 2.0, 0.0) != 0.0) bad(fmt::format("'{}' is not supported (only 0)", k), k);
  if (body.contains("n") && !body["n"].is_null() && (!body["n"].is_number_integer() || body["n"].get<int64_t>() != 1))
    bad("only n = 1 is supported", "n");
  f.sampling.do_sample = temperature > 0.0;
  f.sampling.temperature = f.sampling.do_sample ? static_cast<float>(temperature) : 1.0f;
  f.sampling.top_p = static_cast<float>(top_p);
  f.sampling.top_k = 0;  // OpenAI has no top-k
  if (body.contains("seed") && !body["seed"].is_null()) {
    if (!body["seed"].is_number_integer()) bad("'seed' must be an integer", "seed");
    f.sampling.seed = static_cast<uint64_t>(body["seed"].get<int64_t>());
  } else {
    f.sampling.seed = std::random_device{}();
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& s = body["stop"];
    if (s.is_string()) {
      f.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      if (s.size() > 4) bad("'stop' takes at most 4 sequences", "stop");
      for (const auto& e : s) {
        if (!e.is_string()) bad("'stop' must be a string or a list of strings", "stop");
        f.stop.push_back(e.get<std::string>());
      }
    } else {
      bad("'stop' must be a string or a list of strings", "stop");
    }
    std::erase_if(f.stop, [](const std::string& x) { return x.empty(); });
  }
  if (body.contains("stream") && !body["stream"].is_null()) {
    if (!body["stream"].is_boolean()) bad("'stream' must be a boolean", "stream");
    f.stream = body["stream"].get<bool>();
  }
  if (body.contains("stream_options") && body["stream_options"].is_object()) {
    const json& so = body["stream_options"];
    if (so.contains("include_usage") && so["include_usage"].is_boolean()) f.include_usage = so["include_usage"].get<bool>();
  }
  return f;
}

json usage_json(int64_t prompt, int64_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// One request as the HTTP side sees it, shared with the streaming callback.
struct Call {
  bool chat = false;
  std::string id, model;
  int64_t created = 0;
  bool include_usage = false;
  std::shared_ptr<RequestHandle> handle;
  bool sent_role = false, finished = false;
};

json chunk_json(const Call& c, const std::string& text, const std::optional<std::string>& finish, bool role) {
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  if (finish) choice["finish_reason"] = *finish;
  if (c.chat) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (!text.empty() || (!role && !finish)) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return {{"id", c.id}, {"object", c.chat ? "chat.completion.chunk" : "text_completion"}, {"created", c.created},
          {"model", c.model}, {"choices", json::array({choice})}};
}

std::string sse(const json& j) { return "data: " + j.dump() + "\n\n"; }

// cpp-httplib (a compiled Debian library) listens with a backlog of 5, so a burst of clients connecting at once
// (a load test, a batch job) sees connections dropped. Listening again on the same socket raises the backlog; the
// socket is found as the one of this process that listens on `port`.
void raise_listen_backlog(int port) {
  for (int fd = 3; fd < 4096; ++fd) {
    int accepting = 0;
    socklen_t len = sizeof(accepting);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    int p = -1;
    if (addr.ss_family == AF_INET) p = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) p = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    if (p == port) ::listen(fd, SOMAXCONN);
  }
}

}  // namespace

OpenAiServer::OpenAiServer(Engine& engine, const text::Tokenizer& tok, const text::ChatTemplate* chat, ServerOptions opts)
    : engine_(engine), tok_(tok), chat_(chat), opts_(std::move(opts)), http_(std::make_unique<httplib::Server>()) {
  // One worker per open connection: streaming requests hold theirs until the last token.
  const size_t workers = static_cast<size_t>(std::max<int64_t>(16, 4 * engine_.options().max_batch * static_cast<int64_t>(engine_.models().size())));
  http_->new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  // cpp-httplib's 5 s socket timeouts fail slow but live clients (a loaded machine, a long prompt being typed in
  // by a proxy); a streaming answer can also pause while a long prefill of another request runs.
  http_->set_read_timeout(120, 0);
  http_->set_write_timeout(120, 0);
  routes();
}

OpenAiServer::~OpenAiServer() { stop(); }

int OpenAiServer::bind() {
  if (opts_.port == 0) {
    port_ = http_->bind_to_any_port(opts_.host);
    if (port_ < 0) fail("serve: cannot bind to any port on {}", opts_.host);
  } else {
    if (!http_->bind_to_port(opts_.host, opts_.port))
      fail("serve: cannot bind to {}:{} (in use, or not an address of this machine?)", opts_.host, opts_.port);
    port_ = opts_.port;
  }
  raise_listen_backlog(port_);
  return port_;
}

void OpenAiServer::listen() {
  if (port_ < 0) fail("serve: bind() before listen()");
  http_->listen_after_bind();
}

void OpenAiServer::stop() {
  if (http_ && http_->is_running()) http_->stop();
}

void OpenAiServer::routes() {
  const int64_t started = static_cast<int64_t>(std::time(nullptr));
  http_->Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  // Prometheus text format (as vLLM's /metrics): the scheduler's counters and the KV cache's occupancy.
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const Engine::Stats& s = engine_.stats();
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help, double value) {
      out += fmt::format("# HELP cotune_{} {}\n# TYPE cotune_{} {}\ncotune_{} {}\n", name, help, name, type, name, value);
    };
    const int64_t running = s.running, in_flight = engine_.in_flight();
    metric("requests_running", "gauge", "Requests generating now.", static_cast<double>(running));
    metric("requests_waiting", "gauge", "Requests queued for a slot or KV pages.",
           static_cast<double>(std::max<int64_t>(0, in_flight - running)));
    metric("requests_completed_total", "counter", "Requests finished (any reason).", static_cast<double>(engine_.completed()));
    metric("kv_pages_total", "gauge", "KV-cache pages for sequences, all served models.", static_cast<double>(s.kv_pages_total));
    metric("kv_pages_used", "gauge", "KV-cache pages held by running requests.", static_cast<double>(s.kv_pages_used));
    metric("kv_cache_usage_ratio", "gauge", "kv_pages_used / kv_pages_total.",
           s.kv_pages_total > 0 ? static_cast<double>(s.kv_pages_used) / static_cast<double>(s.kv_pages_total) : 0.0);
    metric("page_waits_total", "counter", "Scheduler turns a request had a free slot but waited for KV pages.",
           static_cast<double>(s.page_waits));
    metric("decode_steps_total", "counter", "Decode steps.", static_cast<double>(s.steps));
    metric("device_select_steps_total", "counter", "Decode steps whose tokens the GPU chose.",
           static_cast<double>(s.device_steps));
    metric("decode_rows_total", "counter", "Sequences decoded, summed over steps.", static_cast<double>(s.rows));
    metric("prefills_total", "counter", "Packed prefills of admitted requests.", static_cast<double>(s.prefills));
    res.set_content(out, "text/plain; version=0.0.4");
  });
  http_->Get("/v1/models", [this, started](const httplib::Request&, httplib::Response& res) {
    json data = json::array();
    for (const auto& m : engine_.models())
      data.push_back({{"id", m.name}, {"object", "model"}, {"created", started}, {"owned_by", "cotune"}});
    res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
  });

  auto completion = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res) {
      try {
        json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
        if (body.is_discarded()) bad("the request body is not valid JSON");
        CommonFields f = common_fields(body, chat);
        if (!engine_.has_model(f.model))
          throw ApiError{404, fmt::format("The model '{}' does not exist (GET /v1/models lists the served models)", f.model),
                         "invalid_request_error", "model", "model_not_found"};
        std::vector<int32_t> ids;
        if (chat) {
          if (!chat_) bad("this model has no chat template: use /v1/completions", "messages");
          if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
            bad("'messages' must be a non-empty list of {role, content} objects", "messages");
          for (const auto& m : body["messages"])
            if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
              bad("each message needs a 'role' string", "messages");
          text::ChatRenderOptions ro;
          ro.add_generation_prompt = true;
          std::string prompt;
          try {
            prompt = chat_->render_json(body["messages"].dump(), ro).text;
          } catch (const std::exception& e) {
            bad(fmt::format("the chat template rejected the messages: {}", e.what()), "messages");
          }
          ids = tok_.encode(prompt, /*add_special=*/false);  // the template writes BOS where the model wants it
        } else {
          if (!body.contains("prompt")) bad("you must provide a prompt", "prompt");
          const json& p = body["prompt"];
          if (p.is_string()) {
            ids = tok_.encode(p.get<std::string>(), /*add_special=*/true);
          } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
            ids = tok_.encode(p[0].get<std::string>(), true);
          } else if (p.is_array() && !p.empty() && std::all_of(p.begin(), p.end(), [](const json& e) { return e.is_number_integer(); })) {
            for (const auto& e : p) ids.push_back(e.get<int32_t>());
          } else {
            bad("'prompt' must be a string, a list of one string, or a list of token ids (one prompt: n = 1)", "prompt");
          }
        }
        if (ids.empty()) bad("the prompt has no tokens", chat ? "messages" : "prompt");
        const int64_t context = engine_.options().context, n = static_cast<int64_t>(ids.size());
        const int64_t max_tokens = f.max_tokens.value_or(chat ? context - n : 16);
        if (n + max_tokens > context || max_tokens < 1)
          bad(fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in "
                          "the {}, {} in the completion). Please reduce the length of the {} or completion.",
                          context, n + max_tokens, n, chat ? "messages" : "prompt", std::max<int64_t>(max_tokens, 0),
                          chat ? "messages" : "prompt"),
              chat ? "messages" : "prompt", "context_length_exceeded");
        CompletionRequest cr;
        cr.model = f.model;
        cr.prompt_ids = std::move(ids);
        cr.max_tokens = max_tokens;
        cr.sampling = f.sampling;
        cr.stop = f.stop;
        auto call = std::make_shared<Call>();
        call->chat = chat;
        call->id = new_id(chat ? "chatcmpl-" : "cmpl-");
        call->model = f.model;
        call->created = static_cast<int64_t>(std::time(nullptr));
        call->include_usage = f.include_usage;
        try {
          call->handle = engine_.submit(std::move(cr));
        } catch (const Error& e) {
          throw ApiError{503, e.what(), "server_error", "", "unavailable"};
        }
        ++served_;
        const int timeout_ms = opts_.token_timeout_s * 1000;
        if (!f.stream) {
          std::string text, reason;
          int64_t pt = 0, ct = 0;
          for (;;) {
            auto e = call->handle->next(timeout_ms);
            if (!e) {
              call->handle->cancel();
              throw ApiError{500, "the model produced no token in time", "server_error", "", "timeout"};
            }
            if (e->kind == Event::Kind::text) text += e->text;
            else if (e->kind == Event::Kind::error) throw ApiError{500, e->text, "server_error", "", ""};
            else {
              reason = e->finish_reason;
              pt = e->prompt_tokens;
              ct = e->completion_tokens;
              break;
            }
          }
          json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", reason}};
          if (chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
          else choice["text"] = text;
          json out = {{"id", call->id}, {"object", chat ? "chat.completion" : "text_completion"},
                      {"created", call->created}, {"model", call->model}, {"choices", json::array({choice})},
                      {"usage", usage_json(pt, ct)}};
          res.set_content(out.dump(), "application/json");
          return;
        }
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            [call, timeout_ms](size_t, httplib::DataSink& sink) {
              auto send = [&](const std::string& s) {
                if (!sink.write(s.data(), s.size())) {
                  call->handle->cancel();
                  return false;
                }
                return true;
              };
              if (call->chat && !call->sent_role) {
                call->sent_role = true;
                if (!send(sse(chunk_json(*call, "", std::nullopt, true)))) return false;
              }
              // Wait for the next event in short slices, so a client that went away is noticed while waiting.
              std::optional<Event> e;
              for (int waited = 0; !e; waited += 200) {
                if (sink.is_writable && !sink.is_writable()) {
                  call->handle->cancel();
                  return false;
                }
                if (waited >= timeout_ms) {
                  call->handle->cancel();
                  json err = {{"error", {{"message", "the model produced no token in time"}, {"type", "server_error"}}}};
                  send(sse(err));
                  sink.done();
                  return true;
                }
                e = call->handle->next(200);
              }
              if (e->kind == Event::Kind::text) return send(sse(chunk_json(*call, e->text, std::nullopt, false)));
              if (e->kind == Event::Kind::error) {
                json err = {{"error", {{"message", e->text}, {"type", "server_error"}}}};
                send(sse(err));
                return true;  // the done event follows
              }
              if (e->finish_reason != "cancelled" && e->finish_reason != "error") {
                if (!send(sse(chunk_json(*call, "", e->finish_reason, false)))) return false;
                if (call->include_usage) {
                  json u = {{"id", call->id}, {"object", call->chat ? "chat.completion.chunk" : "text_completion"},
                            {"created", call->created}, {"model", call->model}, {"choices", json::array()},
                            {"usage", usage_json(e->prompt_tokens, e->completion_tokens)}};
                  if (!send(sse(u))) return false;
                }
              }
              send("data: [DONE]\n\n");
              sink.done();
              return true;
            },
            [call](bool success) {
              if (!success) call->handle->cancel();
            });
      } catch (const ApiError& e) {
        reply_error(res, e);
      } catch (const std::exception& e) {
        reply_error(res, ApiError{500, e.what(), "server_error", "", ""});
      }
    };
  };
  http_->Post("/v1/completions", completion(false));
  http_->Post("/v1/chat/completions", completion(true));
  http_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      reply_error(res, ApiError{404, fmt::format("Invalid URL ({} {})", req.method, req.path), "invalid_request_error", "", ""});
    else if (res.status == 405)
      reply_error(res, ApiError{405, fmt::format("Method not allowed ({} {})", req.method, req.path), "invalid_request_error", "", ""});
  });
}

}  // namespace cotune::serve
