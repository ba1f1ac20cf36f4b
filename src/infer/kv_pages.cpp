#include "infer/kv_pages.h"

#include "base/error.h"

namespace cotune::infer {

KvPageTable::KvPageTable(int64_t slots, int64_t max_pages, int64_t page, int64_t pool_pages)
    : slots_(slots), max_pages_(max_pages), page_(page), pool_(pool_pages) {
  if (slots <= 0 || max_pages <= 0 || page <= 0 || pool_pages <= 0)
    fail("KV page table: slots ({}), pages a slot ({}), page size ({}) and pool ({}) must be positive", slots,
         max_pages, page, pool_pages);
  if (pool_pages > (int64_t{1} << 31) - 1) fail("KV page table: a pool of {} pages does not fit i32 ids", pool_pages);
  table_.assign(static_cast<size_t>(slots * max_pages), -1);
  held_.assign(static_cast<size_t>(slots), 0);
  changed_.assign(static_cast<size_t>(slots), 1);
  for (int64_t p = pool_pages - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));
}

bool KvPageTable::grow(int32_t slot, int64_t positions) {
  if (slot < 0 || slot >= slots_) fail("KV page table: slot {} is not one of {}", slot, slots_);
  const int64_t need = pages_for(positions);
  if (need > max_pages_)
    fail("KV page table: {} positions need {} pages; a slot holds at most {} ({} positions)", positions, need,
         max_pages_, max_pages_ * page_);
  int64_t& held = held_[static_cast<size_t>(slot)];
  if (need <= held) return true;
  if (need - held > pages_free()) return false;
  for (; held < need; ++held) {
    table_[static_cast<size_t>(slot * max_pages_ + held)] = free_.back();
    free_.pop_back();
  }
  changed_[static_cast<size_t>(slot)] = 1;
  return true;
}

void KvPageTable::release(int32_t slot) {
  if (slot < 0 || slot >= slots_) fail("KV page table: slot {} is not one of {}", slot, slots_);
  int64_t& held = held_[static_cast<size_t>(slot)];
  if (held == 0) return;
  for (int64_t i = held - 1; i >= 0; --i) {
    int32_t& e = table_[static_cast<size_t>(slot * max_pages_ + i)];
    free_.push_back(e);
    e = -1;
  }
  held = 0;
  changed_[static_cast<size_t>(slot)] = 1;
}

std::vector<int32_t> KvPageTable::take_changed() {
  std::vector<int32_t> out;
  for (int64_t s = 0; s < slots_; ++s)
    if (changed_[static_cast<size_t>(s)]) {
      out.push_back(static_cast<int32_t>(s));
      changed_[static_cast<size_t>(s)] = 0;
    }
  return out;
}

}  // namespace cotune::infer
