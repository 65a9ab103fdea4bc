// FdBudget: how many backing descriptors the files and directories opened
// through the mount may hold at once.
//
// Every open through the mount holds one backing descriptor until its release,
// and any user can open files. Without a bound one user could take every
// descriptor the daemon may have, and then the journal, the control socket and
// the uploader would fail for everyone. The budget leaves a reserve below
// RLIMIT_NOFILE for those (and for the directory descriptor cache); an open
// beyond the budget fails with EMFILE for the caller that asked, as the same
// open on the disk would when the caller runs out. Root keeps a share of the
// budget that users cannot take (like ext4's root-reserved blocks), so that
// an administrator can still work on a mount that users have filled.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/status.h"

namespace scribefs {

class FdBudget {
 public:
  struct Limits {
    size_t root = 0;  // open handles allowed in total
    size_t user = 0;  // handles users other than root may bring it to
  };
  // The limits for a process whose RLIMIT_NOFILE soft limit is nofile and
  // whose directory descriptor cache holds up to dir_cache entries. Pure.
  static Limits ForRlimit(uint64_t nofile, size_t dir_cache);
  // The largest directory cache worth having under nofile: a small limit must
  // not be taken by cached directories.
  static size_t DirCacheFor(uint64_t nofile, size_t wanted);

  explicit FdBudget(Limits limits) : limits_(limits) {}
  FdBudget(const FdBudget&) = delete;
  FdBudget& operator=(const FdBudget&) = delete;

  // One handle's share; returns it when destroyed. An empty Slot (default
  // constructed) holds nothing.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& o) noexcept : budget_(o.budget_) { o.budget_ = nullptr; }
    Slot& operator=(Slot&& o) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Reset(); }
    void Reset();

   private:
    friend class FdBudget;
    explicit Slot(FdBudget* b) : budget_(b) {}
    FdBudget* budget_ = nullptr;
  };

  // A slot for one more open handle, or EMFILE when the budget (for root:
  // privileged = true) is used up.
  Result<Slot> Acquire(bool privileged);

  const Limits& limits() const { return limits_; }
  size_t in_use() const { return in_use_.load(); }
  uint64_t refused() const { return refused_.load(); }

 private:
  const Limits limits_;
  std::atomic<size_t> in_use_{0};
  std::atomic<uint64_t> refused_{0};
};

}  // namespace scribefs
