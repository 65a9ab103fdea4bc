// A real Replicator over a temp DATADIR, a temp journal and the in-memory
// store behind the fault injector (tests/uploader/memory_store.h): no mount,
// no server. Records are committed as the mount would commit them, for
// changes made directly in DATADIR.
#include "uploader/replicator.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <thread>

#include "journal/reader.h"
#include "journal/targets.h"
#include "journal/upload_state.h"
#include "tests/uploader/memory_store.h"
#include "tests/uploader/test_util.h"
#include "uploader/object_layout.h"
#include "uploader/target_set.h"

namespace scribefs {
namespace {

using std::chrono::milliseconds;
using testing_util::TempDir;

class ReplicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.path() + "/data";
    ASSERT_EQ(mkdir(data_.c_str(), 0755), 0);
    auto j = Journal::Open(dir_.path() + "/journal.db");
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    journal_ = std::move(j).value();
    root_ = UniqueFd(open(data_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
    options_.workers = 2;
    options_.initial_backoff = milliseconds(5);
    options_.max_backoff = milliseconds(40);
    options_.open_file_delay = milliseconds(100);
    auto mem = std::make_unique<MemoryStore>();
    mem_ = mem.get();
    owned_store_ = std::make_unique<FaultyStore>(std::move(mem));
    store_ = owned_store_.get();
  }
  void TearDown() override { rep_.reset(); }

  void Start() {
    ASSERT_TRUE(owned_store_);
    auto r = Replicator::Create(journal_.get(), root_.get(), std::move(owned_store_), options_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    rep_ = std::move(r).value();
    ASSERT_TRUE(rep_->Start().ok());
  }
  FaultyStore& store() { return *store_; }

  std::string D(const std::string& rel) { return data_ + "/" + rel; }
  void WriteFile(const std::string& rel, const std::string& content) {
    UniqueFd fd = testing_util::WriteFile(D(rel), content);
    ASSERT_TRUE(fd.valid()) << rel;
  }
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
  // A new file as the mount journals it: create, write, close.
  void Created(const std::string& rel, const std::string& content) {
    ASSERT_NO_FATAL_FAILURE(WriteFile(rel, content));
    Commit(Op::kCreate, rel);
    Commit(Op::kWrite, rel, {}, {{0, content.size()}});
    Commit(Op::kClose, rel);
  }
  void Flush() {
    Status s = rep_->WaitIdle(std::chrono::steady_clock::now() + std::chrono::seconds(30));
    ASSERT_TRUE(s.ok()) << s.ToString();
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
  std::string Body(const std::string& key) {
    auto v = mem_->Newest(key);
    return v ? v->body : "<none>";
  }

  TempDir dir_;
  std::string data_;
  std::unique_ptr<Journal> journal_;
  UniqueFd root_;
  ReplicatorOptions options_;
  MemoryStore* mem_ = nullptr;
  FaultyStore* store_ = nullptr;
  std::unique_ptr<FaultyStore> owned_store_;  // until Start() hands it over
  std::unique_ptr<Replicator> rep_;
};

TEST_F(ReplicatorTest, ManyChangesToOnePathCollapseIntoOneUpload) {
  ASSERT_NO_FATAL_FAILURE(WriteFile("f", "final content"));
  Commit(Op::kCreate, "f");
  for (int i = 0; i < 5; ++i) Commit(Op::kWrite, "f", {}, {{uint64_t(i), 1}});
  Commit(Op::kSetattr, "f");
  Commit(Op::kClose, "f");
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_EQ(store().calls("Put"), 1);
  EXPECT_EQ(Body("f"), "final content");
  struct stat st;
  ASSERT_EQ(lstat(D("f").c_str(), &st), 0);
  EXPECT_EQ(mem_->Newest("f")->meta, EncodeMetadata(st));
  for (const auto& [seq, r] : Records()) EXPECT_EQ(r.state, "done") << seq;
  EXPECT_EQ(rep_->stats().uploads, 1u);
}

TEST_F(ReplicatorTest, RenameOfUnchangedContentIsAServerSideCopy) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_EQ(mkdir(D("d").c_str(), 0755), 0);
  Commit(Op::kMkdir, "d");
  ASSERT_NO_FATAL_FAILURE(Created("d/a", "content of a"));
  ASSERT_NO_FATAL_FAILURE(Flush());
  int puts = store().calls("Put");
  EXPECT_EQ(puts, 2);  // the marker "d/" and "d/a"
  ASSERT_EQ(rename(D("d/a").c_str(), D("d/b").c_str()), 0);
  Commit(Op::kRename, "d/a", "d/b");
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_EQ(store().calls("Put"), puts) << "no upload for a rename";
  EXPECT_EQ(store().calls("Copy"), 1);
  EXPECT_EQ(mem_->Keys(), (std::vector<std::string>{"d/", "d/b"}));
  EXPECT_EQ(Body("d/b"), "content of a");
  EXPECT_EQ(rep_->stats().copies, 1u);
  EXPECT_EQ(rep_->stats().deletes, 1u);
}

TEST_F(ReplicatorTest, RenamedDirectoryCopiesEverythingBelowIt) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_EQ(mkdir(D("old").c_str(), 0755), 0);
  Commit(Op::kMkdir, "old");
  ASSERT_EQ(mkdir(D("old/sub").c_str(), 0755), 0);
  Commit(Op::kMkdir, "old/sub");
  ASSERT_NO_FATAL_FAILURE(Created("old/sub/f", "deep"));
  ASSERT_NO_FATAL_FAILURE(Flush());
  ASSERT_EQ(rename(D("old").c_str(), D("new").c_str()), 0);
  Commit(Op::kRename, "old", "new");
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_EQ(mem_->Keys(), (std::vector<std::string>{"new/", "new/sub/", "new/sub/f"}));
  EXPECT_EQ(Body("new/sub/f"), "deep");
  EXPECT_EQ(store().calls("Copy"), 1) << "the file is copied, not uploaded again";
}

TEST_F(ReplicatorTest, DeletePropagates) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(Created("f", "x"));
  ASSERT_NO_FATAL_FAILURE(Flush());
  ASSERT_EQ(mem_->Keys(), std::vector<std::string>{"f"});
  ASSERT_EQ(unlink(D("f").c_str()), 0);
  Commit(Op::kUnlink, "f");
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_TRUE(mem_->Keys().empty());
  EXPECT_EQ(rep_->stats().deletes, 1u);
}

TEST_F(ReplicatorTest, DeleteKeepLeavesTheObject) {
  options_.delete_remote = false;
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(Created("f", "x"));
  ASSERT_NO_FATAL_FAILURE(Flush());
  ASSERT_EQ(unlink(D("f").c_str()), 0);
  int64_t seq = Commit(Op::kUnlink, "f");
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_EQ(mem_->Keys(), std::vector<std::string>{"f"});
  EXPECT_EQ(Records()[seq].state, "done");
}

TEST_F(ReplicatorTest, RetriesAfterInjected503sUntilStored) {
  ASSERT_NO_FATAL_FAILURE(Created("f", "eventually"));
  // More than one request's own tries (4): the path as a whole goes again.
  store().Inject("Put", FaultyStore::Unavailable(), 6);
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_EQ(Body("f"), "eventually");
  EXPECT_EQ(store().calls("Put"), 7);
  ReplicatorStats st = rep_->stats();
  EXPECT_EQ(st.retries, 6u);
  EXPECT_EQ(st.retry_causes.throttled, 6u);
  EXPECT_EQ(st.failures, 0u);
  for (const auto& [seq, r] : Records()) EXPECT_EQ(r.state, "done") << seq;
}

TEST_F(ReplicatorTest, PermanentErrorFailsTheRecordsUntilRetried) {
  ASSERT_NO_FATAL_FAILURE(Created("f", "denied"));
  store().Inject("Put", FaultyStore::Forbidden(), 1);
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_EQ(store().calls("Put"), 1) << "a 4xx is not retried";
  EXPECT_TRUE(mem_->Keys().empty());
  for (const auto& [seq, r] : Records()) {
    EXPECT_EQ(r.state, "failed") << seq;
    ASSERT_TRUE(r.error) << seq;
    EXPECT_NE(r.error->find("AccessDenied"), std::string::npos) << *r.error;
  }
  EXPECT_EQ(rep_->stats().failures, 1u);
  ASSERT_TRUE(rep_->RetryFailed().ok());
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_EQ(Body("f"), "denied");
  for (const auto& [seq, r] : Records()) EXPECT_EQ(r.state, "done") << seq;
}

TEST_F(ReplicatorTest, LostAnswerThenDeleteRemovesWhatWasStored) {
  // Every PUT reaches the store but its answer is lost; the file is deleted
  // before the path is tried again: the object the index never recorded
  // must go too.
  ASSERT_NO_FATAL_FAILURE(Created("f", "orphan?"));
  options_.initial_backoff = milliseconds(200);  // the path waits 100-200 ms before it goes again
  store().Inject("Put", FaultyStore::NetworkError(), 4, FaultyStore::Fault::kCutAfter);
  ASSERT_NO_FATAL_FAILURE(Start());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (store().calls("Put") < 4 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(1));
  ASSERT_EQ(store().calls("Put"), 4);
  ASSERT_EQ(unlink(D("f").c_str()), 0);
  Commit(Op::kUnlink, "f");
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_TRUE(mem_->Keys().empty()) << "left in the target: " << mem_->Keys().front();
  for (const auto& [seq, r] : Records()) EXPECT_EQ(r.state, "done") << seq;
}

TEST_F(ReplicatorTest, LargeFileResendsOnlyTheChangedPart) {
  options_.part_size = kMinPartSize;
  std::string data = testing_util::Blob(2 * kMinPartSize + 1000, 3);
  ASSERT_NO_FATAL_FAILURE(Created("big", data));
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_EQ(store().calls("UploadPart"), 3);
  ASSERT_TRUE(Body("big") == data);
  // Change 10 bytes in the middle part.
  {
    UniqueFd fd(open(D("big").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(pwrite(fd.get(), "0123456789", 10, kMinPartSize + 5), 10);
  }
  data.replace(kMinPartSize + 5, 10, "0123456789");
  Commit(Op::kWrite, "big", {}, {{kMinPartSize + 5, 10}});
  Commit(Op::kClose, "big");
  ASSERT_NO_FATAL_FAILURE(Flush());
  EXPECT_EQ(store().calls("UploadPart"), 4) << "one part sent again";
  EXPECT_EQ(store().calls("UploadPartCopy"), 2) << "two copied from the stored object";
  EXPECT_TRUE(Body("big") == data);
  EXPECT_EQ(rep_->stats().partial_uploads, 1u);
}

// Issue 10 item 6: a user renames FIFOs over a file while it is being
// uploaded. A worker that looks at the regular file and then opens the FIFO
// must not block (it used to, forever: that worker was lost and every flush
// stalled). Every FIFO keeps a second name outside DATADIR so that, should a
// worker be stuck opening one, the test can free it (a writer opens it) and
// fail instead of hanging.
TEST_F(ReplicatorTest, FifoRacedOverAFileNeverBlocksAWorker) {
  const std::string fifos = dir_.path() + "/fifos";
  ASSERT_EQ(mkdir(fifos.c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(Created("f", "first"));
  ASSERT_NO_FATAL_FAILURE(Start());

  std::atomic<bool> stop{false};
  std::atomic<int> made{0};
  std::thread swapper([&] {
    for (int i = 0; !stop && i < 20000; ++i) {
      std::string reg = D("reg.tmp"), fifo = fifos + "/" + std::to_string(i);
      UniqueFd fd(open(reg.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!fd.valid() || write(fd.get(), "x", 1) != 1) return;
      fd.Reset();
      if (rename(reg.c_str(), D("f").c_str()) != 0) return;
      if (mkfifo(fifo.c_str(), 0644) != 0 || link(fifo.c_str(), D("fifo.tmp").c_str()) != 0) return;
      made = i + 1;
      if (rename(D("fifo.tmp").c_str(), D("f").c_str()) != 0) return;
    }
  });
  // Keep the worker coming back to "f" while the swapper runs.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < until) {
    Commit(Op::kWrite, "f", {}, {{0, 1}});
    Commit(Op::kClose, "f");
    std::this_thread::sleep_for(milliseconds(1));
  }
  stop = true;
  swapper.join();
  ASSERT_GT(made.load(), 0);
  ASSERT_EQ(unlink(D("f").c_str()), 0);  // most likely a FIFO: writing it would block the test
  ASSERT_NO_FATAL_FAILURE(Created("f", "final content"));

  Status idle = rep_->WaitIdle(std::chrono::steady_clock::now() + std::chrono::seconds(15));
  if (!idle.ok()) {
    // A worker is stuck in open(): give every FIFO a writer to set it free.
    for (int i = 0; i < made; ++i) {
      std::string fifo = fifos + "/" + std::to_string(i);
      UniqueFd w(open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    }
    FAIL() << "flush did not finish (a worker blocked opening a FIFO): " << idle.ToString();
  }
  EXPECT_EQ(Body("f"), "final content");
  std::cerr << "swaps: " << made << ", retries: " << rep_->stats().retries << "\n";
}

// An earlier daemon stored every record and was killed before its first
// history segment (within --history-interval of its start): history starts
// empty, above those records. A flush up to them must not wait for a
// segment that nothing will write (seen as durability.CrashLoopTest failing
// "history up to journal seq N not stored yet: records not settled").
TEST_F(ReplicatorTest, FlushWithHistoryOfRecordsDoneBeforeHistoryBegan) {
  ASSERT_NO_FATAL_FAILURE(WriteFile("a", "x"));
  std::vector<int64_t> seqs = {Commit(Op::kCreate, "a"), Commit(Op::kClose, "a")};
  ASSERT_TRUE(UploadStateStore(journal_.get(), kFirstTarget).MarkUploaded(seqs, {}, "{}").ok());
  options_.history = true;
  ASSERT_NO_FATAL_FAILURE(Start());
  Status s = rep_->WaitUploadedThrough(seqs.back(),
                                       std::chrono::steady_clock::now() + std::chrono::seconds(10));
  EXPECT_TRUE(s.ok()) << s.ToString();
}

// ---- several targets (issue 16): one replicator per target on one journal ----

// Two replicators share the journal, each with its own target id (journal/
// targets.h) and store. A target that is down holds back neither the other
// target's uploads nor its waits; the records stay pending (across targets)
// until it is back and has stored them too; nothing is sent twice.
class TwoTargetsTest : public ReplicatorTest {
 protected:
  struct Side {
    MemoryStore* mem = nullptr;
    FaultyStore* store = nullptr;
    std::unique_ptr<Replicator> rep;
    int64_t id = 0;
  };
  void StartBoth() {
    auto t = Targets::Sync(*journal_, {{"near", "mem://near"}, {"far", "mem://far"}});
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    for (int i = 0; i < 2; ++i) {
      auto mem = std::make_unique<MemoryStore>();
      side_[i].mem = mem.get();
      auto faulty = std::make_unique<FaultyStore>(std::move(mem));
      side_[i].store = faulty.get();
      side_[i].id = t->targets[i].id;
      if (i == 1) faulty->Inject("*", FaultyStore::Unavailable(), 1'000'000);  // far is down
      ReplicatorOptions o = options_;
      o.target = side_[i].id;
      auto r = Replicator::Create(journal_.get(), root_.get(), std::move(faulty), o);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      side_[i].rep = std::move(r).value();
      ASSERT_TRUE(side_[i].rep->Start().ok());
    }
    journal_->SetCommitListener([this] {
      for (Side& s : side_) s.rep->Notify();
    });
  }
  void TearDown() override {
    journal_->SetCommitListener(nullptr);
    for (Side& s : side_) s.rep.reset();
  }
  std::string State(int64_t seq, std::optional<int64_t> target = std::nullopt) {
    auto reader = JournalReader::Open(journal_->path());
    EXPECT_TRUE(reader.ok());
    JournalFilter f;
    f.since_seq = f.until_seq = seq;
    f.target = target;
    auto q = reader.value()->Query(f);
    EXPECT_TRUE(q.ok() && q->size() == 1);
    return q.ok() && q->size() == 1 ? (*q)[0].state : "";
  }
  Side side_[2];
};

TEST_F(TwoTargetsTest, ADownTargetHoldsBackNeitherTheOtherNorItsWaits) {
  ASSERT_NO_FATAL_FAILURE(StartBoth());
  for (int i = 0; i < 5; ++i)
    ASSERT_NO_FATAL_FAILURE(Created("f" + std::to_string(i), "content " + std::to_string(i)));
  int64_t last = Commit(Op::kClose, "f4");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  Status near = side_[0].rep->WaitUploadedThrough(last, deadline);
  ASSERT_TRUE(near.ok()) << near.ToString();
  for (int i = 0; i < 5; ++i) {
    auto v = side_[0].mem->Newest("f" + std::to_string(i));
    ASSERT_TRUE(v.has_value()) << i;
    EXPECT_EQ(v->body, "content " + std::to_string(i));
    EXPECT_FALSE(side_[1].mem->Newest("f" + std::to_string(i)).has_value());
  }
  EXPECT_EQ(State(last, side_[0].id), "done");
  EXPECT_EQ(State(last, side_[1].id), "pending");
  EXPECT_EQ(State(last), "pending");  // far has not stored it
  int near_puts = side_[0].store->calls("Put");

  side_[1].store->Clear();  // far is back: its backlog drains
  Status far = side_[1].rep->WaitUploadedThrough(last, deadline + std::chrono::seconds(20));
  ASSERT_TRUE(far.ok()) << far.ToString();
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(side_[1].mem->Newest("f" + std::to_string(i))->body, "content " + std::to_string(i));
  EXPECT_EQ(State(last), "done");
  for (int64_t seq = 1; seq <= last; ++seq) EXPECT_EQ(State(seq), "done") << seq;
  EXPECT_EQ(side_[0].store->calls("Put"), near_puts);  // nothing sent twice to near
}

// The daemon's view of several targets (uploader/target_set.h): the mount
// waits for the sync targets only; flush and stop wait for every one.
TEST_F(TwoTargetsTest, TheSetWaitsForTheSyncTargetsOnlyWhereTheMountWaits) {
  ASSERT_NO_FATAL_FAILURE(StartBoth());  // near up, far down
  std::vector<TargetSet::Member> members;
  members.push_back({"near", true, std::move(side_[0].rep)});
  members.push_back({"far", false, std::move(side_[1].rep)});
  auto set = std::make_unique<TargetSet>(std::move(members));
  journal_->SetCommitListener([s = set.get()] { s->Notify(); });
  EXPECT_TRUE(set->any_sync());
  for (int i = 0; i < 3; ++i)
    ASSERT_NO_FATAL_FAILURE(Created("g" + std::to_string(i), "g" + std::to_string(i)));
  int64_t last = Commit(Op::kClose, "g2");
  auto now = std::chrono::steady_clock::now();
  Status mount = set->WaitUploaded(last, now + std::chrono::seconds(20));
  EXPECT_TRUE(mount.ok()) << mount.ToString();  // far is down: the mount does not wait for it
  Status idle = set->WaitIdle(std::chrono::steady_clock::now() + milliseconds(300));
  EXPECT_EQ(idle.code(), ETIMEDOUT) << idle.ToString();
  EXPECT_NE(idle.message().find("target far"), std::string::npos) << idle.ToString();
  side_[1].store->Clear();
  Status flush =
      set->WaitUploadedThrough(last, std::chrono::steady_clock::now() + std::chrono::seconds(20));
  EXPECT_TRUE(flush.ok()) << flush.ToString();
  EXPECT_EQ(State(last), "done");
  EXPECT_TRUE(side_[1].mem->Newest("g2").has_value());
  journal_->SetCommitListener(nullptr);
  set.reset();
}

}  // namespace
}  // namespace scribefs
