// The Replicator on a real journal and a LocalStore, no mount, no server:
//  - a multipart upload of a file that changes while its parts go up must
//    not be completed: completing makes the object (in a versioned bucket, a
//    version that stays), and it would be torn: some parts from before the
//    change, some from after (a store wrapper rewrites the file between two
//    parts);
//  - a path no store can hold (a key over 1,024 bytes, which any user can
//    make) is skipped with its reason and counted, and blocks nothing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "journal/journal.h"
#include "journal/reader.h"
#include "tests/uploader/test_util.h"
#include "uploader/local_store.h"
#include "uploader/replicator.h"

namespace scribefs {
namespace {

using testing_util::TempDir;

// Delegates to a LocalStore; when part 2 of an upload of `key` is sent, first
// rewrites the beginning of the local file `path` once (part 1 is already
// stored with the old bytes), and notes every completion of that upload.
class RewriteBetweenParts : public ObjectStore {
 public:
  RewriteBetweenParts(std::unique_ptr<ObjectStore> inner, std::string path)
      : inner_(std::move(inner)), path_(std::move(path)) {}

  int torn_completions() const { return torn_completions_; }
  bool rewrote() const { return rewrote_; }

  std::string Describe() const override { return inner_->Describe(); }
  StoreResult<PutResult> Put(const std::string& k, const Payload& p, const Metadata& m) override {
    return inner_->Put(k, p, m);
  }
  StoreResult<GetResult> Get(const std::string& k, std::optional<ByteRange> r) override {
    return inner_->Get(k, r);
  }
  StoreResult<ObjectInfo> GetToFile(const std::string& k, int fd,
                                    std::optional<ByteRange> r) override {
    return inner_->GetToFile(k, fd, r);
  }
  StoreResult<ObjectInfo> Head(const std::string& k) override { return inner_->Head(k); }
  StoreStatus Delete(const std::string& k) override { return inner_->Delete(k); }
  StoreStatus DeleteMany(const std::vector<std::string>& k) override {
    return inner_->DeleteMany(k);
  }
  StoreResult<CopyResult> Copy(const std::string& s, const std::string& d,
                               const CopyOptions& o) override {
    return inner_->Copy(s, d, o);
  }
  StoreStatus List(const ListOptions& o, const std::function<bool(const ListEntry&)>& fn) override {
    return inner_->List(o, fn);
  }
  StoreResult<std::string> CreateMultipartUpload(const std::string& k, const Metadata& m) override {
    return inner_->CreateMultipartUpload(k, m);
  }
  StoreResult<PartResult> UploadPart(const std::string& k, const std::string& id, int n,
                                     const Payload& p) override {
    if (n == 2 && !rewrote_.exchange(true)) {
      {
        std::lock_guard lock(mu_);
        rewritten_uploads_.insert(id);
      }
      UniqueFd fd(open(path_.c_str(), O_WRONLY | O_CLOEXEC));
      EXPECT_TRUE(fd.valid());
      EXPECT_EQ(pwrite(fd.get(), "CHANGED!", 8, 0), 8);
      // A later mtime, whatever the clock's granularity.
      struct timespec t[2] = {{0, UTIME_OMIT}, {time(nullptr) + 10, 0}};
      EXPECT_EQ(futimens(fd.get(), t), 0);
    }
    return inner_->UploadPart(k, id, n, p);
  }
  StoreResult<PartResult> UploadPartCopy(const std::string& k, const std::string& id, int n,
                                         const std::string& src, ByteRange r,
                                         const std::string& m) override {
    return inner_->UploadPartCopy(k, id, n, src, r, m);
  }
  StoreResult<PutResult> CompleteMultipartUpload(const std::string& k, const std::string& id,
                                                 const std::vector<CompletedPart>& parts) override {
    {
      std::lock_guard lock(mu_);
      if (rewritten_uploads_.count(id)) ++torn_completions_;
    }
    return inner_->CompleteMultipartUpload(k, id, parts);
  }
  StoreStatus AbortMultipartUpload(const std::string& k, const std::string& id) override {
    return inner_->AbortMultipartUpload(k, id);
  }
  StoreResult<std::vector<MultipartUpload>> ListMultipartUploads(const std::string& p) override {
    return inner_->ListMultipartUploads(p);
  }
  StoreStats stats() const override { return inner_->stats(); }

 private:
  std::unique_ptr<ObjectStore> inner_;
  const std::string path_;
  std::atomic<bool> rewrote_{false};
  std::atomic<int> torn_completions_{0};
  std::mutex mu_;
  std::set<std::string> rewritten_uploads_;  // GUARDED_BY(mu_)
};

TEST(MultipartUpload, AFileChangedDuringItsPartsIsNotCompleted) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  ASSERT_EQ(mkdir(data.c_str(), 0755), 0);
  ASSERT_TRUE(testing_util::WriteFile(data + "/big", testing_util::Blob(11 << 20, 7)).valid());
  auto journal = Journal::Open(dir.path() + "/journal.db");
  ASSERT_TRUE(journal.ok()) << journal.status().ToString();
  Record created;
  created.op = Op::kCreate;
  created.path = "big";
  ASSERT_TRUE((*journal)->Commit(created).ok());

  auto local = LocalStore::Open(dir.path() + "/target");
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  LocalStore* target = local->get();
  auto probe = std::make_unique<RewriteBetweenParts>(std::move(local).value(), data + "/big");
  RewriteBetweenParts* p = probe.get();
  UniqueFd root(open(data.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ReplicatorOptions options;
  options.workers = 1;
  options.part_size = 5 << 20;
  options.part_parallelism = 1;  // part 1 is stored before part 2 is read
  options.initial_backoff = std::chrono::milliseconds(10);
  auto replicator = Replicator::Create(journal->get(), root.get(), std::move(probe), options);
  ASSERT_TRUE(replicator.ok()) << replicator.status().ToString();
  ASSERT_TRUE((*replicator)->Start().ok());
  Status idle =
      (*replicator)->WaitIdle(std::chrono::steady_clock::now() + std::chrono::seconds(60));
  ASSERT_TRUE(idle.ok()) << idle.ToString();

  EXPECT_TRUE(p->rewrote()) << "the file was never rewritten between parts: test did nothing";
  EXPECT_EQ(p->torn_completions(), 0) << "a multipart upload was completed with parts of a file "
                                         "that changed during the upload (a torn version)";
  // The change is uploaded by the next attempt, whole.
  auto got = target->Get("big");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->body.size(), 11u << 20);
  EXPECT_EQ(got->body.substr(0, 8), "CHANGED!");
  EXPECT_EQ(got->body, testing_util::ReadFile(data + "/big"));
  auto pending = target->ListMultipartUploads("");
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty()) << "the torn upload was not aborted";
  (*replicator)->Stop(std::chrono::milliseconds(0));
}

TEST(UnstorablePath, IsSkippedWithItsReasonAndBlocksNothing) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  ASSERT_EQ(mkdir(data.c_str(), 0755), 0);
  // Five directories of 250 bytes: fine on disk, 1,256 bytes as a key.
  std::string long_dir;
  for (int i = 0; i < 5; ++i) {
    long_dir += (i ? "/" : "") + std::string(250, static_cast<char>('a' + i));
    ASSERT_EQ(mkdir((data + "/" + long_dir).c_str(), 0755), 0);
  }
  const std::string long_path = long_dir + "/f";
  ASSERT_TRUE(testing_util::WriteFile(data + "/" + long_path, "unstorable").valid());
  ASSERT_TRUE(testing_util::WriteFile(data + "/ok", "fine").valid());
  const std::string db = dir.path() + "/journal.db";
  auto journal = Journal::Open(db);
  ASSERT_TRUE(journal.ok()) << journal.status().ToString();
  for (const std::string& p : {long_path, std::string("ok")}) {
    Record r;
    r.op = Op::kCreate;
    r.path = p;
    ASSERT_TRUE((*journal)->Commit(r).ok());
  }
  auto local = LocalStore::Open(dir.path() + "/target");
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  LocalStore* target = local->get();
  UniqueFd root(open(data.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ReplicatorOptions options;
  options.initial_backoff = std::chrono::milliseconds(10);
  auto replicator =
      Replicator::Create(journal->get(), root.get(), std::move(local).value(), options);
  ASSERT_TRUE(replicator.ok()) << replicator.status().ToString();
  ASSERT_TRUE((*replicator)->Start().ok());

  // What flush and checkpoint wait for: everything up to the last record.
  Status drained =
      (*replicator)
          ->WaitUploadedThrough(2, std::chrono::steady_clock::now() + std::chrono::seconds(60));
  EXPECT_TRUE(drained.ok()) << "a path the target refuses blocks flush and checkpoints: "
                            << drained.ToString();
  auto got = target->Get("ok");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->body, "fine");
  // Counted, and the record says why.
  nlohmann::json stats = nlohmann::json::parse((*replicator)->StatsJson());
  EXPECT_EQ(stats.value("unstorable", 0), 1) << stats.dump();
  EXPECT_EQ(stats.value("failures", 0), 0) << stats.dump();
  (*replicator)->Stop(std::chrono::milliseconds(0));
  auto reader = JournalReader::Open(db);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  JournalFilter f;
  f.path_glob = long_dir + "/*";
  auto records = (*reader)->Query(f);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].state, "skipped");
  ASSERT_TRUE((*records)[0].error.has_value());
  EXPECT_NE((*records)[0].error->find("longer than 1024 bytes"), std::string::npos)
      << *(*records)[0].error;
}

}  // namespace
}  // namespace scribefs
