// MutationGate: Enter blocks only while closed, Close waits for what is in
// flight (and gives up at its deadline), deferred continuations run on the
// gate's threads once it opens, counts for status, shutdown.
#include "fs/mutation_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace scribefs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// True if f is still not ready after d.
template <typename T>
bool StillWaiting(std::future<T>& f, std::chrono::milliseconds d = 300ms) {
  return f.wait_for(d) == std::future_status::timeout;
}

TEST(MutationGate, OpenGateNeverBlocksAndCountsInFlight) {
  MutationGate gate;
  {
    auto a = gate.Enter();
    auto b = gate.Enter();
    EXPECT_EQ(gate.stats().in_flight, 2u);
    a.Release();
    EXPECT_EQ(gate.stats().in_flight, 1u);
  }
  EXPECT_EQ(gate.stats().in_flight, 0u);
  EXPECT_FALSE(gate.closed());
}

TEST(MutationGate, EnterBlocksWhileClosedAndProceedsOnOpen) {
  MutationGate gate;
  ASSERT_TRUE(gate.Close(Clock::now() + 1s).ok());
  EXPECT_TRUE(gate.closed());
  auto f = std::async(std::launch::async, [&] {
    auto p = gate.Enter();
    return Clock::now();
  });
  ASSERT_TRUE(StillWaiting(f)) << "Enter returned while the gate was closed";
  EXPECT_EQ(gate.stats().blocked, 1u);
  auto opened = Clock::now();
  EXPECT_EQ(gate.Open(), 1u) << "one operation was held";
  ASSERT_EQ(f.wait_for(2s), std::future_status::ready);
  EXPECT_GE(f.get(), opened);
  EXPECT_EQ(gate.stats().blocked, 0u);
  EXPECT_EQ(gate.stats().held_total, 1u);
}

TEST(MutationGate, CloseWaitsForOperationsInFlight) {
  MutationGate gate;
  auto pass = gate.Enter();
  auto f = std::async(std::launch::async, [&] { return gate.Close(Clock::now() + 5s); });
  ASSERT_TRUE(StillWaiting(f)) << "Close returned with an operation in flight";
  EXPECT_TRUE(gate.closed()) << "new operations must already be held while draining";
  pass.Release();
  ASSERT_EQ(f.wait_for(2s), std::future_status::ready);
  EXPECT_TRUE(f.get().ok());
  gate.Open();
}

TEST(MutationGate, CloseTimesOutAndReopens) {
  MutationGate gate;
  auto pass = gate.Enter();
  Status s = gate.Close(Clock::now() + 100ms);
  EXPECT_EQ(s.code(), ETIMEDOUT) << s.ToString();
  EXPECT_FALSE(gate.closed()) << "a failed close must leave the gate open";
  auto other = gate.Enter();  // must not block
  EXPECT_EQ(gate.stats().in_flight, 2u);
}

TEST(MutationGate, PausesDoNotNest) {
  MutationGate gate;
  ASSERT_TRUE(gate.Close(Clock::now() + 1s).ok());
  EXPECT_EQ(gate.Close(Clock::now() + 1s).code(), EBUSY);
  gate.Open();
  EXPECT_EQ(gate.Open(), 0u) << "opening an open gate is a no-op";
}

TEST(MutationGate, DeferIfClosedQueuesUntilOpenAndRunsOnAGateThread) {
  MutationGate gate;
  std::atomic<int> ran{0};
  EXPECT_FALSE(gate.DeferIfClosed([&] { ran++; })) << "open gate: nothing is deferred";
  EXPECT_EQ(ran.load(), 0);
  ASSERT_TRUE(gate.Close(Clock::now() + 1s).ok());
  std::promise<std::thread::id> where;
  EXPECT_TRUE(gate.DeferIfClosed([&] {
    ran++;
    where.set_value(std::this_thread::get_id());
  }));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(ran.load(), 0) << "a deferred operation ran while the gate was closed";
  EXPECT_EQ(gate.stats().deferred, 1u);
  EXPECT_EQ(gate.Open(), 1u);
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 2s));
  EXPECT_EQ(ran.load(), 1);
  EXPECT_NE(where.get_future().get(), std::this_thread::get_id());
  EXPECT_EQ(gate.stats().deferred, 0u);
}

TEST(MutationGate, ContinuationIsDeferredAgainWhenTheGateClosedAgain) {
  MutationGate gate;
  std::atomic<int> attempts{0}, done{0};
  std::function<void()> op;
  op = [&] {
    attempts++;
    if (gate.DeferIfClosed(op)) return;
    auto p = gate.Enter();
    done++;
  };
  ASSERT_TRUE(gate.Close(Clock::now() + 1s).ok());
  op();
  EXPECT_EQ(done.load(), 0);
  // Reopen and close again at once: the continuation may find it closed.
  gate.Open();
  (void)gate.Close(Clock::now() + 1s);
  std::this_thread::sleep_for(100ms);
  gate.Open();
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 2s));
  EXPECT_EQ(done.load(), 1) << "the operation must run exactly once, after " << attempts
                            << " attempts";
}

TEST(MutationGate, ManyHeldOperationsAreReleasedInParallel) {
  MutationGate gate(8);
  ASSERT_TRUE(gate.Close(Clock::now() + 1s).ok());
  std::atomic<int> done{0};
  for (int i = 0; i < 80; ++i) {
    ASSERT_TRUE(gate.DeferIfClosed([&] {
      std::this_thread::sleep_for(20ms);
      done++;
    }));
  }
  auto start = Clock::now();
  EXPECT_EQ(gate.Open(), 80u);
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 10s));
  EXPECT_EQ(done.load(), 80);
  // 80 x 20 ms one at a time would take 1.6 s; 8 threads take ~0.2 s.
  EXPECT_LT(Clock::now() - start, 1s);
}

TEST(MutationGate, ShutdownOpensForGood) {
  MutationGate gate;
  ASSERT_TRUE(gate.Close(Clock::now() + 1s).ok());
  auto f = std::async(std::launch::async, [&] { auto p = gate.Enter(); });
  ASSERT_TRUE(StillWaiting(f));
  EXPECT_EQ(gate.Shutdown(), 1u);
  ASSERT_EQ(f.wait_for(2s), std::future_status::ready);
  EXPECT_EQ(gate.Close(Clock::now() + 1s).code(), ESHUTDOWN);
  EXPECT_FALSE(gate.closed());
  EXPECT_TRUE(gate.stats().shut_down);
}

TEST(MutationGate, DestructorRunsWhatIsQueued) {
  std::atomic<int> ran{0};
  {
    MutationGate gate;
    ASSERT_TRUE(gate.Close(Clock::now() + 1s).ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(gate.DeferIfClosed([&] { ran++; }));
  }
  EXPECT_EQ(ran.load(), 3) << "held operations must still be answered at shutdown";
}

// Issue 10, item 10: the copies of held writes are bounded in total.
TEST(MutationGate, HeldBytesAreBounded) {
  MutationGate gate(2, 10);
  EXPECT_EQ(gate.max_held_bytes(), 10u);
  EXPECT_TRUE(gate.ReserveHeldBytes(6));
  EXPECT_FALSE(gate.ReserveHeldBytes(5)) << "11 bytes would pass the bound of 10";
  EXPECT_TRUE(gate.ReserveHeldBytes(4));
  EXPECT_EQ(gate.stats().held_bytes, 10u);
  gate.ReturnHeldBytes(6);
  EXPECT_TRUE(gate.ReserveHeldBytes(5));
  gate.ReturnHeldBytes(9);
  EXPECT_EQ(gate.stats().held_bytes, 0u);
  EXPECT_EQ(MutationGate().max_held_bytes(), 64u << 20) << "the default";
}

// ---- bounded lag: the throttle, and how it composes with pauses ------------

// An operation as the FUSE adapter runs one: it first offers itself to
// DeferIfClosed and, when not taken, proceeds (counted in `ran`). A deferred
// one re-runs from the top on a gate thread.
struct Rerun {
  MutationGate* gate;
  std::atomic<int>* ran;
  MutationKind kind = MutationKind::kData;
  void operator()() const {
    if (gate->DeferIfClosed(*this, kind)) return;
    (*ran)++;
  }
};

TEST(MutationGateThrottle, HoldStopsDataMutationsNotClosesAndReleasesOnEnd) {
  MutationGate gate;
  gate.SetThrottle(ThrottleState::kHeld);
  EXPECT_TRUE(gate.closed()) << "the fast-path hint must see the hold";
  auto blocked = std::async(std::launch::async, [&] { auto p = gate.Enter(); });
  ASSERT_TRUE(StillWaiting(blocked)) << "a data mutation passed a throttle hold";
  {
    auto finish = gate.Enter(MutationKind::kFinish);  // close/fsync: never throttled
    EXPECT_EQ(gate.stats().in_flight, 1u);
  }
  std::atomic<int> ran{0};
  Rerun{&gate, &ran}();
  Rerun{&gate, &ran, MutationKind::kFinish}();
  EXPECT_EQ(ran.load(), 1) << "only the close ran";
  EXPECT_EQ(gate.stats().deferred, 1u);
  EXPECT_EQ(gate.stats().throttle, ThrottleState::kHeld);
  gate.SetThrottle(ThrottleState::kNone);
  ASSERT_EQ(blocked.wait_for(2s), std::future_status::ready);
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 2s));
  EXPECT_EQ(ran.load(), 2);
  EXPECT_FALSE(gate.closed());
}

TEST(MutationGateThrottle, ResumeReleasesOnlyThePause) {
  MutationGate gate;
  gate.SetThrottle(ThrottleState::kHeld);
  // A pause (checkpoint) while throttled: nothing is in flight, so it drains.
  ASSERT_TRUE(gate.Close(Clock::now() + 1s).ok());
  std::atomic<int> data{0}, finish{0};
  Rerun{&gate, &data}();
  Rerun{&gate, &finish, MutationKind::kFinish}();
  EXPECT_EQ(data + finish, 0) << "a pause holds both kinds";
  EXPECT_EQ(gate.Open(), 2u);
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 2s));
  EXPECT_EQ(finish.load(), 1) << "the resume releases what only the pause held";
  EXPECT_EQ(data.load(), 0) << "the resume released a throttle hold";
  EXPECT_EQ(gate.stats().deferred, 1u) << "the data mutation is held again";
  auto blocked = std::async(std::launch::async, [&] { auto p = gate.Enter(); });
  EXPECT_TRUE(StillWaiting(blocked));
  gate.SetThrottle(ThrottleState::kNone);
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 2s));
  EXPECT_EQ(data.load(), 1);
  ASSERT_EQ(blocked.wait_for(2s), std::future_status::ready);
}

TEST(MutationGateThrottle, EndOfHoldDoesNotReleaseAPause) {
  MutationGate gate;
  gate.SetThrottle(ThrottleState::kHeld);
  ASSERT_TRUE(gate.Close(Clock::now() + 1s).ok());
  std::atomic<int> ran{0};
  Rerun{&gate, &ran}();
  auto blocked = std::async(std::launch::async, [&] { auto p = gate.Enter(); });
  gate.SetThrottle(ThrottleState::kNone);
  EXPECT_TRUE(StillWaiting(blocked)) << "the throttle's end released a pause";
  EXPECT_EQ(ran.load(), 0);
  EXPECT_TRUE(gate.closed());
  EXPECT_EQ(gate.Close(Clock::now() + 1s).code(), EBUSY) << "still paused";
  gate.Open();
  ASSERT_EQ(blocked.wait_for(2s), std::future_status::ready);
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 2s));
  EXPECT_EQ(ran.load(), 1);
}

TEST(MutationGateThrottle, SlowedDelaysEachDataMutationOnceWithoutBlockingTheCaller) {
  MutationGate gate;
  gate.SetThrottle(ThrottleState::kSlowed, 150ms);
  std::atomic<int> ran{0}, finish{0};
  auto t0 = Clock::now();
  for (int i = 0; i < 4; ++i) Rerun{&gate, &ran}();
  Rerun{&gate, &finish, MutationKind::kFinish}();
  EXPECT_LT(Clock::now() - t0, 100ms) << "the caller (a FUSE worker) must not wait out the delay";
  EXPECT_EQ(finish.load(), 1) << "closes are not delayed";
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(gate.stats().delayed, 4u);
  {
    auto p = gate.Enter();  // Enter itself never delays
    EXPECT_LT(Clock::now() - t0, 100ms);
  }
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 2s));
  EXPECT_GE(Clock::now() - t0, 150ms);
  EXPECT_EQ(ran.load(), 4) << "each delayed operation ran exactly once, after its delay";
  EXPECT_EQ(gate.stats().delayed_total, 4u);
  EXPECT_EQ(gate.stats().delayed, 0u);
  gate.SetThrottle(ThrottleState::kNone);
  EXPECT_FALSE(gate.closed());
  Rerun{&gate, &ran}();
  EXPECT_EQ(ran.load(), 5) << "no delay once the throttle ends";
}

TEST(MutationGateThrottle, SpentWriteBudgetHoldsUntilTheNextDecision) {
  MutationGate gate;
  gate.ChargeWrite(1 << 30);  // no budget: no limit
  EXPECT_FALSE(gate.closed());
  gate.SetWriteBudget(100);
  gate.ChargeWrite(60);
  EXPECT_FALSE(gate.closed()) << "40 bytes of the grant are left";
  gate.ChargeWrite(60);
  EXPECT_TRUE(gate.closed()) << "the grant is spent: held without waiting for the monitor";
  EXPECT_EQ(gate.stats().throttle, ThrottleState::kHeld);
  auto blocked = std::async(std::launch::async, [&] { auto p = gate.Enter(); });
  ASSERT_TRUE(StillWaiting(blocked));
  { auto finish = gate.Enter(MutationKind::kFinish); }
  // The monitor measured again: a new grant, then its decision.
  gate.SetWriteBudget(1000);
  gate.SetThrottle(ThrottleState::kNone);
  ASSERT_EQ(blocked.wait_for(2s), std::future_status::ready);
  gate.SetWriteBudget(std::nullopt);
  gate.ChargeWrite(1 << 30);
  EXPECT_FALSE(gate.closed());
}

TEST(MutationGateThrottle, SpentPathGrantHoldsDataUntilTheNextGrant) {
  MutationGate gate;
  gate.ChargePath();  // no grant: no limit
  EXPECT_FALSE(gate.closed());
  gate.SetPathBudget(2);
  gate.ChargePath();
  EXPECT_FALSE(gate.closed()) << "one path of the grant is left";
  EXPECT_EQ(gate.stats().paths_left, 1u);
  gate.ChargePath();
  EXPECT_TRUE(gate.closed()) << "the grant is spent: held without waiting for the monitor";
  EXPECT_EQ(gate.stats().throttle, ThrottleState::kNone) << "the hold is the grant's own";
  auto blocked = std::async(std::launch::async, [&] { auto p = gate.Enter(); });
  ASSERT_TRUE(StillWaiting(blocked));
  std::atomic<int> ran{0};
  EXPECT_TRUE(gate.DeferIfClosed([&] { ran++; })) << "a held FUSE request is deferred";
  { auto finish = gate.Enter(MutationKind::kFinish); }  // closes pass
  // A throttle decision alone does not end the grant's hold.
  gate.SetThrottle(ThrottleState::kNone);
  ASSERT_TRUE(StillWaiting(blocked));
  // The next grant does, and releases what it held.
  gate.SetPathBudget(5);
  ASSERT_EQ(blocked.wait_for(2s), std::future_status::ready);
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 2s));
  EXPECT_EQ(ran.load(), 1);
  // A grant of 0 holds at once; no grant at all lets everything pass.
  gate.SetPathBudget(0);
  EXPECT_TRUE(gate.closed());
  gate.SetPathBudget(std::nullopt);
  EXPECT_FALSE(gate.closed());
  auto p = gate.Enter();
}

TEST(MutationGateThrottle, ShutdownEndsASpentPathGrant) {
  MutationGate gate;
  gate.SetPathBudget(0);
  auto blocked = std::async(std::launch::async, [&] { auto p = gate.Enter(); });
  ASSERT_TRUE(StillWaiting(blocked));
  EXPECT_EQ(gate.Shutdown(), 1u);
  ASSERT_EQ(blocked.wait_for(2s), std::future_status::ready);
  gate.SetPathBudget(0);
  EXPECT_FALSE(gate.closed()) << "a grant after the unmount";
}

TEST(MutationGateThrottle, ShutdownEndsHoldsAndDelaysForGood) {
  MutationGate gate;
  gate.SetThrottle(ThrottleState::kSlowed, 10s);
  std::atomic<int> ran{0};
  Rerun{&gate, &ran}();
  gate.SetThrottle(ThrottleState::kHeld);
  Rerun{&gate, &ran}();
  auto blocked = std::async(std::launch::async, [&] { auto p = gate.Enter(); });
  ASSERT_TRUE(StillWaiting(blocked));
  EXPECT_EQ(gate.Shutdown(), 3u);
  ASSERT_EQ(blocked.wait_for(2s), std::future_status::ready);
  ASSERT_TRUE(gate.WaitReleased(Clock::now() + 2s)) << "a delay outlived the unmount";
  EXPECT_EQ(ran.load(), 2);
  gate.SetThrottle(ThrottleState::kHeld);
  EXPECT_FALSE(gate.closed()) << "a throttle after the unmount";
  auto p = gate.Enter();
}

}  // namespace
}  // namespace scribefs
