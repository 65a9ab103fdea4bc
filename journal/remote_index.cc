#include "journal/remote_index.h"

#include "journal/journal.h"
#include "journal/reader.h"

namespace scribefs {
namespace {

const char* const kCols =
    "path,type,size,mtime_ns,mode,uid,gid,ino,etag,sha256,version_id,part_size,seq,uploaded_ns";

std::string Text(sqlite3_stmt* s, int i) {
  const unsigned char* t = sqlite3_column_text(s, i);
  return t ? reinterpret_cast<const char*>(t) : "";
}

RemoteObject Row(sqlite3_stmt* s) {
  RemoteObject o;
  o.path = Text(s, 0);
  o.type = Text(s, 1);
  o.size = sqlite3_column_int64(s, 2);
  o.mtime_ns = sqlite3_column_int64(s, 3);
  o.mode = static_cast<uint32_t>(sqlite3_column_int64(s, 4));
  o.uid = static_cast<uint32_t>(sqlite3_column_int64(s, 5));
  o.gid = static_cast<uint32_t>(sqlite3_column_int64(s, 6));
  o.ino = sqlite3_column_int64(s, 7);
  o.etag = Text(s, 8);
  o.sha256 = Text(s, 9);
  o.version_id = Text(s, 10);
  o.part_size = sqlite3_column_int64(s, 11);
  o.seq = sqlite3_column_int64(s, 12);
  o.uploaded_ns = sqlite3_column_int64(s, 13);
  return o;
}

}  // namespace

Result<std::unique_ptr<RemoteIndex>> RemoteIndex::Open(const std::string& journal_path,
                                                       int64_t target) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(journal_path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) return SqliteError("remote index " + journal_path, raw, rc);
  sqlite3_busy_timeout(raw, 10000);
  sqlite3* p = db.get();
  return std::unique_ptr<RemoteIndex>(new RemoteIndex(std::move(db), p, target));
}

std::unique_ptr<RemoteIndex> RemoteIndex::Over(JournalReader& reader, int64_t target) {
  return std::unique_ptr<RemoteIndex>(new RemoteIndex(nullptr, reader.db_.get(), target));
}

Result<std::optional<RemoteObject>> RemoteIndex::Get(const std::string& path) {
  if (!get_) {
    auto st =
        Prepare(db_, std::string("SELECT ") + kCols + " FROM objects WHERE target=?2 AND path=?1");
    if (!st.ok()) return st.status();
    get_ = std::move(st.value());
  }
  sqlite3_stmt* s = get_.get();
  StmtResetter reset(s);
  sqlite3_bind_text(s, 1, path.data(), static_cast<int>(path.size()), SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, target_);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return std::optional<RemoteObject>(Row(s));
  if (rc == SQLITE_DONE) return std::optional<RemoteObject>();
  return SqliteError("remote index", db_, rc);
}

std::string RemoteIndex::SubtreeSql(bool all) {
  const std::string select = std::string("SELECT ") + kCols + " FROM objects WHERE target=?4";
  if (all) return select + " ORDER BY path";
  // Two seeks, not one condition "path=?1 OR (path >= ?2 AND path < ?3)":
  // with the key (target, path) SQLite serves that OR by reading every row
  // of the target, which made each unlink cost O(objects).
  return select + " AND path=?1 UNION ALL " + select +
         " AND path >= ?2 AND path < ?3 ORDER BY path";
}

Result<std::vector<RemoteObject>> RemoteIndex::Subtree(const std::string& dir) {
  // "dir/" .. "dir0" covers exactly the keys below dir ('0' follows '/').
  auto st = Prepare(db_, SubtreeSql(dir.empty()));
  if (!st.ok()) return st.status();
  sqlite3_bind_int64(st->get(), 4, target_);
  std::string lo = dir + "/", hi = dir + "0";
  if (!dir.empty()) {
    sqlite3_bind_text(st->get(), 1, dir.data(), static_cast<int>(dir.size()), SQLITE_STATIC);
    sqlite3_bind_text(st->get(), 2, lo.data(), static_cast<int>(lo.size()), SQLITE_STATIC);
    sqlite3_bind_text(st->get(), 3, hi.data(), static_cast<int>(hi.size()), SQLITE_STATIC);
  }
  std::vector<RemoteObject> out;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) out.push_back(Row(st->get()));
  if (rc != SQLITE_DONE) return SqliteError("remote index", db_, rc);
  return out;
}

Status RemoteIndex::ForEach(const std::function<Status(const RemoteObject&)>& fn,
                            bool skip_root) {
  std::string sql = std::string("SELECT ") + kCols + " FROM objects WHERE target=?1";
  if (skip_root) sql += " AND path <> ''";
  sql += " ORDER BY path";
  auto st = Prepare(db_, sql);
  if (!st.ok()) return st.status();
  sqlite3_bind_int64(st->get(), 1, target_);
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW)
    SCRIBEFS_RETURN_IF_ERROR(fn(Row(st->get())));
  if (rc != SQLITE_DONE) return SqliteError("remote index", db_, rc);
  return Status::Ok();
}

Result<uint64_t> RemoteIndex::Count(bool skip_root) {
  auto st = Prepare(db_, std::string("SELECT count(*) FROM objects WHERE target=?1") +
                             (skip_root ? " AND path <> ''" : ""));
  if (!st.ok()) return st.status();
  sqlite3_bind_int64(st->get(), 1, target_);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_ROW) return SqliteError("remote index", db_, rc);
  return static_cast<uint64_t>(sqlite3_column_int64(st->get(), 0));
}

Status RemoteIndex::Store(Journal& journal, int64_t target, const RemoteObject& o) {
  return journal.Apply([&](sqlite3* db) { return Upsert(db, target, o); });
}

Status RemoteIndex::Forget(Journal& journal, int64_t target, std::span<const std::string> paths) {
  if (paths.empty()) return Status::Ok();
  return journal.Apply([&](sqlite3* db) -> Status {
    for (const std::string& p : paths) SCRIBEFS_RETURN_IF_ERROR(Erase(db, target, p));
    return Status::Ok();
  });
}

Status RemoteIndex::ForgetAll(Journal& journal, int64_t target) {
  return journal.Apply([&](sqlite3* db) -> Status {
    auto st = Prepare(db, "DELETE FROM objects WHERE target=?1");
    if (!st.ok()) return st.status();
    sqlite3_bind_int64(st->get(), 1, target);
    int rc = sqlite3_step(st->get());
    if (rc != SQLITE_DONE) return SqliteError("objects delete", db, rc);
    return Status::Ok();
  });
}

Status RemoteIndex::Upsert(sqlite3* db, int64_t target, const RemoteObject& o) {
  auto st = Prepare(db, std::string("INSERT OR REPLACE INTO objects(") + kCols +
                            ",target) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)");
  if (!st.ok()) return st.status();
  sqlite3_stmt* s = st->get();
  sqlite3_bind_text(s, 1, o.path.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 2, o.type.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 3, static_cast<int64_t>(o.size));
  sqlite3_bind_int64(s, 4, o.mtime_ns);
  sqlite3_bind_int64(s, 5, o.mode);
  sqlite3_bind_int64(s, 6, o.uid);
  sqlite3_bind_int64(s, 7, o.gid);
  sqlite3_bind_int64(s, 8, static_cast<int64_t>(o.ino));
  sqlite3_bind_text(s, 9, o.etag.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 10, o.sha256.c_str(), -1, SQLITE_TRANSIENT);
  if (o.version_id.empty()) sqlite3_bind_null(s, 11);
  else sqlite3_bind_text(s, 11, o.version_id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(s, 12, static_cast<int64_t>(o.part_size));
  sqlite3_bind_int64(s, 13, o.seq);
  sqlite3_bind_int64(s, 14, o.uploaded_ns);
  sqlite3_bind_int64(s, 15, target);
  int rc = sqlite3_step(s);
  if (rc != SQLITE_DONE) return SqliteError("objects upsert", db, rc);
  return Status::Ok();
}

Status RemoteIndex::Erase(sqlite3* db, int64_t target, const std::string& path) {
  auto st = Prepare(db, "DELETE FROM objects WHERE target=?2 AND path=?1");
  if (!st.ok()) return st.status();
  sqlite3_bind_text(st->get(), 1, path.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st->get(), 2, target);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_DONE) return SqliteError("objects delete", db, rc);
  return Status::Ok();
}

}  // namespace scribefs
