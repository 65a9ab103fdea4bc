// LagMonitor: applies bounded lag (README, "Bounded lag (recovery point)").
//
// A thread measures the backlog every `interval` (100 ms) with one indexed
// query on its own read-only journal connection (JournalReader::Backlog:
// bounded by the pending work), asks LagPolicy (fs/lag_policy.h) what to do
// and tells the MutationGate (hold, delay, or let pass) and the Replicator
// (hurry: files open for writing are stored at once while writers are
// throttled). It logs each transition once, with its reason, and keeps the
// figures that `status` and /metrics show.
//
// What "pending bytes" means: the bytes written through the mount that the
// target does not hold yet, i.e. the byte ranges of the write records still
// pending or uploading (an over-estimate when the same bytes are rewritten),
// plus, for a file created or truncated since its last upload (whose writes
// journal no ranges: its create record covers every byte), its whole size:
// that of its close record, or of the file in DATADIR while it is open.
// Ranges still in memory are committed within --range-flush-ms (5 ms) and
// counted from then on. Failed records (4xx) wait for `scribectl retry` and
// do not count, or they would hold writers until someone notices.
//
// What --max-lag bounds: not only the age of the oldest pending change, but
// the age the newest pending change will have when it is stored (LagPolicy::
// ExpectedLag): that age plus the paths queued times the uploader's pace.
// The pace is measured here as the seconds the uploader was busy (had paths
// queued or in flight) per path it stored, over the last 5 s, or as last
// measured when it stored nothing in that time; until it has stored a path
// the policy assumes a slow one. Without this, a writer much faster than the
// target builds a queue whose last change waits far beyond the bound after
// the hold, and the burst a writer makes right after start does so before
// any pace is known. Each decision also grants the gate the number of new
// changed paths that still fit in the bound (LagPolicy, "Between two
// decisions"), so that a burst between two looks cannot overshoot it either.
//
// Without bounds the thread does not run; snapshot() then measures on demand.
//
// Several targets (issue 16): one lane per async target that has bounds
// (its own, or the global ones), each measured on what that target has not
// stored, with its own uploader's pace. The gate gets the strictest of the
// lanes' decisions (the worst state, the longest delay, the least grants),
// and each lane's uploader is hurried while its own decision throttles. So a
// target without bounds (a section's `max_lag = off`) never holds writers,
// and one with bounds holds them when it falls behind, dead or slow, as a
// single target does.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "fs/lag_policy.h"
#include "fs/mutation_gate.h"
#include "journal/reader.h"
#include "uploader/replicator.h"

namespace scribefs {

class LagMonitor {
 public:
  // A target whose lag is bounded.
  struct Lane {
    std::string name;
    int64_t target = 0;                // journal/targets.h
    Replicator* replicator = nullptr;  // hurried while its lane throttles; may be null
    LagBounds bounds;
  };
  struct Options {
    std::string journal_path;
    int datadir_fd = -1;  // DATADIR (sizes of files still open); not owned
    std::chrono::milliseconds interval{100};
  };
  // One lane as last measured.
  struct LaneSnapshot {
    std::string name;
    Backlog backlog;
    double expected_lag_s = 0;
    LagBounds bounds;
    ThrottleState state = ThrottleState::kNone;
    std::string reason;
  };
  struct Snapshot {
    Backlog backlog;
    double expected_lag_s = 0;  // what --max-lag bounds (see above)
    bool measured = false;  // false: the journal could not be read
    LagBounds bounds;
    ThrottleState state = ThrottleState::kNone;
    std::chrono::microseconds delay{0};
    std::string reason;
    int64_t throttled_since_ns = 0;  // 0 when not throttled
    uint64_t held_ops = 0;           // data mutations held by the throttle right now
    uint64_t delayed_ops_total = 0;
    double throttled_seconds_total = 0;  // time spent slowed or held
    // With more than one lane: each one (the fields above are the lane that
    // binds: the worst state, then the nearest to its bound).
    std::vector<LaneSnapshot> targets;
  };

  // gate must outlive the monitor. No lanes: nothing is bounded.
  LagMonitor(MutationGate* gate, std::vector<Lane> lanes, Options options);
  ~LagMonitor();  // Stop()
  LagMonitor(const LagMonitor&) = delete;
  LagMonitor& operator=(const LagMonitor&) = delete;

  // Starts the thread when there is a bound.
  Status Start();
  // Stops the thread and lifts the throttle. Idempotent.
  void Stop();
  Snapshot snapshot();

 private:
  // A lane and what the monitor keeps of it; guarded by eval_mu_.
  struct LaneState {
    Lane lane;
    LagPolicy policy;
    // The uploader's pace over the last seconds, from one sample per
    // evaluation.
    struct PaceSample {
      std::chrono::steady_clock::time_point when;
      uint64_t done = 0;    // paths stored (or failed for good) so far
      uint64_t queued = 0;  // paths queued or in flight then
      double busy_s = 0;    // busy_s then
    };
    std::deque<PaceSample> samples;
    double busy_s = 0;                           // seconds the uploader had work, since start
    double busy_at_last_done = 0;                // busy_s when it last stored a path
    std::optional<double> pace;                  // busy seconds per path, as last measured
    ThrottleState state = ThrottleState::kNone;  // its last decision
    LaneSnapshot snap;
  };

  void Loop();
  // One measurement and decision; requires eval_mu_.
  void Evaluate();
  // Each lane's decision from its backlog (measured, in lane order), and the
  // strictest for the gate: *write_budget the least grant of bytes (unset
  // without --max-pending), *binding the lane it comes from. Requires eval_mu_.
  ThrottleDecision DecideLanes(const std::vector<Backlog>& measured,
                               std::optional<uint64_t>* write_budget, const LaneState** binding);
  // What `target` (every target: nullopt) has not stored; requires eval_mu_.
  Result<Backlog> MeasureLocked(std::optional<int64_t> target);
  // Fills the lane uploader's queue, pace and stall into *b; requires eval_mu_.
  static void MeasurePace(LaneState& l, Backlog* b);
  bool bounded() const { return !lanes_.empty(); }

  MutationGate* const gate_;
  const Options options_;

  std::mutex eval_mu_;  // the reader and the lanes; taken before mu_
  std::unique_ptr<JournalReader> reader_;
  std::vector<LaneState> lanes_;  // fixed at construction; their state under eval_mu_

  mutable std::mutex mu_;  // guards what follows
  std::condition_variable stop_cv_;
  bool stop_ = false;
  Snapshot snap_;
  std::chrono::steady_clock::time_point since_;  // steady twin of throttled_since_ns
  double closed_seconds_ = 0;  // of throttle periods that ended
  std::thread thread_;
};

}  // namespace scribefs
