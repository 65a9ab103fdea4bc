#include "journal/schema.h"

#include "journal/sqlite_util.h"

namespace scribefs {
namespace {

// Version 1: the first released schema. Never edit: journals in the field
// were created by exactly this.
const char* const kV1 = R"sql(
CREATE TABLE IF NOT EXISTS records(
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ns    INTEGER NOT NULL,
  op         TEXT NOT NULL,
  path       TEXT NOT NULL,
  new_path   TEXT,
  ranges     TEXT,
  size       INTEGER,
  mode       INTEGER,
  uid        INTEGER,
  gid        INTEGER,
  pid        INTEGER,
  flags      INTEGER,
  detail     TEXT,
  state      TEXT NOT NULL DEFAULT 'pending',
  attempts   INTEGER NOT NULL DEFAULT 0,
  error      TEXT,
  etag       TEXT,
  sha256     TEXT,
  version_id TEXT,
  state_ns   INTEGER
);
CREATE INDEX IF NOT EXISTS records_unfinished ON records(seq)
  WHERE state IN ('pending','uploading','failed');
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects(
  path        TEXT PRIMARY KEY,
  type        TEXT NOT NULL,
  size        INTEGER NOT NULL,
  mtime_ns    INTEGER NOT NULL,
  mode        INTEGER NOT NULL,
  uid         INTEGER NOT NULL,
  gid         INTEGER NOT NULL,
  ino         INTEGER,
  etag        TEXT,
  sha256      TEXT,
  version_id  TEXT,
  part_size   INTEGER NOT NULL DEFAULT 0,
  seq         INTEGER,
  uploaded_ns INTEGER
) WITHOUT ROWID;
)sql";

// Version 2: "the last size the journal knows of a path" (stats' pending
// bytes, the progress of flush and checkpoint) is a seek in this index. In
// version 1 it scanned the whole records table once per pending path: with
// 1M records and 2,000 pending files `scribectl stats` did not finish in
// 120 s. Partial, so records without a size (most writes) cost nothing.
const char* const kV2 = R"sql(
CREATE INDEX IF NOT EXISTS records_path_size ON records(path, seq) WHERE size IS NOT NULL;
)sql";

// Version 3: `scribectl stats` and `status` answer in a bounded time on any
// journal (10M records: well under 100 ms). The count of records per op and
// state is kept up to date by triggers instead of counted by a scan (two
// small upserts per record written), and the last pause, resume or
// checkpoint is a seek in a partial index that other records do not enter.
const char* const kV3 = R"sql(
CREATE TABLE IF NOT EXISTS record_counts(
  op    TEXT NOT NULL,
  state TEXT NOT NULL,
  n     INTEGER NOT NULL,
  PRIMARY KEY(op, state)
) WITHOUT ROWID;
DELETE FROM record_counts;
INSERT INTO record_counts(op, state, n) SELECT op, state, count(*) FROM records GROUP BY op, state;
CREATE TRIGGER IF NOT EXISTS records_count_insert AFTER INSERT ON records BEGIN
  INSERT INTO record_counts(op, state, n) VALUES(new.op, new.state, 1)
    ON CONFLICT(op, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS records_count_update AFTER UPDATE OF op, state ON records
  WHEN old.op IS NOT new.op OR old.state IS NOT new.state BEGIN
  UPDATE record_counts SET n = n - 1 WHERE op = old.op AND state = old.state;
  INSERT INTO record_counts(op, state, n) VALUES(new.op, new.state, 1)
    ON CONFLICT(op, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS records_count_delete AFTER DELETE ON records BEGIN
  UPDATE record_counts SET n = n - 1 WHERE op = old.op AND state = old.state;
END;
CREATE INDEX IF NOT EXISTS records_control ON records(op, seq)
  WHERE op IN ('pause','resume','checkpoint');
)sql";

// Version 4: two fewer costs on every record written.
// - The partial indexes records_unfinished and records_control name their
//   condition with ORs instead of a 3-item IN list: SQLite 3.40 evaluates an
//   IN list of more than 2 items by building a temporary B-tree, which it did
//   twice for every record inserted (half the instructions of a commit).
//   Queries must name the new conditions to use them (UnfinishedCondition,
//   ControlCondition).
// - record_counts counts only finished records (every state but pending,
//   uploading and failed); readers add the unfinished ones, which
//   records_unfinished already indexes (bounded by the pending work, as
//   every other figure of stats is). A new record is pending, so the commit
//   of a create, unlink or close no longer writes record_counts: one B-tree
//   page less per transaction, which version 3 had added to every namespace
//   operation. The counts move when a record is finished or deleted.
const char* const kV4 = R"sql(
DROP INDEX IF EXISTS records_unfinished;
CREATE INDEX records_unfinished ON records(seq)
  WHERE (state = 'pending' OR state = 'uploading' OR state = 'failed');
DROP INDEX IF EXISTS records_control;
CREATE INDEX records_control ON records(op, seq)
  WHERE (op = 'pause' OR op = 'resume' OR op = 'checkpoint');
DROP TRIGGER IF EXISTS records_count_insert;
DROP TRIGGER IF EXISTS records_count_update;
DROP TRIGGER IF EXISTS records_count_delete;
DELETE FROM record_counts;
INSERT INTO record_counts(op, state, n) SELECT op, state, count(*) FROM records
  WHERE NOT (state = 'pending' OR state = 'uploading' OR state = 'failed') GROUP BY op, state;
CREATE TRIGGER records_count_insert AFTER INSERT ON records
  WHEN NOT (new.state = 'pending' OR new.state = 'uploading' OR new.state = 'failed') BEGIN
  INSERT INTO record_counts(op, state, n) VALUES(new.op, new.state, 1)
    ON CONFLICT(op, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER records_count_update AFTER UPDATE OF op, state ON records
  WHEN old.op IS NOT new.op OR old.state IS NOT new.state BEGIN
  UPDATE record_counts SET n = n - 1 WHERE op = old.op AND state = old.state
    AND NOT (old.state = 'pending' OR old.state = 'uploading' OR old.state = 'failed');
  INSERT INTO record_counts(op, state, n) SELECT new.op, new.state, 1
    WHERE NOT (new.state = 'pending' OR new.state = 'uploading' OR new.state = 'failed')
    ON CONFLICT(op, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER records_count_delete AFTER DELETE ON records
  WHEN NOT (old.state = 'pending' OR old.state = 'uploading' OR old.state = 'failed') BEGIN
  UPDATE record_counts SET n = n - 1 WHERE op = old.op AND state = old.state;
END;
)sql";

// Version 5: several targets (issue 16). Each target a daemon stores to is
// a row of `targets`; the objects table (what a target holds) is keyed by
// target and path. A record's `state` is its state across every target:
// pending until every target has finished it, then done (or skipped), or
// failed when one of them failed it. A target's own state of a record is its
// row in target_records, or, without one, the record's state: rows exist only
// where a target differs (one already stored a record another still
// uploads), so with one target the table stays empty and a commit writes
// nothing more than before (journal/target_states.h keeps the rule).
// The objects an existing journal holds belong to the target it stored to,
// which becomes target 1 (named after its URL until the daemon names it).
const char* const kV5 = R"sql(
CREATE TABLE targets(
  id       INTEGER PRIMARY KEY,
  name     TEXT NOT NULL UNIQUE,
  url      TEXT NOT NULL,
  added_ns INTEGER NOT NULL,
  settings TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO targets(id, name, url, added_ns)
  SELECT 1, value, value, 0 FROM meta WHERE key = 'target' AND value <> '';
CREATE TABLE target_records(
  seq        INTEGER NOT NULL,
  target     INTEGER NOT NULL,
  state      TEXT NOT NULL,
  attempts   INTEGER NOT NULL DEFAULT 0,
  error      TEXT,
  etag       TEXT,
  sha256     TEXT,
  version_id TEXT,
  state_ns   INTEGER,
  PRIMARY KEY(seq, target)
) WITHOUT ROWID;
CREATE TABLE objects_v5(
  target      INTEGER NOT NULL,
  path        TEXT NOT NULL,
  type        TEXT NOT NULL,
  size        INTEGER NOT NULL,
  mtime_ns    INTEGER NOT NULL,
  mode        INTEGER NOT NULL,
  uid         INTEGER NOT NULL,
  gid         INTEGER NOT NULL,
  ino         INTEGER,
  etag        TEXT,
  sha256      TEXT,
  version_id  TEXT,
  part_size   INTEGER NOT NULL DEFAULT 0,
  seq         INTEGER,
  uploaded_ns INTEGER,
  PRIMARY KEY(target, path)
) WITHOUT ROWID;
INSERT INTO objects_v5 SELECT 1, * FROM objects;
DROP TABLE objects;
ALTER TABLE objects_v5 RENAME TO objects;
)sql";

// Version 6: `scribectl journal --path GLOB` is a range search in an index
// over every record's path (and a rename's or link's new_path), not a scan of
// the journal from its newest record: at 10M records a path touched long ago
// took seconds. records_path replaces records_path_size: the same index with
// the size as its last column, so that "the last size of a path" stays one
// covering seek, and records without a size (writes, unlinks, renames) enter
// it too. A record with a size writes as many index pages as before.
const char* const kV6 = R"sql(
CREATE INDEX records_path ON records(path, seq, size);
CREATE INDEX records_new_path ON records(new_path, seq) WHERE new_path IS NOT NULL;
DROP INDEX IF EXISTS records_path_size;
)sql";

constexpr Migration kMigrations[] = {{1, kV1}, {2, kV2}, {3, kV3}, {4, kV4}, {5, kV5}, {6, kV6}};
static_assert(std::size(kMigrations) == kSchemaVersion,
              "kSchemaVersion must be the last migration step");

// What kind of file db is, before anything is written to it: its version
// (0 for an empty file), or why it is refused.
Result<int> ExistingVersion(sqlite3* db, const std::string& path) {
  int app_id = 0, version = 0;
  int rc = ReadIntPragma(db, "PRAGMA application_id", &app_id);
  if (rc != SQLITE_OK) return SqliteError(path + ": not a readable SQLite database", db, rc);
  rc = ReadIntPragma(db, "PRAGMA user_version", &version);
  if (rc != SQLITE_OK) return SqliteError(path, db, rc);
  if (app_id == 0) {
    int tables = 0;
    rc = ReadIntPragma(db, "SELECT count(*) FROM sqlite_master", &tables);
    if (rc != SQLITE_OK) return SqliteError(path, db, rc);
    if (tables != 0)
      return Status::Error(EINVAL, path + ": not a scribefs journal (foreign SQLite database)");
    return 0;
  }
  if (app_id != kApplicationId)
    return Status::Error(EINVAL, path + ": not a scribefs journal (application_id mismatch)");
  if (version > kSchemaVersion)
    return Status::Error(EINVAL, path + ": journal schema version " + std::to_string(version) +
                                     " is newer than this scribefs supports (" +
                                     std::to_string(kSchemaVersion) +
                                     "); use the scribefs that wrote it, or a newer one");
  return version;
}

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

std::string UnfinishedCondition(int version) {
  return version >= 4 ? "(state = 'pending' OR state = 'uploading' OR state = 'failed')"
                      : "state IN ('pending','uploading','failed')";
}

std::string ControlCondition(int version) {
  return version >= 4 ? "(op = 'pause' OR op = 'resume' OR op = 'checkpoint')"
                      : "op IN ('pause','resume','checkpoint')";
}

Status EnsureSchema(sqlite3* db, const std::string& path) {
  auto version = ExistingVersion(db, path);
  if (!version.ok()) return version.status();
  // WAL survives process crashes on commit; NORMAL skips the per-commit fsync
  // (Journal::Sync provides it when an application asks for durability).
  SCRIBEFS_RETURN_IF_ERROR(Exec(db, "PRAGMA journal_mode=WAL").WithContext(path));
  SCRIBEFS_RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous=NORMAL").WithContext(path));
  if (*version == kSchemaVersion) return Status::Ok();
  // Every step and the new version commit together: a crash mid-way leaves
  // the journal at its old version, to be migrated again at the next open.
  std::string sql = "BEGIN IMMEDIATE;";
  for (const Migration& m : kMigrations)
    if (m.to > *version) sql += m.sql;
  sql += "PRAGMA application_id=" + std::to_string(kApplicationId) +
         ";PRAGMA user_version=" + std::to_string(kSchemaVersion) + ";COMMIT;";
  Status s = Exec(db, sql);
  if (!s.ok()) {
    (void)Exec(db, "ROLLBACK");
    return s.WithContext(path + ": migrating the journal from schema version " +
                         std::to_string(*version) + " to " + std::to_string(kSchemaVersion));
  }
  return Status::Ok();
}

}  // namespace scribefs
