// Recovery pieces without a mount: ReconcileTree's rules (what it reports,
// what it leaves to records still to upload, the second look on a live
// mount) and AbortStaleUploads' rule for "this mount's" unfinished
// multipart uploads, on a LocalStore.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "journal/reader.h"
#include "journal/remote_index.h"
#include "journal/targets.h"
#include "tests/uploader/test_util.h"
#include "uploader/digest.h"
#include "uploader/local_store.h"
#include "uploader/reconciler.h"
#include "uploader/stale_uploads.h"

namespace scribefs {
namespace {

using testing_util::TempDir;

int64_t MtimeNs(const struct stat& st) {
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

class ReconcileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.path() + "/data";
    ASSERT_EQ(mkdir(data_.c_str(), 0755), 0);
    auto j = Journal::Open(dir_.path() + "/journal.db");
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    journal_ = std::move(j).value();
    root_.Reset(open(data_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_.valid());
  }
  std::string D(const std::string& rel) { return data_ + "/" + rel; }
  void Write(const std::string& rel, const std::string& content) {
    UniqueFd fd = testing_util::WriteFile(D(rel), content);
    ASSERT_TRUE(fd.valid()) << rel;
  }
  // An objects row matching the local entry as it is now, as the uploader
  // would have stored it.
  void Stored(const std::string& rel) {
    struct stat st;
    ASSERT_EQ(lstat(D(rel).c_str(), &st), 0) << rel;
    RemoteObject o;
    o.path = rel;
    o.type = S_ISDIR(st.st_mode) ? "dir" : S_ISLNK(st.st_mode) ? "symlink" : "file";
    o.size = S_ISDIR(st.st_mode) ? 0 : st.st_size;
    o.mtime_ns = MtimeNs(st);
    o.mode = st.st_mode;
    o.uid = st.st_uid;
    o.gid = st.st_gid;
    StoredRow(o);
  }
  static RemoteObject Row(const std::string& path, const std::string& type, uint64_t size = 0) {
    RemoteObject o;
    o.path = path;
    o.type = type;
    o.size = size;
    return o;
  }
  void StoredRow(const RemoteObject& o) {
    ASSERT_TRUE(RemoteIndex::Store(*journal_, kFirstTarget, o).ok());
  }
  void Pending(Op op, const std::string& path, std::optional<std::string> new_path = {},
               int64_t flags = 0, const std::string& state = "pending") {
    Record r;
    r.op = op;
    r.path = path;
    r.new_path = new_path;
    r.flags = flags;
    r.state = state;
    ASSERT_TRUE(journal_->Commit(r).ok());
  }
  // path -> reason of the reconcile records committed so far.
  std::map<std::string, std::string> Reported() {
    std::map<std::string, std::string> out;
    auto reader = JournalReader::Open(journal_->path());
    EXPECT_TRUE(reader.ok());
    JournalFilter f;
    f.op = "reconcile";
    auto recs = reader.value()->Query(f);
    EXPECT_TRUE(recs.ok());
    for (const Record& r : *recs)
      out[r.path] = nlohmann::json::parse(r.detail).value("reason", "?");
    return out;
  }
  ReconcileReport Run(const ReconcileOptions& o = {}) {
    auto r = ReconcileTree(journal_.get(), root_.get(), o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ReconcileReport{};
  }

  TempDir dir_;
  std::string data_;
  std::unique_ptr<Journal> journal_;
  UniqueFd root_;
};

TEST_F(ReconcileTest, ReportsNewChangedAndTopmostMissing) {
  Write("same", "s");
  Write("changed", "c");
  Write("new", "n");
  ASSERT_EQ(mkdir(D("dir").c_str(), 0755), 0);
  Write("dir/inner", "i");
  ASSERT_NO_FATAL_FAILURE(Stored("same"));
  ASSERT_NO_FATAL_FAILURE(Stored("changed"));
  ASSERT_NO_FATAL_FAILURE(Stored("dir"));
  ASSERT_NO_FATAL_FAILURE(Stored("dir/inner"));
  Write("changed", "changed behind the mount");
  ASSERT_EQ(chmod(D("dir/inner").c_str(), 0600), 0);
  // In the target, gone locally: a file, and a directory with entries.
  StoredRow(Row("gone", "file", 1));
  StoredRow(Row("gonedir", "dir"));
  StoredRow(Row("gonedir/a", "file", 1));
  StoredRow(Row("gonedir/b/c", "file", 1));
  ReconcileReport rep = Run();
  EXPECT_EQ(rep.scanned, 5u);
  EXPECT_EQ(rep.new_paths, 1u);
  EXPECT_EQ(rep.changed, 2u);
  EXPECT_EQ(rep.missing, 2u);
  EXPECT_EQ(rep.pending, 0u);
  std::map<std::string, std::string> want = {{"new", "new"},          {"changed", "changed"},
                                             {"dir/inner", "changed"}, {"gone", "missing"},
                                             {"gonedir", "missing"}};
  EXPECT_EQ(Reported(), want);
}

// Start-up after a power loss (content_since_ns): a file that passes the
// quick check (size, mtime, mode, owner) is still reported when its bytes
// are not those whose SHA-256 the target holds; one whose bytes are, is not.
TEST_F(ReconcileTest, ContentCheckReportsOnlyFilesWhoseBytesDiffer) {
  Write("kept", "aaaa");
  Write("flipped", "bbbb");
  for (const char* rel : {"kept", "flipped"}) {
    UniqueFd fd(open(D(rel).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    auto sha = FileSha256Hex(fd.get(), 4);
    ASSERT_TRUE(sha.ok());
    struct stat st;
    ASSERT_EQ(lstat(D(rel).c_str(), &st), 0);
    RemoteObject o = Row(rel, "file", 4);
    o.mtime_ns = MtimeNs(st);
    o.mode = st.st_mode;
    o.uid = st.st_uid;
    o.gid = st.st_gid;
    o.sha256 = *sha;
    StoredRow(o);
  }
  // Same size, same mtime: only the content tells.
  struct stat before;
  ASSERT_EQ(lstat(D("flipped").c_str(), &before), 0);
  Write("flipped", "cccc");
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, D("flipped").c_str(), times, 0), 0);

  EXPECT_EQ(Run().changed, 0u) << "the quick check alone sees a difference";
  ReconcileOptions o;
  o.content_since_ns = 0;
  ReconcileReport rep = Run(o);
  EXPECT_EQ(rep.hashed, 2u);
  EXPECT_EQ(rep.content, 1u);
  std::map<std::string, std::string> want = {{"flipped", "content"}};
  EXPECT_EQ(Reported(), want);
}

TEST_F(ReconcileTest, LeavesPathsToRecordsStillToUpload) {
  for (const char* f : {"written", "linked-from", "linked-to", "failed", "renamed-from"})
    Write(f, "x");
  ASSERT_EQ(mkdir(D("moved").c_str(), 0755), 0);
  Write("moved/child", "c");
  ASSERT_EQ(mkdir(D("made").c_str(), 0755), 0);
  Write("made/child", "c");
  ASSERT_EQ(mkdir(D("swapped").c_str(), 0755), 0);
  Write("swapped/child", "c");
  // None of them is in the target; each has a record still to upload, or not.
  Pending(Op::kWrite, "written");
  Pending(Op::kLink, "linked-from", "linked-to");  // covers only the new name
  Pending(Op::kWrite, "failed", {}, 0, "failed");  // failed: waits for `retry`, covers nothing
  Pending(Op::kRename, "old", "moved");            // the uploader walks a rename target
  Pending(Op::kMkdir, "made");                     // ... but not a new directory
  Pending(Op::kRename, "x", "swapped", 2);         // ... nor RENAME_EXCHANGE
  Pending(Op::kRename, "renamed-from", "elsewhere");
  // Stored below a directory whose rename is still to upload (the directory's
  // own marker not stored yet): gone with it, or not, if the name is back.
  StoredRow(Row("old-dir/inner", "file", 1));
  Pending(Op::kRename, "old-dir", "new-dir");
  ASSERT_EQ(mkdir(D("back").c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(Stored("back"));
  StoredRow(Row("back/inner", "file", 1));
  Pending(Op::kRename, "back", "away");
  ReconcileReport rep = Run();
  std::map<std::string, std::string> want = {{"linked-from", "new"},   {"failed", "new"},
                                             {"made/child", "new"},    {"swapped/child", "new"},
                                             {"back/inner", "missing"}};
  EXPECT_EQ(Reported(), want);
  // written, linked-to, moved, moved/child, made, swapped, renamed-from,
  // old-dir/inner
  EXPECT_EQ(rep.pending, 8u);
}

TEST_F(ReconcileTest, LiveLooksAgainInsideQuiesceAndSkipsWhatTheMountDid) {
  Write("stays", "a");
  Write("mount-writes", "a");
  Write("mount-creates", "a");
  Write("uploaded-meanwhile", "a");
  Write("direct", "a");
  for (const char* f : {"stays", "mount-writes", "uploaded-meanwhile", "direct"})
    ASSERT_NO_FATAL_FAILURE(Stored(f));
  Write("mount-writes", "changed through the mount");
  Write("uploaded-meanwhile", "changed and uploaded");
  Write("direct", "changed behind the mount");
  int calls = 0;
  ReconcileOptions o;
  o.scan = "rescan";
  o.quiesce = [&](const std::function<Status()>& check) -> Status {
    ++calls;
    // What happened between the walk and the closed gate: the mount
    // journaled its changes, the uploader stored one path.
    Pending(Op::kWrite, "mount-writes");
    Pending(Op::kCreate, "mount-creates");
    Stored("uploaded-meanwhile");
    return check();
  };
  ReconcileReport rep = Run(o);
  EXPECT_EQ(calls, 1);
  std::map<std::string, std::string> want = {{"direct", "changed"}};
  EXPECT_EQ(Reported(), want);
  EXPECT_EQ(rep.changed, 1u);
  EXPECT_EQ(rep.new_paths, 0u);
  EXPECT_EQ(rep.pending, 2u);
  // The record says which scan found it.
  auto reader = JournalReader::Open(journal_->path());
  JournalFilter f;
  f.op = "reconcile";
  auto recs = reader.value()->Query(f);
  ASSERT_EQ(recs->size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(recs->front().detail).value("scan", ""), "rescan");
}

TEST_F(ReconcileTest, QuiesceFailureCommitsNothing) {
  Write("new", "n");
  ReconcileOptions o;
  o.quiesce = [](const std::function<Status()>&) { return Status::Error(EBUSY, "paused"); };
  auto r = ReconcileTree(journal_.get(), root_.get(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), EBUSY);
  EXPECT_TRUE(Reported().empty());
}

TEST_F(ReconcileTest, ExcludedPathsAreNeitherScannedNorReported) {
  Write("a.swp", "x");
  ASSERT_EQ(mkdir(D("skip").c_str(), 0755), 0);
  Write("skip/inner", "x");
  StoredRow(Row("gone.swp", "file"));
  ReconcileOptions o;
  o.excluded = [](const std::string& p) { return p.ends_with(".swp") || p == "skip"; };
  ReconcileReport rep = Run(o);
  EXPECT_EQ(rep.scanned, 0u);
  EXPECT_TRUE(Reported().empty());
}

// ---- stale multipart uploads ---------------------------------------------------

TEST(StaleUploadsTest, AbortsOnlyThisMountsUnfinishedUploads) {
  TempDir dir;
  auto store = LocalStore::Open(dir.path() + "/target");
  ASSERT_TRUE(store.ok());
  auto journal = Journal::Open(dir.path() + "/journal.db");
  ASSERT_TRUE(journal.ok());
  // The journal knows "stored" (objects table) and "pending" (a record not
  // yet uploaded); "done-only" only through a record that is done.
  RemoteObject o;
  o.path = "stored";
  o.type = "file";
  ASSERT_TRUE(RemoteIndex::Store(**journal, kFirstTarget, o).ok());
  Record pending;
  pending.op = Op::kWrite;
  pending.path = "dir/pending";
  Record done;
  done.op = Op::kWrite;
  done.path = "done-only";
  done.state = "done";
  Record renamed;
  renamed.op = Op::kRename;
  renamed.path = "a";
  renamed.new_path = "renamed-to";
  ASSERT_TRUE((*journal)->Commit(pending).ok());
  ASSERT_TRUE((*journal)->Commit(done).ok());
  ASSERT_TRUE((*journal)->Commit(renamed).ok());
  std::map<std::string, std::string> ids;
  for (const char* key :
       {"stored", "dir/pending", "renamed-to", "done-only", "someone-else", ".scribefs/stored"}) {
    auto id = (*store)->CreateMultipartUpload(key, {});
    ASSERT_TRUE(id.ok()) << key;
    ids[key] = *id;
  }
  auto rep = AbortStaleUploads(**store, (*journal)->path(), kFirstTarget);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->listed, 6u);
  EXPECT_EQ(rep->aborted, 3u);
  EXPECT_EQ(rep->foreign, 3u);
  EXPECT_EQ(rep->failed, 0u);
  auto left = (*store)->ListMultipartUploads("");
  ASSERT_TRUE(left.ok());
  std::set<std::string> keys;
  for (const auto& u : *left) keys.insert(u.key);
  EXPECT_EQ(keys, (std::set<std::string>{".scribefs/stored", "done-only", "someone-else"}));
  // Nothing left of ours: a second run aborts nothing.
  rep = AbortStaleUploads(**store, (*journal)->path(), kFirstTarget);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->aborted, 0u);
}

}  // namespace
}  // namespace scribefs
