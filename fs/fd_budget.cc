#include "fs/fd_budget.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>

namespace scribefs {

namespace {
// Descriptors the daemon needs besides open files and cached directories: the
// journal's connections (database, -wal, -shm each), the uploader's readers,
// files being uploaded and its sockets, the control socket and its clients,
// /dev/fuse, the log, transient O_PATH descriptors of name operations.
constexpr uint64_t kDaemonReserve = 128;
}  // namespace

size_t FdBudget::DirCacheFor(uint64_t nofile, size_t wanted) {
  return static_cast<size_t>(std::min<uint64_t>(wanted, std::max<uint64_t>(nofile / 8, 1)));
}

FdBudget::Limits FdBudget::ForRlimit(uint64_t nofile, size_t dir_cache) {
  uint64_t reserve = std::min<uint64_t>(nofile / 2, kDaemonReserve + dir_cache);
  Limits l;
  l.root = static_cast<size_t>(nofile - reserve);
  // Root's share: an eighth of the budget, at least one.
  l.user = l.root - std::max<size_t>(l.root / 8, std::min<size_t>(l.root, 1));
  return l;
}

FdBudget::Slot& FdBudget::Slot::operator=(Slot&& o) noexcept {
  if (this != &o) {
    Reset();
    budget_ = o.budget_;
    o.budget_ = nullptr;
  }
  return *this;
}

void FdBudget::Slot::Reset() {
  if (budget_) budget_->in_use_.fetch_sub(1);
  budget_ = nullptr;
}

Result<FdBudget::Slot> FdBudget::Acquire(bool privileged) {
  size_t cap = privileged ? limits_.root : limits_.user;
  size_t n = in_use_.load();
  do {
    if (n >= cap) {
      // Logged on the first refusal and then every 1,000th, not per open.
      if (refused_.fetch_add(1) % 1000 == 0)
        spdlog::warn(
            "open files through the mount: {} of {} ({} for root) in use; refusing "
            "more with EMFILE",
            n, limits_.user, limits_.root);
      return Status::Error(EMFILE, "too many files open through the mount");
    }
  } while (!in_use_.compare_exchange_weak(n, n + 1));
  return Slot(this);
}

}  // namespace scribefs
