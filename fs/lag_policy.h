// LagPolicy: the bounded-lag decision (README, "Bounded lag (recovery
// point)"): from the backlog the uploader has not stored yet (how old its
// oldest change is, how many bytes it holds) and the bounds (--max-lag,
// --max-pending), whether new mutations go on freely, are slowed (each one
// delayed, more the nearer the backlog is to a bound) or held until the
// backlog is back under the bounds.
//
//   ratio = backlog / bound  (the larger of the two when both bounds are set)
//   ratio <  kSoftStart              none
//   kSoftStart <= ratio < 1          slowed: delay grows linearly with the
//                                    overshoot into the soft zone, from
//                                    kMinDelay to kMaxDelay
//   ratio >= 1                       held
//   held, ratio > kRelease           still held (hysteresis: a hold ends only
//                                    once the backlog is clearly under the
//                                    bound, so that it does not flap on every
//                                    upload)
//
// The lag that --max-lag bounds is not the age of the oldest pending change
// alone but the age the newest queued change will have when it is stored:
//
//   expected lag = oldest age + queued paths * seconds per path
//
// with the uploader's measured pace, never faster than its current stall (the
// time it has been busy since it last stored a path: a target that slowed
// down or went away shows there first). Before it has stored anything (right
// after start) its pace is unknown and assumed slow: half the bound per
// path, so that two queued paths already reach the bound and a writer's
// first burst is held until the first upload tells how fast the target is,
// instead of queueing more than the bound can drain.
//
// Between two decisions (the monitor looks every 100 ms, later on a loaded
// machine) a burst of writers could queue many paths at once, each adding
// one path's time to the lag of the last. So a decision also grants a
// number of new changed paths (ThrottleDecision::paths): as many as still
// fit in the bound at the pace,
//
//   paths = floor((max lag - expected lag) / seconds per path)   (0 if held)
//
// and the gate holds data mutations once they are spent, until the next
// decision (fs/mutation_gate.h, SetPathBudget): the newest admitted change
// is then expected within the bound, whatever the interval between looks.
// While the pace is unknown the grant is one path with nothing queued, else
// none: the first upload after start also pays for the uploader's own start
// (seen: 1.9 s instead of 0.3 s for a lone change on the slow-target test),
// which no assumed pace foresees.
//
// A pure function of its inputs: no clock, no I/O. Thread-compatible.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace scribefs {

enum class ThrottleState { kNone = 0, kSlowed = 1, kHeld = 2 };
std::string_view ThrottleStateName(ThrottleState s);

struct LagBounds {
  std::optional<double> max_lag_s;             // --max-lag
  std::optional<uint64_t> max_pending_bytes;   // --max-pending
  bool any() const { return max_lag_s.has_value() || max_pending_bytes.has_value(); }
};

// What the uploader has not stored yet, as the monitor measured it.
struct Backlog {
  double oldest_pending_s = 0;  // age of the oldest change not stored (0: none)
  uint64_t pending_bytes = 0;   // bytes written locally, not stored yet
  // The uploader's queue and pace, for the expected lag (above).
  // Paths queued or being stored: the uploader's queue, or the paths the
  // journal holds pending when more (the uploader reads new records a
  // little later; a burst must count at once).
  uint64_t queued_paths = 0;
  // Seconds it was busy per path stored, as last measured; nullopt: it has
  // not stored any path yet.
  std::optional<double> seconds_per_path{};
  double stalled_s = 0;  // busy since it last stored a path
};

struct ThrottleDecision {
  ThrottleState state = ThrottleState::kNone;
  std::chrono::microseconds delay{0};  // kSlowed: each new mutation waits this long
  std::string reason;                  // "pending 9.1 MiB > 8 MiB"; empty for kNone
  // New changed paths that may be admitted until the next decision (see
  // above); nullopt: no such limit (no --max-lag).
  std::optional<uint64_t> paths;
};

class LagPolicy {
 public:
  static constexpr double kSoftStart = 0.75;  // slowing starts at 75 % of a bound
  static constexpr double kRelease = 0.90;    // a hold ends under 90 % of every bound
  static constexpr std::chrono::microseconds kMinDelay{500};
  // At the bound a data mutation waits 200 ms: a writer slowed that much
  // (a few operations a second) falls behind nearly any target, so that the
  // backlog settles in the soft zone instead of reaching the hold.
  static constexpr std::chrono::microseconds kMaxDelay{200000};

  explicit LagPolicy(LagBounds bounds) : bounds_(bounds) {}
  // Before the uploader stored its first path, each queued path is assumed
  // to take this fraction of --max-lag.
  static constexpr double kUnknownPaceFraction = 0.5;
  // A grant of paths is capped here (a pace measured near zero).
  static constexpr uint64_t kMaxPaths = 1 << 20;

  // `previous`: the state the last decision left (for the hysteresis).
  ThrottleDecision Decide(const Backlog& backlog, ThrottleState previous) const;
  // The age the newest queued change is expected to reach when stored (the
  // lag --max-lag bounds; 0 when nothing is pending).
  double ExpectedLag(const Backlog& backlog) const;
  // The seconds each queued path is expected to take (measured pace or the
  // assumed one, never faster than the current stall).
  double SecondsPerPath(const Backlog& backlog) const;
  const LagBounds& bounds() const { return bounds_; }

 private:
  LagBounds bounds_;
};

// "9.1 MiB", "512 B": sizes as the reasons and the human status show them.
std::string HumanBytes(uint64_t n);

}  // namespace scribefs
