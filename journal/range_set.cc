#include "journal/range_set.h"

#include <limits>

namespace scribefs {

void RangeSet::Add(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  uint64_t end = offset + length;
  if (end < offset) end = std::numeric_limits<uint64_t>::max();  // saturate
  // First range that could touch [offset, end): the one starting at or before offset.
  auto it = ranges_.upper_bound(offset);
  if (it != ranges_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= offset) it = prev;
  }
  while (it != ranges_.end() && it->first <= end) {
    offset = std::min(offset, it->first);
    end = std::max(end, it->second);
    it = ranges_.erase(it);
  }
  ranges_.emplace(offset, end);
  while (ranges_.size() > max_ranges_) JoinClosestPair();
}

void RangeSet::JoinClosestPair() {
  auto best = ranges_.begin();
  uint64_t best_gap = std::numeric_limits<uint64_t>::max();
  for (auto it = ranges_.begin(), next = std::next(it); next != ranges_.end(); ++it, ++next) {
    uint64_t gap = next->first - it->second;
    if (gap < best_gap) {
      best_gap = gap;
      best = it;
    }
  }
  auto next = std::next(best);
  best->second = next->second;
  ranges_.erase(next);
}

uint64_t RangeSet::bytes() const {
  uint64_t total = 0;
  for (const auto& [off, end] : ranges_) total += end - off;
  return total;
}

std::vector<ByteRange> RangeSet::ToVector() const {
  std::vector<ByteRange> out;
  out.reserve(ranges_.size());
  for (const auto& [off, end] : ranges_) out.push_back({off, end - off});
  return out;
}

std::vector<ByteRange> RangeSet::Take() {
  auto out = ToVector();
  ranges_.clear();
  return out;
}

}  // namespace scribefs
