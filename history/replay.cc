#include "history/replay.h"

#include <algorithm>
#include <utility>

#include "uploader/object_layout.h"

namespace scribefs::history {
namespace {

// [first, last) of the entries strictly below `dir` ("dir/..."): they sort
// right after "dir/" and before "dir0" ('0' follows '/').
std::pair<Tree::iterator, Tree::iterator> Below(Tree& tree, const std::string& dir) {
  auto first = tree.lower_bound(dir + "/");
  auto last = tree.lower_bound(dir + "0");
  return {first, last};
}

// Removes `path` and its subtree from `tree`, returning them keyed by their
// path relative to `path` ("" for `path` itself).
std::vector<std::pair<std::string, StoredState>> Detach(Tree& tree, const std::string& path) {
  std::vector<std::pair<std::string, StoredState>> out;
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

void Attach(Tree& tree, const std::string& path,
            std::vector<std::pair<std::string, StoredState>> nodes) {
  for (auto& [rel, st] : nodes) tree[path + rel] = std::move(st);
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

void Replayer::ApplyBase(const Segment& base) {
  tree_.clear();
  for (const Entry& e : base.entries) tree_[e.path] = {e.state, e.seq, e.time_ns};
  applied_seq_ = base.header.last_seq;
  any_applied_ = true;
}

bool Replayer::Apply(const Entry& e) {
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

void Replayer::Put(const Entry& e) {
  if (e.state.type != kTypeDir) {
    auto [first, last] = Below(tree_, e.path);
    tree_.erase(first, last);
  }
  tree_[e.path] = {e.state, e.seq, e.time_ns};
}

void Replayer::Remove(const std::string& path) { (void)Detach(tree_, path); }

void Replayer::Rename(const Entry& e) {
  auto from = Detach(tree_, e.path);
  auto to = Detach(tree_, e.new_path);
  Attach(tree_, e.new_path, std::move(from));
  if (e.exchange) Attach(tree_, e.path, std::move(to));
}

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
