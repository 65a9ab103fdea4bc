// Checkpoint manifests: what a named checkpoint stores in the target.
//
// A checkpoint is taken while the mount is paused and everything up to the
// pause record is uploaded; its manifest, stored under
// PREFIX/.scribefs/checkpoints/NAME.json, lists every object the target then
// holds for the mount (from the journal's `objects` table): path, key, type,
// size, mode, uid, gid, mtime_ns, etag, sha256, and version_id when the bucket
// is versioned. With a versioned bucket the manifest stays restorable after
// later writes overwrite the objects.
//
// The manifest format (and its reader) belongs to uploader/object_layout.h;
// entries are sorted by path.
//
// Plain functions; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "journal/reader.h"
#include "journal/remote_index.h"
#include "uploader/object_layout.h"
#include "uploader/object_store.h"

namespace scribefs {

inline constexpr size_t kMaxCheckpointName = 100;

// Names: 1..100 characters from [A-Za-z0-9._-], not starting with '.' (so no
// "." or "..", no hidden names) and no '/'. EINVAL with the reason otherwise.
Status ValidateCheckpointName(std::string_view name);
// ".scribefs/checkpoints/NAME.json" (relative to the target's prefix).
std::string CheckpointManifestKey(std::string_view name);

// The objects table as of one moment, for a manifest written afterwards.
//
// Take() runs while the mount is paused and everything up to the pause is
// uploaded. It opens a read transaction on a connection of its own and
// counts the paths in it, which fixes the snapshot (SQLite starts a read
// transaction at its first read). Writers may resume right after: the
// snapshot keeps seeing the table as it was at the pause (the WAL keeps the
// pages it needs until it ends), so WriteManifest, run later, writes that
// state row by row, in constant memory whatever the number of paths.
// Not thread-safe; one WriteManifest per snapshot.
class ManifestSnapshot {
 public:
  // target: whose objects (journal/targets.h).
  static Result<std::unique_ptr<ManifestSnapshot>> Take(const std::string& journal_path,
                                                        int64_t target);
  uint64_t paths() const { return paths_; }
  // Writes the manifest to fd (at its offset); *bytes gets its size.
  Status WriteManifest(int fd, const ManifestHeader& header, uint64_t* bytes);
  // A captured checkpoint (issue 12): writes the rows of the snapshot whose
  // path `skip` does not name (the frozen paths, whose entries are made when
  // the checkpoint is stored) to fd as manifest rows (see ManifestRows
  // below); *rows gets their number. Either this or WriteManifest, once.
  Status WriteRows(int fd, const std::function<bool(const std::string&)>& skip, uint64_t* rows);

 private:
  ManifestSnapshot() = default;
  // Declared in the order they are made: destroyed index first, reader last.
  std::unique_ptr<JournalReader> reader_;
  std::optional<JournalReader::Snapshot> snapshot_;
  std::unique_ptr<RemoteIndex> index_;
  uint64_t paths_ = 0;
};

// Manifest rows: the part of a manifest a captured checkpoint knows at its
// capture, kept in a file of the state directory until it is stored. One
// entry per line (a JSON object with the fields of ManifestEntry), sorted by
// path. Written by ManifestSnapshot::WriteRows, read only by
// WriteMergedManifest: this file is the one owner of the format.
//
// Writes the manifest to out_fd: the `rows` rows of the file at rows_path
// merged, in path order, with `extra` (any order; sorted here; a path in
// both is taken from extra). *bytes gets its size.
Status WriteMergedManifest(int out_fd, const ManifestHeader& header, const std::string& rows_path,
                           uint64_t rows, std::vector<ManifestEntry> extra, uint64_t* bytes);

// A checkpoint whose manifest is in the target.
struct StoredCheckpoint {
  std::string name;
  std::string key;
  uint64_t size = 0;
  int64_t mtime = 0;  // server's Last-Modified, unix seconds
};
StoreResult<std::vector<StoredCheckpoint>> ListStoredCheckpoints(ObjectStore& store);

}  // namespace scribefs
