#include "journal/sqlite_util.h"

namespace scribefs {

Status SqliteError(const std::string& context, sqlite3* db, int rc) {
  std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  int err = EIO;
  int primary = rc & 0xff;
  if (primary == SQLITE_FULL) err = ENOSPC;
  else if (primary == SQLITE_READONLY || primary == SQLITE_PERM || primary == SQLITE_CANTOPEN) err = EACCES;
  else if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) err = EBUSY;
  else if (primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT) err = EUCLEAN;
  return Status::Error(err, context + ": " + msg + " (sqlite code " + std::to_string(rc) + ")");
}

Result<SqliteStmt> Prepare(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK) return SqliteError("prepare", db, rc);
  return SqliteStmt(s);
}

Status Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    Status s = SqliteError("exec", db, rc);
    return Status::Error(s.code(), msg + " (sqlite code " + std::to_string(rc) + ")");
  }
  return Status::Ok();
}

int ReadIntPragma(sqlite3* db, const char* sql, int* out) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &s, nullptr);
  if (rc != SQLITE_OK) return rc;
  SqliteStmt owner(s);
  rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    *out = sqlite3_column_int(s, 0);
    rc = SQLITE_OK;
  }
  return rc;
}

Result<std::vector<int64_t>> ReadInt64Column(sqlite3* db, sqlite3_stmt* s,
                                             const std::string& context) {
  std::vector<int64_t> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(sqlite3_column_int64(s, 0));
  if (rc != SQLITE_DONE) return SqliteError(context, db, rc);
  return out;
}

}  // namespace scribefs
