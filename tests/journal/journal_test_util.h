// Helpers shared by the journal tests: a temporary directory and a raw
// sqlite3 connection for looking behind the API (the way a user with
// `sqlite3 journal.db` would), or for building a journal by hand.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace scribefs {

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/scribefs-jt-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    if (p == nullptr) ADD_FAILURE() << "mkdtemp: " << strerror(errno);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A raw sqlite3 connection for looking behind the API.
class RawDb {
 public:
  explicit RawDb(const std::string& path, int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) {
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    EXPECT_EQ(rc, SQLITE_OK) << sqlite3_errstr(rc);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  int TryExec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    sqlite3_free(err);
    return rc;
  }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  }
  // First column of the first row, as text ("" for NULL or no row).
  std::string Text(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << sqlite3_errmsg(db_);
    std::string out;
    if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
  int64_t Int(const std::string& sql) {
    std::string t = Text(sql);
    return t.empty() ? 0 : std::stoll(t);
  }
  // Column `col` of every row, as text.
  std::vector<std::string> Column(const std::string& sql, int col = 0) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << sqlite3_errmsg(db_);
    std::vector<std::string> out;
    while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
      auto t = sqlite3_column_text(s, col);
      out.push_back(t ? reinterpret_cast<const char*>(t) : "");
    }
    sqlite3_finalize(s);
    return out;
  }
  sqlite3* get() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace scribefs
