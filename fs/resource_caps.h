// Disk limits for the users of the mount: the decision who a data-allocating
// syscall is charged to, and a guard that makes the calling thread look like
// that user to the backing filesystem's limit checks while it runs.
//
// The daemon usually runs as root. Two kernel checks would then let every
// user's write through the mount go where the user's own write could not:
// ext4 lets a task use the root-reserved blocks when it has CAP_SYS_RESOURCE
// or its fsuid is the reserved uid (resuid, 0 by default), and the quota code
// lets a task with CAP_SYS_RESOURCE exceed hard limits (quota is charged to
// the file's owner whoever writes). Both look at the *writing thread*: on
// Linux capabilities and the fsuid/fsgid are per thread (capset(2) with pid 0
// and setfsuid(2) change only the caller). So around a pwrite, fallocate,
// ftruncate, or the creation of a node for a user, a FUSE worker thread
// lowers CAP_SYS_RESOURCE from its effective set and takes the user's
// fsuid/fsgid, and afterwards restores both. The other capabilities stay
// effective (setfsuid to a non-zero uid clears the file capabilities
// CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, ... from the effective
// set; the guard raises them again), so permission checks and set-user-ID
// handling are as before: only the limit checks change.
//
// Thread-safe: each guard changes only its own thread.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace scribefs {

// What the daemon's threads can do about limits, read once at start.
struct DaemonResourceCaps {
  bool sys_resource = false;  // CAP_SYS_RESOURCE effective: limits do not apply to it
  bool set_ids = false;       // CAP_SETUID and CAP_SETGID effective: it may take another fsuid
  uid_t fsuid = 0;            // its own fsuid
  gid_t fsgid = 0;

  // The calling thread's (a FUSE worker's are the same: the daemon does not
  // change its capabilities after start).
  static DaemonResourceCaps OfThisThread();
};

// What one syscall made for a user must change on the worker thread.
struct ResourceCharge {
  bool drop_sys_resource = false;  // lower CAP_SYS_RESOURCE from the effective set
  bool switch_ids = false;         // take fsuid/fsgid uid/gid
  uid_t uid = 0;
  gid_t gid = 0;
  bool any() const { return drop_sys_resource || switch_ids; }
};

// Pure. The charge for a syscall that may allocate blocks or inodes on
// behalf of uid/gid (the opener of the file handle it writes through, or the
// caller of a setattr/create without one):
// - root (uid 0) keeps the daemon's powers: root may use the reserved blocks
//   and exceed quotas natively too;
// - a daemon without CAP_SYS_RESOURCE (a user mount, or a root daemon started
//   without it) has nothing to drop; one without CAP_SETUID/CAP_SETGID cannot switch
//   fsuid (and a user mount serves its own user anyway), so it is a no-op for
//   such a daemon;
// - otherwise CAP_SYS_RESOURCE is dropped and, unless the user already is the
//   daemon's fsuid, the fsuid/fsgid become the user's, so that ext4's resuid
//   test (fsuid == resuid, root by default) sees the user and not root.
ResourceCharge ChargeFor(const DaemonResourceCaps& daemon, uid_t uid, gid_t gid);

// RAII: applies charge to the calling thread for the guard's lifetime. No
// syscall when !charge.any() (root callers, user mounts). When the change
// cannot be made the syscall runs with the daemon's powers (as before this
// guard existed) and the failure is logged once; when it cannot be undone
// the process aborts rather than leave a worker thread with another user's
// identity. Not movable; use on one thread only, and start no thread under it
// (a new thread inherits its creator's credentials: libfuse starts its
// workers before it hands a request to a callback, so none is started here).
class ScopedResourceCharge {
 public:
  explicit ScopedResourceCharge(const ResourceCharge& charge);
  ~ScopedResourceCharge();
  ScopedResourceCharge(const ScopedResourceCharge&) = delete;
  ScopedResourceCharge& operator=(const ScopedResourceCharge&) = delete;

  // Whether the charge is in effect (false for !charge.any() too).
  bool applied() const { return applied_; }

 private:
  bool applied_ = false;
  bool ids_switched_ = false;
  uid_t old_fsuid_ = 0;
  gid_t old_fsgid_ = 0;
  // The thread's effective/permitted/inheritable sets before (capget(2),
  // _LINUX_CAPABILITY_VERSION_3: two 32-bit words each).
  uint32_t effective_[2] = {};
  uint32_t permitted_[2] = {};
  uint32_t inheritable_[2] = {};
};

}  // namespace scribefs
