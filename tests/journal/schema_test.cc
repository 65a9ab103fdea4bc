// Tests of the journal's schema versions and migrations (journal/schema.h):
// a journal written by an older scribefs is migrated at open and keeps every
// row; one written by a newer scribefs is refused and left untouched.
#include "journal/schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "journal/journal.h"
#include "journal/reader.h"
#include "journal/remote_index.h"
#include "journal/targets.h"
#include "tests/journal/journal_test_util.h"

namespace scribefs {
namespace {

using ::testing::HasSubstr;

// The schema of version 1 exactly as scribefs wrote it (journal/journal.cc
// before migrations existed), copied here on purpose: the test must keep
// building the old file even when the migration steps change.
const char* const kV1Ddl = R"sql(
CREATE TABLE IF NOT EXISTS records(
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ns    INTEGER NOT NULL,
  op         TEXT NOT NULL,
  path       TEXT NOT NULL,
  new_path   TEXT,
  ranges     TEXT,
  size       INTEGER,
  mode       INTEGER,
  uid        INTEGER,
  gid        INTEGER,
  pid        INTEGER,
  flags      INTEGER,
  detail     TEXT,
  state      TEXT NOT NULL DEFAULT 'pending',
  attempts   INTEGER NOT NULL DEFAULT 0,
  error      TEXT,
  etag       TEXT,
  sha256     TEXT,
  version_id TEXT,
  state_ns   INTEGER
);
CREATE INDEX IF NOT EXISTS records_unfinished ON records(seq)
  WHERE state IN ('pending','uploading','failed');
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects(
  path        TEXT PRIMARY KEY,
  type        TEXT NOT NULL,
  size        INTEGER NOT NULL,
  mtime_ns    INTEGER NOT NULL,
  mode        INTEGER NOT NULL,
  uid         INTEGER NOT NULL,
  gid         INTEGER NOT NULL,
  ino         INTEGER,
  etag        TEXT,
  sha256      TEXT,
  version_id  TEXT,
  part_size   INTEGER NOT NULL DEFAULT 0,
  seq         INTEGER,
  uploaded_ns INTEGER
) WITHOUT ROWID;
)sql";

class SchemaTest : public ::testing::Test {
 protected:
  std::string db_path() const { return dir_.path() + "/journal.db"; }

  // A journal as scribefs with schema version 1 left it, with rows in
  // every table.
  void WriteV1Journal() {
    RawDb raw(db_path());
    raw.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
    raw.Exec(std::string("BEGIN IMMEDIATE;") + kV1Ddl +
             "PRAGMA application_id=1396920902; PRAGMA user_version=1; COMMIT;");
    raw.Exec(
        "INSERT INTO records(time_ns,op,path,size,uid,gid,pid,state,attempts,etag,state_ns) "
        "VALUES(100,'create','a',0,1,1,7,'done',0,'e1',150),"
        "(200,'close','a',4096,1,1,7,'pending',0,NULL,200),"
        "(300,'write','b',NULL,1,1,7,'failed',3,NULL,300),"
        "(400,'rename','b',NULL,1,1,7,'pending',0,NULL,400)");
    raw.Exec(
        "UPDATE records SET new_path='c', error=NULL WHERE seq=4;"
        "UPDATE records SET error='AccessDenied: no' WHERE seq=3");
    raw.Exec("INSERT INTO meta(key,value) VALUES('datadir','/srv/data'),('target','file:///t')");
    raw.Exec(
        "INSERT INTO objects(path,type,size,mtime_ns,mode,uid,gid,ino,etag,sha256,"
        "part_size,seq,uploaded_ns) VALUES('a','file',0,5,33188,1,1,9,'e1','s1',0,1,160)");
  }

  TempDir dir_;
};

TEST_F(SchemaTest, StepsAreConsecutiveAndEndAtTheCurrentVersion) {
  auto steps = Migrations();
  ASSERT_FALSE(steps.empty());
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i].to, static_cast<int>(i) + 1);
  EXPECT_EQ(steps.back().to, kSchemaVersion);
  EXPECT_GE(kSchemaVersion, 2);
}

TEST_F(SchemaTest, VersionOneJournalIsMigratedAndKeepsItsRows) {
  WriteV1Journal();
  {
    auto j = Journal::Open(db_path());
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    // The writer goes on where version 1 stopped.
    Record r;
    r.op = Op::kMkdir;
    r.path = "d";
    ASSERT_TRUE((*j)->Commit(r).ok());
    EXPECT_EQ(r.seq, 5);
    auto dd = (*j)->GetMeta("datadir");
    ASSERT_TRUE(dd.ok());
    EXPECT_EQ(*dd, "/srv/data");
  }
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  EXPECT_EQ(raw.Int("PRAGMA user_version"), kSchemaVersion);
  EXPECT_EQ(raw.Int("PRAGMA application_id"), kApplicationId);
  // Version 6: one index over every record's path (with its size) replaces
  // version 2's, and renames' new_path has one of its own.
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                    "name IN ('records_path', 'records_new_path')"),
            2);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sqlite_master WHERE name='records_path_size'"), 0);
  EXPECT_EQ(raw.Text("PRAGMA integrity_check"), "ok");

  auto reader = JournalReader::Open(db_path());
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto all = (*reader)->Query({});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[0].path, "a");
  EXPECT_EQ((*all)[0].state, "done");
  EXPECT_EQ((*all)[0].etag, "e1");
  EXPECT_EQ((*all)[1].size, 4096);
  EXPECT_EQ((*all)[2].state, "failed");
  EXPECT_EQ((*all)[2].attempts, 3);
  EXPECT_EQ((*all)[2].error, "AccessDenied: no");
  EXPECT_EQ((*all)[3].new_path, "c");
  EXPECT_EQ((*all)[4].path, "d");
  // Version 6's indexes serve the rows version 1 wrote: a path, and a
  // rename's destination.
  JournalFilter by_path;
  by_path.path_glob = "a";
  auto by_a = (*reader)->Query(by_path);
  ASSERT_TRUE(by_a.ok()) << by_a.status().ToString();
  ASSERT_EQ(by_a->size(), 2u);
  EXPECT_EQ((*by_a)[1].size, 4096);
  by_path.path_glob = "c*";
  auto by_c = (*reader)->Query(by_path);
  ASSERT_TRUE(by_c.ok()) << by_c.status().ToString();
  ASSERT_EQ(by_c->size(), 1u);
  EXPECT_EQ((*by_c)[0].new_path, "c");
  auto stats = (*reader)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending_files, 3);     // a, b (rename source), d
  EXPECT_EQ(stats->pending_bytes, 4096);  // a's last size; b and d have none
  // Counts kept since version 3 start from the rows version 1 wrote.
  EXPECT_EQ(stats->records, 5);
  EXPECT_EQ(stats->by_state["pending"], 3);
  EXPECT_EQ(stats->by_state["failed"], 1);
  EXPECT_EQ(stats->by_op_state["create"]["done"], 1);
  auto target = (*reader)->Meta("target");
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(*target, "file:///t");
  // Version 5: the target it stored to is target 1, and holds its objects.
  auto targets = Targets::List(**reader);
  ASSERT_TRUE(targets.ok()) << targets.status().ToString();
  ASSERT_EQ(targets->size(), 1u);
  EXPECT_EQ((*targets)[0].id, kFirstTarget);
  EXPECT_EQ((*targets)[0].url, "file:///t");
  auto index = RemoteIndex::Over(**reader, kFirstTarget);
  auto a = index->Get("a");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->has_value());
  EXPECT_EQ((*a)->etag, "e1");
  EXPECT_EQ((*a)->ino, 9u);
  EXPECT_EQ((*a)->mode, 33188u);
}

TEST_F(SchemaTest, MigrationIsOneTransaction) {
  WriteV1Journal();
  // A step that cannot apply (here: its index name is taken by a table)
  // must leave the journal at version 1, with nothing half done.
  {
    RawDb raw(db_path());
    raw.Exec("CREATE TABLE records_path_size(x)");
  }
  std::string before_rows;
  {
    RawDb raw(db_path(), SQLITE_OPEN_READONLY);
    before_rows = raw.Text("SELECT group_concat(seq || path || state) FROM records");
  }
  auto j = Journal::Open(db_path());
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr(db_path()));
  EXPECT_THAT(j.status().message(), HasSubstr("from schema version 1 to"));
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  EXPECT_EQ(raw.Int("PRAGMA user_version"), 1);
  EXPECT_EQ(raw.Text("SELECT group_concat(seq || path || state) FROM records"), before_rows);
}

TEST_F(SchemaTest, NewerJournalIsRefusedAndLeftByteForByteUnchanged) {
  WriteV1Journal();
  const int newer = kSchemaVersion + 5;
  {
    RawDb raw(db_path());
    raw.Exec("PRAGMA user_version=" + std::to_string(newer));
    // Fold the WAL into the file, so that the file alone is the journal.
    raw.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  std::string before = ReadFile(db_path());
  ASSERT_FALSE(before.empty());
  auto j = Journal::Open(db_path());
  ASSERT_FALSE(j.ok());
  const std::string& msg = j.status().message();
  EXPECT_THAT(msg, HasSubstr(db_path()));
  EXPECT_THAT(msg, HasSubstr("version " + std::to_string(newer)));
  EXPECT_THAT(msg, HasSubstr("(" + std::to_string(kSchemaVersion) + ")"));
  EXPECT_EQ(ReadFile(db_path()), before);
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  EXPECT_EQ(raw.Int("PRAGMA user_version"), newer);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sqlite_master WHERE name='records_path_size'"), 0);
}

// The last size of a path, asked per pending path by stats and by the
// progress of flush/checkpoint, is a seek in an index (version 2; since
// version 6 one that holds the size), not a scan of the whole journal.
TEST_F(SchemaTest, LastSizeOfAPathUsesAnIndex) {
  { ASSERT_TRUE(Journal::Open(db_path()).ok()); }
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  auto plan = raw.Column(
      "EXPLAIN QUERY PLAN SELECT size FROM records r WHERE r.path='x' AND r.size IS NOT NULL "
      "ORDER BY seq DESC LIMIT 1",
      3);
  ASSERT_FALSE(plan.empty());
  EXPECT_THAT(plan[0], HasSubstr("USING COVERING INDEX records_path"));
}

// Version 3 keeps the count of records per op and state by triggers: every
// way a record is written, changed or deleted moves it between counts.
// Version 3 as its scribefs left it (the released steps 1-3, which are never
// edited), with rows its triggers counted, is migrated to version 4: the
// counts table then holds the finished records only, a new (pending) record
// leaves it alone, and the figures of stats stay the same.
TEST_F(SchemaTest, VersionThreeJournalIsMigratedAndItsCountsStayRight) {
  {
    RawDb raw(db_path());
    raw.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
    std::string sql = "BEGIN IMMEDIATE;";
    for (const Migration& m : Migrations())
      if (m.to <= 3) sql += m.sql;
    raw.Exec(sql + "PRAGMA application_id=1396920902; PRAGMA user_version=3; COMMIT;");
    raw.Exec(
        "INSERT INTO records(time_ns,op,path,size,uid,gid,pid,state) VALUES"
        "(100,'create','a',0,1,1,7,'done'),(200,'close','a',4096,1,1,7,'pending'),"
        "(300,'write','b',NULL,1,1,7,'failed'),(400,'unlink','b',NULL,1,1,7,'skipped'),"
        "(500,'checkpoint','',NULL,0,0,0,'done')");
    ASSERT_EQ(raw.Int("SELECT sum(n) FROM record_counts"), 5);  // v3 counted them all
  }
  auto j = Journal::Open(db_path());
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  RawDb raw(db_path());
  EXPECT_EQ(raw.Int("PRAGMA user_version"), kSchemaVersion);
  EXPECT_EQ(raw.Int("SELECT sum(n) FROM record_counts"), 3);  // done 2, skipped 1
  Record r;
  r.op = Op::kCreate;
  r.path = "c";
  ASSERT_TRUE((*j)->Commit(r).ok());
  EXPECT_EQ(raw.Int("SELECT sum(n) FROM record_counts"), 3);   // pending: not counted there
  raw.Exec("UPDATE records SET state='done' WHERE path='c'");  // as the uploader does
  EXPECT_EQ(raw.Int("SELECT n FROM record_counts WHERE op='create' AND state='done'"), 2);
  auto reader = JournalReader::Open(db_path());
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto st = (*reader)->Stats();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->records, 6);
  EXPECT_EQ(st->by_state["done"], 3);
  EXPECT_EQ(st->by_state["pending"], 1);
  EXPECT_EQ(st->by_state["failed"], 1);
  EXPECT_EQ(st->by_state["skipped"], 1);
  EXPECT_EQ(st->by_op["create"], 2);
  EXPECT_EQ(st->pending_files, 1);
  EXPECT_EQ(st->pending_bytes, 4096);
  auto unfinished = (*reader)->Unfinished();
  ASSERT_TRUE(unfinished.ok());
  EXPECT_EQ(unfinished->size(), 2u);  // a's close (pending), b's write (failed)
  EXPECT_EQ(raw.Text("PRAGMA integrity_check"), "ok");
}

// Every create, unlink and close inserts a record: that insert must not
// build a temporary B-tree (SQLite 3.40 does for an IN list of more than
// two constants in a partial index's condition or a trigger's WHEN; schema
// version 3 made it do so twice per record, see version 4 in schema.cc).
TEST_F(SchemaTest, InsertingARecordBuildsNoTemporaryBTree) {
  { ASSERT_TRUE(Journal::Open(db_path()).ok()); }
  RawDb raw(db_path());
  for (const char* state : {"pending", "done"}) {
    std::string program;
    for (const auto& op : raw.Column(std::string("EXPLAIN INSERT INTO records(time_ns,op,path,"
                                                 "size,uid,gid,pid,state) VALUES(1,'create',"
                                                 "'a',0,0,0,0,'") +
                                         state + "')",
                                     1))
      program += op + "\n";
    EXPECT_THAT(program, ::testing::Not(HasSubstr("OpenEphemeral"))) << state << "\n" << program;
  }
}

TEST_F(SchemaTest, CountsFollowInsertsStateChangesAndDeletes) {
  auto j = Journal::Open(db_path());
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  Record a, b;
  a.op = b.op = Op::kMkdir;
  a.path = "a";
  b.path = "b";
  ASSERT_TRUE((*j)->Commit(a).ok());
  ASSERT_TRUE((*j)->Commit(b).ok());
  ASSERT_TRUE((*j)->MarkSkipped(a.seq, ENOENT).ok());
  auto counts = [&] {
    auto reader = JournalReader::Open(db_path());
    EXPECT_TRUE(reader.ok());
    auto st = (*reader)->Stats();
    EXPECT_TRUE(st.ok());
    return st.ok() ? st->by_op_state["mkdir"] : std::map<std::string, int64_t>{};
  };
  EXPECT_EQ(counts(), (std::map<std::string, int64_t>{{"pending", 1}, {"skipped", 1}}));
  {
    // What a user may do with `sqlite3 journal.db`, or a future retention.
    RawDb raw(db_path());
    raw.Exec("DELETE FROM records WHERE seq=" + std::to_string(b.seq));
  }
  EXPECT_EQ(counts(), (std::map<std::string, int64_t>{{"skipped", 1}}));
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  // Version 4: the table counts finished records only (readers add the
  // unfinished ones from records_unfinished).
  EXPECT_EQ(raw.Int("SELECT count(*) FROM records WHERE state NOT IN "
                    "('pending','uploading','failed')"),
            raw.Int("SELECT sum(n) FROM record_counts"));
}

}  // namespace
}  // namespace scribefs
