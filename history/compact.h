// Background maintenance of a target's timeline: compaction of small delta
// segments into larger ones (litestream's levels) and periodic bases, so that
// a restore, the daemon's history loader and `timeline` read a few segments
// instead of every level-0 delta since the beginning (with the replicator's
// 5 s --history-interval, 17,280 a day).
//
// Decisions are pure (PlanCompaction, BaseDue); the I/O (RunCompaction,
// WriteBaseIfDue) goes through HistoryStore.
//
// Compaction: in each run of consecutive level-L deltas (same level, no seq
// gap between them), every complete group of fanout[L] segments, oldest
// first, is merged into one level-(L+1) delta covering the group's whole seq
// range. The merged segment is WRITTEN FIRST, the inputs deleted after: a
// crash in between leaves both, ListSegments hides the inputs (a delta within
// one of a higher level), and the next run deletes them as leftovers. Nothing
// is lost: a merged delta holds every entry of its inputs with the same seqs
// and times, so the tree at every instant is the same (replay.h).
//
// Bases: a base (the whole tree at the newest stored seq) is written when the
// newest one is older than --base-interval (or more than `every_entries`
// entries were stored since). LoadTimeline starts from the newest base at or
// before the instant asked for, so a restore replays only what follows it.
// A prune (retention.h) deletes bases before the window's start that are not
// kept points, like any other segment there.
//
// One maintainer per target at a time (the daemon's prune task, or
// `scribectl prune --compact`); concurrent appends by the replicator are safe
// (it only adds level-0 deltas after the newest seq). Not thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "history/history_store.h"
#include "history/retention.h"

namespace scribefs::history {

struct CompactionPolicy {
  // fanout[L]: how many consecutive level-L deltas make one of level L+1.
  // Levels without an entry (or with one below 2) are not compacted. With the
  // replicator's 5 s interval: 12 level-0 deltas = 1 min, 60 of those = 1 h,
  // 24 of those = 1 day.
  std::vector<uint32_t> fanout = {12, 60, 24};
  // At most this many entries per merged segment: a group holding more is
  // written as several consecutive segments of the next level.
  uint64_t max_entries = 100'000;
};

// Level-`level` deltas to merge into level+1, consecutive and contiguous.
struct CompactionGroup {
  int level = 0;
  std::vector<SegmentRef> inputs;
};

struct CompactionPlan {
  std::vector<CompactionGroup> groups;
  // Deltas a higher level already covers (a compaction that crashed before
  // its deletes): safe to delete.
  std::vector<SegmentRef> leftovers;
  bool empty() const { return groups.empty() && leftovers.empty(); }
};

// `list` as HistoryStore::ListSegments gives it. Pure.
CompactionPlan PlanCompaction(const SegmentList& list, const CompactionPolicy& policy);

// Splits `counts` (entries per input, in order) into consecutive runs of at
// most `max_entries` entries each (a single input above it is a run of its
// own); returns the index where each run starts. Pure.
std::vector<size_t> SplitByEntries(const std::vector<uint64_t>& counts, uint64_t max_entries);

struct CompactionOptions {
  CompactionPolicy policy;
  // False leaves the inputs in place after writing the merged segments: what
  // a crash between the two steps leaves (for tests).
  bool delete_inputs = true;
  // Set by another thread to stop at the next group (ECANCELED); as safe as
  // a crash.
  const std::atomic<bool>* cancel = nullptr;
};

struct CompactionReport {
  uint64_t passes = 0;  // plans carried out (a merge can make a group of the next level)
  uint64_t segments_read = 0, segments_written = 0, segments_deleted = 0;
  uint64_t leftovers_deleted = 0;                // of those, covered leftovers of an earlier crash
  uint64_t deltas_before = 0, deltas_after = 0;  // listed deltas (covered ones excluded)
};

// Plans and carries out compaction until nothing is left to merge.
StoreResult<CompactionReport> RunCompaction(HistoryStore& history,
                                            const CompactionOptions& options = {});

// ---- periodic bases ------------------------------------------------------------

struct BasePolicy {
  // A new base once the newest one (or the start of history) is this much
  // older than the newest stored entry; <= 0: not by time.
  int64_t interval_ns = 3600 * kNsPerSecond;
  // Or once this many entries were stored after it; 0: not by count.
  uint64_t every_entries = 0;
};

// What the decision looks at: the timeline from the newest base on.
struct BaseFacts {
  std::optional<StatePoint> newest_base;  // its last_seq and time
  uint64_t latest_seq = 0;                // the newest delta's last_seq
  int64_t first_time_ns = 0;              // the oldest entry after the newest base (or in history)
  int64_t latest_time_ns = 0;             // the newest entry's time
  uint64_t entries_since = 0;             // entries after the newest base
};

// Whether a base at latest_seq is due. Never when no entry was stored after
// the newest base (a base adds nothing then). Pure.
bool BaseDue(const BaseFacts& facts, const BasePolicy& policy);

// The facts of `segments` as LoadTimeline(Latest) returns them (the newest
// base, if any, then the deltas after it). Pure.
BaseFacts FactsOf(const std::vector<Segment>& segments);

struct BaseReport {
  std::optional<SegmentRef> written;  // the base written, if one was due
  uint64_t segments_read = 0;         // what building it (or deciding) loaded
  uint64_t headers_read = 0;          // segment headers read to decide (ranged reads)
};

// Writes a base at the newest stored seq if BaseDue says so (after loading
// the timeline from the newest base). Immutable and deterministic: written
// twice, it is the same bytes.
StoreResult<BaseReport> WriteBaseIfDue(HistoryStore& history, const BasePolicy& policy);

}  // namespace scribefs::history
