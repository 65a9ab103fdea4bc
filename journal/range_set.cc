#include "journal/range_set.h"

#include <algorithm>
#include <limits>
#include <vector>

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
  if (ranges_.size() > max_ranges_) Coarsen();
}

// Joins neighbours across the smallest gaps until at most half the bound is
// left, in one pass: O(n log n) once per max_ranges/2 additions, instead of a
// scan on every addition past the bound.
void RangeSet::Coarsen() {
  size_t keep = std::max<size_t>(1, max_ranges_ / 2);
  if (ranges_.size() <= keep) return;
  std::vector<uint64_t> gaps;
  gaps.reserve(ranges_.size() - 1);
  for (auto it = ranges_.begin(), next = std::next(it); next != ranges_.end(); ++it, ++next)
    gaps.push_back(next->first - it->second);
  // Joining the (n - keep) smallest gaps leaves `keep` ranges.
  size_t joins = ranges_.size() - keep;
  std::nth_element(gaps.begin(), gaps.begin() + (joins - 1), gaps.end());
  uint64_t threshold = gaps[joins - 1];
  size_t below = 0;
  for (uint64_t g : gaps) below += g < threshold;
  size_t at_threshold_joins = joins - below;  // ties: join only as many as needed
  for (auto it = ranges_.begin(); std::next(it) != ranges_.end();) {
    auto next = std::next(it);
    uint64_t gap = next->first - it->second;
    bool join = gap < threshold || (gap == threshold && at_threshold_joins > 0);
    if (join) {
      if (gap == threshold) --at_threshold_joins;
      it->second = next->second;
      ranges_.erase(next);
    } else {
      it = next;
    }
  }
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
