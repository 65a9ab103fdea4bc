// Tests of several targets in one journal (schema version 5, issue 16): the
// rule tying a record's state to its state on each target
// (journal/target_states.h), the targets table (journal/targets.h), and the
// per-target writes and reads of UploadStateStore, RemoteIndex and
// JournalReader on a real journal.
#include "journal/targets.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "journal/journal.h"
#include "journal/reader.h"
#include "journal/remote_index.h"
#include "journal/target_states.h"
#include "journal/trim.h"
#include "journal/upload_state.h"
#include "tests/journal/journal_test_util.h"

namespace scribefs {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// ---- the rule, without I/O ----

TEST(CombinedStateTest, PendingWhileOneTargetIsNotFinished) {
  EXPECT_EQ(CombinedState({"done", "pending"}), "pending");
  EXPECT_EQ(CombinedState({"failed", "uploading"}), "pending");
  EXPECT_EQ(CombinedState({"done", "failed"}), "failed");
  EXPECT_EQ(CombinedState({"skipped", "done"}), "done");
  EXPECT_EQ(CombinedState({"skipped", "skipped"}), "skipped");
  EXPECT_EQ(CombinedState({}), "pending");
}

TEST(FoldTargetStatesTest, RowsStayOnlyWhereATargetDiffersFromTheRecord) {
  // Target 1 stored it, target 2 has not: 1 keeps a row, the record is pending.
  auto f = FoldTargetStates("pending", {{1, "done"}}, {1, 2});
  EXPECT_EQ(f.record_state, "pending");
  EXPECT_THAT(f.drop, IsEmpty());
  EXPECT_THAT(f.write, IsEmpty());
  // Then target 2 stores it too: the record is done and no row is left.
  f = FoldTargetStates("pending", {{1, "done"}, {2, "done"}}, {1, 2});
  EXPECT_EQ(f.record_state, "done");
  EXPECT_THAT(f.drop, ElementsAre(1, 2));
  // One failed: the record fails; the failed target needs no row.
  f = FoldTargetStates("pending", {{1, "done"}, {2, "failed"}}, {1, 2});
  EXPECT_EQ(f.record_state, "failed");
  EXPECT_THAT(f.drop, ElementsAre(2));
}

TEST(FoldTargetStatesTest, ATargetWithoutARowKeepsItsStateWhenTheRecordChanges) {
  // The record failed on both (2 without a row); 1 is retried and stores it:
  // the record is failed still (2), and 2 does not need a row.
  auto f = FoldTargetStates("failed", {{1, "done"}}, {1, 2});
  EXPECT_EQ(f.record_state, "failed");
  EXPECT_THAT(f.write, IsEmpty());
  // 2 is retried: the record is pending again; 1 keeps its done row.
  f = FoldTargetStates("failed", {{1, "done"}, {2, "pending"}}, {1, 2});
  EXPECT_EQ(f.record_state, "pending");
  EXPECT_THAT(f.drop, ElementsAre(2));
  // Three targets, the record failed on all (no rows); 3 is retried: 1 and
  // 2 must keep "failed" in rows of their own.
  f = FoldTargetStates("failed", {{3, "pending"}}, {1, 2, 3});
  EXPECT_EQ(f.record_state, "pending");
  EXPECT_EQ(f.write.at(1), "failed");
  EXPECT_EQ(f.write.at(2), "failed");
}

TEST(FoldTargetStatesTest, ARemovedTargetsRowGoesAndNoLongerHoldsTheRecordBack) {
  // 1 stored it, 2 (removed) had not: the record is done.
  auto f = FoldTargetStates("pending", {{1, "done"}}, {1});
  EXPECT_EQ(f.record_state, "done");
  EXPECT_THAT(f.drop, ElementsAre(1));
  // Without targets the record keeps its state (journal only).
  f = FoldTargetStates("pending", {{1, "done"}}, {});
  EXPECT_EQ(f.record_state, "pending");
  EXPECT_THAT(f.drop, ElementsAre(1));
}

TEST(PlanTargetsTest, MatchesByNameAndUrlThenByUrlElseAdds) {
  std::vector<TargetEntry> existing = {{1, "usb", "file:///mnt/usb", 0, "{}"},
                                       {2, "s3://b/p", "s3://b/p", 0, "{}"},
                                       {3, "old", "file:///old", 0, "{}"}};
  TargetPlan p = PlanTargets(existing, {{"usb", "file:///mnt/usb", "{}"},
                                        {"offsite", "s3://b/p", "{}"},
                                        {"nas", "file:///nas", "{}"}});
  ASSERT_EQ(p.keep.size(), 2u);
  EXPECT_EQ(p.keep[0].id, 1);
  EXPECT_EQ(p.keep[1].id, 2);  // same URL, named now: renamed
  EXPECT_EQ(p.keep[1].spec.name, "offsite");
  ASSERT_EQ(p.add.size(), 1u);
  EXPECT_EQ(p.add[0].name, "nas");
  EXPECT_THAT(p.remove, ElementsAre(3));
}

TEST(PlanTargetsTest, ANameThatNowNamesAnotherUrlIsANewTarget) {
  TargetPlan p =
      PlanTargets({{1, "usb", "file:///mnt/usb", 0, "{}"}}, {{"usb", "file:///mnt/usb2", "{}"}});
  EXPECT_THAT(p.keep, IsEmpty());
  ASSERT_EQ(p.add.size(), 1u);
  EXPECT_THAT(p.remove, ElementsAre(1));
}

// ---- on a real journal ----

class TargetsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto j = Journal::Open(dir_.path() + "/journal.db");
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    journal_ = std::move(j.value());
    auto r = JournalReader::Open(journal_->path());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    reader_ = std::move(r.value());
  }
  std::vector<TargetEntry> Sync(const std::vector<TargetSpec>& specs) {
    auto s = Targets::Sync(*journal_, specs);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? s->targets : std::vector<TargetEntry>{};
  }
  int64_t Add(Op op, const std::string& path) {
    Record r;
    r.op = op;
    r.path = path;
    EXPECT_TRUE(journal_->Commit(r).ok());
    return r.seq;
  }
  // The record's state across targets (no target) or on one.
  std::string State(int64_t seq, std::optional<int64_t> target = std::nullopt) {
    JournalFilter f;
    f.since_seq = f.until_seq = seq;
    f.target = target;
    auto q = reader_->Query(f);
    EXPECT_TRUE(q.ok() && q->size() == 1) << (q.ok() ? "" : q.status().ToString());
    return q.ok() && q->size() == 1 ? (*q)[0].state : "";
  }
  int64_t Rows() {
    RawDb raw(journal_->path());
    return raw.Int("SELECT count(*) FROM target_records");
  }
  UnfinishedCount Left(int64_t seq, int64_t target) {
    auto c = reader_->UnfinishedThrough(seq, target);
    EXPECT_TRUE(c.ok());
    return c.ok() ? *c : UnfinishedCount{};
  }

  TempDir dir_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<JournalReader> reader_;
};

TEST_F(TargetsTest, ARecordIsDoneWhenEveryTargetHasStoredIt) {
  auto t = Sync({{"usb", "file:///usb"}, {"offsite", "s3://b"}});
  ASSERT_EQ(t.size(), 2u);
  int64_t usb = t[0].id, off = t[1].id;
  int64_t a = Add(Op::kClose, "a"), b = Add(Op::kClose, "b");
  UploadStateStore on_usb(journal_.get(), usb), on_off(journal_.get(), off);
  std::vector<int64_t> both = {a, b};
  ASSERT_TRUE(on_usb.MarkUploaded(both, {"e-usb", "", ""}, "{}").ok());
  EXPECT_EQ(State(a), "pending");  // offsite has not stored it
  EXPECT_EQ(State(a, usb), "done");
  EXPECT_EQ(State(a, off), "pending");
  EXPECT_EQ(Left(b, usb).pending, 0);
  EXPECT_EQ(Left(b, off).pending, 2);
  auto first = reader_->FirstUnfinishedSeq(usb);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->has_value());
  first = reader_->FirstUnfinishedSeq(off);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->value_or(0), a);
  // The dispatcher's read of a target (state filter included).
  JournalFilter f;
  f.target = off;
  f.state = "pending";
  auto q = reader_->Query(f);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->size(), 2u);
  f.target = usb;
  q = reader_->Query(f);
  ASSERT_TRUE(q.ok());
  EXPECT_THAT(*q, IsEmpty());

  std::vector<int64_t> just_a = {a};
  ASSERT_TRUE(on_off.MarkUploaded(just_a, {"e-off", "", ""}, "{}").ok());
  EXPECT_EQ(State(a), "done");
  EXPECT_EQ(State(a, usb), "done");
  EXPECT_EQ(State(b), "pending");
  EXPECT_EQ(Rows(), 1);  // only b on usb: a needs none any more
}

TEST_F(TargetsTest, AFailureOnOneTargetIsRetriedThereOnly) {
  auto t = Sync({{"usb", "file:///usb"}, {"offsite", "s3://b"}});
  int64_t usb = t[0].id, off = t[1].id;
  int64_t a = Add(Op::kClose, "a");
  std::vector<int64_t> seqs = {a};
  UploadStateStore on_usb(journal_.get(), usb), on_off(journal_.get(), off);
  ASSERT_TRUE(on_off.MarkFailed(seqs, "AccessDenied: no", "{}").ok());
  EXPECT_EQ(State(a), "pending");  // usb still works on it
  EXPECT_EQ(State(a, off), "failed");
  EXPECT_EQ(Left(a, off).failed, 1);
  EXPECT_EQ(Left(a, usb).failed, 0);
  ASSERT_TRUE(on_usb.MarkUploaded(seqs, {}, "{}").ok());
  EXPECT_EQ(State(a), "failed");
  EXPECT_EQ(State(a, usb), "done");
  // usb's retry has nothing of its own to retry.
  ASSERT_TRUE(on_usb.RequeueFailed().ok());
  EXPECT_EQ(State(a), "failed");
  ASSERT_TRUE(on_off.RequeueFailed().ok());
  EXPECT_EQ(State(a), "pending");
  EXPECT_EQ(State(a, off), "pending");
  EXPECT_EQ(State(a, usb), "done");  // not sent again
  ASSERT_TRUE(on_off.MarkUploaded(seqs, {}, "{}").ok());
  EXPECT_EQ(State(a), "done");
  EXPECT_EQ(Rows(), 0);
}

TEST_F(TargetsTest, RemovingATargetFinishesWhatOnlyItHeldBack) {
  auto t = Sync({{"usb", "file:///usb"}, {"offsite", "s3://b"}});
  int64_t usb = t[0].id, off = t[1].id;
  int64_t a = Add(Op::kClose, "a"), b = Add(Op::kClose, "b");
  std::vector<int64_t> just_a = {a};
  ASSERT_TRUE(UploadStateStore(journal_.get(), usb).MarkUploaded(just_a, {}, "{}").ok());
  RemoteObject o;
  o.path = "a";
  o.type = "file";
  ASSERT_TRUE(RemoteIndex::Store(*journal_, off, o).ok());
  auto sync = Targets::Sync(*journal_, {{"usb", "file:///usb"}});
  ASSERT_TRUE(sync.ok());
  ASSERT_EQ(sync->removed.size(), 1u);
  EXPECT_EQ(sync->removed[0].name, "offsite");
  EXPECT_EQ(State(a), "done");     // offsite no longer holds it back
  EXPECT_EQ(State(b), "pending");  // usb has not stored it
  EXPECT_EQ(Rows(), 0);
  auto gone = RemoteIndex::Over(*reader_, off)->All();
  ASSERT_TRUE(gone.ok());
  EXPECT_THAT(*gone, IsEmpty());  // what it held is forgotten
  // With one target left, its calls write the records alone again.
  std::vector<int64_t> just_b = {b};
  ASSERT_TRUE(UploadStateStore(journal_.get(), usb).MarkFailed(just_b, "x", "{}").ok());
  EXPECT_EQ(State(b), "failed");
  EXPECT_EQ(Rows(), 0);
}

TEST_F(TargetsTest, RemovingOneOfThreeTargetsFinishesWhatTheOtherTwoStored) {
  auto t = Sync({{"usb", "file:///usb"}, {"nas", "file:///nas"}, {"offsite", "s3://b"}});
  int64_t a = Add(Op::kClose, "a");
  std::vector<int64_t> seqs = {a};
  ASSERT_TRUE(UploadStateStore(journal_.get(), t[0].id).MarkUploaded(seqs, {}, "{}").ok());
  ASSERT_TRUE(UploadStateStore(journal_.get(), t[1].id).MarkUploaded(seqs, {}, "{}").ok());
  EXPECT_EQ(State(a), "pending");
  Sync({{"usb", "file:///usb"}, {"nas", "file:///nas"}});
  EXPECT_EQ(State(a), "done");
  EXPECT_EQ(Rows(), 0);
}

TEST_F(TargetsTest, EachTargetHasItsOwnObjects) {
  auto t = Sync({{"usb", "file:///usb"}, {"offsite", "s3://b"}});
  RemoteObject o;
  o.path = "a";
  o.type = "file";
  o.etag = "usb-etag";
  ASSERT_TRUE(RemoteIndex::Store(*journal_, t[0].id, o).ok());
  auto on_usb = RemoteIndex::Over(*reader_, t[0].id)->Get("a");
  auto on_off = RemoteIndex::Over(*reader_, t[1].id)->Get("a");
  ASSERT_TRUE(on_usb.ok() && on_off.ok());
  ASSERT_TRUE(on_usb->has_value());
  EXPECT_EQ((*on_usb)->etag, "usb-etag");
  EXPECT_FALSE(on_off->has_value());
  ASSERT_TRUE(RemoteIndex::ForgetAll(*journal_, t[1].id).ok());
  EXPECT_TRUE(RemoteIndex::Over(*reader_, t[0].id)->Get("a")->has_value());
}

TEST_F(TargetsTest, ARenamedTargetKeepsWhatItHoldsAndANewUrlStartsEmpty) {
  auto t = Sync({{"file:///usb", "file:///usb"}});
  RemoteObject o;
  o.path = "a";
  o.type = "file";
  ASSERT_TRUE(RemoteIndex::Store(*journal_, t[0].id, o).ok());
  auto renamed = Sync({{"usb", "file:///usb", R"({"excludes":["*.tmp"]})"}});
  ASSERT_EQ(renamed.size(), 1u);
  EXPECT_EQ(renamed[0].id, t[0].id);
  EXPECT_EQ(renamed[0].name, "usb");
  EXPECT_EQ(renamed[0].settings, R"({"excludes":["*.tmp"]})");
  EXPECT_TRUE(RemoteIndex::Over(*reader_, t[0].id)->Get("a")->has_value());
  auto moved = Targets::Sync(*journal_, {{"usb", "file:///usb2"}});
  ASSERT_TRUE(moved.ok());
  ASSERT_EQ(moved->added.size(), 1u);
  ASSERT_EQ(moved->removed.size(), 1u);
  auto held = RemoteIndex::Over(*reader_, moved->targets[0].id)->All();
  ASSERT_TRUE(held.ok());
  EXPECT_THAT(*held, IsEmpty());
  auto listed = Targets::List(*reader_);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].url, "file:///usb2");
}

TEST_F(TargetsTest, HistoryRequeuesItsOwnTargetOnly) {
  auto t = Sync({{"usb", "file:///usb"}, {"offsite", "s3://b"}});
  int64_t a = Add(Op::kClose, "a"), b = Add(Op::kClose, "b");
  std::vector<int64_t> both = {a, b};
  for (const auto& e : t)
    ASSERT_TRUE(UploadStateStore(journal_.get(), e.id).MarkUploaded(both, {}, "{}").ok());
  EXPECT_EQ(State(b), "done");
  ASSERT_TRUE(UploadStateStore(journal_.get(), t[1].id).RequeueDoneAfter(a).ok());
  EXPECT_EQ(State(a), "done");
  EXPECT_EQ(State(b), "pending");
  EXPECT_EQ(State(b, t[0].id), "done");
  EXPECT_EQ(State(b, t[1].id), "pending");
}

TEST_F(TargetsTest, PerTargetReadsUseThePartialIndexOfUnfinishedRecords) {
  // A target's reads of unfinished records must stay bounded by the pending
  // work, as the reads across targets are (records_unfinished).
  RawDb raw(journal_->path());
  std::vector<std::string> plan = raw.Column(
      "EXPLAIN QUERY PLAN SELECT count(*) FROM records r LEFT JOIN target_records t ON "
      "t.seq = r.seq AND t.target = 1 WHERE (r.state = 'pending' OR r.state = 'uploading' OR "
      "r.state = 'failed') AND r.seq <= 5 AND coalesce(t.state,r.state) IN "
      "('pending','uploading','failed')",
      3);
  std::string all;
  for (const auto& p : plan) all += p + "\n";
  EXPECT_THAT(all, ::testing::HasSubstr("records_unfinished"));
}

TEST_F(TargetsTest, ASubtreeIsTwoSeeksInItsTargetNotAReadOfEveryObject) {
  // The uploader reads the subtree of every path found gone (each unlink):
  // a plan that reads all of a target's objects makes that O(objects).
  auto t = Sync({{"usb", "file:///usb"}, {"offsite", "s3://b"}});
  for (const char* p : {"d", "d/a", "d/e/f", "d.txt", "d-x", "dd", "e"}) {
    RemoteObject o;
    o.path = p;
    o.type = "file";
    ASSERT_TRUE(RemoteIndex::Store(*journal_, t[0].id, o).ok());
    ASSERT_TRUE(RemoteIndex::Store(*journal_, t[1].id, o).ok());
  }
  auto sub = RemoteIndex::Over(*reader_, t[1].id)->Subtree("d");
  ASSERT_TRUE(sub.ok());
  std::vector<std::string> paths;
  for (const auto& o : *sub) paths.push_back(o.path);
  EXPECT_THAT(paths, ::testing::ElementsAre("d", "d/a", "d/e/f"));
  RawDb raw(journal_->path());
  std::vector<std::string> plan =
      raw.Column("EXPLAIN QUERY PLAN " + RemoteIndex::SubtreeSql(false), 3);
  int searches = 0;
  for (const auto& p : plan) {
    if (p.find("objects") == std::string::npos) continue;
    ++searches;
    EXPECT_THAT(p, ::testing::AnyOf(::testing::HasSubstr("path=?"), ::testing::HasSubstr("path>?")))
        << "reads every object of the target: " << p;
  }
  EXPECT_EQ(searches, 2);
}

TEST_F(TargetsTest, TrimDeletesTheRowsOfTheRecordsItDeletes) {
  auto t = Sync({{"usb", "file:///usb"}, {"offsite", "s3://b"}});
  int64_t a = Add(Op::kClose, "a");
  Add(Op::kClose, "z");  // the last record is never trimmed
  std::vector<int64_t> seqs = {a};
  ASSERT_TRUE(UploadStateStore(journal_.get(), t[0].id).MarkUploaded(seqs, {}, "{}").ok());
  ASSERT_TRUE(UploadStateStore(journal_.get(), t[1].id).MarkExcluded(seqs).ok());
  EXPECT_EQ(State(a), "done");
  EXPECT_EQ(Rows(), 1);  // offsite skipped it: differs from done
  ASSERT_TRUE(journal_->SetMeta(kMetaHistoryStoredThrough, std::to_string(a)).ok());
  TrimPolicy policy;
  policy.retention_ns = 0;
  auto r = TrimJournal(*journal_, policy, NowNs() + 1'000'000'000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->deleted, 1);
  EXPECT_EQ(Rows(), 0);
}

// Trim deletes only what every target's history holds: the watermark it
// reads is the least of the targets' own.
TEST_F(TargetsTest, TheHistoryWatermarkIsTheLeastOverTheTargets) {
  auto meta = [&] {
    auto m = reader_->Meta(kMetaHistoryStoredThrough);
    EXPECT_TRUE(m.ok());
    return m.ok() ? ParseMetaInt(*m).value_or(-1) : -1;
  };
  // No target registered (journal-only tests, older callers): its own seq.
  ASSERT_TRUE(NoteHistoryStoredThrough(*journal_, kFirstTarget, 7).ok());
  EXPECT_EQ(meta(), 7);
  auto t = Sync({{"usb", "file:///usb"}, {"offsite", "s3://b"}});
  ASSERT_TRUE(NoteHistoryStoredThrough(*journal_, t[0].id, 10).ok());
  EXPECT_EQ(meta(), 10);  // offsite has noted nothing yet
  ASSERT_TRUE(NoteHistoryStoredThrough(*journal_, t[1].id, 5).ok());
  EXPECT_EQ(meta(), 5);
  ASSERT_TRUE(NoteHistoryStoredThrough(*journal_, t[0].id, 20).ok());
  EXPECT_EQ(meta(), 5);  // offsite's history still lacks 6..20
  ASSERT_TRUE(NoteHistoryStoredThrough(*journal_, t[1].id, 30).ok());
  EXPECT_EQ(meta(), 20);
  // A removed target no longer counts.
  Sync({{"offsite", "s3://b"}});
  ASSERT_TRUE(NoteHistoryStoredThrough(*journal_, t[1].id, 31).ok());
  EXPECT_EQ(meta(), 31);
}

}  // namespace
}  // namespace scribefs
