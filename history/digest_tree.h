// DigestTree: path -> StateDigest, ordered by path, for the uploader's
// history recorder, which keeps one per path the target's history holds
// (uploader/history_recorder.h): a million stored paths are a million entries
// for as long as the daemon runs.
//
// A std::map spends ~96 bytes of node and malloc header on each 16-byte
// digest and a path of a dozen bytes, more with the fragments a load leaves
// (~130 measured at a million). Here most entries live in a sorted array of
// 24-byte slots whose paths sit end to end in one buffer (~36 bytes for such a
// path); what changed since the array was last built is in a small map beside
// it, and an erased slot is only marked. The array is rebuilt from both when
// the map and the marks reach an eighth of it, so the rebuilds cost O(1) per
// change, amortized. Paths in order are appended to the array directly: a
// base's load never touches the map.
//
// Paths order as std::string does (bytes, unsigned). Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "history/state_digest.h"

namespace scribefs::history {

class DigestTree {
 public:
  // min_compact: the fewest changes that rebuild the array (tests use few).
  explicit DigestTree(size_t min_compact = 4096) : min_compact_(min_compact) {}

  std::optional<StateDigest> Find(std::string_view path) const;
  bool Contains(std::string_view path) const { return Find(path).has_value(); }
  void Set(std::string_view path, const StateDigest& digest);
  void Erase(std::string_view path);
  // Everything strictly below `dir` ("dir/..."), not dir itself.
  void EraseBelow(std::string_view dir);
  bool HoldsBelow(std::string_view dir) const;
  // visit(path, digest) for each path strictly below `dir`, in path order,
  // while it returns true. The tree must not change during the walk.
  template <class Visit>
  void ForEachBelow(std::string_view dir, Visit&& visit) const;

  size_t size() const { return base_.size() - dead_ + changed_.size(); }
  bool empty() const { return size() == 0; }
  void clear();
  // Rebuilds the array now (after a load: no spare capacity left).
  void Compact();

  // How many live entries the array holds (the rest are in the map).
  size_t in_array() const { return base_.size() - dead_; }
  // Every entry, for tests and comparisons.
  std::map<std::string, StateDigest> ToMap() const;
  bool operator==(const DigestTree& other) const { return ToMap() == other.ToMap(); }

 private:
  struct Slot {
    uint32_t offset;  // of the path in paths_ (below kErased: see Compact)
    uint32_t length;  // the path's length; kErased set: erased
    StateDigest digest;
  };
  static constexpr uint32_t kErased = 1u << 31;

  std::string_view PathOf(const Slot& s) const {
    return {paths_.data() + s.offset, s.length & ~kErased};
  }
  static bool Live(const Slot& s) { return (s.length & kErased) == 0; }
  // The first slot whose path is not below `path` in order.
  size_t LowerBound(std::string_view path) const;
  // The slot holding `path` (live or erased), or nullptr.
  const Slot* Locate(std::string_view path) const;
  Slot* Locate(std::string_view path) {
    return const_cast<Slot*>(static_cast<const DigestTree*>(this)->Locate(path));
  }
  bool AppendToBase(std::string_view path, const StateDigest& digest);
  void CompactIfDue();

  std::string paths_;       // the array's paths, end to end
  std::vector<Slot> base_;  // sorted by path, each path once
  size_t dead_ = 0;         // erased slots in base_
  // Paths that base_ does not hold at all (a path base_ holds, live or erased,
  // is changed in its slot): the two never share a path.
  std::map<std::string, StateDigest, std::less<>> changed_;
  // A rebuild is due when changed_ + dead_ reach the largest of these.
  size_t min_compact_;
  size_t next_try_ = 0;  // after a rebuild that could not be done (Compact)
};

template <class Visit>
void DigestTree::ForEachBelow(std::string_view dir, Visit&& visit) const {
  const std::string low = std::string(dir) + "/", high = std::string(dir) + "0";  // '0' follows '/'
  auto c = changed_.lower_bound(low);
  const auto c_end = changed_.lower_bound(high);
  size_t b = LowerBound(low);
  const size_t b_end = LowerBound(high);
  while (true) {
    while (b < b_end && !Live(base_[b])) ++b;
    const bool from_base = b < b_end && (c == c_end || PathOf(base_[b]) < c->first);
    if (from_base) {
      if (!visit(PathOf(base_[b]), base_[b].digest)) return;
      ++b;
    } else if (c != c_end) {
      if (!visit(std::string_view(c->first), c->second)) return;
      ++c;
    } else {
      return;
    }
  }
}

}  // namespace scribefs::history
