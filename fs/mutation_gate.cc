#include "fs/mutation_gate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>

namespace scribefs {

MutationGate::Pass& MutationGate::Pass::operator=(Pass&& o) noexcept {
  if (this != &o) {
    Release();
    gate_ = o.gate_;
    o.gate_ = nullptr;
  }
  return *this;
}

void MutationGate::Pass::Release() {
  if (gate_) {
    gate_->Exit();
    gate_ = nullptr;
  }
}

MutationGate::MutationGate(int release_threads, size_t max_held_bytes)
    : release_threads_(release_threads < 1 ? 1 : release_threads),
      max_held_bytes_(max_held_bytes) {}

bool MutationGate::ReserveHeldBytes(size_t n) {
  size_t cur = held_bytes_.load();
  do {
    if (cur + n > max_held_bytes_) return false;
  } while (!held_bytes_.compare_exchange_weak(cur, cur + n));
  return true;
}

void MutationGate::ReturnHeldBytes(size_t n) { held_bytes_.fetch_sub(n); }

namespace {
// Set on a gate thread while it runs a continuation whose delay has passed:
// that continuation's own DeferIfClosed must not delay it again. Local to the
// gate (the continuation re-runs its operation from the top, through the
// adapter, which cannot carry a flag).
thread_local bool tls_delay_served = false;
}  // namespace

MutationGate::~MutationGate() {
  std::vector<std::thread> threads;
  {
    std::unique_lock lk(mu_);
    shut_down_ = true;
    closed_ = false;
    throttle_ = ThrottleState::kNone;
    paths_left_.reset();
    UpdateHintLocked();
    ReleaseLocked(lk);
    stopping_ = true;
    work_cv_.notify_all();
    threads.swap(threads_);
  }
  // The threads run what is queued before they leave.
  for (auto& t : threads) t.join();
}

bool MutationGate::HoldsLocked(MutationKind kind) const {
  return closed_ || (kind == MutationKind::kData &&
                     (throttle_ == ThrottleState::kHeld || PathsSpentLocked()));
}

void MutationGate::UpdateHintLocked() {
  closed_hint_.store(closed_ || throttle_ != ThrottleState::kNone || PathsSpentLocked(),
                     std::memory_order_release);
}

MutationGate::Pass MutationGate::Enter(MutationKind kind) {
  std::unique_lock lk(mu_);
  if (HoldsLocked(kind)) {
    blocked_++;
    held_total_++;
    open_cv_.wait(lk, [&] { return !HoldsLocked(kind); });
    blocked_--;
  }
  in_flight_++;
  return Pass(this);
}

void MutationGate::Exit() {
  std::lock_guard lk(mu_);
  if (--in_flight_ == 0) drained_cv_.notify_all();
}

bool MutationGate::DeferIfClosed(std::function<void()> fn, MutationKind kind) {
  std::lock_guard lk(mu_);
  if (HoldsLocked(kind)) {
    held_total_++;
    deferred_.push_back(std::move(fn));
    return true;
  }
  if (kind == MutationKind::kData && throttle_ == ThrottleState::kSlowed &&
      throttle_delay_.count() > 0 && !tls_delay_served) {
    delayed_total_++;
    releasing_++;
    timed_.emplace(Clock::now() + throttle_delay_, std::move(fn));
    if (threads_.empty()) StartThreadsLocked();
    work_cv_.notify_all();
    return true;
  }
  return false;
}

void MutationGate::SetThrottle(ThrottleState state, std::chrono::microseconds delay) {
  std::unique_lock lk(mu_);
  if (shut_down_) return;
  bool was_held = HoldsLocked(MutationKind::kData);
  throttle_ = state;
  throttle_delay_ = state == ThrottleState::kSlowed ? delay : std::chrono::microseconds(0);
  UpdateHintLocked();
  // The end of a hold releases what it held, unless a pause or a spent
  // path grant still holds it.
  if (was_held && !HoldsLocked(MutationKind::kData)) ReleaseLocked(lk);
}

void MutationGate::SetPathBudget(std::optional<uint64_t> paths) {
  std::unique_lock lk(mu_);
  if (shut_down_) return;
  bool was_held = HoldsLocked(MutationKind::kData);
  paths_left_ = paths;
  paths_budgeted_.store(paths.has_value());
  UpdateHintLocked();
  if (was_held && !HoldsLocked(MutationKind::kData)) ReleaseLocked(lk);
}

void MutationGate::ChargePath() {
  if (!paths_budgeted_.load(std::memory_order_relaxed)) return;
  std::lock_guard lk(mu_);
  if (!paths_left_ || *paths_left_ == 0) return;
  if (--*paths_left_ == 0) UpdateHintLocked();  // spent: held until the next grant
}

void MutationGate::SetWriteBudget(std::optional<uint64_t> bytes) {
  budget_.store(bytes ? static_cast<int64_t>(std::min<uint64_t>(*bytes, INT64_MAX / 2)) : 0);
  budgeted_.store(bytes.has_value());
}

void MutationGate::ChargeWrite(uint64_t bytes) {
  if (!budgeted_.load(std::memory_order_relaxed)) return;
  int64_t n = static_cast<int64_t>(std::min<uint64_t>(bytes, INT64_MAX / 2));
  if (budget_.fetch_sub(n) - n > 0) return;
  // Spent: hold until the monitor has measured again.
  std::lock_guard lk(mu_);
  if (shut_down_ || !budgeted_.load()) return;
  throttle_ = ThrottleState::kHeld;
  UpdateHintLocked();
}

bool MutationGate::WaitIdle(std::chrono::steady_clock::time_point until) {
  std::unique_lock lk(mu_);
  // Exit() notifies drained_cv_ whenever in_flight_ reaches 0.
  return drained_cv_.wait_until(lk, until, [&] { return in_flight_ == 0 || shut_down_; });
}

Status MutationGate::Close(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lk(mu_);
  if (shut_down_) return Status::Error(ESHUTDOWN, "the filesystem is being unmounted");
  if (closed_) return Status::Error(EBUSY, "already paused");
  closed_ = true;
  UpdateHintLocked();
  if (!drained_cv_.wait_until(lk, deadline, [&] { return in_flight_ == 0; })) {
    uint64_t n = in_flight_;
    closed_ = false;
    UpdateHintLocked();
    ReleaseLocked(lk);
    return Status::Error(
        ETIMEDOUT, std::to_string(n) + " mutating operation(s) still in flight at the deadline");
  }
  return Status::Ok();
}

void MutationGate::ReleaseLocked(std::unique_lock<std::mutex>& lk) {
  (void)lk;
  open_cv_.notify_all();
  // At shutdown nothing waits out a delay either.
  if (shut_down_) {
    for (auto& [when, fn] : timed_) run_.emplace_back(std::move(fn), true);
    timed_.clear();
  }
  // Every held continuation re-runs its operation from the top: one that
  // is still held (a throttle hold outlasting a pause) is deferred again.
  for (auto& fn : deferred_) run_.emplace_back(std::move(fn), false);
  releasing_ += deferred_.size();
  deferred_.clear();
  if (!run_.empty()) StartThreadsLocked();
  work_cv_.notify_all();
}

void MutationGate::StartThreadsLocked() {
  // Enough threads for the work, up to the cap; at least one while a delay
  // runs out.
  size_t want = std::max<size_t>(run_.size(), timed_.empty() ? 0 : 1);
  while (static_cast<int>(threads_.size()) < release_threads_ &&
         static_cast<size_t>(idle_threads_) < want) {
    threads_.emplace_back([this] { ReleaseLoop(); });
    idle_threads_++;  // counted idle until it takes work
  }
}

uint64_t MutationGate::Open() {
  std::unique_lock lk(mu_);
  if (!closed_) return 0;
  uint64_t held = blocked_ + deferred_.size();
  closed_ = false;
  UpdateHintLocked();
  ReleaseLocked(lk);
  return held;
}

uint64_t MutationGate::Shutdown() {
  std::unique_lock lk(mu_);
  shut_down_ = true;
  budgeted_.store(false);
  paths_budgeted_.store(false);
  bool spent = PathsSpentLocked();
  paths_left_.reset();
  bool holding = closed_ || throttle_ != ThrottleState::kNone || spent;
  uint64_t held = blocked_ + deferred_.size() + timed_.size();
  closed_ = false;
  throttle_ = ThrottleState::kNone;
  throttle_delay_ = std::chrono::microseconds(0);
  UpdateHintLocked();
  if (!holding && timed_.empty()) return 0;
  ReleaseLocked(lk);
  return held;
}

bool MutationGate::WaitReleased(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lk(mu_);
  return idle_cv_.wait_until(lk, deadline, [&] { return releasing_ == 0; });
}

void MutationGate::ReleaseLoop() {
  std::unique_lock lk(mu_);
  while (true) {
    // Delays that ran out join the released work.
    auto now = Clock::now();
    while (!timed_.empty() && timed_.begin()->first <= now) {
      run_.emplace_back(std::move(timed_.begin()->second), true);
      timed_.erase(timed_.begin());
    }
    if (run_.size() > 1) StartThreadsLocked();
    if (run_.empty()) {
      if (stopping_ && timed_.empty()) return;
      if (timed_.empty())
        work_cv_.wait(lk);
      else
        work_cv_.wait_until(lk, timed_.begin()->first);
      continue;
    }
    auto [fn, served] = std::move(run_.front());
    run_.pop_front();
    idle_threads_--;
    lk.unlock();
    tls_delay_served = served;
    try {
      fn();
    } catch (const std::exception& e) {
      // Continuations reply to their own request; this is a bug in one.
      spdlog::error("held operation failed after the resume: {}", e.what());
    }
    tls_delay_served = false;
    fn = nullptr;  // destroy captures without the lock
    lk.lock();
    idle_threads_++;
    if (--releasing_ == 0) idle_cv_.notify_all();
  }
}

MutationGate::Stats MutationGate::stats() const {
  std::lock_guard lk(mu_);
  Stats s;
  s.closed = closed_;
  s.shut_down = shut_down_;
  s.in_flight = in_flight_;
  s.blocked = blocked_;
  s.deferred = deferred_.size();
  s.held_total = held_total_;
  s.releasing = releasing_;
  s.held_bytes = held_bytes_.load();
  s.throttle = throttle_;
  s.throttle_delay = throttle_delay_;
  s.delayed = timed_.size();
  s.delayed_total = delayed_total_;
  s.paths_left = paths_left_;
  return s;
}

}  // namespace scribefs
