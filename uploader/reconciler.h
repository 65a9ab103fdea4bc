// Start-up reconciliation: finds what changed in DATADIR while no daemon
// journaled it (scribefs was not mounted, or something bypassed the mount) by
// comparing the backing tree with what the target holds (the objects table),
// and journals a `reconcile` record for every path that differs: new,
// changed (type, size, mtime, mode, owner) or missing locally. The uploader
// then treats each as a whole-file change (or a delete).
//
// Runs before the mount serves, so nothing changes under it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/status.h"
#include "journal/journal.h"

namespace scribefs {

struct ReconcileReport {
  uint64_t scanned = 0;       // local entries looked at
  uint64_t new_paths = 0;     // not in the target
  uint64_t changed = 0;       // in the target, but different
  uint64_t missing = 0;       // in the target, gone locally
  double seconds = 0;
};

// excluded(path) -> true: neither scanned nor reported.
Result<ReconcileReport> ReconcileTree(Journal* journal, int root_fd,
                                      const std::function<bool(const std::string&)>& excluded);

}  // namespace scribefs
