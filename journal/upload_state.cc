#include "journal/upload_state.h"

#include "journal/journal.h"
#include "journal/sqlite_util.h"

namespace scribefs {
namespace {

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  if (v.empty())
    sqlite3_bind_null(s, i);
  else
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

// Runs sql once per seq with ?1 = seq and the other parameters set by bind.
template <typename Bind>
Status ForEachSeq(sqlite3* db, const char* sql, std::span<const int64_t> seqs, Bind bind) {
  auto st = Prepare(db, sql);
  if (!st.ok()) return st.status();
  sqlite3_stmt* s = st->get();
  for (int64_t seq : seqs) {
    StmtResetter reset(s);
    sqlite3_bind_int64(s, 1, seq);
    bind(s);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) return SqliteError("records update", db, rc);
  }
  return Status::Ok();
}

Status WriteCounters(sqlite3* db, const std::string& counters) {
  auto m = Prepare(db, "INSERT OR REPLACE INTO meta(key,value) VALUES('uploader',?1)");
  if (!m.ok()) return m.status();
  sqlite3_bind_text(m->get(), 1, counters.data(), static_cast<int>(counters.size()), SQLITE_STATIC);
  int rc = sqlite3_step(m->get());
  if (rc != SQLITE_DONE) return SqliteError("meta", db, rc);
  return Status::Ok();
}

}  // namespace

Status UploadStateStore::ResetUploading() {
  return journal_->Apply([](sqlite3* db) {
    return Exec(db, "UPDATE records SET state='pending' WHERE state='uploading'");
  });
}

Status UploadStateStore::MarkExcluded(std::span<const int64_t> seqs) {
  if (seqs.empty()) return Status::Ok();
  int64_t now = NowNs();
  return journal_->Apply([&](sqlite3* db) {
    return ForEachSeq(db,
                      "UPDATE records SET state='skipped', error='excluded (--exclude)', "
                      "state_ns=?2 WHERE seq=?1",
                      seqs, [&](sqlite3_stmt* s) { sqlite3_bind_int64(s, 2, now); });
  });
}

Status UploadStateStore::RecordAttempt(std::span<const int64_t> seqs, int64_t attempts,
                                       const std::string& error, const std::string& counters) {
  return journal_->Apply([&](sqlite3* db) -> Status {
    SCRIBEFS_RETURN_IF_ERROR(ForEachSeq(
        db, "UPDATE records SET attempts=?2, error=?3 WHERE seq=?1", seqs, [&](sqlite3_stmt* s) {
          sqlite3_bind_int64(s, 2, attempts);
          sqlite3_bind_text(s, 3, error.data(), static_cast<int>(error.size()), SQLITE_STATIC);
        }));
    return WriteCounters(db, counters);
  });
}

Status UploadStateStore::MarkUploaded(std::span<const int64_t> seqs, const UploadedAs& as,
                                      const std::string& counters) {
  int64_t now = NowNs();
  return journal_->Apply([&](sqlite3* db) -> Status {
    SCRIBEFS_RETURN_IF_ERROR(ForEachSeq(db,
                                        "UPDATE records SET state='done', state_ns=?2, "
                                        "error=NULL, etag=?3, sha256=?4, version_id=?5 "
                                        "WHERE seq=?1",
                                        seqs, [&](sqlite3_stmt* s) {
                                          sqlite3_bind_int64(s, 2, now);
                                          BindText(s, 3, as.etag);
                                          BindText(s, 4, as.sha256);
                                          BindText(s, 5, as.version_id);
                                        }));
    return WriteCounters(db, counters);
  });
}

Status UploadStateStore::MarkFailed(std::span<const int64_t> seqs, const std::string& error,
                                    const std::string& counters) {
  int64_t now = NowNs();
  return journal_->Apply([&](sqlite3* db) -> Status {
    SCRIBEFS_RETURN_IF_ERROR(ForEachSeq(
        db,
        "UPDATE records SET state='failed', state_ns=?2, "
        "error=?3, attempts=attempts+1 WHERE seq=?1",
        seqs, [&](sqlite3_stmt* s) {
          sqlite3_bind_int64(s, 2, now);
          sqlite3_bind_text(s, 3, error.data(), static_cast<int>(error.size()), SQLITE_STATIC);
        }));
    return WriteCounters(db, counters);
  });
}

Status UploadStateStore::MarkUnstorable(std::span<const int64_t> seqs, const std::string& reason,
                                        const std::string& counters) {
  int64_t now = NowNs();
  return journal_->Apply([&](sqlite3* db) -> Status {
    SCRIBEFS_RETURN_IF_ERROR(ForEachSeq(
        db, "UPDATE records SET state='skipped', state_ns=?2, error=?3 WHERE seq=?1", seqs,
        [&](sqlite3_stmt* s) {
          sqlite3_bind_int64(s, 2, now);
          sqlite3_bind_text(s, 3, reason.data(), static_cast<int>(reason.size()), SQLITE_STATIC);
        }));
    return WriteCounters(db, counters);
  });
}

Status UploadStateStore::RequeueFailed() {
  return journal_->Apply([](sqlite3* db) {
    return Exec(db, "UPDATE records SET state='pending', attempts=0 WHERE state='failed'");
  });
}

Status UploadStateStore::RequeueDoneAfter(int64_t seq) {
  return journal_->Apply([&](sqlite3* db) -> Status {
    auto st = Prepare(db,
                      "UPDATE records SET state='pending', attempts=0 WHERE seq > ?1 AND "
                      "state='done' AND op NOT IN ('pause','resume','checkpoint')");
    if (!st.ok()) return st.status();
    sqlite3_bind_int64(st->get(), 1, seq);
    int rc = sqlite3_step(st->get());
    if (rc != SQLITE_DONE) return SqliteError("requeue", db, rc);
    return Status::Ok();
  });
}

}  // namespace scribefs
