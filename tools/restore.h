// Restorer: copies a target (what the uploader stored) back into a local
// directory - the engine of `scribectl restore`, with no command line in it.
//
// What is restored: either every object the target holds now (a listing,
// without the reserved ".scribefs/" prefix and excluded paths), or exactly
// the entries of a checkpoint manifest (uploader/checkpoint.h), each by its
// version id when the manifest has one. Regular files, directories (markers
// "path/" and directories implied by the keys below them), symlinks (the
// object body is the link target) and special files (FIFOs, sockets, device
// nodes: empty objects with their mode and rdev), with their mode, mtime and,
// with same_owner, uid/gid from the object metadata (uploader/replicator.cc:
// x-amz-meta-mode, -uid, -gid, -mtime, -scribefs-mtime-ns, -rdev). Objects
// stored by other tools (no metadata) become files 0644 with the server's
// Last-Modified as mtime. Directory attributes are set last, deepest first,
// so that restoring their contents does not change them again.
//
// Safety: nothing is ever written outside the root directory.
//  - Keys are checked first (UnsafeKeyReason): an absolute key, an empty,
//    "." or ".." component, or a NUL is refused; so is every key below a
//    symlink object of the same restore ("link" -> "/tmp", then "link/evil").
//  - Every path is opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)
//    from the root (common/beneath.h), and directories are created one
//    component at a time without following symlinks, so a symlink already in
//    the root's tree (planted, or restored earlier) is never followed: keys
//    below it are refused.
//  - Files are written to a temporary name in their directory
//    (".NAME.scribefs-restore-XXXXXX") and renamed over the real name only
//    once complete, verified and given their attributes: an interrupted
//    restore never leaves a partial file under a real name.
// Refused keys are reported (RestoreSummary::refused) and nothing is written
// for them.
//
// Trust: whoever can write the target chooses the metadata, so by default
// (as tar does for ordinary users) it gives no privilege: everything belongs
// to the user running the restore, set-user-ID and set-group-ID bits are
// dropped (RestoredPermissions), and device nodes are left out with a reason
// (LeftOutReason, RestoreSummary::left_out). same_owner and special restore
// them as stored. Owner, mode and mtime are always set through a descriptor of
// the inode that was created or checked (never by name), so a name swapped in
// the destination meanwhile is not what gets them.
//
// Resume: a regular file that exists with the object's size and mtime is
// skipped when its content also matches the hash that is known: the
// manifest's SHA-256 with a checkpoint; otherwise the ETag when it is a plain
// MD5 (single-part uploads); for multipart objects without a SHA-256, size and
// mtime decide. Its mode (and owner) are corrected if needed. A symlink with
// the same target, a special file of the same type (and rdev), and a
// directory that exists are kept likewise.
//
// Verification: a download is checked before it is renamed into place: the
// manifest's SHA-256 (checkpoint), or the MD5 of a single-part ETag; a
// checkpoint entry without a version id must still have the manifest's ETag,
// otherwise the object was overwritten since the checkpoint (an unversioned
// bucket) and the path fails, named, with nothing written.
//
// Parallelism: `workers` threads download at once; files larger than
// range_threshold are fetched as ranges of range_size by several workers,
// all of which must see the same ETag.
//
// Thread safety: Run() once, from one thread. progress() and
// AbandonTempFiles() may be called from another thread while Run() runs.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "history/replay.h"
#include "uploader/exclude_filter.h"
#include "uploader/object_store.h"

namespace scribefs::ctl {

struct RestoreOptions;

// The permission bits (07777) restore gives an entry whose stored st_mode is
// `mode`: all of them with same_owner; otherwise without set-user-ID, and
// without set-group-ID except on a directory (there it only makes new
// entries inherit the directory's group, which is then the restoring user's).
mode_t RestoredPermissions(mode_t mode, const RestoreOptions& options);

// Why an entry with the stored st_mode `mode` (and rdev, when has_rdev) is
// left out under `options` (a device node without special), or "".
std::string LeftOutReason(mode_t mode, bool has_rdev, dev_t rdev, const RestoreOptions& options);

// Why `key` (relative to the target root; a directory marker ends in "/")
// cannot be restored safely, or "" when it can: empty, absolute (leading
// "/"), an empty, "." or ".." component, a NUL byte.
std::string UnsafeKeyReason(std::string_view key);

// restore --at (tools/restore_at.h): a tree replayed from the target's
// history instead of the objects the target holds. Every attribute comes from
// the tree (nothing is asked of the mirror); a file's content is written by
// write_content, which checks each chunk before writing it
// (HistoryStore::RestoreFile). A regular file already in the destination is
// kept when its size, mtime and the SHA-256 of each of its chunks match.
struct HistoryRestoreSource {
  const history::Tree* tree = nullptr;
  // Writes state's content into fd from offset 0 (and truncates it to the
  // size). Called by several workers at once: must be thread-safe.
  std::function<StoreStatus(const history::PathState& state, int fd)> write_content;
};

struct RestoreOptions {
  // When set, the tree to restore (the checkpoint and the listing are not used).
  const HistoryRestoreSource* history = nullptr;
  std::string checkpoint;  // manifest to restore; empty: the target's objects now
  std::string path;        // "" = everything; else this path and everything below it
  int workers = 8;
  // chown to the stored uid/gid (needs root), and keep set-user-ID and
  // set-group-ID bits (--same-owner).
  bool same_owner = false;
  bool special = false;  // create device nodes with their stored rdev (--special; needs root)
  uint64_t range_threshold = 64ull << 20;
  uint64_t range_size = 16ull << 20;
  int max_attempts = 5;  // per request, for retryable errors (backoff 0.25 s doubling)
};

struct RestoreFailure {
  std::string path;
  std::string error;
};

struct RestoreRefusal {
  std::string key;  // as the target (or the manifest) names it
  std::string reason;
};

struct RestoreSummary {
  uint64_t restored = 0;  // paths written or whose attributes were set
  uint64_t skipped = 0;   // paths already right (the resume rule)
  uint64_t excluded = 0;  // left out by the exclude filter
  uint64_t bytes = 0;     // object bytes downloaded
  std::vector<RestoreFailure> failed;
  std::vector<RestoreRefusal> refused;
  // Not restored by policy (device nodes without `special`), with the reason.
  std::vector<RestoreFailure> left_out;
  double seconds = 0;
  std::string manifest_target;  // checkpoint: the target its manifest names
};

// Live counters for a progress line.
struct RestoreProgress {
  std::atomic<uint64_t> total_paths{0};
  std::atomic<uint64_t> done_paths{0};
  std::atomic<uint64_t> total_bytes{0};
  std::atomic<uint64_t> done_bytes{0};
};

// What a restore would do, without writing anything (--dry-run): every
// path it would restore, and whether something is there now. An existing
// path is replaced by the restore unless it is already right (see Resume);
// an existing directory is kept (its attributes set).
struct RestorePlanEntry {
  std::string path;
  bool directory = false;
  bool exists = false;  // something (of any type) is at path in the destination now
};
struct RestorePlan {
  std::vector<RestorePlanEntry> entries;  // sorted by path
  std::vector<RestoreRefusal> refused;
  uint64_t excluded = 0;
};

class Restorer {
 public:
  // `store` must outlive the Restorer; `root_fd` is the open destination
  // directory (the Restorer does not close it); `filter` may be null.
  Restorer(ObjectStore* store, int root_fd, const ExcludeFilter* filter, RestoreOptions options);
  ~Restorer();
  Restorer(const Restorer&) = delete;
  Restorer& operator=(const Restorer&) = delete;

  // Restores. Per-path problems are in the summary; a Status error means the
  // restore could not start or went wrong as a whole (listing failed, no
  // such checkpoint, unreadable manifest).
  Result<RestoreSummary> Run();
  // Lists and resolves like Run() but writes nothing (root_fd may be -1: a
  // destination that does not exist yet). Call Plan() or Run(), not both.
  Result<RestorePlan> Plan();

  const RestoreProgress& progress() const { return progress_; }

  // Removes the temporary files of downloads in progress and makes every
  // later attempt to create one fail; for a process about to exit on a
  // signal (Ctrl-C). Safe to call from any thread; idempotent.
  void AbandonTempFiles();

 private:
  struct Impl;  // the whole engine (tools/restore.cc)
  RestoreProgress progress_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace scribefs::ctl
