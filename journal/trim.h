// Trimming the journal (issue 11, item 5: a bounded local journal).
//
// Once the target holds the history (the replicator stores every settled
// change in timeline segments and then writes the meta key
// kMetaHistoryStoredThrough: every record up to that seq is in the target),
// the local copy of a finished record is redundant after --journal-retention.
// TrimJournal deletes, in batches, the records that are
//   - done or skipped (never pending, uploading or failed),
//   - at or below history_stored_through,
//   - older than the retention (time_ns <= now - retention),
//   - not pause, resume or checkpoint records (few; `scribectl checkpoints`
//     and restore --checkpoint read them), and
//   - not the last record of the journal (its seq is the journal's max seq,
//     which flush, stats and the next daemon's seq counter read).
// Without the meta key (history off, no target) nothing is deleted.
//
// Other tables: objects (the remote index) is keyed by path and only notes
// the seq it reflects, record_counts follows deletions by its trigger, meta
// is not tied to records, and the rows of target_records of deleted records
// go in the same batch: no table refers to a deleted record.
//
// Each batch is one transaction of the journal's one writer (Journal::Apply),
// so writers wait for at most one batch. The batch also records the trim
// point (kMetaTrimmedThrough and kMetaTrimmedThroughNs: the highest seq
// deleted and its time), which `scribectl journal` shows. Deleted pages go to
// SQLite's free list and are reused by later records: the file stays flat
// under steady load (tests/journal/trim_test.cc states the figures).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace scribefs {

class Journal;

// Every target's history holds the journal up to this seq (decimal): the
// least of the targets' own notes (NoteHistoryStoredThrough).
inline constexpr const char* kMetaHistoryStoredThrough = "history_stored_through";
// Written by TrimJournal (decimal seq; decimal ns since the epoch).
inline constexpr const char* kMetaTrimmedThrough = "trimmed_through";
inline constexpr const char* kMetaTrimmedThroughNs = "trimmed_through_ns";

struct TrimPolicy {
  int64_t retention_ns = 7LL * 86400 * 1'000'000'000;  // keep records newer than this
  int64_t batch_rows = 10'000;                         // rows per transaction
  int max_batches = 1'000'000;                         // per TrimJournal call
};

struct TrimResult {
  int64_t deleted = 0;
  int batches = 0;
  // The trim point after the call (also when this call deleted nothing);
  // nullopt when nothing was ever trimmed.
  std::optional<int64_t> trimmed_through;
  std::optional<int64_t> trimmed_through_ns;
};

// Parses a meta value written as a decimal seq or time; nullopt when absent
// or malformed (a malformed history_stored_through trims nothing).
std::optional<int64_t> ParseMetaInt(const std::optional<std::string>& value);

// The history of `target` (journal/targets.h) holds every record up to seq:
// its recorder calls this after each segment it stored. Notes it as the
// target's (meta key history_stored_through.ID) and sets
// kMetaHistoryStoredThrough to the least note of the registered targets
// that have one, so that trim never deletes a record one target's history
// still lacks. With no target registered (or none noted yet but this one),
// that is seq itself.
Status NoteHistoryStoredThrough(Journal& journal, int64_t target, int64_t seq);

// Deletes what the policy allows as of now_ns, batch by batch, until a batch
// deletes less than a full one (or max_batches). Errors are the journal's.
Result<TrimResult> TrimJournal(Journal& journal, const TrimPolicy& policy, int64_t now_ns);

}  // namespace scribefs
