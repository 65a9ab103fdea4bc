// Reconciliation: finds what changed in DATADIR without the journal knowing
// (scribefs was not mounted, or something wrote to DATADIR behind the mount)
// by comparing the backing tree with what the target holds (the objects
// table), and journals a `reconcile` record for every path that differs:
// new, changed (type, size, mtime, mode, owner) or missing locally; with
// ReconcileOptions::content_since_ns also "content": a regular file whose
// SHA-256 differs from the one stored although size and mtime match. The
// uploader then treats each as a whole-file change (or a delete).
//
// A path that differs but has journal records still to upload (pending or
// uploading) is left to those records: the uploader stores every changed
// path from its current local state anyway, so a reconcile record would only
// repeat them (and make a large file go up whole instead of by its changed
// parts). It is counted as `pending`. Which records cover a path:
//   - any unfinished record naming it (path, or new_path of a rename/link;
//     not the source of a link, which the uploader does not look at again);
//   - an unfinished rename to one of its ancestor directories (the uploader
//     walks a renamed directory and stores everything below it as it is now);
//   - for a path gone locally: an unfinished record naming one of its
//     ancestors that is gone too (the uploader deletes everything it stored
//     below a path it finds gone, e.g. the old name of a renamed directory).
//
// Two uses:
//   - at start-up, before the mount serves and the uploader runs: nothing
//     changes under the scan, so the snapshot it starts from stays true;
//   - `rescan` on a live mount (options.quiesce set): the walk runs while the
//     mount keeps changing things, see ReconcileOptions::quiesce.
//
// Not thread-safe in itself; run one at a time per journal (the daemon
// serializes rescans).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/status.h"
#include "journal/journal.h"
#include "journal/targets.h"

namespace scribefs {

struct ReconcileReport {
  uint64_t scanned = 0;    // local entries looked at
  uint64_t new_paths = 0;  // not in the target: reconcile record "new"
  uint64_t changed = 0;    // in the target, but different: "changed"
  uint64_t missing = 0;    // in the target, gone locally: "missing"
  uint64_t pending = 0;    // differ, but journal records still to upload cover them
  uint64_t hashed = 0;     // regular files whose content was compared
  uint64_t content = 0;    // of those, differing in content only: "content" (also in changed)
  double seconds = 0;      // the whole run
  double hold_ms = 0;      // live: how long mutations through the mount were held
};

struct ReconcileOptions {
  // excluded(path) -> true: neither scanned nor reported. May be empty.
  std::function<bool(const std::string&)> excluded;
  // Live mount (rescan). The tree walk runs without holding anything: the
  // mount keeps changing DATADIR and the uploader keeps changing the objects
  // table meanwhile, so what the walk found is only a list of candidates.
  // Each candidate is then checked again inside quiesce(check), which must
  // run `check` while no mutation through the mount is in flight or can
  // start and every byte range the mount took is committed (the mutation
  // gate closed and drained, no pause record: PauseController::Hold). There,
  // a candidate counts only if it still differs from the objects table *as it
  // is now* and no unfinished record covers it (table and records read in
  // one SQLite read transaction, so an upload that finishes in between cannot
  // make a path look both stored-as-before and no longer pending). Every
  // change the mount made had its record committed before it reached DATADIR
  // (the journal invariant), so a difference the mount caused is covered by
  // such a record, or already stored: nothing the mount did is reported, and
  // nothing is lost, since a reported path is stored from its state at upload
  // time. The records are committed after quiesce returns; a mutation that
  // slips in between is journaled first and is harmless (records of one path
  // are uploaded in journal order, from the current state).
  // Empty: start-up (nothing changes during the scan; no second look).
  std::function<Status(const std::function<Status()>& check)> quiesce;
  // Polled during the walk; true ends the run with ECANCELED.
  std::function<bool()> cancelled;
  // Start-up after a power loss or kernel crash (daemon/startup_checks.h):
  // regular files that pass the quick check (type, owner, mode, size, mtime)
  // and whose ctime is at or after this time are read and their SHA-256
  // compared with the one the objects table holds; a difference, or no
  // stored SHA-256, is reported as "content". The ctime, which no
  // application can set back, bounds the files a lost record may concern.
  // Unset: the quick check only. Start-up only (ignored with quiesce).
  std::optional<int64_t> content_since_ns;
  // Goes into each record's detail as "scan" ("start" or "rescan").
  std::string scan = "start";
  // The target whose objects DATADIR is compared with (journal/targets.h).
  int64_t target = kFirstTarget;
  // Targets that hold the tree already: the records this scan adds are for
  // `target` alone and skipped on these (a target added to a running setup
  // is filled from the tree without sending anything to the others).
  std::vector<int64_t> held_by;
};

Result<ReconcileReport> ReconcileTree(Journal* journal, int root_fd,
                                      const ReconcileOptions& options);

}  // namespace scribefs
