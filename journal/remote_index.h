// RemoteIndex: what the uploader knows a target holds, one row per path
// (the journal's `objects` table, whose only owner this is; keyed by target
// and path, each RemoteIndex reads and writes one target's rows). It lets the
// uploader skip uploads of unchanged files, copy renamed content
// server-side, delete what it stored under a path that is gone, and re-send
// only changed parts of large files; reconciliation compares DATADIR with it.
//
// Reads use a read-only connection: the index's own (Open), or a
// JournalReader's (Over), so that they share the reader's snapshot. Writes go
// through the journal writer's group transaction (Journal::Apply), so the
// uploader never competes with the mount for SQLite's write lock. Not
// thread-safe: one RemoteIndex per thread.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "journal/sqlite_util.h"

namespace scribefs {

class Journal;
class JournalReader;

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
  // target: the target's id (journal/targets.h).
  static Result<std::unique_ptr<RemoteIndex>> Open(const std::string& journal_path, int64_t target);
  // Reads through reader's connection (and inside its snapshot, when one is
  // open). reader must outlive the index.
  static std::unique_ptr<RemoteIndex> Over(JournalReader& reader, int64_t target);

  Result<std::optional<RemoteObject>> Get(const std::string& path);
  // Rows at `dir` itself and below it ("dir/..."); every row when dir is "".
  Result<std::vector<RemoteObject>> Subtree(const std::string& dir);
  Result<std::vector<RemoteObject>> All() { return Subtree(""); }
  // Subtree's statement (?1 dir, ?2 "dir/", ?3 "dir0", ?4 target), for tests
  // of its query plan; `all` for dir "".
  static std::string SubtreeSql(bool all);
  // Row by row, by path, without holding them all (checkpoint manifests of
  // millions of paths): fn is called for each row; a non-ok result stops the
  // scan and is returned. Read it inside a JournalReader::Snapshot (Over) to
  // see one state of the table. `skip_root` leaves out the row of DATADIR
  // itself (path "").
  Status ForEach(const std::function<Status(const RemoteObject&)>& fn, bool skip_root);
  // The number of rows ForEach would visit.
  Result<uint64_t> Count(bool skip_root);

  // Writes, each committed in the journal writer's next group (they wait for
  // it). Store: the target now holds o at o.path. Forget: it holds nothing
  // at these paths any more. ForgetAll: nothing is known to be stored (e.g.
  // the target changed).
  static Status Store(Journal& journal, int64_t target, const RemoteObject& o);
  static Status Forget(Journal& journal, int64_t target, std::span<const std::string> paths);
  static Status ForgetAll(Journal& journal, int64_t target);

 private:
  // The statements behind Store/Forget, run inside Journal::Apply.
  static Status Upsert(sqlite3* db, int64_t target, const RemoteObject& o);
  static Status Erase(sqlite3* db, int64_t target, const std::string& path);

  RemoteIndex(SqliteDb owned, sqlite3* db, int64_t target)
      : owned_(std::move(owned)), db_(db), target_(target) {}
  SqliteDb owned_;  // null when borrowed from a JournalReader
  sqlite3* db_;
  int64_t target_;
  SqliteStmt get_;  // prepared on first Get: reconciliation asks per path
};

}  // namespace scribefs
