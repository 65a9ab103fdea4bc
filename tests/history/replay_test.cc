// Replay: the tree at an instant. Hand-written cases for each rule, then a
// property test: a model filesystem (a real tree of nodes, unlike replay's
// flat map) driven by random operations emits entries; replay at every
// instant must give the model's tree at that instant.
#include "history/replay.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <random>

#include "tests/history/history_test_util.h"

namespace scribefs::history {
namespace {

using namespace history::testing;  // NOLINT: the builders

std::vector<std::string> Paths(const Tree& tree) {
  std::vector<std::string> out;
  for (const auto& [p, st] : tree) out.push_back(p);
  return out;
}

using P = std::vector<std::string>;

TEST(ReplayTest, PutsReplaceState) {
  Segment s = Delta({FilePut(1, "a", "one"), FilePut(2, "b", "x"), FilePut(3, "a", "three")});
  Tree t = Replay({s});
  EXPECT_EQ(Paths(t), (P{"a", "b"}));
  EXPECT_EQ(t["a"].state, FilePut(3, "a", "three").state);
  EXPECT_EQ(t["a"].seq, 3u);
  // A put under a parent history does not hold implies nothing about it.
  EXPECT_EQ(Paths(Replay({Delta({FilePut(1, "x/y/z", "deep")})})), (P{"x/y/z"}));
}

TEST(ReplayTest, DeleteOfADirectoryRemovesTheSubtreeOnly) {
  Segment s = Delta({DirPut(1, "d"), FilePut(2, "d/f", "1"), DirPut(3, "d/e"),
                     FilePut(4, "d/e/g", "2"), FilePut(5, "d.txt", "3"), FilePut(6, "d0", "4"),
                     FilePut(7, "dd/f", "5"), Delete(8, "d")});
  EXPECT_EQ(Paths(Replay({s})), (P{"d.txt", "d0", "dd/f"}));
  // Deleting what is not there changes nothing.
  EXPECT_EQ(Paths(Replay({Delta({FilePut(1, "a", "x"), Delete(2, "b")})})), (P{"a"}));
}

TEST(ReplayTest, RenameOfADirectoryMovesItsChildren) {
  Segment s = Delta({DirPut(1, "src"), FilePut(2, "src/a", "A"), DirPut(3, "src/sub"),
                     FilePut(4, "src/sub/b", "B"), FilePut(5, "src2", "not moved"),
                     Rename(6, "src", "dst/moved")});
  Tree t = Replay({s});
  EXPECT_EQ(Paths(t), (P{"dst/moved", "dst/moved/a", "dst/moved/sub", "dst/moved/sub/b", "src2"}));
  EXPECT_EQ(t["dst/moved/sub/b"].state, FilePut(4, "x", "B").state);
  EXPECT_EQ(t["dst/moved/sub/b"].seq, 4u);  // when its content was stored
}

TEST(ReplayTest, RenameOverAnExistingFileReplacesIt) {
  Segment s = Delta({FilePut(1, "a", "new"), FilePut(2, "b", "old"), Rename(3, "a", "b")});
  Tree t = Replay({s});
  EXPECT_EQ(Paths(t), (P{"b"}));
  EXPECT_EQ(t["b"].state, FilePut(1, "a", "new").state);
  // A directory renamed over an (empty, per POSIX) directory replaces it too,
  // and whatever history still held below the destination goes with it.
  Segment d = Delta({DirPut(1, "x"), FilePut(2, "x/f", "f"), DirPut(3, "y"),
                     FilePut(4, "y/stale", "s"), Rename(5, "x", "y")});
  EXPECT_EQ(Paths(Replay({d})), (P{"y", "y/f"}));
}

TEST(ReplayTest, ExchangeSwapsSubtrees) {
  Segment s = Delta({DirPut(1, "a"), FilePut(2, "a/1", "A"), FilePut(3, "b", "B"),
                     Rename(4, "a", "b", /*exchange=*/true)});
  Tree t = Replay({s});
  EXPECT_EQ(Paths(t), (P{"a", "b", "b/1"}));
  EXPECT_EQ(t["a"].state, FilePut(3, "b", "B").state);
  EXPECT_EQ(t["b"].state.type, "dir");
}

TEST(ReplayTest, PutOfAFileOverADirectoryDropsWhatWasBelow) {
  Segment s = Delta({DirPut(1, "d"), FilePut(2, "d/f", "x"), FilePut(3, "d", "now a file")});
  EXPECT_EQ(Paths(Replay({s})), (P{"d"}));
}

TEST(ReplayTest, BaseInTheMiddleReplacesEverythingBefore) {
  Segment d1 = Delta({FilePut(1, "a", "1"), FilePut(2, "gone", "2")});
  // The base says: at seq 5, only "a" (stored at 1) and "b" (stored at 4).
  Tree at5;
  at5["a"] = {FilePut(1, "a", "1").state, 1, 1000};
  at5["b"] = {FilePut(4, "b", "4").state, 4, 4000};
  Segment base = MakeBase(at5, 5, 5000);
  EXPECT_EQ(base.header.first_seq, 1u);
  Segment d2 = Delta({FilePut(4, "b", "4"), Delete(5, "gone"), FilePut(6, "c", "6")});
  std::vector<Segment> all = {d1, base, d2};
  EXPECT_EQ(Paths(Replay(all)), (P{"a", "b", "c"}));
  EXPECT_EQ(Paths(Replay(all, Instant::AtSeq(2))), (P{"a", "gone"}));  // before the base
  EXPECT_EQ(Paths(Replay(all, Instant::AtSeq(5))), (P{"a", "b"}));
  // From the base alone (what LoadTimeline gives), the same.
  EXPECT_EQ(Paths(Replay({base, d2})), (P{"a", "b", "c"}));
  EXPECT_EQ(Paths(Replay({base, d2}, Instant::AtSeq(5))), (P{"a", "b"}));
}

TEST(ReplayTest, SeqAndTimeInstants) {
  Segment s = Delta({FilePut(10, "a", "1", 100), FilePut(20, "b", "2", 200),
                     FilePut(30, "c", "3", 200), FilePut(40, "d", "4", 300)});
  EXPECT_TRUE(Replay({s}, Instant::AtSeq(9)).empty());
  EXPECT_EQ(Paths(Replay({s}, Instant::AtSeq(10))), (P{"a"}));
  EXPECT_EQ(Paths(Replay({s}, Instant::AtSeq(29))), (P{"a", "b"}));
  EXPECT_TRUE(Replay({s}, Instant::AtTime(99)).empty());
  EXPECT_EQ(Paths(Replay({s}, Instant::AtTime(100))), (P{"a"}));
  EXPECT_EQ(Paths(Replay({s}, Instant::AtTime(250))), (P{"a", "b", "c"}));
  EXPECT_EQ(Paths(Replay({s}, Instant::AtTime(1000))), (P{"a", "b", "c", "d"}));
  // The clock stepped back: time covers the prefix up to the first later entry.
  Segment back =
      Delta({FilePut(1, "a", "1", 500), FilePut(2, "b", "2", 900), FilePut(3, "c", "3", 600)});
  EXPECT_EQ(Paths(Replay({back}, Instant::AtTime(700))), (P{"a"}));
}

TEST(ReplayTest, OverlappingSegmentsApplyEachSeqOnce) {
  Segment l0 = Delta({FilePut(1, "a", "1"), FilePut(2, "b", "2")});
  Segment l0b = Delta({Rename(3, "a", "c")});
  Segment merged = Delta({FilePut(1, "a", "1"), FilePut(2, "b", "2"), Rename(3, "a", "c")}, 1);
  EXPECT_EQ(Paths(Replay({merged, l0, l0b})), (P{"b", "c"}));
}

TEST(ReplayTest, HistoryOfAPath) {
  Entry again = FilePut(3, "f", "v2");  // the same state stored again: no new version
  again.seq = 4;
  again.time_ns = 4000;
  Segment s = Delta({FilePut(1, "f", "v1"), FilePut(2, "other", "x"), FilePut(3, "f", "v2"), again,
                     Rename(5, "f", "g"), FilePut(6, "f", "v3"), DirPut(7, "d"),
                     Rename(8, "f", "d/f"), Delete(9, "d")});
  auto f = HistoryOf({s}, "f");
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[0].seq, 1u);
  EXPECT_EQ(f[1].seq, 3u);
  EXPECT_FALSE(f[2].state.has_value());  // renamed away at 5
  EXPECT_EQ(f[2].seq, 5u);
  EXPECT_EQ(*f[3].state, FilePut(6, "f", "v3").state);
  EXPECT_FALSE(f[4].state.has_value());
  auto df = HistoryOf({s}, "d/f");
  ASSERT_EQ(df.size(), 2u);  // arrives by rename at 8, gone with its directory at 9
  EXPECT_EQ(df[0].seq, 8u);
  EXPECT_EQ(df[1].seq, 9u);
  EXPECT_TRUE(HistoryOf({s}, "never").empty());
}

// ---- the property test -------------------------------------------------------------

// A filesystem as a tree of nodes.
struct Node {
  StoredState st;
  std::map<std::string, std::unique_ptr<Node>> kids;
};

class Model {
 public:
  explicit Model(uint32_t seed) : rng_(seed) { root_.st.state.type = "dir"; }

  // One random operation; false when the one drawn does not apply now.
  bool Step();
  // The states of the whole tree.
  std::map<std::string, PathState> Snapshot() const {
    std::map<std::string, PathState> out;
    Flatten(root_, "", &out);
    return out;
  }
  Tree StoredTree() const {
    Tree out;
    FlattenStored(root_, "", &out);
    return out;
  }
  const std::vector<Entry>& log() const { return log_; }
  uint64_t seq() const { return seq_; }
  int64_t time() const { return time_; }

 private:
  size_t Pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  void Tick() {
    seq_ += 1 + Pick(3);                     // gaps: journal records with nothing to store
    time_ += static_cast<int64_t>(Pick(3));  // sometimes the same time
  }
  void Emit(Entry e) { log_.push_back(std::move(e)); }
  // All nodes as (path, node), dirs first when `dirs_only`.
  void Collect(Node& n, const std::string& path, bool dirs_only,
               std::vector<std::pair<std::string, Node*>>* out) {
    for (auto& [name, kid] : n.kids) {
      std::string p = path.empty() ? name : path + "/" + name;
      if (!dirs_only || kid->st.state.type == "dir") out->emplace_back(p, kid.get());
      Collect(*kid, p, dirs_only, out);
    }
  }
  std::vector<std::pair<std::string, Node*>> All(bool dirs_only) {
    std::vector<std::pair<std::string, Node*>> out;
    Collect(root_, "", dirs_only, &out);
    return out;
  }
  std::pair<std::string, Node*> RandomDir() {
    auto dirs = All(true);
    size_t i = Pick(dirs.size() + 1);
    return i == dirs.size() ? std::make_pair(std::string(), &root_) : dirs[i];
  }
  Node* ParentOf(const std::string& path) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) return &root_;
    Node* n = &root_;
    size_t start = 0;
    while (start < slash) {
      size_t end = path.find('/', start);
      if (end > slash) end = slash;
      n = n->kids.at(path.substr(start, end - start)).get();
      start = end + 1;
    }
    return n;
  }
  static std::string Name(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
  }
  static std::string Join(const std::string& dir, const std::string& name) {
    return dir.empty() ? name : dir + "/" + name;
  }
  void PutNode(const std::string& path, Entry e) {
    Node* parent = ParentOf(path);
    auto& slot = parent->kids[Name(path)];
    if (!slot) slot = std::make_unique<Node>();
    slot->st = {e.state, e.seq, e.time_ns};
    Emit(std::move(e));
  }
  bool Rename(bool exchange);
  static void Flatten(const Node& n, const std::string& path,
                      std::map<std::string, PathState>* out) {
    for (const auto& [name, kid] : n.kids) {
      std::string p = Join(path, name);
      (*out)[p] = kid->st.state;
      Flatten(*kid, p, out);
    }
  }
  static void FlattenStored(const Node& n, const std::string& path, Tree* out) {
    for (const auto& [name, kid] : n.kids) {
      std::string p = Join(path, name);
      (*out)[p] = kid->st;
      FlattenStored(*kid, p, out);
    }
  }

  std::mt19937 rng_;
  Node root_;
  uint64_t seq_ = 0;
  int64_t time_ = 1000;
  std::vector<Entry> log_;
  int names_ = 0;
};

bool Model::Rename(bool exchange) {
  auto all = All(false);
  if (all.empty()) return false;
  auto [src, src_node] = all[Pick(all.size())];
  std::string dst;
  if (exchange || Pick(2) == 0) {  // onto an existing entry
    dst = all[Pick(all.size())].first;
  } else {
    dst = Join(RandomDir().first, "n" + std::to_string(names_++));
  }
  auto below = [](const std::string& p, const std::string& d) {
    return p.size() > d.size() && p.starts_with(d) && p[d.size()] == '/';
  };
  if (dst == src || below(dst, src) || below(src, dst)) return false;
  Node* dst_parent = ParentOf(dst);
  auto it = dst_parent->kids.find(Name(dst));
  const bool dst_exists = it != dst_parent->kids.end();
  if (exchange && !dst_exists) return false;
  if (!exchange && dst_exists) {  // POSIX: file over non-dir, dir over an empty dir
    const bool src_dir = src_node->st.state.type == "dir";
    const bool dst_dir = it->second->st.state.type == "dir";
    if (src_dir != dst_dir || (dst_dir && !it->second->kids.empty())) return false;
  }
  Tick();
  Node* src_parent = ParentOf(src);
  std::unique_ptr<Node> moving = std::move(src_parent->kids[Name(src)]);
  src_parent->kids.erase(Name(src));
  dst_parent = ParentOf(dst);  // still valid: dst is not below src
  std::unique_ptr<Node> displaced = std::move(dst_parent->kids[Name(dst)]);
  dst_parent->kids[Name(dst)] = std::move(moving);
  if (exchange) ParentOf(src)->kids[Name(src)] = std::move(displaced);
  Emit(history::testing::Rename(seq_, src, dst, exchange, time_));
  return true;
}

bool Model::Step() {
  const std::string content = "c" + std::to_string(Pick(5));  // repeats: equal chunks
  switch (Pick(10)) {
    case 0:
    case 1: {  // create a file
      std::string path = Join(RandomDir().first, "f" + std::to_string(names_++));
      Tick();
      PutNode(path, FilePut(seq_, path, content, time_));
      return true;
    }
    case 2: {  // overwrite or chmod a file
      auto all = All(false);
      if (all.empty()) return false;
      auto [path, node] = all[Pick(all.size())];
      if (node->st.state.type != "file") return false;
      Tick();
      Entry e = FilePut(seq_, path, content, time_);
      e.state.mode = S_IFREG | (Pick(2) ? 0600 : 0644);
      PutNode(path, std::move(e));
      return true;
    }
    case 3: {  // mkdir
      std::string path = Join(RandomDir().first, "d" + std::to_string(names_++));
      Tick();
      PutNode(path, DirPut(seq_, path, time_));
      return true;
    }
    case 4: {  // symlink
      std::string path = Join(RandomDir().first, "l" + std::to_string(names_++));
      Tick();
      Entry e = SymlinkPut(seq_, path, "target" + content);
      e.time_ns = time_;
      PutNode(path, std::move(e));
      return true;
    }
    case 5:
    case 6:
      return Rename(false);
    case 7:
      return Rename(true);
    default: {  // unlink, rmdir, or rm -r in one delete
      auto all = All(false);
      if (all.empty()) return false;
      auto [path, node] = all[Pick(all.size())];
      Tick();
      ParentOf(path)->kids.erase(Name(path));
      Emit(Delete(seq_, path, time_));
      return true;
    }
  }
}

TEST(ReplayPropertyTest, ReplayAtEveryInstantEqualsTheModel) {
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Model model(seed);
    std::map<uint64_t, std::map<std::string, PathState>> at_seq;  // after each entry
    std::map<int64_t, std::map<std::string, PathState>> at_time;  // after the last one at T
    std::vector<Segment> segments;
    std::vector<Entry> pending;
    std::mt19937 rng(seed * 7919);
    uint64_t segment_first = 1;
    for (int step = 0; step < 600; ++step) {
      if (!model.Step()) continue;
      pending.push_back(model.log().back());
      at_seq[model.seq()] = model.Snapshot();
      at_time[model.time()] = at_seq[model.seq()];
      if (rng() % 9 == 0) {  // close a delta
        segments.push_back(MakeDelta(std::move(pending), 0, segment_first, model.seq()));
        pending.clear();
        segment_first = model.seq() + 1;
        if (rng() % 4 == 0)
          segments.push_back(MakeBase(model.StoredTree(), model.seq(), model.time()));
      }
    }
    if (!pending.empty()) {
      segments.push_back(MakeDelta(std::move(pending), 0, segment_first, model.seq()));
    }
    for (const Segment& s : segments) ASSERT_TRUE(ValidateSegment(s).ok());
    ASSERT_GT(at_seq.size(), 300u);

    std::map<std::string, PathState> empty;
    for (uint64_t s = 0; s <= model.seq(); ++s) {
      auto it = at_seq.upper_bound(s);  // the last snapshot at or before s
      const auto& want = it == at_seq.begin() ? empty : std::prev(it)->second;
      ASSERT_EQ(States(Replay(segments, Instant::AtSeq(s))), want) << "seq " << s;
    }
    for (int64_t t = 999; t <= model.time(); ++t) {
      auto it = at_time.upper_bound(t);
      const auto& want = it == at_time.begin() ? empty : std::prev(it)->second;
      ASSERT_EQ(States(Replay(segments, Instant::AtTime(t))), want) << "time " << t;
    }
    EXPECT_EQ(States(Replay(segments)), model.Snapshot());
    // From the last base on (as LoadTimeline gives them): the same latest tree.
    auto base = std::find_if(segments.rbegin(), segments.rend(),
                             [](const Segment& s) { return s.header.kind == SegmentKind::kBase; });
    if (base != segments.rend()) {
      std::vector<Segment> from(std::prev(base.base()), segments.end());
      EXPECT_EQ(States(Replay(from)), model.Snapshot());
    }
    // The uploader's digest tree over the same segments: the same paths,
    // each with the digest of the model's state.
    DigestReplayer digests;
    for (const Segment& seg : segments) {
      if (seg.header.kind == SegmentKind::kBase) {
        digests.ApplyBase(seg);
        continue;
      }
      for (const Entry& e : seg.entries) digests.Apply(e);
    }
    std::map<std::string, StateDigest> want;
    for (const auto& [path, state] : model.Snapshot()) want.emplace(path, DigestOf(state));
    EXPECT_EQ(digests.tree().ToMap(), want);
  }
}

// Equal states have equal digests; a change of any one field changes it.
TEST(StateDigestTest, EveryFieldCounts) {
  PathState base = FilePut(1, "a", "content").state;
  base.chunks.push_back({std::string(64, 'b'), 7});
  const StateDigest d = DigestOf(base);
  EXPECT_EQ(DigestOf(PathState(base)), d);
  std::vector<std::pair<std::string, std::function<void(PathState&)>>> changes = {
      {"type", [](PathState& s) { s.type = "symlink"; }},
      {"size", [](PathState& s) { s.size++; }},
      {"mode", [](PathState& s) { s.mode ^= 0100; }},
      {"uid", [](PathState& s) { s.uid++; }},
      {"gid", [](PathState& s) { s.gid++; }},
      {"mtime", [](PathState& s) { s.mtime_ns++; }},
      {"target", [](PathState& s) { s.target = "t"; }},
      {"rdev", [](PathState& s) { s.rdev++; }},
      {"chunk name", [](PathState& s) { s.chunks.back().sha256[0] = 'c'; }},
      {"chunk size", [](PathState& s) { s.chunks.back().size++; }},
      {"chunk count", [](PathState& s) { s.chunks.pop_back(); }},
      // The same bytes split otherwise between two fields.
      {"field bounds",
       [](PathState& s) {
         s.type = "fil";
         s.target = "e";
       }},
  };
  for (auto& [what, change] : changes) {
    PathState other = base;
    change(other);
    EXPECT_NE(DigestOf(other), d) << what;
  }
}

}  // namespace
}  // namespace scribefs::history
