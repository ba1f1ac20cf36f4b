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
  while (cap < n * 2) cap <<= 1;
  table_.assign(cap, Entry{kEmpty, 0, 0});
  mask_ = cap - 1;
  shift_ = 64 - std::countr_zero(cap);
  size_ = 0;
}

void MergeTable::put(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  if ((size_ + 1) * 2 > table_.size()) {
    std::vector<Entry> old = std::move(table_);
    reserve(std::max<size_t>(16, old.size()));
    for (const Entry& e : old)
      if (e.key != kEmpty) put(static_cast<int32_t>(e.key >> 32), static_cast<int32_t>(e.key & 0xFFFFFFFFu), e.rank, e.merged);
  }
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  size_t i = slot(key);
  for (;;) {
    Entry& e = table_[i];
    if (e.key == key) {
      e.rank = rank;
      e.merged = merged;
      return;
    }
    if (e.key == kEmpty) {
      e = Entry{key, rank, merged};
      ++size_;
      return;
    }
    i = (i + 1) & mask_;
  }
}

BpeModel::BpeModel(std::vector<std::string> vocab_bytes, const std::vector<bool>& mergeable,
                   const std::vector<std::array<int32_t, 3>>& merges, bool ignore_merges, int32_t unk_id, bool fuse_unk)
    : vocab_bytes_(std::move(vocab_bytes)),
      ignore_merges_(ignore_merges),
      unk_id_(unk_id),
      fuse_unk_(fuse_unk),
      shards_(std::make_unique<Shard[]>(kShards)) {
  byte_id_.fill(-1);
  bytes_to_id_.reserve(vocab_bytes_.size());
  for (size_t id = 0; id < vocab_bytes_.size(); ++id) {
    if (!mergeable[id]) continue;
    const std::string& b = vocab_bytes_[id];
    bytes_to_id_.emplace(b, static_cast<int32_t>(id));
    if (b.size() == 1) byte_id_[static_cast<unsigned char>(b[0])] = static_cast<int32_t>(id);
  }
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r)
    merges_.put(merges[r][0], merges[r][1], static_cast<int32_t>(r), merges[r][2]);
}

// Ids of the word's single bytes (HF merge_word: unknown characters become unk, fused when fuse_unk, or
// are dropped when there is no unk token). Returns false when nothing is left.
bool BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& ids, std::vector<uint32_t>& starts) const {
  ids.clear();
  starts.clear();
  bool pending_unk = false;
  uint32_t unk_start = 0;
  for (size_t i = 0; i < word.size(); ++i) {
    const int32_t id = byte_id_[static_cast<unsigned char>(word[i])];
    if (id >= 0) {
      if (pending_unk) {
        ids.push_back(unk_id_);
        starts.push_back(unk_start);
        pending_unk = false;
      }
      ids.push_back(id);
      starts.push_back(static_cast<uint32_t>(i));
    } else if (unk_id_ >= 0) {
      if (pending_unk && !fuse_unk_) {
        ids.push_back(unk_id_);
        starts.push_back(unk_start);
        pending_unk = false;
      }
      if (!pending_unk) {
        pending_unk = true;
        unk_start = static_cast<uint32_t>(i);
      }
    }
  }
  if (pending_unk) {
    ids.push_back(unk_id_);
    starts.push_back(unk_start);
  }
  return !ids.empty();
}

void BpeModel::merge_small(std::string_view word, std::vector<int32_t>& out) const {
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
    merge_heap(word, out);
    return;
  }
  for (size_t i = 0; i + 1 < n; ++i) {
    const MergeTable::Entry* e = merges_.find(ids[i], ids[i + 1]);
    ranks[i] = e ? e->rank : INT_MAX;
    merged[i] = e ? e->merged : -1;
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
      const MergeTable::Entry* e = merges_.find(ids[best - 1], ids[best]);
      ranks[best - 1] = e ? e->rank : INT_MAX;
      merged[best - 1] = e ? e->merged : -1;
    }
    if (best + 1 < n) {
      const MergeTable::Entry* e = merges_.find(ids[best], ids[best + 1]);
      ranks[best] = e ? e->rank : INT_MAX;
      merged[best] = e ? e->merged : -1;
    }
  }
  out.insert(out.end(), ids, ids + n);
}

void BpeModel::merge_heap(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> ids;
  std::vector<uint32_t> starts;
  if (!initial_symbols(word, ids, starts)) return;
  const size_t n = ids.size();
  // Doubly linked list over symbol slots; a merged-away slot gets ids[i] = -1.
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  // Min-heap of (rank << 32 | slot): lowest rank first, then leftmost slot (HF's Merge ordering).
  std::vector<uint64_t> heap;
  heap.reserve(n);
  auto key = [](int32_t rank, size_t slot) { return (static_cast<uint64_t>(rank) << 32) | slot; };
  for (size_t i = 0; i + 1 < n; ++i)
    if (const MergeTable::Entry* e = merges_.find(ids[i], ids[i + 1])) heap.push_back(key(e->rank, i));
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t top = heap.back();
    heap.pop_back();
    const auto rank = static_cast<int32_t>(top >> 32);
    const auto i = static_cast<size_t>(top & 0xFFFFFFFFu);
    if (ids[i] < 0 || next[i] < 0) continue;
    const auto j = static_cast<size_t>(next[i]);
    const MergeTable::Entry* e = merges_.find(ids[i], ids[j]);
    if (e == nullptr || e->rank != rank) continue;  // stale: the pair at slot i has changed
    ids[i] = e->merged;
    ids[j] = -1;
    next[i] = next[j];
    if (next[j] >= 0) prev[static_cast<size_t>(next[j])] = static_cast<int32_t>(i);
    if (prev[i] >= 0) {
      const auto p = static_cast<size_t>(prev[i]);
      if (const MergeTable::Entry* pe = merges_.find(ids[p], ids[i])) {
        heap.push_back(key(pe->rank, p));
        std::push_heap(heap.begin(), heap.end(), std::greater<>());
      }
    }
    if (next[i] >= 0) {
      if (const MergeTable::Entry* ne = merges_.find(ids[i], ids[static_cast<size_t>(next[i])])) {
        heap.push_back(key(ne->rank, i));
        std::push_heap(heap.begin(), heap.end(), std::greater<>());
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) out.push_back(ids[static_cast<size_t>(i)]);
}

void BpeModel::tokenize_uncached(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = bytes_to_id_.find(word);
    if (it != bytes_to_id_.end()) {
      out.push_back(it->second);
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
    merge_small(word, out);
  else
    merge_heap(word, out);
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() <= 2 || word.size() > kMaxCachedBytes) {
    tokenize_uncached(word, out);
    return;
  }
  const size_t h = TransparentStringHash{}(word);
  Shard& shard = shards_[(h >> 7) % kShards];
  {
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.map.find(word);
    if (it != shard.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  tokenize_uncached(word, out);
  std::lock_guard<std::mutex> lock(shard.mutex);
  if (shard.map.size() < kShardCapacity)
    shard.map.emplace(std::string(word), std::vector<int32_t>(out.begin() + static_cast<ptrdiff_t>(first), out.end()));
}

}  // namespace cotune::text
