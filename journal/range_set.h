// RangeSet: a set of byte ranges kept sorted, merged and bounded.
//
// Adding a range merges it with ranges it overlaps or touches. When more than
// max_ranges disjoint ranges would be kept, neighbours across the smallest
// gaps are joined (covering the gaps too) until max_ranges/2 remain: the set
// may grow to a superset of the bytes written, never a subset, which is the
// safe direction for a journal of dirty data. Not thread-safe.
#pragma once

#include <cstddef>
#include <map>
#include <vector>

#include "journal/record.h"

namespace scribefs {

class RangeSet {
 public:
  explicit RangeSet(size_t max_ranges = 256) : max_ranges_(max_ranges ? max_ranges : 1) {}

  void Add(uint64_t offset, uint64_t length);
  bool empty() const { return ranges_.empty(); }
  size_t size() const { return ranges_.size(); }
  uint64_t bytes() const;
  std::vector<ByteRange> ToVector() const;
  // Returns the ranges and leaves the set empty.
  std::vector<ByteRange> Take();
  void Clear() { ranges_.clear(); }

 private:
  void Coarsen();
  size_t max_ranges_;
  std::map<uint64_t, uint64_t> ranges_;  // offset -> end (exclusive)
};

}  // namespace scribefs
