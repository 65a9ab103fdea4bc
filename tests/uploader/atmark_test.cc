// The replicator stores frozen paths as they were at a checkpoint's mark
// (issue 12): a real CowSpool over a temp DATADIR (its hooks called before
// the test's own changes, as the filesystem calls them), the daemon's
// adapter (daemon/spool_states.h), a real Replicator with history, and a
// real LocalStore (file://) target. No mount.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/spool_states.h"
#include "fs/cow_spool.h"
#include "history/history_store.h"
#include "history/replay.h"
#include "journal/reader.h"
#include "tests/uploader/test_util.h"
#include "uploader/replicator.h"
#include "uploader/store_factory.h"

namespace scribefs {
namespace {

using std::chrono::milliseconds;
using testing_util::Blob;
using testing_util::Md5Hex;
using testing_util::Sha256Hex;
using testing_util::TempDir;

class AtMarkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.path() + "/data";
    target_ = dir_.path() + "/target";
    ASSERT_EQ(mkdir(data_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(target_.c_str(), 0755), 0);
    auto j = Journal::Open(dir_.path() + "/journal.db");
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    journal_ = std::move(j).value();
    root_ = UniqueFd(open(data_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
    options_.workers = 2;
    options_.initial_backoff = milliseconds(5);
    options_.max_backoff = milliseconds(40);
    options_.open_file_delay = milliseconds(100);
    options_.history = true;
    options_.history_interval = milliseconds(50);
  }
  void TearDown() override {
    rep_.reset();
    spool_.reset();
  }

  void OpenSpool(uint64_t max_bytes = 1ull << 30) {
    auto s = CowSpool::Open(dir_.path() + "/spool", root_.get(), max_bytes);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    spool_ = std::move(s).value();
  }
  // marked: what the replicator reads captures through (default: the
  // daemon's adapter over spool_).
  void Start(std::shared_ptr<const MarkedStates> marked = nullptr) {
    auto store = OpenStore("file://" + target_, {});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto r = Replicator::Create(journal_.get(), root_.get(), std::move(store).value(), options_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    rep_ = std::move(r).value();
    if (!marked && spool_) marked = std::make_shared<SpoolStates>(spool_.get());
    rep_->SetMarkedStates(marked);
    ASSERT_TRUE(rep_->Start().ok());
  }
  // Waits until everything is stored, then stops (history's last segment).
  void FlushAndStop() {
    Status s = rep_->WaitIdle(std::chrono::steady_clock::now() + std::chrono::seconds(60));
    ASSERT_TRUE(s.ok()) << s.ToString();
    rep_->Stop(milliseconds(0));
  }

  std::string D(const std::string& rel) { return data_ + "/" + rel; }
  int64_t Commit(Op op, const std::string& path, std::optional<std::string> new_path = {},
                 std::vector<ByteRange> ranges = {}) {
    Record r;
    r.op = op;
    r.path = path;
    r.new_path = std::move(new_path);
    r.ranges = std::move(ranges);
    EXPECT_TRUE(journal_->Commit(r).ok());
    if (rep_) rep_->Notify();
    return r.seq;
  }
  // A new file as the mount journals it; returns the seq of its close.
  int64_t Created(const std::string& rel, const std::string& content) {
    UniqueFd fd = testing_util::WriteFile(D(rel), content);
    EXPECT_TRUE(fd.valid()) << rel;
    Commit(Op::kCreate, rel);
    Commit(Op::kWrite, rel, {}, {{0, content.size()}});
    return Commit(Op::kClose, rel);
  }
  InodeKey Key(const std::string& rel) {
    struct stat st;
    if (lstat(D(rel).c_str(), &st) != 0) return {0, 0};
    return {st.st_dev, st.st_ino};
  }
  void Capture(const std::string& id, int64_t seq, const std::vector<std::string>& rels) {
    CaptureSpec spec{id, seq, {}};
    for (const auto& r : rels) spec.paths.push_back({r, Key(r)});
    Status s = spool_->Capture(spec);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  // Rewrites rel in place (open O_TRUNC, write), the hook first.
  void Overwrite(const std::string& rel, const std::string& content) {
    UniqueFd fd(open(D(rel).c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    spool_->BeforeData(Key(rel), fd.get(), 0, CowSpool::kToEnd);
    ASSERT_EQ(ftruncate(fd.get(), 0), 0);
    ASSERT_EQ(pwrite(fd.get(), content.data(), content.size(), 0), ssize_t(content.size()));
    Commit(Op::kTruncate, rel);
    Commit(Op::kWrite, rel, {}, {{0, content.size()}});
    Commit(Op::kClose, rel);
  }
  void Truncate(const std::string& rel, uint64_t size) {
    UniqueFd fd(open(D(rel).c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    spool_->BeforeData(Key(rel), fd.get(), size, CowSpool::kToEnd);
    ASSERT_EQ(ftruncate(fd.get(), off_t(size)), 0);
    Commit(Op::kTruncate, rel);
  }
  void Unlink(const std::string& rel) {
    spool_->BeforeRemoveName(Key(rel), root_.get(), rel, /*gone=*/true);
    ASSERT_EQ(unlinkat(root_.get(), rel.c_str(), 0), 0);
    Commit(Op::kUnlink, rel);
  }
  void RenameOver(const std::string& from, const std::string& to) {
    spool_->BeforeRemoveName(Key(from), root_.get(), from, /*gone=*/false);
    spool_->BeforeRemoveName(Key(to), root_.get(), to, /*gone=*/true);
    ASSERT_EQ(renameat(root_.get(), from.c_str(), root_.get(), to.c_str()), 0);
    Commit(Op::kRename, from, to);
  }

  std::map<int64_t, Record> Records() {
    std::map<int64_t, Record> out;
    auto reader = JournalReader::Open(journal_->path());
    EXPECT_TRUE(reader.ok());
    auto recs = reader.value()->Query({});
    EXPECT_TRUE(recs.ok());
    for (auto& r : *recs) out[r.seq] = r;
    return out;
  }
  // Every record of `path` in (lo, hi] is done with the digests of `content`.
  void ExpectDoneWith(const std::string& path, int64_t lo, int64_t hi, const std::string& content) {
    int n = 0;
    for (const auto& [seq, r] : Records()) {
      if (seq <= lo || seq > hi || (r.path != path && r.new_path != path)) continue;
      ++n;
      EXPECT_EQ(r.state, kStateDone) << path << " seq " << seq;
      EXPECT_EQ(r.sha256.value_or(""), Sha256Hex(content)) << path << " seq " << seq;
      EXPECT_EQ(r.etag.value_or(""), Md5Hex(content)) << path << " seq " << seq;
    }
    EXPECT_GT(n, 0) << "no records of " << path << " in (" << lo << ", " << hi << "]";
  }
  // The mirror object at key ("<none>" when absent).
  std::string Mirror(const std::string& key) {
    auto g = rep_->store().Get(key);
    return g.ok() ? g->body : "<none>";
  }
  // History's tree at an instant.
  history::Tree TreeAt(history::Instant at) {
    history::HistoryOptions ho;
    ho.part_size = options_.part_size;
    history::HistoryStore hs(rep_->store(), ho);
    auto segs = hs.LoadTimeline(at);
    EXPECT_TRUE(segs.ok()) << segs.status().ToString();
    return segs.ok() ? history::Replay(*segs, at) : history::Tree();
  }
  // The chunk digests `content` is stored as.
  std::vector<std::string> Chunks(const std::string& content) {
    std::vector<std::string> out;
    for (size_t off = 0; off < content.size(); off += options_.part_size)
      out.push_back(Sha256Hex(content.substr(off, options_.part_size)));
    return out;
  }
  void ExpectFileIn(const history::Tree& t, const std::string& path, const std::string& content,
                    const std::string& what) {
    auto it = t.find(path);
    ASSERT_NE(it, t.end()) << path << " not in history " << what;
    std::vector<std::string> got;
    for (const auto& c : it->second.state.chunks) got.push_back(c.sha256);
    EXPECT_EQ(got, Chunks(content)) << path << " " << what;
    EXPECT_EQ(it->second.state.size, content.size()) << path << " " << what;
  }

  TempDir dir_;
  std::string data_, target_;
  std::unique_ptr<Journal> journal_;
  UniqueFd root_;
  ReplicatorOptions options_;
  std::unique_ptr<CowSpool> spool_;
  std::unique_ptr<Replicator> rep_;
};

TEST_F(AtMarkTest, OverwrittenFileIsStoredAtTheMarkThenLive) {
  const std::string at_mark = "state at the mark", live = "written after the mark, longer";
  OpenSpool();
  const int64_t s = Created("f", at_mark);
  ASSERT_NO_FATAL_FAILURE(Capture("c", s, {"f"}));
  ASSERT_NO_FATAL_FAILURE(Overwrite("f", live));
  const int64_t last = Commit(Op::kSetattr, "f");
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  ExpectDoneWith("f", 0, s, at_mark);
  ExpectDoneWith("f", s, last, live);
  EXPECT_EQ(Mirror("f"), live);
  ExpectFileIn(TreeAt(history::Instant::AtSeq(uint64_t(s))), "f", at_mark, "at the mark");
  ExpectFileIn(TreeAt(history::Instant::Latest()), "f", live, "latest");
}

TEST_F(AtMarkTest, TruncatedFileIsStoredAtTheMark) {
  const std::string at_mark = Blob(100000, 1);
  OpenSpool();
  const int64_t s = Created("f", at_mark);
  ASSERT_NO_FATAL_FAILURE(Capture("c", s, {"f"}));
  ASSERT_NO_FATAL_FAILURE(Truncate("f", 10));
  const int64_t last = Commit(Op::kClose, "f");
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  ExpectDoneWith("f", 0, s, at_mark);
  ExpectDoneWith("f", s, last, at_mark.substr(0, 10));
  EXPECT_EQ(Mirror("f"), at_mark.substr(0, 10));
  ExpectFileIn(TreeAt(history::Instant::AtSeq(uint64_t(s))), "f", at_mark, "at the mark");
  ExpectFileIn(TreeAt(history::Instant::Latest()), "f", at_mark.substr(0, 10), "latest");
}

TEST_F(AtMarkTest, UnlinkedFileIsStoredAtTheMarkThenDeleted) {
  const std::string at_mark = "about to be deleted";
  OpenSpool();
  const int64_t s = Created("f", at_mark);
  ASSERT_NO_FATAL_FAILURE(Capture("c", s, {"f"}));
  ASSERT_NO_FATAL_FAILURE(Unlink("f"));
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  ExpectDoneWith("f", 0, s, at_mark);
  EXPECT_EQ(Mirror("f"), "<none>");
  ExpectFileIn(TreeAt(history::Instant::AtSeq(uint64_t(s))), "f", at_mark, "at the mark");
  EXPECT_EQ(TreeAt(history::Instant::Latest()).count("f"), 0u);
}

TEST_F(AtMarkTest, FileRenamedOverIsStoredAtTheMark) {
  const std::string at_mark = "f at the mark", other = "g, renamed over f later";
  OpenSpool();
  Created("g", other);
  const int64_t s = Created("f", at_mark);
  ASSERT_NO_FATAL_FAILURE(Capture("c", s, {"f", "g"}));
  ASSERT_NO_FATAL_FAILURE(RenameOver("g", "f"));
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  ExpectDoneWith("f", 3, s, at_mark);
  ExpectDoneWith("g", 0, 3, other);
  EXPECT_EQ(Mirror("f"), other);
  EXPECT_EQ(Mirror("g"), "<none>");
  history::Tree mark = TreeAt(history::Instant::AtSeq(uint64_t(s)));
  ExpectFileIn(mark, "f", at_mark, "at the mark");
  ExpectFileIn(mark, "g", other, "at the mark");
  history::Tree latest = TreeAt(history::Instant::Latest());
  ExpectFileIn(latest, "f", other, "latest");
  EXPECT_EQ(latest.count("g"), 0u);
}

TEST_F(AtMarkTest, MultipartFileIsStoredExactlyAtTheMark) {
  options_.part_size = 5ull << 20;
  const std::string at_mark = Blob(12 << 20, 2), live = Blob(12 << 20, 3);
  OpenSpool();
  const int64_t s = Created("big", at_mark);
  ASSERT_NO_FATAL_FAILURE(Capture("c", s, {"big"}));
  {  // a write in the middle part only
    UniqueFd fd(open(D("big").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    const uint64_t off = 6 << 20, len = 1 << 20;
    spool_->BeforeData(Key("big"), fd.get(), off, off + len);
    ASSERT_EQ(pwrite(fd.get(), live.data() + off, len, off_t(off)), ssize_t(len));
  }
  std::string now = at_mark;
  now.replace(6 << 20, 1 << 20, live.substr(6 << 20, 1 << 20));
  Commit(Op::kWrite, "big", {}, {{6 << 20, 1 << 20}});
  const int64_t last = Commit(Op::kClose, "big");
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  // A multipart object's ETag is not an MD5 of the content: check sha256.
  for (const auto& [seq, r] : Records()) {
    if (r.path != "big") continue;
    EXPECT_EQ(r.state, kStateDone) << seq;
    EXPECT_EQ(r.sha256.value_or(""), Sha256Hex(seq <= s ? at_mark : now)) << seq;
  }
  (void)last;
  EXPECT_TRUE(Mirror("big") == now) << "the mirror ends live";
  ExpectFileIn(TreeAt(history::Instant::AtSeq(uint64_t(s))), "big", at_mark, "at the mark");
  ExpectFileIn(TreeAt(history::Instant::Latest()), "big", now, "latest");
}

// A frozen file already stored: the pass at the mark sends only the parts the
// journal saw change (up to the mark and after it) and copies the others
// server-side, as the live pass after it does; a frozen 4 GiB file is not
// re-sent whole per checkpoint.
TEST_F(AtMarkTest, StoredMultipartFileSendsOnlyChangedPartsAtTheMark) {
  options_.part_size = 5ull << 20;
  const std::string v1 = Blob(20 << 20, 5), other = Blob(20 << 20, 6);
  OpenSpool();
  Created("big", v1);
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  ASSERT_TRUE(Mirror("big") == v1);
  // Before the mark: 1 MiB in part 1 (of 4); after it: 1 MiB in part 3.
  auto write = [&](uint64_t off, std::string& now) {
    UniqueFd fd(open(D("big").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    const uint64_t len = 1 << 20;
    spool_->BeforeData(Key("big"), fd.get(), off, off + len);
    ASSERT_EQ(pwrite(fd.get(), other.data() + off, len, off_t(off)), ssize_t(len));
    now.replace(off, len, other.substr(off, len));
    Commit(Op::kWrite, "big", {}, {{off, len}});
  };
  // (A replicator that starts after them takes an earlier daemon's writes
  // as whole-file: this one runs, and the file stays open until the end.)
  options_.open_file_delay = std::chrono::seconds(60);
  ASSERT_NO_FATAL_FAILURE(Start());
  std::string at_mark = v1;
  ASSERT_NO_FATAL_FAILURE(write(6 << 20, at_mark));
  const int64_t s = Commit(Op::kSetattr, "big");
  ASSERT_NO_FATAL_FAILURE(Capture("c", s, {"big"}));
  std::string now = at_mark;
  ASSERT_NO_FATAL_FAILURE(write(16 << 20, now));
  Commit(Op::kClose, "big");
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  for (const auto& [seq, r] : Records()) {
    if (r.path != "big" || seq <= s - 2) continue;
    EXPECT_EQ(r.state, kStateDone) << seq;
    EXPECT_EQ(r.sha256.value_or(""), Sha256Hex(seq <= s ? at_mark : now)) << seq;
  }
  EXPECT_TRUE(Mirror("big") == now) << "the mirror ends live";
  ExpectFileIn(TreeAt(history::Instant::AtSeq(uint64_t(s))), "big", at_mark, "at the mark");
  ExpectFileIn(TreeAt(history::Instant::Latest()), "big", now, "latest");
  // Two passes, each partial: of the mirror's 4 parts of 5 MiB, the two
  // dirty ones were sent per pass, and of history's chunks the changed one
  // (30 MiB, plus history's indexes; whole passes would send 50 MiB).
  const ReplicatorStats st = rep_->stats();
  EXPECT_EQ(st.partial_uploads, 2u);
  EXPECT_LE(st.bytes_sent, (30ull << 20) + (1 << 20)) << "sent whole";
}

TEST_F(AtMarkTest, AbandonedCaptureFallsBackToTheLiveState) {
  const std::string at_mark = Blob(4096, 4), live = "live after the abandon";
  OpenSpool(/*max_bytes=*/1024);  // preserving 4 KiB abandons the capture
  const int64_t s = Created("f", at_mark);
  ASSERT_NO_FATAL_FAILURE(Capture("c", s, {"f"}));
  ASSERT_NO_FATAL_FAILURE(Overwrite("f", live));
  ASSERT_TRUE(spool_->Captures().at(0).abandoned);
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  ExpectDoneWith("f", 0, s, live);
  EXPECT_EQ(Mirror("f"), live);
}

// A capture abandoned while its pass reads the file: the pass goes again,
// live. (The test's MarkedStates abandons the capture at the first read, by
// preserving more of another frozen file than the spool may hold.)
class AbandoningStates : public MarkedStates {
 public:
  AbandoningStates(CowSpool* spool, std::function<void()> abandon)
      : inner_(spool), abandon_(std::move(abandon)) {}
  bool AnyLive() const override { return inner_.AnyLive(); }
  std::vector<MarkedCapture> LiveCaptures() const override { return inner_.LiveCaptures(); }
  bool Frozen(const std::string& id, const std::string& path) const override {
    return inner_.Frozen(id, path);
  }
  Result<MarkedState> Open(const std::string& id, const std::string& path) const override {
    auto m = inner_.Open(id, path);
    if (m.ok() && m->content)
      m->content = std::make_shared<Abandoning>(std::move(m->content), abandon_);
    return m;
  }

 private:
  struct Abandoning : PayloadSource {
    Abandoning(std::shared_ptr<const PayloadSource> in, std::function<void()> abandon)
        : in_(std::move(in)), abandon_(std::move(abandon)) {}
    Result<size_t> Pread(void* buf, size_t n, uint64_t off) const override {
      abandon_();
      return in_->Pread(buf, n, off);
    }
    std::shared_ptr<const PayloadSource> in_;
    std::function<void()> abandon_;
  };
  SpoolStates inner_;
  std::function<void()> abandon_;
};

TEST_F(AtMarkTest, CaptureAbandonedDuringThePassFallsBackToTheLiveState) {
  const std::string at_mark = "f at the mark", live = "f live";
  OpenSpool(/*max_bytes=*/64 << 10);
  const int64_t s = Created("f", at_mark);
  Created("big", Blob(1 << 20, 5));
  ASSERT_NO_FATAL_FAILURE(Capture("c", s, {"f", "big"}));
  ASSERT_NO_FATAL_FAILURE(Overwrite("f", live));
  UniqueFd big(open(D("big").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(big.valid());
  const InodeKey big_key = Key("big");
  auto marked = std::make_shared<AbandoningStates>(spool_.get(), [&] {
    spool_->BeforeData(big_key, big.get(), 0, CowSpool::kToEnd);  // 1 MiB > 64 KiB
  });
  ASSERT_NO_FATAL_FAILURE(Start(marked));
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  EXPECT_TRUE(spool_->Captures().at(0).abandoned);
  ExpectDoneWith("f", 0, s, live);
  EXPECT_EQ(Mirror("f"), live);
}

TEST_F(AtMarkTest, PathsNotFrozenAreStoredLive) {
  const std::string g0 = "g before", g1 = "g after the mark";
  OpenSpool();
  Created("f", "frozen");
  const int64_t s = Created("g", g0);
  ASSERT_NO_FATAL_FAILURE(Capture("c", s, {"f"}));
  {
    UniqueFd fd(open(D("g").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(pwrite(fd.get(), g1.data(), g1.size(), 0), ssize_t(g1.size()));
  }
  const int64_t last = Commit(Op::kWrite, "g", {}, {{0, g1.size()}});
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  ExpectDoneWith("g", 0, last, g1);  // one live pass for all of g's records
  ExpectDoneWith("f", 0, 3, "frozen");
  EXPECT_EQ(Mirror("g"), g1);
}

TEST_F(AtMarkTest, SmallestMarkFirst) {
  const std::string v1 = "version one", v2 = "version two", v3 = "version three";
  OpenSpool();
  const int64_t s1 = Created("f", v1);
  ASSERT_NO_FATAL_FAILURE(Capture("one", s1, {"f"}));
  ASSERT_NO_FATAL_FAILURE(Overwrite("f", v2));
  const int64_t s2 = Commit(Op::kSetattr, "f");
  ASSERT_NO_FATAL_FAILURE(Capture("two", s2, {"f"}));
  ASSERT_NO_FATAL_FAILURE(Overwrite("f", v3));
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(FlushAndStop());
  ExpectDoneWith("f", 0, s1, v1);
  ExpectDoneWith("f", s1, s2, v2);
  ExpectDoneWith("f", s2, 1 << 30, v3);
  EXPECT_EQ(Mirror("f"), v3);
  ExpectFileIn(TreeAt(history::Instant::AtSeq(uint64_t(s1))), "f", v1, "at mark one");
  ExpectFileIn(TreeAt(history::Instant::AtSeq(uint64_t(s2))), "f", v2, "at mark two");
}

}  // namespace
}  // namespace scribefs
