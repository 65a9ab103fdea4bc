#include "fs/preserved_ranges.h"

#include <algorithm>

namespace scribefs {

void PreservedRanges::Insert(uint64_t off, uint64_t end) {
  if (off >= end) return;
  // The first interval that ends at or after off may touch [off, end).
  auto it = map_.upper_bound(off);
  if (it != map_.begin() && std::prev(it)->second >= off) --it;
  while (it != map_.end() && it->first <= end) {
    off = std::min(off, it->first);
    end = std::max(end, it->second);
    total_ -= it->second - it->first;
    it = map_.erase(it);
  }
  map_.emplace(off, end);
  total_ += end - off;
}

std::vector<PreservedRanges::Range> PreservedRanges::Missing(uint64_t off, uint64_t end) const {
  std::vector<Range> out;
  if (off >= end) return out;
  auto it = map_.upper_bound(off);
  if (it != map_.begin() && std::prev(it)->second > off) --it;
  uint64_t cur = off;
  for (; it != map_.end() && it->first < end && cur < end; ++it) {
    if (it->first > cur) out.emplace_back(cur, it->first);
    cur = std::max(cur, it->second);
  }
  if (cur < end) out.emplace_back(cur, end);
  return out;
}

std::vector<PreservedRanges::Range> PreservedRanges::Present(uint64_t off, uint64_t end) const {
  std::vector<Range> out;
  if (off >= end) return out;
  auto it = map_.upper_bound(off);
  if (it != map_.begin() && std::prev(it)->second > off) --it;
  for (; it != map_.end() && it->first < end; ++it) {
    uint64_t a = std::max(off, it->first), b = std::min(end, it->second);
    if (a < b) out.emplace_back(a, b);
  }
  return out;
}

}  // namespace scribefs
