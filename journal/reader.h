// JournalReader: a read-only view of a journal, safe to use while the daemon
// writes it (WAL readers never block the writer). Used by scribectl and tests.
// Not thread-safe; open one per thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "journal/record.h"
#include "journal/sqlite_util.h"

namespace scribefs {

struct JournalFilter {
  std::optional<int64_t> since_seq;  // seq >= since_seq
  std::optional<int64_t> until_seq;  // seq <= until_seq
  std::optional<int64_t> since_ns;   // time_ns >= since_ns
  std::optional<int64_t> until_ns;   // time_ns <= until_ns
  std::optional<std::string> path_glob;  // GLOB on path or new_path
  std::optional<std::string> op;
  std::optional<std::string> state;
  std::optional<int64_t> limit;      // at most this many rows
  bool newest_first = false;         // with limit: the last N (still returned oldest first)
  // A target's id (journal/targets.h): the records' upload state (state,
  // attempts, error, what was stored) as that target has it, and `state`
  // filters on it. Unset: the records' state across every target.
  std::optional<int64_t> target;
};

struct JournalStats {
  std::map<std::string, int64_t> by_op;                            // op -> records
  std::map<std::string, int64_t> by_state;                         // state -> records
  std::map<std::string, std::map<std::string, int64_t>> by_op_state;
  int64_t records = 0;
  int64_t max_seq = 0;
  int64_t pending_records = 0;
  int64_t pending_files = 0;   // distinct paths with a pending record
  int64_t pending_bytes = 0;   // sum of the last known size of each pending file
  std::optional<int64_t> oldest_pending_ns;
};

// What bounded lag (--max-lag, --max-pending) measures of the work not stored
// yet (pending or uploading; failed records wait for `scribectl retry` and do
// not count).
struct JournalBacklog {
  std::optional<int64_t> oldest_pending_ns;  // time of the oldest such record
  // The bytes written locally and not stored yet: the lengths of the byte
  // ranges of the pending write records. Rewrites of the same bytes count
  // each time (an over-estimate, so the bound errs on the safe side); a file
  // that is only truncated, created or renamed adds nothing.
  int64_t written_bytes = 0;
  // Paths whose pending records include one that covers the whole file
  // (create, truncate, reconcile: later writes to it journal no ranges), with
  // the size of its last record when that is a close (nullopt: still open, or
  // no size known; the caller looks at the file).
  std::vector<std::pair<std::string, std::optional<int64_t>>> whole_files;
  // Distinct paths with such a record: the uploader's queue as the journal
  // shows it, before the uploader has read the newest records.
  int64_t pending_paths = 0;
};

// A record still to upload, as far as deciding what it covers needs it.
struct UnfinishedRecord {
  Op op = Op::kWrite;
  std::string path;
  std::optional<std::string> new_path;
  int64_t flags = 0;
  std::string state;  // pending | uploading | failed
};

// Records up to a seq that are not uploaded yet.
struct UnfinishedCount {
  int64_t pending = 0;  // pending or uploading
  int64_t failed = 0;
  std::optional<int64_t> oldest_pending_ns;  // of the pending or uploading ones
};

// The paths a GLOB pattern can match, bounded by its literal prefix (the
// text before its first '*', '?' or '['): every match m has low <= m < high
// in SQLite's BINARY order (high unset: no bound above). nullopt when the
// pattern starts with a wildcard, which no range bounds.
struct PathRange {
  std::string low;
  std::optional<std::string> high;
};
std::optional<PathRange> GlobPrefixRange(std::string_view glob);

// How JournalReader::Query finds the records a path glob names (schema
// version 6): kIndex collects them from records_path and records_new_path
// within the glob's prefix range, kScan reads the journal in seq order and
// tests each record. Each walks its own length: kIndex the records in the
// range (records_in_range, counted only as far as this choice needs), kScan the
// seqs the filter spans (scan_span: from --since, or the start, to --until,
// or the newest record), so the shorter walk wins: --follow's polls, which
// span a few new records, scan. A --limit over a glob that matches more than
// kPathIndexProbe records scans too: reading from the end finds the newest
// matches sooner than collecting all of them.
enum class PathPlan { kScan, kIndex };
inline constexpr int64_t kPathIndexProbe = 100'000;
PathPlan ChoosePathPlan(bool has_range, bool has_limit, int64_t records_in_range,
                        int64_t scan_span);

// The SELECT Query runs for f on a journal of schema_version (parameters:
// ?1 since_seq .. ?9 target, ?10/?11 the path range), for tests to read its
// plan.
std::string QuerySql(const JournalFilter& f, int schema_version, PathPlan plan,
                     bool range_has_high);

class JournalReader {
 public:
  // Fails with a clear message when the file is missing, unreadable, or not a
  // scribefs journal.
  static Result<std::unique_ptr<JournalReader>> Open(const std::string& path);

  Result<std::vector<Record>> Query(const JournalFilter& filter);
  Result<JournalStats> Stats();
  Result<int64_t> MaxSeq();
  // A value of the meta table (what the daemon noted: datadir, target, ...);
  // nullopt when the key is absent.
  Result<std::optional<std::string>> Meta(const std::string& key);

  // Every record not uploaded yet (pending, uploading, failed), oldest first.
  Result<std::vector<UnfinishedRecord>> Unfinished(std::optional<int64_t> target = {});
  // Whether a record not uploaded yet names path (as path or new_path).
  Result<bool> NamesUnfinished(const std::string& path);
  // What is left to upload of the records up to seq, and the sum of the last
  // known size of each path a pending record up to seq names. With a target:
  // what is left for that target.
  Result<UnfinishedCount> UnfinishedThrough(int64_t seq,
                                            std::optional<int64_t> target = std::nullopt);
  // The least seq of a record not uploaded yet (pending, uploading, failed);
  // nullopt when there is none. (History's watermark, uploader/history_recorder.h.)
  // With a target: not uploaded to that target yet.
  Result<std::optional<int64_t>> FirstUnfinishedSeq(std::optional<int64_t> target = std::nullopt);
  Result<int64_t> PendingBytesThrough(int64_t seq);
  // Bounded by the pending work (records_unfinished), not the journal's length.
  // With a target: what that target has not stored.
  Result<JournalBacklog> Backlog(std::optional<int64_t> target = std::nullopt);

  // A read transaction: every read of this reader (and of a RemoteIndex over
  // it) until the Snapshot ends sees one state of the journal.
  class Snapshot {
   public:
    ~Snapshot();
    Snapshot(Snapshot&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
    Snapshot(const Snapshot&) = delete;
    Snapshot& operator=(const Snapshot&) = delete;
    Snapshot& operator=(Snapshot&&) = delete;

   private:
    friend class JournalReader;
    explicit Snapshot(sqlite3* db) : db_(db) {}
    sqlite3* db_;
  };
  Result<Snapshot> BeginSnapshot();

  int schema_version() const { return schema_version_; }

 private:
  friend class RemoteIndex;  // reads the objects table through db_
  friend class Targets;      // reads the targets table through db_
  explicit JournalReader(SqliteDb db) : db_(std::move(db)) {}
  SqliteDb db_;
  int schema_version_ = 0;  // of the file as opened (see schema.h)
  SqliteStmt names_unfinished_;
  // Records within r: those with a path in it, counted up to cap, plus those
  // with a new_path in it, counted up to cap.
  Result<int64_t> CountInRange(const PathRange& r, int64_t cap);
};

// Reads one row of a "SELECT <kRecordColumns> FROM records" statement.
Record ReadRecordRow(sqlite3_stmt* stmt);
extern const char* const kRecordColumns;

}  // namespace scribefs
