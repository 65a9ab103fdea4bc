// Retention decisions (history/retention.h), pure: durations, the window's
// start at its boundary, restic's hourly/daily/checkpoint rules, the walk of
// a timeline with holes and bases, and the prune plan.
#include "history/retention.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <time.h>

#include "tests/history/history_test_util.h"

namespace scribefs::history {
namespace {

using namespace history::testing;  // NOLINT: the builders

constexpr int64_t kS = kNsPerSecond;
constexpr int64_t kH = 3600 * kS;
constexpr int64_t kD = 24 * kH;
// 2026-12-01T00:00:00Z
constexpr int64_t kDay0 = 1796083200LL * kS;

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Hours and days are local time: make the test's local time UTC.
    setenv("TZ", "UTC0", 1);
    tzset();
  }
};

std::vector<uint64_t> Seqs(const RetentionDecision& d) {
  std::vector<uint64_t> out;
  for (const KeptPoint& k : d.older) out.push_back(k.state.seq);
  return out;
}

TEST_F(RetentionTest, ParsesDurations) {
  EXPECT_EQ(ParseRetentionDuration("7d").value(), 7 * kD);
  EXPECT_EQ(ParseRetentionDuration("2w").value(), 14 * kD);
  EXPECT_EQ(ParseRetentionDuration("12h").value(), 12 * kH);
  EXPECT_EQ(ParseRetentionDuration("1.5h").value(), 90 * 60 * kS);
  EXPECT_EQ(ParseRetentionDuration("30m").value(), 1800 * kS);
  EXPECT_EQ(ParseRetentionDuration("30min").value(), 1800 * kS);
  EXPECT_EQ(ParseRetentionDuration("90s").value(), 90 * kS);
  EXPECT_EQ(ParseRetentionDuration("90").value(), 90 * kS);
  EXPECT_EQ(ParseRetentionDuration("500ms").value(), 500'000'000);
  EXPECT_EQ(ParseRetentionDuration("0").value(), 0);
  for (const char* bad : {"", "-1d", "d", "7x", "7 d", "inf", "nan", "1e300d", "+3h", " 3h"}) {
    auto r = ParseRetentionDuration(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), EINVAL);
    }
  }
  EXPECT_EQ(FormatRetentionDuration(7 * kD), "1w");
  EXPECT_EQ(FormatRetentionDuration(3 * kD), "3d");
  EXPECT_EQ(FormatRetentionDuration(90 * kS), "90s");
  EXPECT_EQ(FormatRetentionDuration(0), "0");
}

TEST_F(RetentionTest, WindowStartIsTheNewestStateAtOrBeforeTheCutoff) {
  const int64_t now = kDay0 + 10 * kH;
  std::vector<StatePoint> states = {{1, now - 5 * kH},
                                    {2, now - 3 * kH},
                                    {3, now - 2 * kH},
                                    {4, now - 2 * kH + 1},
                                    {5, now - 1 * kH}};
  RetentionPolicy p;
  p.retention_ns = 2 * kH;
  auto d = DecideRetention(states, {}, p, now);
  ASSERT_TRUE(d.window_start);
  EXPECT_EQ(d.window_start->seq, 3u);  // stored exactly at the cutoff: the state at it
  EXPECT_EQ(d.cutoff_ns, now - 2 * kH);
  EXPECT_EQ(Seqs(d), (std::vector<uint64_t>{3}));
  EXPECT_EQ(d.older[0].reasons, (std::vector<std::string>{"window start"}));
  // One ns later the window no longer reaches seq 4's time either.
  d = DecideRetention(states, {}, p, now + 1);
  EXPECT_EQ(d.window_start->seq, 4u);
  // Everything newer than the cutoff: nothing is old.
  p.retention_ns = 6 * kH;
  d = DecideRetention(states, {}, p, now);
  EXPECT_FALSE(d.window_start);
  EXPECT_TRUE(d.older.empty());
  // No states at all.
  EXPECT_FALSE(DecideRetention({}, {}, p, now).window_start);
  // --retention 0: the latest state is the window's start.
  p.retention_ns = 0;
  d = DecideRetention(states, {}, p, now);
  EXPECT_EQ(d.window_start->seq, 5u);
}

TEST_F(RetentionTest, KeepHourlyKeepsTheLastStateOfEachOfTheLastNHoursThatHaveOne) {
  // Hours 0..5 of day 0 with states at :10 and :50, except hour 3 (none).
  std::vector<StatePoint> states;
  uint64_t seq = 0;
  for (int h = 0; h < 6; ++h) {
    if (h == 3) continue;
    states.push_back({++seq, kDay0 + h * kH + 10 * 60 * kS});
    states.push_back({++seq, kDay0 + h * kH + 50 * 60 * kS});
  }
  // seqs: h0 1,2  h1 3,4  h2 5,6  h4 7,8  h5 9,10
  const int64_t now = kDay0 + 5 * kH + 55 * 60 * kS;
  RetentionPolicy p;
  p.retention_ns = 30 * 60 * kS;  // cutoff 5:25: window start is seq 9 (5:10)
  p.keep_hourly = 4;              // hours 5, 4, 2, 1 (3 has no state): their last states
  auto d = DecideRetention(states, {}, p, now);
  ASSERT_TRUE(d.window_start);
  EXPECT_EQ(d.window_start->seq, 9u);
  EXPECT_EQ(Seqs(d), (std::vector<uint64_t>{4, 6, 8, 9}));  // 10 is in the window
  for (const KeptPoint& k : d.older) {
    if (k.state.seq != 9) {
      EXPECT_EQ(k.reasons, (std::vector<std::string>{"hourly"}));
    }
  }
  p.keep_hourly = 100;  // more hours than there are: one per hour with a state
  EXPECT_EQ(Seqs(DecideRetention(states, {}, p, now)), (std::vector<uint64_t>{2, 4, 6, 8, 9}));
}

TEST_F(RetentionTest, KeepDailyUsesCalendarDaysAndTheirBoundaries) {
  // A state one ns before midnight and one at midnight fall on two days.
  std::vector<StatePoint> states = {
      {1, kDay0 + 1 * kH},      {2, kDay0 + kD - 1},          {3, kDay0 + kD},
      {4, kDay0 + kD + 5 * kH}, {5, kDay0 + 2 * kD + 1 * kH}, {6, kDay0 + 3 * kD + 1 * kH}};
  RetentionPolicy p;
  p.retention_ns = kH;
  p.keep_daily = 3;  // days 3, 2, 1: their last states 6 (window), 5, 4
  const int64_t now = kDay0 + 3 * kD + 12 * kH;
  auto d = DecideRetention(states, {}, p, now);
  EXPECT_EQ(d.window_start->seq, 6u);
  EXPECT_EQ(Seqs(d), (std::vector<uint64_t>{4, 5, 6}));
  p.keep_daily = 4;
  EXPECT_EQ(Seqs(DecideRetention(states, {}, p, now)), (std::vector<uint64_t>{2, 4, 5, 6}));
  // hourly and daily together: the reasons add up on a shared point.
  p.keep_hourly = 2;
  d = DecideRetention(states, {}, p, now);
  EXPECT_EQ(Seqs(d), (std::vector<uint64_t>{2, 4, 5, 6}));
  EXPECT_EQ(d.older[2].reasons, (std::vector<std::string>{"hourly", "daily"}));
}

TEST_F(RetentionTest, KeepCheckpointsKeepsTheNNewestCheckpointStates) {
  std::vector<StatePoint> states = {{10, 10 * kH}, {20, 20 * kH}, {30, 30 * kH}, {40, 40 * kH}};
  std::vector<CheckpointPoint> cps = {{"early", 5, 5 * kH},  // before any state
                                      {"a", 15, 15 * kH},    // state 10
                                      {"b", 20, 20 * kH},    // state 20 exactly
                                      {"c", 35, 35 * kH}};   // state 30
  RetentionPolicy p;
  p.retention_ns = 1 * kH;  // window start: 40
  p.keep_checkpoints = 2;   // c and b
  auto d = DecideRetention(states, cps, p, 41 * kH);
  EXPECT_EQ(Seqs(d), (std::vector<uint64_t>{20, 30, 40}));
  EXPECT_EQ(d.older[0].reasons, (std::vector<std::string>{"checkpoint b"}));
  EXPECT_EQ(d.older[1].reasons, (std::vector<std::string>{"checkpoint c"}));
  p.keep_checkpoints = 10;
  d = DecideRetention(states, cps, p, 41 * kH);
  EXPECT_EQ(Seqs(d), (std::vector<uint64_t>{10, 20, 30, 40}));
  EXPECT_EQ(d.checkpoints_without_state, (std::vector<std::string>{"early"}));
  p.keep_checkpoints = 0;
  EXPECT_EQ(Seqs(DecideRetention(states, cps, p, 41 * kH)), (std::vector<uint64_t>{40}));
}

// The walk sees what a restore can reach: a hole makes the entries after it
// unreachable until a base; next_entry is set only without a hole between.
TEST_F(RetentionTest, WalkStopsAtAHoleAndResumesAtABase) {
  std::vector<Segment> deltas = {Delta({FilePut(1, "a", "1"), FilePut(2, "a", "2")}),
                                 Delta({FilePut(3, "b", "3")}),
                                 // 4..5 missing
                                 Delta({FilePut(6, "c", "6"), FilePut(7, "c", "7")}),
                                 Delta({FilePut(8, "d", "8"), FilePut(9, "d", "9")})};
  Tree at7;
  at7["a"] = {FilePut(2, "a", "2").state, 2, 2000};
  Segment base7 = MakeBase(at7, 7, 7000);
  std::vector<const Segment*> bases = {&base7};
  std::vector<const Segment*> ds;
  for (const Segment& s : deltas) ds.push_back(&s);
  TimelineWalk walk;
  std::vector<std::pair<uint64_t, size_t>> sizes;
  WalkTimeline(
      bases, ds, [&](const StatePoint& p, const Tree& t) { sizes.emplace_back(p.seq, t.size()); },
      &walk);
  std::vector<uint64_t> seqs;
  for (const StatePoint& p : walk.states) seqs.push_back(p.seq);
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2, 3, 7, 8, 9}));
  EXPECT_EQ(sizes, (std::vector<std::pair<uint64_t, size_t>>{
                       {1, 1}, {2, 1}, {3, 2}, {7, 1}, {8, 2}, {9, 2}}));
  ASSERT_TRUE(walk.next_entry[0]);
  EXPECT_EQ(walk.next_entry[0]->seq, 2u);
  EXPECT_FALSE(walk.next_entry[2]);  // 3 is followed by the hole
  ASSERT_TRUE(walk.next_entry[3]);
  EXPECT_EQ(walk.next_entry[3]->seq, 8u);
  EXPECT_FALSE(walk.next_entry[5]);  // the latest
}

TEST_F(RetentionTest, PlanWritesBasesAndSentinelsAndDeletesOnlyWhatNoPointNeeds) {
  // Deltas [1..2] [3..4] [5..6] [7..8]; an old base at 2; window start 6.
  SegmentList list;
  auto ref = [](SegmentKind k, int level, uint64_t a, uint64_t b) {
    SegmentId id{k, level, a, b};
    return SegmentRef{id, SegmentKey(id), 100};
  };
  list.bases = {ref(SegmentKind::kBase, 0, 1, 2)};
  list.deltas = {ref(SegmentKind::kDelta, 1, 1, 4), ref(SegmentKind::kDelta, 0, 5, 6),
                 ref(SegmentKind::kDelta, 0, 7, 8)};
  list.covered = {ref(SegmentKind::kDelta, 0, 1, 2), ref(SegmentKind::kDelta, 0, 3, 4)};
  TimelineWalk walk;
  for (uint64_t s = 1; s <= 8; ++s) {
    walk.states.push_back({s, static_cast<int64_t>(s) * kH});
    walk.next_entry.push_back(s < 8 ? std::optional<Entry>(FilePut(s + 1, "f", "x"))
                                    : std::nullopt);
  }
  RetentionDecision d;
  d.window_start = StatePoint{6, 6 * kH};
  d.older = {{{3, 3 * kH}, {"hourly"}}, {{6, 6 * kH}, {"window start"}}};
  PrunePlan plan = PlanPrune(list, d, walk);
  ASSERT_EQ(plan.bases_to_write.size(), 2u);
  EXPECT_EQ(plan.bases_to_write[0].seq, 3u);
  EXPECT_EQ(plan.bases_to_write[1].seq, 6u);
  ASSERT_EQ(plan.sentinels.size(), 1u);  // after 3; none after the window start
  EXPECT_EQ(plan.sentinels[0].header.id(), (SegmentId{SegmentKind::kDelta, 0, 4, 4}));
  std::vector<std::string> deleted;
  for (const SegmentRef& r : plan.segments_to_delete) deleted.push_back(r.key);
  std::sort(deleted.begin(), deleted.end());
  std::vector<std::string> expected = {list.bases[0].key, list.deltas[0].key, list.deltas[1].key,
                                       list.covered[0].key, list.covered[1].key};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(deleted, expected);
  // Nothing older than the window: nothing to do.
  EXPECT_TRUE(PlanPrune(list, RetentionDecision{}, walk).segments_to_delete.empty());
}

}  // namespace
}  // namespace scribefs::history
