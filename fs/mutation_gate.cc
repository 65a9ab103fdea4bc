#include "fs/mutation_gate.h"

#include <spdlog/spdlog.h>

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

MutationGate::~MutationGate() {
  std::vector<std::thread> threads;
  {
    std::unique_lock lk(mu_);
    shut_down_ = true;
    ReleaseLocked(lk);
    stopping_ = true;
    work_cv_.notify_all();
    threads.swap(threads_);
  }
  // The threads run what is queued before they leave.
  for (auto& t : threads) t.join();
}

MutationGate::Pass MutationGate::Enter() {
  std::unique_lock lk(mu_);
  if (closed_) {
    blocked_++;
    held_total_++;
    open_cv_.wait(lk, [&] { return !closed_; });
    blocked_--;
  }
  in_flight_++;
  return Pass(this);
}

void MutationGate::Exit() {
  std::lock_guard lk(mu_);
  if (--in_flight_ == 0) drained_cv_.notify_all();
}

bool MutationGate::DeferIfClosed(std::function<void()> fn) {
  std::lock_guard lk(mu_);
  if (!closed_) return false;
  held_total_++;
  deferred_.push_back(std::move(fn));
  return true;
}

Status MutationGate::Close(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lk(mu_);
  if (shut_down_) return Status::Error(ESHUTDOWN, "the filesystem is being unmounted");
  if (closed_) return Status::Error(EBUSY, "already paused");
  closed_ = true;
  closed_hint_.store(true, std::memory_order_release);
  if (!drained_cv_.wait_until(lk, deadline, [&] { return in_flight_ == 0; })) {
    uint64_t n = in_flight_;
    ReleaseLocked(lk);
    return Status::Error(
        ETIMEDOUT, std::to_string(n) + " mutating operation(s) still in flight at the deadline");
  }
  return Status::Ok();
}

void MutationGate::ReleaseLocked(std::unique_lock<std::mutex>& lk) {
  closed_ = false;
  closed_hint_.store(false, std::memory_order_release);
  open_cv_.notify_all();
  if (deferred_.empty()) return;
  for (auto& fn : deferred_) run_.push_back(std::move(fn));
  releasing_ += deferred_.size();
  deferred_.clear();
  // Enough threads for the work, up to the cap.
  while (static_cast<int>(threads_.size()) < release_threads_ &&
         static_cast<size_t>(idle_threads_) < run_.size()) {
    threads_.emplace_back([this] { ReleaseLoop(); });
    idle_threads_++;  // counted idle until it takes work
  }
  work_cv_.notify_all();
}

uint64_t MutationGate::Open() {
  std::unique_lock lk(mu_);
  if (!closed_) return 0;
  uint64_t held = blocked_ + deferred_.size();
  ReleaseLocked(lk);
  return held;
}

uint64_t MutationGate::Shutdown() {
  std::unique_lock lk(mu_);
  shut_down_ = true;
  if (!closed_) return 0;
  uint64_t held = blocked_ + deferred_.size();
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
    work_cv_.wait(lk, [&] { return stopping_ || !run_.empty(); });
    if (run_.empty()) return;  // stopping, nothing left
    std::function<void()> fn = std::move(run_.front());
    run_.pop_front();
    idle_threads_--;
    lk.unlock();
    try {
      fn();
    } catch (const std::exception& e) {
      // Continuations reply to their own request; this is a bug in one.
      spdlog::error("held operation failed after the resume: {}", e.what());
    }
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
  return s;
}

}  // namespace scribefs
