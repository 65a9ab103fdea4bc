// Verify: compares a target (ObjectStore) with a local directory, the way the
// uploader lays it out (key = relative path, "dir/" markers, symlinks as
// objects holding the link target, special files as empty objects with their
// mode; x-amz-meta-mode/uid/gid/mtime/scribefs-mtime-ns). Read-only on both
// sides.
//
// Compared per path:
//   directory       the "dir/" marker exists; mode and owner
//   regular file    size; content by SHA-256 (each object is read in ranged
//                   chunks, so memory stays bounded; or, quick, the mtime
//                   metadata instead of the content); mode, owner, mtime
//   symlink         the link target (the object's body); mode type
//   fifo, socket,   the object exists with the same mode (and rdev for
//   device          devices)
// Paths the ExcludeFilter excludes, paths below an excluded directory, and
// the reserved .scribefs/ prefix are ignored on both sides.
//
// The local tree is read as it is while the comparison runs; a file that
// changes meanwhile may be reported as different. Thread-compatible: one
// Verify() call at a time per report; uses config.workers threads inside.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "uploader/exclude_filter.h"
#include "uploader/object_store.h"

namespace scribefs::ctl {

struct VerifyConfig {
  bool quick = false;                // size + mtime metadata instead of content
  std::string prefix;                // only this relative path and below ("" = everything)
  int workers = 8;                   // parallel store requests
  uint64_t chunk_size = 4ull << 20;  // bytes per ranged GET (and per read of the local file)
  // Called on the calling thread every ~200 ms while paths are compared.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct VerifyDifference {
  std::string path;    // object key form: "dir/" for directories
  std::string reason;  // "size: local 10, target 12; mode: ..."
};

struct VerifyError {
  std::string path;
  std::string error;
};

struct VerifyReport {
  uint64_t checked = 0;                     // distinct paths looked at, on either side
  uint64_t bytes_compared = 0;              // content bytes downloaded and hashed
  std::vector<std::string> missing;         // local paths without an object (key form), sorted
  std::vector<std::string> extra;           // objects without a local path, sorted
  std::vector<VerifyDifference> different;  // sorted by path
  std::vector<VerifyError> errors;          // paths that could not be compared
  double seconds = 0;

  bool has_differences() const { return !missing.empty() || !extra.empty() || !different.empty(); }
  bool identical() const { return !has_differences() && errors.empty(); }
};

// Normalizes a --path value: strips leading and trailing "/", refuses "."/".."
// components and empty ones in the middle (EINVAL).
Result<std::string> NormalizeVerifyPrefix(const std::string& path);

// Compares `store` with the directory `dir`. Fails only when the comparison
// cannot start or the listing fails (dir unreadable, store unreachable);
// per-path failures go to report.errors.
Result<VerifyReport> Verify(ObjectStore* store, const std::string& dir, const ExcludeFilter& filter,
                            const VerifyConfig& config);

}  // namespace scribefs::ctl
