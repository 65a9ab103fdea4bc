// OrphanSweep: after an unclean stop, finds objects in the target that no
// journal row accounts for and hands their paths to the uploader.
//
// Why: a daemon killed with kill -9 (or a crash, or power loss) may leave
// requests in flight that the server completes after the process is gone; a
// PUT of a file that the next daemon has meanwhile found deleted (and deleted
// remotely) then lands after that DELETE and leaves an orphan in the bucket.
// No request can be cancelled on the server, so the next daemon looks again
// once such requests must have ended: `delay` after its start, it lists the
// target and, for every key whose path has no row in the `objects` table
// (what the uploader knows it stored), journals a `reconcile` record (detail
// {"reason":"unaccounted"}). The uploader then treats the path like any
// other: a path that exists is uploaded as it is now, one that does not is
// deleted. Excluded paths and the reserved .scribefs/ prefix are left alone.
//
// One sweep per Schedule(); it is retried every 5 s while the target cannot
// be listed. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "journal/journal.h"
#include "uploader/object_store.h"

namespace scribefs {

class OrphanSweep {
 public:
  // journal and store must outlive this object.
  // target: the store's id in the journal (journal/targets.h).
  OrphanSweep(Journal* journal, ObjectStore* store, int64_t target,
              std::function<bool(const std::string&)> excluded);
  ~OrphanSweep();  // cancels a sweep not yet run, joins
  OrphanSweep(const OrphanSweep&) = delete;
  OrphanSweep& operator=(const OrphanSweep&) = delete;

  // Runs one sweep `delay` from now, on a thread of its own.
  void Schedule(std::chrono::milliseconds delay);
  // Ok at once when no sweep is scheduled or it has run; else waits for it
  // (ETIMEDOUT at the deadline, ECANCELED when cancelled() turns true).
  Status Wait(std::chrono::steady_clock::time_point deadline,
              const std::function<bool()>& cancelled = {});
  bool pending();

  struct Report {
    size_t listed = 0;       // keys in the target (without .scribefs/)
    size_t unaccounted = 0;  // of those, paths journaled for the uploader
    double seconds = 0;
  };
  // One sweep now, on the caller's thread.
  Result<Report> RunOnce();

 private:
  void Loop(std::chrono::steady_clock::time_point due);

  Journal* const journal_;
  ObjectStore* const store_;
  const int64_t target_;
  const std::function<bool(const std::string&)> excluded_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace scribefs
