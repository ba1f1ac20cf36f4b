// Pre-tokenizer steps of tokenizer.json (`Split`, `ByteLevel`, `Sequence`): each step cuts a piece of text
// into smaller pieces and hands them on in order, so a Sequence is a chain of callbacks, no copies.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace cotune::text {

// Non-owning reference to a callable (the callee must outlive the call).
template <class Sig>
class FunctionRef;
template <class R, class... A>
class FunctionRef<R(A...)> {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT(google-explicit-constructor)
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, A... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...); }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

using PieceSink = FunctionRef<void(std::string_view)>;

// HF SplitDelimiterBehavior.
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  // Cuts `text` (valid UTF-8) and passes each non-empty piece, in order, to `sink`.
  virtual void split(std::string_view text, PieceSink sink) const = 0;
};

// The Qwen2 / Qwen2.5 / DeepSeek-R1-Distill pre-tokenizer pattern, as written in their tokenizer.json.
extern const char* const kQwen2Pattern;
// GPT-2's pattern, used by ByteLevel with use_regex = true.
extern const char* const kGpt2Pattern;

// `Split` with a regex (PCRE2, JIT, UTF + UCP) or a literal string. `what` names the component in errors.
// When the pattern is kQwen2Pattern with `isolated` and no invert, a hand-written matcher proven equal to
// the regex (tests/text/pretok_test.cpp) is used unless `force_regex`.
std::unique_ptr<PreTokenizerStep> make_split(const std::string& pattern, bool literal, SplitBehavior behavior,
                                             bool invert, const std::string& what, bool force_regex = false);
// `ByteLevel` as a pre-tokenizer: optional prefix space, optional GPT-2 regex split. (The byte -> char
// mapping itself is folded into the BPE model, which works on bytes.)
std::unique_ptr<PreTokenizerStep> make_byte_level_split(bool add_prefix_space, bool use_regex);

// The hand-written Qwen2 matcher: the end of the match that starts at `pos` (< text.size()). Exposed for the
// equality tests and the benchmark.
size_t qwen2_match_end(std::string_view text, size_t pos);

// A chain of steps (a tokenizer.json `Sequence`, or one step, or none).
class PreTokenizer {
 public:
  void add(std::unique_ptr<PreTokenizerStep> step) { steps_.push_back(std::move(step)); }
  void run(std::string_view text, PieceSink sink) const { run_from(0, text, sink); }
  bool empty() const { return steps_.empty(); }

 private:
  void run_from(size_t i, std::string_view text, PieceSink sink) const;
  std::vector<std::unique_ptr<PreTokenizerStep>> steps_;
};

}  // namespace cotune::text
