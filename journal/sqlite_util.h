// RAII owners for sqlite3 handles and the one place SQLite errors become Status.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace scribefs {

struct SqliteDbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct SqliteStmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using SqliteDb = std::unique_ptr<sqlite3, SqliteDbCloser>;
using SqliteStmt = std::unique_ptr<sqlite3_stmt, SqliteStmtFinalizer>;

// "context: <sqlite message> (code N)"; errno EIO (ENOSPC for SQLITE_FULL).
Status SqliteError(const std::string& context, sqlite3* db, int rc);

Result<SqliteStmt> Prepare(sqlite3* db, const std::string& sql);
Status Exec(sqlite3* db, const std::string& sql);
// Steps a prepared (and bound) statement to its end and returns its first
// column of every row as integers (ids, seqs); errors name `context`.
Result<std::vector<int64_t>> ReadInt64Column(sqlite3* db, sqlite3_stmt* s,
                                             const std::string& context);
// Runs a statement that yields one integer (a PRAGMA, a count) into *out;
// returns the SQLite result code (SQLITE_OK when *out was set).
int ReadIntPragma(sqlite3* db, const char* sql, int* out);

// Resets a statement for reuse when it goes out of scope.
class StmtResetter {
 public:
  explicit StmtResetter(sqlite3_stmt* s) : s_(s) {}
  ~StmtResetter() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtResetter(const StmtResetter&) = delete;
  StmtResetter& operator=(const StmtResetter&) = delete;

 private:
  sqlite3_stmt* s_;
};

}  // namespace scribefs
