#include "history/replay.h"

#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <utility>

#include "uploader/object_layout.h"

namespace scribefs::history {
namespace {

// [first, last) of the entries strictly below `dir` ("dir/..."): they sort
// right after "dir/" and before "dir0" ('0' follows '/').
template <class TreeType>
auto Below(TreeType& tree, const std::string& dir) {
  auto first = tree.lower_bound(dir + "/");
  auto last = tree.lower_bound(dir + "0");
  return std::pair{first, last};
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

template <class Value>
void Attach(std::map<std::string, Value>& tree, const std::string& path,
            std::vector<std::pair<std::string, Value>> nodes) {
  for (auto& [rel, st] : nodes) tree[path + rel] = std::move(st);
}

void AppendInt(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

// Length first, so that no two field lists run together into the same bytes.
void AppendString(std::string& out, const std::string& s) {
  AppendInt(out, s.size());
  out += s;
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

StateDigest StateDigest::Of(const Entry& put) { return DigestOf(put.state); }

StateDigest DigestOf(const PathState& state) {
  std::string fields;
  fields.reserve(128 + 80 * state.chunks.size());
  AppendString(fields, state.type);
  AppendInt(fields, state.size);
  AppendInt(fields, state.mode);
  AppendInt(fields, state.uid);
  AppendInt(fields, state.gid);
  AppendInt(fields, static_cast<uint64_t>(state.mtime_ns));
  AppendString(fields, state.target);
  AppendInt(fields, state.rdev);
  AppendInt(fields, state.chunks.size());
  for (const ChunkRef& c : state.chunks) {
    AppendString(fields, c.sha256);
    AppendInt(fields, c.size);
  }
  StateDigest d;
  unsigned char full[SHA256_DIGEST_LENGTH];
  if (SHA256(reinterpret_cast<const unsigned char*>(fields.data()), fields.size(), full) !=
      nullptr) {
    std::copy_n(full, d.bytes.size(), d.bytes.begin());
    return d;
  }
  // OpenSSL could not hash (out of memory): a digest no other state has, so
  // that every entry for this path counts as a change (one written twice is
  // harmless; one dropped would be a hole in history).
  static std::atomic<uint64_t> unique{0};
  uint64_t n = ++unique;
  d.bytes.fill(0xff);
  std::copy_n(reinterpret_cast<const uint8_t*>(&n), sizeof n, d.bytes.begin());
  return d;
}

template <class Value>
void BasicReplayer<Value>::ApplyBase(const Segment& base) {
  tree_.clear();
  for (const Entry& e : base.entries) tree_[e.path] = Value::Of(e);
  applied_seq_ = base.header.last_seq;
  any_applied_ = true;
}

template <class Value>
bool BasicReplayer<Value>::Apply(const Entry& e) {
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

template <class Value>
void BasicReplayer<Value>::Put(const Entry& e) {
  if (e.state.type != kTypeDir) {
    auto [first, last] = Below(tree_, e.path);
    tree_.erase(first, last);
  }
  tree_[e.path] = Value::Of(e);
}

template <class Value>
void BasicReplayer<Value>::Remove(const std::string& path) {
  (void)Detach(tree_, path);
}

template <class Value>
void BasicReplayer<Value>::Rename(const Entry& e) {
  auto from = Detach(tree_, e.path);
  auto to = Detach(tree_, e.new_path);
  Attach(tree_, e.new_path, std::move(from));
  if (e.exchange) Attach(tree_, e.path, std::move(to));
}

template class BasicReplayer<StoredState>;
template class BasicReplayer<StateDigest>;

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
