// The bookkeeping of a paged KV cache (kernels/decode_ops.h KvPages): a pool of pages of `page` positions, and a
// block table [slots, max_pages] that lists each slot's pages in order. Slots take pages as they grow and give
// them all back on release; a slot that cannot grow (the pool is empty) is refused, nothing half-done.
//
//   KvPageTable t(/*slots*/ 3, /*max_pages*/ 4, /*page*/ 16, /*pool*/ 6);
//   t.grow(0, 20);     // slot 0 holds positions [0, 20): 2 pages
//   t.release(0);      // both back in the pool
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace cotune::infer {

class KvPageTable {
 public:
  KvPageTable() = default;
  KvPageTable(int64_t slots, int64_t max_pages, int64_t page, int64_t pool_pages);

  // Makes `slot` hold pages for positions [0, positions): takes the missing pages from the pool. False, changing
  // nothing, when the pool lacks them; throws when positions exceeds max_pages * page.
  bool grow(int32_t slot, int64_t positions);
  void release(int32_t slot);  // the slot's pages go back to the pool

  int64_t pages_for(int64_t positions) const { return (positions + page_ - 1) / page_; }
  int64_t pages_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t pages_total() const { return pool_; }
  int64_t pages_held(int32_t slot) const { return held_[static_cast<size_t>(slot)]; }
  int64_t page() const { return page_; }
  int64_t max_pages() const { return max_pages_; }
  int64_t slots() const { return slots_; }
  // [slots, max_pages]: page ids, -1 where a slot holds none.
  const std::vector<int32_t>& table() const { return table_; }
  // The slots whose table rows changed since the last call (to copy to the device), in increasing order.
  std::vector<int32_t> take_changed();

 private:
  int64_t slots_ = 0, max_pages_ = 0, page_ = 1, pool_ = 0;
  std::vector<int32_t> table_;
  std::vector<int64_t> held_;
  std::vector<int32_t> free_;  // a stack: the most recently freed page is reused first
  std::vector<uint8_t> changed_;
};

}  // namespace cotune::infer
