// Tests of the typed calls through which the uploader reads and changes the
// journal: UploadStateStore (records' upload state, the uploader's
// counters), RemoteIndex (the objects table) and the JournalReader queries
// behind flush/checkpoint progress, reconciliation and stale uploads.
#include "journal/upload_state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "journal/journal.h"
#include "journal/reader.h"
#include "journal/remote_index.h"
#include "journal/targets.h"
#include "tests/journal/journal_test_util.h"

namespace scribefs {
namespace {

using ::testing::ElementsAre;

class UploadStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto j = Journal::Open(dir_.path() + "/journal.db");
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    journal_ = std::move(j.value());
    auto r = JournalReader::Open(journal_->path());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    reader_ = std::move(r.value());
  }
  // Commits one record and returns its seq.
  int64_t Add(Op op, const std::string& path, std::string_view state = kStatePending,
              std::optional<int64_t> size = std::nullopt,
              std::optional<std::string> new_path = std::nullopt) {
    Record r;
    r.op = op;
    r.path = path;
    r.state = std::string(state);
    r.size = size;
    r.new_path = std::move(new_path);
    EXPECT_TRUE(journal_->Commit(r).ok());
    return r.seq;
  }
  Record Get(int64_t seq) {
    JournalFilter f;
    f.since_seq = seq;
    f.until_seq = seq;
    auto q = reader_->Query(f);
    EXPECT_TRUE(q.ok() && q->size() == 1);
    return q.ok() && q->size() == 1 ? (*q)[0] : Record{};
  }
  std::string Counters() {
    auto m = reader_->Meta("uploader");
    EXPECT_TRUE(m.ok());
    return m.ok() ? m->value_or("") : "";
  }

  TempDir dir_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<JournalReader> reader_;
};

TEST_F(UploadStateTest, MarkUploadedStoresWhatTheTargetAnswered) {
  int64_t a = Add(Op::kClose, "a"), b = Add(Op::kClose, "b"), c = Add(Op::kClose, "c");
  UploadStateStore store(journal_.get(), kFirstTarget);
  std::vector<int64_t> seqs = {a, b};
  ASSERT_TRUE(store.MarkUploaded(seqs, {"etag1", "sha1", ""}, R"({"uploads":2})").ok());
  for (int64_t s : seqs) {
    Record r = Get(s);
    EXPECT_EQ(r.state, kStateDone);
    EXPECT_EQ(r.etag, "etag1");
    EXPECT_EQ(r.sha256, "sha1");
    EXPECT_EQ(r.version_id, std::nullopt);  // empty: NULL
    EXPECT_EQ(r.error, std::nullopt);
  }
  EXPECT_EQ(Get(c).state, kStatePending);
  EXPECT_EQ(Counters(), R"({"uploads":2})");
}

TEST_F(UploadStateTest, AttemptsFailureAndRequeue) {
  int64_t a = Add(Op::kWrite, "a"), b = Add(Op::kWrite, "b");
  UploadStateStore store(journal_.get(), kFirstTarget);
  std::vector<int64_t> one = {a};
  ASSERT_TRUE(store.RecordAttempt(one, 3, "SlowDown: later", "{\"retries\":3}").ok());
  Record r = Get(a);
  EXPECT_EQ(r.state, kStatePending);  // still to upload
  EXPECT_EQ(r.attempts, 3);
  EXPECT_EQ(r.error, "SlowDown: later");
  EXPECT_EQ(Counters(), "{\"retries\":3}");

  ASSERT_TRUE(store.MarkFailed(one, "AccessDenied: no", "{}").ok());
  r = Get(a);
  EXPECT_EQ(r.state, kStateFailed);
  EXPECT_EQ(r.attempts, 4);
  EXPECT_EQ(r.error, "AccessDenied: no");
  EXPECT_EQ(Get(b).state, kStatePending);

  ASSERT_TRUE(store.RequeueFailed().ok());
  r = Get(a);
  EXPECT_EQ(r.state, kStatePending);
  EXPECT_EQ(r.attempts, 0);
}

TEST_F(UploadStateTest, ResetUploadingAndMarkExcluded) {
  int64_t up = Add(Op::kWrite, "up", kStateUploading);
  int64_t done = Add(Op::kWrite, "done", kStateDone);
  int64_t ex = Add(Op::kWrite, "x.tmp");
  UploadStateStore store(journal_.get(), kFirstTarget);
  ASSERT_TRUE(store.ResetUploading().ok());
  EXPECT_EQ(Get(up).state, kStatePending);
  EXPECT_EQ(Get(done).state, kStateDone);
  std::vector<int64_t> seqs = {ex};
  ASSERT_TRUE(store.MarkExcluded(seqs).ok());
  Record r = Get(ex);
  EXPECT_EQ(r.state, kStateSkipped);
  EXPECT_EQ(r.error, "excluded (--exclude)");
  ASSERT_TRUE(r.state_ns.has_value());
  EXPECT_GT(*r.state_ns, 0);
}

TEST_F(UploadStateTest, RemoteIndexStoreForgetAndSubtree) {
  auto index = RemoteIndex::Over(*reader_, kFirstTarget);
  for (const char* p : {"d", "d/x", "d/y", "d0", "e"}) {
    RemoteObject o;
    o.path = p;
    o.type = "file";
    o.size = 7;
    o.etag = std::string("etag-") + p;
    ASSERT_TRUE(RemoteIndex::Store(*journal_, kFirstTarget, o).ok());
  }
  auto d = index->Get("d/x");
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(d->has_value());
  EXPECT_EQ((*d)->etag, "etag-d/x");
  EXPECT_EQ((*d)->size, 7u);
  auto sub = index->Subtree("d");
  ASSERT_TRUE(sub.ok());
  std::vector<std::string> paths;
  for (const auto& o : *sub) paths.push_back(o.path);
  EXPECT_THAT(paths, ElementsAre("d", "d/x", "d/y"));  // not d0

  std::vector<std::string> gone = {"d/x", "e"};
  ASSERT_TRUE(RemoteIndex::Forget(*journal_, kFirstTarget, gone).ok());
  auto x = index->Get("d/x");
  ASSERT_TRUE(x.ok());
  EXPECT_FALSE(x->has_value());
  auto all = index->All();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);

  ASSERT_TRUE(RemoteIndex::ForgetAll(*journal_, kFirstTarget).ok());
  all = index->All();
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
}

TEST_F(UploadStateTest, SnapshotHoldsOneStateOfTheJournal) {
  auto index = RemoteIndex::Over(*reader_, kFirstTarget);
  RemoteObject o;
  o.path = "a";
  o.type = "file";
  {
    auto snap = reader_->BeginSnapshot();
    ASSERT_TRUE(snap.ok());
    auto before = index->All();
    ASSERT_TRUE(before.ok());
    ASSERT_TRUE(RemoteIndex::Store(*journal_, kFirstTarget, o).ok());
    Add(Op::kWrite, "a");
    auto during = index->Get("a");
    ASSERT_TRUE(during.ok());
    EXPECT_FALSE(during->has_value());  // stored after the snapshot began
    auto unfinished = reader_->Unfinished();
    ASSERT_TRUE(unfinished.ok());
    EXPECT_TRUE(unfinished->empty());
  }
  auto after = index->Get("a");
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->has_value());
}

TEST_F(UploadStateTest, UnfinishedQueries) {
  int64_t s1 = Add(Op::kClose, "a", kStatePending, 100);
  Add(Op::kClose, "b", kStateDone, 50);
  Add(Op::kWrite, "b", kStatePending);  // b's size: 50, from the done record
  int64_t s4 = Add(Op::kUnlink, "c", kStateFailed);
  Add(Op::kRename, "d", kStateUploading, std::nullopt, std::string("e"));
  Add(Op::kClose, "f", kStatePending, 9);  // after the bound below

  auto c = reader_->UnfinishedThrough(s4 + 1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->pending, 3);  // 1, 3, 5
  EXPECT_EQ(c->failed, 1);   // 4
  c = reader_->UnfinishedThrough(s1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->pending, 1);
  EXPECT_EQ(c->failed, 0);

  auto bytes = reader_->PendingBytesThrough(s4 + 1);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, 100 + 50);  // a, b, d (no size); not the failed c, not f

  auto un = reader_->Unfinished();
  ASSERT_TRUE(un.ok());
  std::vector<std::string> paths;
  for (const auto& r : *un) paths.push_back(r.path + ":" + r.state);
  EXPECT_THAT(paths, ElementsAre("a:pending", "b:pending", "c:failed", "d:uploading", "f:pending"));
  EXPECT_EQ((*un)[3].op, Op::kRename);
  EXPECT_EQ((*un)[3].new_path, "e");

  for (const char* p : {"a", "c", "d", "e"}) {
    auto n = reader_->NamesUnfinished(p);
    ASSERT_TRUE(n.ok());
    EXPECT_TRUE(*n) << p;
  }
  auto n = reader_->NamesUnfinished("zzz");
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE(*n);
}

}  // namespace
}  // namespace scribefs
