// Recovery against a real S3 server (Ceph RGW from the CTest fixture "rgw"):
// `scribectl rescan` into a bucket, the clean-up at start of multipart uploads
// an earlier daemon left unfinished (made with the AWS CLI, and by a real
// kill -9 in the middle of an upload slowed down by TcpProxy).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "tests/replication/e2e_scenario.h"
#include "tests/replication/replication_fixture.h"
#include "tests/replication/tcp_proxy.h"

namespace scribefs::rep {
namespace {

using Clock = std::chrono::steady_clock;
using it::WriteFile;

class RecoveryS3 : public ReplicationTest {
 protected:
  // Unfinished multipart uploads in the bucket, as the AWS CLI lists them:
  // "key" per upload.
  std::multiset<std::string> AwsUploads() {
    it::RunResult r = Aws(env_, {"s3api", "list-multipart-uploads", "--bucket", bucket_});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    std::multiset<std::string> keys;
    if (r.out.find_first_not_of(" \n") == std::string::npos) return keys;  // none: no output
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out;
    if (j.is_object() && j.contains("Uploads"))
      for (const auto& u : j["Uploads"]) keys.insert(u.value("Key", ""));
    return keys;
  }
  void AwsStartUpload(const std::string& key) {
    it::RunResult r =
        Aws(env_, {"s3api", "create-multipart-upload", "--bucket", bucket_, "--key", key});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("UploadId")) << r.out;
    // One part, so that the upload holds data like a real interrupted one.
    std::string part = root() + "/part";
    ASSERT_TRUE(WriteFile(part, std::string(1 << 20, 'p')));
    r = Aws(env_, {"s3api", "upload-part", "--bucket", bucket_, "--key", key, "--part-number", "1",
                   "--upload-id", j["UploadId"].get<std::string>(), "--body", part});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  }
  std::string DaemonLog() { return it::ReadFile(state("scribefs.log")).value_or(""); }
};

TEST_F(RecoveryS3, RescanUploadsChangesMadeBehindTheMount) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("rescan"));
  ASSERT_NO_FATAL_FAILURE(MountS3({}));
  ASSERT_TRUE(WriteFile(mp("a.txt"), "alpha"));
  ASSERT_TRUE(WriteFile(mp("b.txt"), "bravo"));
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_TRUE(Flush(60));
  ASSERT_TRUE(WriteFile(data("a.txt"), "alpha, rewritten behind the mount"));
  ASSERT_EQ(unlink(data("b.txt").c_str()), 0);
  ASSERT_TRUE(WriteFile(data("d/new.txt"), "new"));
  it::RunResult r = Ctl({"--json", "rescan"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.value("new", 0), 1) << r.out;
  EXPECT_EQ(j.value("changed", 0), 1) << r.out;
  EXPECT_EQ(j.value("missing", 0), 1) << r.out;
  r = Ctl({"flush", "--timeout", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  // The bucket mirrors DATADIR: keys and sizes (AWS CLI), bodies.
  auto want = ExpectedObjects(data());
  std::string err;
  auto listed = AwsList(env_, bucket_, &err);
  ASSERT_TRUE(listed.has_value()) << err;
  std::set<std::string> want_keys, got_keys;
  for (const auto& [k, e] : want) want_keys.insert(k);
  for (const auto& [k, o] : *listed) got_keys.insert(k);
  EXPECT_EQ(got_keys, want_keys);
  auto store = OpenS3(env_, bucket_);
  ASSERT_NE(store, nullptr);
  for (const auto& [k, e] : want) {
    if (e.type != 'f') continue;
    auto got = store->Get(k);
    ASSERT_TRUE(got.ok()) << k << ": " << got.status().ToString();
    EXPECT_EQ(Sha256Hex(got->body), e.sha256) << k;
  }
}

// Uploads under the target's prefix whose keys are this mount's paths are
// aborted at start; others (another writer's key, scribefs's own
// .scribefs/, outside the prefix) are left alone.
TEST_F(RecoveryS3, StaleMultipartUploadsAreAbortedAtStart) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("stale"));
  ASSERT_TRUE(WriteFile(data("big.bin"), RandomBytes(1 << 20, 7)));
  // One with the AWS CLI (with a part), the others with our own client.
  ASSERT_NO_FATAL_FAILURE(AwsStartUpload("pfx/big.bin"));
  auto store = OpenS3(env_, bucket_);
  ASSERT_NE(store, nullptr);
  for (const char* key :
       {"pfx/big.bin", "pfx/stranger.bin", "pfx/.scribefs/x", "elsewhere/big.bin"})
    ASSERT_TRUE(store->CreateMultipartUpload(key, {}).ok()) << key;
  ASSERT_NO_FATAL_FAILURE(
      MountWithTarget("s3://" + bucket_ + "/pfx", {"--endpoint", env_.endpoint}));
  ASSERT_TRUE(Flush(60));
  EXPECT_EQ(AwsUploads(), (std::multiset<std::string>{"pfx/stranger.bin", "pfx/.scribefs/x",
                                                       "elsewhere/big.bin"}));
  EXPECT_NE(DaemonLog().find("stale multipart uploads: 2 aborted"), std::string::npos)
      << DaemonLog();
  std::string err;
  auto listed = AwsList(env_, bucket_, &err);
  ASSERT_TRUE(listed.has_value()) << err;
  EXPECT_EQ(listed->count("pfx/big.bin"), 1u);
}

// kill -9 in the middle of a multipart upload (slowed down by the proxy so
// that it is caught in the middle): the upload stays behind, unfinished; the
// next daemon aborts it and stores the file.
TEST_F(RecoveryS3, KillDuringMultipartUploadLeavesNoStaleUpload) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("kill"));
  std::string err;
  auto proxy = TcpProxy::Start(env_.host, env_.port, 0, &err);
  ASSERT_NE(proxy, nullptr) << err;
  proxy->SetUploadRate(2 << 20);  // per connection: a 5 MiB part takes 2.5 s
  ASSERT_NO_FATAL_FAILURE(MountS3({"--part-size", "5"}, proxy->url()));
  std::string content = RandomBytes(26 << 20, 3);  // 6 parts
  ASSERT_TRUE(WriteFile(mp("big.bin"), content));
  auto store = OpenS3(env_, bucket_);
  ASSERT_NE(store, nullptr);
  // Wait until parts are on their way.
  auto deadline = Clock::now() + std::chrono::seconds(30);
  bool started = false;
  while (!started && Clock::now() < deadline) {
    auto ups = store->ListMultipartUploads("");
    started = ups.ok() && !ups->empty();
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(started) << "no multipart upload started";
  // Four parts go at once: after 3 s they are stored, the last two are not.
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  ASSERT_NO_FATAL_FAILURE(KillDaemon());
  proxy->Down();
  auto ups = store->ListMultipartUploads("");
  ASSERT_TRUE(ups.ok());
  ASSERT_EQ(ups->size(), 1u) << "the kill did not leave the upload unfinished";
  EXPECT_EQ(ups->front().key, "big.bin");
  EXPECT_FALSE(store->Head("big.bin").ok()) << "the upload finished before the kill";

  ASSERT_NO_FATAL_FAILURE(MountS3({"--part-size", "5"}));
  ASSERT_TRUE(Flush(60));
  ups = store->ListMultipartUploads("");
  ASSERT_TRUE(ups.ok());
  EXPECT_TRUE(ups->empty()) << ups->size() << " unfinished upload(s) left, first "
                            << ups->front().key;
  EXPECT_TRUE(AwsUploads().empty());
  auto got = store->Get("big.bin");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->body.size(), content.size());
  EXPECT_EQ(Sha256Hex(got->body), Sha256Hex(content));
  EXPECT_NE(DaemonLog().find("stale multipart uploads: 1 aborted"), std::string::npos)
      << DaemonLog();
}

}  // namespace
}  // namespace scribefs::rep
