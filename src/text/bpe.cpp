#include "text/bpe.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cstring>
#include <functional>
#include <queue>

#include "base/error.h"

namespace cotune::text {

size_t TransparentStringHash::operator()(std::string_view s) const noexcept {
  // FNV-1a over 8-byte words, then a final mix: fast for short words, good enough spread.
  uint64_t h = 0xcbf29ce484222325ull ^ s.size();
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ tail) * 0x9E3779B97F4A7C15ull;
  return static_cast<size_t>(h ^ (h >> 32));
}

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap * 4 < n * 7) cap <<= 1;  // load factor <= 4/7
  table_.assign(cap, 0);
  mask_ = cap - 1;
  shift_ = 64 - std::countr_zero(cap);
  size_ = 0;
}

void MergeTable::put(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if (left < 0 || right < 0 || rank < 0 || static_cast<uint64_t>(left) >= kMask || static_cast<uint64_t>(right) > kMask ||
      static_cast<uint64_t>(rank) > kMask)
    fail("BPE: ids and merge ranks must be below 2^{} (got left {}, right {}, rank {})", kBits, left, right, rank);
  if ((size_ + 1) * 7 > table_.size() * 4) {
    std::vector<uint64_t> old = std::move(table_);
    reserve(std::max<size_t>(16, old.size()));
    for (uint64_t e : old) {
      if (e == 0) continue;
      size_t i = slot(e & ~kMask);
      while (table_[i] != 0) i = (i + 1) & mask_;
      table_[i] = e;
      ++size_;
    }
  }
  if (static_cast<size_t>(rank) >= merged_by_rank_.size()) merged_by_rank_.resize(static_cast<size_t>(rank) + 1, -1);
  merged_by_rank_[static_cast<size_t>(rank)] = merged;
  const uint64_t key = (static_cast<uint64_t>(left + 1) << (2 * kBits)) | (static_cast<uint64_t>(right) << kBits);
  for (size_t i = slot(key);; i = (i + 1) & mask_) {
    uint64_t& e = table_[i];
    if ((e & ~kMask) == key || e == 0) {
      if (e == 0) ++size_;
      e = key | static_cast<uint64_t>(rank);
      return;
    }
  }
}

void StringIdTable::reserve(size_t keys, size_t key_bytes) {
  arena_.reserve(key_bytes);
  size_t cap = 16;
  while (cap < keys * 2) cap <<= 1;
  slots_.assign(cap, Slot{0, 0, 0, -1});
  mask_ = cap - 1;
  size_ = 0;
}

void StringIdTable::grow() {
  std::vector<Slot> old = std::move(slots_);
  const size_t cap = std::max<size_t>(16, old.size() * 2);
  slots_.assign(cap, Slot{0, 0, 0, -1});
  mask_ = cap - 1;
  for (const Slot& o : old) {
    if (o.id < 0) continue;
    const uint64_t h = TransparentStringHash{}(std::string_view(arena_.data() + o.off, o.len));
    size_t i = h & mask_;
    while (slots_[i].id >= 0) i = (i + 1) & mask_;
    slots_[i] = o;
  }
}

void StringIdTable::put(std::string_view key, int32_t id) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const uint64_t h = TransparentStringHash{}(key);
  const auto tag = static_cast<uint32_t>(h >> 32);
  size_t i = h & mask_;
  for (;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.id < 0) break;
    if (s.tag == tag && s.len == key.size() && std::memcmp(arena_.data() + s.off, key.data(), key.size()) == 0) {
      s.id = id;
      return;
    }
  }
  slots_[i] = Slot{tag, static_cast<uint32_t>(key.size()), static_cast<uint32_t>(arena_.size()), id};
  arena_.append(key);
  ++size_;
}

WordCache::WordCache() : shards_(std::make_unique<Shard[]>(kShards)) {}

bool WordCache::lookup(std::string_view word, uint64_t hash, std::vector<int32_t>& out) const {
  hash |= 1;
  Shard& sh = shards_[(hash >> 20) % kShards];
  std::lock_guard<std::mutex> lock(sh.mutex);
  if (sh.slots.empty()) return false;
  for (size_t i = (hash >> 32) & (kSlotsPerShard - 1);; i = (i + 1) & (kSlotsPerShard - 1)) {
    const Slot& s = sh.slots[i];
    if (s.hash == 0) return false;
    if (s.hash == hash && s.key_len == word.size() &&
        std::memcmp(sh.keys.data() + s.key_off, word.data(), word.size()) == 0) {
      out.insert(out.end(), sh.values.begin() + s.val_off, sh.values.begin() + s.val_off + s.val_len);
      return true;
    }
  }
}

void WordCache::insert(std::string_view word, uint64_t hash, const int32_t* ids, size_t n) const {
  hash |= 1;
  Shard& sh = shards_[(hash >> 20) % kShards];
  std::lock_guard<std::mutex> lock(sh.mutex);
  if (sh.count * 2 >= kSlotsPerShard) return;
  if (sh.slots.empty()) sh.slots.assign(kSlotsPerShard, Slot{0, 0, 0, 0, 0});
  size_t i = (hash >> 32) & (kSlotsPerShard - 1);
  for (;; i = (i + 1) & (kSlotsPerShard - 1)) {
    const Slot& s = sh.slots[i];
    if (s.hash == 0) break;
    if (s.hash == hash && s.key_len == word.size() && std::memcmp(sh.keys.data() + s.key_off, word.data(), word.size()) == 0)
      return;  // another thread was first
  }
  sh.slots[i] = Slot{hash, static_cast<uint32_t>(sh.keys.size()), static_cast<uint32_t>(word.size()),
                     static_cast<uint32_t>(sh.values.size()), static_cast<uint32_t>(n)};
  sh.keys.append(word);
  sh.values.insert(sh.values.end(), ids, ids + n);
  ++sh.count;
}

BpeModel::BpeModel(std::vector<std::string> vocab_bytes, const std::vector<bool>& mergeable,
                   const std::vector<std::array<int32_t, 3>>& merges, bool ignore_merges, int32_t unk_id, bool fuse_unk)
    : vocab_bytes_(std::move(vocab_bytes)), ignore_merges_(ignore_merges), unk_id_(unk_id), fuse_unk_(fuse_unk) {
  byte_id_.fill(-1);
  if (ignore_merges_) bytes_to_id_.reserve(vocab_bytes_.size(), vocab_bytes_.size() * 8);
  for (size_t id = 0; id < vocab_bytes_.size(); ++id) {
    if (!mergeable[id]) continue;
    const std::string& b = vocab_bytes_[id];
    if (ignore_merges_) bytes_to_id_.put(b, static_cast<int32_t>(id));
    if (b.size() == 1) byte_id_[static_cast<unsigned char>(b[0])] = static_cast<int32_t>(id);
  }
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r)
    merges_.put(merges[r][0], merges[r][1], static_cast<int32_t>(r), merges[r][2]);
  byte_pair_rank_.assign(256 * 256, -1);
  for (int b1 = 0; b1 < 256; ++b1)
    for (int b2 = 0; b2 < 256; ++b2)
      if (byte_id_[b1] >= 0 && byte_id_[b2] >= 0) byte_pair_rank_[b1 * 256 + b2] = merges_.rank(byte_id_[b1], byte_id_[b2]);
}

// Ids of the word's single bytes (HF merge_word: unknown characters become unk, fused when fuse_unk, or
// are dropped when there is no unk token). Returns false when nothing is left.
bool BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& ids) const {
  ids.clear();
  bool pending_unk = false;
  for (size_t i = 0; i < word.size(); ++i) {
    const int32_t id = byte_id_[static_cast<unsigned char>(word[i])];
    if (id >= 0) {
      if (pending_unk) {
        ids.push_back(unk_id_);
        pending_unk = false;
      }
      ids.push_back(id);
    } else if (unk_id_ >= 0) {
      if (pending_unk && !fuse_unk_) ids.push_back(unk_id_);
      pending_unk = true;
    }
  }
  if (pending_unk) ids.push_back(unk_id_);
  return !ids.empty();
}

void BpeModel::merge_small(std::string_view word, std::vector<int32_t>& out, BpeScratch& scratch) const {
  // Up to 32 symbols: ranks of adjacent pairs in an array, one linear scan per merge.
  int32_t ids[64];
  int32_t ranks[64];  // ranks[i] = rank of (ids[i], ids[i+1]) or INT_MAX
  int32_t merged[64];
  size_t n = 0;
  bool has_unknown = false;
  for (char ch : word) {
    const int32_t id = byte_id_[static_cast<unsigned char>(ch)];
    if (id < 0) has_unknown = true;
    ids[n++] = id;
  }
  if (has_unknown) {  // rare: take the general path with unk handling
    merge_heap(word, out, scratch);
    return;
  }
  for (size_t i = 0; i + 1 < n; ++i) {
    const int32_t r = byte_pair_rank_[static_cast<unsigned char>(word[i]) * 256 + static_cast<unsigned char>(word[i + 1])];
    ranks[i] = r >= 0 ? r : INT_MAX;
    merged[i] = r >= 0 ? merges_.merged(r) : -1;
  }
  while (n > 1) {
    size_t best = 0;
    int32_t best_rank = INT_MAX;
    for (size_t i = 0; i + 1 < n; ++i)
      if (ranks[i] < best_rank) {
        best_rank = ranks[i];
        best = i;
      }
    if (best_rank == INT_MAX) break;
    ids[best] = merged[best];
    // Remove symbol best+1 and pair best+1.
    for (size_t i = best + 1; i + 1 < n; ++i) ids[i] = ids[i + 1];
    for (size_t i = best + 1; i + 2 < n; ++i) {
      ranks[i] = ranks[i + 1];
      merged[i] = merged[i + 1];
    }
    --n;
    if (best > 0) {
      const int32_t r = merges_.rank(ids[best - 1], ids[best]);
      ranks[best - 1] = r >= 0 ? r : INT_MAX;
      merged[best - 1] = r >= 0 ? merges_.merged(r) : -1;
    }
    if (best + 1 < n) {
      const int32_t r = merges_.rank(ids[best], ids[best + 1]);
      ranks[best] = r >= 0 ? r : INT_MAX;
      merged[best] = r >= 0 ? merges_.merged(r) : -1;
    }
  }
  out.insert(out.end(), ids, ids + n);
}

void BpeModel::merge_heap(std::string_view word, std::vector<int32_t>& out, BpeScratch& scratch) const {
  std::vector<int32_t>& ids = scratch.ids;
  if (!initial_symbols(word, ids)) return;
  const size_t n = ids.size();
  // Doubly linked list over symbol slots; a merged-away slot gets ids[i] = -1. pair_rank[i] / pair_merged[i]
  // describe the pair (i, next[i]) as it is now, so a popped heap entry is checked without a table lookup.
  std::vector<int32_t>& prev = scratch.prev;
  std::vector<int32_t>& next = scratch.next;
  std::vector<int32_t>& pair_rank = scratch.pair_rank;
  std::vector<int32_t>& pair_merged = scratch.pair_merged;
  prev.resize(n);
  next.resize(n);
  pair_rank.assign(n, INT_MAX);
  pair_merged.resize(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  // Min-heap of (rank << 32 | slot): lowest rank first, then leftmost slot (HF's Merge ordering).
  std::vector<uint64_t>& heap = scratch.heap;
  heap.clear();
  auto key = [](int32_t rank, size_t slot) { return (static_cast<uint64_t>(rank) << 32) | slot; };
  const bool plain_bytes = n == word.size();  // no unk symbols: slot i holds byte word[i]
  for (size_t i = 0; i + 1 < n; ++i) {
    const int32_t r = plain_bytes ? byte_pair_rank_[static_cast<unsigned char>(word[i]) * 256 + static_cast<unsigned char>(word[i + 1])]
                                  : merges_.rank(ids[i], ids[i + 1]);
    if (r >= 0) {
      pair_rank[i] = r;
      pair_merged[i] = merges_.merged(r);
      heap.push_back(key(r, i));
    }
  }
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  if (scratch.memo.empty()) scratch.memo.assign(4096, 0);
  auto set_pair = [&](size_t i) {  // recompute the pair (i, next[i]) and queue it
    pair_rank[i] = INT_MAX;
    if (next[i] < 0) return;
    const int32_t r = merges_.rank_memo(ids[i], ids[static_cast<size_t>(next[i])], scratch.memo);
    if (r >= 0) {
      pair_rank[i] = r;
      pair_merged[i] = merges_.merged(r);
      heap.push_back(key(r, i));
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t top = heap.back();
    heap.pop_back();
    const auto rank = static_cast<int32_t>(top >> 32);
    const auto i = static_cast<size_t>(top & 0xFFFFFFFFu);
    if (ids[i] < 0 || pair_rank[i] != rank) continue;  // stale: slot i merged away or its pair changed
    const auto j = static_cast<size_t>(next[i]);
    ids[i] = pair_merged[i];
    ids[j] = -1;
    pair_rank[j] = INT_MAX;
    next[i] = next[j];
    if (next[j] >= 0) prev[static_cast<size_t>(next[j])] = static_cast<int32_t>(i);
    if (prev[i] >= 0) merges_.prefetch(ids[static_cast<size_t>(prev[i])], ids[i]);
    if (next[i] >= 0) merges_.prefetch(ids[i], ids[static_cast<size_t>(next[i])]);
    if (prev[i] >= 0) set_pair(static_cast<size_t>(prev[i]));
    set_pair(i);
  }
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) out.push_back(ids[static_cast<size_t>(i)]);
}

void BpeModel::tokenize_uncached(std::string_view word, std::vector<int32_t>& out, BpeScratch& scratch) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const int32_t id = bytes_to_id_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (word.size() == 1) {
    const int32_t id = byte_id_[static_cast<unsigned char>(word[0])];
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (word.size() <= 32)
    merge_small(word, out, scratch);
  else
    merge_heap(word, out, scratch);
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out, BpeScratch& scratch) const {
  if (word.size() <= 2 || word.size() > kMaxCachedBytes) {
    tokenize_uncached(word, out, scratch);
    return;
  }
  const uint64_t h = TransparentStringHash{}(word);
  if (cache_.lookup(word, h, out)) return;
  const size_t first = out.size();
  tokenize_uncached(word, out, scratch);
  cache_.insert(word, h, out.data() + first, out.size() - first);
}

}  // namespace cotune::text
