// S3Store against a real S3 server: Ceph RGW started by the CTest fixture
// "rgw" (tests/testbed/rgw-up.sh), whose env file is named by
// SCRIBEFS_TEST_S3_ENV. Without a server these tests fail; they never skip.
#include "uploader/s3_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include "tests/uploader/store_contract.h"
#include "tests/uploader/test_util.h"
#include "uploader/store_factory.h"

namespace scribefs {
namespace {

using testing_util::TempDir;

constexpr char kBucket[] = "scribefs-test";

// KEY=VALUE lines of the env file written by rgw-up.sh.
std::map<std::string, std::string> ReadEnvFile(std::string* error) {
  std::map<std::string, std::string> out;
  const char* path = getenv("SCRIBEFS_TEST_S3_ENV");
  if (!path || !*path) {
    *error = "SCRIBEFS_TEST_S3_ENV is not set (run through ctest, which starts RGW)";
    return out;
  }
  std::ifstream in(path);
  if (!in) {
    *error = std::string("cannot read ") + path + ": did the rgw_up fixture fail?";
    return out;
  }
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  for (const char* k : {"S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}) {
    if (out[k].empty()) *error = std::string(path) + " lacks " + k;
  }
  return out;
}

struct Server {
  std::string endpoint, access_key, secret_key, region;
};

// The server, or nullopt after ADD_FAILURE().
std::optional<Server> GetServer() {
  std::string error;
  auto env = ReadEnvFile(&error);
  if (!error.empty()) {
    ADD_FAILURE() << error;
    return std::nullopt;
  }
  return Server{env["S3_ENDPOINT"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                env["S3_REGION"].empty() ? "us-east-1" : env["S3_REGION"]};
}

S3Options OptionsFor(const Server& s, const std::string& prefix) {
  S3Options o;
  o.bucket = kBucket;
  o.prefix = prefix;
  o.endpoint = s.endpoint;
  o.region = s.region;
  o.credentials = {s.access_key, s.secret_key, ""};
  o.connect_timeout_ms = 3000;
  return o;
}

std::unique_ptr<S3Store> MakeStore(const std::string& prefix) {
  auto server = GetServer();
  if (!server) return nullptr;
  auto store = S3Store::Create(OptionsFor(*server, prefix));
  if (!store.ok()) {
    ADD_FAILURE() << store.status().ToString();
    return nullptr;
  }
  StoreStatus bucket = (*store)->CreateBucket();
  if (!bucket.ok()) {
    ADD_FAILURE() << "create bucket: " << bucket.ToString();
    return nullptr;
  }
  return std::move(store).value();
}

class S3Maker : public StoreMaker {
 public:
  std::unique_ptr<ObjectStore> Make() override {
    return MakeStore("contract-" + testing_util::RandomHex(6));
  }
  void Cleanup(ObjectStore* store) override {
    // Leave the bucket as we found it (RGW keeps everything in memory).
    std::vector<std::string> keys;
    (void)store->List({}, [&](const ListEntry& e) {
      keys.push_back(e.key);
      return true;
    });
    EXPECT_TRUE(store->DeleteMany(keys).ok());
    if (auto uploads = store->ListMultipartUploads(""); uploads.ok()) {
      for (const auto& u : *uploads) (void)store->AbortMultipartUpload(u.key, u.upload_id);
    }
  }
};

INSTANTIATE_TEST_SUITE_P(S3, StoreContract,
                         ::testing::Values(StoreParam{"rgw",
                                                      [] { return std::make_unique<S3Maker>(); }}),
                         StoreParamName);

TEST(S3Store, WrongSecretKeyIsAPermanentSignatureError) {
  auto server = GetServer();
  ASSERT_TRUE(server);
  S3Options o = OptionsFor(*server, "wrong-secret");
  const std::string wrong = "not-the-secret-" + testing_util::RandomHex(8);
  o.credentials.secret_access_key = wrong;
  auto store = S3Store::Create(o);
  ASSERT_TRUE(store.ok());
  auto put = (*store)->Put("x", Payload::FromMemory("data"), {});
  ASSERT_FALSE(put.ok());
  const StoreStatus& st = put.status();
  EXPECT_EQ(st.error_code(), "SignatureDoesNotMatch") << st.ToString();
  EXPECT_EQ(st.info().http_status, 403);
  EXPECT_EQ(st.code(), EACCES);
  EXPECT_FALSE(st.retryable());
  EXPECT_EQ(st.message().find(wrong), std::string::npos) << "secret leaked: " << st.message();
  // A HEAD has no error body: still a permanent 403.
  auto head = (*store)->Head("x");
  EXPECT_EQ(head.status().code(), EACCES) << head.status().ToString();
  EXPECT_FALSE(head.status().retryable());
}

// Temporary credentials are renewed by rewriting the shared credentials
// file; a running store must follow it, not fail for good with the keys it
// read at start. The file starts with a wrong secret.
TEST(S3Store, RenewedCredentialsFileIsFollowedWithoutARestart) {
  auto server = GetServer();
  ASSERT_TRUE(server);
  ASSERT_NE(MakeStore(""), nullptr);  // the bucket
  testing_util::TempDir dir;
  const std::string file = dir.path() + "/credentials";
  std::string wrong(server->secret_key.size(), 'x');
  if (wrong == server->secret_key) wrong.assign(wrong.size(), 'y');
  auto profile = [&](const std::string& secret) {
    return "[default]\naws_access_key_id = " + server->access_key +
           "\naws_secret_access_key = " + secret + "\n";
  };
  ASSERT_TRUE(testing_util::WriteFile(file, profile(wrong)).valid());
  TargetOptions o;
  o.endpoint = server->endpoint;
  o.region = server->region;
  o.getenv_fn = [file](const char* name) -> const char* {
    return std::string(name) == "AWS_SHARED_CREDENTIALS_FILE" ? file.c_str() : nullptr;
  };
  auto store = OpenStore(std::string("s3://") + kBucket + "/renewed", o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto put = (*store)->Put("x", Payload::FromMemory("data"), {});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().error_code(), "SignatureDoesNotMatch") << put.status().ToString();
  EXPECT_FALSE(put.status().retryable()) << "a wrong key that nobody renews is not retried";

  // Renewed within one mtime tick (same inode, size and mtime): only the
  // server's rejection shows it; the request is sent again with the new keys.
  ASSERT_TRUE(testing_util::RewriteKeepingMtime(file, profile(server->secret_key)));
  put = (*store)->Put("x", Payload::FromMemory("data"), {});
  EXPECT_TRUE(put.ok()) << put.status().ToString();

  // Renewed the usual way, a new file renamed over the old one: seen by its
  // stat before signing.
  ASSERT_TRUE(testing_util::WriteFile(file + ".new", profile(wrong)).valid());
  ASSERT_EQ(rename((file + ".new").c_str(), file.c_str()), 0);
  EXPECT_FALSE((*store)->Head("x").ok());
  ASSERT_TRUE(testing_util::WriteFile(file + ".new", profile(server->secret_key)).valid());
  ASSERT_EQ(rename((file + ".new").c_str(), file.c_str()), 0);
  auto head = (*store)->Head("x");
  EXPECT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_TRUE((*store)->Delete("x").ok());
}

TEST(S3Store, UnknownAccessKeyIsPermanent) {
  auto server = GetServer();
  ASSERT_TRUE(server);
  S3Options o = OptionsFor(*server, "");
  o.credentials.access_key_id = "NOSUCHACCESSKEY";
  auto store = S3Store::Create(o);
  ASSERT_TRUE(store.ok());
  auto put = (*store)->Put("x", Payload::FromMemory("data"), {});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().error_code(), "InvalidAccessKeyId") << put.status().ToString();
  EXPECT_FALSE(put.status().retryable());
}

TEST(S3Store, UnreachableEndpointIsRetryable) {
  S3Options o;
  o.bucket = kBucket;
  o.endpoint = "http://127.0.0.1:1";  // nothing listens on port 1
  o.credentials = {"AK", "SECRETVALUE", ""};
  o.connect_timeout_ms = 2000;
  auto store = S3Store::Create(o);
  ASSERT_TRUE(store.ok());
  auto put = (*store)->Put("x", Payload::FromMemory("data"), {});
  ASSERT_FALSE(put.ok());
  EXPECT_TRUE(put.status().retryable()) << put.status().ToString();
  EXPECT_EQ(put.status().code(), ECONNREFUSED) << put.status().ToString();
  EXPECT_EQ(put.status().info().http_status, 0);
  EXPECT_EQ(put.status().message().find("SECRETVALUE"), std::string::npos);
  auto list = (*store)->ListAll({});
  EXPECT_TRUE(list.status().retryable());
}

// In a versioned bucket every version stays readable by its id, with the
// metadata it was stored with; an unknown id is not found.
TEST(S3Store, VersionedBucketReadsOldVersionsById) {
  auto server = GetServer();
  ASSERT_TRUE(server);
  S3Options o = OptionsFor(*server, "");
  o.bucket = "scribefs-versioned-" + testing_util::RandomHex(6);
  auto created = S3Store::Create(o);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<S3Store> store = std::move(created).value();
  ASSERT_TRUE(store->CreateBucket().ok());
  StoreStatus versioning = store->EnableVersioning();
  ASSERT_TRUE(versioning.ok()) << versioning.ToString();

  const Metadata m1 = {{"mode", "33188"}, {"mtime", "1"}};
  const Metadata m2 = {{"mode", "33261"}, {"mtime", "2"}};
  auto v1 = store->Put("dir/obj", Payload::FromMemory("first version"), m1);
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  auto v2 = store->Put("dir/obj", Payload::FromMemory("second"), m2);
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  ASSERT_FALSE(v1->version_id.empty());
  ASSERT_FALSE(v2->version_id.empty());
  ASSERT_NE(v1->version_id, v2->version_id);

  auto now = store->Get("dir/obj");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->body, "second");
  auto old = store->GetVersion("dir/obj", v1->version_id);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->body, "first version");
  EXPECT_EQ(old->info.etag, v1->etag);
  EXPECT_EQ(old->info.version_id, v1->version_id);
  EXPECT_EQ(old->info.metadata, m1);
  auto part = store->GetVersion("dir/obj", v1->version_id, ByteRange{6, 7});
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_EQ(part->body, "version");
  EXPECT_EQ(part->info.size, 13u);
  auto head = store->HeadVersion("dir/obj", v1->version_id);
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  EXPECT_EQ(head->size, 13u);
  EXPECT_EQ(head->metadata, m1);
  TempDir dir;
  std::string path = dir.path() + "/out";
  UniqueFd out(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ASSERT_TRUE(out.valid());
  auto to_file = store->GetVersionToFile("dir/obj", v1->version_id, out.get());
  ASSERT_TRUE(to_file.ok()) << to_file.status().ToString();
  out.Reset();
  EXPECT_EQ(testing_util::ReadFile(path), "first version");

  auto missing = store->GetVersion("dir/obj", "NoSuchVersionIdAtAll");
  ASSERT_FALSE(missing.ok());
  EXPECT_FALSE(missing.status().retryable()) << missing.status().ToString();
}

TEST(S3Store, NoSuchBucketIsPermanentNotFound) {
  auto server = GetServer();
  ASSERT_TRUE(server);
  S3Options o = OptionsFor(*server, "");
  o.bucket = "scribefs-no-such-bucket";
  auto store = S3Store::Create(o);
  ASSERT_TRUE(store.ok());
  auto put = (*store)->Put("x", Payload::FromMemory("data"), {});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().error_code(), "NoSuchBucket") << put.status().ToString();
  EXPECT_TRUE(put.status().not_found());
  EXPECT_FALSE(put.status().retryable());
}

TEST(S3Store, ClockSkewIsRejectedAndRetryable) {
  auto server = GetServer();
  ASSERT_TRUE(server);
  S3Options o = OptionsFor(*server, "skew");
  o.clock = [] { return std::time(nullptr) - 3600; };  // signing an hour in the past
  auto store = S3Store::Create(o);
  ASSERT_TRUE(store.ok());
  auto put = (*store)->Put("x", Payload::FromMemory("data"), {});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().error_code(), "RequestTimeTooSkewed") << put.status().ToString();
  EXPECT_TRUE(put.status().retryable());  // fixed by the clock, not by the request
}

TEST(S3Store, FileThatChangesDuringUploadIsNotStored) {
  auto store = MakeStore("changing-" + testing_util::RandomHex(6));
  ASSERT_NE(store, nullptr);
  // Every read of this file yields a new UUID: the bytes hashed for the
  // signature are never the bytes being sent.
  UniqueFd fd(open("/proc/sys/kernel/random/uuid", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  auto put = store->Put("uuid", Payload::FromFile(fd.get(), 0, 36), {});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().error_code(), "SourceChanged") << put.status().ToString();
  EXPECT_TRUE(put.status().retryable());
  EXPECT_TRUE(store->Head("uuid").status().not_found());
}

TEST(S3Store, ListPagesThroughContinuationTokens) {
  auto store = MakeStore("paging-" + testing_util::RandomHex(6));
  ASSERT_NE(store, nullptr);
  std::vector<std::string> keys;
  for (int i = 0; i < 23; ++i) keys.push_back("k" + std::to_string(100 + i));
  for (const auto& k : keys) ASSERT_TRUE(store->Put(k, Payload::FromMemory(k), {}).ok());
  uint64_t before = store->stats().requests;
  ListOptions o;
  o.page_size = 5;
  auto listed = store->ListAll(o);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(listed->size(), keys.size());
  EXPECT_GE(store->stats().requests - before, 5u);  // ceil(23 / 5) pages
  EXPECT_TRUE(store->DeleteMany(keys).ok());
}

TEST(S3Store, DeleteManyBatchesOverAThousandKeys) {
  auto store = MakeStore("many-" + testing_util::RandomHex(6));
  ASSERT_NE(store, nullptr);
  // Keys that were never written: S3 reports them deleted. 1,500 keys = 2 requests.
  std::vector<std::string> keys;
  for (int i = 0; i < 1500; ++i) keys.push_back("ghost/" + std::to_string(i));
  ASSERT_TRUE(store->Put("ghost/7", Payload::FromMemory("real"), {}).ok());
  uint64_t before = store->stats().requests;
  StoreStatus st = store->DeleteMany(keys);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(store->stats().requests - before, 2u);
  EXPECT_TRUE(store->Head("ghost/7").status().not_found());
}

// RGW writes a response's headers and body in two segments; unless the
// client acknowledges the headers at once, the body waits for a delayed ACK
// (40 ms on Linux). Small GETs and LISTs must not pay that.
TEST(S3Store, SmallGetsAreNotHeldByADelayedAck) {
  auto store = MakeStore("quickack-" + testing_util::RandomHex(6));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Put("small", Payload::FromMemory(std::string(4096, 's')), {}).ok());
  ASSERT_TRUE(store->Get("small").ok());  // connect
  std::vector<double> ms;
  for (int i = 0; i < 15; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto got = store->Get("small");
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->body.size(), 4096u);
  }
  std::sort(ms.begin(), ms.end());
  EXPECT_LT(ms[ms.size() / 2], 30.0) << "median GET of 4 KiB took " << ms[ms.size() / 2]
                                     << " ms: the 40 ms delayed-ACK stall is back";
  EXPECT_TRUE(store->Delete("small").ok());
}

TEST(S3Store, ConcurrentCallersShareOneStore) {
  auto store = MakeStore("threads-" + testing_util::RandomHex(6));
  ASSERT_NE(store, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        std::string key = "t" + std::to_string(t) + "/" + std::to_string(i);
        std::string body = testing_util::Blob(1000 + i, t * 100 + i);
        if (!store->Put(key, Payload::FromMemory(body), {}).ok()) ++failures;
        auto got = store->Get(key);
        if (!got.ok() || got->body != body) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto listed = store->ListAll({});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 40u);
  std::vector<std::string> keys;
  for (const auto& e : *listed) keys.push_back(e.key);
  EXPECT_TRUE(store->DeleteMany(keys).ok());
}

// Runs the Debian aws CLI with the server's credentials; returns its exit code.
int RunAws(const Server& s, const std::vector<std::string>& args, std::string* out) {
  std::string cmd = "/usr/bin/aws --endpoint-url " + s.endpoint + " --region " + s.region;
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  setenv("AWS_ACCESS_KEY_ID", s.access_key.c_str(), 1);
  setenv("AWS_SECRET_ACCESS_KEY", s.secret_key.c_str(), 1);
  setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  setenv("AWS_PAGER", "", 1);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int rc = pclose(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(S3Store, AwsCliReadsBackWhatS3StoreWroteAndViceVersa) {
  auto server = GetServer();
  ASSERT_TRUE(server);
  ASSERT_EQ(access("/usr/bin/aws", X_OK), 0) << "install Debian's awscli";
  const std::string prefix = "cli-" + testing_util::RandomHex(6);
  auto store = MakeStore(prefix);
  ASSERT_NE(store, nullptr);
  TempDir dir;

  // S3Store writes (one PUT and one multipart upload), aws reads.
  std::string data = testing_util::Blob(3 * 1024 * 1024 + 7, 42);
  Metadata meta = {{"mode", "33188"}, {"uid", "1000"}, {"gid", "100"}, {"mtime", "1700000000"}};
  ASSERT_TRUE(store->Put("dir/blob with space", Payload::FromMemory(data), meta).ok());
  std::string out;
  ASSERT_EQ(RunAws(*server,
                   {"s3api", "get-object", "--bucket", kBucket, "--key",
                    prefix + "/dir/blob with space", dir.path() + "/got"},
                   &out),
            0)
      << out;
  EXPECT_TRUE(testing_util::ReadFile(dir.path() + "/got") == data);
  EXPECT_NE(out.find("\"mode\": \"33188\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"mtime\": \"1700000000\""), std::string::npos) << out;

  std::string big = testing_util::Blob(kMinPartSize + 100, 43);
  auto id = store->CreateMultipartUpload("mp", meta);
  ASSERT_TRUE(id.ok());
  auto p1 = store->UploadPart("mp", *id, 1,
                              Payload::FromMemory(std::string_view(big).substr(0, kMinPartSize)));
  auto p2 = store->UploadPart("mp", *id, 2,
                              Payload::FromMemory(std::string_view(big).substr(kMinPartSize)));
  ASSERT_TRUE(p1.ok() && p2.ok());
  auto done = store->CompleteMultipartUpload("mp", *id, {{1, p1->etag}, {2, p2->etag}});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  out.clear();
  ASSERT_EQ(
      RunAws(*server, {"s3api", "head-object", "--bucket", kBucket, "--key", prefix + "/mp"}, &out),
      0)
      << out;
  EXPECT_NE(out.find(done->etag), std::string::npos) << out;
  out.clear();
  ASSERT_EQ(RunAws(*server,
                   {"s3", "cp", "s3://" + std::string(kBucket) + "/" + prefix + "/mp",
                    dir.path() + "/mp"},
                   &out),
            0)
      << out;
  EXPECT_TRUE(testing_util::ReadFile(dir.path() + "/mp") == big);

  // aws writes, S3Store reads.
  std::string theirs = testing_util::Blob(100000, 44);
  ASSERT_TRUE(testing_util::WriteFile(dir.path() + "/theirs", theirs).valid());
  out.clear();
  ASSERT_EQ(RunAws(*server,
                   {"s3", "cp", dir.path() + "/theirs",
                    "s3://" + std::string(kBucket) + "/" + prefix + "/from-cli"},
                   &out),
            0)
      << out;
  auto got = store->Get("from-cli");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->body == theirs);
  EXPECT_EQ(got->info.etag, testing_util::Md5Hex(theirs));

  S3Maker().Cleanup(store.get());
}

}  // namespace
}  // namespace scribefs
