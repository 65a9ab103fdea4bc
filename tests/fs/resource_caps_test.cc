// Who a user's data-allocating syscall is charged to (ChargeFor, pure), and
// what the guard does to the calling thread (as root: the tests run as root).
#include "fs/resource_caps.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <future>
#include <thread>

namespace scribefs {
namespace {

constexpr uid_t kUser = 1000;
constexpr gid_t kGroup = 1001;

DaemonResourceCaps RootDaemon() { return {true, true, 0, 0}; }

TEST(ChargeFor, RootCallerKeepsTheDaemonsPowers) {
  EXPECT_FALSE(ChargeFor(RootDaemon(), 0, 0).any());
  EXPECT_FALSE(ChargeFor(RootDaemon(), 0, kGroup).any());
}

TEST(ChargeFor, UserOfRootDaemonDropsSysResourceAndTakesItsIds) {
  ResourceCharge c = ChargeFor(RootDaemon(), kUser, kGroup);
  EXPECT_TRUE(c.drop_sys_resource);
  EXPECT_TRUE(c.switch_ids);
  EXPECT_EQ(c.uid, kUser);
  EXPECT_EQ(c.gid, kGroup);
}

TEST(ChargeFor, UserMountIsANoOp) {
  // A daemon run by kUser has neither capability: nothing to drop, no switch.
  DaemonResourceCaps user_daemon{false, false, kUser, kGroup};
  EXPECT_FALSE(ChargeFor(user_daemon, kUser, kGroup).any());
  // Another user through allow_other: still nothing it could change.
  EXPECT_FALSE(ChargeFor(user_daemon, kUser + 1, kGroup).any());
}

TEST(ChargeFor, RootDaemonWithoutSysResourceStillTakesTheUsersFsuid) {
  // ext4's resuid test (fsuid == resuid, 0 by default) needs the switch alone.
  DaemonResourceCaps d{false, true, 0, 0};
  ResourceCharge c = ChargeFor(d, kUser, kGroup);
  EXPECT_FALSE(c.drop_sys_resource);
  EXPECT_TRUE(c.switch_ids);
}

TEST(ChargeFor, CallerWithTheDaemonsIdsOnlyDrops) {
  DaemonResourceCaps d{true, true, kUser, kGroup};
  ResourceCharge c = ChargeFor(d, kUser, kGroup);
  EXPECT_TRUE(c.drop_sys_resource);
  EXPECT_FALSE(c.switch_ids);
}

bool ThreadHas(int cap) {
  __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &h, d) != 0) return false;
  return (d[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap)) != 0;
}

uid_t Fsuid() { return static_cast<uid_t>(setfsuid(static_cast<uid_t>(-1))); }
gid_t Fsgid() { return static_cast<gid_t>(setfsgid(static_cast<gid_t>(-1))); }

// Root with CAP_SETUID/CAP_SETGID is enough to run this; CAP_SYS_RESOURCE is
// checked when the process has it (some sandboxes and containers withhold
// it: then the fsuid switch alone is what keeps users off the reserved
// blocks).
TEST(ScopedResourceCharge, ChangesOnlyThisThreadAndOnlyForItsScope) {
  DaemonResourceCaps d = DaemonResourceCaps::OfThisThread();
  if (!d.set_ids || d.fsuid != 0) GTEST_SKIP() << "needs root with CAP_SETUID and CAP_SETGID";
  // Another thread, started before the guard (a thread started under it
  // would inherit this thread's credentials), keeps everything.
  std::promise<void> applied;
  bool other_has = !d.sys_resource;
  uid_t other_fsuid = 1;
  std::thread other([&, ready = applied.get_future()]() mutable {
    ready.wait();
    other_has = ThreadHas(CAP_SYS_RESOURCE);
    other_fsuid = Fsuid();
  });
  {
    ScopedResourceCharge guard(ChargeFor(d, kUser, kGroup));
    EXPECT_TRUE(guard.applied());  // not ASSERT: `other` must be joined
    EXPECT_FALSE(ThreadHas(CAP_SYS_RESOURCE));
    EXPECT_EQ(Fsuid(), kUser);
    EXPECT_EQ(Fsgid(), kGroup);
    // The file capabilities setfsuid cleared are back: permission checks
    // stay the daemon's.
    EXPECT_TRUE(ThreadHas(CAP_DAC_OVERRIDE));
    EXPECT_TRUE(ThreadHas(CAP_CHOWN));
    EXPECT_TRUE(ThreadHas(CAP_FSETID));
    EXPECT_TRUE(ThreadHas(CAP_FOWNER));
    applied.set_value();
    other.join();
    EXPECT_EQ(other_has, d.sys_resource);
    EXPECT_EQ(other_fsuid, 0u);
  }
  EXPECT_EQ(ThreadHas(CAP_SYS_RESOURCE), d.sys_resource);
  EXPECT_TRUE(ThreadHas(CAP_DAC_OVERRIDE));
  EXPECT_EQ(Fsuid(), 0u);
  EXPECT_EQ(Fsgid(), 0u);
}

TEST(ScopedResourceCharge, RootChargeMakesNoChange) {
  DaemonResourceCaps d = DaemonResourceCaps::OfThisThread();
  if (d.fsuid != 0) GTEST_SKIP() << "needs root";
  ScopedResourceCharge guard(ChargeFor(d, 0, 0));
  EXPECT_FALSE(guard.applied());
  EXPECT_EQ(ThreadHas(CAP_SYS_RESOURCE), d.sys_resource);
  EXPECT_EQ(Fsuid(), 0u);
}

}  // namespace
}  // namespace scribefs
