// Tests of the journal writer (Journal) and the read-only JournalReader.
//
// Each test works in its own temporary directory. Raw sqlite3 connections are
// used to look at (and sometimes tamper with) the database behind the API's
// back, the way a user with `sqlite3 journal.db` would.
#include "journal/journal.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "journal/reader.h"
#include "tests/journal/journal_test_util.h"

namespace scribefs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// ---------------------------------------------------------------------------
// Helpers

Record MakeRecord(Op op, std::string path) {
  Record r;
  r.op = op;
  r.path = std::move(path);
  return r;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

mode_t FileMode(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    ADD_FAILURE() << path << ": " << strerror(errno);
    return 0;
  }
  return st.st_mode & 07777;
}

std::unique_ptr<Journal> MustOpen(const std::string& path, Journal::Options options = {}) {
  auto j = Journal::Open(path, std::move(options));
  EXPECT_TRUE(j.ok()) << j.status().ToString();
  return j.ok() ? std::move(j.value()) : nullptr;
}

std::unique_ptr<JournalReader> MustOpenReader(const std::string& path) {
  auto r = JournalReader::Open(path);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r.value()) : nullptr;
}

std::vector<Record> QueryAll(JournalReader* reader, const JournalFilter& f = {}) {
  auto q = reader->Query(f);
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  return q.ok() ? *q : std::vector<Record>{};
}

std::vector<int64_t> Seqs(JournalReader* reader, const JournalFilter& f) {
  std::vector<int64_t> out;
  for (const Record& r : QueryAll(reader, f)) out.push_back(r.seq);
  return out;
}

void ExpectSameRecord(const Record& got, const Record& want) {
  EXPECT_EQ(got.seq, want.seq);
  EXPECT_EQ(got.time_ns, want.time_ns);
  EXPECT_EQ(got.op, want.op);
  EXPECT_EQ(got.path, want.path);
  EXPECT_EQ(got.new_path, want.new_path);
  EXPECT_EQ(got.ranges, want.ranges);
  EXPECT_EQ(got.size, want.size);
  EXPECT_EQ(got.mode, want.mode);
  EXPECT_EQ(got.uid, want.uid);
  EXPECT_EQ(got.gid, want.gid);
  EXPECT_EQ(got.pid, want.pid);
  EXPECT_EQ(got.flags, want.flags);
  EXPECT_EQ(got.detail, want.detail);
  EXPECT_EQ(got.state, want.state);
  EXPECT_EQ(got.attempts, want.attempts);
  EXPECT_EQ(got.error, want.error);
  EXPECT_EQ(got.etag, want.etag);
  EXPECT_EQ(got.sha256, want.sha256);
  EXPECT_EQ(got.version_id, want.version_id);
  EXPECT_EQ(got.state_ns, want.state_ns);
}

class JournalTest : public ::testing::Test {
 protected:
  std::string db_path() const { return dir_.path() + "/journal.db"; }
  TempDir dir_;
};

// ---------------------------------------------------------------------------
// Opening, creating, refusing

TEST_F(JournalTest, OpenCreatesFilesWithMode0600) {
  mode_t old = umask(0);  // a permissive umask must not leak into the modes
  auto j = MustOpen(db_path());
  umask(old);
  ASSERT_TRUE(j);
  EXPECT_EQ(FileMode(db_path()), 0600);
  Record r = MakeRecord(Op::kCreate, "a");
  ASSERT_TRUE(j->Commit(r).ok());
  ASSERT_TRUE(std::filesystem::exists(db_path() + "-wal"));
  ASSERT_TRUE(std::filesystem::exists(db_path() + "-shm"));
  EXPECT_EQ(FileMode(db_path() + "-wal"), 0600);
  EXPECT_EQ(FileMode(db_path() + "-shm"), 0600);
}

TEST_F(JournalTest, OpenTightensModeOfExistingFile) {
  {
    auto j = MustOpen(db_path());
    ASSERT_TRUE(j);
  }
  ASSERT_EQ(chmod(db_path().c_str(), 0644), 0);
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  EXPECT_EQ(FileMode(db_path()), 0600);
}

TEST_F(JournalTest, EmptyFileBecomesAJournal) {
  WriteFile(db_path(), "");
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  Record r = MakeRecord(Op::kMkdir, "d");
  EXPECT_TRUE(j->Commit(r).ok());
  EXPECT_EQ(r.seq, 1);
}

TEST_F(JournalTest, SchemaIsPresent) {
  { ASSERT_TRUE(MustOpen(db_path())); }
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  EXPECT_EQ(raw.Int("PRAGMA application_id"), 0x53435246);
  EXPECT_EQ(raw.Int("PRAGMA user_version"), kSchemaVersion);
  EXPECT_EQ(raw.Text("PRAGMA journal_mode"), "wal");
  auto tables = raw.Column("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name");
  EXPECT_THAT(tables, ::testing::IsSupersetOf({"records", "meta", "sqlite_sequence"}));
  auto indexes = raw.Column("SELECT name FROM sqlite_master WHERE type='index' AND "
                            "tbl_name='records' AND sql IS NOT NULL");
  EXPECT_THAT(indexes, ::testing::UnorderedElementsAre("records_unfinished", "records_path",
                                                       "records_new_path", "records_control"));
  // Columns, in order, are what the reader selects (kRecordColumns).
  std::string cols;
  for (const auto& c : raw.Column("SELECT name FROM pragma_table_info('records') ORDER BY cid"))
    cols += (cols.empty() ? "" : ",") + c;
  EXPECT_EQ(cols, kRecordColumns);
  // AUTOINCREMENT: seq values are never reused.
  EXPECT_THAT(raw.Text("SELECT sql FROM sqlite_master WHERE name='records'"),
              HasSubstr("AUTOINCREMENT"));
}

TEST_F(JournalTest, RefusesForeignSqliteDatabase) {
  {
    RawDb raw(db_path());
    raw.Exec("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);"
             "INSERT INTO customers(name) VALUES('alice')");
  }
  std::string before = ReadFile(db_path());
  auto j = Journal::Open(db_path());
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr(db_path()));
  EXPECT_THAT(j.status().message(), HasSubstr("not a scribefs journal"));
  // Never a silent reset or migration of someone else's database.
  EXPECT_EQ(ReadFile(db_path()), before);
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  EXPECT_EQ(raw.Int("PRAGMA application_id"), 0);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM sqlite_master WHERE name='records'"), 0);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM customers"), 1);

  auto reader = JournalReader::Open(db_path());
  ASSERT_FALSE(reader.ok());
  EXPECT_THAT(reader.status().message(), HasSubstr(db_path()));
  EXPECT_THAT(reader.status().message(), HasSubstr("not a scribefs journal"));
}

TEST_F(JournalTest, RefusesOtherApplicationId) {
  {
    RawDb raw(db_path());
    raw.Exec("PRAGMA application_id=1234; CREATE TABLE t(x)");
  }
  auto j = Journal::Open(db_path());
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr(db_path()));
  EXPECT_THAT(j.status().message(), HasSubstr("not a scribefs journal"));
  EXPECT_FALSE(JournalReader::Open(db_path()).ok());
}

TEST_F(JournalTest, RefusesNewerSchemaVersion) {
  { ASSERT_TRUE(MustOpen(db_path())); }
  {
    RawDb raw(db_path());
    raw.Exec("PRAGMA user_version=" + std::to_string(kSchemaVersion + 1));
  }
  auto j = Journal::Open(db_path());
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr(db_path()));
  EXPECT_THAT(j.status().message(), HasSubstr("newer"));
}

TEST_F(JournalTest, RefusesGarbageFile) {
  std::string garbage(8192, '\0');
  std::mt19937 rng(42);
  for (char& c : garbage) c = static_cast<char>(rng());
  garbage[0] = 'X';  // surely not "SQLite format 3"
  WriteFile(db_path(), garbage);
  auto j = Journal::Open(db_path());
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr(db_path()));
  EXPECT_THAT(j.status().message(), HasSubstr("not a database"));
  EXPECT_EQ(ReadFile(db_path()), garbage) << "a refused file must be left as it was";
  EXPECT_FALSE(std::filesystem::exists(db_path() + "-wal"));

  auto reader = JournalReader::Open(db_path());
  ASSERT_FALSE(reader.ok());
  EXPECT_THAT(reader.status().message(), HasSubstr(db_path()));
}

TEST_F(JournalTest, RefusesSmallTextFile) {
  WriteFile(db_path(), "hello, this is not a journal\n");
  auto j = Journal::Open(db_path());
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr(db_path()));
  EXPECT_EQ(ReadFile(db_path()), "hello, this is not a journal\n");
}

TEST_F(JournalTest, RefusesNonRegularFiles) {
  auto d = Journal::Open(dir_.path());
  EXPECT_FALSE(d.ok());

  std::string target = dir_.path() + "/target.db";
  ASSERT_EQ(symlink(target.c_str(), db_path().c_str()), 0);
  auto s = Journal::Open(db_path());
  EXPECT_FALSE(s.ok()) << "followed a symlink";
  EXPECT_FALSE(std::filesystem::exists(target));

  auto m = Journal::Open(dir_.path() + "/missing/journal.db");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), ENOENT);
  EXPECT_THAT(m.status().message(), HasSubstr(dir_.path() + "/missing/journal.db"));
}

// Damage inside the file (not its header). Whatever the journal does, it must
// not start over: the sequence continues and the old records are not dropped
// by the writer.
void FillAndCorrupt(const std::string& path) {
  {
    auto j = MustOpen(path);
    ASSERT_TRUE(j);
    std::vector<Record> v(3000, MakeRecord(Op::kWrite, "some/longish/path/for/many/pages"));
    for (auto& r : v) r.detail = std::string(200, 'x');
    ASSERT_TRUE(j->Commit(v).ok());
  }
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  off_t size = lseek(fd, 0, SEEK_END);
  ASSERT_GT(size, 3 * 4096 * 4);
  std::string junk(3 * 4096, '\0');
  std::mt19937 rng(1);
  for (char& c : junk) c = static_cast<char>(rng());
  ASSERT_EQ(pwrite(fd, junk.data(), junk.size(), (size / 2) & ~off_t{4095}),
            static_cast<ssize_t>(junk.size()));
  close(fd);
}

TEST_F(JournalTest, CorruptJournalIsNeverReset) {
  FillAndCorrupt(db_path());
  auto j = Journal::Open(db_path());
  if (!j.ok()) {
    EXPECT_THAT(j.status().message(), HasSubstr(db_path()));
    return;
  }
  Record r = MakeRecord(Op::kWrite, "after-corruption");
  Status s = (*j)->Commit(r);
  if (s.ok()) {
    EXPECT_EQ(r.seq, 3001) << "the journal started over";
  } else {
    EXPECT_THAT(s.message(), HasSubstr(db_path()));
  }
}

// The header promises that a corrupt journal is refused at Open, naming the
// file. Today Open only reads the header and the schema: damage further in
// goes unnoticed until a query trips over it (and the query's error does not
// name the file). Disabled until Open runs an integrity check (a policy
// decision: PRAGMA quick_check costs a full read of the journal at mount).
TEST_F(JournalTest, OpenRefusesCorruptJournal) {
  FillAndCorrupt(db_path());
  auto j = Journal::Open(db_path());
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr(db_path()));
}

// A reader on a damaged journal reports an error rather than a short answer.
TEST_F(JournalTest, ReaderReportsCorruption) {
  FillAndCorrupt(db_path());
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto q = reader->Query({});
  EXPECT_FALSE(q.ok()) << "returned " << (q.ok() ? q->size() : 0) << " records";
  EXPECT_FALSE(reader->Stats().ok());
}

TEST_F(JournalTest, ReaderRefusesMissingFile) {
  auto r = JournalReader::Open(db_path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_THAT(r.status().message(), HasSubstr(db_path()));
  EXPECT_FALSE(std::filesystem::exists(db_path())) << "a reader must not create the journal";
}

// ---------------------------------------------------------------------------
// Sequence numbers and contents

TEST_F(JournalTest, CommitAssignsIncreasingSeqsInOrderAndFillsTime) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  int64_t before = NowNs();
  std::vector<Record> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(MakeRecord(Op::kWrite, "f" + std::to_string(i)));
  batch[3].time_ns = 12345;  // a given time is kept
  ASSERT_TRUE(j->Commit(batch).ok());
  int64_t after = NowNs();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(batch[i].seq, i + 1) << i;
    if (i == 3) {
      EXPECT_EQ(batch[i].time_ns, 12345);
    } else {
      EXPECT_GE(batch[i].time_ns, before);
      EXPECT_LE(batch[i].time_ns, after);
    }
  }
  Record next = MakeRecord(Op::kClose, "f0");
  ASSERT_TRUE(j->Commit(next).ok());
  EXPECT_EQ(next.seq, 11);

  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto all = QueryAll(reader.get());
  ASSERT_EQ(all.size(), 11u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(all[i].path, "f" + std::to_string(i));
    EXPECT_EQ(all[i].time_ns, batch[i].time_ns);
  }
}

TEST_F(JournalTest, EmptyCommitIsOk) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  EXPECT_TRUE(j->Commit(std::span<Record>()).ok());
  Record r = MakeRecord(Op::kCreate, "a");
  ASSERT_TRUE(j->Commit(r).ok());
  EXPECT_EQ(r.seq, 1);
}

TEST_F(JournalTest, EveryFieldRoundTrips) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  Record full;
  full.time_ns = 1'700'000'000'123'456'789;
  full.op = Op::kRename;
  full.path = "dir/sub dir/caf\xc3\xa9 'quoted' \"x\".txt";
  full.new_path = std::string("raw\xff\xfe bytes/\x01name");  // not UTF-8: names are bytes
  full.ranges = {{0, 4096}, {8192, 512}, {UINT64_MAX - 1, 1}};
  full.size = INT64_MAX;
  full.mode = 0100644 | 04000;
  full.uid = UINT32_MAX - 1;
  full.gid = 4000000000u;
  full.pid = -7;
  full.flags = -1;
  full.detail = R"({"xattr":"user.a","value_len":3})";
  full.state = std::string(kStateFailed);
  full.attempts = 17;
  full.error = "AccessDenied: Access Denied (request id ABC)";
  full.etag = "\"0123456789abcdef\"";
  full.sha256 = std::string(64, 'e');
  full.version_id = "v-1";
  full.state_ns = 1'700'000'000'999'999'999;

  Record minimal = MakeRecord(Op::kPause, "");  // every optional empty
  minimal.time_ns = 42;
  minimal.state = std::string(kStateDone);

  int64_t before = NowNs();
  std::vector<Record> batch = {full, minimal};
  ASSERT_TRUE(j->Commit(batch).ok());
  int64_t after = NowNs();
  full.seq = batch[0].seq;
  minimal.seq = batch[1].seq;

  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto all = QueryAll(reader.get());
  ASSERT_EQ(all.size(), 2u);
  {
    SCOPED_TRACE("full");
    ExpectSameRecord(all[0], full);
  }
  {
    SCOPED_TRACE("minimal");
    // The journal stamps state_ns with the commit time when it is not given.
    ASSERT_TRUE(all[1].state_ns.has_value());
    EXPECT_GE(*all[1].state_ns, before);
    EXPECT_LE(*all[1].state_ns, after);
    minimal.state_ns = all[1].state_ns;
    ExpectSameRecord(all[1], minimal);
  }
  // Optional fields are NULL in SQL, not empty strings or zeros (README schema).
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM records WHERE seq=" + std::to_string(minimal.seq) +
                    " AND new_path IS NULL AND ranges IS NULL AND size IS NULL AND mode IS NULL "
                    "AND flags IS NULL AND detail IS NULL AND error IS NULL AND etag IS NULL "
                    "AND sha256 IS NULL AND version_id IS NULL"),
            1);
  EXPECT_EQ(raw.Text("SELECT ranges FROM records WHERE seq=" + std::to_string(full.seq)),
            RangesToJson(full.ranges));
  EXPECT_EQ(raw.Text("SELECT op FROM records WHERE seq=" + std::to_string(full.seq)), "rename");
}

TEST_F(JournalTest, ReopenKeepsRecordsAndSeqIsNeverReused) {
  {
    auto j = MustOpen(db_path());
    ASSERT_TRUE(j);
    std::vector<Record> three = {MakeRecord(Op::kCreate, "a"), MakeRecord(Op::kWrite, "a"),
                                 MakeRecord(Op::kClose, "a")};
    ASSERT_TRUE(j->Commit(three).ok());
    EXPECT_EQ(three[2].seq, 3);
    ASSERT_TRUE(j->SetMeta("datadir", "/srv/data").ok());
  }
  auto commit_one = [&](const std::string& path) -> int64_t {
    auto j = MustOpen(db_path());
    if (!j) return -1;
    Record r = MakeRecord(Op::kWrite, path);
    Status s = j->Commit(r);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return r.seq;
  };
  EXPECT_EQ(commit_one("b"), 4);
  {
    auto reader = MustOpenReader(db_path());
    ASSERT_TRUE(reader);
    auto all = QueryAll(reader.get());
    ASSERT_EQ(all.size(), 4u);
    EXPECT_EQ(all[0].path, "a");
    EXPECT_EQ(all[0].op, Op::kCreate);
    EXPECT_EQ(all[3].path, "b");
  }
  {
    auto j = MustOpen(db_path());
    ASSERT_TRUE(j);
    auto dd = j->GetMeta("datadir");
    ASSERT_TRUE(dd.ok());
    EXPECT_EQ(*dd, "/srv/data");
  }
  // Delete the newest row behind the journal's back: its seq must not return.
  { RawDb(db_path()).Exec("DELETE FROM records WHERE seq=4"); }
  EXPECT_EQ(commit_one("c"), 5);
  // Even with the table emptied (retention compaction), seq keeps increasing.
  { RawDb(db_path()).Exec("DELETE FROM records"); }
  EXPECT_EQ(commit_one("d"), 6);
}

TEST_F(JournalTest, CommittedRecordsSurviveAKilledProcess) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // No gtest assertions here: report through the exit code.
    auto j = Journal::Open(db_path());
    if (!j.ok()) _exit(10);
    for (int i = 0; i < 20; ++i) {
      Record r = MakeRecord(Op::kWrite, "killed" + std::to_string(i));
      if (!(*j)->Commit(r).ok() || r.seq != i + 1) _exit(11);
    }
    raise(SIGKILL);  // no destructor, no checkpoint, no close
    _exit(12);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  ASSERT_EQ(WTERMSIG(status), SIGKILL);

  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto all = QueryAll(reader.get());
  ASSERT_EQ(all.size(), 20u);
  EXPECT_EQ(all[19].path, "killed19");
  Record r = MakeRecord(Op::kWrite, "after");
  ASSERT_TRUE(j->Commit(r).ok());
  EXPECT_EQ(r.seq, 21);
}

TEST_F(JournalTest, MetaRoundTrip) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  auto missing = j->GetMeta("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ENOENT);
  ASSERT_TRUE(j->SetMeta("k", "v1").ok());
  ASSERT_TRUE(j->SetMeta("k", "v2").ok());  // overwrite, not a second row
  auto v = j->GetMeta("k");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "v2");
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  EXPECT_EQ(raw.Int("SELECT count(*) FROM meta WHERE key='k'"), 1);
}

// ---------------------------------------------------------------------------
// Visibility and WAL concurrency

// Commit() returns only after the record is visible to any other connection.
TEST_F(JournalTest, CommitIsVisibleToAnotherConnectionWhenItReturns) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  for (int i = 0; i < 200; ++i) {
    Record r = MakeRecord(i % 2 ? Op::kWrite : Op::kCreate, "v" + std::to_string(i));
    ASSERT_TRUE(j->Commit(r, /*durable=*/i % 10 == 0).ok());
    auto max = reader->MaxSeq();
    ASSERT_TRUE(max.ok());
    ASSERT_EQ(*max, r.seq) << "commit " << i << " returned before it was visible";
    JournalFilter f;
    f.since_seq = r.seq;
    auto got = QueryAll(reader.get(), f);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].path, r.path);
    ASSERT_EQ(raw.Int("SELECT max(seq) FROM records"), r.seq);
  }
}

TEST_F(JournalTest, ReaderSeesCommitsMadeAfterItOpened) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  Record first = MakeRecord(Op::kCreate, "first");
  ASSERT_TRUE(j->Commit(first).ok());
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  EXPECT_EQ(QueryAll(reader.get()).size(), 1u);
  Record second = MakeRecord(Op::kWrite, "second");
  ASSERT_TRUE(j->Commit(second).ok());
  auto all = QueryAll(reader.get());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1].path, "second");
  auto stats = reader->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->records, 2);
  EXPECT_EQ(stats->max_seq, second.seq);
}

// WAL: a reader in the middle of a read transaction does not block commits,
// and keeps its own snapshot until it ends.
TEST_F(JournalTest, OpenReadTransactionDoesNotBlockCommits) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  Record a = MakeRecord(Op::kCreate, "a");
  ASSERT_TRUE(j->Commit(a).ok());
  RawDb raw(db_path(), SQLITE_OPEN_READONLY);
  raw.Exec("BEGIN");
  EXPECT_EQ(raw.Int("SELECT count(*) FROM records"), 1);  // snapshot taken
  auto t0 = std::chrono::steady_clock::now();
  Record b = MakeRecord(Op::kWrite, "a");
  ASSERT_TRUE(j->Commit(b, /*durable=*/true).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(raw.Int("SELECT count(*) FROM records"), 1);  // still the old snapshot
  raw.Exec("COMMIT");
  EXPECT_EQ(raw.Int("SELECT count(*) FROM records"), 2);
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  EXPECT_EQ(QueryAll(reader.get()).size(), 2u);
}

TEST_F(JournalTest, ReaderWorksAfterWriterClosed) {
  {
    auto j = MustOpen(db_path());
    ASSERT_TRUE(j);
    Record r = MakeRecord(Op::kCreate, "a");
    ASSERT_TRUE(j->Commit(r).ok());
  }
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  EXPECT_EQ(QueryAll(reader.get()).size(), 1u);
}

// ---------------------------------------------------------------------------
// Group commit

TEST_F(JournalTest, OneThreadCommitsOneTransactionPerCommit) {
  std::atomic<int> groups{0};
  Journal::Options opt;
  opt.fault_hook = [&] {
    ++groups;
    return Status::Ok();
  };
  auto j = MustOpen(db_path(), opt);
  ASSERT_TRUE(j);
  for (int i = 0; i < 50; ++i) {
    Record r = MakeRecord(Op::kWrite, "a");
    ASSERT_TRUE(j->Commit(r).ok());
  }
  ASSERT_TRUE(j->Sync().ok());
  EXPECT_EQ(groups.load(), 51);
}

TEST_F(JournalTest, GroupCommitBatchesConcurrentCommits) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  std::atomic<int> groups{0};
  Journal::Options opt;
  opt.fault_hook = [&] {
    ++groups;
    // A little commit latency (like a slow disk) so that batching shows
    // even on a machine with few cores.
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    return Status::Ok();
  };
  auto j = MustOpen(db_path(), opt);
  ASSERT_TRUE(j);

  std::vector<std::vector<int64_t>> seqs(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Record r = MakeRecord(Op::kWrite, "t" + std::to_string(t) + "/" + std::to_string(i));
        r.pid = t;
        r.size = i;
        if (!j->Commit(r, /*durable=*/i % 100 == 99).ok()) ++failures;
        seqs[t].push_back(r.seq);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_TRUE(j->health().ok());

  std::map<int64_t, std::string> expected;  // seq -> path
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      if (i > 0) {
        EXPECT_LT(seqs[t][i - 1], seqs[t][i]) << "thread " << t << " commit " << i;
      }
      bool inserted =
          expected.emplace(seqs[t][i], "t" + std::to_string(t) + "/" + std::to_string(i)).second;
      EXPECT_TRUE(inserted) << "seq " << seqs[t][i] << " given twice";
    }
  }
  ASSERT_EQ(expected.size(), size_t{kThreads * kPerThread});
  EXPECT_EQ(expected.begin()->first, 1);
  EXPECT_EQ(expected.rbegin()->first, kThreads * kPerThread);

  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto all = QueryAll(reader.get());
  ASSERT_EQ(all.size(), expected.size());
  for (const Record& r : all) {
    auto it = expected.find(r.seq);
    ASSERT_NE(it, expected.end()) << r.seq;
    EXPECT_EQ(r.path, it->second);
  }
  int g = groups.load();
  RecordProperty("groups", g);
  std::cout << "[          ] " << kThreads * kPerThread << " commits in " << g << " groups\n";
  EXPECT_LT(g, kThreads * kPerThread) << "concurrent commits were not batched";
  EXPECT_GT(g, 0);
}

TEST_F(JournalTest, MaxGroupRecordsBoundsAGroup) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::atomic<int> groups{0};
  Journal::Options opt;
  opt.max_group_records = 1;
  opt.fault_hook = [&] {
    ++groups;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    return Status::Ok();
  };
  auto j = MustOpen(db_path(), opt);
  ASSERT_TRUE(j);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        Record r = MakeRecord(Op::kWrite, "x");
        if (!j->Commit(r).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(groups.load(), kThreads * kPerThread);

  // One caller's records are never split, even past the bound.
  std::vector<Record> five(5, MakeRecord(Op::kWrite, "y"));
  int before = groups.load();
  ASSERT_TRUE(j->Commit(five).ok());
  EXPECT_EQ(groups.load(), before + 1);
  for (int i = 1; i < 5; ++i) EXPECT_EQ(five[i].seq, five[0].seq + i);
}

// ---------------------------------------------------------------------------
// Sticky failure

TEST_F(JournalTest, FailedCommitIsSticky) {
  std::atomic<bool> fail_next{false};
  Journal::Options opt;
  opt.fault_hook = [&] {
    if (fail_next.exchange(false)) return Status::Error(EIO, "injected disk failure");
    return Status::Ok();
  };
  auto j = MustOpen(db_path(), opt);
  ASSERT_TRUE(j);
  Record ok1 = MakeRecord(Op::kCreate, "before");
  ASSERT_TRUE(j->Commit(ok1).ok());
  ASSERT_TRUE(j->health().ok());

  fail_next = true;
  std::vector<Record> failed = {MakeRecord(Op::kWrite, "failed1"),
                                MakeRecord(Op::kWrite, "failed2")};
  Status s = j->Commit(failed);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), EIO);
  EXPECT_THAT(s.message(), HasSubstr("injected disk failure"));
  EXPECT_FALSE(fail_next.load()) << "the hook was not consulted";

  Status h = j->health();
  EXPECT_FALSE(h.ok());
  EXPECT_EQ(h.code(), s.code());
  EXPECT_EQ(h.message(), s.message());

  // The hook is healthy again; the journal is not.
  Record later = MakeRecord(Op::kWrite, "later");
  Status s2 = j->Commit(later);
  EXPECT_FALSE(s2.ok());
  EXPECT_EQ(s2.message(), s.message());
  EXPECT_FALSE(j->Commit(later, /*durable=*/true).ok());
  EXPECT_FALSE(j->Sync().ok());
  EXPECT_FALSE(j->MarkSkipped(ok1.seq, EIO).ok());
  EXPECT_FALSE(j->health().ok());

  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto all = QueryAll(reader.get());
  ASSERT_EQ(all.size(), 1u) << "part of a failed commit reached the table";
  EXPECT_EQ(all[0].path, "before");
  EXPECT_EQ(all[0].state, kStatePending) << "MarkSkipped after the failure took effect";
}

// Under concurrency: a Commit that returned ok is in the table; one that failed
// is not; once one fails, every later one fails.
TEST_F(JournalTest, StickyFailureUnderConcurrency) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 300;
  std::atomic<int> calls{0};
  Journal::Options opt;
  opt.fault_hook = [&] {
    if (++calls == 40) return Status::Error(ENOSPC, "injected ENOSPC");
    return Status::Ok();
  };
  auto j = MustOpen(db_path(), opt);
  ASSERT_TRUE(j);
  std::vector<std::vector<std::pair<std::string, bool>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Record r = MakeRecord(Op::kWrite, "t" + std::to_string(t) + "/" + std::to_string(i));
        results[t].emplace_back(r.path, j->Commit(r).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(j->health().code(), ENOSPC);

  std::set<std::string> ok_paths;
  int failed = 0;
  for (int t = 0; t < kThreads; ++t) {
    bool seen_failure = false;
    for (const auto& [path, ok] : results[t]) {
      if (seen_failure) {
        EXPECT_FALSE(ok) << path << " succeeded after an earlier failure";
      }
      if (ok) {
        ok_paths.insert(path);
      } else {
        seen_failure = true;
        ++failed;
      }
    }
  }
  EXPECT_GT(failed, 0);
  EXPECT_GT(ok_paths.size(), 0u);

  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  std::set<std::string> present;
  for (const Record& r : QueryAll(reader.get())) present.insert(r.path);
  EXPECT_EQ(present, ok_paths);
  EXPECT_EQ(calls.load(), 40) << "the leader kept writing after the failure";
}

// A real SQLite failure in the middle of a group (here a trigger aborting the
// second insert) rolls back the whole group and is sticky too.
TEST_F(JournalTest, SqliteFailureMidGroupRollsBackAndIsSticky) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  Record before = MakeRecord(Op::kCreate, "before");
  ASSERT_TRUE(j->Commit(before).ok());
  {
    RawDb(db_path()).Exec(
        "CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.path='boom' "
        "BEGIN SELECT RAISE(ABORT, 'boom refused'); END");
  }
  std::vector<Record> group = {MakeRecord(Op::kWrite, "first-of-group"),
                               MakeRecord(Op::kWrite, "boom"),
                               MakeRecord(Op::kWrite, "after-boom")};
  Status s = j->Commit(group);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("boom refused"));
  EXPECT_THAT(s.message(), HasSubstr(db_path()));
  EXPECT_FALSE(j->health().ok());
  Record later = MakeRecord(Op::kWrite, "later");
  EXPECT_FALSE(j->Commit(later).ok());

  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto all = QueryAll(reader.get());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].path, "before");
  // The writer's connection is not left inside a transaction: the database
  // is writable by others (a leftover transaction would hold the write lock).
  {
    RawDb raw(db_path());
    sqlite3_busy_timeout(raw.get(), 100);
    EXPECT_EQ(raw.TryExec("DROP TRIGGER boom"), SQLITE_OK);
  }
  j.reset();
  // A fresh journal recovers and continues the sequence.
  auto j2 = MustOpen(db_path());
  ASSERT_TRUE(j2);
  Record again = MakeRecord(Op::kWrite, "boom");
  ASSERT_TRUE(j2->Commit(again).ok());
  EXPECT_EQ(again.seq, before.seq + 1);
}

// ---------------------------------------------------------------------------
// Durability and MarkSkipped

TEST_F(JournalTest, DurableCommitAndSyncSucceed) {
  std::atomic<int> groups{0};
  Journal::Options opt;
  opt.fault_hook = [&] {
    ++groups;
    return Status::Ok();
  };
  auto j = MustOpen(db_path(), opt);
  ASSERT_TRUE(j);
  EXPECT_TRUE(j->Sync().ok());  // nothing committed yet
  Record a = MakeRecord(Op::kWrite, "a");
  ASSERT_TRUE(j->Commit(a, /*durable=*/true).ok());
  EXPECT_GT(a.seq, 0);
  Record b = MakeRecord(Op::kWrite, "b");
  ASSERT_TRUE(j->Commit(b).ok());
  EXPECT_TRUE(j->Sync().ok());
  EXPECT_EQ(groups.load(), 4) << "Sync() must go through the commit queue";
  EXPECT_TRUE(j->health().ok());
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  EXPECT_EQ(QueryAll(reader.get()).size(), 2u);
}

TEST_F(JournalTest, MarkSkippedRecordsTheErrno) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  std::vector<Record> recs = {MakeRecord(Op::kCreate, "a"), MakeRecord(Op::kCreate, "b")};
  ASSERT_TRUE(j->Commit(recs).ok());
  int64_t before = NowNs();
  ASSERT_TRUE(j->MarkSkipped(recs[0].seq, ENOSPC).ok());
  int64_t after = NowNs();

  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto all = QueryAll(reader.get());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].state, kStateSkipped);
  ASSERT_TRUE(all[0].error.has_value());
  EXPECT_THAT(*all[0].error, HasSubstr(strerror(ENOSPC)));
  ASSERT_TRUE(all[0].state_ns.has_value());
  EXPECT_GE(*all[0].state_ns, before);
  EXPECT_LE(*all[0].state_ns, after);
  // Only the named record changes.
  EXPECT_EQ(all[1].state, kStatePending);
  EXPECT_FALSE(all[1].error.has_value());
  EXPECT_EQ(all[0].path, "a");
  EXPECT_EQ(all[0].op, Op::kCreate);

  // Skipping composes with concurrent commits in the same group.
  std::thread t([&] {
    for (int i = 0; i < 50; ++i) {
      Record r = MakeRecord(Op::kWrite, "c");
      EXPECT_TRUE(j->Commit(r).ok());
    }
  });
  EXPECT_TRUE(j->MarkSkipped(recs[1].seq, EACCES).ok());
  t.join();
  JournalFilter f;
  f.state = std::string(kStateSkipped);
  auto skipped = QueryAll(reader.get(), f);
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_THAT(*skipped[1].error, HasSubstr(strerror(EACCES)));
}

// ---------------------------------------------------------------------------
// Queries and statistics

class JournalQueryTest : public JournalTest {
 protected:
  void SetUp() override {
    j_ = MustOpen(db_path());
    ASSERT_TRUE(j_);
    auto rec = [](int64_t t, Op op, std::string path, std::string_view state,
                  std::optional<std::string> new_path = std::nullopt) {
      Record r = MakeRecord(op, std::move(path));
      r.time_ns = t;
      r.state = std::string(state);
      r.new_path = std::move(new_path);
      return r;
    };
    std::vector<Record> rs = {
        rec(1000, Op::kCreate, "dir/a.txt", kStatePending),                      // 1
        rec(2000, Op::kWrite, "dir/a.txt", kStatePending),                       // 2
        rec(3000, Op::kRename, "dir/a.txt", kStateDone, "other/b.txt"),          // 3
        rec(4000, Op::kWrite, "other/b.txt", kStateFailed),                      // 4
        rec(5000, Op::kPause, "", kStateDone),                                   // 5
        rec(6000, Op::kWrite, "x.log", kStatePending),                           // 6
        rec(7000, Op::kUnlink, "dir/c.txt", kStateSkipped),                      // 7
        rec(8000, Op::kLink, "y", kStateUploading, "dir/z"),                     // 8
    };
    ASSERT_TRUE(j_->Commit(rs).ok());
    ASSERT_EQ(rs.back().seq, 8);
    reader_ = MustOpenReader(db_path());
    ASSERT_TRUE(reader_);
  }
  std::vector<int64_t> Q(const JournalFilter& f) { return Seqs(reader_.get(), f); }

  std::unique_ptr<Journal> j_;
  std::unique_ptr<JournalReader> reader_;
};

TEST_F(JournalQueryTest, NoFilterReturnsAllOldestFirst) {
  EXPECT_THAT(Q({}), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
}

TEST_F(JournalQueryTest, SeqBounds) {
  JournalFilter f;
  f.since_seq = 3;
  EXPECT_THAT(Q(f), ElementsAre(3, 4, 5, 6, 7, 8));
  f = {};
  f.until_seq = 3;
  EXPECT_THAT(Q(f), ElementsAre(1, 2, 3));
  f.since_seq = 2;
  f.until_seq = 4;
  EXPECT_THAT(Q(f), ElementsAre(2, 3, 4));
  f.since_seq = 9;
  f.until_seq = std::nullopt;
  EXPECT_THAT(Q(f), IsEmpty());
  f.since_seq = 5;
  f.until_seq = 4;
  EXPECT_THAT(Q(f), IsEmpty());
}

TEST_F(JournalQueryTest, TimeBounds) {
  JournalFilter f;
  f.since_ns = 3000;
  EXPECT_THAT(Q(f), ElementsAre(3, 4, 5, 6, 7, 8));
  f = {};
  f.until_ns = 3000;
  EXPECT_THAT(Q(f), ElementsAre(1, 2, 3));
  f.since_ns = 2500;
  f.until_ns = 6000;
  EXPECT_THAT(Q(f), ElementsAre(3, 4, 5, 6));
  f.since_ns = 8001;
  f.until_ns = std::nullopt;
  EXPECT_THAT(Q(f), IsEmpty());
}

TEST_F(JournalQueryTest, PathGlobMatchesPathOrNewPath) {
  JournalFilter f;
  f.path_glob = "dir/*";
  EXPECT_THAT(Q(f), ElementsAre(1, 2, 3, 7, 8));  // 8 through new_path
  f.path_glob = "other/*";
  EXPECT_THAT(Q(f), ElementsAre(3, 4));  // 3 through new_path
  f.path_glob = "*.txt";
  EXPECT_THAT(Q(f), ElementsAre(1, 2, 3, 4, 7));
  f.path_glob = "x.log";
  EXPECT_THAT(Q(f), ElementsAre(6));
  f.path_glob = "DIR/*";  // GLOB is case-sensitive, like file names
  EXPECT_THAT(Q(f), IsEmpty());
  f.path_glob = "nomatch";
  EXPECT_THAT(Q(f), IsEmpty());
  f.path_glob = "it's";  // quoting is the binding's business, not the caller's
  EXPECT_THAT(Q(f), IsEmpty());
}

// A glob's literal prefix bounds its matches (schema version 6 searches
// that range in records_path); a glob that starts with a wildcard has none.
TEST(GlobPrefixRangeTest, BoundsEveryMatch) {
  auto r = GlobPrefixRange("d500/*");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->low, "d500/");
  EXPECT_EQ(r->high, "d5000");  // '/' + 1: every "d500/..." sorts below it
  r = GlobPrefixRange("x.log");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->low, "x.log");
  EXPECT_EQ(r->high, "x.loh");
  r = GlobPrefixRange("a?c[de]*");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->low, "a");
  EXPECT_EQ(r->high, "b");
  r = GlobPrefixRange("a\xff\xff*");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->high, "b");
  r = GlobPrefixRange("\xff*");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->high);  // nothing sorts above every string starting with 0xff
  EXPECT_FALSE(GlobPrefixRange("*.txt"));
  EXPECT_FALSE(GlobPrefixRange("[ab]/x"));
  EXPECT_FALSE(GlobPrefixRange("?"));
  EXPECT_FALSE(GlobPrefixRange(""));
}

TEST(GlobPrefixRangeTest, PlanWalksTheShorterOfTheRangeAndTheSpan) {
  constexpr int64_t kJournal = 10'000'000;
  EXPECT_EQ(ChoosePathPlan(false, false, 0, kJournal), PathPlan::kScan);  // "*.txt"
  EXPECT_EQ(ChoosePathPlan(true, false, kPathIndexProbe + 1, kJournal), PathPlan::kIndex);
  EXPECT_EQ(ChoosePathPlan(true, true, kPathIndexProbe, kJournal), PathPlan::kIndex);
  // --limit over many matches: the newest are found sooner from the end.
  EXPECT_EQ(ChoosePathPlan(true, true, kPathIndexProbe + 1, kJournal), PathPlan::kScan);
  // --follow's poll spans the few records written since the last one.
  EXPECT_EQ(ChoosePathPlan(true, true, 10'000, 12), PathPlan::kScan);
  EXPECT_EQ(ChoosePathPlan(true, false, 12, 12), PathPlan::kScan);
  EXPECT_EQ(ChoosePathPlan(true, false, 11, 12), PathPlan::kIndex);
}

// Paths beside the range's bounds: a byte below or above the prefix's, and
// the prefix itself, each as path and as new_path.
TEST_F(JournalQueryTest, PathGlobRangeKeepsItsEdges) {
  std::vector<Record> rs;
  for (const char* p : {"dir", "dir/", "dir0", "dir.", "dir/\xff", "dir/x"}) {
    rs.push_back(MakeRecord(Op::kWrite, p));
    Record mv = MakeRecord(Op::kRename, "elsewhere");
    mv.new_path = p;
    rs.push_back(mv);
  }
  ASSERT_TRUE(j_->Commit(rs).ok());  // seqs 9..20
  JournalFilter f;
  f.path_glob = "dir/*";
  EXPECT_THAT(Q(f), ElementsAre(1, 2, 3, 7, 8, 11, 12, 17, 18, 19, 20));
  f.path_glob = "dir";
  EXPECT_THAT(Q(f), ElementsAre(9, 10));
  f.limit = 1;
  f.newest_first = true;
  EXPECT_THAT(Q(f), ElementsAre(10));
}

TEST_F(JournalQueryTest, OpAndState) {
  JournalFilter f;
  f.op = "write";
  EXPECT_THAT(Q(f), ElementsAre(2, 4, 6));
  f.op = "pause";
  EXPECT_THAT(Q(f), ElementsAre(5));
  f.op = "mknod";
  EXPECT_THAT(Q(f), IsEmpty());
  f = {};
  f.state = "pending";
  EXPECT_THAT(Q(f), ElementsAre(1, 2, 6));
  f.state = "done";
  EXPECT_THAT(Q(f), ElementsAre(3, 5));
  f.state = "uploading";
  EXPECT_THAT(Q(f), ElementsAre(8));
  f.op = "write";
  f.state = "failed";
  EXPECT_THAT(Q(f), ElementsAre(4));
}

TEST_F(JournalQueryTest, LimitAndNewestFirst) {
  JournalFilter f;
  f.limit = 3;
  EXPECT_THAT(Q(f), ElementsAre(1, 2, 3));
  f.newest_first = true;
  EXPECT_THAT(Q(f), ElementsAre(6, 7, 8));  // the last three, still oldest first
  f.limit = 100;
  EXPECT_THAT(Q(f), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
  f.limit = 0;
  EXPECT_THAT(Q(f), IsEmpty());
  f = {};
  f.newest_first = true;  // without a limit: everything
  EXPECT_THAT(Q(f), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
}

TEST_F(JournalQueryTest, FiltersCombine) {
  JournalFilter f;
  f.op = "write";
  f.state = "pending";
  f.limit = 1;
  f.newest_first = true;
  EXPECT_THAT(Q(f), ElementsAre(6));
  f = {};
  f.path_glob = "dir/*";
  f.since_seq = 3;
  f.until_ns = 7000;
  EXPECT_THAT(Q(f), ElementsAre(3, 7));
  f.limit = 1;
  EXPECT_THAT(Q(f), ElementsAre(3));
  f.newest_first = true;
  EXPECT_THAT(Q(f), ElementsAre(7));
}

TEST_F(JournalQueryTest, QueryReturnsFullRecords) {
  JournalFilter f;
  f.since_seq = 3;
  f.until_seq = 3;
  auto got = QueryAll(reader_.get(), f);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].op, Op::kRename);
  EXPECT_EQ(got[0].path, "dir/a.txt");
  EXPECT_EQ(got[0].new_path, "other/b.txt");
  EXPECT_EQ(got[0].time_ns, 3000);
  EXPECT_EQ(got[0].state, kStateDone);
}

TEST_F(JournalTest, StatsOfEmptyJournal) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto st = reader->Stats();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->records, 0);
  EXPECT_EQ(st->max_seq, 0);
  EXPECT_TRUE(st->by_op.empty());
  EXPECT_TRUE(st->by_state.empty());
  EXPECT_EQ(st->pending_files, 0);
  EXPECT_EQ(st->pending_records, 0);
  EXPECT_EQ(st->pending_bytes, 0);
  EXPECT_FALSE(st->oldest_pending_ns.has_value());
  auto max = reader->MaxSeq();
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(*max, 0);
}

TEST_F(JournalTest, StatsFigures) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  auto rec = [](int64_t t, Op op, std::string path, std::string_view state,
                std::optional<int64_t> size) {
    Record r = MakeRecord(op, std::move(path));
    r.time_ns = t;
    r.state = std::string(state);
    r.size = size;
    return r;
  };
  std::vector<Record> rs = {
      rec(1000, Op::kCreate, "a", kStatePending, 0),              // 1
      rec(2000, Op::kWrite, "a", kStatePending, std::nullopt),    // 2
      rec(3000, Op::kClose, "a", kStatePending, 100),             // 3: a is 100 bytes
      rec(500, Op::kClose, "b", kStateDone, 50),                  // 4: b's size, from a done record
      rec(4000, Op::kWrite, "b", kStatePending, std::nullopt),    // 5: b pending, 50 bytes
      rec(100, Op::kPause, "", kStateDone, std::nullopt),         // 6
      rec(50, Op::kUnlink, "c", kStateFailed, std::nullopt),      // 7: failed is not pending
      rec(600, Op::kTruncate, "d", kStateUploading, 7),           // 8: uploading counts, 7 bytes
      rec(700, Op::kClose, "e", kStateDone, 1000),                // 9: e was 1000 bytes...
      rec(9000, Op::kTruncate, "e", kStateSkipped, 5),            // 10: ...skipped, not pending
      rec(800, Op::kClose, "f", kStatePending, 300),              // 11: f was 300 bytes,
      rec(900, Op::kTruncate, "f", kStateDone, 30),               // 12: now 30
      rec(950, Op::kWrite, "g", kStatePending, std::nullopt),     // 13: size unknown: 0
  };
  ASSERT_TRUE(j->Commit(rs).ok());
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto st = reader->Stats();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->records, 13);
  EXPECT_EQ(st->max_seq, 13);
  EXPECT_EQ(st->by_op, (std::map<std::string, int64_t>{{"create", 1},
                                                       {"write", 3},
                                                       {"close", 4},
                                                       {"pause", 1},
                                                       {"unlink", 1},
                                                       {"truncate", 3}}));
  EXPECT_EQ(st->by_state, (std::map<std::string, int64_t>{{"pending", 6},
                                                          {"done", 4},
                                                          {"failed", 1},
                                                          {"uploading", 1},
                                                          {"skipped", 1}}));
  EXPECT_EQ(st->by_op_state["write"]["pending"], 3);
  EXPECT_EQ(st->by_op_state["close"]["done"], 2);
  EXPECT_EQ(st->by_op_state["close"]["pending"], 2);
  EXPECT_EQ(st->by_op_state["truncate"].size(), 3u);
  EXPECT_EQ(st->pending_files, 5);     // a, b, d, f, g
  EXPECT_EQ(st->pending_records, 7);   // 1, 2, 3, 5, 8, 11, 13
  EXPECT_EQ(st->pending_bytes, 100 + 50 + 7 + 30 + 0);
  ASSERT_TRUE(st->oldest_pending_ns.has_value());
  EXPECT_EQ(*st->oldest_pending_ns, 600);  // d; the failed 50 and done 100 do not count

  // Figures follow new commits seen by the same reader.
  Record more = MakeRecord(Op::kWrite, "h");
  more.time_ns = 10;
  more.size = 1;
  ASSERT_TRUE(j->Commit(more).ok());
  st = reader->Stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->records, 14);
  EXPECT_EQ(st->pending_files, 6);
  EXPECT_EQ(st->pending_bytes, 188);
  EXPECT_EQ(*st->oldest_pending_ns, 10);
}

// Bounded lag's measure: the written bytes of pending/uploading write
// records, and the oldest of those records; failed and done ones do not count.
TEST_F(JournalTest, BacklogCountsWrittenBytesNotStored) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  auto rec = [](int64_t t, Op op, const char* path, std::string_view state,
                std::vector<ByteRange> ranges) {
    Record r = MakeRecord(op, path);
    r.time_ns = t;
    r.state = std::string(state);
    r.ranges = std::move(ranges);
    return r;
  };
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  auto b = reader->Backlog();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->written_bytes, 0);
  EXPECT_FALSE(b->oldest_pending_ns.has_value());
  std::vector<Record> rs = {
      rec(100, Op::kWrite, "a", kStateDone, {{0, 1000}}),
      rec(200, Op::kWrite, "a", kStatePending, {{0, 4096}, {8192, 512}}),
      rec(300, Op::kWrite, "b", kStateUploading, {{0, 10}}),
      rec(50, Op::kWrite, "c", kStateFailed, {{0, 7777}}),
      rec(400, Op::kCreate, "d", kStatePending, {}),
  };
  ASSERT_TRUE(j->Commit(rs).ok());
  b = reader->Backlog();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->written_bytes, 4096 + 512 + 10);
  ASSERT_TRUE(b->oldest_pending_ns.has_value());
  EXPECT_EQ(*b->oldest_pending_ns, 200);
  // d was created: its writes journal no ranges; its size is looked up.
  ASSERT_EQ(b->whole_files.size(), 1u);
  EXPECT_EQ(b->whole_files[0].first, "d");
  EXPECT_FALSE(b->whole_files[0].second.has_value()) << "still open";
  Record close = rec(500, Op::kClose, "d", kStatePending, {});
  close.size = 12345;
  ASSERT_TRUE(j->Commit(close).ok());
  b = reader->Backlog();
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->whole_files.size(), 1u);
  EXPECT_EQ(b->whole_files[0].second, std::optional<int64_t>(12345)) << "closed at that size";
}

// CommitAsync assigns the seqs when it returns, before the write (which a
// commit ahead of it may hold up); a commit started later gets later seqs,
// and the records are readable once Wait() returns.
TEST_F(JournalTest, CommitAsyncAssignsSeqsBeforeTheWrite) {
  std::atomic<bool> stall{false};
  Journal::Options opt;
  opt.fault_hook = [&] {
    if (stall.exchange(false)) std::this_thread::sleep_for(std::chrono::milliseconds(800));
    return Status::Ok();
  };
  auto j = MustOpen(db_path(), opt);
  ASSERT_TRUE(j);
  auto reader = MustOpenReader(db_path());
  ASSERT_TRUE(reader);
  stall = true;
  Record lead = MakeRecord(Op::kCreate, "lead");
  std::thread leader([&] { EXPECT_TRUE(j->Commit(lead).ok()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto t0 = std::chrono::steady_clock::now();
  auto p = j->CommitAsync({MakeRecord(Op::kWrite, "a"), MakeRecord(Op::kPause, "")});
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(400));
  const auto& recs = (*p)->records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1].seq, recs[0].seq + 1);
  EXPECT_EQ(QueryAll(reader.get()).size(), 0u) << "nothing is written while the leader stalls";
  Record later = MakeRecord(Op::kMkdir, "later");
  ASSERT_TRUE(j->Commit(later).ok());
  EXPECT_GT(later.seq, recs[1].seq);
  ASSERT_TRUE((*p)->Wait().ok());
  leader.join();
  EXPECT_LT(lead.seq, recs[0].seq);
  auto all = QueryAll(reader.get());
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[1].path, "a");
  EXPECT_EQ(all[1].seq, recs[0].seq);
  EXPECT_EQ(all[3].path, "later");
}

// A watch notes the paths of the records queued after it started, and none
// from before (every one of those is committed when Watch returns); past
// its limit it says so rather than hand out an incomplete set.
TEST_F(JournalTest, WatchNotesTheRecordsQueuedSinceItStarted) {
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  Record before = MakeRecord(Op::kCreate, "before");
  ASSERT_TRUE(j->Commit(before).ok());
  auto w = j->Watch(3);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->from(), before.seq);
  Record mv = MakeRecord(Op::kRename, "old");
  mv.new_path = "new";
  ASSERT_TRUE(j->Commit(mv).ok());
  std::set<std::string> names;
  ASSERT_TRUE((*w)->Names(&names));
  EXPECT_EQ(names, (std::set<std::string>{"old", "new"}));
  Record more = MakeRecord(Op::kRename, "x");
  more.new_path = "y";
  ASSERT_TRUE(j->Commit(more).ok());  // 4 names > 3
  EXPECT_FALSE((*w)->Names(&names));
  w->reset();
  Record after = MakeRecord(Op::kCreate, "after");
  EXPECT_TRUE(j->Commit(after).ok()) << "a watch that ended is no longer told";
}

// Seqs are assigned by the journal, not SQLite; they are never reused, even
// when the last records were trimmed before a restart.
TEST_F(JournalTest, SeqsAreNotReusedAfterTheLastRecordsAreDeleted) {
  int64_t last = 0;
  {
    auto j = MustOpen(db_path());
    ASSERT_TRUE(j);
    for (int i = 0; i < 3; ++i) {
      Record r = MakeRecord(Op::kCreate, "f" + std::to_string(i));
      ASSERT_TRUE(j->Commit(r).ok());
      last = r.seq;
    }
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, "DELETE FROM records", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  auto j = MustOpen(db_path());
  ASSERT_TRUE(j);
  Record r = MakeRecord(Op::kCreate, "next");
  ASSERT_TRUE(j->Commit(r).ok());
  EXPECT_EQ(r.seq, last + 1);
}

// ---------------------------------------------------------------------------
// Background checkpoints under a steady stream of commits

int64_t FileBytes(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

TEST_F(JournalTest, TheCheckpointerWaitsTheIntervalBetweenCheckpoints) {
  // Every commit asks for a checkpoint (1 page is past the threshold). The
  // checkpointer used to run back to back, two fdatasyncs each time.
  Journal::Options o;
  o.checkpoint_pages = 1;
  o.checkpoint_interval = std::chrono::seconds(30);
  auto j = MustOpen(db_path(), o);
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  int commits = 0;
  while (std::chrono::steady_clock::now() < until) {
    Record r = MakeRecord(Op::kCreate, "f" + std::to_string(commits++));
    ASSERT_TRUE(j->Commit(r).ok());
  }
  ASSERT_GT(commits, 100);
  // The first request runs one at once; the others wait for the interval.
  EXPECT_EQ(j->checkpoints_run(), 1u) << commits << " commits";
}

TEST_F(JournalTest, TheWalStartsOverUnderASteadyStreamOfCommits) {
  // One writer that never stops, as `tar -x` through the mount (a commit
  // every 50 us or so, besides the commit's own time): a commit lands during
  // every background checkpoint. The checkpoint must still end with every
  // frame copied, so that the WAL starts over instead of growing by ~12 KiB
  // per commit (~240 MiB here).
  Journal::Options o;
  o.checkpoint_pages = 100;
  o.checkpoint_interval = std::chrono::milliseconds(20);
  auto j = MustOpen(db_path(), o);
  const std::string wal = db_path() + "-wal";
  int64_t max_wal = 0;
  for (int i = 0; i < 20000; ++i) {
    Record r = MakeRecord(Op::kCreate, "d/f" + std::to_string(i));
    r.size = 0;  // also in the path/size index, as a create
    ASSERT_TRUE(j->Commit(r).ok());
    if (i % 100 == 0) max_wal = std::max(max_wal, FileBytes(wal));
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  EXPECT_GT(j->checkpoints_run(), 1u);
  EXPECT_LT(max_wal, 64ll << 20) << "max -wal " << (max_wal >> 10) << " KiB";
}

}  // namespace
}  // namespace scribefs
