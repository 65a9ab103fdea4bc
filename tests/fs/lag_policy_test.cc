// LagPolicy: no throttle under the soft zone, delays that grow with the
// overshoot inside it, a hold at the bound, hysteresis on release, and the
// worse of two bounds deciding.
#include "fs/lag_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace scribefs {
namespace {

using ::testing::HasSubstr;
constexpr uint64_t kMiB = 1 << 20;

LagPolicy PendingOnly(uint64_t bytes) { return LagPolicy({std::nullopt, bytes}); }

TEST(LagPolicy, NoBoundNeverThrottles) {
  LagPolicy p({});
  EXPECT_FALSE(p.bounds().any());
  auto d = p.Decide({1e6, 1ull << 40}, ThrottleState::kNone);
  EXPECT_EQ(d.state, ThrottleState::kNone);
  EXPECT_TRUE(d.reason.empty());
}

TEST(LagPolicy, UnderTheSoftZoneNothingHappens) {
  auto p = PendingOnly(8 * kMiB);
  auto d = p.Decide({0, 6 * kMiB - 1}, ThrottleState::kNone);  // < 75 %
  EXPECT_EQ(d.state, ThrottleState::kNone);
  EXPECT_EQ(d.delay.count(), 0);
}

TEST(LagPolicy, SoftZoneDelaysGrowWithTheOvershoot) {
  auto p = PendingOnly(8 * kMiB);
  std::chrono::microseconds last{0};
  for (uint64_t bytes : {6 * kMiB, 6 * kMiB + kMiB / 2, 7 * kMiB, 7 * kMiB + kMiB / 2,
                         8 * kMiB - 1}) {
    auto d = p.Decide({0, bytes}, ThrottleState::kNone);
    EXPECT_EQ(d.state, ThrottleState::kSlowed) << bytes;
    EXPECT_GE(d.delay, LagPolicy::kMinDelay);
    EXPECT_LE(d.delay, LagPolicy::kMaxDelay);
    EXPECT_GT(d.delay, last) << "the delay must grow with the overshoot, at " << bytes;
    last = d.delay;
    EXPECT_THAT(d.reason, HasSubstr("pending"));
    EXPECT_THAT(d.reason, HasSubstr("75 %"));
  }
  // At 75 % exactly: the smallest delay; just under the bound: nearly the largest.
  EXPECT_EQ(p.Decide({0, 6 * kMiB}, ThrottleState::kNone).delay, LagPolicy::kMinDelay);
  EXPECT_GT(last, LagPolicy::kMaxDelay * 9 / 10);
}

TEST(LagPolicy, AtOrOverTheBoundHolds) {
  auto p = PendingOnly(8 * kMiB);
  for (uint64_t bytes : {8 * kMiB, 9 * kMiB + kMiB / 10, 100 * kMiB}) {
    auto d = p.Decide({0, bytes}, ThrottleState::kNone);
    EXPECT_EQ(d.state, ThrottleState::kHeld) << bytes;
  }
  EXPECT_EQ(p.Decide({0, 9 * kMiB + kMiB / 10}, ThrottleState::kNone).reason,
            "pending 9.1 MiB > 8.0 MiB");
}

TEST(LagPolicy, HoldReleasesOnlyUnderNinetyPercent) {
  auto p = PendingOnly(10 * kMiB);
  // Back under the bound but above 90 %: still held (no flapping).
  auto d = p.Decide({0, 95 * kMiB / 10}, ThrottleState::kHeld);
  EXPECT_EQ(d.state, ThrottleState::kHeld);
  EXPECT_THAT(d.reason, HasSubstr("90 %"));
  // The same backlog coming from below only slows.
  EXPECT_EQ(p.Decide({0, 95 * kMiB / 10}, ThrottleState::kSlowed).state, ThrottleState::kSlowed);
  EXPECT_EQ(p.Decide({0, 95 * kMiB / 10}, ThrottleState::kNone).state, ThrottleState::kSlowed);
  // At or under 90 %: released (into the soft zone: slowed).
  EXPECT_EQ(p.Decide({0, 9 * kMiB}, ThrottleState::kHeld).state, ThrottleState::kSlowed);
  // Far under: nothing at all.
  EXPECT_EQ(p.Decide({0, kMiB}, ThrottleState::kHeld).state, ThrottleState::kNone);
}

TEST(LagPolicy, LagBoundAlone) {
  LagPolicy p({2.0, std::nullopt});
  EXPECT_EQ(p.Decide({1.0, 1ull << 40}, ThrottleState::kNone).state, ThrottleState::kNone)
      << "without --max-pending, bytes do not count";
  EXPECT_EQ(p.Decide({1.6, 0}, ThrottleState::kNone).state, ThrottleState::kSlowed);
  auto d = p.Decide({2.5, 0}, ThrottleState::kNone);
  EXPECT_EQ(d.state, ThrottleState::kHeld);
  EXPECT_EQ(d.reason, "lag 2.5 s > 2 s");
}

// Backlog with the uploader's queue and pace (fs/lag_policy.h).
Backlog Queue(double age_s, uint64_t paths, std::optional<double> per_path, double stalled_s = 0) {
  Backlog b;
  b.oldest_pending_s = age_s;
  b.queued_paths = paths;
  b.seconds_per_path = per_path;
  b.stalled_s = stalled_s;
  return b;
}

TEST(LagPolicy, ExpectedLagIsTheAgePlusTheQueueAtTheUploadersPace) {
  LagPolicy p({2.0, std::nullopt});
  EXPECT_DOUBLE_EQ(p.ExpectedLag(Queue(0.5, 10, 0.1)), 1.5);
  EXPECT_EQ(p.Decide(Queue(0.5, 10, 0.1), ThrottleState::kNone).state, ThrottleState::kSlowed);
  auto d = p.Decide(Queue(0.5, 20, 0.1), ThrottleState::kNone);
  EXPECT_EQ(d.state, ThrottleState::kHeld);
  EXPECT_EQ(d.reason, "lag 2.5 s > 2 s") << "the reason names the expected lag, not the age";
  // A fast target: the same queue is nothing.
  EXPECT_EQ(p.Decide(Queue(0.5, 20, 0.01), ThrottleState::kNone).state, ThrottleState::kNone);
  // Nothing pending: no lag, whatever the queue says.
  EXPECT_EQ(p.ExpectedLag(Queue(0, 5, 1.0)), 0);
}

TEST(LagPolicy, UnknownPaceHoldsTheFirstBurstRightAfterStart) {
  // No path stored yet: each queued path counts as half the bound, so a
  // writer's first burst is held at two queued paths, however young they are.
  LagPolicy p({2.0, std::nullopt});
  EXPECT_EQ(p.Decide(Queue(0.1, 1, std::nullopt), ThrottleState::kNone).state,
            ThrottleState::kNone);
  EXPECT_EQ(p.Decide(Queue(0.5, 1, std::nullopt), ThrottleState::kNone).state,
            ThrottleState::kSlowed);
  EXPECT_EQ(p.Decide(Queue(0.05, 2, std::nullopt), ThrottleState::kNone).state,
            ThrottleState::kHeld);
  EXPECT_EQ(p.Decide(Queue(0.05, 20, std::nullopt), ThrottleState::kNone).state,
            ThrottleState::kHeld);
  // Once a pace is measured it decides: the same burst on a fast target passes.
  EXPECT_EQ(p.Decide(Queue(0.05, 20, 0.005), ThrottleState::kNone).state, ThrottleState::kNone);
  // The bytes bound alone does not care about the pace.
  EXPECT_EQ(PendingOnly(8 * kMiB).Decide(Queue(0.05, 20, std::nullopt), ThrottleState::kNone).state,
            ThrottleState::kNone);
}

TEST(LagPolicy, AStalledUploaderIsNoFasterThanItsStall) {
  // Measured fast a while ago, stuck for 1 s now (a target that slowed down
  // or went away): the queue drains no faster than one path per stall.
  LagPolicy p({2.0, std::nullopt});
  EXPECT_DOUBLE_EQ(p.ExpectedLag(Queue(0.2, 2, 0.01, 1.0)), 2.2);
  EXPECT_EQ(p.Decide(Queue(0.2, 2, 0.01, 1.0), ThrottleState::kNone).state, ThrottleState::kHeld);
  EXPECT_EQ(p.Decide(Queue(0.2, 2, 0.01, 0.0), ThrottleState::kNone).state, ThrottleState::kNone);
}

TEST(LagPolicy, GrantsThePathsThatStillFitInTheBound) {
  LagPolicy p({2.0, std::nullopt});
  // 0.5 s old, 5 queued at 0.2 s: 1.5 s expected, room for 2 more paths.
  auto d = p.Decide(Queue(0.5, 5, 0.2), ThrottleState::kNone);
  EXPECT_EQ(d.paths, 2u);
  // Pace unknown (nothing stored yet): one path at a time, so that a burst
  // right after start waits for the first upload to tell the pace.
  EXPECT_EQ(p.Decide(Queue(0, 0, std::nullopt), ThrottleState::kNone).paths, 1u);
  d = p.Decide(Queue(0.1, 1, std::nullopt), ThrottleState::kNone);
  EXPECT_EQ(d.state, ThrottleState::kNone) << "the decision itself assumes half the bound";
  EXPECT_EQ(d.paths, 0u);
  // Room left, but less than one path: none, though not held.
  d = p.Decide(Queue(0.5, 1, 1.0), ThrottleState::kNone);
  EXPECT_EQ(d.state, ThrottleState::kSlowed);
  EXPECT_EQ(d.paths, 0u);
  // A stalled uploader counts at its stall.
  EXPECT_EQ(p.Decide(Queue(0.1, 1, 0.01, 0.5), ThrottleState::kNone).paths, 2u);
  // After a hold: released under 90 % with its grant; still held above it:
  // none.
  d = p.Decide(Queue(0.5, 2, 0.125), ThrottleState::kHeld);
  EXPECT_EQ(d.state, ThrottleState::kNone);
  EXPECT_EQ(d.paths, 10u) << "released: 1.25 s of room at 0.125 s a path";
  d = p.Decide(Queue(1.85, 0, 0.01), ThrottleState::kHeld);
  EXPECT_EQ(d.state, ThrottleState::kHeld);
  EXPECT_EQ(d.paths, 0u);
  // A pace of nothing: capped, not infinite.
  EXPECT_EQ(p.Decide(Queue(0.1, 1, 0.0), ThrottleState::kNone).paths, LagPolicy::kMaxPaths);
  // Without --max-lag no grant.
  EXPECT_FALSE(PendingOnly(8 * kMiB).Decide(Queue(0.5, 5, 0.2), ThrottleState::kNone).paths);
}

TEST(LagPolicy, BothBoundsTheWorseDecides) {
  LagPolicy p({2.0, 8 * kMiB});
  // Bytes fine, lag over: held for the lag.
  auto d = p.Decide({3.0, kMiB}, ThrottleState::kNone);
  EXPECT_EQ(d.state, ThrottleState::kHeld);
  EXPECT_THAT(d.reason, HasSubstr("lag"));
  // Lag fine, bytes over: held for the bytes.
  d = p.Decide({0.1, 9 * kMiB}, ThrottleState::kNone);
  EXPECT_EQ(d.state, ThrottleState::kHeld);
  EXPECT_THAT(d.reason, HasSubstr("pending"));
  // Both in the soft zone: the delay follows the larger overshoot.
  auto lag_worse = p.Decide({1.9, 6 * kMiB}, ThrottleState::kNone);
  auto bytes_worse = p.Decide({1.5, 7 * kMiB + kMiB / 2}, ThrottleState::kNone);
  EXPECT_EQ(lag_worse.state, ThrottleState::kSlowed);
  EXPECT_THAT(lag_worse.reason, HasSubstr("lag"));
  EXPECT_THAT(bytes_worse.reason, HasSubstr("pending"));
  EXPECT_GT(lag_worse.delay, p.Decide({0, 6 * kMiB}, ThrottleState::kNone).delay);
  // Held for one bound, the other drops: the hysteresis uses the worse.
  EXPECT_EQ(p.Decide({1.85, kMiB}, ThrottleState::kHeld).state, ThrottleState::kHeld);
  EXPECT_EQ(p.Decide({0.5, kMiB}, ThrottleState::kHeld).state, ThrottleState::kNone);
}

TEST(LagPolicy, HumanBytes) {
  EXPECT_EQ(HumanBytes(512), "512 B");
  EXPECT_EQ(HumanBytes(8 * kMiB), "8.0 MiB");
  EXPECT_EQ(HumanBytes(3ull << 30), "3.0 GiB");
}

}  // namespace
}  // namespace scribefs
