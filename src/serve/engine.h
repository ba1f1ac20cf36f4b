// The serving engine: continuous batching of independent completion requests over one loaded base model.
//
// One scheduler thread owns the model. Each model name it serves (the base, and every LoRA adapter loaded on that
// same base) has an infer::Generator with max_batch cache slots; a request takes a free slot of its model's
// generator. Every scheduler turn first starts waiting requests in free slots (prefill_slot: the other slots keep
// decoding state), then runs one decode step over all running sequences of a generator together, so a request
// that arrives while others are generating joins the running batch at the next step instead of waiting for them.
// On the GPU the tokens are chosen there (greedy or temperature / top-p / top-k with the request's seed,
// kernels/select_ops.h) and only the ids come back; waiting requests start together in one packed prefill.
// On the CPU, and for requests with a repetition penalty, the logits come to the host and infer/sampler.h chooses.
// Stop strings, EOS and max_tokens are applied per request on the host (TextStream).
//
// Requests talk to the engine through a RequestHandle: the engine pushes events (text pieces, then one final
// event), the HTTP side waits for them; cancel() (a client that went away) frees the slot at the next turn.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "infer/generator.h"
#include "infer/sampler.h"
#include "model/lora.h"
#include "model/qwen2.h"
#include "text/tokenizer.h"

namespace cotune::serve {

struct EngineOptions {
  int64_t max_batch = 8;       // sequences decoded together per model (cache slots)
  int64_t context = 4096;      // positions per sequence: prompt + completion
  int64_t prefill_chunk = 256;  // tokens a prefill forward takes at most
  // The KV cache is a pool of pages of kv_page positions (infer::GeneratorOptions): a request is admitted when the
  // pool can hold its prompt + max_tokens next to what the running requests may still grow to; it waits
  // otherwise. kv_pages: the pool's size per served model; 0: max_batch sequences of `context` positions.
  int64_t kv_page = 16;
  int64_t kv_pages = 0;
  std::vector<int32_t> eos_ids;  // a sequence ends after any of these (generation_config.json + the tokenizer's EOS)
};

struct CompletionRequest {
  std::string model;               // a name given to the engine (base or adapter)
  std::vector<int32_t> prompt_ids;  // BOS included where the model wants it
  int64_t max_tokens = 16;          // > 0; prompt + max_tokens <= context
  infer::SamplingOptions sampling;  // validated by submit
  std::vector<std::string> stop;    // the text is cut before the first one
};

struct Event {
  enum class Kind { text, done, error };
  Kind kind = Kind::text;
  std::string text;           // text: a piece of complete UTF-8; error: the message
  std::string finish_reason;  // done: "stop" (EOS or a stop string) | "length" | "cancelled"
  int64_t prompt_tokens = 0, completion_tokens = 0;  // done
};

class RequestHandle {
 public:
  // Waits for the next event; nullopt when none came within `timeout_ms` (the request is still running).
  std::optional<Event> next(int timeout_ms);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  friend class Engine;
  void push(Event e);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  std::atomic<bool> cancelled_{false};
};

struct ServedModel {
  std::string name;
  const model::LoraWeights* lora = nullptr;  // nullptr: the base model
};

class Engine {
 public:
  // `models`: the names requests may ask for (the first is the default); each gets its own generator and cache.
  Engine(const model::Qwen2Model& model, const text::Tokenizer& tok, std::vector<ServedModel> models,
         EngineOptions opts);
  ~Engine();  // cancels what is still running and joins the scheduler
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request; throws Error when it cannot run (unknown model, empty prompt, too long, bad sampling values,
  // the engine shutting down). The events arrive on the returned handle.
  std::shared_ptr<RequestHandle> submit(CompletionRequest req);
  // Stops taking requests. finish = true: running and queued requests complete; false: they end as "cancelled".
  // Returns when the scheduler has nothing left.
  void shutdown(bool finish);

  const std::vector<ServedModel>& models() const { return models_; }
  const EngineOptions& options() const { return opts_; }
  bool has_model(const std::string& name) const;
  // Requests finished so far, and the requests and sequences in flight now (queued + running).
  int64_t completed() const { return completed_; }
  int64_t in_flight() const { return in_flight_; }
  // Scheduler counters (read while it runs: a snapshot, each field atomic).
  struct Stats {
    std::atomic<int64_t> steps{0};         // decode steps (every lane's)
    std::atomic<int64_t> device_steps{0};  // of which the GPU selected the tokens (no logits copied to the host)
    std::atomic<int64_t> rows{0};          // sequences decoded over all steps (rows / steps = mean batch)
    std::atomic<int64_t> prefills{0};      // packed prefills of admitted requests (device path)
    std::atomic<int64_t> kv_pages_total{0};  // KV pages for sequences, all served models together
    std::atomic<int64_t> kv_pages_used{0};   // held by running sequences now (updated every scheduler turn)
    std::atomic<int64_t> page_waits{0};      // turns a waiting request had a free slot but not the pages it needs
    std::atomic<int64_t> running{0};         // sequences generating (updated every scheduler turn)
  };
  const Stats& stats() const { return stats_; }
  bool device_select() const { return device_select_; }

 private:
  struct Sequence;
  struct Lane;  // one served model: its generator, its queue and its running sequences
  void loop();
  void admit(Lane& lane);
  void step(Lane& lane);
  // The next id of `seq` from its logits row (ids the tokenizer lacks masked; the row is scratch afterwards).
  int32_t select(Sequence& seq, std::span<float> logits) const;
  // Appends `id` to `seq` and emits its text; false once the sequence finished.
  bool advance(Lane& lane, Sequence& seq, int32_t id);
  bool on_device(const Sequence& seq) const;  // the GPU selects this sequence's tokens
  infer::SelectParams params(Sequence& seq);  // its next draw's parameters (counts the draw)
  void finish(Lane& lane, Sequence& seq, const std::string& reason);

  const model::Qwen2Model& model_;
  const text::Tokenizer& tok_;
  std::vector<ServedModel> models_;
  EngineOptions opts_;
  std::vector<int32_t> masked_ids_;  // ids the tokenizer lacks: never picked
  bool device_select_ = false;       // CUDA and masked_ids_ are the vocabulary's tail: the GPU selects tokens
  int64_t selectable_ = 0;           // then the ids [0, selectable_) are the ones it chooses from
  Stats stats_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false, finish_on_stop_ = true, done_ = false;
  std::atomic<int64_t> completed_{0}, in_flight_{0};
  std::thread thread_;
};

}  // namespace cotune::serve
