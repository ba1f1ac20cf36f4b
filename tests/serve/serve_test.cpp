// The serving engine and the OpenAI-compatible server on the CPU, over the golden tiny Qwen2 model with a small
// byte-level tokenizer (the model's 320 ids are padded past the tokenizer's, so the id mask is exercised too).
//   - continuous batching: requests that join a running batch get exactly the greedy ids a lone Generator gives;
//   - the HTTP API: /v1/models, completions and chat completions, streamed (SSE) and not, usage counts, OpenAI
//     error bodies for malformed JSON, unknown models, n > 1, prompts longer than the context, unknown paths;
//   - a client that disconnects mid-stream frees its slot and the server keeps serving; 24 concurrent clients;
//   - shutdown finishing what is in flight, and refusing new requests.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>
#include <unistd.h>

#include "common/test_paths.h"
#include "infer/generator.h"
#include "model/qwen2.h"
#include "serve/engine.h"
#include "serve/openai_server.h"
#include "text/chat_template.h"
#include "text/train_bpe.h"

namespace cotune {
namespace {

using nlohmann::json;

struct Fixture {
  std::string dir;
  std::unique_ptr<text::Tokenizer> tok;
  std::unique_ptr<model::Qwen2Model> model;
  std::optional<text::ChatTemplate> chat;
  Fixture() {
    dir = (std::filesystem::temp_directory_path() / ("cotune-serve-" + std::to_string(::getpid()))).string();
    std::filesystem::create_directories(dir);
    text::BpeTrainOptions bo;
    bo.vocab_size = 256;
    std::vector<std::string> texts = {"hello world"};
    text::write_tokenizer_files(dir, text::train_bpe(texts, bo), text::r1_distill_tokenizer_spec());
    tok = std::make_unique<text::Tokenizer>(text::Tokenizer::load(dir));
    model = std::make_unique<model::Qwen2Model>(model::Qwen2Model::load(testing::golden_dir() + "/model/r1like"));
    chat = text::ChatTemplate::find(dir);
  }
  ~Fixture() { std::filesystem::remove_all(dir); }
};

Fixture& fx() {
  static Fixture f;
  return f;
}

serve::EngineOptions engine_options(int64_t batch = 4, int64_t context = 96) {
  serve::EngineOptions o;
  o.max_batch = batch;
  o.context = context;
  o.prefill_chunk = 16;
  o.eos_ids = {fx().tok->eos_id()};
  return o;
}

std::vector<int32_t> prompt_ids(int i) { return fx().tok->encode("hello " + std::string(static_cast<size_t>(i % 5 + 1), 'w') + std::to_string(i)); }

// What a lone Generator produces for one prompt, greedy.
std::vector<int32_t> lone_greedy(const std::vector<int32_t>& prompt, int64_t n) {
  infer::Generator gen(*fx().model, nullptr);
  infer::GenerationOptions o;
  o.max_new_tokens = n;
  o.sampling.do_sample = false;
  o.eos_ids = {fx().tok->eos_id()};
  return gen.generate({prompt}, o, fx().tok.get())[0].ids;
}

std::string collect(serve::RequestHandle& h, std::string* reason = nullptr, int64_t* completion = nullptr) {
  std::string text;
  for (;;) {
    auto e = h.next(20000);
    if (!e) ADD_FAILURE() << "no event within 20 s";
    if (!e) return text;
    if (e->kind == serve::Event::Kind::text) text += e->text;
    else if (e->kind == serve::Event::Kind::error) ADD_FAILURE() << e->text;
    else {
      if (reason) *reason = e->finish_reason;
      if (completion) *completion = e->completion_tokens;
      return text;
    }
  }
}

TEST(ServeEngine, ContinuousBatchingGivesTheGreedyIdsOfALoneGenerator) {
  serve::Engine engine(*fx().model, *fx().tok, {{"base", nullptr}}, engine_options(3));
  const int64_t n = 20;
  std::vector<std::shared_ptr<serve::RequestHandle>> handles;
  auto submit = [&](int i) {
    serve::CompletionRequest r;
    r.model = "base";
    r.prompt_ids = prompt_ids(i);
    r.max_tokens = n;
    r.sampling.do_sample = false;
    handles.push_back(engine.submit(r));
  };
  submit(0);
  submit(1);
  auto first = handles[0]->next(20000);  // the first two are generating; the next ones join (or queue for a slot)
  ASSERT_TRUE(first.has_value());
  for (int i = 2; i < 7; ++i) submit(i);
  for (int i = 0; i < 7; ++i) {
    std::string reason;
    int64_t completion = 0;
    std::string text = (i == 0 ? first->text : std::string()) + collect(*handles[static_cast<size_t>(i)], &reason, &completion);
    const auto want = lone_greedy(prompt_ids(i), n);
    std::string want_text;
    for (int32_t id : want)
      if (id != fx().tok->eos_id()) want_text += fx().tok->token_bytes(id);
    EXPECT_EQ(completion, static_cast<int64_t>(want.size())) << "request " << i;
    EXPECT_EQ(text, fx().tok->decode(want, /*skip_special=*/true)) << "request " << i;
    EXPECT_EQ(reason, want.size() < static_cast<size_t>(n) ? "stop" : "length") << "request " << i;
  }
  EXPECT_EQ(engine.in_flight(), 0);
  EXPECT_EQ(engine.completed(), 7);
}

TEST(ServeEngine, RefusesWhatCannotRunAndStopsCleanly) {
  serve::Engine engine(*fx().model, *fx().tok, {{"base", nullptr}}, engine_options(2, 32));
  serve::CompletionRequest r;
  r.model = "other";
  r.prompt_ids = prompt_ids(1);
  EXPECT_THROW(engine.submit(r), Error);
  r.model = "base";
  r.max_tokens = 64;  // prompt + 64 > 32
  EXPECT_THROW(engine.submit(r), Error);
  r.max_tokens = 8;
  r.prompt_ids = {};
  EXPECT_THROW(engine.submit(r), Error);
  r.prompt_ids = prompt_ids(2);
  r.sampling.do_sample = true;
  r.sampling.temperature = -1;
  EXPECT_THROW(engine.submit(r), Error);
  r.sampling.temperature = 0.7f;
  auto h = engine.submit(r);
  engine.shutdown(/*finish=*/true);  // the running request completes
  std::string reason;
  collect(*h, &reason);
  EXPECT_TRUE(reason == "length" || reason == "stop") << reason;
  EXPECT_THROW(engine.submit(r), Error);
}

// ---- HTTP ------------------------------------------------------------------------------------------------------

struct RunningServer {
  serve::Engine engine;
  serve::OpenAiServer server;
  std::thread thread;
  int port;
  explicit RunningServer(int64_t batch = 4, int64_t context = 96)
      : engine(*fx().model, *fx().tok, {{"base", nullptr}}, engine_options(batch, context)),
        server(engine, *fx().tok, fx().chat ? &*fx().chat : nullptr, [] {
          serve::ServerOptions o;
          o.port = 0;
          return o;
        }()) {
    port = server.bind();
    thread = std::thread([this] { server.listen(); });
  }
  ~RunningServer() {
    server.stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(300, 0);
    c.set_connection_timeout(60, 0);
    c.set_write_timeout(60, 0);
    return c;
  }
};

json post(const RunningServer& s, const std::string& path, const std::string& body, int* status) {
  auto c = s.client();
  auto res = c.Post(path.c_str(), body, "application/json");
  if (!res) {
    ADD_FAILURE() << "no answer from " << path;
    return {};
  }
  *status = res->status;
  return json::parse(res->body);
}

// The text of an SSE stream's chunks, and the finish reason of its last chunk.
std::pair<std::string, std::string> read_stream(const std::string& body, bool chat, json* usage = nullptr) {
  std::string text, reason;
  size_t pos = 0;
  bool done = false;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    const std::string data = body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      break;
    }
    json j = json::parse(data);
    if (j.contains("usage") && usage) *usage = j["usage"];
    if (j["choices"].empty()) continue;
    const json& c = j["choices"][0];
    if (chat && c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
    if (!chat) text += c["text"].get<std::string>();
    if (!c["finish_reason"].is_null()) reason = c["finish_reason"].get<std::string>();
  }
  EXPECT_TRUE(done) << "the stream did not end with data: [DONE]";
  return {text, reason};
}

TEST(ServeHttp, ModelsCompletionsAndChatStreamedAndNot) {
  RunningServer s;
  auto c = s.client();
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  json m = json::parse(models->body);
  EXPECT_EQ(m["object"], "list");
  EXPECT_EQ(m["data"][0]["id"], "base");
  auto metrics = c.Get("/metrics");  // Prometheus text: the KV pool of 4 sequences of 96 tokens, 16 a page
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("\ncotune_kv_pages_total 24\n"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("# TYPE cotune_requests_running gauge"), std::string::npos) << metrics->body;

  int status = 0;
  json plain = post(s, "/v1/completions", R"({"model":"base","prompt":"hello w","max_tokens":12,"temperature":0})", &status);
  ASSERT_EQ(status, 200) << plain.dump();
  EXPECT_EQ(plain["object"], "text_completion");
  const std::string text = plain["choices"][0]["text"];
  const auto want = lone_greedy(fx().tok->encode("hello w"), 12);
  EXPECT_EQ(text, fx().tok->decode(want, true));
  EXPECT_EQ(plain["usage"]["prompt_tokens"], fx().tok->encode("hello w").size());
  EXPECT_EQ(plain["usage"]["completion_tokens"], want.size());

  auto streamed = c.Post("/v1/completions",
                         R"({"model":"base","prompt":"hello w","max_tokens":12,"temperature":0,"stream":true,
                             "stream_options":{"include_usage":true}})",
                         "application/json");
  ASSERT_TRUE(streamed);
  EXPECT_EQ(streamed->get_header_value("Content-Type"), "text/event-stream");
  json usage;
  auto [stext, sreason] = read_stream(streamed->body, false, &usage);
  EXPECT_EQ(stext, text);
  EXPECT_EQ(sreason, plain["choices"][0]["finish_reason"]);
  EXPECT_EQ(usage["completion_tokens"], want.size());

  ASSERT_TRUE(fx().chat.has_value());
  const std::string msgs = R"([{"role":"user","content":"hello"}])";
  json chat = post(s, "/v1/chat/completions", R"({"model":"base","messages":)" + msgs + R"(,"max_tokens":10,"temperature":0})", &status);
  ASSERT_EQ(status, 200) << chat.dump();
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  text::ChatRenderOptions ro;
  ro.add_generation_prompt = true;
  const auto chat_prompt = fx().tok->encode(fx().chat->render_json(msgs, ro).text, false);
  EXPECT_EQ(chat["usage"]["prompt_tokens"], chat_prompt.size());
  EXPECT_EQ(chat["choices"][0]["message"]["content"], fx().tok->decode(lone_greedy(chat_prompt, 10), true));
  auto chat_stream = c.Post("/v1/chat/completions",
                            R"({"model":"base","messages":)" + msgs + R"(,"max_tokens":10,"temperature":0,"stream":true})",
                            "application/json");
  ASSERT_TRUE(chat_stream);
  EXPECT_EQ(read_stream(chat_stream->body, true).first, chat["choices"][0]["message"]["content"]);
  // Seeded sampling repeats; stop strings cut.
  const std::string sampled = R"({"model":"base","prompt":"hello","max_tokens":16,"temperature":0.9,"top_p":0.9,"seed":5})";
  json a = post(s, "/v1/completions", sampled, &status), b = post(s, "/v1/completions", sampled, &status);
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]);
  const std::string full = plain["choices"][0]["text"];
  size_t at = 1;
  while (at < full.size() && static_cast<unsigned char>(full[at]) >= 0x80) ++at;  // an ASCII character: a whole one
  if (at + 1 < full.size()) {
    const std::string stop = full.substr(at, 1);
    json cut = post(s, "/v1/completions",
                    json{{"model", "base"}, {"prompt", "hello w"}, {"max_tokens", 12}, {"temperature", 0}, {"stop", stop}}.dump(),
                    &status);
    EXPECT_EQ(cut["choices"][0]["text"], full.substr(0, full.find(stop)));
    EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
  }
}

TEST(ServeHttp, ErrorsAreOpenAiBodiesAndTheServerKeepsServing) {
  RunningServer s(2, 40);
  int status = 0;
  json e = post(s, "/v1/completions", "{not json", &status);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  e = post(s, "/v1/chat/completions", R"({"model":"gpt-4","messages":[{"role":"user","content":"x"}]})", &status);
  EXPECT_EQ(status, 404);
  EXPECT_EQ(e["error"]["code"], "model_not_found");
  e = post(s, "/v1/completions", R"({"model":"base","prompt":"hello","n":2})", &status);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(e["error"]["param"], "n");
  e = post(s, "/v1/completions", R"({"model":"base","prompt":"hello","max_tokens":100})", &status);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(e["error"]["code"], "context_length_exceeded");
  e = post(s, "/v1/completions", R"({"model":"base","prompt":"hello","temperature":"hot"})", &status);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(e["error"]["param"], "temperature");
  e = post(s, "/v1/chat/completions", R"({"model":"base","messages":"hi"})", &status);
  EXPECT_EQ(status, 400);
  e = post(s, "/v1/nothing", "{}", &status);
  EXPECT_EQ(status, 404);
  EXPECT_TRUE(e["error"].contains("message"));
  json ok = post(s, "/v1/completions", R"({"model":"base","prompt":"hello","max_tokens":4})", &status);
  EXPECT_EQ(status, 200) << ok.dump();
}

TEST(ServeHttp, ADisconnectedStreamFreesItsSlot) {
  RunningServer s(1, 4000);  // one slot: the next request runs only once the first one's slot is free
  {
    auto c = s.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = R"({"model":"base","prompt":"hello","max_tokens":3000,"temperature":0.8,"seed":1,"stream":true})";
    req.set_header("Content-Type", "application/json");
    int chunks = 0;
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; };  // then hang up
    c.send(req);
    EXPECT_GE(chunks, 3);
  }
  for (int i = 0; i < 200 && s.engine.in_flight() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(s.engine.in_flight(), 0) << "the abandoned request still holds the slot";
  int status = 0;
  json ok = post(s, "/v1/completions", R"({"model":"base","prompt":"hello","max_tokens":4})", &status);
  EXPECT_EQ(status, 200) << ok.dump();
}

TEST(ServeHttp, ConcurrentClientsAllSucceed) {
  RunningServer s(8, 64);
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 24; ++i)
    clients.emplace_back([&, i] {
      auto c = s.client();
      const std::string body = json{{"model", "base"}, {"prompt", "hello " + std::to_string(i)}, {"max_tokens", 8},
                                    {"temperature", 0}, {"stream", i % 2 == 0}}
                                   .dump();
      auto res = c.Post("/v1/completions", body, "application/json");
      if (res && res->status == 200) ++ok;
      else if (res) ADD_FAILURE() << "client " << i << ": " << res->status << " " << res->body;
      else ADD_FAILURE() << "client " << i << ": " << httplib::to_string(res.error());
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 24);
  EXPECT_EQ(s.engine.in_flight(), 0);
}

}  // namespace
}  // namespace cotune
