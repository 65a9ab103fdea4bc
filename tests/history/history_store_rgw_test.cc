// HistoryStore against real S3: the Ceph RGW that the CTest fixture "rgw"
// starts (tests/testbed/rgw-up.sh), named by SCRIBEFS_TEST_S3_ENV. Without a
// server this test fails; it never skips.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include "history/history_store.h"
#include "history/prune.h"
#include "tests/history/prune_test_util.h"
#include "tests/history/history_test_util.h"
#include "tests/uploader/test_util.h"
#include "uploader/s3_store.h"

namespace scribefs::history {
namespace {

using namespace history::testing;  // NOLINT: the builders
using testing_util::Blob;
using testing_util::ReadFile;
using testing_util::TempDir;
using testing_util::WriteFile;

std::unique_ptr<S3Store> MakeStore(const std::string& prefix) {
  const char* path = getenv("SCRIBEFS_TEST_S3_ENV");
  if (!path || !*path) {
    ADD_FAILURE() << "SCRIBEFS_TEST_S3_ENV is not set (run through ctest, which starts RGW)";
    return nullptr;
  }
  std::map<std::string, std::string> env;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  if (env["S3_ENDPOINT"].empty() || env["AWS_ACCESS_KEY_ID"].empty()) {
    ADD_FAILURE() << path << " lacks S3_ENDPOINT or credentials: did rgw_up fail?";
    return nullptr;
  }
  S3Options o;
  o.bucket = "scribefs-test";
  o.prefix = prefix;
  o.endpoint = env["S3_ENDPOINT"];
  o.region = env["S3_REGION"].empty() ? "us-east-1" : env["S3_REGION"];
  o.credentials = {env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], ""};
  o.connect_timeout_ms = 3000;
  auto store = S3Store::Create(o);
  if (!store.ok()) {
    ADD_FAILURE() << store.status().ToString();
    return nullptr;
  }
  if (StoreStatus st = (*store)->CreateBucket(); !st.ok()) {
    ADD_FAILURE() << "create bucket: " << st.ToString();
    return nullptr;
  }
  return std::move(store).value();
}

TEST(HistoryStoreRgwTest, ChunksAndSegmentsRoundTripThroughS3) {
  auto store = MakeStore("history-" + testing_util::RandomHex(6));
  ASSERT_TRUE(store);
  HistoryStore history(*store);
  TempDir dir;
  // A two-part file and a copy of it: two chunk objects.
  const std::string content = Blob(kDefaultPartSize + 4096, 11);
  UniqueFd a = WriteFile(dir.path() + "/a", content);
  UniqueFd b = WriteFile(dir.path() + "/b", content);
  auto ca = history.PutChunks(a.get(), content.size());
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();
  auto cb = history.PutChunks(b.get(), content.size());
  ASSERT_TRUE(cb.ok());
  EXPECT_EQ(*ca, *cb);
  auto usage = history.Usage();
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  EXPECT_EQ(usage->chunk_objects, 2u);
  EXPECT_EQ(usage->chunk_bytes, content.size());

  Entry put = FilePut(2, "dir/a", "");
  put.state.chunks = *ca;
  put.state.size = content.size();
  Segment s1 = Delta({DirPut(1, "dir"), put});
  Segment s2 = Delta({Rename(3, "dir/a", "dir/b"), FilePut(4, "c", "small")});
  ASSERT_TRUE(history.AppendSegment(s1).ok());
  ASSERT_TRUE(history.AppendSegment(s2).ok());
  EXPECT_EQ(history.AppendSegment(MakeDelta({}, 0, 3, 4)).status().code(), EEXIST);
  auto compacted = history.Compact(0);
  ASSERT_TRUE(compacted.ok()) << compacted.status().ToString();
  EXPECT_EQ(compacted->segments_written, 1u);

  auto timeline = history.LoadTimeline();
  ASSERT_TRUE(timeline.ok()) << timeline.status().ToString();
  Tree tree = Replay(*timeline);
  EXPECT_EQ(States(tree), States(Replay({s1, s2})));
  ASSERT_TRUE(tree.contains("dir/b"));
  UniqueFd out(open((dir.path() + "/restored").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  StoreStatus st = history.RestoreFile(tree["dir/b"].state, out.get());
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(ReadFile(dir.path() + "/restored"), content);
  auto at2 = history.LoadTimeline(Instant::AtSeq(2));
  ASSERT_TRUE(at2.ok());
  EXPECT_TRUE(Replay(*at2, Instant::AtSeq(2)).contains("dir/a"));

  // Leave the bucket as we found it.
  std::vector<std::string> keys;
  ASSERT_TRUE(store
                  ->List({},
                         [&](const ListEntry& e) {
                           keys.push_back(e.key);
                           return true;
                         })
                  .ok());
  EXPECT_TRUE(store->DeleteMany(keys).ok());
}

// Prune against real S3: Last-Modified from the server decides the grace,
// DeleteMany batches, and every retained point restores from RGW.
TEST(HistoryStoreRgwTest, PruneKeepsEveryRetainedPointOnS3) {
  auto store = MakeStore("prune-" + testing_util::RandomHex(6));
  ASSERT_TRUE(store);
  TempDir dir;
  PruneHistory h(dir.path(), std::move(store));
  h.Build(30, 10 * 60 * kNsPerSecond, 3, true);
  auto before = h.history().Usage();
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  PruneOptions o;
  o.policy.retention_ns = 2 * 3600 * kNsPerSecond;
  o.policy.keep_hourly = 4;
  o.grace_ns = 0;
  o.now_ns = h.now();
  auto report = Prune(h.store(), o);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_TRUE(report->decision.window_start);
  EXPECT_GT(report->segments_deleted.size(), 0u);
  EXPECT_GT(report->chunks_deleted, 0u);
  auto after = h.history().Usage();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->chunk_objects, before->chunk_objects - report->chunks_deleted);
  h.ExpectRetainedRestore(report->decision);
  // A young unreferenced chunk survives a 1 h grace by the server's clock.
  const Entry young = h.StoredFile(1000, "young", Blob(3000, 5), 0);
  o.grace_ns = 3600 * kNsPerSecond;
  o.now_ns = NowNs();
  auto again = Prune(h.store(), o);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->chunks_deleted, 0u);
  EXPECT_GE(again->chunks_in_grace, 1u);
  EXPECT_TRUE(h.store().Head(ChunkKey(young.state.chunks[0].sha256)).ok());
}

}  // namespace
}  // namespace scribefs::history
