// The bandwidth limit's parser, timetable lookup, token bucket and limiter
// (uploader/bandwidth.h).
#include "uploader/bandwidth.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace scribefs {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kKiB = 1024, kMiB = 1024 * 1024;

uint64_t Rate(const std::string& s) {
  auto r = ParseRate(s);
  EXPECT_TRUE(r.ok()) << s << ": " << r.status().message();
  return r.ok() ? *r : ~0ull;
}

std::string RateError(const std::string& s) {
  auto r = ParseRate(s);
  EXPECT_FALSE(r.ok()) << s;
  return r.ok() ? "" : r.status().message();
}

std::string SpecError(const std::string& s) {
  auto r = ParseBandwidth(s);
  EXPECT_FALSE(r.ok()) << s;
  return r.ok() ? "" : r.status().message();
}

TEST(BandwidthParse, Rates) {
  EXPECT_EQ(Rate("10M"), 10 * kMiB);
  EXPECT_EQ(Rate("512K"), 512 * kKiB);
  EXPECT_EQ(Rate("512k"), 512 * kKiB);
  EXPECT_EQ(Rate("1.5M"), 3 * kMiB / 2);
  EXPECT_EQ(Rate("1G"), 1024 * kMiB);
  EXPECT_EQ(Rate("65536B"), 64 * kKiB);
  EXPECT_EQ(Rate("100"), 100 * kKiB);  // rclone: a bare number is KiB/s
  EXPECT_EQ(Rate(" 2M "), 2 * kMiB);
  EXPECT_EQ(Rate("off"), 0u);
  EXPECT_EQ(Rate("OFF"), 0u);
  EXPECT_EQ(Rate("0"), 0u);
  EXPECT_EQ(Rate("10M:100K"), 10 * kMiB);  // rclone's UP:DOWN, uploads only
}

TEST(BandwidthParse, BadRates) {
  EXPECT_NE(RateError("").find("empty rate"), std::string::npos);
  EXPECT_NE(RateError("12X").find("unknown suffix \"x\""), std::string::npos);
  EXPECT_NE(RateError("M").find("bad rate \"M\""), std::string::npos);
  EXPECT_NE(RateError("-1M").find("bad rate"), std::string::npos);
  EXPECT_NE(RateError("1.2.3M").find("unknown suffix"), std::string::npos);
  EXPECT_NE(RateError("1K").find("below the minimum of 32K"), std::string::npos);
  EXPECT_NE(RateError("99999999T").find("too large"), std::string::npos);
  EXPECT_NE(RateError("10M:zz").find("bad rate \"zz\""), std::string::npos);
  EXPECT_EQ(RateError("12X").rfind("bwlimit: ", 0), 0u);
}

TEST(BandwidthParse, Timetable) {
  auto s = ParseBandwidth("08:00,512K 19:00,10M 23:00,off");
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_TRUE(s->timetable());
  EXPECT_EQ(s->text, "08:00,512K 19:00,10M 23:00,off");
  ASSERT_EQ(s->entries.size(), 3u);
  EXPECT_EQ(s->entries[0], (BandwidthEntry{-1, 8 * 60, 512 * kKiB}));
  EXPECT_EQ(s->entries[1], (BandwidthEntry{-1, 19 * 60, 10 * kMiB}));
  EXPECT_EQ(s->entries[2], (BandwidthEntry{-1, 23 * 60, 0}));

  auto w = ParseBandwidth("Mon-00:00,512K Fri-23:59,10M Sat-10:00,1M sunday-20:00,off");
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ(w->entries[0], (BandwidthEntry{1, 0, 512 * kKiB}));
  EXPECT_EQ(w->entries[1], (BandwidthEntry{5, 23 * 60 + 59, 10 * kMiB}));
  EXPECT_EQ(w->entries[3], (BandwidthEntry{0, 20 * 60, 0}));

  auto plain = ParseBandwidth("2M");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->timetable());
  EXPECT_EQ(plain->rate, 2 * kMiB);
}

TEST(BandwidthParse, BadTimetables) {
  EXPECT_NE(SpecError("25:00,1M").find("bad time \"25:00\""), std::string::npos);
  EXPECT_NE(SpecError("08:60,1M").find("bad time \"08:60\""), std::string::npos);
  EXPECT_NE(SpecError("8,1M").find("bad time \"8\""), std::string::npos);
  EXPECT_NE(SpecError("08:00,1M 19:00").find("no ','"), std::string::npos);
  EXPECT_NE(SpecError("Foo-08:00,1M").find("unknown day \"Foo\""), std::string::npos);
  EXPECT_NE(SpecError("08:00,1Q").find("unknown suffix \"q\""), std::string::npos);
  EXPECT_NE(SpecError("08:00,1M 08:00,2M").find("two entries for Sun 08:00"), std::string::npos);
  EXPECT_NE(SpecError("08:00,1M Tue-08:00,2M").find("two entries for Tue 08:00"),
            std::string::npos);
  EXPECT_NE(SpecError("   ").find("empty value"), std::string::npos);
  // Every message says what is accepted.
  EXPECT_NE(SpecError("25:00,1M").find("expected [DAY-]HH:MM,RATE"), std::string::npos);
}

TEST(BandwidthSchedule, DailyWrapsPastMidnight) {
  auto s = ParseBandwidth("08:00,512K 19:00,10M 23:00,off");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(RateAt(*s, {3, 7 * 60 + 59}), 0u);  // before 08:00: 23:00's, from the day before
  EXPECT_EQ(RateAt(*s, {3, 8 * 60}), 512 * kKiB);
  EXPECT_EQ(RateAt(*s, {3, 18 * 60 + 59}), 512 * kKiB);
  EXPECT_EQ(RateAt(*s, {3, 19 * 60}), 10 * kMiB);
  EXPECT_EQ(RateAt(*s, {3, 23 * 60 + 30}), 0u);
  EXPECT_EQ(RateAt(*s, {0, 0}), 0u);  // Sunday 00:00: Saturday's 23:00, wrapped
  auto night = ParseBandwidth("22:00,off 06:00,1M");
  ASSERT_TRUE(night.ok());
  EXPECT_EQ(RateAt(*night, {2, 3 * 60}), 0u);
  EXPECT_EQ(RateAt(*night, {2, 12 * 60}), kMiB);
  EXPECT_EQ(RateAt(*night, {2, 23 * 60}), 0u);
}

TEST(BandwidthSchedule, Weekdays) {
  auto s = ParseBandwidth("Mon-08:00,1M Fri-18:00,off");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(RateAt(*s, {1, 7 * 60}), 0u);    // Monday before 8: the weekend's off
  EXPECT_EQ(RateAt(*s, {1, 8 * 60}), kMiB);  // office hours all week
  EXPECT_EQ(RateAt(*s, {3, 2 * 60}), kMiB);
  EXPECT_EQ(RateAt(*s, {5, 17 * 60}), kMiB);
  EXPECT_EQ(RateAt(*s, {5, 18 * 60}), 0u);
  EXPECT_EQ(RateAt(*s, {0, 12 * 60}), 0u);  // Sunday: wraps to Friday's entry
  // A day-less entry holds on every day, next to day entries.
  auto mixed = ParseBandwidth("Sat-00:00,off 09:00,2M");
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ(RateAt(*mixed, {6, 8 * 60}), 0u);
  EXPECT_EQ(RateAt(*mixed, {6, 9 * 60}), 2 * kMiB);
  EXPECT_EQ(RateAt(*mixed, {2, 8 * 60}), 2 * kMiB);  // Tuesday 8:00: Monday's 09:00
}

TEST(BandwidthFormat, Rates) {
  EXPECT_EQ(FormatRate(0), "off");
  EXPECT_EQ(FormatRate(2 * kMiB), "2.0 MiB/s");
  EXPECT_EQ(FormatRate(512 * kKiB), "512.0 KiB/s");
}

// ---- TokenBucket with a clock of our own ----------------------------------------

TEST(TokenBucket, HoldsTheRate) {
  TokenBucket b;
  Clock::time_point t = Clock::time_point() + std::chrono::hours(1);
  b.SetRate(kMiB, t);
  // Takers that go as soon as they may, 64 KiB each, for 10 simulated seconds.
  uint64_t sent = 0;
  Clock::time_point end = t + std::chrono::seconds(10);
  while (t < end) {
    auto d = b.Take(64 * kKiB, t);
    if (d == Clock::duration::zero())
      sent += 64 * kKiB;
    else
      t += d;
  }
  double rate = static_cast<double>(sent) / 10.0;
  EXPECT_NEAR(rate, static_cast<double>(kMiB), 0.02 * kMiB);
}

TEST(TokenBucket, IdleSavesAtMostABurst) {
  TokenBucket b;
  Clock::time_point t = Clock::time_point() + std::chrono::hours(1);
  b.SetRate(kMiB, t);
  t += std::chrono::seconds(60);  // a long idle time
  uint64_t at_once = 0;
  while (b.Take(4 * kKiB, t) == Clock::duration::zero()) at_once += 4 * kKiB;
  // 100 ms of the rate, plus the last take that overdraws.
  EXPECT_LE(at_once, kMiB / 10 + 4 * kKiB);
  EXPECT_GE(at_once, kMiB / 10);
}

TEST(TokenBucket, OffNeverWaitsAndAChangeRepricesTheDebt) {
  TokenBucket b;
  Clock::time_point t = Clock::time_point() + std::chrono::hours(1);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b.Take(kMiB, t), Clock::duration::zero());
  b.SetRate(64 * kKiB, t);
  EXPECT_EQ(b.Take(kMiB, t), Clock::duration::zero());  // overdraws by 1 MiB
  auto slow = b.Take(1, t);
  EXPECT_GT(slow, std::chrono::seconds(15));  // 1 MiB at 64 KiB/s
  b.SetRate(64 * kMiB, t);
  auto fast = b.Take(1, t);
  EXPECT_LT(fast, milliseconds(20));  // the same debt at 64 MiB/s
  b.SetRate(0, t);
  EXPECT_EQ(b.Take(1, t), Clock::duration::zero());
}

TEST(RateMeter, AveragesTwoSeconds) {
  RateMeter m;
  Clock::time_point t = Clock::time_point() + std::chrono::hours(1);
  for (int i = 0; i < 40; ++i) {  // 4 s of 100 KiB per 100 ms
    m.Add(100 * kKiB, t);
    t += milliseconds(100);
  }
  EXPECT_NEAR(m.BytesPerSecond(t - milliseconds(100)), 1000.0 * kKiB, 60.0 * kKiB);
  EXPECT_EQ(m.BytesPerSecond(t + std::chrono::seconds(5)), 0.0);
}

// ---- BandwidthLimiter on the real clock (short) ---------------------------------------

BandwidthLimiter::Options LimiterOptions(const std::string& spec) {
  BandwidthLimiter::Options o;
  auto s = ParseBandwidth(spec);
  EXPECT_TRUE(s.ok()) << s.status().message();
  o.spec = *s;
  return o;
}

TEST(BandwidthLimiter, ManyThreadsShareTheRate) {
  BandwidthLimiter lim(LimiterOptions("1M"));
  std::atomic<uint64_t> sent{0};
  std::vector<uint64_t> per_thread(8, 0);
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      while (Clock::now() - start < milliseconds(1500)) {
        ASSERT_TRUE(lim.Acquire(16 * kKiB));
        sent += 16 * kKiB;
        per_thread[i] += 16 * kKiB;
      }
    });
  }
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  double rate = static_cast<double>(sent.load()) / secs;
  EXPECT_GT(rate, 0.8 * kMiB);
  EXPECT_LT(rate, 1.2 * kMiB);
  // Fair enough: every thread got a share.
  for (uint64_t b : per_thread) EXPECT_GT(b, sent.load() / 8 / 2);
  // Averaged over two seconds, of which 1.5 s sent.
  EXPECT_GT(lim.state().measured_bps, 0.5 * kMiB);
  EXPECT_LT(lim.state().measured_bps, 1.2 * kMiB);
}

TEST(BandwidthLimiter, OffNeverBlocks) {
  BandwidthLimiter lim(LimiterOptions("off"));
  auto start = Clock::now();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(lim.Acquire(kMiB));
  EXPECT_LT(Clock::now() - start, milliseconds(200));
  EXPECT_EQ(lim.state().limit, 0u);
  EXPECT_EQ(lim.state().bytes, 1000 * kMiB);
}

TEST(BandwidthLimiter, SetWakesWaitersAtOnce) {
  BandwidthLimiter lim(LimiterOptions("32K"));
  std::vector<std::string> changes;
  ASSERT_TRUE(lim.Acquire(kMiB));  // a debt of 32 s at 32K
  std::atomic<bool> done{false};
  Clock::time_point finished;
  std::thread waiter([&] {
    EXPECT_TRUE(lim.Acquire(kKiB));
    finished = Clock::now();
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(done.load());
  auto set_at = Clock::now();
  lim.Set(*ParseBandwidth("off"));
  waiter.join();
  EXPECT_LT(finished - set_at, milliseconds(100));
  auto st = lim.state();
  EXPECT_EQ(st.limit, 0u);
  EXPECT_EQ(st.source, BandwidthLimiter::Source::kSet);
}

TEST(BandwidthLimiter, CancelUnblocks) {
  BandwidthLimiter lim(LimiterOptions("32K"));
  ASSERT_TRUE(lim.Acquire(kMiB));
  std::atomic<int> cancelled{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&] { cancelled += lim.Acquire(kKiB) ? 0 : 1; });
  std::this_thread::sleep_for(milliseconds(200));
  auto at = Clock::now();
  lim.Cancel();
  for (auto& t : threads) t.join();
  EXPECT_LT(Clock::now() - at, milliseconds(100));
  EXPECT_EQ(cancelled.load(), 3);
  EXPECT_FALSE(lim.Acquire(1));
}

TEST(BandwidthLimiter, TimetableSwitchTakesEffectWithinASecond) {
  std::atomic<int> minute{8 * 60};
  auto o = LimiterOptions("08:00,32K 09:00,off");
  o.local_time = [&] { return WeekTime{2, minute.load()}; };
  std::vector<std::string> log;
  std::mutex log_mu;
  o.on_change = [&](const std::string& m) {
    std::lock_guard lk(log_mu);
    log.push_back(m);
  };
  BandwidthLimiter lim(o);
  EXPECT_EQ(lim.state().limit, 32 * kKiB);
  EXPECT_EQ(lim.state().source, BandwidthLimiter::Source::kSchedule);
  EXPECT_EQ(lim.state().schedule, "08:00,32K 09:00,off");
  ASSERT_TRUE(lim.Acquire(kMiB));  // 32 s of debt
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    EXPECT_TRUE(lim.Acquire(kKiB));
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_FALSE(done.load());
  auto at = Clock::now();
  minute = 9 * 60;  // 09:00 comes
  waiter.join();
  EXPECT_LT(Clock::now() - at, milliseconds(1300));
  EXPECT_EQ(lim.state().limit, 0u);
  std::lock_guard lk(log_mu);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("32.0 KiB/s -> off"), std::string::npos) << log[0];
  EXPECT_NE(log[0].find("timetable"), std::string::npos) << log[0];
}

}  // namespace
}  // namespace scribefs
