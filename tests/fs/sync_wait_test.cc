// The sync-wait contract between Filesystem and the FUSE adapter, on a
// Filesystem driven directly (no mount) with a fake UploadWaiter: every
// mutating method returns a Mutation whose ticket names the record the reply
// must wait for (its own newest record); Settle releases the records it holds
// (they are unapplied until then), waits for that record in sync mode only
// when the operation succeeded, turns a failed wait into EIO and undoes the
// lookup reference a new entry took; a Mutation dropped unsettled releases its
// records and waits for nothing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "fs/filesystem.h"
#include "journal/reader.h"

namespace scribefs {
namespace {

constexpr uint64_t kRoot = 1;  // FUSE_ROOT_ID

// Records every seq it is asked to wait for and answers with `answer`. Like
// the uploader, it can only see a record that is applied: one still held
// when the wait begins would never be uploaded (the wait would time out).
class FakeWaiter : public UploadWaiter {
 public:
  Status WaitUploaded(int64_t seq, std::chrono::steady_clock::time_point) override {
    std::lock_guard lk(mu_);
    asked_.push_back(seq);
    if (journal_ && journal_->AppliedThrough() < seq) unapplied_.push_back(seq);
    return answer_;
  }
  void set_journal(Journal* j) { journal_ = j; }
  // Seqs asked for while their record was still held.
  std::vector<int64_t> TakeUnapplied() {
    std::lock_guard lk(mu_);
    return std::exchange(unapplied_, {});
  }
  std::vector<int64_t> TakeAsked() {
    std::lock_guard lk(mu_);
    return std::exchange(asked_, {});
  }
  void set_answer(Status s) {
    std::lock_guard lk(mu_);
    answer_ = std::move(s);
  }

 private:
  std::mutex mu_;
  std::vector<int64_t> asked_;
  std::vector<int64_t> unapplied_;
  Journal* journal_ = nullptr;
  Status answer_;
};

class SyncWaitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/scribefs-syncwait-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << strerror(errno);
    dir_ = tmpl;
    ASSERT_EQ(mkdir((dir_ + "/data").c_str(), 0755), 0);
    auto j = Journal::Open(dir_ + "/journal.db");
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    journal_ = std::move(j.value());
    waiter_.set_journal(journal_.get());
  }
  void TearDown() override {
    fs_.reset();
    journal_.reset();
    std::filesystem::remove_all(dir_);
  }
  // sync: with the fake waiter (sync mode); otherwise async mode.
  void MakeFs(bool sync) {
    FsOptions o;
    o.waiter = sync ? &waiter_ : nullptr;
    UniqueFd root(open((dir_ + "/data").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root.valid());
    fs_ = std::make_unique<Filesystem>(std::move(root), journal_.get(), o);
  }
  // The seq of the newest journal record with op on path (0: none).
  int64_t SeqOf(Op op, const std::string& path) {
    auto r = JournalReader::Open(dir_ + "/journal.db");
    EXPECT_TRUE(r.ok());
    if (!r.ok()) return 0;
    auto q = r.value()->Query(JournalFilter{});
    EXPECT_TRUE(q.ok());
    int64_t seq = 0;
    if (q.ok())
      for (const Record& rec : q.value())
        if (rec.op == op && rec.path == path) seq = rec.seq;
    return seq;
  }
  // Settles m and checks that sync mode asked to wait for exactly the
  // record (op, path) and nothing else.
  template <typename R>
  R SettleExpecting(Mutation<R> m, Op op, const std::string& path) {
    int64_t want = SeqOf(op, path);
    EXPECT_GT(want, 0) << "no " << OpName(op) << " record for " << path;
    EXPECT_EQ(m.ticket().seq(), want) << OpName(op) << " " << path;
    EXPECT_LT(journal_->AppliedThrough(), want)
        << OpName(op) << " " << path << ": its record counted as applied before Settle";
    R out = fs_->Settle(std::move(m));
    EXPECT_EQ(waiter_.TakeAsked(), std::vector<int64_t>{want}) << OpName(op) << " " << path;
    EXPECT_TRUE(waiter_.TakeUnapplied().empty())
        << OpName(op) << " " << path << ": waited for a record still held from the uploader";
    EXPECT_GE(journal_->AppliedThrough(), want) << "Settle did not release " << path;
    return out;
  }
  std::string data(const std::string& rel) const { return dir_ + "/data/" + rel; }

  std::string dir_;
  std::unique_ptr<Journal> journal_;
  FakeWaiter waiter_;
  std::unique_ptr<Filesystem> fs_;
  Caller c_{0, 0, 1};
};

TEST_F(SyncWaitTest, EveryMutationAsksToAwaitItsOwnRecord) {
  MakeFs(/*sync=*/true);
  auto d = SettleExpecting(fs_->MkDir(c_, kRoot, "d", 0755), Op::kMkdir, "d");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  auto fifo = SettleExpecting(fs_->MkNod(c_, kRoot, "fifo", S_IFIFO | 0644, 0), Op::kMknod, "fifo");
  ASSERT_TRUE(fifo.ok()) << fifo.status().ToString();
  auto ln = SettleExpecting(fs_->Symlink(c_, "d", kRoot, "ln"), Op::kSymlink, "ln");
  ASSERT_TRUE(ln.ok()) << ln.status().ToString();

  auto cr = SettleExpecting(fs_->Create(c_, kRoot, "f", 0644, O_RDWR), Op::kCreate, "f");
  ASSERT_TRUE(cr.ok()) << cr.status().ToString();
  FileHandle* fh = cr.value().second.get();
  uint64_t fid = cr.value().first.id;
  auto n = fs_->Write(c_, fh, 0, 5, [](int fd, off_t off) { return pwrite(fd, "hello", 5, off); });
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_TRUE(waiter_.TakeAsked().empty()) << "a write must not wait in sync mode";
  // Sync mode: close waits for its own close record (never deferred).
  EXPECT_TRUE(SettleExpecting(fs_->Flush(c_, fh), Op::kClose, "f").ok());
  auto n2 = fs_->Write(c_, fh, 5, 1, [](int fd, off_t off) { return pwrite(fd, "!", 1, off); });
  ASSERT_TRUE(n2.ok());
  EXPECT_TRUE(SettleExpecting(fs_->Fsync(c_, fh, false), Op::kFsync, "f").ok());

  struct stat st = {};
  st.st_mode = 0600;
  auto sa =
      SettleExpecting(fs_->SetAttr(c_, fid, st, Filesystem::kSetMode, nullptr), Op::kSetattr, "f");
  ASSERT_TRUE(sa.ok()) << sa.status().ToString();
  EXPECT_EQ(sa.value().st_mode & 07777, 0600u);

  auto hard = SettleExpecting(fs_->Link(c_, fid, kRoot, "hard"), Op::kLink, "f");
  ASSERT_TRUE(hard.ok()) << hard.status().ToString();
  EXPECT_TRUE(
      SettleExpecting(fs_->Rename(c_, kRoot, "hard", kRoot, "hard2", 0), Op::kRename, "hard").ok());
  EXPECT_TRUE(SettleExpecting(fs_->Unlink(c_, kRoot, "hard2"), Op::kUnlink, "hard2").ok());
  EXPECT_TRUE(SettleExpecting(fs_->Rmdir(c_, kRoot, "d"), Op::kRmdir, "d").ok());
  EXPECT_FALSE(std::filesystem::exists(data("d")));
  EXPECT_FALSE(std::filesystem::exists(data("hard2")));
}

TEST_F(SyncWaitTest, FailedOperationReleasesItsRecordAndDoesNotWait) {
  MakeFs(/*sync=*/true);
  ASSERT_EQ(mkdir(data("d").c_str(), 0755), 0);  // behind the mount's back
  auto m = fs_->MkDir(c_, kRoot, "d", 0755);
  int64_t seq = SeqOf(Op::kMkdir, "d");
  ASSERT_GT(seq, 0) << "the record comes before the mkdir that then fails";
  EXPECT_EQ(m.ticket().seq(), seq);
  auto r = fs_->Settle(std::move(m));
  EXPECT_EQ(r.status().code(), EEXIST);
  EXPECT_TRUE(waiter_.TakeAsked().empty()) << "a failed operation must not wait for its upload";
  EXPECT_GE(journal_->AppliedThrough(), seq);
}

TEST_F(SyncWaitTest, FailedWaitIsEioAndUndoesTheNewEntrysReference) {
  MakeFs(/*sync=*/true);
  waiter_.set_answer(Status::Error(ETIMEDOUT, "target unreachable"));
  auto r = fs_->Settle(fs_->MkDir(c_, kRoot, "d", 0755));
  EXPECT_EQ(r.status().code(), EIO);
  EXPECT_EQ(waiter_.TakeAsked().size(), 1u);
  EXPECT_TRUE(std::filesystem::is_directory(data("d"))) << "the mkdir itself happened";
  // The kernel never heard of the entry: its reference is gone again, so a
  // lookup hands out a fresh one with a count of 1.
  auto e = fs_->Lookup(kRoot, "d");
  ASSERT_TRUE(e.ok());
  auto inode = fs_->inodes().Get(e.value().id);
  ASSERT_NE(inode, nullptr);
  EXPECT_EQ(inode->nlookup.load(), 1u);

  auto u = fs_->Settle(fs_->Rmdir(c_, kRoot, "d"));
  EXPECT_EQ(u.code(), EIO);
}

TEST_F(SyncWaitTest, UnsettledMutationReleasesItsRecordsWithoutWaiting) {
  MakeFs(/*sync=*/true);
  int64_t seq;
  {
    auto m = fs_->MkDir(c_, kRoot, "d", 0755);
    seq = m.ticket().seq();
    ASSERT_GT(seq, 0);
    EXPECT_LT(journal_->AppliedThrough(), seq);
    // m is dropped here, as on an exception between the operation and its reply.
  }
  EXPECT_GE(journal_->AppliedThrough(), seq);
  EXPECT_TRUE(waiter_.TakeAsked().empty());
}

TEST_F(SyncWaitTest, AsyncModeReleasesWithoutWaitingAndDefersTheCloseRecord) {
  MakeFs(/*sync=*/false);
  auto m = fs_->MkDir(c_, kRoot, "d", 0755);
  int64_t seq = m.ticket().seq();
  EXPECT_EQ(seq, SeqOf(Op::kMkdir, "d"));
  EXPECT_LT(journal_->AppliedThrough(), seq);
  EXPECT_TRUE(fs_->Settle(std::move(m)).ok());
  EXPECT_GE(journal_->AppliedThrough(), seq);
  auto cr = fs_->Settle(fs_->Create(c_, kRoot, "f", 0644, O_RDWR));
  ASSERT_TRUE(cr.ok());
  // A whole-file close joins the next group commit: nothing of its own to hold.
  auto fl = fs_->Flush(c_, cr.value().second.get());
  EXPECT_EQ(fl.ticket().seq(), 0);
  EXPECT_TRUE(fl.ticket().held().empty());
  EXPECT_TRUE(fs_->Settle(std::move(fl)).ok());
  EXPECT_TRUE(waiter_.TakeAsked().empty());
}

}  // namespace
}  // namespace scribefs
