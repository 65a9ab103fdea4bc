#include "fs/lag_policy.h"

#include <fmt/format.h>

#include <algorithm>

namespace scribefs {

std::string_view ThrottleStateName(ThrottleState s) {
  switch (s) {
    case ThrottleState::kNone: return "none";
    case ThrottleState::kSlowed: return "slowed";
    case ThrottleState::kHeld: return "held";
  }
  return "none";
}

std::string HumanBytes(uint64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n) / 1024;
  int u = 0;
  while (v >= 1024 && u < 3) v /= 1024, u++;
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

namespace {

// One bound's share of the decision: how far the backlog is along it, and how
// to name the two figures in a reason.
struct Pressure {
  double ratio = 0;
  std::string value, bound;  // "9.1 MiB", "8 MiB"; "2.3 s", "2 s"
  const char* what = "";     // "pending", "lag"
};

std::string Seconds(double s) { return fmt::format("{:.3g} s", s); }

}  // namespace

double LagPolicy::SecondsPerPath(const Backlog& backlog) const {
  double per_path = backlog.seconds_per_path.value_or(
      bounds_.max_lag_s ? *bounds_.max_lag_s * kUnknownPaceFraction : 0);
  return std::max(per_path, backlog.stalled_s);
}

double LagPolicy::ExpectedLag(const Backlog& backlog) const {
  if (backlog.oldest_pending_s <= 0) return 0;
  return backlog.oldest_pending_s +
         static_cast<double>(backlog.queued_paths) * SecondsPerPath(backlog);
}

ThrottleDecision LagPolicy::Decide(const Backlog& backlog, ThrottleState previous) const {
  Pressure worst;
  if (bounds_.max_lag_s && *bounds_.max_lag_s > 0) {
    double lag = ExpectedLag(backlog);
    double r = lag / *bounds_.max_lag_s;
    if (r >= worst.ratio) worst = {r, Seconds(lag), Seconds(*bounds_.max_lag_s), "lag"};
  }
  if (bounds_.max_pending_bytes && *bounds_.max_pending_bytes > 0) {
    double r = static_cast<double>(backlog.pending_bytes) /
               static_cast<double>(*bounds_.max_pending_bytes);
    if (r >= worst.ratio)
      worst = {r, HumanBytes(backlog.pending_bytes), HumanBytes(*bounds_.max_pending_bytes),
               "pending"};
  }
  ThrottleDecision d;
  if (bounds_.max_lag_s && *bounds_.max_lag_s > 0) {
    // The paths that still fit in the bound until the next decision.
    double per_path = SecondsPerPath(backlog);
    double room = *bounds_.max_lag_s - ExpectedLag(backlog);
    if (room <= 0)
      d.paths = 0;
    else if (per_path * static_cast<double>(kMaxPaths) <= room)
      d.paths = kMaxPaths;
    else
      d.paths = static_cast<uint64_t>(room / per_path);
    // Pace unknown (nothing stored yet): one path at a time until the first
    // upload, which also pays for the uploader's own start, tells it.
    if (!backlog.seconds_per_path)
      d.paths = std::min<uint64_t>(*d.paths, backlog.queued_paths == 0 ? 1 : 0);
  }
  if (worst.ratio >= 1) {
    d.state = ThrottleState::kHeld;
    d.reason = fmt::format("{} {} > {}", worst.what, worst.value, worst.bound);
  } else if (previous == ThrottleState::kHeld && worst.ratio > kRelease) {
    d.state = ThrottleState::kHeld;
    d.reason = fmt::format("{} {} > {:.0f} % of {} (a hold ends below it)", worst.what,
                           worst.value, kRelease * 100, worst.bound);
  } else if (worst.ratio >= kSoftStart) {
    d.state = ThrottleState::kSlowed;
    double overshoot = std::clamp((worst.ratio - kSoftStart) / (1 - kSoftStart), 0.0, 1.0);
    auto span = static_cast<double>((kMaxDelay - kMinDelay).count());
    d.delay = kMinDelay + std::chrono::microseconds(static_cast<int64_t>(span * overshoot));
    d.reason = fmt::format("{} {} >= {:.0f} % of {}", worst.what, worst.value, kSoftStart * 100,
                           worst.bound);
  }
  // While held, nothing new is admitted (the hold ends at the next decision).
  if (d.state == ThrottleState::kHeld && d.paths) d.paths = 0;
  return d;
}

}  // namespace scribefs
