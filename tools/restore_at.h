// restore --at (issue 11): the tree of one instant of a target's history,
// with the errors a person can act on, and the restore of a checkpoint from
// history once its mirror objects have changed. The formats and the replay
// are history/'s; this file decides what to load and what to say, and hands
// the tree to the Restorer (tools/restore.h, HistoryRestoreSource), which
// keeps restore's safety rules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "history/history_store.h"
#include "tools/restore.h"
#include "uploader/object_store.h"

namespace scribefs::ctl {

// The error text for a target without timeline segments.
extern const char* const kNoHistoryMessage;

// What a target's history covers, from the segment headers.
struct HistoryCoverage {
  bool any = false;  // the target holds timeline segments
  uint64_t first_seq = 0, last_seq = 0;
  int64_t first_time_ns = 0, last_time_ns = 0;
};

// The header of a listed segment, read with a ranged GET (the whole object
// is not fetched).
StoreResult<history::SegmentHeader> ReadSegmentHeader(ObjectStore& store,
                                                      const history::SegmentRef& ref);

// The covered range of `list` (the oldest segment's start, the newest's end).
StoreResult<HistoryCoverage> ReadCoverage(ObjectStore& store, const history::SegmentList& list);

// "seqs 5..120, 2026-12-05 10:00:00.000 .. 2026-12-05 11:00:00.000" (local time).
std::string DescribeCoverage(const HistoryCoverage& c);

// --at TEXT: a plain integer is a seq, anything else a time (time_spec.h).
Result<history::Instant> ParseAt(std::string_view text, int64_t now_ns);

// "seq 120" or "2026-12-05 10:00:00.000 (local time)".
std::string DescribeInstant(const history::Instant& at);

// The tree of an instant, and how the Restorer writes its files.
struct HistoryRestore {
  history::Tree tree;
  HistoryRestoreSource source;  // points at tree: keep this object in place
  uint64_t seq = 0;             // the last stored change (or base) the tree includes
  int64_t time_ns = 0;          // when it was stored
  HistoryCoverage coverage;
};

// Loads the tree at `at`. Errors, each with a message to print as is:
// ENOENT no history (kNoHistoryMessage); ERANGE `at` is before the first
// stored state (the covered range named); ENODATA a timeline hole on the
// way (LoadTimeline's message); EINVAL a segment that does not decode.
Result<std::unique_ptr<HistoryRestore>> LoadHistoryRestore(ObjectStore& store,
                                                           const history::Instant& at);

// Every stored state in order, for the history of a path: all deltas, and a
// base wherever deltas before it were pruned (the deltas then start after
// it). A gap no base bridges is named in *holes ("seqs A..B") and skipped.
StoreResult<std::vector<history::Segment>> LoadAllSegments(ObjectStore& store,
                                                           const history::SegmentList& list,
                                                           std::vector<std::string>* holes);

// A checkpoint manifest's header fields (without reading its entries).
struct CheckpointHeader {
  int64_t time_ns = 0;
  uint64_t seq = 0;  // the pause record the checkpoint describes
};
StoreResult<CheckpointHeader> ReadCheckpointHeader(ObjectStore& store, const std::string& name);

// --checkpoint NAME on a target with history: the tree at the checkpoint's
// seq. nullptr (not an error) when the target has no history or it does not
// reach that seq yet: the manifest is restored as before.
Result<std::unique_ptr<HistoryRestore>> CheckpointFromHistory(ObjectStore& store,
                                                              const std::string& name);

}  // namespace scribefs::ctl
