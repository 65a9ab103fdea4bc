#include "history/replay.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "uploader/object_layout.h"

namespace scribefs::history {
namespace {

// The tree operations the replayer needs, on a std::map and on a DigestTree.

// [first, last) of the entries strictly below `dir` ("dir/..."): they sort
// right after "dir/" and before "dir0" ('0' follows '/').
template <class Value>
auto Below(std::map<std::string, Value>& tree, const std::string& dir) {
  auto first = tree.lower_bound(dir + "/");
  auto last = tree.lower_bound(dir + "0");
  return std::pair{first, last};
}

template <class Value>
void EraseBelow(std::map<std::string, Value>& tree, const std::string& dir) {
  auto [first, last] = Below(tree, dir);
  tree.erase(first, last);
}
void EraseBelow(DigestTree& tree, const std::string& dir) { tree.EraseBelow(dir); }

template <class Value>
void Set(std::map<std::string, Value>& tree, const std::string& path, Value value) {
  tree[path] = std::move(value);
}
void Set(DigestTree& tree, const std::string& path, const StateDigest& digest) {
  tree.Set(path, digest);
}

// Removes `path` and its subtree from `tree`, returning them keyed by their
// path relative to `path` ("" for `path` itself).
template <class Value>
std::vector<std::pair<std::string, Value>> Detach(std::map<std::string, Value>& tree,
                                                  const std::string& path) {
  std::vector<std::pair<std::string, Value>> out;
  if (auto it = tree.find(path); it != tree.end()) {
    out.emplace_back("", std::move(it->second));
    tree.erase(it);
  }
  auto [first, last] = Below(tree, path);
  for (auto it = first; it != last; ++it) {
    out.emplace_back(it->first.substr(path.size()), std::move(it->second));
  }
  tree.erase(first, last);
  return out;
}
std::vector<std::pair<std::string, StateDigest>> Detach(DigestTree& tree, const std::string& path) {
  std::vector<std::pair<std::string, StateDigest>> out;
  if (auto d = tree.Find(path)) {
    out.emplace_back("", *d);
    tree.Erase(path);
  }
  tree.ForEachBelow(path, [&](std::string_view p, const StateDigest& d) {
    out.emplace_back(std::string(p.substr(path.size())), d);
    return true;
  });
  tree.EraseBelow(path);
  return out;
}

// Removes `path` and its subtree.
template <class Value>
void EraseSubtree(std::map<std::string, Value>& tree, const std::string& path) {
  tree.erase(path);
  EraseBelow(tree, path);
}
void EraseSubtree(DigestTree& tree, const std::string& path) {
  tree.Erase(path);
  tree.EraseBelow(path);
}

template <class TreeT, class Value>
void Attach(TreeT& tree, const std::string& path,
            std::vector<std::pair<std::string, Value>> nodes) {
  for (auto& [rel, st] : nodes) Set(tree, path + rel, std::move(st));
}

}  // namespace

bool Instant::Covers(uint64_t entry_seq, int64_t entry_time_ns) const {
  switch (kind) {
    case Kind::kLatest:
      return true;
    case Kind::kSeq:
      return entry_seq <= seq;
    case Kind::kTime:
      return entry_time_ns <= time_ns;
  }
  return false;
}

template <class Value, class TreeT>
void BasicReplayer<Value, TreeT>::ApplyBase(const Segment& base) {
  tree_.clear();
  for (const Entry& e : base.entries) Set(tree_, e.path, Value::Of(e));
  applied_seq_ = base.header.last_seq;
  any_applied_ = true;
}

template <class Value, class TreeT>
bool BasicReplayer<Value, TreeT>::Apply(const Entry& e) {
  if (any_applied_ && e.seq <= applied_seq_) return false;
  switch (e.op) {
    case EntryOp::kPut:
      Put(e);
      break;
    case EntryOp::kDelete:
      Remove(e.path);
      break;
    case EntryOp::kRename:
      Rename(e);
      break;
  }
  applied_seq_ = e.seq;
  any_applied_ = true;
  return true;
}

template <class Value, class TreeT>
void BasicReplayer<Value, TreeT>::Put(const Entry& e) {
  if (e.state.type != kTypeDir) EraseBelow(tree_, e.path);
  Set(tree_, e.path, Value::Of(e));
}

template <class Value, class TreeT>
void BasicReplayer<Value, TreeT>::Remove(const std::string& path) {
  EraseSubtree(tree_, path);
}

template <class Value, class TreeT>
void BasicReplayer<Value, TreeT>::Rename(const Entry& e) {
  auto from = Detach(tree_, e.path);
  auto to = Detach(tree_, e.new_path);
  Attach(tree_, e.new_path, std::move(from));
  if (e.exchange) Attach(tree_, e.path, std::move(to));
}

template <class Value, class TreeT>
void BasicReplayer<Value, TreeT>::Compact() {
  if constexpr (std::is_same_v<TreeT, DigestTree>) tree_.Compact();
}

template class BasicReplayer<StoredState>;
template class BasicReplayer<StateDigest, DigestTree>;

Tree Replay(const std::vector<Segment>& segments, const Instant& at) {
  Replayer replayer;
  for (const Segment& segment : segments) {
    if (segment.header.kind == SegmentKind::kBase) {
      if (!at.Covers(segment.header.last_seq, segment.header.last_time_ns)) break;
      replayer.ApplyBase(segment);
      continue;
    }
    for (const Entry& e : segment.entries) {
      if (!at.Covers(e.seq, e.time_ns)) return std::move(replayer).TakeTree();
      replayer.Apply(e);
    }
  }
  return std::move(replayer).TakeTree();
}

std::vector<Version> HistoryOf(const std::vector<Segment>& segments, const std::string& path) {
  std::vector<Version> versions;
  Replayer replayer;
  std::optional<PathState> current;
  auto note = [&](uint64_t seq, int64_t time_ns) {
    auto it = replayer.tree().find(path);
    std::optional<PathState> now;
    if (it != replayer.tree().end()) now = it->second.state;
    if (now == current) return;
    if (versions.empty() && !now) return;  // absent before history held it: no version
    versions.push_back({seq, time_ns, now});
    current = std::move(now);
  };
  for (const Segment& segment : segments) {
    if (segment.header.kind == SegmentKind::kBase) {
      replayer.ApplyBase(segment);
      note(segment.header.last_seq, segment.header.last_time_ns);
      continue;
    }
    for (const Entry& e : segment.entries) {
      if (replayer.Apply(e)) note(e.seq, e.time_ns);
    }
  }
  return versions;
}

Segment MakeBase(const Tree& tree, uint64_t last_seq, int64_t time_ns) {
  Segment s;
  s.header.kind = SegmentKind::kBase;
  s.header.level = 0;
  s.header.last_seq = last_seq;
  s.header.first_seq = last_seq;
  s.header.last_time_ns = time_ns;
  s.header.first_time_ns = time_ns;
  for (const auto& [path, st] : tree) {  // a std::map: by path, as a base must be
    Entry e;
    e.seq = st.seq;
    e.time_ns = st.time_ns;
    e.op = EntryOp::kPut;
    e.path = path;
    e.state = st.state;
    s.header.first_seq = std::min(s.header.first_seq, st.seq);
    s.header.first_time_ns = std::min(s.header.first_time_ns, st.time_ns);
    s.entries.push_back(std::move(e));
  }
  s.header.count = s.entries.size();
  return s;
}

std::map<std::string, PathState> States(const Tree& tree) {
  std::map<std::string, PathState> out;
  for (const auto& [path, st] : tree) out.emplace(path, st.state);
  return out;
}

}  // namespace scribefs::history
