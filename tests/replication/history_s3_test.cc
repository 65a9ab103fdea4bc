// History in the target on s3:// (Ceph RGW, the CTest fixture "rgw"): the
// timeline and chunks the replicator writes restore the tree after flushes.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/replication/history_check.h"
#include "tests/replication/replication_fixture.h"

namespace scribefs::rep {
namespace {

class HistoryRgw : public ReplicationTest {};

TEST_F(HistoryRgw, ReplayAtFlushesEqualsTheTree) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("history"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--history-interval", "1h", "--part-size", "5"}));
  ASSERT_EQ(mkdir(mp("docs").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(mp("empty").c_str(), 0755), 0);
  ASSERT_TRUE(it::WriteFile(mp("docs/a.txt"), "alpha\n"));
  ASSERT_TRUE(it::WriteFile(mp("docs/big.bin"), RandomBytes(12 << 20, 5)));  // 3 parts
  ASSERT_TRUE(it::WriteFile(mp("old.txt"), "old"));
  ASSERT_EQ(symlink("docs/a.txt", mp("link").c_str()), 0);
  const int64_t seq1 = CtlFlush();
  ASSERT_GT(seq1, 0);
  const Snapshot first = SnapshotOf(mp());

  ASSERT_EQ(rename(mp("docs").c_str(), mp("papers").c_str()), 0);
  ASSERT_EQ(unlink(mp("old.txt").c_str()), 0);
  ASSERT_EQ(chmod(mp("papers/a.txt").c_str(), 0600), 0);
  {
    FILE* f = fopen(mp("papers/big.bin").c_str(), "r+");
    ASSERT_TRUE(f);
    fseek(f, 6 << 20, SEEK_SET);
    fwrite("changed", 1, 7, f);
    fclose(f);
  }
  ASSERT_GT(CtlFlush(), seq1);
  const Snapshot second = SnapshotOf(mp());

  auto store = OpenS3(env_, bucket_);
  ASSERT_TRUE(store);
  const std::string tmp = root() + "/restored.tmp";
  ASSERT_NO_FATAL_FAILURE(ExpectRestores(*store, history::Instant::Latest(), tmp, second));
  ASSERT_NO_FATAL_FAILURE(
      ExpectRestores(*store, history::Instant::AtSeq(uint64_t(seq1)), tmp, first));
}

// As HistoryFile.ContentPrunedWhileMountedIsStoredAgain, on S3: a chunk a
// `scribectl prune` deleted while the daemon runs is stored again for
// identical new content (the daemon's known chunks expire after a quarter
// of its --prune-grace).
TEST_F(HistoryRgw, ContentPrunedWhileMountedIsStoredAgain) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("hprune"));
  ASSERT_NO_FATAL_FAILURE(
      MountS3({"--history-interval", "1h", "--prune-grace", "2s", "--prune-interval", "off"}));
  const std::string content = RandomBytes(100000, 22);
  ASSERT_TRUE(it::WriteFile(mp("x.bin"), content));
  ASSERT_GT(CtlFlush(), 0);
  ASSERT_EQ(unlink(mp("x.bin").c_str()), 0);
  ASSERT_GT(CtlFlush(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(3200));  // older than the grace
  it::RunResult p = Ctl({"--json", "prune", "--retention", "0", "--prune-grace", "2s"});
  ASSERT_EQ(p.exit_code, 0) << p.Describe();
  auto pj = nlohmann::json::parse(p.out, nullptr, false);
  ASSERT_TRUE(pj.is_object()) << p.Describe();
  ASSERT_GE(pj.value("chunks_deleted", 0), 1) << p.out;

  ASSERT_TRUE(it::WriteFile(mp("x.bin"), content));
  ASSERT_GT(CtlFlush(), 0);
  it::RunResult v = Ctl({"verify", "--history", "--deep"});
  EXPECT_EQ(v.exit_code, 0) << v.Describe();
  const std::string to = root() + "/restored-x";
  it::RunResult r = Ctl({"restore", "--at", "now", "--to", to});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(Sha256OfFile(to + "/x.bin"), Sha256Hex(content));
}

}  // namespace
}  // namespace scribefs::rep
