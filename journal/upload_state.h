// UploadStateStore: the uploader's writes to the journal, i.e. the upload
// state of records (state, attempts, error, what was stored) and the
// uploader's counters (meta key "uploader"). The only writer of those
// columns besides the records' insertion by Journal::Commit, and of the
// table target_records.
//
// Each store writes the state of one target (journal/targets.h). With
// several targets, a record's own state is its state across them and each
// target's differing state is a row of target_records (the rule:
// journal/target_states.h); with one target (or none registered) the
// record's state is that target's and the calls write only the records
// table, as before targets existed.
//
// Every call is committed in the journal writer's next group transaction
// (Journal::Apply) and waits for it; a failure is the journal's sticky
// failure. Thread-safe (as Journal is); cheap to construct where needed.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace scribefs {

class Journal;

// What the target answered for a successful upload; empty fields are stored
// as NULL.
struct UploadedAs {
  std::string etag;
  std::string sha256;
  std::string version_id;
};

class UploadStateStore {
 public:
  // target: the target's id (Targets); any id when no target is registered.
  UploadStateStore(Journal* journal, int64_t target) : journal_(journal), target_(target) {}

  // At start: uploads an earlier daemon had in flight did not finish, so
  // their records are pending again.
  Status ResetUploading();
  // Records of excluded paths (--exclude): skipped, never uploaded.
  Status MarkExcluded(std::span<const int64_t> seqs);
  // Nothing to do on this target: it holds these paths already (the records
  // a new target's start-up reconciliation adds, see ReconcileOptions::
  // held_by). Skipped, with `why` as the record's note.
  Status MarkHeld(std::span<const int64_t> seqs, const std::string& why);
  // A failed attempt that will be retried: attempts and the error are shown
  // by `scribectl journal` while the outage lasts. counters: the uploader's
  // counters (JSON) to store with it.
  Status RecordAttempt(std::span<const int64_t> seqs, int64_t attempts, const std::string& error,
                       const std::string& counters);
  // The records are done: their effect is stored in the target as `as`.
  Status MarkUploaded(std::span<const int64_t> seqs, const UploadedAs& as,
                      const std::string& counters);
  // The records failed for good (until `scribectl retry`) with error.
  Status MarkFailed(std::span<const int64_t> seqs, const std::string& error,
                    const std::string& counters);
  // The records' path cannot be stored by any target (e.g. a key over 1,024
  // bytes): skipped with the reason, never retried, blocking nothing.
  Status MarkUnstorable(std::span<const int64_t> seqs, const std::string& reason,
                        const std::string& counters);
  // `scribectl retry`: records this target failed are pending again, their
  // attempts reset.
  Status RequeueFailed();
  // History (uploader/history_recorder.h): done records above `seq` whose
  // entries no stored timeline segment holds (an earlier daemon stopped or
  // died before writing them) are pending again, so that their paths are
  // stored again and yield entries. Control records (pause, resume,
  // checkpoint) stay done: they have nothing to store.
  Status RequeueDoneAfter(int64_t seq);

 private:
  // A final state (done, failed, skipped) of the records on this target,
  // with what the target answered or why.
  struct Final;
  Status MarkFinal(std::span<const int64_t> seqs, const Final& f, const std::string* counters);
  Journal* journal_;
  int64_t target_;
};

// The state of one record on one target, as UploadStateStore and Targets
// write it (inside a journal write transaction). attempts < 0 and unset
// fields keep what the record had.
struct TargetStateChange {
  int64_t target = 0;
  std::string state;
  int64_t attempts = -1;
  std::optional<std::string> error;
  std::optional<std::string> etag, sha256, version_id;
  int64_t state_ns = 0;
};
// The ids of every registered target, in id order.
Result<std::vector<int64_t>> TargetIds(sqlite3* db);
// Applies `change` (null: none, e.g. after a target was removed) to record
// seq and folds its rows over `targets` (journal/target_states.h).
Status FoldRecordTargets(sqlite3* db, int64_t seq, const std::vector<int64_t>& targets,
                         const TargetStateChange* change);

}  // namespace scribefs
