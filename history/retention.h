// Retention: which stored states of a target's history stay restorable, and
// what a prune may delete. Pure decisions, no I/O (prune.h does the I/O);
// thread-safe.
//
// The policy (restic's rules, over the stored states of the history):
//   --retention D        every state stored within D of now is restorable;
//   --keep-hourly N      the last state of each of the last N hours that
//                        have one (hours in local time);
//   --keep-daily N       the same per day (local calendar days);
//   --keep-checkpoints N the state of each of the N newest checkpoints.
// A "state" is the tree after one stored entry (or at a base): the tree does
// not change between two of them. The rules look at every state, newest
// first; states within the window are kept anyway, so what the rules add are
// the OLDER points. The window's start is the newest state stored at or
// before now - D: it is the state at every instant from the cutoff on until
// the next entry, so it is kept too.
//
// What a kept older point costs: a base segment at it (written before any
// delete; immutable and deterministic, so writing it twice is harmless), and
// a "sentinel" delta holding only the first entry after it, which tells a
// restore by TIME where the point's state ends (without it, an instant just
// after the point would meet the hole left by the deleted deltas and fail,
// although the tree at it is exactly the point's). Everything wholly before
// the window's start that no kept point needs is deleted.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "history/history_store.h"
#include "history/segment.h"

namespace scribefs::history {

inline constexpr int64_t kNsPerSecond = 1'000'000'000;

struct RetentionPolicy {
  int64_t retention_ns = 7 * 24 * 3600 * kNsPerSecond;  // --retention, >= 0
  int keep_hourly = 0;
  int keep_daily = 0;
  int keep_checkpoints = 0;
};

// "7d", "12h", "30m", "90s", "500ms", "2w", "0", "3600" (seconds) -> ns.
// EINVAL otherwise (negative, not finite, unknown unit).
Result<int64_t> ParseRetentionDuration(const std::string& text);
// The largest whole unit: "1w", "3d", "12h", "90s"; "0" for 0.
std::string FormatRetentionDuration(int64_t ns);

// One state of the history: the tree after the entry (or base) at seq.
struct StatePoint {
  uint64_t seq = 0;
  int64_t time_ns = 0;
  bool operator==(const StatePoint&) const = default;
};

// A checkpoint: the state at its pause record's seq.
struct CheckpointPoint {
  std::string name;
  uint64_t seq = 0;
  int64_t time_ns = 0;
};

struct KeptPoint {
  StatePoint state;
  std::vector<std::string> reasons;  // "window start", "hourly", "daily", "checkpoint NAME"
};

struct RetentionDecision {
  int64_t cutoff_ns = 0;  // now - retention
  // The newest state at or before the cutoff; nullopt when every state is
  // newer (nothing is old enough to prune).
  std::optional<StatePoint> window_start;
  // The kept points at or before the window's start (it included), by seq.
  std::vector<KeptPoint> older;
  // Checkpoints the rules chose that no stored state precedes (taken before
  // the history began): nothing to keep.
  std::vector<std::string> checkpoints_without_state;
};

// `states` in seq order (as a replay visits them), `checkpoints` in any order.
RetentionDecision DecideRetention(const std::vector<StatePoint>& states,
                                  const std::vector<CheckpointPoint>& checkpoints,
                                  const RetentionPolicy& policy, int64_t now_ns);

// ---- walking the timeline ---------------------------------------------------

// What one pass over all the segments, in seq order, saw.
struct TimelineWalk {
  // Every state a restore can reach (a base, or an entry that follows a base
  // or the start of history without a hole), in seq order.
  std::vector<StatePoint> states;
  // For each reachable state: the entry that follows it, if a segment holds
  // one (index-aligned with `states`).
  std::vector<std::optional<Entry>> next_entry;
};

// Replays `bases` (by last_seq) and `deltas` (by first_seq, without covered
// ones) as a restore would, calling on_state(point, tree) at every reachable
// state. Entries after a hole are unreachable until a base resynchronizes.
void WalkTimeline(const std::vector<const Segment*>& bases,
                  const std::vector<const Segment*>& deltas,
                  const std::function<void(const StatePoint&, const Tree&)>& on_state,
                  TimelineWalk* walk);

// ---- the plan -----------------------------------------------------------------

struct PrunePlan {
  // Bases to write: the kept points that have none yet.
  std::vector<StatePoint> bases_to_write;
  // Sentinel deltas to write: the first entry after each kept older point,
  // when the delta holding it is deleted. Keyed [point.seq + 1, entry.seq].
  std::vector<Segment> sentinels;
  // Segments to delete: deltas (covered ones too) wholly at or before the
  // window's start, and bases before it that are not a kept point. Never a
  // sentinel or base the plan writes.
  std::vector<SegmentRef> segments_to_delete;
};

// `list` as HistoryStore::ListSegments gives it; `walk` from WalkTimeline.
PrunePlan PlanPrune(const SegmentList& list, const RetentionDecision& decision,
                    const TimelineWalk& walk);

}  // namespace scribefs::history
