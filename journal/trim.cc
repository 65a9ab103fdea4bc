#include "journal/trim.h"

#include <algorithm>
#include <charconv>

#include "journal/journal.h"
#include "journal/schema.h"
#include "journal/sqlite_util.h"

namespace scribefs {
namespace {

Result<std::optional<std::string>> ReadMeta(sqlite3* db, const char* key) {
  auto st = Prepare(db, "SELECT value FROM meta WHERE key = ?1");
  if (!st.ok()) return st.status();
  sqlite3_bind_text(st->get(), 1, key, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st->get());
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqliteError("journal meta", db, rc);
  return std::optional<std::string>(
      reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
}

Status WriteMeta(sqlite3* db, const char* key, int64_t value) {
  auto st = Prepare(db,
                    "INSERT INTO meta(key, value) VALUES(?1, ?2) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  if (!st.ok()) return st.status();
  std::string v = std::to_string(value);
  sqlite3_bind_text(st->get(), 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_text(st->get(), 2, v.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_DONE) return SqliteError("journal meta", db, rc);
  return Status::Ok();
}

// The highest seq S <= hi such that the first record at or after S is older
// than cut_ns, by bisection over seqs (each probe is one rowid seek): the
// records of a journal are in time order but for clock steps, and the time
// column has no index. A scan from the start would read, every pass, every
// record still inside the retention (at 100 changes/s and 7 days, 60M rows).
// A clock step makes the bound too low (trimming waits) or too high (the
// per-row condition of the delete still holds): never a wrong delete.
Result<int64_t> TimeBound(sqlite3* db, int64_t hi, int64_t cut_ns) {
  auto st = Prepare(db, "SELECT seq, time_ns FROM records WHERE seq >= ?1 ORDER BY seq LIMIT 1");
  if (!st.ok()) return st.status();
  int64_t a = 0, b = hi;
  while (a < b) {
    int64_t mid = a + (b - a + 1) / 2;
    sqlite3_reset(st->get());
    sqlite3_bind_int64(st->get(), 1, mid);
    int rc = sqlite3_step(st->get());
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError("journal trim", db, rc);
    bool older = rc == SQLITE_ROW && sqlite3_column_int64(st->get(), 0) <= hi &&
                 sqlite3_column_int64(st->get(), 1) <= cut_ns;
    if (older)
      a = mid;
    else
      b = mid - 1;
  }
  return a;
}

struct BatchOutcome {
  int64_t deleted = 0;
  std::optional<int64_t> through, through_ns;
};

// One batch, inside the writer's transaction.
Status TrimBatch(sqlite3* db, const TrimPolicy& policy, int64_t now_ns, BatchOutcome* out) {
  auto stored = ReadMeta(db, kMetaHistoryStoredThrough);
  if (!stored.ok()) return stored.status();
  std::optional<int64_t> hi = ParseMetaInt(*stored);
  auto prev = ReadMeta(db, kMetaTrimmedThrough);
  if (!prev.ok()) return prev.status();
  auto prev_ns = ReadMeta(db, kMetaTrimmedThroughNs);
  if (!prev_ns.ok()) return prev_ns.status();
  out->through = ParseMetaInt(*prev);
  out->through_ns = ParseMetaInt(*prev_ns);
  if (!hi || *hi <= 0) return Status::Ok();  // the target holds no history (yet)
  int64_t cut_ns = now_ns - policy.retention_ns;
  auto bound = TimeBound(db, *hi, cut_ns);
  if (!bound.ok()) return bound.status();
  if (*bound <= 0) return Status::Ok();
  // The conditions of the header, in SQL; records_unfinished's rows
  // (pending, uploading, failed) never qualify.
  auto del = Prepare(db,
                     "DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE seq <= ?1 "
                     "AND seq < (SELECT max(seq) FROM records) "
                     "AND (state = 'done' OR state = 'skipped') AND time_ns <= ?2 AND NOT " +
                         ControlCondition(kSchemaVersion) +
                         " ORDER BY seq LIMIT ?3) RETURNING seq, time_ns");
  if (!del.ok()) return del.status();
  sqlite3_bind_int64(del->get(), 1, *bound);
  sqlite3_bind_int64(del->get(), 2, cut_ns);
  sqlite3_bind_int64(del->get(), 3, policy.batch_rows);
  int rc;
  std::optional<int64_t> max_seq, max_ns;
  while ((rc = sqlite3_step(del->get())) == SQLITE_ROW) {
    ++out->deleted;
    int64_t seq = sqlite3_column_int64(del->get(), 0);
    if (!max_seq || seq > *max_seq) {
      max_seq = seq;
      max_ns = sqlite3_column_int64(del->get(), 1);
    }
  }
  if (rc != SQLITE_DONE) return SqliteError("journal trim", db, rc);
  // A done record may keep the row of a target that skipped it (schema
  // version 5, journal/target_states.h): it goes with the record.
  if (max_seq) {
    auto rows = Prepare(db,
                        "DELETE FROM target_records WHERE seq <= ?1 AND NOT EXISTS (SELECT 1 "
                        "FROM records r WHERE r.seq = target_records.seq)");
    if (!rows.ok()) return rows.status();
    sqlite3_bind_int64(rows->get(), 1, *max_seq);
    rc = sqlite3_step(rows->get());
    if (rc != SQLITE_DONE) return SqliteError("journal trim", db, rc);
  }
  if (max_seq && (!out->through || *max_seq > *out->through)) {
    out->through = max_seq;
    out->through_ns = max_ns;
    SCRIBEFS_RETURN_IF_ERROR(WriteMeta(db, kMetaTrimmedThrough, *max_seq));
    SCRIBEFS_RETURN_IF_ERROR(WriteMeta(db, kMetaTrimmedThroughNs, *max_ns));
  }
  return Status::Ok();
}

}  // namespace

Status NoteHistoryStoredThrough(Journal& journal, int64_t target, int64_t seq) {
  const std::string own = std::string(kMetaHistoryStoredThrough) + "." + std::to_string(target);
  return journal.Apply([&](sqlite3* db) -> Status {
    SCRIBEFS_RETURN_IF_ERROR(WriteMeta(db, own.c_str(), seq));
    auto st = Prepare(db,
                      "SELECT min(CAST(m.value AS INTEGER)) FROM targets t JOIN meta m ON m.key = "
                      "?1 || '.' || t.id");
    if (!st.ok()) return st.status();
    sqlite3_bind_text(st->get(), 1, kMetaHistoryStoredThrough, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st->get());
    if (rc != SQLITE_ROW) return SqliteError("history_stored_through", db, rc);
    int64_t least =
        sqlite3_column_type(st->get(), 0) == SQLITE_NULL ? seq : sqlite3_column_int64(st->get(), 0);
    return WriteMeta(db, kMetaHistoryStoredThrough, least);
  });
}

std::optional<int64_t> ParseMetaInt(const std::optional<std::string>& value) {
  if (!value || value->empty()) return std::nullopt;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), v);
  if (ec != std::errc() || end != value->data() + value->size()) return std::nullopt;
  return v;
}

Result<TrimResult> TrimJournal(Journal& journal, const TrimPolicy& policy, int64_t now_ns) {
  TrimResult result;
  for (int i = 0; i < policy.max_batches; ++i) {
    BatchOutcome batch;
    Status s = journal.Apply([&](sqlite3* db) {
      batch = BatchOutcome();
      return TrimBatch(db, policy, now_ns, &batch);
    });
    if (!s.ok()) return s.WithContext("journal trim");
    ++result.batches;
    result.deleted += batch.deleted;
    result.trimmed_through = batch.through;
    result.trimmed_through_ns = batch.through_ns;
    if (batch.deleted < policy.batch_rows) break;
  }
  return result;
}

}  // namespace scribefs
