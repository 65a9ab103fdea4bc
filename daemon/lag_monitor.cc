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
    gate_->SetPathBudget(std::nullopt);
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
  out.queued_paths = static_cast<uint64_t>(std::max<int64_t>(0, b->pending_paths));
  if (b->oldest_pending_ns)
    out.oldest_pending_s = std::max(0.0, static_cast<double>(NowNs() - *b->oldest_pending_ns) / 1e9);
  return out;
}

void LagMonitor::MeasurePaceLocked(Backlog* b) {
  if (!replicator_) return;
  ReplicatorStats rs = replicator_->stats();
  uint64_t done = rs.uploads + rs.copies + rs.deletes + rs.skipped_unchanged + rs.failures;
  // queued_paths holds the paths in flight too.
  uint64_t queued = rs.queued_paths;
  auto now = Clock::now();
  if (!samples_.empty()) {
    const PaceSample& last = samples_.back();
    // Busy since the last sample: it had work then, or stored some since
    // (work that came and went between two samples).
    if (last.queued > 0 || done > last.done)
      busy_s_ += std::chrono::duration<double>(now - last.when).count();
    if (done > last.done) busy_at_last_done_ = busy_s_;
  } else {
    busy_at_last_done_ = 0;
  }
  samples_.push_back({now, done, queued, busy_s_});
  while (samples_.size() > 2 && now - samples_[1].when >= std::chrono::seconds(5))
    samples_.pop_front();
  const PaceSample& first = samples_.front();
  // Nothing stored in the window: keep the last pace (an idle uploader has
  // not become slower); the stall below covers one that is stuck.
  if (done > first.done) pace_ = (busy_s_ - first.busy_s) / static_cast<double>(done - first.done);
  // The journal's count (MeasureLocked) when the uploader has not read the
  // newest records yet.
  b->queued_paths = std::max(b->queued_paths, queued);
  b->seconds_per_path = pace_;
  b->stalled_s = queued > 0 ? busy_s_ - busy_at_last_done_ : 0;
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
  Backlog backlog = *measured;
  MeasurePaceLocked(&backlog);
  ThrottleDecision d = policy_.Decide(backlog, previous);
  if (auto max = options_.bounds.max_pending_bytes) {
    // The grant first: the end of a hold must not meet the spent grant of
    // the last period.
    uint64_t pending = measured->pending_bytes;
    gate_->SetWriteBudget(d.state == ThrottleState::kHeld || pending >= *max ? 0 : *max - pending);
  }
  // Likewise the grant of paths (--max-lag): the burst a writer can make
  // before the next look, however late it comes.
  gate_->SetPathBudget(d.paths);
  gate_->SetThrottle(d.state, d.delay);
  if (replicator_) replicator_->Hurry(d.state != ThrottleState::kNone);
  std::lock_guard lk(mu_);
  snap_.backlog = backlog;
  snap_.expected_lag_s = policy_.ExpectedLag(backlog);
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
  // Held by the throttle or by a spent grant (a pause holds them otherwise).
  if (!g.closed) s.held_ops = g.blocked + g.deferred;
  s.throttled_seconds_total = closed_seconds_;
  if (s.state != ThrottleState::kNone)
    s.throttled_seconds_total += std::chrono::duration<double>(Clock::now() - since_).count();
  // A spent grant of paths holds writers until the next look while the
  // throttle itself may say "none": status and metrics say they wait.
  if (s.state == ThrottleState::kNone && g.paths_left && *g.paths_left == 0 && s.held_ops > 0) {
    s.state = ThrottleState::kSlowed;
    s.reason = "new changes wait for the next look (every 100 ms): the changed paths that fit "
               "in --max-lag at the uploader's pace are used";
  }
  return s;
}

}  // namespace scribefs
