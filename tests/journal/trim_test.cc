// TrimJournal (journal/trim.h): which records go, in batches, with the trim
// point noted; and the journal stays bounded (rows and file size) over
// 1,000,000 changes with --journal-retention 0.
//
// The replicator that writes history_stored_through is built in parallel:
// these tests write the meta key themselves, as it will.
#include "journal/trim.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "journal/journal.h"
#include "journal/reader.h"
#include "journal/targets.h"
#include "journal/upload_state.h"
#include "tests/journal/journal_test_util.h"

namespace scribefs {
namespace {

using ::testing::ElementsAreArray;

constexpr int64_t kSec = 1'000'000'000;

class TrimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto j = Journal::Open(path());
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    journal_ = std::move(j.value());
  }
  std::string path() const { return dir_.path() + "/journal.db"; }

  // Commits one record with the given op, state and time; returns its seq.
  int64_t Add(Op op, std::string_view state, int64_t time_ns, const std::string& p = "f") {
    Record r;
    r.op = op;
    r.path = p;
    r.state = std::string(state);
    r.time_ns = time_ns;
    EXPECT_TRUE(journal_->Commit(r).ok());
    return r.seq;
  }
  std::vector<int64_t> Seqs() {
    RawDb raw(path(), SQLITE_OPEN_READONLY);
    std::vector<int64_t> out;
    for (const std::string& s : raw.Column("SELECT seq FROM records ORDER BY seq"))
      out.push_back(std::stoll(s));
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Journal> journal_;
};

TEST_F(TrimTest, DeletesExactlyTheStoredFinishedOldRecords) {
  const int64_t now = 1000 * kSec;
  const int64_t old = now - 100 * kSec, recent = now - 5 * kSec;
  int64_t done_old = Add(Op::kWrite, kStateDone, old);
  int64_t skipped_old = Add(Op::kUnlink, kStateSkipped, old);
  int64_t failed_old = Add(Op::kWrite, kStateFailed, old);
  int64_t pending_old = Add(Op::kClose, kStatePending, old);
  int64_t uploading_old = Add(Op::kClose, kStateUploading, old);
  int64_t checkpoint_old = Add(Op::kCheckpoint, kStateDone, old, "");
  int64_t pause_old = Add(Op::kPause, kStateDone, old, "");
  int64_t done_recent = Add(Op::kWrite, kStateDone, recent);
  int64_t done_old2 = Add(Op::kCreate, kStateDone, old);  // written after a clock step back
  int64_t beyond_history = Add(Op::kWrite, kStateDone, old);
  int64_t last = Add(Op::kWrite, kStateDone, old);
  const std::vector<int64_t> all = Seqs();
  TrimPolicy policy;
  policy.retention_ns = 60 * kSec;

  // No history in the target: nothing goes.
  auto r = TrimJournal(*journal_, policy, now);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->deleted, 0);
  EXPECT_FALSE(r->trimmed_through);
  EXPECT_THAT(Seqs(), ElementsAreArray(all));

  // A malformed key: nothing goes either.
  ASSERT_TRUE(journal_->SetMeta(kMetaHistoryStoredThrough, "12x").ok());
  r = TrimJournal(*journal_, policy, now);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted, 0);

  ASSERT_TRUE(
      journal_->SetMeta(kMetaHistoryStoredThrough, std::to_string(beyond_history - 1)).ok());
  r = TrimJournal(*journal_, policy, now);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // done_old2 is old but comes after done_recent: the time bound stops at
  // the first recent record (trimming waits; nothing recent ever goes).
  EXPECT_EQ(r->deleted, 2);
  EXPECT_THAT(Seqs(), ElementsAreArray({failed_old, pending_old, uploading_old, checkpoint_old,
                                        pause_old, done_recent, done_old2, beyond_history, last}));
  ASSERT_TRUE(r->trimmed_through);
  EXPECT_EQ(*r->trimmed_through, skipped_old);
  EXPECT_EQ(*r->trimmed_through_ns, old);
  auto reader = JournalReader::Open(path());
  ASSERT_TRUE(reader.ok());
  auto meta = (*reader)->Meta(kMetaTrimmedThrough);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->value_or(""), std::to_string(skipped_old));
  meta = (*reader)->Meta(kMetaTrimmedThroughNs);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->value_or(""), std::to_string(old));
  // The counts stats shows follow the deletion.
  auto stats = (*reader)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->records, 9);
  EXPECT_EQ(stats->by_state["done"], 6);  // checkpoint, pause, recent, old2, beyond, last
  EXPECT_EQ(stats->by_state["skipped"], 0);
  EXPECT_EQ(stats->max_seq, last);

  // Everything stored, later: the recent one has aged; the last record of
  // the journal stays (its seq is the journal's max seq).
  ASSERT_TRUE(journal_->SetMeta(kMetaHistoryStoredThrough, std::to_string(last)).ok());
  r = TrimJournal(*journal_, policy, now + 60 * kSec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted, 3);
  EXPECT_THAT(Seqs(), ElementsAreArray({failed_old, pending_old, uploading_old, checkpoint_old,
                                        pause_old, last}));
  EXPECT_EQ(*r->trimmed_through, beyond_history);
  (void)done_old;

  // A failed record that a retry stored is trimmed once it is done.
  Record more;
  more.path = "g";
  ASSERT_TRUE(journal_->Commit(more).ok());
  UploadStateStore up(journal_.get(), kFirstTarget);
  ASSERT_TRUE(up.MarkUploaded(std::vector<int64_t>{failed_old}, {}, "{}").ok());
  ASSERT_TRUE(journal_->SetMeta(kMetaHistoryStoredThrough, std::to_string(more.seq)).ok());
  r = TrimJournal(*journal_, policy, now + 60 * kSec);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted, 2);  // failed_old (now done) and `last`, no longer the last
  EXPECT_THAT(Seqs(),
              ElementsAreArray({pending_old, uploading_old, checkpoint_old, pause_old, more.seq}));
  EXPECT_EQ(*r->trimmed_through, last);  // the highest seq deleted so far

  // A new journal writer continues the seqs after the trim (AUTOINCREMENT).
  journal_.reset();
  auto j = Journal::Open(path());
  ASSERT_TRUE(j.ok());
  journal_ = std::move(j.value());
  EXPECT_EQ(Add(Op::kWrite, kStatePending, now), more.seq + 1);
}

TEST_F(TrimTest, RetentionZeroDeletesInBatchesAsSoonAsStored) {
  std::vector<Record> recs(25'001);
  for (size_t i = 0; i < recs.size(); ++i) {
    recs[i].path = "p" + std::to_string(i % 100);
    recs[i].state = std::string(kStateDone);
  }
  ASSERT_TRUE(journal_->Commit(recs).ok());
  ASSERT_TRUE(journal_->SetMeta(kMetaHistoryStoredThrough, std::to_string(recs.back().seq)).ok());
  TrimPolicy policy;
  policy.retention_ns = 0;
  policy.batch_rows = 10'000;
  auto r = TrimJournal(*journal_, policy, NowNs());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->deleted, 25'000);
  EXPECT_EQ(r->batches, 3);
  EXPECT_THAT(Seqs(), ElementsAreArray({recs.back().seq}));
  EXPECT_EQ(*r->trimmed_through, recs.back().seq - 1);
}

// Issue 11: "1,000,000 changes with --journal-retention 0: the journal's row
// count and file size stay bounded". 100 rounds of 10,000 records as the
// daemon writes them (pending), marked uploaded by the uploader, stored in
// the history (the meta key), trimmed: rows and the size of journal.db plus
// its WAL must stop growing once the free pages are there to be reused.
TEST_F(TrimTest, MillionChangesStayBounded) {
  constexpr int kRounds = 100, kPerRound = 10'000;
  TrimPolicy policy;
  policy.retention_ns = 0;
  UploadStateStore up(journal_.get(), kFirstTarget);
  auto file_bytes = [&] {
    struct stat a {
    }, b{};
    ::stat(path().c_str(), &a);
    if (::stat((path() + "-wal").c_str(), &b) != 0) b.st_size = 0;
    return std::pair<int64_t, int64_t>(a.st_size, b.st_size);
  };
  auto t0 = std::chrono::steady_clock::now();
  int64_t max_db_after_warmup = 0, db_at_warmup = 0, max_rows = 0, max_wal = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<Record> recs(kPerRound);
    for (int i = 0; i < kPerRound; ++i) {
      Record& r = recs[i];
      r.op = i % 2 ? Op::kClose : Op::kWrite;
      r.path = "dir" + std::to_string(i % 50) + "/file-" + std::to_string((round * 7 + i) % 5000);
      if (r.op == Op::kWrite)
        r.ranges = {{static_cast<uint64_t>(i) * 4096, 4096}};
      else
        r.size = i * 4096;
    }
    for (int i = 0; i < kPerRound; i += 500)
      ASSERT_TRUE(journal_->Commit(std::span<Record>(recs).subspan(i, 500)).ok());
    std::vector<int64_t> seqs;
    for (const Record& r : recs) seqs.push_back(r.seq);
    ASSERT_TRUE(up.MarkUploaded(seqs, {"etag", "", ""}, "{}").ok());
    ASSERT_TRUE(journal_->SetMeta(kMetaHistoryStoredThrough, std::to_string(recs.back().seq)).ok());
    auto r = TrimJournal(*journal_, policy, NowNs());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->deleted, round == 0 ? kPerRound - 1 : kPerRound);
    // What the trimmer's task does after each pass (daemon/journal_trim.cc).
    ASSERT_TRUE(journal_->BoundWal(64ull << 20).ok());
    RawDb raw(path(), SQLITE_OPEN_READONLY);
    int64_t rows = raw.Int("SELECT count(*) FROM records");
    auto [db, wal] = file_bytes();
    max_rows = std::max(max_rows, rows);
    max_wal = std::max(max_wal, wal);
    if (round == 9) db_at_warmup = db;
    if (round >= 10) max_db_after_warmup = std::max(max_db_after_warmup, db);
    if (round % 10 == 9 || round == 0)
      printf("after %7d changes: %lld rows, journal.db %lld KiB, -wal %lld KiB, freelist %lld\n",
             (round + 1) * kPerRound, static_cast<long long>(rows),
             static_cast<long long>(db / 1024), static_cast<long long>(wal / 1024),
             static_cast<long long>(raw.Int("PRAGMA freelist_count")));
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  printf(
      "1,000,000 changes in %.1f s; max rows %lld; journal.db %lld KiB at 100,000 changes, "
      "max %lld KiB after; max -wal %lld KiB\n",
      s, static_cast<long long>(max_rows), static_cast<long long>(db_at_warmup / 1024),
      static_cast<long long>(max_db_after_warmup / 1024), static_cast<long long>(max_wal / 1024));
  // After each trim only the last record of the journal stays.
  EXPECT_LE(max_rows, 1);
  // Flat: the free pages of trimmed records are reused (a journal that kept
  // every record would be ~10x this size after 1M changes).
  EXPECT_LE(max_db_after_warmup, db_at_warmup + db_at_warmup / 5);
  // The WAL: back to 64 MiB (journal_size_limit) once BoundWal has
  // checkpointed it, plus what the rounds write until a checkpoint completes
  // and the WAL restarts (67 MiB seen). Without BoundWal it grew with
  // every round, to 512 MiB: the background checkpoints never caught up with
  // a writer that never paused.
  EXPECT_LE(max_wal, 128ll << 20);
  auto reader = JournalReader::Open(path());
  ASSERT_TRUE(reader.ok());
  auto st = (*reader)->Stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->max_seq, kRounds * kPerRound);
  EXPECT_EQ(st->records, 1);
}

}  // namespace
}  // namespace scribefs
