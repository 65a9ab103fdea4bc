#include "history/digest_tree.h"

#include <algorithm>

namespace scribefs::history {

size_t DigestTree::LowerBound(std::string_view path) const {
  auto it = std::partition_point(base_.begin(), base_.end(),
                                 [&](const Slot& s) { return PathOf(s) < path; });
  return static_cast<size_t>(it - base_.begin());
}

const DigestTree::Slot* DigestTree::Locate(std::string_view path) const {
  size_t i = LowerBound(path);
  return i < base_.size() && PathOf(base_[i]) == path ? &base_[i] : nullptr;
}

std::optional<StateDigest> DigestTree::Find(std::string_view path) const {
  if (const Slot* s = Locate(path)) {
    if (Live(*s)) return s->digest;
    return std::nullopt;
  }
  if (auto it = changed_.find(path); it != changed_.end()) return it->second;
  return std::nullopt;
}

// Appends when `path` sorts after every path the tree holds and the buffer
// has room for it (offsets and lengths are 31 bits).
bool DigestTree::AppendToBase(std::string_view path, const StateDigest& digest) {
  if (!changed_.empty() || (!base_.empty() && !(PathOf(base_.back()) < path))) return false;
  if (paths_.size() + path.size() >= kErased) return false;
  base_.push_back(
      {static_cast<uint32_t>(paths_.size()), static_cast<uint32_t>(path.size()), digest});
  paths_.append(path);
  return true;
}

void DigestTree::Set(std::string_view path, const StateDigest& digest) {
  if (Slot* s = Locate(path)) {
    if (!Live(*s)) {
      s->length &= ~kErased;
      --dead_;
    }
    s->digest = digest;
    return;
  }
  if (AppendToBase(path, digest)) return;
  if (auto it = changed_.find(path); it != changed_.end()) {
    it->second = digest;
    return;
  }
  changed_.emplace(std::string(path), digest);
  CompactIfDue();
}

void DigestTree::Erase(std::string_view path) {
  if (Slot* s = Locate(path)) {
    if (Live(*s)) {
      s->length |= kErased;
      ++dead_;
      CompactIfDue();
    }
    return;
  }
  if (auto it = changed_.find(path); it != changed_.end()) changed_.erase(it);
}

void DigestTree::EraseBelow(std::string_view dir) {
  const std::string low = std::string(dir) + "/", high = std::string(dir) + "0";
  changed_.erase(changed_.lower_bound(low), changed_.lower_bound(high));
  for (size_t i = LowerBound(low), end = LowerBound(high); i < end; ++i) {
    if (Live(base_[i])) {
      base_[i].length |= kErased;
      ++dead_;
    }
  }
  CompactIfDue();
}

bool DigestTree::HoldsBelow(std::string_view dir) const {
  bool any = false;
  ForEachBelow(dir, [&](std::string_view, const StateDigest&) {
    any = true;
    return false;
  });
  return any;
}

void DigestTree::clear() {
  paths_ = {};
  base_ = {};
  changed_.clear();
  dead_ = 0;
  next_try_ = 0;
}

void DigestTree::CompactIfDue() {
  if (changed_.size() + dead_ >= std::max({min_compact_, base_.size() / 8, next_try_})) Compact();
}

void DigestTree::Compact() {
  size_t bytes = 0;
  for (const Slot& s : base_) {
    if (Live(s)) bytes += PathOf(s).size();
  }
  for (const auto& [path, digest] : changed_) bytes += path.size();
  if (bytes >= kErased) {
    // More path bytes than 31-bit offsets reach: the map keeps the rest, and
    // the next try waits for as many changes again (still O(1) amortized).
    next_try_ = changed_.size() + dead_ + std::max(min_compact_, size() / 8);
    return;
  }
  std::string paths;
  paths.reserve(bytes);
  std::vector<Slot> base;
  base.reserve(size());
  auto add = [&](std::string_view path, const StateDigest& digest) {
    base.push_back(
        {static_cast<uint32_t>(paths.size()), static_cast<uint32_t>(path.size()), digest});
    paths.append(path);
  };
  auto c = changed_.begin();
  for (const Slot& s : base_) {
    if (!Live(s)) continue;
    for (; c != changed_.end() && std::string_view(c->first) < PathOf(s); ++c)
      add(c->first, c->second);
    add(PathOf(s), s.digest);
  }
  for (; c != changed_.end(); ++c) add(c->first, c->second);
  paths_ = std::move(paths);
  base_ = std::move(base);
  changed_.clear();
  dead_ = 0;
  next_try_ = 0;
}

std::map<std::string, StateDigest> DigestTree::ToMap() const {
  std::map<std::string, StateDigest> out;
  for (const Slot& s : base_) {
    if (Live(s)) out.emplace(PathOf(s), s.digest);
  }
  for (const auto& [path, digest] : changed_) out.emplace(path, digest);
  return out;
}

}  // namespace scribefs::history
