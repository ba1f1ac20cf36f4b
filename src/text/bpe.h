// Byte-level BPE model: vocab entries are kept as raw bytes (the GPT-2 byte <-> char mapping is undone at
// load time), so a pre-token's UTF-8 bytes are merged directly. Merges are applied by rank, lowest first,
// leftmost first among equal ranks (HF `Word::merge_all`): a scan over a rank array for short words and a
// binary heap with lazy invalidation (O(n log n)) for long ones (a whole Chinese clause is one pre-token).
// Results of words up to kMaxCachedBytes long are cached in a sharded, thread-safe map.
#pragma once
#include <array>
#include <cstring>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace cotune::text {

// Open-addressing map (left id, right id) -> rank, one uint64 per slot ((left + 1) << 42 | right << 21 |
// rank; 0 = empty) so the table of Qwen2's 151k merges is 2 MB and mostly stays in cache; the merged id
// is merged_by_rank[rank]. Ids and ranks must be < 2^21.
class MergeTable {
 public:
  static constexpr int kBits = 21;
  static constexpr uint64_t kMask = (uint64_t{1} << kBits) - 1;

  void reserve(size_t n);
  // Inserts or overwrites (HF builds a HashMap from the merge list: a later duplicate wins).
  void put(int32_t left, int32_t right, int32_t rank, int32_t merged);
  // Rank of the pair, or -1.
  int32_t rank(int32_t left, int32_t right) const {
    const uint64_t key = (static_cast<uint64_t>(left + 1) << (2 * kBits)) | (static_cast<uint64_t>(right) << kBits);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      const uint64_t e = table_[i];
      if ((e & ~kMask) == key) return static_cast<int32_t>(e & kMask);
      if (e == 0) return -1;
    }
  }
  int32_t merged(int32_t rank) const { return merged_by_rank_[static_cast<size_t>(rank)]; }
  // Starts loading the slot of (left, right), so that two lookups wait for memory together.
  void prefetch(int32_t left, int32_t right) const {
    const uint64_t key = (static_cast<uint64_t>(left + 1) << (2 * kBits)) | (static_cast<uint64_t>(right) << kBits);
    __builtin_prefetch(&table_[slot(key)]);
  }
  // As rank(), through `memo`: a small direct-mapped cache of recent lookups (the table is far larger than
  // L1/L2; a long CJK word asks for the same few hundred pairs again and again). memo.size() is a power of 2.
  int32_t rank_memo(int32_t left, int32_t right, std::vector<uint64_t>& memo) const {
    const uint64_t key = (static_cast<uint64_t>(left + 1) << (2 * kBits)) | (static_cast<uint64_t>(right) << kBits);
    uint64_t& m = memo[static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 52) & (memo.size() - 1)];
    if ((m & ~kMask) == key) return (m & kMask) == kMask ? -1 : static_cast<int32_t>(m & kMask);
    const int32_t r = rank(left, right);
    m = key | (r < 0 ? kMask : static_cast<uint64_t>(r));
    return r;
  }
  size_t size() const { return size_; }

 private:
  size_t slot(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_) & mask_; }
  std::vector<uint64_t> table_;
  std::vector<int32_t> merged_by_rank_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept;
};

// string -> id, open addressing over one byte arena (no allocation per key); built once, then read-only.
class StringIdTable {
 public:
  void reserve(size_t keys, size_t key_bytes);
  void put(std::string_view key, int32_t id);  // inserts or overwrites
  int32_t find(std::string_view key) const {   // -1 when absent
    if (slots_.empty()) return -1;
    const uint64_t h = TransparentStringHash{}(key);
    const auto tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.tag == tag && s.len == key.size() && std::memcmp(arena_.data() + s.off, key.data(), key.size()) == 0)
        return s.id;
    }
  }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint32_t tag;  // high hash bits
    uint32_t len;
    uint32_t off;  // into arena_
    int32_t id;    // -1: empty
  };
  void grow();
  std::string arena_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// Thread-safe word -> ids cache: 64 shards, each a fixed-size open-addressing table with byte / id arenas,
// guarded by its own mutex. A shard stops accepting words when half full (as HF's cache stops at capacity).
class WordCache {
 public:
  WordCache();
  // Appends the cached ids of `word` to `out`; false when absent.
  bool lookup(std::string_view word, uint64_t hash, std::vector<int32_t>& out) const;
  void insert(std::string_view word, uint64_t hash, const int32_t* ids, size_t n) const;

 private:
  struct Slot {
    uint64_t hash;  // 0: empty
    uint32_t key_off, key_len, val_off, val_len;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::vector<Slot> slots;
    std::string keys;
    std::vector<int32_t> values;
    size_t count = 0;
  };
  static constexpr size_t kShards = 64;
  static constexpr size_t kSlotsPerShard = 1 << 13;  // 64 x 4096 words cached at most
  std::unique_ptr<Shard[]> shards_;
};

// Per-call scratch buffers of the BPE merge loop (reused across the words of one encode call).
struct BpeScratch {
  std::vector<int32_t> ids, prev, next, pair_rank, pair_merged;
  std::vector<uint64_t> heap;
  std::vector<uint64_t> memo;  // MergeTable::rank_memo cache, 4096 entries once used
};

class BpeModel {
 public:
  // Longer words are rare repeats (a Chinese clause between punctuation is one pre-token): not cached.
  static constexpr size_t kMaxCachedBytes = 64;

  // vocab_bytes[id] = the raw bytes of token id (empty for ids that are not BPE vocab entries);
  // `mergeable[id]` says whether the id may be produced (false for entries whose string form is not
  // byte-level). merges are (left id, right id, merged id) in rank order.
  BpeModel(std::vector<std::string> vocab_bytes, const std::vector<bool>& mergeable,
           const std::vector<std::array<int32_t, 3>>& merges, bool ignore_merges, int32_t unk_id, bool fuse_unk);
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one pre-token (its raw UTF-8 bytes) to `out`.
  void tokenize(std::string_view word, std::vector<int32_t>& out, BpeScratch& scratch) const;
  // Without the cache (tests, benchmarks).
  void tokenize_uncached(std::string_view word, std::vector<int32_t>& out, BpeScratch& scratch) const;

  const std::string& bytes_of(int32_t id) const { return vocab_bytes_[static_cast<size_t>(id)]; }
  size_t size() const { return vocab_bytes_.size(); }

 private:
  void merge_small(std::string_view word, std::vector<int32_t>& out, BpeScratch& scratch) const;
  void merge_heap(std::string_view word, std::vector<int32_t>& out, BpeScratch& scratch) const;
  bool initial_symbols(std::string_view word, std::vector<int32_t>& ids) const;

  std::vector<std::string> vocab_bytes_;
  StringIdTable bytes_to_id_;  // only with ignore_merges
  std::array<int32_t, 256> byte_id_{};
  std::vector<int32_t> byte_pair_rank_;  // [b1 * 256 + b2]: rank of (byte_id_[b1], byte_id_[b2]) or -1
  MergeTable merges_;
  bool ignore_merges_;
  int32_t unk_id_;
  bool fuse_unk_;
  WordCache cache_;
};

}  // namespace cotune::text
