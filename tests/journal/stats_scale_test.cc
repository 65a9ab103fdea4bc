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
      "INDEXED BY records_unfinished WHERE (state = 'pending' OR state = 'uploading' OR state = "
      "'failed') AND state != 'failed' "
      "GROUP BY path) "
      "SELECT count(*), coalesce(sum(n),0), min(t), coalesce(sum((SELECT size FROM records r "
      "WHERE r.path=p.path AND r.size IS NOT NULL ORDER BY seq DESC LIMIT 1)),0) FROM p");
  EXPECT_THAT(pending, HasSubstr("records_unfinished")) << pending;
  EXPECT_THAT(pending, HasSubstr("SEARCH r USING COVERING INDEX records_path (path=?)")) << pending;
  EXPECT_THAT(pending, Not(HasSubstr("SCAN records\n"))) << pending;
  EXPECT_THAT(pending, Not(HasSubstr("SCAN records USING INDEX records_path"))) << pending;
  std::string counts = plan(
      "SELECT op, state, n FROM record_counts WHERE n > 0 UNION ALL "
      "SELECT op, state, count(*) FROM records INDEXED BY records_unfinished "
      "WHERE (state = 'pending' OR state = 'uploading' OR state = 'failed') GROUP BY op, state");
  EXPECT_THAT(counts, HasSubstr("records_unfinished")) << counts;
  EXPECT_THAT(counts, Not(HasSubstr("SCAN records\n"))) << counts;
  std::string checkpoint = plan(
      "SELECT seq FROM records WHERE 1 AND op = 'checkpoint' AND "
      "(op = 'pause' OR op = 'resume' OR op = 'checkpoint') ORDER BY seq DESC LIMIT 1");
  EXPECT_THAT(checkpoint, HasSubstr("records_control")) << checkpoint;
}

// `scribectl journal --path GLOB` (schema version 6): a glob with a literal
// prefix is a range search in records_path/records_new_path, whatever the
// journal's length and wherever the matches are; a --limit over a glob that
// matches many records reads the journal from its end instead. Both answer
// exactly.
TEST_F(StatsScaleTest, PathGlobIsARangeSearch) {
  auto reader = JournalReader::Open(db_path());
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto timed = [&](const JournalFilter& f) {
    auto t0 = std::chrono::steady_clock::now();
    auto rows = (*reader)->Query(f);
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    printf("journal query %s (limit %lld): %.1f ms\n", f.path_glob->c_str(),
           static_cast<long long>(f.limit.value_or(-1)), ms);
    return rows;
  };
  // f4242 and f42420..f42429: 10 records each (seq n names f<n % 100000>),
  // long before the newest records.
  JournalFilter f;
  f.path_glob = "f4242*";
  auto all = timed(f);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 110u);
  for (const Record& r : *all) EXPECT_EQ(r.path.rfind("f4242", 0), 0u) << r.path;
  f.limit = 5;
  f.newest_first = true;
  auto newest = timed(f);
  ASSERT_TRUE(newest.ok()) << newest.status().ToString();
  std::vector<int64_t> seqs;
  for (const Record& r : *newest) seqs.push_back(r.seq);
  EXPECT_THAT(seqs, ::testing::ElementsAre(942425, 942426, 942427, 942428, 942429));
  // "f1*" matches over 100,000 records: the newest three are the last ones
  // written (the pending closes of f1997, f1998 and f1999).
  f.path_glob = "f1*";
  f.limit = 3;
  auto many = timed(f);
  ASSERT_TRUE(many.ok()) << many.status().ToString();
  ASSERT_EQ(many->size(), 3u);
  auto max = (*reader)->MaxSeq();
  ASSERT_TRUE(max.ok());
  EXPECT_EQ((*many)[0].seq, *max - 2);
  EXPECT_EQ((*many)[2].seq, *max);
  EXPECT_EQ((*many)[2].path, "f1999");
  EXPECT_EQ((*many)[0].path, "f1997");

  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  std::string plan;
  JournalFilter g;
  g.path_glob = "f4242*";
  for (const auto& line :
       raw.Column("EXPLAIN QUERY PLAN " + QuerySql(g, 6, PathPlan::kIndex, true), 3))
    plan += line + "\n";
  EXPECT_THAT(plan, HasSubstr("INDEX records_path (path>? AND path<?)")) << plan;
  EXPECT_THAT(plan, HasSubstr("INDEX records_new_path (new_path>? AND new_path<?)")) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("SCAN records"))) << plan;
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
