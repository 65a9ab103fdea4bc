#include "daemon/lag_monitor.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>

namespace scribefs {

using Clock = std::chrono::steady_clock;

LagMonitor::LagMonitor(MutationGate* gate, std::vector<Lane> lanes, Options options)
    : gate_(gate), options_(std::move(options)) {
  for (Lane& l : lanes) {
    LagBounds b = l.bounds;
    lanes_.push_back(
        LaneState{std::move(l), LagPolicy(b), {}, 0, 0, std::nullopt, ThrottleState::kNone, {}});
    lanes_.back().snap.name = lanes_.back().lane.name;
    lanes_.back().snap.bounds = b;
  }
  if (lanes_.size() == 1) snap_.bounds = lanes_[0].lane.bounds;
}

LagMonitor::~LagMonitor() { Stop(); }

Status LagMonitor::Start() {
  if (!bounded()) return Status::Ok();
  {
    std::lock_guard ev(eval_mu_);
    for (const LaneState& l : lanes_) {
      auto b = MeasureLocked(l.lane.target);
      if (!b.ok()) return b.status().WithContext("bounded lag");
    }
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
  if (bounded()) {
    gate_->SetWriteBudget(std::nullopt);
    gate_->SetPathBudget(std::nullopt);
    gate_->SetThrottle(ThrottleState::kNone);
    for (LaneState& l : lanes_)
      if (l.lane.replicator) l.lane.replicator->Hurry(false);
  }
}

Result<Backlog> LagMonitor::MeasureLocked(std::optional<int64_t> target) {
  if (!reader_) {
    auto r = JournalReader::Open(options_.journal_path);
    if (!r.ok()) return r.status();
    reader_ = std::move(r.value());
  }
  auto b = reader_->Backlog(target);
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

void LagMonitor::MeasurePace(LaneState& l, Backlog* b) {
  if (!l.lane.replicator) return;
  ReplicatorStats rs = l.lane.replicator->stats();
  uint64_t done = rs.uploads + rs.copies + rs.deletes + rs.skipped_unchanged + rs.failures;
  // queued_paths holds the paths in flight too.
  uint64_t queued = rs.queued_paths;
  auto now = Clock::now();
  if (!l.samples.empty()) {
    const auto& last = l.samples.back();
    // Busy since the last sample: it had work then, or stored some since
    // (work that came and went between two samples).
    if (last.queued > 0 || done > last.done)
      l.busy_s += std::chrono::duration<double>(now - last.when).count();
    if (done > last.done) l.busy_at_last_done = l.busy_s;
  } else {
    l.busy_at_last_done = 0;
  }
  l.samples.push_back({now, done, queued, l.busy_s});
  while (l.samples.size() > 2 && now - l.samples[1].when >= std::chrono::seconds(5))
    l.samples.pop_front();
  const auto& first = l.samples.front();
  // Nothing stored in the window: keep the last pace (an idle uploader has
  // not become slower); the stall below covers one that is stuck.
  if (done > first.done)
    l.pace = (l.busy_s - first.busy_s) / static_cast<double>(done - first.done);
  // The journal's count (MeasureLocked) when the uploader has not read the
  // newest records yet.
  b->queued_paths = std::max(b->queued_paths, queued);
  b->seconds_per_path = l.pace;
  b->stalled_s = queued > 0 ? l.busy_s - l.busy_at_last_done : 0;
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

namespace {

// How near a lane is to its bound (the larger ratio of its two bounds): the
// lane that binds among those in the same state.
double Nearness(const LagMonitor::LaneSnapshot& l) {
  double r = 0;
  if (l.bounds.max_lag_s && *l.bounds.max_lag_s > 0) r = l.expected_lag_s / *l.bounds.max_lag_s;
  if (l.bounds.max_pending_bytes && *l.bounds.max_pending_bytes > 0)
    r = std::max(r, static_cast<double>(l.backlog.pending_bytes) /
                        static_cast<double>(*l.bounds.max_pending_bytes));
  return r;
}

}  // namespace

ThrottleDecision LagMonitor::DecideLanes(const std::vector<Backlog>& measured,
                                         std::optional<uint64_t>* write_budget,
                                         const LaneState** binding) {
  // Each lane's decision; the gate gets the strictest.
  ThrottleDecision d;
  for (size_t i = 0; i < lanes_.size(); ++i) {
    LaneState& l = lanes_[i];
    Backlog backlog = measured[i];
    MeasurePace(l, &backlog);
    ThrottleDecision ld = l.policy.Decide(backlog, l.state);
    l.state = ld.state;
    l.snap.backlog = backlog;
    l.snap.expected_lag_s = l.policy.ExpectedLag(backlog);
    l.snap.state = ld.state;
    l.snap.reason = ld.reason;
    if (auto max = l.lane.bounds.max_pending_bytes) {
      // The grant first: the end of a hold must not meet the spent grant of
      // the last period.
      uint64_t pending = measured[i].pending_bytes;
      uint64_t left = ld.state == ThrottleState::kHeld || pending >= *max ? 0 : *max - pending;
      *write_budget = *write_budget ? std::min(**write_budget, left) : left;
    }
    // Likewise the grant of paths (--max-lag): the burst a writer can make
    // before the next look, however late it comes.
    if (ld.paths) d.paths = d.paths ? std::min(*d.paths, *ld.paths) : *ld.paths;
    d.delay = std::max(d.delay, ld.delay);
    const LaneState* b = *binding;
    if (!b || ld.state > b->snap.state ||
        (ld.state == b->snap.state && Nearness(l.snap) > Nearness(b->snap)))
      *binding = &l;
  }
  if (const LaneState* b = *binding) {
    d.state = b->snap.state;
    d.reason = b->snap.reason;
    if (lanes_.size() > 1 && !d.reason.empty())
      d.reason = "target " + b->lane.name + ": " + d.reason;
  }
  return d;
}

void LagMonitor::Evaluate() {
  // Every lane measured first: a journal that cannot be read says nothing
  // about the targets (and a failed journal fails the writes anyway), so the
  // last decision stays.
  std::vector<Backlog> measured;
  for (LaneState& l : lanes_) {
    auto b = MeasureLocked(l.lane.target);
    if (!b.ok()) {
      spdlog::debug("bounded lag: measuring the backlog: {}", b.status().message());
      return;
    }
    measured.push_back(*b);
  }
  std::optional<uint64_t> write_budget;
  const LaneState* binding = nullptr;
  ThrottleDecision d = DecideLanes(measured, &write_budget, &binding);
  if (write_budget) gate_->SetWriteBudget(*write_budget);
  gate_->SetPathBudget(d.paths);
  gate_->SetThrottle(d.state, d.delay);
  for (LaneState& l : lanes_)
    if (l.lane.replicator) l.lane.replicator->Hurry(l.state != ThrottleState::kNone);

  std::lock_guard lk(mu_);
  const ThrottleState previous = snap_.state;
  if (binding) {
    snap_.backlog = binding->snap.backlog;
    snap_.expected_lag_s = binding->snap.expected_lag_s;
    snap_.bounds = binding->lane.bounds;
  }
  snap_.targets.clear();
  if (lanes_.size() > 1)
    for (const LaneState& l : lanes_) snap_.targets.push_back(l.snap);
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
  if (!bounded()) {
    // Nothing runs: measure now (what any target lacks), for status and /metrics.
    std::lock_guard ev(eval_mu_);
    auto b = MeasureLocked(std::nullopt);
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
