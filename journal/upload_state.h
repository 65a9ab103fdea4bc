// UploadStateStore: the uploader's writes to the journal, i.e. the upload
// state of records (state, attempts, error, what was stored) and the
// uploader's counters (meta key "uploader"). The only writer of those
// columns besides the records' insertion by Journal::Commit.
//
// Every call is committed in the journal writer's next group transaction
// (Journal::Apply) and waits for it; a failure is the journal's sticky
// failure. Thread-safe (as Journal is); cheap to construct where needed.
#pragma once

#include <cstdint>
#include <span>
#include <string>

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
  explicit UploadStateStore(Journal* journal) : journal_(journal) {}

  // At start: uploads an earlier daemon had in flight did not finish, so
  // their records are pending again.
  Status ResetUploading();
  // Records of excluded paths (--exclude): skipped, never uploaded.
  Status MarkExcluded(std::span<const int64_t> seqs);
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
  // `scribectl retry`: failed records are pending again, their attempts reset.
  Status RequeueFailed();
  // History (uploader/history_recorder.h): done records above `seq` whose
  // entries no stored timeline segment holds (an earlier daemon stopped or
  // died before writing them) are pending again, so that their paths are
  // stored again and yield entries. Control records (pause, resume,
  // checkpoint) stay done: they have nothing to store.
  Status RequeueDoneAfter(int64_t seq);

 private:
  Journal* journal_;
};

}  // namespace scribefs
