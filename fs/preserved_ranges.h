// PreservedRanges: the byte ranges of one file that a copy-on-write capture
// has already preserved (CowSpool), as a set of disjoint half-open intervals
// [off, end). A value type; not thread-safe (CowSpool guards it).
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace scribefs {

class PreservedRanges {
 public:
  using Range = std::pair<uint64_t, uint64_t>;  // [first, second)

  // Adds [off, end) (merging with what touches it); empty ranges are ignored.
  void Insert(uint64_t off, uint64_t end);
  // The parts of [off, end) not yet in the set, in order, disjoint.
  std::vector<Range> Missing(uint64_t off, uint64_t end) const;
  // The parts of [off, end) that are in the set, in order.
  std::vector<Range> Present(uint64_t off, uint64_t end) const;
  // Bytes in the set.
  uint64_t total_bytes() const { return total_; }
  bool empty() const { return map_.empty(); }

 private:
  std::map<uint64_t, uint64_t> map_;  // start -> end; disjoint, non-adjacent
  uint64_t total_ = 0;
};

}  // namespace scribefs
