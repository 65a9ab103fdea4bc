// Compaction levels and periodic bases (history/compact.h): the decisions
// (which deltas merge, when a base is due) as pure functions, and on a real
// LocalStore a randomized property test: a history written as many small
// level-0 deltas, compacted in levels (with crashes between the write of a
// merged segment and the deletes of its inputs) and given bases, restores the
// same tree at every seq and every time it covered, from fewer segments.
#include "history/compact.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>

#include "tests/history/history_test_util.h"
#include "tests/uploader/memory_store.h"
#include "tests/uploader/test_util.h"
#include "uploader/local_store.h"

namespace scribefs::history {
namespace {

using namespace history::testing;  // NOLINT: the builders
using testing_util::TempDir;

SegmentRef Ref(int level, uint64_t first, uint64_t last) {
  SegmentId id{SegmentKind::kDelta, level, first, last};
  return SegmentRef{id, SegmentKey(id), 100};
}

std::vector<std::vector<uint64_t>> Firsts(const CompactionPlan& plan) {
  std::vector<std::vector<uint64_t>> out;
  for (const auto& g : plan.groups) {
    out.emplace_back();
    for (const auto& r : g.inputs) out.back().push_back(r.id.first_seq);
  }
  return out;
}

TEST(CompactionPlanTest, MergesCompleteGroupsOfConsecutiveDeltasOldestFirst) {
  SegmentList list;
  for (uint64_t i = 0; i < 8; ++i) list.deltas.push_back(Ref(0, i * 10 + 1, i * 10 + 10));
  CompactionPlan plan = PlanCompaction(list, CompactionPolicy{.fanout = {3}});
  // 8 deltas, groups of 3: two groups; the newest two wait.
  EXPECT_EQ(Firsts(plan), (std::vector<std::vector<uint64_t>>{{1, 11, 21}, {31, 41, 51}}));
  for (const auto& g : plan.groups) EXPECT_EQ(g.level, 0);
  EXPECT_TRUE(plan.leftovers.empty());
  // Fewer than a group: nothing.
  list.deltas.resize(2);
  EXPECT_TRUE(PlanCompaction(list, CompactionPolicy{.fanout = {3}}).empty());
}

TEST(CompactionPlanTest, ARunEndsAtASeqGapAndAtAnotherLevel) {
  SegmentList list;
  list.deltas = {Ref(1, 1, 100),   Ref(1, 101, 200), Ref(0, 201, 210), Ref(0, 211, 220),
                 Ref(0, 230, 240),  // gap: 221..229 missing (a prune)
                 Ref(0, 241, 250), Ref(1, 251, 300), Ref(0, 301, 310), Ref(0, 311, 320)};
  CompactionPlan plan = PlanCompaction(list, CompactionPolicy{.fanout = {2, 2}});
  EXPECT_EQ(Firsts(plan),
            (std::vector<std::vector<uint64_t>>{{1, 101}, {201, 211}, {230, 241}, {301, 311}}));
  EXPECT_EQ(plan.groups[0].level, 1);
  EXPECT_EQ(plan.groups[1].level, 0);
  // Overlapping deltas (never written by scribefs) are not contiguous either.
  SegmentList overlap;
  overlap.deltas = {Ref(0, 1, 10), Ref(0, 5, 20)};
  EXPECT_TRUE(PlanCompaction(overlap, CompactionPolicy{.fanout = {2}}).empty());
}

TEST(CompactionPlanTest, LevelsWithoutAFanoutAndTheTopLevelStay) {
  SegmentList list;
  list.deltas = {Ref(2, 1, 10), Ref(2, 11, 20), Ref(9, 21, 30), Ref(9, 31, 40)};
  EXPECT_TRUE(PlanCompaction(list, CompactionPolicy{.fanout = {2, 2}}).empty());
  EXPECT_TRUE(PlanCompaction(list, CompactionPolicy{.fanout = {2, 2, 1}}).empty());
  std::vector<uint32_t> all(10, 2);
  CompactionPlan plan = PlanCompaction(list, CompactionPolicy{.fanout = all});
  ASSERT_EQ(plan.groups.size(), 1u);  // level 9 has no level above
  EXPECT_EQ(plan.groups[0].level, 2);
}

TEST(CompactionPlanTest, LeftoversOfACrashedCompactionAreDeleted) {
  SegmentList list;
  list.deltas = {Ref(1, 1, 30)};
  list.covered = {Ref(0, 1, 10), Ref(0, 11, 20), Ref(0, 21, 30)};
  CompactionPlan plan = PlanCompaction(list, CompactionPolicy{});
  EXPECT_TRUE(plan.groups.empty());
  EXPECT_EQ(plan.leftovers.size(), 3u);
  EXPECT_FALSE(plan.empty());
}

TEST(CompactionPlanTest, SplitByEntries) {
  using V = std::vector<size_t>;
  EXPECT_EQ(SplitByEntries({}, 10), V{});
  EXPECT_EQ(SplitByEntries({5, 5, 5}, 10), (V{0, 2}));
  EXPECT_EQ(SplitByEntries({5, 5, 5}, 8), (V{0, 1, 2}));
  EXPECT_EQ(SplitByEntries({20, 1, 1}, 10), (V{0, 1}));  // one input above the limit alone
  EXPECT_EQ(SplitByEntries({0, 0, 20, 3}, 10), (V{0, 3}));
  EXPECT_EQ(SplitByEntries({3, 3, 3, 3}, 100), (V{0}));
}

constexpr int64_t kHour = 3600 * kNsPerSecond;

TEST(BaseDecisionTest, DueByTimeOrByCountNeverWithoutNewEntries) {
  BaseFacts f;
  f.latest_seq = 50;
  f.first_time_ns = 10 * kHour;
  f.latest_time_ns = 10 * kHour + kHour - 1;
  f.entries_since = 40;
  const BasePolicy hourly{.interval_ns = kHour, .every_entries = 0};
  EXPECT_FALSE(BaseDue(f, hourly));  // history spans just under an hour
  f.latest_time_ns = 11 * kHour;
  EXPECT_TRUE(BaseDue(f, hourly));
  // Measured from the newest base when there is one.
  f.newest_base = StatePoint{20, 10 * kHour + kHour / 2};
  EXPECT_FALSE(BaseDue(f, hourly));
  EXPECT_TRUE(BaseDue(f, BasePolicy{.interval_ns = 0, .every_entries = 40}));
  EXPECT_FALSE(BaseDue(f, BasePolicy{.interval_ns = 0, .every_entries = 41}));
  EXPECT_FALSE(BaseDue(f, BasePolicy{.interval_ns = 0, .every_entries = 0}));
  f.entries_since = 0;
  f.latest_time_ns = 100 * kHour;
  EXPECT_FALSE(BaseDue(f, hourly));
  EXPECT_FALSE(BaseDue(f, BasePolicy{.interval_ns = 1, .every_entries = 1}));
}

TEST(BaseDecisionTest, FactsOfATimelineFromItsNewestBase) {
  Tree tree;
  Segment base = MakeBase(tree, 10, 5000);
  std::vector<Segment> segs = {
      base, MakeDelta({FilePut(9, "a", "x", 4000), FilePut(12, "b", "y", 6000)}, 0, 9, 12),
      MakeDelta({FilePut(14, "c", "z", 7000)}, 1, 13, 20)};
  BaseFacts f = FactsOf(segs);
  ASSERT_TRUE(f.newest_base);
  EXPECT_EQ(f.newest_base->seq, 10u);
  EXPECT_EQ(f.newest_base->time_ns, 5000);
  EXPECT_EQ(f.latest_seq, 20u);
  EXPECT_EQ(f.entries_since, 2u);  // seq 9 is in the base
  EXPECT_EQ(f.first_time_ns, 6000);
  EXPECT_EQ(f.latest_time_ns, 7000);
  BaseFacts none = FactsOf({});
  EXPECT_EQ(none.entries_since, 0u);
  EXPECT_FALSE(none.newest_base);
}

// ---- on a real LocalStore --------------------------------------------------

class CompactionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = LocalStore::Open(dir_.path() + "/target");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    history_ = std::make_unique<HistoryStore>(*store_);
  }

  // `n` level-0 deltas of 0..4 random entries each over a few paths (files,
  // directories, deletes, renames), with seqs that have no entry and times
  // that sometimes repeat, appended to the target and to `all_`.
  void AppendRandomDeltas(int n) {
    static const std::vector<std::string> kPaths = {"a", "b", "d", "d/x", "d/y", "e", "e/z"};
    auto pick = [&] { return kPaths[rng_() % kPaths.size()]; };
    for (int i = 0; i < n; ++i) {
      const uint64_t first = seq_ + 1;
      std::vector<Entry> entries;
      const int k = static_cast<int>(rng_() % 5);
      for (int j = 0; j < k; ++j) {
        seq_ += 1 + rng_() % 3;
        if (rng_() % 3 != 0) time_ += static_cast<int64_t>(rng_() % 2000);
        switch (rng_() % 6) {
          case 0:
            entries.push_back(Delete(seq_, pick(), time_));
            break;
          case 1: {
            std::string from = pick(), to = pick();
            auto below = [](const std::string& p, const std::string& q) {
              return p.size() > q.size() && p.compare(0, q.size() + 1, q + "/") == 0;
            };
            if (from != to && !below(from, to) && !below(to, from)) {
              entries.push_back(Rename(seq_, from, to, rng_() % 4 == 0, time_));
              break;
            }
            [[fallthrough]];
          }
          case 2:
            entries.push_back(DirPut(seq_, pick(), time_));
            break;
          default:
            entries.push_back(FilePut(seq_, pick(), "v" + std::to_string(seq_), time_));
        }
      }
      seq_ += rng_() % 2;  // a seq with nothing to store at the end
      if (seq_ < first) seq_ = first;
      Segment s = MakeDelta(std::move(entries), 0, first, seq_);
      auto ref = history_->AppendSegment(s);
      ASSERT_TRUE(ref.ok()) << ref.status().ToString();
      all_.push_back(std::move(s));
    }
  }

  // Every seq from 0 past the end, every entry time and the nanosecond
  // before it (or a random sample of `sample` of them): the tree loaded from
  // the target equals the tree of every delta ever written.
  void ExpectEveryInstantRestores(const std::string& when, size_t sample = 0) {
    std::vector<Instant> instants;
    for (uint64_t s = 0; s <= seq_ + 1; ++s) instants.push_back(Instant::AtSeq(s));
    std::set<int64_t> times;
    for (const Segment& s : all_)
      for (const Entry& e : s.entries) times.insert(e.time_ns);
    for (int64_t t : times) {
      instants.push_back(Instant::AtTime(t));
      instants.push_back(Instant::AtTime(t - 1));
    }
    if (sample > 0 && instants.size() > sample) {
      std::shuffle(instants.begin(), instants.end(), rng_);
      instants.resize(sample);
    }
    instants.push_back(Instant::Latest());
    for (const Instant& at : instants) {
      auto loaded = history_->LoadTimeline(at);
      ASSERT_TRUE(loaded.ok()) << when << ": " << loaded.status().ToString();
      ASSERT_EQ(States(Replay(*loaded, at)), States(Replay(all_, at)))
          << when << ": seq " << at.seq << " time " << at.time_ns;
    }
  }

  size_t SegmentsARestoreReads() {
    auto loaded = history_->LoadTimeline();
    EXPECT_TRUE(loaded.ok());
    return loaded.ok() ? loaded->size() : 0;
  }

  TempDir dir_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<HistoryStore> history_;
  std::mt19937_64 rng_{20261206};
  uint64_t seq_ = 0;
  int64_t time_ = 1'000'000;
  std::vector<Segment> all_;
};

TEST_F(CompactionStoreTest, LevelsKeepEveryInstantAndAReadOfFewSegments) {
  ASSERT_NO_FATAL_FAILURE(AppendRandomDeltas(100));
  const size_t before = SegmentsARestoreReads();
  EXPECT_EQ(before, 100u);
  CompactionOptions o;
  o.policy.fanout = {4, 5, 3};
  auto r = RunCompaction(*history_, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // 100 level-0 -> 25 level-1 -> 5 level-2 -> 1 level-3 (3 of level 2 merged, 2 left).
  EXPECT_EQ(r->deltas_before, 100u);
  EXPECT_EQ(r->deltas_after, 3u);
  EXPECT_EQ(r->passes, 3u);
  EXPECT_EQ(r->segments_deleted, 100u + 25 + 3);
  EXPECT_EQ(history_->Usage()->segment_objects, 3u);  // the inputs are gone from the target
  const size_t after = SegmentsARestoreReads();
  std::printf("segments a restore of the latest state reads: %zu before compaction, %zu after\n",
              before, after);
  EXPECT_EQ(after, 3u);
  ASSERT_NO_FATAL_FAILURE(ExpectEveryInstantRestores("after compaction"));
  // Idempotent: nothing left to do.
  auto again = RunCompaction(*history_, o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->segments_written + again->segments_deleted, 0u);
}

// Randomized: appends, compactions (some stopped between the writes of the
// merged segments and the deletes of their inputs, as a kill -9 would) and
// bases interleave; after each step every instant restores the same tree.
TEST_F(CompactionStoreTest, PropertyCrashesAppendsAndBasesNeverChangeAnInstant) {
  for (int round = 0; round < 12; ++round) {
    ASSERT_NO_FATAL_FAILURE(AppendRandomDeltas(1 + static_cast<int>(rng_() % 15)));
    CompactionOptions o;
    o.policy.fanout = {3, 3, 2};
    o.policy.max_entries = 1 + rng_() % 20;
    o.delete_inputs = rng_() % 3 != 0;  // a third of the runs "crash" before deleting
    auto r = RunCompaction(*history_, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_NO_FATAL_FAILURE(ExpectEveryInstantRestores("round " + std::to_string(round), 60));
    if (rng_() % 2 == 0) {
      auto b = WriteBaseIfDue(*history_, BasePolicy{.interval_ns = 0, .every_entries = 5});
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      ASSERT_NO_FATAL_FAILURE(ExpectEveryInstantRestores("base " + std::to_string(round), 60));
    }
  }
  // A last clean run leaves no leftover.
  CompactionOptions o;
  o.policy.fanout = {3, 3, 2};
  ASSERT_TRUE(RunCompaction(*history_, o).ok());
  auto list = history_->ListSegments();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->covered.empty());
  ASSERT_NO_FATAL_FAILURE(ExpectEveryInstantRestores("final", 300));
}

TEST_F(CompactionStoreTest, APeriodicBaseBoundsWhatARestoreReads) {
  ASSERT_NO_FATAL_FAILURE(AppendRandomDeltas(39));
  // The newest delta holds an entry (its header then tells the newest time).
  ++seq_;
  time_ += 10;
  Segment last = MakeDelta({FilePut(seq_, "a", "last", time_)}, 0, seq_, seq_);
  ASSERT_TRUE(history_->AppendSegment(last).ok());
  all_.push_back(last);
  EXPECT_EQ(SegmentsARestoreReads(), 40u);
  auto first_entry =
      std::find_if(all_.begin(), all_.end(), [](const Segment& s) { return s.header.count > 0; });
  ASSERT_NE(first_entry, all_.end());
  const int64_t span = time_ - first_entry->header.first_time_ns;
  // Not due: the history spans less than the interval. Two headers tell.
  auto none = WriteBaseIfDue(*history_, BasePolicy{.interval_ns = span + 1});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->written);
  EXPECT_EQ(none->segments_read, 0u);
  EXPECT_EQ(none->headers_read, 2u);
  // Exactly due.
  auto b = WriteBaseIfDue(*history_, BasePolicy{.interval_ns = span});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_TRUE(b->written);
  EXPECT_EQ(b->segments_read, 40u);
  EXPECT_EQ(b->written->id.kind, SegmentKind::kBase);
  EXPECT_EQ(b->written->id.last_seq, seq_);
  EXPECT_EQ(SegmentsARestoreReads(), 1u);  // the base alone
  // Nothing new since the base: not due, nothing read.
  auto again = WriteBaseIfDue(*history_, BasePolicy{.interval_ns = 1});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->written);
  EXPECT_EQ(again->segments_read, 0u);
  ASSERT_NO_FATAL_FAILURE(AppendRandomDeltas(5));
  EXPECT_EQ(SegmentsARestoreReads(), 6u);  // the base and what follows it
  ASSERT_NO_FATAL_FAILURE(ExpectEveryInstantRestores("after a base", 200));
}

// A restore that lists the timeline while a compaction deletes what it
// merged finds a segment gone between its List and its Get: it lists again
// (the merged segment was written before the deletes) instead of failing.
TEST_F(CompactionStoreTest, ARestoreDuringACompactionListsAgain) {
  ASSERT_NO_FATAL_FAILURE(AppendRandomDeltas(6));
  const uint64_t fixed = seq_;  // the tree there never changes
  const auto want = States(Replay(all_, Instant::AtSeq(fixed)));
  auto inner = LocalStore::Open(dir_.path() + "/target");
  ASSERT_TRUE(inner.ok());
  FaultyStore slow(std::move(inner).value());
  slow.Delay("Get", std::chrono::milliseconds(3));  // widen the window between List and Get
  HistoryStore reader(slow);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 40; ++i) {
      AppendRandomDeltas(2);
      CompactionOptions o;
      o.policy.fanout = {2, 2, 2, 2};
      ASSERT_TRUE(RunCompaction(*history_, o).ok());
    }
    done = true;
  });
  int loads = 0;
  std::string error;
  // At least a few loads, even when the writer is done first.
  while ((!done || loads < 3) && error.empty()) {
    auto got = reader.LoadTimeline(Instant::AtSeq(fixed));
    if (!got.ok()) {
      error = got.status().ToString();
    } else if (States(Replay(*got, Instant::AtSeq(fixed))) != want) {
      error = "a wrong tree at seq " + std::to_string(fixed);
    }
    ++loads;
  }
  writer.join();
  EXPECT_EQ(error, "") << "after " << loads << " loads";
  EXPECT_GT(loads, 0);
}

}  // namespace
}  // namespace scribefs::history
