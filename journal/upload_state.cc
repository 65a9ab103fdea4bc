#include "journal/upload_state.h"

#include <algorithm>
#include <map>

#include "journal/journal.h"
#include "journal/record.h"
#include "journal/sqlite_util.h"
#include "journal/target_states.h"

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

Result<bool> SoleTarget(sqlite3* db, int64_t target, std::vector<int64_t>* ids);

// The uploader's counters (meta "uploader", what `scribectl stats` shows);
// with several targets each one's under "uploader.ID", so that one target's
// figures never overwrite another's (Targets::Sync removes "uploader" then).
Status WriteCounters(sqlite3* db, int64_t target, bool sole, const std::string& counters) {
  std::string key = sole ? "uploader" : "uploader." + std::to_string(target);
  auto m = Prepare(db, "INSERT OR REPLACE INTO meta(key,value) VALUES(?2,?1)");
  if (!m.ok()) return m.status();
  sqlite3_bind_text(m->get(), 1, counters.data(), static_cast<int>(counters.size()), SQLITE_STATIC);
  sqlite3_bind_text(m->get(), 2, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
  int rc = sqlite3_step(m->get());
  if (rc != SQLITE_DONE) return SqliteError("meta", db, rc);
  return Status::Ok();
}

void BindOptText(sqlite3_stmt* s, int i, const std::optional<std::string>& v) {
  if (v)
    sqlite3_bind_text(s, i, v->data(), static_cast<int>(v->size()), SQLITE_STATIC);
  else
    sqlite3_bind_null(s, i);
}

std::optional<std::string> ColumnText(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, i)));
}

// Whether `target` is the only target there is (or none is registered):
// then the record's own state is the target's, as before targets existed.
Result<bool> SoleTarget(sqlite3* db, int64_t target, std::vector<int64_t>* ids) {
  auto all = TargetIds(db);
  if (!all.ok()) return all.status();
  *ids = std::move(all.value());
  return ids->empty() || (ids->size() == 1 && ids->front() == target);
}

Status UpsertRow(sqlite3* db, int64_t seq, const TargetStateChange& c) {
  auto st = Prepare(db,
                    "INSERT INTO target_records(seq,target,state,attempts,error,etag,sha256,"
                    "version_id,state_ns) VALUES(?1,?2,?3,max(?4,0),?5,?6,?7,?8,?9) "
                    "ON CONFLICT(seq,target) DO UPDATE SET state=?3, "
                    "attempts=CASE WHEN ?4 < 0 THEN attempts ELSE ?4 END, "
                    "error=CASE WHEN ?5 IS NULL AND ?3 <> 'done' THEN error ELSE ?5 END, "
                    "etag=coalesce(?6,etag), sha256=coalesce(?7,sha256), "
                    "version_id=coalesce(?8,version_id), state_ns=?9");
  if (!st.ok()) return st.status();
  sqlite3_stmt* s = st->get();
  sqlite3_bind_int64(s, 1, seq);
  sqlite3_bind_int64(s, 2, c.target);
  sqlite3_bind_text(s, 3, c.state.data(), static_cast<int>(c.state.size()), SQLITE_STATIC);
  sqlite3_bind_int64(s, 4, c.attempts);
  BindOptText(s, 5, c.error);
  BindOptText(s, 6, c.etag);
  BindOptText(s, 7, c.sha256);
  BindOptText(s, 8, c.version_id);
  sqlite3_bind_int64(s, 9, c.state_ns);
  int rc = sqlite3_step(s);
  if (rc != SQLITE_DONE) return SqliteError("target_records upsert", db, rc);
  return Status::Ok();
}

}  // namespace

Result<std::vector<int64_t>> TargetIds(sqlite3* db) {
  auto st = Prepare(db, "SELECT id FROM targets ORDER BY id");
  if (!st.ok()) return st.status();
  return ReadInt64Column(db, st->get(), "targets");
}

namespace {

// What FoldRecordTargets reads of one record: its own state (and the
// attempts and error it shows) and its targets' rows.
struct RecordTargets {
  std::string state;
  int64_t attempts = 0;
  std::optional<std::string> error;
  std::map<int64_t, std::string> rows;  // target -> state
};

// nullopt when the record is gone (trimmed meanwhile: nothing to keep).
Result<std::optional<RecordTargets>> ReadRecordTargets(sqlite3* db, int64_t seq) {
  RecordTargets out;
  auto st = Prepare(db, "SELECT state, attempts, error FROM records WHERE seq=?1");
  if (!st.ok()) return st.status();
  sqlite3_bind_int64(st->get(), 1, seq);
  int rc = sqlite3_step(st->get());
  if (rc == SQLITE_DONE) return std::optional<RecordTargets>();
  if (rc != SQLITE_ROW) return SqliteError("records read", db, rc);
  out.state = ColumnText(st->get(), 0).value_or("");
  out.attempts = sqlite3_column_int64(st->get(), 1);
  out.error = ColumnText(st->get(), 2);
  auto rows = Prepare(db, "SELECT target, state FROM target_records WHERE seq=?1");
  if (!rows.ok()) return rows.status();
  sqlite3_bind_int64(rows->get(), 1, seq);
  while ((rc = sqlite3_step(rows->get())) == SQLITE_ROW)
    out.rows[sqlite3_column_int64(rows->get(), 0)] = ColumnText(rows->get(), 1).value_or("");
  if (rc != SQLITE_DONE) return SqliteError("target_records read", db, rc);
  return std::optional<RecordTargets>(std::move(out));
}

}  // namespace

Status FoldRecordTargets(sqlite3* db, int64_t seq, const std::vector<int64_t>& targets,
                         const TargetStateChange* change) {
  auto read = ReadRecordTargets(db, seq);
  if (!read.ok()) return read.status();
  if (!read->has_value()) return Status::Ok();
  RecordTargets& r = **read;
  if (change) r.rows[change->target] = change->state;
  TargetStatesFold fold = FoldTargetStates(r.state, r.rows, targets);
  // The targets that keep their old state get rows first (the record's
  // attempts and error were theirs).
  for (const auto& [t, state] : fold.write) {
    TargetStateChange keep;
    keep.target = t;
    keep.state = state;
    keep.attempts = r.attempts;
    keep.error = r.error;
    SCRIBEFS_RETURN_IF_ERROR(UpsertRow(db, seq, keep));
  }
  if (change && std::find(fold.drop.begin(), fold.drop.end(), change->target) == fold.drop.end())
    SCRIBEFS_RETURN_IF_ERROR(UpsertRow(db, seq, *change));
  for (int64_t t : fold.drop) {
    auto st = Prepare(db, "DELETE FROM target_records WHERE seq=?1 AND target=?2");
    if (!st.ok()) return st.status();
    sqlite3_bind_int64(st->get(), 1, seq);
    sqlite3_bind_int64(st->get(), 2, t);
    int rc = sqlite3_step(st->get());
    if (rc != SQLITE_DONE) return SqliteError("target_records delete", db, rc);
  }
  // The record: its state across targets; what the change says shows on it
  // as the last word of any target (attempts, error, what was stored).
  auto st = Prepare(db,
                    "UPDATE records SET state=?2, "
                    "state_ns=CASE WHEN ?2 <> state THEN ?3 ELSE state_ns END, "
                    "attempts=CASE WHEN ?4 < 0 THEN attempts ELSE ?4 END, "
                    "error=CASE WHEN ?2 = 'done' THEN NULL WHEN ?5 IS NULL THEN error ELSE ?5 END, "
                    "etag=coalesce(?6,etag), sha256=coalesce(?7,sha256), "
                    "version_id=coalesce(?8,version_id) WHERE seq=?1");
  if (!st.ok()) return st.status();
  sqlite3_stmt* s = st->get();
  sqlite3_bind_int64(s, 1, seq);
  sqlite3_bind_text(s, 2, fold.record_state.data(), static_cast<int>(fold.record_state.size()),
                    SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, change ? change->state_ns : NowNs());
  sqlite3_bind_int64(s, 4, change ? change->attempts : -1);
  BindOptText(s, 5, change ? change->error : std::nullopt);
  BindOptText(s, 6, change ? change->etag : std::nullopt);
  BindOptText(s, 7, change ? change->sha256 : std::nullopt);
  BindOptText(s, 8, change ? change->version_id : std::nullopt);
  int rc = sqlite3_step(s);
  if (rc != SQLITE_DONE) return SqliteError("records update", db, rc);
  return Status::Ok();
}

// A final state on one target, and the record's columns that say it when
// the target is the only one (the SQL before targets existed).
struct UploadStateStore::Final {
  std::string state;
  std::string sole_sql;  // ?1 seq, ?2 now, ?3 error, ?4 etag, ?5 sha256, ?6 version_id
  std::optional<std::string> error;
  UploadedAs as;
  bool count_attempt = false;
};

Status UploadStateStore::MarkFinal(std::span<const int64_t> seqs, const Final& f,
                                   const std::string* counters) {
  if (seqs.empty() && !counters) return Status::Ok();
  int64_t now = NowNs();
  return journal_->Apply([&](sqlite3* db) -> Status {
    std::vector<int64_t> ids;
    auto sole = SoleTarget(db, target_, &ids);
    if (!sole.ok()) return sole.status();
    auto text = [](const std::string& v) {
      return v.empty() ? std::nullopt : std::optional<std::string>(v);
    };
    if (*sole) {
      SCRIBEFS_RETURN_IF_ERROR(ForEachSeq(db, f.sole_sql.c_str(), seqs, [&](sqlite3_stmt* s) {
        sqlite3_bind_int64(s, 2, now);
        BindOptText(s, 3, f.error);
        BindText(s, 4, f.as.etag);
        BindText(s, 5, f.as.sha256);
        BindText(s, 6, f.as.version_id);
      }));
    } else {
      for (int64_t seq : seqs) {
        TargetStateChange c;
        c.target = target_;
        c.state = f.state;
        c.error = f.error;
        c.etag = text(f.as.etag);
        c.sha256 = text(f.as.sha256);
        c.version_id = text(f.as.version_id);
        c.state_ns = now;
        if (f.count_attempt) {
          // attempts + 1 of this target's count: its row, else the record's.
          auto st = Prepare(db,
                            "SELECT coalesce((SELECT attempts FROM target_records WHERE seq=?1 "
                            "AND target=?2),(SELECT attempts FROM records WHERE seq=?1),0)");
          if (!st.ok()) return st.status();
          sqlite3_bind_int64(st->get(), 1, seq);
          sqlite3_bind_int64(st->get(), 2, target_);
          if (sqlite3_step(st->get()) != SQLITE_ROW) return SqliteError("attempts", db, 0);
          c.attempts = sqlite3_column_int64(st->get(), 0) + 1;
        }
        SCRIBEFS_RETURN_IF_ERROR(FoldRecordTargets(db, seq, ids, &c));
      }
    }
    return counters ? WriteCounters(db, target_, *sole, *counters) : Status::Ok();
  });
}

Status UploadStateStore::ResetUploading() {
  return journal_->Apply([](sqlite3* db) -> Status {
    SCRIBEFS_RETURN_IF_ERROR(
        Exec(db, "UPDATE target_records SET state='pending' WHERE state='uploading'"));
    return Exec(db, "UPDATE records SET state='pending' WHERE state='uploading'");
  });
}

Status UploadStateStore::MarkExcluded(std::span<const int64_t> seqs) {
  Final f{std::string(kStateSkipped),
          "UPDATE records SET state='skipped', error=?3, state_ns=?2 WHERE seq=?1",
          "excluded (--exclude)",
          {}};
  return MarkFinal(seqs, f, nullptr);
}

Status UploadStateStore::MarkHeld(std::span<const int64_t> seqs, const std::string& why) {
  Final f{std::string(kStateSkipped),
          "UPDATE records SET state='skipped', error=?3, state_ns=?2 WHERE seq=?1",
          why,
          {}};
  return MarkFinal(seqs, f, nullptr);
}

Status UploadStateStore::RecordAttempt(std::span<const int64_t> seqs, int64_t attempts,
                                       const std::string& error, const std::string& counters) {
  // The record shows the last attempt and error of any target; its state
  // (pending) is this target's too, so no row is needed.
  return journal_->Apply([&](sqlite3* db) -> Status {
    SCRIBEFS_RETURN_IF_ERROR(ForEachSeq(
        db, "UPDATE records SET attempts=?2, error=?3 WHERE seq=?1", seqs, [&](sqlite3_stmt* s) {
          sqlite3_bind_int64(s, 2, attempts);
          sqlite3_bind_text(s, 3, error.data(), static_cast<int>(error.size()), SQLITE_STATIC);
        }));
    std::vector<int64_t> ids;
    auto sole = SoleTarget(db, target_, &ids);
    if (!sole.ok()) return sole.status();
    return WriteCounters(db, target_, *sole, counters);
  });
}

Status UploadStateStore::MarkUploaded(std::span<const int64_t> seqs, const UploadedAs& as,
                                      const std::string& counters) {
  Final f{std::string(kStateDone),
          "UPDATE records SET state='done', state_ns=?2, error=NULL, etag=?4, sha256=?5, "
          "version_id=?6 WHERE seq=?1",
          std::nullopt, as};
  return MarkFinal(seqs, f, &counters);
}

Status UploadStateStore::MarkFailed(std::span<const int64_t> seqs, const std::string& error,
                                    const std::string& counters) {
  Final f{std::string(kStateFailed),
          "UPDATE records SET state='failed', state_ns=?2, error=?3, attempts=attempts+1 "
          "WHERE seq=?1",
          error,
          {},
          true};
  return MarkFinal(seqs, f, &counters);
}

Status UploadStateStore::MarkUnstorable(std::span<const int64_t> seqs, const std::string& reason,
                                        const std::string& counters) {
  Final f{std::string(kStateSkipped),
          "UPDATE records SET state='skipped', state_ns=?2, error=?3 WHERE seq=?1",
          reason,
          {}};
  return MarkFinal(seqs, f, &counters);
}

namespace {

// The records whose state on `target` is `state` (its row's, or the
// record's without one), among those `where` selects (a condition on
// records r, which may use ?2: `bound`).
Result<std::vector<int64_t>> SeqsInState(sqlite3* db, int64_t target, std::string_view state,
                                         const std::string& where, int64_t bound) {
  auto st = Prepare(db,
                    "SELECT r.seq FROM records r LEFT JOIN target_records t ON t.seq=r.seq AND "
                    "t.target=?1 WHERE coalesce(t.state, r.state)=?3 AND " +
                        where + " ORDER BY r.seq");
  if (!st.ok()) return st.status();
  sqlite3_bind_int64(st->get(), 1, target);
  sqlite3_bind_int64(st->get(), 2, bound);
  sqlite3_bind_text(st->get(), 3, state.data(), static_cast<int>(state.size()), SQLITE_STATIC);
  return ReadInt64Column(db, st->get(), "records read");
}

// Sets `target`'s state of each seq to pending (attempts reset).
Status Requeue(sqlite3* db, int64_t target, const std::vector<int64_t>& ids,
               const std::vector<int64_t>& seqs) {
  for (int64_t seq : seqs) {
    TargetStateChange c;
    c.target = target;
    c.state = kStatePending;
    c.attempts = 0;
    c.state_ns = NowNs();
    SCRIBEFS_RETURN_IF_ERROR(FoldRecordTargets(db, seq, ids, &c));
  }
  return Status::Ok();
}

}  // namespace

Status UploadStateStore::RequeueFailed() {
  return journal_->Apply([&](sqlite3* db) -> Status {
    std::vector<int64_t> ids;
    auto sole = SoleTarget(db, target_, &ids);
    if (!sole.ok()) return sole.status();
    if (*sole)
      return Exec(db, "UPDATE records SET state='pending', attempts=0 WHERE state='failed'");
    // A target has failed a record only while the record is unfinished:
    // records_unfinished serves the search.
    auto seqs =
        SeqsInState(db, target_, kStateFailed,
                    "(r.state = 'pending' OR r.state = 'uploading' OR r.state = 'failed')", 0);
    if (!seqs.ok()) return seqs.status();
    return Requeue(db, target_, ids, *seqs);
  });
}

Status UploadStateStore::RequeueDoneAfter(int64_t seq) {
  return journal_->Apply([&](sqlite3* db) -> Status {
    std::vector<int64_t> ids;
    auto sole = SoleTarget(db, target_, &ids);
    if (!sole.ok()) return sole.status();
    const char* const kNotControl = "op NOT IN ('pause','resume','checkpoint')";
    if (!*sole) {
      auto seqs =
          SeqsInState(db, target_, kStateDone, std::string("r.seq > ?2 AND r.") + kNotControl, seq);
      if (!seqs.ok()) return seqs.status();
      return Requeue(db, target_, ids, *seqs);
    }
    auto st = Prepare(db, std::string("UPDATE records SET state='pending', attempts=0 WHERE seq "
                                      "> ?1 AND state='done' AND ") +
                              kNotControl);
    if (!st.ok()) return st.status();
    sqlite3_bind_int64(st->get(), 1, seq);
    int rc = sqlite3_step(st->get());
    if (rc != SQLITE_DONE) return SqliteError("requeue", db, rc);
    return Status::Ok();
  });
}

}  // namespace scribefs
