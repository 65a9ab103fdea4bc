// Background compaction and periodic bases in the daemon (history/compact.h,
// daemon/prune_task.h) on a real mount replicating to file://: a mount with a
// 100 ms --history-interval writes many small level-0 segments while files
// change; at ten instants the test flushes and records the tree and the time.
// Then a daemon with --compact-interval and --base-interval compacts them in
// the background: the target holds far fewer segment objects, a restore of
// the latest state reads a base and what follows it, and every recorded
// instant (by seq and by time) restores exactly as before.
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "history/history_store.h"
#include "tests/replication/history_check.h"
#include "tests/replication/replication_fixture.h"
#include "uploader/local_store.h"

namespace scribefs::rep {
namespace {

namespace fs = std::filesystem;

int64_t NowNs() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

class CompactionFile : public ReplicationTest {
 protected:
  std::string target() { return root() + "/target"; }
  int64_t CtlFlush() {
    it::RunResult r = it::RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "--json", "flush"});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    return j.is_object() ? j.value("seq", int64_t(-1)) : -1;
  }
  std::unique_ptr<LocalStore> Store() {
    auto s = LocalStore::Open(target());
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s.value()) : nullptr;
  }
  // Segment objects in the target, and how many a restore of the latest
  // state reads (LoadTimeline: the newest base and the deltas after it).
  std::pair<size_t, size_t> Segments() {
    size_t objects = 0;
    for (auto& e : fs::recursive_directory_iterator(target() + "/.scribefs/timeline"))
      if (e.is_regular_file()) ++objects;
    auto store = Store();
    history::HistoryStore hs(*store);
    auto loaded = hs.LoadTimeline();
    EXPECT_TRUE(loaded.ok()) << loaded.status().message();
    return {objects, loaded.ok() ? loaded->size() : 0};
  }
};

struct Recorded {
  int64_t seq = 0;
  int64_t time_ns = 0;
  Snapshot tree;
};

TEST_F(CompactionFile, DaemonCompactsSmallSegmentsAndEveryRecordedInstantRestores) {
  ASSERT_NO_FATAL_FAILURE(MountWithTarget(
      "file://" + target(),
      {"--history-interval", "100ms", "--compact-interval", "off", "--base-interval", "off"}));
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  std::vector<Recorded> instants;
  for (int round = 0; round < 10; ++round) {
    // Changes spread over ~400 ms: several 100 ms segments per round.
    for (int i = 0; i < 12; ++i) {
      const std::string name = "d/f" + std::to_string((round * 5 + i) % 17);
      switch (i % 4) {
        case 0:
        case 1:
          ASSERT_TRUE(it::WriteFile(mp(name), "round " + std::to_string(round) + " " + name));
          break;
        case 2:
          rename(mp(name).c_str(), mp("d/r" + std::to_string(i)).c_str());
          break;
        default:
          unlink(mp(name).c_str());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(35));
    }
    Recorded r;
    r.seq = CtlFlush();
    ASSERT_GT(r.seq, 0);
    r.time_ns = NowNs();
    r.tree = SnapshotOf(mp());
    instants.push_back(std::move(r));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(Unmount(), 0);
  const auto [objects_before, read_before] = Segments();
  ASSERT_GE(objects_before, 24u) << "too few segments to compact";

  // A daemon with compaction every 200 ms and a base when the newest is 1 s
  // older than the newest change (the history spans ~5 s): both come at once.
  ASSERT_NO_FATAL_FAILURE(MountWithTarget(
      "file://" + target(),
      {"--history-interval", "100ms", "--compact-interval", "200ms", "--base-interval", "1s"}));
  // Every complete group of 12 level-0 segments becomes one of level 1; the
  // rest stay; one base.
  const size_t want_objects = objects_before / 12 + objects_before % 12 + 1;
  size_t objects_after = objects_before, read_after = read_before;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::tie(objects_after, read_after) = Segments();
    if (objects_after == want_objects && read_after == 1) break;
  }
  ASSERT_EQ(Unmount(), 0);
  std::tie(objects_after, read_after) = Segments();
  printf(
      "[ measure  ] segment objects in the target: %zu before compaction, %zu after; a "
      "restore of the latest state reads %zu segments before, %zu after\n",
      objects_before, objects_after, read_before, read_after);
  EXPECT_EQ(objects_after, want_objects);
  EXPECT_EQ(read_after, 1u);  // the base: nothing was stored after it
  EXPECT_TRUE(fs::exists(target() + "/.scribefs/timeline/base")) << "no periodic base";
  EXPECT_TRUE(fs::exists(target() + "/.scribefs/timeline/1")) << "no level-1 segment";

  auto store = Store();
  ASSERT_TRUE(store);
  for (const Recorded& r : instants) {
    SCOPED_TRACE("instant at seq " + std::to_string(r.seq));
    ASSERT_NO_FATAL_FAILURE(
        ExpectRestores(*store, history::Instant::AtSeq(r.seq), root() + "/restored.tmp", r.tree));
    ASSERT_NO_FATAL_FAILURE(ExpectRestores(*store, history::Instant::AtTime(r.time_ns),
                                           root() + "/restored.tmp", r.tree));
  }
}

}  // namespace
}  // namespace scribefs::rep
