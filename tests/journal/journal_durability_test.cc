// Durability of the journal: a durable commit or Sync() fdatasyncs the WAL,
// a plain commit does not, and a failed sync is sticky like any failed commit.
//
// fdatasync() is interposed for this whole test binary (the executable's
// definition takes precedence over libc's, for the journal library and for
// libsqlite3 alike). It counts the calls made on the journal's -wal file and
// can be told to fail them; every other call goes to the real fdatasync.
// This lives in its own executable so that no other test runs with it.
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "journal/journal.h"
#include "journal/reader.h"
#include "journal/run_marker.h"

namespace {
std::mutex g_mu;
std::string g_watched;              // GUARDED_BY(g_mu): the -wal path to count
std::atomic<int> g_wal_syncs{0};    // fdatasync calls on g_watched
std::atomic<int> g_fail_errno{0};   // when non-zero, those calls fail with it
// When set, a call on g_watched waits (at most 10 s) until g_release is set.
std::atomic<bool> g_block{false}, g_blocked{false}, g_release{false};

std::string FdPath(int fd) {
  char link[64], buf[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, n) : std::string();
}
}  // namespace

extern "C" int fdatasync(int fd) {
  using Fn = int (*)(int);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "fdatasync"));
  bool watched;
  {
    std::lock_guard lk(g_mu);
    watched = !g_watched.empty() && FdPath(fd) == g_watched;
  }
  if (watched) {
    ++g_wal_syncs;
    if (g_block.load()) {
      g_blocked = true;
      for (int i = 0; i < 10000 && !g_release.load(); ++i) usleep(1000);
    }
    if (int e = g_fail_errno.load()) {
      errno = e;
      return -1;
    }
  }
  return real(fd);
}

namespace scribefs {
namespace {

using ::testing::HasSubstr;

class JournalDurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/scribefs-jdt-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    // Canonical, so that it compares equal to /proc/self/fd links.
    dir_ = std::filesystem::canonical(tmpl).string();
    path_ = dir_ + "/journal.db";
    auto j = Journal::Open(path_);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    j_ = std::move(j.value());
    std::lock_guard lk(g_mu);
    g_watched = path_ + "-wal";
    g_wal_syncs = 0;
    g_fail_errno = 0;
  }
  void TearDown() override {
    {
      std::lock_guard lk(g_mu);
      g_watched.clear();
    }
    g_fail_errno = 0;
    j_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  static Record Rec(const std::string& path) {
    Record r;
    r.op = Op::kWrite;
    r.path = path;
    return r;
  }

  std::string dir_, path_;
  std::unique_ptr<Journal> j_;
};

TEST_F(JournalDurabilityTest, InterpositionWorks) {
  // Guards the other tests: if the interposed fdatasync were not the one the
  // library calls, their counts would prove nothing.
  int fd = open((path_ + "-wal").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fdatasync(fd), 0);
  close(fd);
  EXPECT_EQ(g_wal_syncs.load(), 1);
  g_wal_syncs = 0;
}

TEST_F(JournalDurabilityTest, PlainCommitDoesNotSync) {
  for (int i = 0; i < 20; ++i) {
    Record r = Rec("a");
    ASSERT_TRUE(j_->Commit(r).ok());
  }
  EXPECT_EQ(g_wal_syncs.load(), 0) << "synchronous=NORMAL: plain commits need no fsync";
}

TEST_F(JournalDurabilityTest, DurableCommitSyncsTheWal) {
  Record r = Rec("a");
  ASSERT_TRUE(j_->Commit(r, /*durable=*/true).ok());
  EXPECT_GE(g_wal_syncs.load(), 1);
}

TEST_F(JournalDurabilityTest, SyncSyncsTheWal) {
  Record r = Rec("a");
  ASSERT_TRUE(j_->Commit(r).ok());
  ASSERT_EQ(g_wal_syncs.load(), 0);
  ASSERT_TRUE(j_->Sync().ok());
  EXPECT_GE(g_wal_syncs.load(), 1);
}

// SyncCommitted (a checkpoint's, once writers run again) syncs the WAL
// outside the commit queue: a commit made while its fdatasync is still
// running returns before it (the fdatasync waits for that commit here, so a
// commit queued behind it would have to wait out the 10 s cap).
TEST_F(JournalDurabilityTest, SyncCommittedSyncsTheWalAndCommitsGoOnMeanwhile) {
  Record a = Rec("a");
  ASSERT_TRUE(j_->Commit(a).ok());
  g_release = false;
  g_blocked = false;
  g_block = true;
  Status synced;
  std::thread t([&] { synced = j_->SyncCommitted(); });
  while (!g_blocked.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto t0 = std::chrono::steady_clock::now();
  Record b = Rec("b");
  Status committed = j_->Commit(b);
  auto waited = std::chrono::steady_clock::now() - t0;
  g_release = true;
  t.join();
  g_block = false;
  EXPECT_TRUE(committed.ok()) << committed.ToString();
  EXPECT_TRUE(synced.ok()) << synced.ToString();
  EXPECT_LT(waited, std::chrono::seconds(5)) << "the commit waited for the sync";
  EXPECT_GE(g_wal_syncs.load(), 1);
}

// A group of durable commits is synced once, as a whole: one fdatasync per
// transaction, not one per caller.
TEST_F(JournalDurabilityTest, OneSyncPerDurableGroup) {
  std::atomic<int> groups{0};
  Journal::Options opt;
  opt.fault_hook = [&] {
    ++groups;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    return Status::Ok();
  };
  j_.reset();
  auto j = Journal::Open(path_, opt);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  j_ = std::move(j.value());
  // SQLite syncs a new WAL's header on its first write (synchronous=NORMAL):
  // start the WAL first, so that only the groups' own syncs are counted.
  Record first = Rec("first");
  ASSERT_TRUE(j_->Commit(first, /*durable=*/true).ok());
  g_wal_syncs = 0;
  groups = 0;

  constexpr int kThreads = 4, kPer = 50;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPer; ++i) {
        Record r = Rec("x");
        if (!j_->Commit(r, /*durable=*/true).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LT(groups.load(), kThreads * kPer) << "no batching happened";
  EXPECT_EQ(g_wal_syncs.load(), groups.load());
}

TEST_F(JournalDurabilityTest, FailedSyncIsSticky) {
  Record ok = Rec("ok");
  ASSERT_TRUE(j_->Commit(ok, /*durable=*/true).ok());
  g_fail_errno = EIO;
  Record r = Rec("a");
  Status s = j_->Commit(r, /*durable=*/true);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), EIO);
  EXPECT_THAT(s.message(), HasSubstr(path_ + "-wal"));
  EXPECT_THAT(s.message(), HasSubstr(strerror(EIO)));
  g_fail_errno = 0;
  EXPECT_FALSE(j_->health().ok());
  Record later = Rec("later");
  EXPECT_FALSE(j_->Commit(later).ok()) << "a failed WAL sync must be sticky";
  EXPECT_FALSE(j_->Sync().ok());
}

TEST_F(JournalDurabilityTest, FailedSyncFromSyncIsSticky) {
  g_fail_errno = ENOSPC;
  Status s = j_->Sync();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ENOSPC);
  g_fail_errno = 0;
  Record r = Rec("a");
  EXPECT_FALSE(j_->Commit(r).ok());
}

// The run marker (journal/run_marker.h) tells the next daemon how this one
// stopped: it must be on disk with every record committed before it, or a
// power cut could leave an old "stopped" behind a run that lost records.
TEST_F(JournalDurabilityTest, RunMarkerIsDurableAndReadsBack) {
  auto none = ReadRunMarker(*j_);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());
  Record r = Rec("a");
  ASSERT_TRUE(j_->Commit(r).ok());
  ASSERT_EQ(g_wal_syncs.load(), 0);
  ASSERT_TRUE(WriteRunMarker(*j_, {"boot-a", 123, true}).ok());
  EXPECT_GE(g_wal_syncs.load(), 1) << "the marker was not made durable";
  g_wal_syncs = 0;
  ASSERT_TRUE(WriteRunMarker(*j_, {"boot-a", 123, false}).ok());
  EXPECT_GE(g_wal_syncs.load(), 1);
  EXPECT_FALSE(WriteRunMarker(*j_, {"boot a", 1, true}).ok()) << "a boot id with a space";
  EXPECT_FALSE(WriteRunMarker(*j_, {"", 1, true}).ok());
  j_.reset();
  auto j = Journal::Open(path_);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  auto m = ReadRunMarker(*j.value());
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_EQ((*m)->boot_id, "boot-a");
  EXPECT_EQ((*m)->started_ns, 123);
  EXPECT_FALSE((*m)->running);
  // A value this module did not write reads as no marker.
  ASSERT_TRUE(j.value()->SetMeta("run", "garbage").ok());
  auto g = ReadRunMarker(*j.value());
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE(g->has_value());
  j_ = std::move(j.value());
}

// Issue 10, item 5: a transient failure of the sync path (here EMFILE, as when
// users of the mount hold every descriptor) fails that one commit, not every
// later one: the records are committed and the next durable commit syncs them.
TEST_F(JournalDurabilityTest, TransientSyncErrorIsNotSticky) {
  for (int err : {EMFILE, ENFILE, ENOMEM, EAGAIN, EINTR}) {
    g_fail_errno = err;
    Record r = Rec("transient");
    Status s = j_->Commit(r, /*durable=*/true);
    g_fail_errno = 0;
    ASSERT_FALSE(s.ok()) << strerror(err);
    EXPECT_EQ(s.code(), err);
    EXPECT_TRUE(j_->health().ok()) << strerror(err) << " must not be sticky: "
                                   << j_->health().ToString();
    EXPECT_GT(r.seq, 0) << "the record itself was committed";
    Record later = Rec("later");
    ASSERT_TRUE(j_->Commit(later, /*durable=*/true).ok()) << "after " << strerror(err);
    EXPECT_TRUE(j_->Sync().ok());
  }
  auto reader = JournalReader::Open(path_);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto all = reader.value()->Query(JournalFilter{});
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->size(), 10u) << "every record, the ones whose sync failed included";
}

// The -wal descriptor is kept open: a durable commit still works when the
// process has no descriptor left (on main it reopened the file each time, and
// EMFILE then made the journal fail for good).
TEST_F(JournalDurabilityTest, DurableCommitNeedsNoNewDescriptor) {
  Record first = Rec("first");
  ASSERT_TRUE(j_->Commit(first, /*durable=*/true).ok());
  std::vector<int> hog;
  while (true) {
    int fd = dup(0);
    if (fd < 0) {
      ASSERT_EQ(errno, EMFILE) << strerror(errno);
      break;
    }
    hog.push_back(fd);
  }
  Record r = Rec("exhausted");
  Status s = j_->Commit(r, /*durable=*/true);
  Status sync = j_->Sync();
  Status health = j_->health();
  for (int fd : hog) close(fd);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(sync.ok()) << sync.ToString();
  EXPECT_TRUE(health.ok()) << health.ToString();
  EXPECT_GE(g_wal_syncs.load(), 3);
  Record later = Rec("later");
  EXPECT_TRUE(j_->Commit(later, /*durable=*/true).ok());
}

}  // namespace
}  // namespace scribefs
