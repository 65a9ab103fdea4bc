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
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "uploader/object_layout.h"
#include "uploader/object_store.h"

namespace scribefs {

inline constexpr size_t kMaxCheckpointName = 100;

// Names: 1..100 characters from [A-Za-z0-9._-], not starting with '.' (so no
// "." or "..", no hidden names) and no '/'. EINVAL with the reason otherwise.
Status ValidateCheckpointName(std::string_view name);
// ".scribefs/checkpoints/NAME.json" (relative to the target's prefix).
std::string CheckpointManifestKey(std::string_view name);

// Builds the manifest from the `objects` table of the journal at
// journal_path (one read transaction). *paths gets the number of entries.
Result<nlohmann::ordered_json> BuildManifest(const std::string& journal_path,
                                             const ManifestHeader& header, size_t* paths);

// A checkpoint whose manifest is in the target.
struct StoredCheckpoint {
  std::string name;
  std::string key;
  uint64_t size = 0;
  int64_t mtime = 0;  // server's Last-Modified, unix seconds
};
StoreResult<std::vector<StoredCheckpoint>> ListStoredCheckpoints(ObjectStore& store);

}  // namespace scribefs
