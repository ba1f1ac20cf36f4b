#include "serve/engine.h"

#include <algorithm>
#include <limits>

#include "base/error.h"
#include "base/log.h"
#include "base/rng.h"
#include "infer/text_stream.h"

namespace cotune::serve {

std::optional<Event> RequestHandle::next(int timeout_ms) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return !events_.empty(); })) return std::nullopt;
  Event e = std::move(events_.front());
  events_.pop_front();
  return e;
}

void RequestHandle::push(Event e) {
  {
    std::lock_guard lk(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

struct Engine::Sequence {
  std::shared_ptr<RequestHandle> handle;
  CompletionRequest req;
  int32_t slot = -1;
  infer::TextStream stream;
  uint64_t draws = 0;  // tokens sampled so far: the position in the request's Philox stream (seed, 0)
  std::vector<int32_t> context;  // prompt + generated ids (the repetition penalty looks at both)
  int64_t generated = 0;
  int32_t next_token = -1;  // fed to the model at the next decode step
};

struct Engine::Lane {
  ServedModel served;
  std::unique_ptr<infer::Generator> gen;
  std::deque<std::unique_ptr<Sequence>> queue;     // guarded by Engine::mu_
  std::vector<std::unique_ptr<Sequence>> running;  // the scheduler thread's alone
  std::vector<int32_t> free_slots;
  int64_t pages_for_sequences = 0;  // the generator's pool without the padding slot's pages
  int64_t promised = 0;             // pages the running sequences may hold at their longest (prompt + max_tokens)
};

namespace {
// Pages a request may hold at its longest.
int64_t pages_needed(const infer::Generator& gen, const CompletionRequest& r) {
  return gen.kv_pages().pages_for(static_cast<int64_t>(r.prompt_ids.size()) + r.max_tokens);
}
}  // namespace

Engine::Engine(const model::Qwen2Model& model, const text::Tokenizer& tok, std::vector<ServedModel> models,
               EngineOptions opts)
    : model_(model), tok_(tok), models_(std::move(models)), opts_(std::move(opts)) {
  if (models_.empty()) fail("serve: no model to serve");
  if (opts_.max_batch <= 0) fail("serve: max_batch must be positive, got {}", opts_.max_batch);
  if (opts_.context <= 1) fail("serve: context must be at least 2 positions, got {}", opts_.context);
  const int64_t V = model_.config().vocab_size;
  masked_ids_ = infer::ids_missing_from(tok_, V);
  if (static_cast<int64_t>(masked_ids_.size()) == V) fail("serve: the tokenizer has none of the model's {} ids", V);
  // The ids the tokenizer lacks are usually the padded tail of the vocabulary: then the GPU selects the tokens
  // itself, searching [0, selectable) (else every step's logits come to the host, which masks them).
  int64_t selectable = V;
  while (selectable > 0 && !tok_.has_id(static_cast<int32_t>(selectable - 1))) --selectable;
  device_select_ = model_.device() == Device::cuda && static_cast<int64_t>(masked_ids_.size()) == V - selectable;
  selectable_ = selectable;
  for (const auto& m : models_) {
    for (const auto& l : lanes_)
      if (l->served.name == m.name) fail("serve: the model name '{}' is given twice", m.name);
    auto lane = std::make_unique<Lane>();
    lane->served = m;
    infer::GeneratorOptions go;
    go.max_batch = opts_.max_batch;
    go.prefill_chunk = opts_.prefill_chunk;
    go.kv_page = opts_.kv_page;
    go.kv_pages = opts_.kv_pages;
    lane->gen = std::make_unique<infer::Generator>(model_, m.lora, go);
    lane->gen->reserve(opts_.context);
    if (device_select_) lane->gen->set_selectable(selectable);
    lane->pages_for_sequences = lane->gen->kv_pages().pages_total() - lane->gen->pad_pages();
    stats_.kv_pages_total += lane->pages_for_sequences;
    for (int64_t s = opts_.max_batch - 1; s >= 0; --s) lane->free_slots.push_back(static_cast<int32_t>(s));
    lanes_.push_back(std::move(lane));
  }
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  try {
    shutdown(false);
  } catch (const std::exception& e) {
    log::error("serve: shutting the engine down: {}", e.what());
  }
}

bool Engine::has_model(const std::string& name) const {
  return std::any_of(models_.begin(), models_.end(), [&](const ServedModel& m) { return m.name == name; });
}

std::shared_ptr<RequestHandle> Engine::submit(CompletionRequest req) {
  Lane* lane = nullptr;
  for (auto& l : lanes_)
    if (l->served.name == req.model) lane = l.get();
  if (!lane) fail("serve: the model '{}' is not served here", req.model);
  if (req.prompt_ids.empty()) fail("serve: the prompt has no tokens");
  if (req.max_tokens <= 0) fail("serve: max_tokens must be at least 1, got {}", req.max_tokens);
  const auto n = static_cast<int64_t>(req.prompt_ids.size());
  if (n + req.max_tokens > opts_.context)
    fail("serve: the prompt ({} tokens) plus max_tokens ({}) exceeds the context of {} tokens", n, req.max_tokens,
         opts_.context);
  const int64_t V = model_.config().vocab_size;
  for (int32_t id : req.prompt_ids)
    if (id < 0 || id >= V) fail("serve: token id {} is outside the model's vocabulary of {}", id, V);
  req.sampling.validate();
  if (const int64_t need = pages_needed(*lane->gen, req); need > lane->pages_for_sequences)
    fail("serve: the prompt ({} tokens) plus max_tokens ({}) needs {} KV cache pages of {} positions; the pool has {}",
         n, req.max_tokens, need, lane->gen->kv_pages().page(), lane->pages_for_sequences);
  auto seq = std::make_unique<Sequence>();
  seq->handle = std::make_shared<RequestHandle>();
  seq->stream = infer::TextStream(req.stop);
  seq->context = req.prompt_ids;
  seq->req = std::move(req);
  auto handle = seq->handle;
  {
    std::lock_guard lk(mu_);
    if (stopping_) fail("serve: the server is shutting down");
    lane->queue.push_back(std::move(seq));
    ++in_flight_;
  }
  cv_.notify_all();
  return handle;
}

void Engine::shutdown(bool finish) {
  {
    std::lock_guard lk(mu_);
    if (!stopping_) finish_on_stop_ = finish;
    else finish_on_stop_ = finish_on_stop_ && finish;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Engine::finish(Lane& lane, Sequence& seq, const std::string& reason) {
  std::string rest = seq.stream.finish();
  if (!rest.empty() && reason != "cancelled") seq.handle->push(Event{Event::Kind::text, std::move(rest), "", 0, 0});
  Event done;
  done.kind = Event::Kind::done;
  done.finish_reason = reason;
  done.prompt_tokens = static_cast<int64_t>(seq.req.prompt_ids.size());
  done.completion_tokens = seq.generated;
  if (seq.slot >= 0) {
    lane.gen->release_slot(seq.slot);
    lane.free_slots.push_back(seq.slot);
    lane.promised -= pages_needed(*lane.gen, seq.req);
    seq.slot = -1;
  }
  ++completed_;
  --in_flight_;  // before the last event: whoever sees the request done sees it counted as done
  seq.handle->push(std::move(done));
}

int32_t Engine::select(Sequence& seq, std::span<float> logits) const {
  for (int32_t id : masked_ids_) logits[static_cast<size_t>(id)] = -std::numeric_limits<float>::infinity();
  // The request's Philox stream at its next draw (one uniform a sampled token, as the device selection).
  Rng rng(seq.req.sampling.seed, seq.draws / 4);
  for (uint64_t i = 0; i < seq.draws % 4; ++i) rng.next_u32();
  const int32_t id = infer::select_token(logits, seq.context, seq.req.sampling, rng);
  if (seq.req.sampling.do_sample) ++seq.draws;
  return id;
}

bool Engine::on_device(const Sequence& seq) const {
  return device_select_ && infer::device_selectable(seq.req.sampling);
}

infer::SelectParams Engine::params(Sequence& seq) {
  infer::SelectParams p = infer::select_params(seq.req.sampling, seq.draws);
  if (seq.req.sampling.do_sample) ++seq.draws;
  return p;
}

bool Engine::advance(Lane& lane, Sequence& seq, int32_t id) {
  ++seq.generated;
  seq.context.push_back(id);
  const bool eos = std::find(opts_.eos_ids.begin(), opts_.eos_ids.end(), id) != opts_.eos_ids.end();
  if (!eos && !tok_.is_special(id)) {
    std::string piece = seq.stream.push(tok_.token_bytes(id));
    if (!piece.empty()) seq.handle->push(Event{Event::Kind::text, std::move(piece), "", 0, 0});
  }
  if (eos || seq.stream.stopped()) {
    finish(lane, seq, "stop");
    return false;
  }
  if (seq.generated >= seq.req.max_tokens || lane.gen->length(seq.slot) >= lane.gen->capacity()) {
    finish(lane, seq, "length");
    return false;
  }
  seq.next_token = id;
  return true;
}

void Engine::admit(Lane& lane) {
  const int64_t V = model_.config().vocab_size;
  // Every waiting request that has a free slot starts now: those the device selects for in one packed prefill.
  std::vector<std::unique_ptr<Sequence>> batch;
  while (!lane.free_slots.empty()) {
    std::unique_ptr<Sequence> seq;
    {
      std::lock_guard lk(mu_);
      if (lane.queue.empty()) break;
      // First come, first served: the head waits (and the rest behind it) until the running requests leave it
      // enough pages; a request never starts without the pages for its longest completion.
      if (!lane.queue.front()->handle->cancelled() &&
          lane.promised + pages_needed(*lane.gen, lane.queue.front()->req) > lane.pages_for_sequences) {
        ++stats_.page_waits;
        break;
      }
      seq = std::move(lane.queue.front());
      lane.queue.pop_front();
    }
    if (seq->handle->cancelled()) {
      finish(lane, *seq, "cancelled");
      continue;
    }
    seq->slot = lane.free_slots.back();
    lane.free_slots.pop_back();
    lane.promised += pages_needed(*lane.gen, seq->req);
    if (on_device(*seq)) {
      batch.push_back(std::move(seq));
      continue;
    }
    std::vector<float> logits;
    try {
      logits = lane.gen->prefill_slot(seq->slot, seq->req.prompt_ids);
    } catch (const std::exception& e) {
      seq->handle->push(Event{Event::Kind::error, e.what(), "", 0, 0});
      finish(lane, *seq, "error");
      continue;
    }
    if (advance(lane, *seq, select(*seq, std::span<float>(logits.data(), static_cast<size_t>(V)))))
      lane.running.push_back(std::move(seq));
  }
  if (batch.empty()) return;
  std::vector<int32_t> slots, first;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<infer::SelectParams> prm;
  for (auto& s : batch) {
    slots.push_back(s->slot);
    prompts.push_back(s->req.prompt_ids);
    prm.push_back(params(*s));
  }
  try {
    first = lane.gen->prefill_select(slots, prompts, prm);
  } catch (const std::exception& e) {
    log::error("serve: prefill failed: {}", e.what());
    for (auto& s : batch) {
      s->handle->push(Event{Event::Kind::error, e.what(), "", 0, 0});
      finish(lane, *s, "error");
    }
    return;
  }
  ++stats_.prefills;
  for (size_t i = 0; i < batch.size(); ++i)
    if (advance(lane, *batch[i], first[i])) lane.running.push_back(std::move(batch[i]));
}

void Engine::step(Lane& lane) {
  auto& run = lane.running;
  for (auto& s : run)
    if (s->handle->cancelled()) finish(lane, *s, "cancelled");
  std::erase_if(run, [](const std::unique_ptr<Sequence>& s) { return s->slot < 0; });
  if (run.empty()) return;
  std::vector<int32_t> slots, tokens;
  for (const auto& s : run) {
    slots.push_back(s->slot);
    tokens.push_back(s->next_token);
  }
  const bool device = std::all_of(run.begin(), run.end(), [&](const auto& s) { return on_device(*s); });
  ++stats_.steps;
  stats_.rows += static_cast<int64_t>(run.size());
  // A failed step ends every request of the lane with an error event (the server keeps serving).
  auto fail_step = [&](const std::exception& e) {
    log::error("serve: decode step failed: {}", e.what());
    for (auto& s : run) {
      s->handle->push(Event{Event::Kind::error, e.what(), "", 0, 0});
      finish(lane, *s, "error");
    }
    run.clear();
  };
  if (device) {  // the GPU selects: only the chosen ids come back
    std::vector<infer::SelectParams> prm;
    for (auto& s : run) prm.push_back(params(*s));
    std::vector<int32_t> chosen;
    try {
      chosen = lane.gen->decode_select(slots, tokens, prm);
    } catch (const std::exception& e) {
      fail_step(e);
      return;
    }
    ++stats_.device_steps;
    for (size_t j = 0; j < run.size(); ++j) advance(lane, *run[j], chosen[j]);
    std::erase_if(run, [](const std::unique_ptr<Sequence>& s) { return s->slot < 0; });
    return;
  }
  std::vector<float> logits;
  try {
    logits = lane.gen->decode(slots, tokens);
  } catch (const std::exception& e) {
    fail_step(e);
    return;
  }
  const int64_t V = model_.config().vocab_size;
  // Each sequence's choice depends only on its own row, context and random stream: the rows are processed in
  // parallel (a sampled row of 151,936 logits costs about a millisecond), then emitted in order. A sequence the
  // GPU selects for, in a step that came to the host for another one, keeps the GPU's algorithm (its CPU twin).
  const auto n = static_cast<int64_t>(run.size());
  std::vector<int32_t> chosen(run.size());
#pragma omp parallel for schedule(static) if (n > 1)
  for (int64_t j = 0; j < n; ++j) {
    Sequence& seq = *run[static_cast<size_t>(j)];
    float* row = logits.data() + j * V;
    chosen[static_cast<size_t>(j)] = on_device(seq) ? kernels::select_row_reference(row, selectable_, params(seq))
                                                    : select(seq, std::span<float>(row, static_cast<size_t>(V)));
  }
  for (size_t j = 0; j < run.size(); ++j) advance(lane, *run[j], chosen[j]);
  std::erase_if(run, [](const std::unique_ptr<Sequence>& s) { return s->slot < 0; });
}

void Engine::loop() {
  // Every batch size's decode step becomes one graph launch before the first request. Here, not in the
  // constructor: the CUDA stream, cuBLASLt workspace and scratch the graphs use are this thread's.
  if (device_select_) {
    for (auto& l : lanes_) {
      try {
        l->gen->warm_decode_graphs();
      } catch (const std::exception& e) {
        log::warn("serve: capturing the decode graphs of '{}': {} (the steps run uncaptured)", l->served.name, e.what());
      }
    }
  }
  for (;;) {
    bool cancel_all = false;
    {
      std::unique_lock lk(mu_);
      auto has_work = [&] {
        for (const auto& l : lanes_)
          if (!l->queue.empty() || !l->running.empty()) return true;
        return false;
      };
      cv_.wait(lk, [&] { return stopping_ || has_work(); });
      if (stopping_ && !has_work()) {
        done_ = true;
        return;
      }
      cancel_all = stopping_ && !finish_on_stop_;
    }
    if (cancel_all) {
      for (auto& l : lanes_) {
        std::deque<std::unique_ptr<Sequence>> queued;
        {
          std::lock_guard lk(mu_);
          queued.swap(l->queue);
        }
        for (auto& s : queued) finish(*l, *s, "cancelled");
        for (auto& s : l->running) finish(*l, *s, "cancelled");
        l->running.clear();
      }
      continue;
    }
    for (auto& l : lanes_) admit(*l);
    for (auto& l : lanes_) step(*l);
    int64_t used = 0, running = 0;
    for (const auto& l : lanes_) {
      used += l->gen->kv_pages().pages_total() - l->gen->pad_pages() - l->gen->kv_pages().pages_free();
      running += static_cast<int64_t>(l->running.size());
    }
    stats_.kv_pages_used = used;
    stats_.running = running;
  }
}

}  // namespace cotune::serve
