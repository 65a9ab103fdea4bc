// A history in a real file:// target for the prune tests: real chunks
// (PutChunks of real files), entries at chosen times before now, segments of
// a few entries, and the checks that a point restores exactly.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "history/history_store.h"
#include "history/retention.h"
#include "tests/history/history_test_util.h"
#include "tests/uploader/test_util.h"
#include "uploader/local_store.h"

namespace scribefs::history::testing {

inline int64_t NowNs() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSecond + ts.tv_nsec;
}

class PruneHistory {
 public:
  // The target is DIR/target; files to chunk are written under DIR/data.
  explicit PruneHistory(const std::string& dir) : dir_(dir) {
    std::filesystem::create_directories(dir + "/data");
    auto store = LocalStore::Open(dir + "/target");
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    MakeHistory();
  }
  // The same over another store (S3); DIR still holds the files to chunk.
  PruneHistory(const std::string& dir, std::unique_ptr<ObjectStore> store)
      : dir_(dir), store_(std::move(store)) {
    std::filesystem::create_directories(dir + "/data");
    MakeHistory();
  }
  std::string target_dir() const { return dir_ + "/target"; }
  std::string url() const { return "file://" + target_dir(); }
  ObjectStore& store() { return *store_; }
  HistoryStore& history() { return *history_; }
  const std::vector<Segment>& truth() const { return truth_; }

  // Stores `n` entries, entry i (seq i+1) at now - (n - i) * step + step / 3,
  // `per_segment` entries per level-0 delta; random puts, deletes, renames
  // and directories over a few paths (replay does not need them to be
  // consistent). Then compacts level 0 once if asked (12 entries a segment).
  void Build(int n, int64_t step, int per_segment, bool compact, uint32_t seed = 1) {
    std::mt19937 rng(seed);
    // "now" a minute ahead: the chunks uploaded below are older than it, as
    // they would be by the time a prune runs.
    now_ = NowNs() + 60 * kNsPerSecond;
    const char* const kPaths[] = {"d/f0", "d/f1", "d/f2", "f3", "f4", "e/f5", "e/f6", "f7"};
    std::vector<Entry> pending;
    for (int i = 0; i < n; ++i) {
      const uint64_t seq = ++seq_;
      const int64_t t = now_ - (n - i) * step + step / 3;
      const std::string path = kPaths[rng() % 8];
      const unsigned roll = rng() % 10;
      Entry e;
      if (roll < 7) {
        e = StoredFile(seq, path, testing_util::Blob(1 + rng() % 12000, rng()), t);
      } else if (roll == 7) {
        e = Delete(seq, path, t);
      } else if (roll == 8) {
        e = Rename(seq, path, kPaths[rng() % 8], false, t);
        if (e.new_path == e.path) e = Delete(seq, path, t);
      } else {
        e = DirPut(seq, path[0] == 'd' ? "d" : "e", t);
      }
      states_.push_back({seq, t});
      pending.push_back(std::move(e));
      if (static_cast<int>(pending.size()) == per_segment || i + 1 == n) {
        Segment s = Delta(std::move(pending));
        pending.clear();
        auto ref = history_->AppendSegment(s);
        EXPECT_TRUE(ref.ok()) << ref.status().ToString();
        truth_.push_back(std::move(s));
      }
    }
    if (compact) {
      auto c = history_->Compact(0, CompactOptions{.max_entries = 12});
      EXPECT_TRUE(c.ok()) << c.status().ToString();
    }
  }

  // A put of `content` whose chunks are really stored.
  Entry StoredFile(uint64_t seq, const std::string& path, const std::string& content, int64_t t) {
    Entry e = FilePut(seq, path, "", t);
    UniqueFd fd = testing_util::WriteFile(dir_ + "/data/f" + std::to_string(seq), content);
    auto chunks = history_->PutChunks(fd.get(), content.size());
    EXPECT_TRUE(chunks.ok()) << chunks.status().ToString();
    if (chunks.ok()) e.state.chunks = *chunks;
    e.state.size = content.size();
    return e;
  }

  int64_t now() const { return now_; }
  const std::vector<StatePoint>& states() const { return states_; }

  // LoadTimeline + Replay at `at` equals the truth, and every file of the
  // tree restores (RestoreFile checks every chunk's size and SHA-256).
  void ExpectRestores(const Instant& at, const std::string& what) {
    auto tl = history_->LoadTimeline(at);
    ASSERT_TRUE(tl.ok()) << what << ": " << tl.status().ToString();
    Tree tree = Replay(*tl, at);
    EXPECT_EQ(States(tree), States(Replay(truth_, at))) << what;
    for (const auto& [path, stored] : tree) {
      if (stored.state.type != "file") continue;
      const std::string out = dir_ + "/restored";
      UniqueFd fd(open(out.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      ASSERT_TRUE(fd.valid());
      StoreStatus st = history_->RestoreFile(stored.state, fd.get());
      EXPECT_TRUE(st.ok()) << what << " " << path << ": " << st.ToString();
      struct stat sb {};
      fstat(fd.get(), &sb);
      EXPECT_EQ(static_cast<uint64_t>(sb.st_size), stored.state.size) << what << " " << path;
    }
  }

  // Every point the decision keeps, and every state in the window, restores
  // exactly, by seq and by time; so does the latest state.
  void ExpectRetainedRestore(const RetentionDecision& d) {
    for (const KeptPoint& k : d.older) {
      ExpectRestores(Instant::AtSeq(k.state.seq), "kept seq " + std::to_string(k.state.seq));
      ExpectRestores(Instant::AtTime(k.state.time_ns),
                     "kept time of " + std::to_string(k.state.seq));
      // Until the next entry, the tree is the point's: a restore by time
      // just before it must not meet the hole the deleted deltas left.
      auto next = std::find_if(states_.begin(), states_.end(),
                               [&](const StatePoint& p) { return p.seq > k.state.seq; });
      if (next != states_.end()) {
        ExpectRestores(Instant::AtTime(next->time_ns - 1),
                       "just before the entry after " + std::to_string(k.state.seq));
      }
    }
    for (const StatePoint& p : states_) {
      if (p.time_ns <= d.cutoff_ns) continue;
      ExpectRestores(Instant::AtSeq(p.seq), "window seq " + std::to_string(p.seq));
      ExpectRestores(Instant::AtTime(p.time_ns), "window time " + std::to_string(p.seq));
    }
    ExpectRestores(Instant::AtTime(d.cutoff_ns), "the cutoff");
    ExpectRestores(Instant::Latest(), "latest");
  }

  // Every file under the target with its size (what a dry run must not change).
  std::map<std::string, uint64_t> Files() const {
    std::map<std::string, uint64_t> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(target_dir())) {
      if (e.is_regular_file()) out[e.path().string()] = e.file_size();
    }
    return out;
  }

 private:
  void MakeHistory() {
    HistoryOptions o;
    o.part_size = 4096;  // several chunks per file
    history_ = std::make_unique<HistoryStore>(*store_, o);
  }

  std::string dir_;
  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<HistoryStore> history_;
  std::vector<Segment> truth_;
  std::vector<StatePoint> states_;
  uint64_t seq_ = 0;
  int64_t now_ = 0;
};

}  // namespace scribefs::history::testing
