// Prune: deletes the history a retention policy (retention.h) no longer
// needs, crash-safely. The I/O half; the decisions are retention.h's.
//
// Order, so that kill -9 at any moment leaves every retained point
// restorable and the next prune finishes the job:
//   1. list and load every segment; list the checkpoints;
//   2. decide (DecideRetention, PlanPrune);
//   3. WRITE the bases of the kept points and the sentinel deltas (immutable
//      and deterministic: written twice, they are the same bytes);
//   4. delete the segments no kept point needs;
//   5. mark: the chunks referenced by every retained base and delta, plus
//      those of any segment that appeared since step 1 (a concurrent writer);
//   6. sweep: delete the chunks not marked whose Last-Modified is older than
//      the grace period. A chunk uploaded for an entry that is not in a
//      segment yet is unreferenced until its segment is written: the grace
//      must be longer than that (default 1 h; the writer stores a segment
//      every few seconds).
// A crash after 3 leaves extra bases (kept next time, or deleted when no
// point needs them); after 4, unreferenced chunks that the next sweep takes.
//
// Not thread-safe; one prune per target at a time (a second one running at
// once is harmless to retained points, but may do the same work twice).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "history/history_store.h"
#include "history/retention.h"
#include "uploader/object_store.h"

namespace scribefs::history {

inline constexpr int64_t kDefaultPruneGraceNs = 3600 * kNsPerSecond;

struct PruneOptions {
  RetentionPolicy policy;
  int64_t grace_ns = kDefaultPruneGraceNs;
  bool dry_run = false;           // decide and count; write and delete nothing
  std::optional<int64_t> now_ns;  // default: the real-time clock
  HistoryOptions history;
  // Set by another thread to stop early (ECANCELED) at the next step: the
  // daemon's shutdown. Stopping anywhere is as safe as a crash.
  const std::atomic<bool>* cancel = nullptr;
};

struct PruneReport {
  bool dry_run = false;
  int64_t now_ns = 0;
  RetentionDecision decision;
  uint64_t states = 0;                    // reachable stored states seen
  uint64_t checkpoints = 0;               // checkpoints in the target
  std::vector<SegmentRef> bases_written;  // (would be) written
  uint64_t sentinels_written = 0;
  std::vector<SegmentRef> segments_deleted;  // (would be) deleted
  uint64_t segment_bytes_deleted = 0;
  uint64_t segments_kept = 0, segment_bytes_kept = 0;
  uint64_t chunks_deleted = 0, chunk_bytes_deleted = 0;
  uint64_t chunks_kept = 0, chunk_bytes_kept = 0;          // referenced
  uint64_t chunks_in_grace = 0, chunk_bytes_in_grace = 0;  // unreferenced, too young
};

// Runs a prune of the history in `store` (see the top of this file).
StoreResult<PruneReport> Prune(ObjectStore& store, const PruneOptions& options);

// The checkpoints in the target as retention points: name, journal seq and
// time, read from the start of each manifest (uploader/checkpoint.h).
StoreResult<std::vector<CheckpointPoint>> ListCheckpointPoints(ObjectStore& store);

}  // namespace scribefs::history
