#include "journal/reader.h"

#include <sys/stat.h>
#include <unistd.h>

#include "journal/schema.h"

namespace scribefs {

const char* const kRecordColumns =
    "seq,time_ns,op,path,new_path,ranges,size,mode,uid,gid,pid,flags,detail,state,attempts,"
    "error,etag,sha256,version_id,state_ns";

namespace {
std::optional<std::string> OptText(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, i)));
}
std::optional<int64_t> OptInt(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(s, i);
}
bool IsControlOp(const std::string& op) {
  return op == OpName(Op::kPause) || op == OpName(Op::kResume) || op == OpName(Op::kCheckpoint);
}

}  // namespace

Record ReadRecordRow(sqlite3_stmt* s) {
  Record r;
  r.seq = sqlite3_column_int64(s, 0);
  r.time_ns = sqlite3_column_int64(s, 1);
  std::string op = OptText(s, 2).value_or("");
  r.op = ParseOp(op).value_or(Op::kWrite);
  r.path = OptText(s, 3).value_or("");
  r.new_path = OptText(s, 4);
  if (auto ranges = OptText(s, 5)) r.ranges = RangesFromJson(*ranges).value_or(std::vector<ByteRange>{});
  r.size = OptInt(s, 6);
  if (auto m = OptInt(s, 7)) r.mode = static_cast<uint32_t>(*m);
  r.uid = static_cast<uint32_t>(sqlite3_column_int64(s, 8));
  r.gid = static_cast<uint32_t>(sqlite3_column_int64(s, 9));
  r.pid = static_cast<int32_t>(sqlite3_column_int64(s, 10));
  r.flags = OptInt(s, 11);
  r.detail = OptText(s, 12).value_or("");
  r.state = OptText(s, 13).value_or("");
  r.attempts = sqlite3_column_int64(s, 14);
  r.error = OptText(s, 15);
  r.etag = OptText(s, 16);
  r.sha256 = OptText(s, 17);
  r.version_id = OptText(s, 18);
  r.state_ns = OptInt(s, 19);
  return r;
}

Result<std::unique_ptr<JournalReader>> JournalReader::Open(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return PosixError("journal " + path, errno);
  if (access(path.c_str(), R_OK) != 0) return PosixError("journal " + path, errno);
  sqlite3* raw = nullptr;
  // Read-only, but WAL readers need the -shm file; the daemon keeps it present.
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) return SqliteError("journal " + path, raw, rc);
  sqlite3_busy_timeout(raw, 5000);
  auto check = Prepare(raw, "PRAGMA application_id");
  if (!check.ok()) return check.status().WithContext("journal " + path);
  rc = sqlite3_step(check->get());
  if (rc != SQLITE_ROW) return SqliteError("journal " + path, raw, rc);
  if (sqlite3_column_int(check->get(), 0) != kApplicationId)
    return Status::Error(EINVAL, path + ": not a scribefs journal");
  // Read-only: an older journal is read as it is (the daemon migrates it).
  int version = 0;
  rc = ReadIntPragma(raw, "PRAGMA user_version", &version);
  if (rc != SQLITE_OK) return SqliteError("journal " + path, raw, rc);
  auto reader = std::unique_ptr<JournalReader>(new JournalReader(std::move(db)));
  reader->schema_version_ = version;
  return reader;
}

namespace {

// The records' columns, qualified by the alias r, with the upload state
// read through the target's row t when there is one (journal/target_states.h).
std::string TargetRecordColumns() {
  std::string cols;
  for (const char* c : {"seq", "time_ns", "op", "path", "new_path", "ranges", "size", "mode", "uid",
                        "gid", "pid", "flags", "detail"})
    cols += std::string("r.") + c + ",";
  cols += "coalesce(t.state,r.state)";
  for (const char* c : {"attempts", "error", "etag", "sha256", "version_id", "state_ns"})
    cols += std::string(",CASE WHEN t.seq IS NULL THEN r.") + c + " ELSE t." + c + " END";
  return cols;
}

// Queries over the records not stored yet read them through the partial index
// records_unfinished, named outright: since version 6 indexes every path, SQLite
// would rather read the whole journal in path order for a GROUP BY path than
// sort the few pending records (10M records: seconds instead of milliseconds).
const char* const kThroughUnfinished = " INDEXED BY records_unfinished";

// The partial index records_unfinished's condition on the alias r.
const char* const kUnfinishedOnR =
    "(r.state = 'pending' OR r.state = 'uploading' OR r.state = 'failed')";

}  // namespace

std::optional<PathRange> GlobPrefixRange(std::string_view glob) {
  std::string low(glob.substr(0, glob.find_first_of("*?[")));
  if (low.empty()) return std::nullopt;
  PathRange r{low, std::nullopt};
  // The least string above every string that starts with low: low with its
  // last byte that is not 0xff incremented, and the bytes after it dropped.
  std::string high = low;
  while (!high.empty() && static_cast<unsigned char>(high.back()) == 0xff) high.pop_back();
  if (!high.empty()) {
    high.back() = static_cast<char>(static_cast<unsigned char>(high.back()) + 1);
    r.high = std::move(high);
  }
  return r;
}

PathPlan ChoosePathPlan(bool has_range, bool has_limit, int64_t records_in_range,
                        int64_t scan_span) {
  if (!has_range || records_in_range >= scan_span) return PathPlan::kScan;
  if (has_limit && records_in_range > kPathIndexProbe) return PathPlan::kScan;
  return PathPlan::kIndex;
}

namespace {

// `col` within a glob's prefix range whose bounds are the parameters `low`
// and `high` (without an upper bound when the prefix has none): a range
// search in records_path or records_new_path.
std::string InRange(const char* col, const char* low, const char* high, bool has_high) {
  return std::string(col) + " >= " + low +
         (has_high ? std::string(" AND ") + col + " < " + high : "");
}

}  // namespace

std::string QuerySql(const JournalFilter& f, int schema_version, PathPlan plan,
                     bool range_has_high) {
  // With a target, columns are qualified: r the record, t its target's row.
  const bool by_target = f.target && schema_version >= 5;
  const std::string r = by_target ? "r." : "";
  std::string where = " WHERE 1";
  if (f.since_seq) where += " AND " + r + "seq >= ?1";
  if (f.until_seq) where += " AND " + r + "seq <= ?2";
  if (f.since_ns) where += " AND " + r + "time_ns >= ?3";
  if (f.until_ns) where += " AND " + r + "time_ns <= ?4";
  if (f.path_glob) where += " AND (" + r + "path GLOB ?5 OR " + r + "new_path GLOB ?5)";
  if (f.op) {
    where += " AND " + r + "op = ?6";
    // The last pause/resume/checkpoint (scribectl status) is a seek in the
    // partial index records_control, which SQLite uses only when the query
    // names its condition.
    if (schema_version >= 3 && IsControlOp(*f.op))
      where += by_target ? " AND (r.op = 'pause' OR r.op = 'resume' OR r.op = 'checkpoint')"
                         : " AND " + ControlCondition(schema_version);
  }
  if (f.state) {
    bool unfinished =
        *f.state == kStatePending || *f.state == kStateUploading || *f.state == kStateFailed;
    // Likewise records_unfinished for the states it holds (retry, --state).
    // A target has a record unfinished only while the record is.
    if (by_target) {
      where += " AND coalesce(t.state,r.state) = ?7";
      if (unfinished) where += std::string(" AND ") + kUnfinishedOnR;
    } else {
      where += " AND state = ?7";
      if (unfinished) where += " AND " + UnfinishedCondition(schema_version);
    }
  }
  // kIndex: the seqs of the records in the glob's prefix range come first
  // (range searches in records_path and records_new_path), and drive the
  // join (CROSS JOIN keeps that order), so that no record outside the range
  // is read.
  std::string from = "records";
  if (plan == PathPlan::kIndex) {
    auto in_range = [&](const char* col) {
      return std::string("SELECT seq AS hit FROM records WHERE ") +
             InRange(col, "?10", "?11", range_has_high) + " AND " + col + " GLOB ?5" +
             (f.since_seq ? " AND seq >= ?1" : "") + (f.until_seq ? " AND seq <= ?2" : "");
    };
    from =
        "(" + in_range("path") + " UNION " + in_range("new_path") + ") AS hits CROSS JOIN records";
    where += " AND " + r + "seq = hits.hit";
  }
  std::string sql =
      by_target ? "SELECT " + TargetRecordColumns() + " FROM " + from +
                      " r LEFT JOIN target_records t ON t.seq = r.seq AND t.target = ?9" + where
                : std::string("SELECT ") + kRecordColumns + " FROM " + from + where;
  if (f.newest_first && f.limit) {
    sql = "SELECT * FROM (" + sql + " ORDER BY " + r + "seq DESC LIMIT ?8) ORDER BY 1";
  } else {
    sql += " ORDER BY " + r + "seq";
    if (f.limit) sql += " LIMIT ?8";
  }
  return sql;
}

Result<int64_t> JournalReader::CountInRange(const PathRange& range, int64_t cap) {
  std::string sql;
  for (const char* col : {"path", "new_path"}) {
    if (!sql.empty()) sql += " + ";
    sql += std::string("(SELECT count(*) FROM (SELECT 1 FROM records WHERE ") +
           InRange(col, "?1", "?2", range.high.has_value()) + " LIMIT ?3))";
  }
  auto st = Prepare(db_.get(), "SELECT " + sql);
  if (!st.ok()) return st.status().WithContext("journal query");
  sqlite3_bind_text(st->get(), 1, range.low.data(), static_cast<int>(range.low.size()),
                    SQLITE_TRANSIENT);
  if (range.high)
    sqlite3_bind_text(st->get(), 2, range.high->data(), static_cast<int>(range.high->size()),
                      SQLITE_TRANSIENT);
  sqlite3_bind_int64(st->get(), 3, cap);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_ROW) return SqliteError("journal query", db_.get(), rc);
  return sqlite3_column_int64(st->get(), 0);
}

Result<std::vector<Record>> JournalReader::Query(const JournalFilter& f) {
  const bool by_target = f.target && schema_version_ >= 5;
  // A glob's literal prefix bounds the records to read (schema version 6
  // indexes every path), unless the seqs to scan are fewer (ChoosePathPlan).
  std::optional<PathRange> range;
  if (f.path_glob && schema_version_ >= 6) range = GlobPrefixRange(*f.path_glob);
  int64_t in_range = 0, span = 0;
  if (range) {
    auto max = MaxSeq();
    if (!max.ok()) return max.status();
    span = std::max<int64_t>(
        0, std::min(f.until_seq.value_or(*max), *max) - f.since_seq.value_or(0) + 1);
    // Counted no further than the plan needs: --follow's polls span a few
    // records, and count as many.
    auto n = CountInRange(*range, std::min(span, kPathIndexProbe) + 1);
    if (!n.ok()) return n.status();
    in_range = *n;
  }
  const PathPlan plan = ChoosePathPlan(range.has_value(), f.limit.has_value(), in_range, span);
  const std::string sql = QuerySql(f, schema_version_, plan, range && range->high);
  auto st = Prepare(db_.get(), sql);
  if (!st.ok()) return st.status().WithContext("journal query");
  sqlite3_stmt* s = st->get();
  if (f.since_seq) sqlite3_bind_int64(s, 1, *f.since_seq);
  if (f.until_seq) sqlite3_bind_int64(s, 2, *f.until_seq);
  if (f.since_ns) sqlite3_bind_int64(s, 3, *f.since_ns);
  if (f.until_ns) sqlite3_bind_int64(s, 4, *f.until_ns);
  if (f.path_glob) sqlite3_bind_text(s, 5, f.path_glob->c_str(), -1, SQLITE_TRANSIENT);
  if (f.op) sqlite3_bind_text(s, 6, f.op->c_str(), -1, SQLITE_TRANSIENT);
  if (f.state) sqlite3_bind_text(s, 7, f.state->c_str(), -1, SQLITE_TRANSIENT);
  if (f.limit) sqlite3_bind_int64(s, 8, *f.limit);
  if (by_target) sqlite3_bind_int64(s, 9, *f.target);
  if (plan == PathPlan::kIndex) {
    sqlite3_bind_text(s, 10, range->low.data(), static_cast<int>(range->low.size()),
                      SQLITE_TRANSIENT);
    if (range->high)
      sqlite3_bind_text(s, 11, range->high->data(), static_cast<int>(range->high->size()),
                        SQLITE_TRANSIENT);
  }
  std::vector<Record> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(ReadRecordRow(s));
  if (rc != SQLITE_DONE) return SqliteError("journal query", db_.get(), rc);
  return out;
}

Result<int64_t> JournalReader::MaxSeq() {
  auto st = Prepare(db_.get(), "SELECT coalesce(max(seq),0) FROM records");
  if (!st.ok()) return st.status();
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_ROW) return SqliteError("journal query", db_.get(), rc);
  return sqlite3_column_int64(st->get(), 0);
}

Result<std::optional<std::string>> JournalReader::Meta(const std::string& key) {
  auto st = Prepare(db_.get(), "SELECT value FROM meta WHERE key=?1");
  if (!st.ok()) return st.status();
  sqlite3_bind_text(st->get(), 1, key.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st->get());
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return SqliteError("journal meta", db_.get(), rc);
  const unsigned char* v = sqlite3_column_text(st->get(), 0);
  return std::optional<std::string>(v ? reinterpret_cast<const char*>(v) : "");
}

JournalReader::Snapshot::~Snapshot() {
  if (db_) sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
}

Result<JournalReader::Snapshot> JournalReader::BeginSnapshot() {
  SCRIBEFS_RETURN_IF_ERROR(Exec(db_.get(), "BEGIN").WithContext("journal snapshot"));
  return Snapshot(db_.get());
}

Result<std::vector<UnfinishedRecord>> JournalReader::Unfinished(std::optional<int64_t> target) {
  // The WHERE is exactly that of the partial index records_unfinished (with
  // a target: a target has a record unfinished only while the record is).
  const bool by_target = target && schema_version_ >= 5;
  std::string sql =
      by_target ? std::string(
                      "SELECT r.op, r.path, r.new_path, r.flags, coalesce(t.state,r.state) FROM "
                      "records r") +
                      kThroughUnfinished +
                      " LEFT JOIN target_records t ON t.seq = r.seq AND t.target = ?1 WHERE " +
                      kUnfinishedOnR +
                      " AND coalesce(t.state,r.state) IN ('pending','uploading','failed') ORDER "
                      "BY r.seq"
                : "SELECT op, path, new_path, flags, state FROM records" +
                      std::string(kThroughUnfinished) + " WHERE " +
                      UnfinishedCondition(schema_version_) + " ORDER BY seq";
  auto st = Prepare(db_.get(), sql);
  if (!st.ok()) return st.status();
  sqlite3_stmt* s = st->get();
  if (by_target) sqlite3_bind_int64(s, 1, *target);
  std::vector<UnfinishedRecord> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    auto op = ParseOp(OptText(s, 0).value_or(""));
    if (!op) continue;  // written by a newer scribefs: not ours to interpret
    UnfinishedRecord r;
    r.op = *op;
    r.path = OptText(s, 1).value_or("");
    r.new_path = OptText(s, 2);
    r.flags = OptInt(s, 3).value_or(0);
    r.state = OptText(s, 4).value_or("");
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return SqliteError("journal: reading unfinished records", db_.get(), rc);
  return out;
}

Result<bool> JournalReader::NamesUnfinished(const std::string& path) {
  if (!names_unfinished_) {
    auto st =
        Prepare(db_.get(), "SELECT EXISTS(SELECT 1 FROM records" + std::string(kThroughUnfinished) +
                               " WHERE " + UnfinishedCondition(schema_version_) +
                               " AND (path=?1 OR new_path=?1))");
    if (!st.ok()) return st.status();
    names_unfinished_ = std::move(st.value());
  }
  sqlite3_stmt* s = names_unfinished_.get();
  StmtResetter reset(s);
  sqlite3_bind_text(s, 1, path.data(), static_cast<int>(path.size()), SQLITE_STATIC);
  int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW) return SqliteError("journal query", db_.get(), rc);
  return sqlite3_column_int(s, 0) != 0;
}

Result<UnfinishedCount> JournalReader::UnfinishedThrough(int64_t seq,
                                                         std::optional<int64_t> target) {
  // Served by the partial index records_unfinished: a target has a record
  // unfinished only while the record is.
  const bool by_target = target && schema_version_ >= 5;
  std::string sql =
      by_target ? std::string(
                      "SELECT count(*), coalesce(sum(coalesce(t.state,r.state)='failed'),0), "
                      "min(CASE WHEN coalesce(t.state,r.state) != 'failed' THEN r.time_ns END) "
                      "FROM records r") +
                      kThroughUnfinished +
                      " LEFT JOIN target_records t ON t.seq = r.seq AND t.target = ?2 WHERE " +
                      kUnfinishedOnR +
                      " AND r.seq <= ?1 AND coalesce(t.state,r.state) IN "
                      "('pending','uploading','failed')"
                : "SELECT count(*), coalesce(sum(state='failed'),0), min(CASE WHEN state != "
                  "'failed' THEN time_ns END) FROM records" +
                      std::string(kThroughUnfinished) + " WHERE " +
                      UnfinishedCondition(schema_version_) + " AND seq <= ?1";
  auto st = Prepare(db_.get(), sql);
  if (!st.ok()) return st.status();
  sqlite3_bind_int64(st->get(), 1, seq);
  if (by_target) sqlite3_bind_int64(st->get(), 2, *target);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_ROW) return SqliteError("journal query", db_.get(), rc);
  UnfinishedCount c;
  c.failed = sqlite3_column_int64(st->get(), 1);
  c.pending = sqlite3_column_int64(st->get(), 0) - c.failed;
  if (sqlite3_column_type(st->get(), 2) != SQLITE_NULL)
    c.oldest_pending_ns = sqlite3_column_int64(st->get(), 2);
  return c;
}

Result<std::optional<int64_t>> JournalReader::FirstUnfinishedSeq(std::optional<int64_t> target) {
  // Served by the partial index records_unfinished.
  const bool by_target = target && schema_version_ >= 5;
  std::string sql =
      by_target ? std::string("SELECT min(r.seq) FROM records r") + kThroughUnfinished +
                      " LEFT JOIN target_records t ON t.seq = r.seq AND t.target = ?1 WHERE " +
                      kUnfinishedOnR +
                      " AND coalesce(t.state,r.state) IN ('pending','uploading','failed')"
                : "SELECT min(seq) FROM records" + std::string(kThroughUnfinished) + " WHERE " +
                      UnfinishedCondition(schema_version_);
  auto st = Prepare(db_.get(), sql);
  if (!st.ok()) return st.status();
  if (by_target) sqlite3_bind_int64(st->get(), 1, *target);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_ROW) return SqliteError("journal query", db_.get(), rc);
  if (sqlite3_column_type(st->get(), 0) == SQLITE_NULL) return std::optional<int64_t>();
  return std::optional<int64_t>(sqlite3_column_int64(st->get(), 0));
}

Result<int64_t> JournalReader::PendingBytesThrough(int64_t seq) {
  // The paths come from records_unfinished, each one's size from
  // records_path_size (schema version 2): bounded by the pending work, not
  // by the length of the journal.
  auto st =
      Prepare(db_.get(),
              "SELECT coalesce(sum((SELECT size FROM records r2 WHERE r2.path=p.path AND "
              "r2.size IS NOT NULL ORDER BY seq DESC LIMIT 1)),0) FROM (SELECT DISTINCT "
              "path FROM records" +
                  std::string(kThroughUnfinished) + " WHERE " +
                  UnfinishedCondition(schema_version_) + " AND state != 'failed' AND seq <= ?1) p");
  if (!st.ok()) return st.status();
  sqlite3_bind_int64(st->get(), 1, seq);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_ROW) return SqliteError("journal query", db_.get(), rc);
  return sqlite3_column_int64(st->get(), 0);
}

Result<JournalBacklog> JournalReader::Backlog(std::optional<int64_t> target) {
  // With a target: the records it has not stored (a target has a record
  // unfinished only while the record is, so the partial index still serves).
  const bool by_target = target && schema_version_ >= 5;
  const std::string from =
      by_target ? std::string("records r") + kThroughUnfinished +
                      " LEFT JOIN target_records t ON t.seq = r.seq AND t.target = ?1 WHERE " +
                      kUnfinishedOnR + " AND coalesce(t.state,r.state) IN ('pending','uploading')"
                : "records r" + std::string(kThroughUnfinished) + " WHERE " +
                      UnfinishedCondition(schema_version_) + " AND state != 'failed'";
  // ranges is "[[offset,length],...]" (RangesToJson).
  auto st = Prepare(db_.get(),
                    "SELECT min(r.time_ns), coalesce(sum(CASE WHEN r.op = 'write' AND r.ranges IS "
                    "NOT NULL THEN (SELECT sum(json_extract(value, '$[1]')) FROM "
                    "json_each(r.ranges)) END), 0), count(DISTINCT r.path) FROM " +
                        from);
  if (!st.ok()) return st.status();
  if (by_target) sqlite3_bind_int64(st->get(), 1, *target);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_ROW) return SqliteError("journal backlog", db_.get(), rc);
  JournalBacklog out;
  if (sqlite3_column_type(st->get(), 0) != SQLITE_NULL)
    out.oldest_pending_ns = sqlite3_column_int64(st->get(), 0);
  out.written_bytes = sqlite3_column_int64(st->get(), 1);
  out.pending_paths = sqlite3_column_int64(st->get(), 2);
  auto whole = Prepare(db_.get(),
                       "SELECT p.path, (SELECT CASE WHEN c.op = 'close' THEN c.size END FROM "
                       "records c WHERE c.seq = p.last) FROM (SELECT r.path, max(r.seq) AS last "
                       "FROM " +
                           from +
                           " GROUP BY r.path HAVING max(r.op IN ('create', 'truncate', "
                           "'reconcile'))) p");
  if (!whole.ok()) return whole.status();
  if (by_target) sqlite3_bind_int64(whole->get(), 1, *target);
  while ((rc = sqlite3_step(whole->get())) == SQLITE_ROW) {
    std::string path = reinterpret_cast<const char*>(sqlite3_column_text(whole->get(), 0));
    std::optional<int64_t> size;
    if (sqlite3_column_type(whole->get(), 1) != SQLITE_NULL)
      size = sqlite3_column_int64(whole->get(), 1);
    out.whole_files.emplace_back(std::move(path), size);
  }
  if (rc != SQLITE_DONE) return SqliteError("journal backlog", db_.get(), rc);
  return out;
}

Result<JournalStats> JournalReader::Stats() {
  JournalStats out;
  // One read transaction so that the figures agree with each other.
  SCRIBEFS_RETURN_IF_ERROR(Exec(db_.get(), "BEGIN"));
  struct EndTxn {
    sqlite3* db;
    ~EndTxn() { sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr); }
  } end{db_.get()};
  {
    // Schema version 3 keeps these counts (triggers), version 4 only those of
    // finished records: the unfinished ones are counted through
    // records_unfinished (the WHERE is its condition), bounded by the pending
    // work. Older journals, read before a daemon migrated them, are counted.
    std::string sql =
        schema_version_ >= 4 ? "SELECT op, state, n FROM record_counts WHERE n > 0 UNION ALL "
                               "SELECT op, state, count(*) FROM records" +
                                   std::string(kThroughUnfinished) + " WHERE " +
                                   UnfinishedCondition(schema_version_) + " GROUP BY op, state"
        : schema_version_ == 3 ? "SELECT op, state, n FROM record_counts WHERE n > 0"
                               : "SELECT op, state, count(*) FROM records GROUP BY op, state";
    auto st = Prepare(db_.get(), sql);
    if (!st.ok()) return st.status();
    int rc;
    while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
      std::string op = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0));
      std::string state = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 1));
      int64_t n = sqlite3_column_int64(st->get(), 2);
      out.by_op[op] += n;
      out.by_state[state] += n;
      out.by_op_state[op][state] += n;
      out.records += n;
    }
    if (rc != SQLITE_DONE) return SqliteError("journal stats", db_.get(), rc);
  }
  {
    // Pending work: distinct paths, and for each the last size the journal
    // knows. The WHERE names the partial index records_unfinished's condition
    // so that SQLite uses it (a condition that merely implies it is not
    // always matched);
    // the sizes come from records_path_size. Bounded by the pending work.
    auto st = Prepare(
        db_.get(),
        "WITH p AS (SELECT path, min(time_ns) AS t, count(*) AS n FROM records" +
            std::string(kThroughUnfinished) + " WHERE " + UnfinishedCondition(schema_version_) +
            " AND state != 'failed' "
            "  GROUP BY path) "
            "SELECT count(*), coalesce(sum(n),0), min(t), coalesce(sum((SELECT size FROM "
            "records r WHERE r.path=p.path AND r.size IS NOT NULL ORDER BY seq DESC "
            "LIMIT 1)),0) FROM p");
    if (!st.ok()) return st.status();
    int rc = sqlite3_step(st->get());
    if (rc != SQLITE_ROW) return SqliteError("journal stats", db_.get(), rc);
    out.pending_files = sqlite3_column_int64(st->get(), 0);
    out.pending_records = sqlite3_column_int64(st->get(), 1);
    if (sqlite3_column_type(st->get(), 2) != SQLITE_NULL)
      out.oldest_pending_ns = sqlite3_column_int64(st->get(), 2);
    out.pending_bytes = sqlite3_column_int64(st->get(), 3);
  }
  auto max = MaxSeq();
  if (!max.ok()) return max.status();
  out.max_seq = *max;
  return out;
}

}  // namespace scribefs
