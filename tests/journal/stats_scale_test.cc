// `scribectl stats` and `status` on a large journal: their queries are
// bounded by the pending work, not by the length of the journal (schema
// version 3: counts kept by triggers; indexes for the last size of a path
// and for the last checkpoint; version 4: the counts of finished records
// only, the unfinished ones counted through records_unfinished). The journal is built quickly with
// a recursive CTE; the figures are checked exactly, the time is only printed (no timing assertion
// on a shared machine), and the query plans are asserted not to scan the records table.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "journal/journal.h"
#include "journal/reader.h"
#include "tests/journal/journal_test_util.h"

namespace scribefs {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kRecords = 1'000'000;
constexpr int64_t kPendingPaths = 2'000;

class StatsScaleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    { ASSERT_TRUE(Journal::Open(db_path()).ok()); }
    RawDb raw(db_path());
    // kRecords done records over 100,000 paths ("f<i % 100000>"), a close
    // with a size every 4th; then for kPendingPaths of those paths a pending
    // write, a pending close of 1000 bytes, and one checkpoint long ago.
    raw.Exec("BEGIN");
    raw.Exec("WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < " +
             std::to_string(kRecords) +
             ") INSERT INTO records(time_ns, op, path, size, uid, gid, pid, state, state_ns) "
             "SELECT n, CASE WHEN n % 4 = 0 THEN 'close' ELSE 'write' END, 'f' || (n % 100000), "
             "CASE WHEN n % 4 = 0 THEN n ELSE NULL END, 0, 0, 0, 'done', n FROM i");
    raw.Exec(
        "INSERT INTO records(time_ns, op, path, uid, gid, pid, state) "
        "VALUES(5, 'checkpoint', '', 0, 0, 0, 'done')");
    raw.Exec("WITH RECURSIVE i(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i WHERE n < " +
             std::to_string(kPendingPaths - 1) +
             ") INSERT INTO records(time_ns, op, path, size, uid, gid, pid, state) "
             "SELECT 2000000 + n, op, 'f' || n, size, 0, 0, 0, 'pending' FROM i, "
             "(SELECT 'write' AS op, NULL AS size UNION ALL SELECT 'close', 1000)");
    raw.Exec("COMMIT");
    raw.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string db_path() { return dir_->path() + "/journal.db"; }
  static TempDir* dir_;
};
TempDir* StatsScaleTest::dir_ = nullptr;

TEST_F(StatsScaleTest, ReaderFiguresAreExactAndQueriesUseIndexes) {
  auto reader = JournalReader::Open(db_path());
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto t0 = std::chrono::steady_clock::now();
  auto st = (*reader)->Stats();
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  printf("JournalReader::Stats on %lld records: %.1f ms\n", static_cast<long long>(st->records),
         ms);
  EXPECT_EQ(st->records, kRecords + 1 + 2 * kPendingPaths);
  EXPECT_EQ(st->by_state["done"], kRecords + 1);
  EXPECT_EQ(st->by_state["pending"], 2 * kPendingPaths);
  EXPECT_EQ(st->by_op["close"], kRecords / 4 + kPendingPaths);
  EXPECT_EQ(st->pending_files, kPendingPaths);
  EXPECT_EQ(st->pending_records, 2 * kPendingPaths);
  EXPECT_EQ(st->pending_bytes, 1000 * kPendingPaths);
  EXPECT_EQ(st->oldest_pending_ns, 2000000);

  // The query shapes stats and status run, as the reader writes them: none
  // scans the records table.
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  auto plan = [&](const std::string& sql) {
    std::string all;
    for (const auto& line : raw.Column("EXPLAIN QUERY PLAN " + sql, 3)) all += line + "\n";
    return all;
  };
  std::string pending = plan(
      "WITH p AS (SELECT path, min(time_ns) AS t, count(*) AS n FROM records "
      "WHERE (state = 'pending' OR state = 'uploading' OR state = 'failed') AND state != 'failed' "
      "GROUP BY path) "
      "SELECT count(*), coalesce(sum(n),0), min(t), coalesce(sum((SELECT size FROM records r "
      "WHERE r.path=p.path AND r.size IS NOT NULL ORDER BY seq DESC LIMIT 1)),0) FROM p");
  EXPECT_THAT(pending, HasSubstr("records_unfinished")) << pending;
  EXPECT_THAT(pending, HasSubstr("records_path_size")) << pending;
  EXPECT_THAT(pending, Not(HasSubstr("SCAN records\n"))) << pending;
  std::string counts = plan(
      "SELECT op, state, n FROM record_counts WHERE n > 0 UNION ALL "
      "SELECT op, state, count(*) FROM records "
      "WHERE (state = 'pending' OR state = 'uploading' OR state = 'failed') GROUP BY op, state");
  EXPECT_THAT(counts, HasSubstr("records_unfinished")) << counts;
  EXPECT_THAT(counts, Not(HasSubstr("SCAN records\n"))) << counts;
  std::string checkpoint = plan(
      "SELECT seq FROM records WHERE 1 AND op = 'checkpoint' AND "
      "(op = 'pause' OR op = 'resume' OR op = 'checkpoint') ORDER BY seq DESC LIMIT 1");
  EXPECT_THAT(checkpoint, HasSubstr("records_control")) << checkpoint;
}

TEST_F(StatsScaleTest, ScribectlStatsAnswers) {
  std::string cmd =
      std::string(SCRIBECTL_BIN) + " --state-dir " + dir_->path() + " --json stats 2>&1";
  auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  printf("scribectl --json stats: %.1f ms (whole process)\n", ms);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j.value("pending_files", -1), kPendingPaths) << out;
  EXPECT_EQ(j.value("pending_bytes", -1), 1000 * kPendingPaths) << out;
  EXPECT_GE(j.value("records", int64_t{0}), kRecords) << out;
}

}  // namespace
}  // namespace scribefs
