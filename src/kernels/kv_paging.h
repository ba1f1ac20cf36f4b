// Where (slot, position) lives in a KV cache, for the CPU and CUDA decode kernels alike. Paged, the cache is a pool
// of pages [P, page, KV, D] and `table` [slots, max_pages] names each slot's pages in order (kernels/decode_ops.h
// KvPages); contiguous (table null), the cache is [S, page, KV, D] with page = positions a slot.
#pragma once
#include <cstdint>

#include "base/half.h"

namespace cotune::kernels {

struct KvPaging {
  const int32_t* table = nullptr;
  int64_t max_pages = 0;
  int64_t page = 0;
};

// The cache row of (slot, pos): its first element is at row * KV * D.
COTUNE_HD inline int64_t kv_row(const KvPaging& pg, int32_t slot, int64_t pos) {
  if (!pg.table) return static_cast<int64_t>(slot) * pg.page + pos;
  return static_cast<int64_t>(pg.table[static_cast<int64_t>(slot) * pg.max_pages + pos / pg.page]) * pg.page +
         pos % pg.page;
}

}  // namespace cotune::kernels
