// The daemon's automatic prune (daemon/prune_task.h): its options, a run
// every interval in its own thread on a real file:// target, and a Stop that
// does not wait for the next interval.
#include "daemon/prune_task.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "tests/history/prune_test_util.h"

namespace scribefs {
namespace {

using history::testing::PruneHistory;
constexpr int64_t kS = 1'000'000'000;

TEST(PruneTaskTest, ParsesTheDaemonsRetentionOptions) {
  Config cfg;
  EXPECT_FALSE(CheckPruneOptions(cfg));  // the defaults
  EXPECT_EQ(cfg.retention_ns, 7 * 24 * 3600 * kS);
  EXPECT_EQ(cfg.prune_interval_s, 3600);
  EXPECT_EQ(cfg.prune_grace_ns, 3600 * kS);
  cfg.retention = "2d";
  cfg.prune_interval = "off";
  cfg.prune_grace = "10m";
  EXPECT_FALSE(CheckPruneOptions(cfg));
  EXPECT_EQ(cfg.retention_ns, 2 * 24 * 3600 * kS);
  EXPECT_EQ(cfg.prune_interval_s, 0);
  EXPECT_EQ(cfg.prune_grace_ns, 600 * kS);
  cfg.prune_interval = "500ms";
  auto bad = CheckPruneOptions(cfg);
  ASSERT_TRUE(bad);
  EXPECT_NE(bad->find("--prune-interval"), std::string::npos) << *bad;
  cfg.prune_interval = "30m";
  cfg.retention = "-1d";
  bad = CheckPruneOptions(cfg);
  ASSERT_TRUE(bad);
  EXPECT_NE(bad->find("--retention"), std::string::npos) << *bad;
}

TEST(PruneTaskTest, PrunesEveryIntervalInTheBackgroundAndStopsAtOnce) {
  testing_util::TempDir dir;
  PruneHistory h(dir.path());
  h.Build(40, 10 * 60 * kS, 4, false);
  const auto before = h.Files();
  PruneTask::Options o;
  o.prune.policy.retention_ns = 3600 * kS;
  o.prune.grace_ns = 0;
  o.interval = std::chrono::milliseconds(300);
  std::atomic<int> forgets{0};  // the replicator's known chunks forgotten
  o.chunks_deleted = [&] { ++forgets; };
  PruneTask task(&h.store(), o);
  ASSERT_TRUE(task.Start().ok());
  EXPECT_EQ(task.last().finished_ns, 0);  // the first run waits one interval
  for (int i = 0; i < 200 && task.last().finished_ns == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const PruneTask::Last last = task.last();
  ASSERT_NE(last.finished_ns, 0);
  EXPECT_TRUE(last.ok) << last.summary;
  EXPECT_EQ(last.summary.rfind("prune: deleted ", 0), 0u) << last.summary;
  EXPECT_NE(h.Files(), before);
  auto chunks = [](const std::map<std::string, uint64_t>& files) {
    return std::count_if(files.begin(), files.end(), [](const auto& f) {
      return f.first.find("/.scribefs/chunks/") != std::string::npos;
    });
  };
  ASSERT_LT(chunks(h.Files()), chunks(before)) << "no chunk was deleted";
  EXPECT_GE(forgets.load(), 1) << "chunks were deleted, the known ones not forgotten";
  const auto t0 = std::chrono::steady_clock::now();
  task.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2000));
  h.ExpectRestores(history::Instant::Latest(), "latest");

  // A long interval: Stop does not wait for it.
  o.interval = std::chrono::hours(1);
  PruneTask idle(&h.store(), o);
  ASSERT_TRUE(idle.Start().ok());
  const auto t1 = std::chrono::steady_clock::now();
  idle.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::milliseconds(1000));
  EXPECT_EQ(idle.last().finished_ns, 0);
}

TEST(PruneTaskTest, ParsesTheCompactionAndBaseIntervals) {
  Config cfg;
  EXPECT_FALSE(CheckPruneOptions(cfg));  // the defaults
  EXPECT_EQ(cfg.compact_interval_s, 60);
  EXPECT_EQ(cfg.base_interval_ns, 3600 * kS);
  cfg.compact_interval = "off";
  cfg.base_interval = "6h";
  EXPECT_FALSE(CheckPruneOptions(cfg));
  EXPECT_EQ(cfg.compact_interval_s, 0);
  EXPECT_EQ(cfg.base_interval_ns, 6 * 3600 * kS);
  cfg.compact_interval = "200ms";
  cfg.base_interval = "0";
  EXPECT_FALSE(CheckPruneOptions(cfg));
  EXPECT_DOUBLE_EQ(cfg.compact_interval_s, 0.2);
  EXPECT_EQ(cfg.base_interval_ns, 0);
  cfg.compact_interval = "10ms";
  auto bad = CheckPruneOptions(cfg);
  ASSERT_TRUE(bad);
  EXPECT_NE(bad->find("--compact-interval"), std::string::npos) << *bad;
  cfg.compact_interval = "1m";
  cfg.base_interval = "soon";
  bad = CheckPruneOptions(cfg);
  ASSERT_TRUE(bad);
  EXPECT_NE(bad->find("--base-interval"), std::string::npos) << *bad;
  // Without history there is nothing to compact.
  cfg.base_interval = "1h";
  EXPECT_FALSE(CheckPruneOptions(cfg));
  cfg.history_on = false;
  EXPECT_EQ(PruneTask::FromConfig(cfg).compact_interval.count(), 0);
  cfg.history_on = true;
  EXPECT_EQ(PruneTask::FromConfig(cfg).compact_interval.count(), 60'000);
}

// With the prune off, the task still compacts every compact_interval and
// writes a base when one is due; the history restores the same.
TEST(PruneTaskTest, CompactsAndWritesABaseInTheBackground) {
  testing_util::TempDir dir;
  PruneHistory h(dir.path());
  h.Build(40, 10 * 60 * kS, 4, false);
  history::HistoryStore hs(h.store());
  auto before = hs.ListSegments();
  ASSERT_TRUE(before.ok());
  ASSERT_GE(before->deltas.size(), 4u);
  PruneTask::Options o;
  o.interval = std::chrono::milliseconds(0);  // no prune
  o.compact_interval = std::chrono::milliseconds(100);
  o.compaction.fanout = {2, 2};
  o.base.interval_ns = 1;
  PruneTask task(&h.store(), o);
  ASSERT_TRUE(task.Start().ok());
  for (int i = 0; i < 200 && task.last_compaction().finished_ns == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  task.Stop();
  const PruneTask::Last last = task.last_compaction();
  ASSERT_NE(last.finished_ns, 0);
  EXPECT_TRUE(last.ok) << last.summary;
  EXPECT_EQ(last.summary.rfind("compaction: ", 0), 0u) << last.summary;
  EXPECT_NE(last.summary.find("wrote base"), std::string::npos) << last.summary;
  EXPECT_EQ(task.last().finished_ns, 0);  // no prune ran
  auto after = hs.ListSegments();
  ASSERT_TRUE(after.ok());
  EXPECT_LT(after->deltas.size(), before->deltas.size());
  EXPECT_EQ(after->bases.size(), before->bases.size() + 1);
  h.ExpectRestores(history::Instant::Latest(), "latest");
}

}  // namespace
}  // namespace scribefs
