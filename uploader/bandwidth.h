// The upload bandwidth limit (--bwlimit, `scribectl set bwlimit`):
//   - ParseBandwidth: a rate or a timetable in rclone's syntax (pure),
//   - RateAt: the rate a timetable puts in force at a local time (pure),
//   - TokenBucket: the arithmetic of the limit with the clock passed in (pure),
//   - BandwidthLimiter: the one limiter of a daemon, shared by every upload
//     worker; the stores call Acquire() before they hand body bytes on.
//
// Syntax (as rclone's --bwlimit): RATE is a number with an optional suffix
// B, K, M, G, T (bytes, KiB, MiB, GiB, TiB per second; a bare number is KiB/s
// as in rclone; fractions allowed: 1.5M), or "off" / "0" for no limit. An
// rclone "UP:DOWN" pair is accepted and its UP part used (nothing is
// downloaded). A timetable is entries "[DAY-]HH:MM,RATE" separated by
// spaces; DAY is Mon..Sun (a three-letter English name, any case). An entry
// holds from its time until the next entry's; the last one wraps round to the
// first. An entry without DAY holds on every day.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace scribefs {

// 0 = unlimited.
using BytesPerSecond = uint64_t;

struct BandwidthEntry {
  int day = -1;    // 0 = Sunday .. 6 = Saturday; -1 = every day
  int minute = 0;  // of the day, 0..1439
  BytesPerSecond rate = 0;
  bool operator==(const BandwidthEntry&) const = default;
};

struct BandwidthSpec {
  std::string text;                     // as given (trimmed)
  std::vector<BandwidthEntry> entries;  // empty: a plain rate
  BytesPerSecond rate = 0;              // the plain rate (entries empty)
  bool timetable() const { return !entries.empty(); }
};

// EINVAL with a message naming the bad part and what is accepted.
Result<BytesPerSecond> ParseRate(std::string_view text);
Result<BandwidthSpec> ParseBandwidth(std::string_view text);

// A local time as a timetable sees it.
struct WeekTime {
  int weekday = 0;  // 0 = Sunday .. 6 = Saturday
  int minute = 0;   // of the day
};

// The rate in force at `t`: a plain spec's rate; for a timetable, the entry
// whose (day, time) is the latest at or before t in the week, wrapping past
// midnight and past the end of the week to the last entry.
BytesPerSecond RateAt(const BandwidthSpec& spec, WeekTime t);

// "2.0 MiB/s", "512 KiB/s", "off".
std::string FormatRate(BytesPerSecond rate);

// The limit's arithmetic. Bytes are paid after they are taken: a taker may
// go when the balance is not negative, and leaves it short by what it took,
// so the next one waits until the rate has paid that back. Idle time saves a
// burst of at most 100 ms of the rate. Not thread-safe (BandwidthLimiter
// locks around it).
class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kBurst{100};

  // 0: unlimited.
  void SetRate(BytesPerSecond rate, Clock::time_point now);
  BytesPerSecond rate() const { return rate_; }
  // How long to wait before `n` bytes may go (zero: they may go now, and
  // are then taken).
  Clock::duration Take(uint64_t n, Clock::time_point now);

 private:
  void Refill(Clock::time_point now);
  BytesPerSecond rate_ = 0;
  double balance_ = 0;  // bytes; negative: owed
  Clock::time_point last_{};
};

// Bytes handed on over the last two seconds, in 100 ms slots. Not thread-safe.
class RateMeter {
 public:
  using Clock = std::chrono::steady_clock;
  void Add(uint64_t n, Clock::time_point now);
  double BytesPerSecond(Clock::time_point now) const;

 private:
  static constexpr int kSlots = 20;
  static int64_t SlotOf(Clock::time_point t);
  uint64_t bytes_[kSlots] = {};
  int64_t slot_id_[kSlots] = {};
};

// The daemon's limiter. Thread-safe.
//
// Acquire(n) blocks the calling worker until n bytes may go. Waiters go in
// turn (first come, first served), so workers share the rate. A new rate
// (Set, or a timetable entry whose time came) wakes them at once; a
// timetable is looked at every half second while a worker waits, so its
// switches take effect within a second. Off never blocks. Cancel() makes every Acquire, waiting
// or later, return false at once.
class BandwidthLimiter {
 public:
  enum class Source { kOption, kSchedule, kSet };
  struct Options {
    BandwidthSpec spec;  // from --bwlimit; empty text: off
    // The local time; default: the system's.
    std::function<WeekTime()> local_time;
    // Told of every change of the rate in force (the daemon logs it).
    std::function<void(const std::string& message)> on_change;
  };
  struct State {
    BytesPerSecond limit = 0;  // in force now; 0: unlimited
    std::string schedule;      // the timetable in use, "" when none
    Source source = Source::kOption;
    double measured_bps = 0;  // handed on over the last two seconds
    uint64_t bytes = 0;       // handed on since start
  };

  explicit BandwidthLimiter(Options options);

  // False when cancelled.
  bool Acquire(uint64_t n);
  // Replaces the timetable or rate until restart (`scribectl set bwlimit`).
  void Set(BandwidthSpec spec);
  void Cancel();
  // Acquire waits and hands on again after Cancel (the stop's last history
  // segment, written after the workers gave up and were joined).
  void Resume();
  State state();

  static const char* SourceName(Source s);

 private:
  using Clock = std::chrono::steady_clock;
  // How often a timetable is looked at: a switch takes effect within twice that.
  static constexpr std::chrono::milliseconds kReread{500};
  // Re-reads the timetable at most every kReread. Requires mu_.
  void Evaluate(Clock::time_point now, bool force);

  Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  BandwidthSpec spec_;                      // GUARDED_BY(mu_)
  Source source_;                           // GUARDED_BY(mu_)
  TokenBucket bucket_;                      // GUARDED_BY(mu_)
  RateMeter meter_;                         // GUARDED_BY(mu_)
  uint64_t bytes_ = 0;                      // GUARDED_BY(mu_)
  uint64_t next_ticket_ = 0, serving_ = 0;  // GUARDED_BY(mu_): turns of waiters
  uint64_t generation_ = 0;                 // GUARDED_BY(mu_): bumped by every change
  Clock::time_point evaluated_{};           // GUARDED_BY(mu_)
  bool cancelled_ = false;                  // GUARDED_BY(mu_)
};

}  // namespace scribefs
