// PauseController on a Filesystem driven directly (no mount): a pause holds
// every kind of mutation and no read, drains what is in flight, commits
// pending byte ranges before its record, and ends on resume, on timeout
// (auto-thaw) and on shutdown, each with its resume record.
#include "fs/pause_controller.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "journal/reader.h"

namespace scribefs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kRoot = 1;  // FUSE_ROOT_ID

template <typename T>
bool StillWaiting(std::future<T>& f, std::chrono::milliseconds d = 400ms) {
  return f.wait_for(d) == std::future_status::timeout;
}

class PauseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/scribefs-pause-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << strerror(errno);
    dir_ = tmpl;
    ASSERT_EQ(mkdir((dir_ + "/data").c_str(), 0755), 0);
    Journal::Options jo;
    jo.fault_hook = [this] {
      std::this_thread::sleep_for(stall_writes_.load());
      return Status::Ok();
    };
    auto j = Journal::Open(dir_ + "/journal.db", jo);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    journal_ = std::move(j.value());
    FsOptions o;
    o.gate = &gate_;
    UniqueFd root(open((dir_ + "/data").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root.valid());
    fs_ = std::make_unique<Filesystem>(std::move(root), journal_.get(), o);
    PauseOptions po;
    po.max_pause_s = 30;
    po.sync_backing = [this] {
      synced_++;
      return Status::Ok();
    };
    pauser_ = std::make_unique<PauseController>(&gate_, fs_.get(), journal_.get(), po);
  }
  void TearDown() override {
    if (pauser_) pauser_->Shutdown();
    pauser_.reset();
    fs_.reset();
    journal_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::vector<Record> Records() {
    EXPECT_TRUE(fs_->FlushAllRanges().ok());
    auto r = JournalReader::Open(dir_ + "/journal.db");
    EXPECT_TRUE(r.ok());
    auto q = r.value()->Query(JournalFilter{});
    EXPECT_TRUE(q.ok());
    return q.ok() ? std::move(q.value()) : std::vector<Record>{};
  }
  static const Record* Last(const std::vector<Record>& rs, Op op, const std::string& path = "") {
    const Record* out = nullptr;
    for (const auto& r : rs)
      if (r.op == op && (path.empty() || r.path == path)) out = &r;
    return out;
  }
  // Ends a mutating operation as the FUSE adapter does.
  template <typename R>
  auto Done(Mutation<R> m) {
    return fs_->Settle(std::move(m));
  }
  // A write of 10 bytes that is inside the filesystem (past the gate) and
  // stays there until Release(); released at the latest when destroyed, so
  // that a failed ASSERT does not leave the test waiting for it forever.
  struct HeldWrite {
    std::promise<void> release;
    std::future<Result<size_t>> done;
    bool released = false;
    void Release() {
      if (!released) release.set_value();
      released = true;
    }
    ~HeldWrite() { Release(); }  // before `done`'s destructor waits for the write
  };
  // Returns once the write is inside.
  std::unique_ptr<HeldWrite> WriteInFlight(FileHandle* fh, off_t off) {
    auto h = std::make_unique<HeldWrite>();
    auto entered = std::make_shared<std::promise<void>>();
    auto inside = entered->get_future();
    std::shared_future<void> release = h->release.get_future().share();
    h->done = std::async(std::launch::async, [this, fh, off, entered, release] {
      return fs_->Write(c_, fh, off, 10, [&](int fd, off_t at) -> ssize_t {
        entered->set_value();
        release.wait();
        return pwrite(fd, "0123456789", 10, at);
      });
    });
    inside.wait();
    return h;
  }
  std::string data(const std::string& rel) const { return dir_ + "/data/" + rel; }
  bool Exists(const std::string& rel) const {
    struct stat st;
    return lstat(data(rel).c_str(), &st) == 0;
  }

  std::string dir_;
  MutationGate gate_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<Filesystem> fs_;
  std::unique_ptr<PauseController> pauser_;
  std::atomic<int> synced_{0};
  // Every journal write takes this much longer (a disk that stalls).
  std::atomic<std::chrono::milliseconds> stall_writes_{0ms};
  Caller c_{0, 0, 1};
};

TEST_F(PauseTest, HoldsMkdirUntilResumeAndJournalsInOrder) {
  auto p = pauser_->Pause(10, "test");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_GT(p->seq, 0);
  EXPECT_EQ(synced_.load(), 0) << "DATADIR is synced only when asked for";
  auto f = std::async(std::launch::async, [&] { return Done(fs_->MkDir(c_, kRoot, "d", 0755)).ok(); });
  ASSERT_TRUE(StillWaiting(f)) << "mkdir completed during the pause";
  EXPECT_FALSE(Exists("d"));
  EXPECT_EQ(pauser_->state().gate.blocked, 1u);
  auto r = pauser_->Resume("command");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->held_ops, 1u);
  EXPECT_GE(r->held_ms, 400);
  ASSERT_EQ(f.wait_for(2s), std::future_status::ready);
  EXPECT_TRUE(f.get());
  EXPECT_TRUE(Exists("d"));
  auto rs = Records();
  const Record* pause = Last(rs, Op::kPause);
  const Record* resume = Last(rs, Op::kResume);
  const Record* mk = Last(rs, Op::kMkdir, "d");
  ASSERT_TRUE(pause && resume && mk);
  EXPECT_LT(pause->seq, resume->seq);
  EXPECT_LT(resume->seq, mk->seq) << "the held mkdir must be journaled after the resume";
  EXPECT_EQ(pause->state, "done");
  auto d = nlohmann::json::parse(resume->detail);
  EXPECT_EQ(d["reason"], "command");
  EXPECT_EQ(d["pause_seq"], pause->seq);
}

// The gate opens once the resume record has its place in the journal's
// queue, not once it is written: a disk that stalls the write (as it does
// while it writes back gigabytes) must not hold writers longer. The held
// operation's record still comes after the resume record.
TEST_F(PauseTest, ResumeOpensTheGateBeforeItsRecordIsWritten) {
  auto cr = Done(fs_->Create(c_, kRoot, "f", 0644, O_RDWR));
  ASSERT_TRUE(cr.ok()) << cr.status().ToString();
  ASSERT_TRUE(pauser_->Pause(10, "test").ok());
  std::atomic<bool> resumed{false};
  // An operation held at the gate that needs no journal write of its own
  // (a write into the page cache's byte ranges, which are committed later).
  auto entered = std::async(std::launch::async, [&] {
    auto g = gate_.Enter();
    return !resumed.load();  // got through before Resume returned
  });
  ASSERT_TRUE(StillWaiting(entered));
  stall_writes_ = 1500ms;
  auto t0 = Clock::now();
  auto r = std::async(std::launch::async, [&] {
    auto res = pauser_->Resume("command");
    resumed = true;
    return res;
  });
  ASSERT_EQ(entered.wait_for(1000ms), std::future_status::ready)
      << "the held operation waited for the resume record's write";
  EXPECT_TRUE(entered.get());
  EXPECT_LT(Clock::now() - t0, 1000ms);
  auto res = r.get();
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_LT(res->held_ms, 1000) << "held_ms counts the time the gate was closed";
  EXPECT_FALSE(pauser_->state().paused);
  stall_writes_ = 0ms;

  // Ordering: a mutation released by the gate is journaled after the resume.
  ASSERT_TRUE(pauser_->Pause(10, "test").ok());
  stall_writes_ = 1500ms;
  auto mk =
      std::async(std::launch::async, [&] { return Done(fs_->MkDir(c_, kRoot, "d", 0755)).ok(); });
  ASSERT_TRUE(StillWaiting(mk, 200ms));
  ASSERT_TRUE(pauser_->Resume("command").ok());
  ASSERT_EQ(mk.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(mk.get());
  stall_writes_ = 0ms;
  auto rs = Records();
  const Record* resume = Last(rs, Op::kResume);
  const Record* d = Last(rs, Op::kMkdir, "d");
  ASSERT_TRUE(resume && d);
  EXPECT_LT(resume->seq, d->seq) << "the held mkdir must be journaled after the resume";
}

// A checkpoint's pause (durable_record false) gets its mark without a
// journal write under the hold: not its own record's, and not that of a
// commit ahead of it, which a disk writing back GiBs may stall. The records
// are written all the same, in order: the byte ranges still in memory, the
// pause record, the resume record, then the held operations'.
TEST_F(PauseTest, ACheckpointsPauseWaitsForNoJournalWrite) {
  auto cr = Done(fs_->Create(c_, kRoot, "f", 0644, O_RDWR));
  ASSERT_TRUE(cr.ok()) << cr.status().ToString();
  auto fh = std::move(cr.value().second);
  ASSERT_TRUE(Done(fs_->Flush(c_, fh.get())).ok());  // clean again
  ASSERT_TRUE(
      fs_->Write(c_, fh.get(), 0, 5, [](int fd, off_t off) { return pwrite(fd, "hello", 5, off); })
          .ok());
  // The file is dirty now: a second write only adds a pending byte range.
  ASSERT_TRUE(fs_->Write(c_, fh.get(), 5000, 7,
                         [](int fd, off_t off) { return pwrite(fd, "abcdefg", 7, off); })
                  .ok());
  // A commit ahead of the pause (the uploader's, say) that the disk stalls.
  stall_writes_ = 1500ms;
  Record ahead;
  ahead.op = Op::kReconcile;
  ahead.state = "done";
  auto first = std::async(std::launch::async, [&] { return journal_->Commit(ahead); });
  std::this_thread::sleep_for(100ms);
  auto t0 = Clock::now();
  auto p = pauser_->Pause(10, "test", /*sync=*/false, /*durable_record=*/false);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_LT(Clock::now() - t0, 1000ms) << "the pause waited for a journal write";
  ASSERT_TRUE(p->record_write);
  auto mk =
      std::async(std::launch::async, [&] { return Done(fs_->MkDir(c_, kRoot, "d", 0755)).ok(); });
  ASSERT_TRUE(StillWaiting(mk, 200ms));
  stall_writes_ = 0ms;
  ASSERT_TRUE(pauser_->Resume("command").ok());
  ASSERT_EQ(mk.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(mk.get());
  Status written = p->record_write->Wait();
  EXPECT_TRUE(written.ok()) << written.ToString();
  ASSERT_TRUE(first.get().ok());
  EXPECT_LT(ahead.seq, p->seq);
  auto rs = Records();
  const Record* pause = Last(rs, Op::kPause);
  const Record* resume = Last(rs, Op::kResume);
  const Record* d = Last(rs, Op::kMkdir, "d");
  ASSERT_TRUE(pause && resume && d);
  EXPECT_EQ(pause->seq, p->seq);
  EXPECT_LT(pause->seq, resume->seq);
  EXPECT_LT(resume->seq, d->seq);
  bool covered = false;
  for (const auto& r : rs)
    if (r.op == Op::kWrite && r.path == "f" && r.seq < pause->seq)
      for (const auto& br : r.ranges)
        if (br.offset <= 5000 && br.offset + br.length >= 5007) covered = true;
  EXPECT_TRUE(covered) << "the pending byte range must come before the pause record";
}

TEST_F(PauseTest, HoldsEveryKindOfMutation) {
  auto cr = Done(fs_->Create(c_, kRoot, "f", 0644, O_RDWR));
  ASSERT_TRUE(cr.ok());
  auto fh = std::move(cr.value().second);
  ASSERT_TRUE(Done(fs_->Flush(c_, fh.get())).ok());
  ASSERT_TRUE(Done(fs_->MkDir(c_, kRoot, "dir", 0755)).ok());
  uint64_t fid = cr.value().first.id;
  ASSERT_TRUE(pauser_->Pause(10, "test").ok());
  std::vector<std::pair<std::string, std::future<bool>>> ops;
  auto launch = [&](std::string name, std::function<bool()> fn) {
    ops.emplace_back(std::move(name), std::async(std::launch::async, std::move(fn)));
  };
  std::string payload = "hello";
  launch("write", [&] {
    return fs_
        ->Write(c_, fh.get(), 0, payload.size(),
                [&](int fd, off_t off) { return pwrite(fd, payload.data(), payload.size(), off); })
        .ok();
  });
  launch("create", [&] { return Done(fs_->Create(c_, kRoot, "g", 0644, O_RDWR)).ok(); });
  launch("rename", [&] { return Done(fs_->Rename(c_, kRoot, "dir", kRoot, "dir2", 0)).ok(); });
  launch("symlink", [&] { return Done(fs_->Symlink(c_, "f", kRoot, "ln")).ok(); });
  launch("setattr", [&] {
    struct stat st = {};
    st.st_mode = 0600;
    return Done(fs_->SetAttr(c_, fid, st, Filesystem::kSetMode, nullptr)).ok();
  });
  launch("truncate-open", [&] { return fs_->Open(c_, fid, O_RDWR | O_TRUNC).ok(); });
  launch("fallocate", [&] { return fs_->Fallocate(c_, fh.get(), 0, 0, 4096).ok(); });
  std::this_thread::sleep_for(400ms);
  for (auto& [name, f] : ops)
    EXPECT_EQ(f.wait_for(0s), std::future_status::timeout) << name << " completed during the pause";
  EXPECT_FALSE(Exists("g"));
  EXPECT_FALSE(Exists("ln"));
  EXPECT_TRUE(Exists("dir"));
  EXPECT_EQ(pauser_->state().gate.blocked, ops.size());

  // Reads are not held.
  auto t = Clock::now();
  EXPECT_TRUE(fs_->Lookup(kRoot, "f").ok());
  EXPECT_TRUE(fs_->GetAttr(fid, nullptr).ok());
  auto ro = fs_->Open(c_, fid, O_RDONLY);
  EXPECT_TRUE(ro.ok());
  auto dh = fs_->OpenDir(Caller{}, kRoot);
  ASSERT_TRUE(dh.ok());
  int entries = 0;
  EXPECT_TRUE(fs_->ReadDir(dh.value().get(), 0,
                           [&](const char*, ino_t, unsigned char, int64_t) {
                             entries++;
                             return true;
                           })
                  .ok());
  EXPECT_GE(entries, 4);
  EXPECT_LT(Clock::now() - t, 200ms) << "reads were slowed down by the pause";

  ASSERT_TRUE(pauser_->Resume("command").ok());
  for (auto& [name, f] : ops) {
    ASSERT_EQ(f.wait_for(3s), std::future_status::ready) << name;
    EXPECT_TRUE(f.get()) << name << " failed after the resume";
  }
  EXPECT_TRUE(Exists("g"));
  EXPECT_TRUE(Exists("dir2"));
}

TEST_F(PauseTest, DrainsAWriteInFlightBeforeThePauseRecord) {
  auto cr = Done(fs_->Create(c_, kRoot, "f", 0644, O_RDWR));
  ASSERT_TRUE(cr.ok());
  auto fh = std::move(cr.value().second);
  ASSERT_TRUE(Done(fs_->Flush(c_, fh.get())).ok());  // clean again
  auto w = WriteInFlight(fh.get(), 100);
  auto p = std::async(std::launch::async, [&] { return pauser_->Pause(10, "test"); });
  ASSERT_TRUE(StillWaiting(p)) << "the pause did not wait for the write in flight";
  w->Release();
  ASSERT_EQ(p.wait_for(3s), std::future_status::ready);
  auto pr = p.get();
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  // First the quiet wait (250 ms, the gate open), then the drain.
  EXPECT_GE(pr->quiet_ms, 250);
  EXPECT_GE(pr->quiet_ms + pr->drain_ms, 300);
  ASSERT_TRUE(w->done.get().ok());
  // A second write to the (now dirty) file only adds a pending range...
  ASSERT_TRUE(pauser_->Resume("command").ok());
  ASSERT_TRUE(fs_->Write(c_, fh.get(), 5000, 7,
                         [&](int fd, off_t off) { return pwrite(fd, "abcdefg", 7, off); })
                  .ok());
  // ...which the pause commits before its own record.
  auto p2 = pauser_->Pause(10, "test");
  ASSERT_TRUE(p2.ok());
  auto rs = Records();
  bool covered = false;
  for (const auto& r : rs)
    if (r.op == Op::kWrite && r.path == "f" && r.seq < p2->seq)
      for (const auto& br : r.ranges)
        if (br.offset <= 5000 && br.offset + br.length >= 5007) covered = true;
  EXPECT_TRUE(covered) << "the pending byte range was not committed before the pause record";
}

// Before closing the gate, a pause waits (the gate open) for a moment with
// no mutation in flight: writers are not held while an operation the disk
// stalls finishes, and the drain is then empty.
TEST_F(PauseTest, WaitsWithTheGateOpenForTheOperationsInFlight) {
  PauseOptions po;
  po.max_pause_s = 30;
  po.quiet_wait = 10s;
  pauser_ = std::make_unique<PauseController>(&gate_, fs_.get(), journal_.get(), po);
  auto cr = Done(fs_->Create(c_, kRoot, "f", 0644, O_RDWR));
  ASSERT_TRUE(cr.ok());
  auto fh = std::move(cr.value().second);
  auto w = WriteInFlight(fh.get(), 0);
  auto p = std::async(std::launch::async, [&] { return pauser_->Pause(10, "test"); });
  ASSERT_TRUE(StillWaiting(p, 200ms));
  // Meanwhile the gate is open: another writer is not held.
  auto mk =
      std::async(std::launch::async, [&] { return Done(fs_->MkDir(c_, kRoot, "d", 0755)).ok(); });
  ASSERT_EQ(mk.wait_for(2s), std::future_status::ready) << "held while nothing was paused yet";
  EXPECT_TRUE(mk.get());
  EXPECT_FALSE(pauser_->state().paused);
  ASSERT_TRUE(StillWaiting(p, 100ms)) << "paused with the write still in flight";
  w->Release();
  ASSERT_EQ(p.wait_for(3s), std::future_status::ready);
  auto pr = p.get();
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  // The test waited 300 ms (and a mkdir) before the release, counted from
  // before the pause's thread started: a loaded machine may start it late,
  // so only the last window, after the mkdir, is sure to be in the quiet wait.
  EXPECT_GE(pr->quiet_ms, 100);
  EXPECT_LT(pr->drain_ms, 100) << "the write had finished before the gate closed";
  ASSERT_TRUE(w->done.get().ok());
  auto rs = Records();
  const Record* pause = Last(rs, Op::kPause);
  const Record* d = Last(rs, Op::kMkdir, "d");
  ASSERT_TRUE(pause && d);
  EXPECT_LT(d->seq, pause->seq);
  ASSERT_TRUE(pauser_->Resume("command").ok());
}

TEST_F(PauseTest, AutoThawAfterTimeout) {
  auto start = Clock::now();
  auto p = pauser_->Pause(0.6, "test");
  ASSERT_TRUE(p.ok());
  auto f = std::async(std::launch::async, [&] {
    bool ok = Done(fs_->MkDir(c_, kRoot, "late", 0755)).ok();
    return std::make_pair(ok, Clock::now());
  });
  auto [ok, when] = f.get();
  EXPECT_TRUE(ok);
  EXPECT_GE(when - start, 550ms) << "released before the timeout";
  // Generous: the point is that it comes at all (a loaded CI machine is slow).
  EXPECT_LT(when - start, 10s) << "the auto-thaw came late";
  EXPECT_FALSE(pauser_->state().paused);
  auto rs = Records();
  const Record* resume = Last(rs, Op::kResume);
  ASSERT_NE(resume, nullptr);
  EXPECT_EQ(nlohmann::json::parse(resume->detail)["reason"], "timeout");
  EXPECT_EQ(pauser_->Resume("command").status().code(), ENOENT) << "not paused any more";
}

TEST_F(PauseTest, RefusesNestingAndBadTimeouts) {
  EXPECT_EQ(pauser_->Pause(0, "t").status().code(), EINVAL);
  EXPECT_EQ(pauser_->Pause(-1, "t").status().code(), EINVAL);
  EXPECT_EQ(pauser_->Pause(31, "t").status().code(), EINVAL) << "above max_pause_s";
  EXPECT_EQ(pauser_->Resume("command").status().code(), ENOENT);
  auto p = pauser_->Pause(10, "first");
  ASSERT_TRUE(p.ok());
  auto again = pauser_->Pause(10, "second");
  EXPECT_EQ(again.status().code(), EBUSY);
  EXPECT_NE(again.status().message().find("first"), std::string::npos) << again.status().message();
  EXPECT_TRUE(pauser_->IsPaused(p->id));
  EXPECT_EQ(pauser_->Resume("checkpoint", p->id + 1).status().code(), ENOENT)
      << "only_id names another pause";
  EXPECT_TRUE(pauser_->Resume("checkpoint", p->id).ok());
  EXPECT_FALSE(pauser_->IsPaused(p->id));
}

TEST_F(PauseTest, SyncOnRequest) {
  auto p = pauser_->Pause(10, "t", /*sync=*/true);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(synced_.load(), 1);
  auto rs = Records();
  EXPECT_TRUE(nlohmann::json::parse(Last(rs, Op::kPause)->detail).contains("sync_ms"));
}

TEST_F(PauseTest, ShutdownReleasesHeldOperationsAndRefusesNewPauses) {
  ASSERT_TRUE(pauser_->Pause(10, "test").ok());
  auto f = std::async(std::launch::async, [&] { return Done(fs_->MkDir(c_, kRoot, "d", 0755)).ok(); });
  ASSERT_TRUE(StillWaiting(f));
  pauser_->Shutdown();
  ASSERT_EQ(f.wait_for(2s), std::future_status::ready);
  EXPECT_TRUE(f.get());
  auto rs = Records();
  const Record* resume = Last(rs, Op::kResume);
  ASSERT_NE(resume, nullptr);
  EXPECT_EQ(nlohmann::json::parse(resume->detail)["reason"], "unmount");
  EXPECT_EQ(pauser_->Pause(10, "t").status().code(), ESHUTDOWN);
  EXPECT_TRUE(Done(fs_->MkDir(c_, kRoot, "after", 0755)).ok()) << "the gate must stay open";
}

// Hold (rescan's brief look): fn runs with the gate closed and nothing in
// flight; mutations wait for it and go on after; no pause or resume record;
// refused while paused; a pause asked for meanwhile waits for fn.
TEST_F(PauseTest, HoldRunsWithMutationsHeldAndWritesNoRecord) {
  std::future<bool> mk;
  std::future<bool> pause;
  auto h = pauser_->Hold(Clock::now() + 5s, [&]() -> Status {
    EXPECT_TRUE(pauser_->state().gate.closed);
    EXPECT_EQ(pauser_->state().gate.in_flight, 0u);
    mk = std::async(std::launch::async, [&] { return Done(fs_->MkDir(c_, kRoot, "d", 0755)).ok(); });
    pause = std::async(std::launch::async, [&] {
      auto p = pauser_->Pause(10, "meanwhile");
      return p.ok() && pauser_->Resume("command").ok();
    });
    EXPECT_TRUE(StillWaiting(mk, 200ms)) << "mkdir ran while held";
    EXPECT_FALSE(Exists("d"));
    EXPECT_TRUE(StillWaiting(pause, 100ms)) << "a pause began inside the hold";
    return Status::Ok();
  });
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_GE(*h, 200);
  ASSERT_EQ(mk.wait_for(2s), std::future_status::ready);
  EXPECT_TRUE(mk.get());
  ASSERT_EQ(pause.wait_for(2s), std::future_status::ready);
  EXPECT_TRUE(pause.get()) << "the pause asked for during the hold must succeed after it";
  auto rs = Records();
  EXPECT_EQ(Last(rs, Op::kPause)->detail.find("meanwhile") != std::string::npos, true);
  EXPECT_EQ(std::count_if(rs.begin(), rs.end(), [](const Record& r) { return r.op == Op::kPause; }),
            1) << "the hold itself wrote a pause record";
  // fn's error comes back; the gate is open again.
  h = pauser_->Hold(Clock::now() + 5s, [] { return Status::Error(EIO, "boom"); });
  EXPECT_EQ(h.status().code(), EIO);
  EXPECT_TRUE(Done(fs_->MkDir(c_, kRoot, "after-error", 0755)).ok());
  // Refused while paused, and after shutdown.
  ASSERT_TRUE(pauser_->Pause(10, "t").ok());
  EXPECT_EQ(pauser_->Hold(Clock::now() + 5s, [] { return Status::Ok(); }).status().code(), EBUSY);
  pauser_->Shutdown();
  EXPECT_EQ(pauser_->Hold(Clock::now() + 5s, [] { return Status::Ok(); }).status().code(),
            ESHUTDOWN);
}

}  // namespace
}  // namespace scribefs
