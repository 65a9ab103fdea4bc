#include "fs/resource_caps.h"

#include <linux/capability.h>
#include <spdlog/spdlog.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace scribefs {
namespace {

// The raw capget/capset syscalls rather than libcap: the guard only reads the
// thread's three sets and writes them back with one bit changed, on the write
// path of every user's request; the raw calls do that without allocating
// (cap_get_proc/cap_set_proc allocate a cap_t each time) and without a new
// library dependency. glibc has no wrappers for them, hence syscall(2).
using CapData = __user_cap_data_struct[_LINUX_CAPABILITY_U32S_3];

int CapGet(CapData data) {
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};  // pid 0: this thread
  return static_cast<int>(syscall(SYS_capget, &header, data));
}

int CapSet(const CapData data) {
  __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};  // pid 0: this thread
  return static_cast<int>(syscall(SYS_capset, &header, data));
}

bool Effective(const CapData data, int cap) {
  return (data[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap)) != 0;
}

// setfsuid/setfsgid return the previous id and report no error; an invalid
// id (-1) changes nothing, which makes it a query.
uid_t CurrentFsuid() { return static_cast<uid_t>(setfsuid(static_cast<uid_t>(-1))); }
gid_t CurrentFsgid() { return static_cast<gid_t>(setfsgid(static_cast<gid_t>(-1))); }

void WarnOnce(const char* what, int err) {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    spdlog::warn(
        "cannot apply a user's disk limits to a write ({}: {}); writes keep the "
        "daemon's limits",
        what, strerror(err));
}

}  // namespace

DaemonResourceCaps DaemonResourceCaps::OfThisThread() {
  DaemonResourceCaps d;
  CapData caps = {};
  if (CapGet(caps) == 0) {
    d.sys_resource = Effective(caps, CAP_SYS_RESOURCE);
    d.set_ids = Effective(caps, CAP_SETUID) && Effective(caps, CAP_SETGID);
  }
  d.fsuid = CurrentFsuid();
  d.fsgid = CurrentFsgid();
  return d;
}

ResourceCharge ChargeFor(const DaemonResourceCaps& daemon, uid_t uid, gid_t gid) {
  ResourceCharge c;
  if (uid == 0) return c;  // root: the daemon's powers, as natively
  c.drop_sys_resource = daemon.sys_resource;
  c.switch_ids = daemon.set_ids && (uid != daemon.fsuid || gid != daemon.fsgid);
  if (c.any()) {
    c.uid = uid;
    c.gid = gid;
  }
  return c;
}

ScopedResourceCharge::ScopedResourceCharge(const ResourceCharge& charge) {
  if (!charge.any()) return;
  CapData caps = {};
  if (CapGet(caps) != 0) {
    WarnOnce("capget", errno);
    return;
  }
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
    effective_[i] = caps[i].effective;
    permitted_[i] = caps[i].permitted;
    inheritable_[i] = caps[i].inheritable;
  }
  if (charge.switch_ids) {
    // gid first: CAP_SETGID is not a file capability, so setfsuid does not
    // take it, but doing it first keeps the order of the undo simple.
    old_fsgid_ = static_cast<gid_t>(setfsgid(charge.gid));
    old_fsuid_ = static_cast<uid_t>(setfsuid(charge.uid));
    ids_switched_ = true;
    if (CurrentFsgid() != charge.gid || CurrentFsuid() != charge.uid) {
      WarnOnce("setfsuid", EPERM);
      setfsuid(old_fsuid_);
      setfsgid(old_fsgid_);
      ids_switched_ = false;
      return;
    }
  }
  // The sets as before (setfsuid away from 0 cleared the file capabilities
  // from the effective set: they come back), less CAP_SYS_RESOURCE.
  if (charge.drop_sys_resource)
    caps[CAP_TO_INDEX(CAP_SYS_RESOURCE)].effective &= ~CAP_TO_MASK(CAP_SYS_RESOURCE);
  if (CapSet(caps) != 0) {
    int e = errno;
    WarnOnce("capset", e);
    if (ids_switched_) {
      setfsuid(old_fsuid_);
      setfsgid(old_fsgid_);
      ids_switched_ = false;
    }
    return;
  }
  applied_ = true;
}

ScopedResourceCharge::~ScopedResourceCharge() {
  if (!applied_) return;
  if (ids_switched_) {
    setfsuid(old_fsuid_);
    setfsgid(old_fsgid_);
  }
  CapData caps = {};
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
    caps[i].effective = effective_[i];
    caps[i].permitted = permitted_[i];
    caps[i].inheritable = inheritable_[i];
  }
  // Both only give back what the thread had (the capabilities are still
  // permitted); should either fail, this worker would go on serving every
  // user as another one: stop instead.
  if (CapSet(caps) != 0 ||
      (ids_switched_ && (CurrentFsuid() != old_fsuid_ || CurrentFsgid() != old_fsgid_))) {
    spdlog::critical("cannot restore a worker thread's capabilities or fsuid ({}); aborting",
                     strerror(errno));
    std::abort();
  }
}

}  // namespace scribefs
