// An OpenAI-compatible HTTP server over the serving engine (cpp-httplib):
//
//   GET  /v1/models               the served names (the base model, then each adapter)
//   POST /v1/completions          {model, prompt, max_tokens (16), temperature (1), top_p (1), seed, stop, n (1),
//                                  stream, stream_options.include_usage}
//   POST /v1/chat/completions     {model, messages, max_tokens | max_completion_tokens (the rest of the context),
//                                  the same sampling fields}; the prompt is the model's chat template rendered with
//                                  add_generation_prompt (text/chat_template.h)
//   GET  /health                  200 while the server takes requests
//
// Streaming answers are Server-Sent Events (`data: {chunk}\n\n` ... `data: [DONE]\n\n`) as OpenAI sends them.
// Errors are OpenAI's error body {"error": {"message", "type", "param", "code"}} with a 4xx status (400 malformed
// JSON / a bad field / a prompt longer than the context, 404 an unknown model or path, 503 shutting down); a
// failure inside one request never stops the server. A client that disconnects mid-stream cancels its request,
// which frees its cache slot at the engine's next step.
#pragma once
#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "serve/engine.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace httplib {
class Server;
}

namespace cotune::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (port() tells which)
  // Seconds a request may wait for its next token before it is failed (a stuck engine never hangs a client).
  int token_timeout_s = 600;
};

class OpenAiServer {
 public:
  // `chat` may be null: /v1/chat/completions then answers 400 (the model has no chat template).
  OpenAiServer(Engine& engine, const text::Tokenizer& tok, const text::ChatTemplate* chat, ServerOptions opts);
  ~OpenAiServer();
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  // Binds the socket; throws Error naming host and port when it cannot. Returns the bound port.
  int bind();
  // Serves until stop(); call bind() first.
  void listen();
  // Stops taking connections (listen() returns); requests in flight are left to the engine.
  void stop();
  int port() const { return port_; }
  int64_t requests_served() const { return served_; }

 private:
  void routes();
  Engine& engine_;
  const text::Tokenizer& tok_;
  const text::ChatTemplate* chat_;
  ServerOptions opts_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = -1;
  std::atomic<int64_t> served_{0};
};

}  // namespace cotune::serve
