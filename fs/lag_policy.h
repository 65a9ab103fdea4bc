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
  // Age of the oldest change not stored (0: none); LagMonitor passes the age
  // the last queued change is expected to reach (daemon/lag_monitor.h).
  double oldest_pending_s = 0;
  uint64_t pending_bytes = 0;   // bytes written locally, not stored yet
};

struct ThrottleDecision {
  ThrottleState state = ThrottleState::kNone;
  std::chrono::microseconds delay{0};  // kSlowed: each new mutation waits this long
  std::string reason;                  // "pending 9.1 MiB > 8 MiB"; empty for kNone
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
  // `previous`: the state the last decision left (for the hysteresis).
  ThrottleDecision Decide(const Backlog& backlog, ThrottleState previous) const;
  const LagBounds& bounds() const { return bounds_; }

 private:
  LagBounds bounds_;
};

// "9.1 MiB", "512 B": sizes as the reasons and the human status show them.
std::string HumanBytes(uint64_t n);

}  // namespace scribefs
