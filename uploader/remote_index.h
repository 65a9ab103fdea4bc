// RemoteIndex: what the uploader knows the target holds, one row per path
// (the journal's `objects` table). It lets the uploader skip uploads of
// unchanged files, copy renamed content server-side, delete what it stored
// under a path that is gone, and re-send only changed parts of large files.
//
// Reads use the index's own read-only connection; writes are SQL run inside the
// journal writer's group transaction (Journal::Apply), so the uploader never
// competes with the mount for SQLite's write lock. Not thread-safe: one
// RemoteIndex per thread.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "journal/sqlite_util.h"

namespace scribefs {

struct RemoteObject {
  std::string path;
  std::string type;  // file | dir | symlink | special
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t ino = 0;
  std::string etag, sha256, version_id;
  uint64_t part_size = 0;  // multipart part size it was stored with; 0 = one PUT
  int64_t seq = 0;         // last journal record it reflects
  int64_t uploaded_ns = 0;
};

class RemoteIndex {
 public:
  static Result<std::unique_ptr<RemoteIndex>> Open(const std::string& journal_path);

  Result<std::optional<RemoteObject>> Get(const std::string& path);
  // Rows at `dir` itself and below it ("dir/..."); every row when dir is "".
  Result<std::vector<RemoteObject>> Subtree(const std::string& dir);
  Result<std::vector<RemoteObject>> All() { return Subtree(""); }

  // Statements for Journal::Apply.
  static Status Upsert(sqlite3* db, const RemoteObject& o);
  static Status Erase(sqlite3* db, const std::string& path);

 private:
  explicit RemoteIndex(SqliteDb db) : db_(std::move(db)) {}
  SqliteDb db_;
};

}  // namespace scribefs
