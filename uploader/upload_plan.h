// UploadPlan: what the replicator does for one path, decided without I/O.
//
// PlanUpload is a pure function: from the path's local state (what lstat,
// and for a regular file fstat of the open file, said), the remote state
// (what the objects index says the target holds) and the change the journal
// recorded, it returns the steps that make the target match. PlanExecutor
// (uploader/plan_executor.h) performs them against an ObjectStore; the
// Replicator gathers the inputs and schedules and retries paths.
//
// The steps, in the order an executor runs them:
//   - Delete: keys (and, for a directory, unrecorded keys under its prefix)
//     of what is stored under a path that is gone or changed type;
//   - PutMarker / CopyRenamedChildren: a directory's marker object, and for
//     a directory renamed here the copy of everything below it;
//   - PutSymlink / PutEmpty: a symlink (body = its target) or a special file;
//   - RewriteMetadata: only mode/owner changed: copy the object onto itself
//     with new metadata (if that fails, the next steps store it again);
//   - CopyFrom: renamed or linked here with content unchanged: server-side
//     copy from the old name (a copy refused for good falls through to the
//     upload; the other CopyFrom steps are then skipped);
//   - PutFile / Multipart: the upload; a Multipart copies the parts no
//     recorded range touched from the stored object (UploadPartCopy) if its
//     ETag is still the one recorded.
// A step that stores the path's content ends the plan when it succeeds.
//
// Plain values; thread-safe.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/byte_range.h"
#include "uploader/object_store.h"
#include "journal/remote_index.h"

namespace scribefs {

// What is at the path now.
struct LocalState {
  bool exists = false;
  struct stat st {};         // lstat of the path
  struct stat file_st {};    // a regular file: fstat of the descriptor that will be read
  std::string link_target;   // a symlink: what it points to
};

// What the objects index says the target holds.
struct RemoteState {
  std::optional<RemoteObject> current;  // the row at the path
  // Rows at and below the path: needed when the path is gone, or holds
  // another type of object than stored (then a failed query leaves it empty).
  std::vector<RemoteObject> subtree;
  // The rows of PathChange::renamed_from, in that order (nullopt: none).
  std::vector<std::optional<RemoteObject>> sources;
};

// What the journal recorded for the path since its last upload.
struct PathChange {
  std::vector<std::string> renamed_from;  // content may be copied from there
  std::vector<ByteRange> dirty;           // byte ranges written
  bool content_changed = false;           // a write/create/truncate
  bool whole = false;                     // ranges do not describe the change
  int64_t max_seq = 0;
  // Something may be stored under the path that the index does not know.
  bool maybe_stored = false;
};

struct PlanOptions {
  bool delete_remote = true;  // --delete propagate
  uint64_t part_size = 8ull << 20;
};

// Copies at most this much server-side (S3's CopyObject limit).
inline constexpr uint64_t kMaxServerSideCopy = 5ull << 30;

namespace plan {

struct Delete {
  std::vector<std::string> keys;
  std::vector<std::string> erase;  // index rows to drop once deleted
  // Non-empty: also delete keys under this prefix that the index does not
  // know (a crash in the middle of copying a renamed directory).
  std::string list_prefix;
  // The path is gone: this is its whole upload (failing to update the index
  // fails it; the deleted rows count in stats). Else the old object of
  // another type goes before the new one is stored.
  bool gone = false;
};
struct PutMarker {};
struct CopyRenamedChildren {
  std::string from;  // the directory's old name
};
struct PutSymlink {};
struct PutEmpty {};
struct RewriteMetadata {
  RemoteObject stored;  // the current row
};
struct CopyFrom {
  RemoteObject source;
};
struct PutFile {};
struct Multipart {
  uint64_t part_size = 0;
  uint64_t parts = 0;
  // Non-empty: the parts marked in `copy` come from the stored object by
  // UploadPartCopy, if a HEAD still finds this ETag (else all are sent).
  std::string stored_etag;
  std::vector<bool> copy;
};

using Step = std::variant<Delete, PutMarker, CopyRenamedChildren, PutSymlink, PutEmpty,
                          RewriteMetadata, CopyFrom, PutFile, Multipart>;

}  // namespace plan

struct UploadPlan {
  // Why nothing is done, when steps is empty ("reserved", "kept",
  // "unchanged", "nothing stored"); a plan with steps has none.
  std::string skip_reason;
  bool skipped_unchanged = false;  // counts in ReplicatorStats::skipped_unchanged
  RemoteObject object;             // the row recorded once stored (without ETag etc.)
  Metadata metadata;               // x-amz-meta-* of the stored object
  std::vector<plan::Step> steps;
};

UploadPlan PlanUpload(const std::string& path, const LocalState& local, const RemoteState& remote,
                      const PathChange& change, const PlanOptions& options);

// The part size a file of `size` bytes is stored with: `preferred`, grown
// (in MiB) when the file would need more than kMaxParts parts.
uint64_t PartSizeFor(uint64_t size, uint64_t preferred);

}  // namespace scribefs
