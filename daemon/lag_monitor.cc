#include "daemon/lag_monitor.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>

namespace scribefs {

using Clock = std::chrono::steady_clock;

LagMonitor::LagMonitor(MutationGate* gate, Replicator* replicator, Options options)
    : gate_(gate),
      replicator_(replicator),
      options_(std::move(options)),
      policy_(options_.bounds) {
  snap_.bounds = options_.bounds;
}

LagMonitor::~LagMonitor() { Stop(); }

Status LagMonitor::Start() {
  if (!options_.bounds.any()) return Status::Ok();
  {
    std::lock_guard ev(eval_mu_);
    auto b = MeasureLocked();
    if (!b.ok()) return b.status().WithContext("bounded lag");
  }
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void LagMonitor::Stop() {
  {
    std::lock_guard lk(mu_);
    if (stop_) return;
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (options_.bounds.any()) {
    gate_->SetWriteBudget(std::nullopt);
    gate_->SetThrottle(ThrottleState::kNone);
    if (replicator_) replicator_->Hurry(false);
  }
}

Result<Backlog> LagMonitor::MeasureLocked() {
  if (!reader_) {
    auto r = JournalReader::Open(options_.journal_path);
    if (!r.ok()) return r.status();
    reader_ = std::move(r.value());
  }
  auto b = reader_->Backlog();
  if (!b.ok()) {
    reader_.reset();  // a fresh connection next time
    return b.status();
  }
  Backlog out;
  out.pending_bytes = static_cast<uint64_t>(std::max<int64_t>(0, b->written_bytes));
  for (const auto& [path, size] : b->whole_files) {
    int64_t n = size.value_or(0);
    struct stat st;
    if (!size && options_.datadir_fd >= 0 && !path.empty() &&
        fstatat(options_.datadir_fd, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
      n = st.st_size;
    out.pending_bytes += static_cast<uint64_t>(std::max<int64_t>(0, n));
  }
  if (b->oldest_pending_ns)
    out.oldest_pending_s = std::max(0.0, static_cast<double>(NowNs() - *b->oldest_pending_ns) / 1e9);
  return out;
}

double LagMonitor::DrainSecondsLocked() {
  if (!replicator_) return 0;
  ReplicatorStats rs = replicator_->stats();
  uint64_t done = rs.uploads + rs.copies + rs.deletes + rs.skipped_unchanged + rs.failures;
  auto now = Clock::now();
  done_.emplace_back(now, done);
  while (done_.size() > 2 && now - done_[1].first >= std::chrono::seconds(5)) done_.pop_front();
  double span = std::chrono::duration<double>(now - done_.front().first).count();
  uint64_t n = done - done_.front().second;
  if (span < 0.5 || n == 0) return 0;
  return static_cast<double>(rs.queued_paths + rs.in_flight) / (static_cast<double>(n) / span);
}

void LagMonitor::Loop() {
  std::unique_lock lk(mu_);
  while (!stop_) {
    lk.unlock();
    {
      std::lock_guard ev(eval_mu_);
      Evaluate();
    }
    lk.lock();
    stop_cv_.wait_for(lk, options_.interval, [&] { return stop_; });
  }
}

void LagMonitor::Evaluate() {
  auto measured = MeasureLocked();
  ThrottleState previous;
  {
    std::lock_guard lk(mu_);
    previous = snap_.state;
  }
  if (!measured.ok()) {
    // Keep the last decision: a journal that cannot be read says nothing
    // about the target (and a failed journal fails the writes anyway).
    spdlog::debug("bounded lag: measuring the backlog: {}", measured.status().message());
    return;
  }
  double drain = DrainSecondsLocked();
  Backlog expected = *measured;
  if (expected.oldest_pending_s > 0) expected.oldest_pending_s += drain;
  ThrottleDecision d = policy_.Decide(expected, previous);
  if (auto max = options_.bounds.max_pending_bytes) {
    // The grant first: the end of a hold must not meet the spent grant of
    // the last period.
    uint64_t pending = measured->pending_bytes;
    gate_->SetWriteBudget(d.state == ThrottleState::kHeld || pending >= *max ? 0 : *max - pending);
  }
  gate_->SetThrottle(d.state, d.delay);
  if (replicator_) replicator_->Hurry(d.state != ThrottleState::kNone);
  std::lock_guard lk(mu_);
  snap_.backlog = *measured;
  snap_.expected_lag_s = expected.oldest_pending_s;
  snap_.measured = true;
  snap_.delay = d.delay;
  if (d.state == previous) {
    snap_.reason = d.reason;
    return;
  }
  auto now = Clock::now();
  if (previous == ThrottleState::kNone) {
    since_ = now;
    snap_.throttled_since_ns = NowNs();
    spdlog::warn("bounded lag: writers {} ({})", ThrottleStateName(d.state), d.reason);
  } else if (d.state == ThrottleState::kNone) {
    double s = std::chrono::duration<double>(now - since_).count();
    closed_seconds_ += s;
    snap_.throttled_since_ns = 0;
    spdlog::info("bounded lag: writers no longer throttled, after {:.1f} s ({} was {})", s,
                 ThrottleStateName(previous), snap_.reason);
  } else {
    spdlog::warn("bounded lag: writers {} instead of {} ({})", ThrottleStateName(d.state),
                 ThrottleStateName(previous), d.reason);
  }
  snap_.state = d.state;
  snap_.reason = d.reason;
}

LagMonitor::Snapshot LagMonitor::snapshot() {
  if (!options_.bounds.any()) {
    // Nothing runs: measure now, for status and /metrics.
    std::lock_guard ev(eval_mu_);
    auto b = MeasureLocked();
    std::lock_guard lk(mu_);
    if (b.ok()) {
      snap_.backlog = *b;
      snap_.measured = true;
    }
  }
  MutationGate::Stats g = gate_->stats();
  std::lock_guard lk(mu_);
  Snapshot s = snap_;
  s.delayed_ops_total = g.delayed_total;
  if (s.state == ThrottleState::kHeld && !g.closed) s.held_ops = g.blocked + g.deferred;
  s.throttled_seconds_total = closed_seconds_;
  if (s.state != ThrottleState::kNone)
    s.throttled_seconds_total += std::chrono::duration<double>(Clock::now() - since_).count();
  return s;
}

}  // namespace scribefs
