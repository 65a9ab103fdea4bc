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
#include <optional>
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

// verify --history (issue 11, item 6): every chunk that the target's history
// references (every entry of every base and delta ListSegments returns) must
// exist with its size; with `deep`, also with its SHA-256 (each chunk is read
// in ranged GETs of chunk_size and hashed). The chunks present are found by
// one List of .scribefs/chunks/ rather than a HEAD per chunk. Read-only.
struct HistoryVerifyConfig {
  bool deep = false;
  int workers = 8;                   // parallel GETs with deep
  uint64_t chunk_size = 4ull << 20;  // bytes per ranged GET
  size_t max_uses = 10;              // paths and seqs listed per chunk
};

// One entry that needs a chunk.
struct HistoryChunkUse {
  std::string path;
  uint64_t seq = 0;
  std::string segment;  // the key of the segment holding the entry
};

struct HistoryChunkProblem {
  std::string key;                       // .scribefs/chunks/ab/ab…
  std::string kind;                      // "missing", "size" (short or long), "corrupt"
  std::string detail;                    // "size 10, expected 4096"; "SHA-256 is 1f2e…"
  uint64_t size = 0;                     // expected
  std::vector<HistoryChunkUse> used_by;  // the first max_uses, in seq order
  uint64_t uses = 0;                     // all of them
};

struct HistoryVerifyReport {
  uint64_t segments = 0;  // bases and deltas read
  uint64_t entries = 0;
  uint64_t chunks = 0;  // distinct chunks referenced
  uint64_t chunk_bytes = 0;
  uint64_t bytes_hashed = 0;                    // deep
  std::optional<uint64_t> first_seq, last_seq;  // what the history covers
  std::vector<HistoryChunkProblem> problems;    // sorted by key
  std::vector<VerifyError> errors;              // segments or chunks that could not be read
  double seconds = 0;

  bool ok() const { return problems.empty() && errors.empty(); }
};

// Fails only when the segments or the chunks cannot be listed.
Result<HistoryVerifyReport> VerifyHistory(ObjectStore* store, const HistoryVerifyConfig& config);

}  // namespace scribefs::ctl
