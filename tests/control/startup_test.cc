// What the daemon's start-up check finds after each kind of stop (README,
// "What survives a crash or power loss"), on real mounts with a file://
// target.
//
// A power cut is faked: the boot id the daemon reads is taken from the file
// $SCRIBEFS_BOOT_ID_FILE (a test-only override of
// /proc/sys/kernel/random/boot_id), which the test rewrites between two runs
// of the daemon. The change the journal lost is made behind the daemon's back
// while nothing is mounted: same size, and the exact mtime restored, so that
// rsync's quick check (size + mtime) sees nothing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "tests/control/control_util.h"

namespace scribefs::ctltest {
namespace {

class StartupTest : public it::MountTest {
 protected:
  void SetUp() override {
    it::MountTest::SetUp();
    boot_file_ = root() + "/boot_id";
    ASSERT_TRUE(it::WriteFile(boot_file_, "11111111-1111-1111-1111-111111111111\n"));
    setenv("SCRIBEFS_BOOT_ID_FILE", boot_file_.c_str(), 1);
    url_ = "file://" + root() + "/target";
  }
  void TearDown() override {
    unsetenv("SCRIBEFS_BOOT_ID_FILE");
    it::MountTest::TearDown();
  }
  void MountWithTarget() {
    Options o;
    // No wait for the check of requests a crashed daemon left in flight
    // (flush waits for it).
    o.args = {"--target", url_, "--crash-check-delay", "0"};
    Mount(o);
  }
  void Flush() {
    auto r = Scribectl(state(), {"flush", "--timeout", "60"}, 90);
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  }
  void NewBoot() { ASSERT_TRUE(it::WriteFile(boot_file_, "22222222-2222-2222-2222-222222222222\n")); }
  // Rewrites DATADIR's f behind the daemon's back: same size, same mtime
  // (to the nanosecond).
  void RewriteBehindTheBack(const std::string& rel, const std::string& content) {
    struct stat before;
    ASSERT_EQ(lstat(data(rel).c_str(), &before), 0);
    ASSERT_EQ(static_cast<size_t>(before.st_size), content.size());
    ASSERT_TRUE(it::WriteFile(data(rel), content));
    struct timespec times[2] = {before.st_atim, before.st_mtim};
    ASSERT_EQ(utimensat(AT_FDCWD, data(rel).c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
    struct stat after;
    ASSERT_EQ(lstat(data(rel).c_str(), &after), 0);
    ASSERT_EQ(it::MtimeNs(after), it::MtimeNs(before));
    ASSERT_EQ(after.st_size, before.st_size);
  }
  std::string Target(const std::string& rel) {
    auto body = it::ReadFile(root() + "/target/" + rel);
    return body ? *body : "<missing>";
  }
  // Writes f and g through the mount and waits until both are stored.
  void Prepare() {
    MountWithTarget();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(it::WriteFile(mp("f"), "version-1 of f"));
    ASSERT_TRUE(it::WriteFile(mp("g"), "g never changes"));
    Flush();
    ASSERT_EQ(Target("f"), "version-1 of f");
  }

  // The reconcile records of start-up scans (not those of the check for
  // requests a crashed daemon left in flight, uploader/orphan_sweep.h).
  std::vector<Record> StartScanRecords() {
    std::vector<Record> out;
    for (const Record& r : Records())
      if (r.op == Op::kReconcile && r.detail.find("\"scan\":\"start\"") != std::string::npos)
        out.push_back(r);
    return out;
  }

  std::string boot_file_, url_;
};

// The deep check: after an unclean stop on another boot, a file whose
// content differs from what the target holds is stored again even though its
// size and mtime did not change (fails on a start-up check that compares only
// size and mtime).
TEST_F(StartupTest, UncleanStopOnAnotherBootComparesContent) {
  Prepare();
  if (HasFatalFailure()) return;
  KillDaemon();
  Unmount();
  RewriteBehindTheBack("f", "version-2 of f");
  if (HasFatalFailure()) return;
  NewBoot();
  MountWithTarget();
  if (HasFatalFailure()) return;
  Flush();
  EXPECT_EQ(Target("f"), "version-2 of f");
  EXPECT_EQ(Target("g"), "g never changes");
  // Journaled as a reconcile record of the start-up scan that says why.
  int found = 0;
  for (const Record& r : StartScanRecords()) {
    EXPECT_EQ(r.path, "f") << it::Dump(r);  // g's content is what the target holds
    if (r.path == "f") {
      ++found;
      EXPECT_NE(r.detail.find("\"content\""), std::string::npos) << it::Dump(r);
    }
  }
  EXPECT_EQ(found, 1);
}

// The fast path stays for the stops that cannot lose a journal record that
// the data outlived: a clean stop (the stop marker is written durably after
// everything else), and a crash of the daemon alone (kill -9: the kernel's
// page cache keeps the journal's WAL and the data in order). Then only size
// and mtime are compared, as rsync does: the change made behind the back is
// not seen (the documented limit of the quick check).
TEST_F(StartupTest, CleanStopAndSameBootCrashKeepTheQuickCheck) {
  Prepare();
  if (HasFatalFailure()) return;
  // A clean stop, then a new boot.
  ASSERT_EQ(Unmount(), 0);
  RewriteBehindTheBack("f", "version-2 of f");
  if (HasFatalFailure()) return;
  NewBoot();
  MountWithTarget();
  if (HasFatalFailure()) return;
  Flush();
  EXPECT_EQ(Target("f"), "version-1 of f");
  // A daemon crash on the same boot.
  KillDaemon();
  Unmount();
  RewriteBehindTheBack("f", "version-3 of f");
  if (HasFatalFailure()) return;
  MountWithTarget();
  if (HasFatalFailure()) return;
  Flush();
  EXPECT_EQ(Target("f"), "version-1 of f");
  for (const Record& r : StartScanRecords()) ADD_FAILURE() << it::Dump(r);
}

}  // namespace
}  // namespace scribefs::ctltest
