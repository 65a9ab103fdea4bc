// The upload bandwidth limit (uploader/bandwidth.h).
#include "uploader/bandwidth.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <utility>

namespace scribefs {
namespace {

constexpr const char* kRateHelp =
    "a number with an optional suffix B, K, M, G or T (bytes, KiB, MiB, GiB, TiB per second; "
    "no suffix: KiB), or off";
constexpr const char* kDayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
constexpr const char* kDayLabels[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
// Slower transfers than this look stalled to the S3 client (S3Options::
// low_speed_limit, 1 KiB/s per transfer), and the rate is shared by the workers.
constexpr BytesPerSecond kMinRate = 32 * 1024;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Status Bad(const std::string& msg) { return Status::Error(EINVAL, "bwlimit: " + msg); }

// One rate without the UP:DOWN split.
Result<BytesPerSecond> ParseOneRate(std::string_view text) {
  std::string t = Lower(Trim(text));
  if (t == "off") return BytesPerSecond{0};
  size_t i = 0;
  bool dot = false;
  while (i < t.size() &&
         (std::isdigit(static_cast<unsigned char>(t[i])) || (t[i] == '.' && !dot))) {
    dot |= t[i] == '.';
    ++i;
  }
  std::string number = t.substr(0, i), suffix = t.substr(i);
  if (number.empty() || number == ".")
    return Bad("bad rate \"" + std::string(text) + "\": expected " + kRateHelp);
  // rclone: a bare number is KiB/s.
  static const std::pair<const char*, double> kSuffixes[] = {{"", 1024.0},
                                                             {"b", 1.0},
                                                             {"k", 1024.0},
                                                             {"m", 1024.0 * 1024},
                                                             {"g", 1024.0 * 1024 * 1024},
                                                             {"t", 1024.0 * 1024 * 1024 * 1024}};
  double mult = 0;
  for (const auto& [name, m] : kSuffixes)
    if (suffix == name) mult = m;
  if (mult == 0)
    return Bad("bad rate \"" + std::string(text) + "\": unknown suffix \"" + suffix +
               "\"; expected " + kRateHelp);
  double v = std::strtod(number.c_str(), nullptr) * mult;
  if (v == 0) return BytesPerSecond{0};
  if (v > 1e15) return Bad("rate \"" + std::string(text) + "\" is too large");
  auto rate = static_cast<BytesPerSecond>(std::llround(v));
  if (rate < kMinRate)
    return Bad("rate \"" + std::string(text) + "\" is below the minimum of 32K (" +
               "slower uploads look stalled to the S3 client); use off for no limit");
  return rate;
}

// "HH:MM" to a minute of the day, or -1.
int ParseClock(std::string_view s) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 2 || s.size() != colon + 3)
    return -1;
  int h = 0, m = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == colon) continue;
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return -1;
    (i < colon ? h : m) = (i < colon ? h : m) * 10 + (s[i] - '0');
  }
  if (h > 23 || m > 59) return -1;
  return h * 60 + m;
}

int ParseDay(std::string_view s) {
  std::string d = Lower(s);
  static constexpr const char* kLong[] = {"sunday",   "monday", "tuesday", "wednesday",
                                          "thursday", "friday", "saturday"};
  for (int i = 0; i < 7; ++i)
    if (d == kDayNames[i] || d == kLong[i]) return i;
  return -1;
}

Result<BandwidthEntry> ParseEntry(std::string_view item) {
  auto bad = [&](const std::string& why) {
    return Bad("bad timetable entry \"" + std::string(item) + "\": " + why +
               " (expected [DAY-]HH:MM,RATE, e.g. 08:00,512K or Mon-08:00,512K)");
  };
  size_t comma = item.find(',');
  if (comma == std::string_view::npos) return bad("no ',' between the time and the rate");
  std::string_view when = item.substr(0, comma);
  BandwidthEntry e;
  size_t dash = when.find('-');
  if (dash != std::string_view::npos) {
    e.day = ParseDay(when.substr(0, dash));
    if (e.day < 0)
      return bad("unknown day \"" + std::string(when.substr(0, dash)) + "\" (Mon..Sun)");
    when = when.substr(dash + 1);
  }
  e.minute = ParseClock(when);
  if (e.minute < 0) return bad("bad time \"" + std::string(when) + "\" (00:00 to 23:59)");
  auto rate = ParseRate(item.substr(comma + 1));
  if (!rate.ok()) {
    std::string why = rate.status().message();
    if (why.rfind("bwlimit: ", 0) == 0) why.erase(0, 9);  // said once, by bad()
    return bad(why);
  }
  e.rate = *rate;
  return e;
}

// Minutes of the week, sorted, each day-less entry on every day.
std::vector<std::pair<int, BytesPerSecond>> Expand(const std::vector<BandwidthEntry>& entries) {
  std::vector<std::pair<int, BytesPerSecond>> out;
  for (const auto& e : entries) {
    if (e.day >= 0) {
      out.emplace_back(e.day * 1440 + e.minute, e.rate);
    } else {
      for (int d = 0; d < 7; ++d) out.emplace_back(d * 1440 + e.minute, e.rate);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

std::string EntryName(int week_minute) {
  char buf[16];
  snprintf(buf, sizeof buf, "%s %02d:%02d", kDayLabels[week_minute / 1440],
           (week_minute % 1440) / 60, week_minute % 60);
  return buf;
}

}  // namespace

Result<BytesPerSecond> ParseRate(std::string_view text) {
  std::string_view t = Trim(text);
  if (t.empty()) return Bad("empty rate: expected " + std::string(kRateHelp));
  size_t colon = t.find(':');
  if (colon == std::string_view::npos) return ParseOneRate(t);
  // rclone's UP:DOWN: only uploads are limited here; the DOWN part is checked
  // so that a typo there is not silently ignored.
  auto down = ParseOneRate(t.substr(colon + 1));
  if (!down.ok()) return down.status();
  return ParseOneRate(t.substr(0, colon));
}

Result<BandwidthSpec> ParseBandwidth(std::string_view text) {
  BandwidthSpec spec;
  std::string_view t = Trim(text);
  spec.text = std::string(t);
  if (t.empty()) return Bad("empty value: expected a rate (e.g. 2M) or a timetable");
  if (t.find(',') == std::string_view::npos) {
    auto rate = ParseRate(t);
    if (!rate.ok()) return rate.status();
    spec.rate = *rate;
    return spec;
  }
  size_t pos = 0;
  while (pos < t.size()) {
    while (pos < t.size() && std::isspace(static_cast<unsigned char>(t[pos]))) ++pos;
    size_t end = pos;
    while (end < t.size() && !std::isspace(static_cast<unsigned char>(t[end]))) ++end;
    if (end == pos) break;
    auto e = ParseEntry(t.substr(pos, end - pos));
    if (!e.ok()) return e.status();
    spec.entries.push_back(*e);
    pos = end;
  }
  auto week = Expand(spec.entries);
  for (size_t i = 1; i < week.size(); ++i) {
    if (week[i].first == week[i - 1].first)
      return Bad("timetable \"" + spec.text + "\" has two entries for " + EntryName(week[i].first));
  }
  return spec;
}

BytesPerSecond RateAt(const BandwidthSpec& spec, WeekTime t) {
  if (!spec.timetable()) return spec.rate;
  auto week = Expand(spec.entries);
  int now = t.weekday * 1440 + t.minute;
  BytesPerSecond rate = week.back().second;  // before the first entry: the last one, wrapped
  for (const auto& [minute, r] : week) {
    if (minute > now) break;
    rate = r;
  }
  return rate;
}

std::string FormatRate(BytesPerSecond rate) {
  if (rate == 0) return "off";
  char buf[32];
  auto r = static_cast<double>(rate);
  if (r >= 1024.0 * 1024 * 1024)
    snprintf(buf, sizeof buf, "%.1f GiB/s", r / (1024.0 * 1024 * 1024));
  else if (r >= 1024.0 * 1024)
    snprintf(buf, sizeof buf, "%.1f MiB/s", r / (1024.0 * 1024));
  else if (r >= 1024.0)
    snprintf(buf, sizeof buf, "%.1f KiB/s", r / 1024.0);
  else
    snprintf(buf, sizeof buf, "%.0f B/s", r);
  return buf;
}

// ---- TokenBucket -------------------------------------------------------------

void TokenBucket::Refill(Clock::time_point now) {
  if (last_ == Clock::time_point{} || now < last_) last_ = now;
  double elapsed = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  if (rate_ == 0) return;
  double cap = static_cast<double>(rate_) * std::chrono::duration<double>(kBurst).count();
  balance_ = std::min(balance_ + elapsed * static_cast<double>(rate_), cap);
}

void TokenBucket::SetRate(BytesPerSecond rate, Clock::time_point now) {
  Refill(now);
  rate_ = rate;
  // What was owed stays owed, in bytes: at a higher rate it is paid sooner.
  if (rate_ == 0) balance_ = 0;
}

TokenBucket::Clock::duration TokenBucket::Take(uint64_t n, Clock::time_point now) {
  if (rate_ == 0) return Clock::duration::zero();
  Refill(now);
  if (balance_ >= 0) {
    balance_ -= static_cast<double>(n);
    return Clock::duration::zero();
  }
  auto wait = std::chrono::duration<double>(-balance_ / static_cast<double>(rate_));
  return std::max<Clock::duration>(std::chrono::duration_cast<Clock::duration>(wait),
                                   std::chrono::microseconds(1));
}

// ---- RateMeter -----------------------------------------------------------------

int64_t RateMeter::SlotOf(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() / 100;
}

void RateMeter::Add(uint64_t n, Clock::time_point now) {
  int64_t s = SlotOf(now);
  int i = static_cast<int>(s % kSlots);
  if (slot_id_[i] != s) slot_id_[i] = s, bytes_[i] = 0;
  bytes_[i] += n;
}

double RateMeter::BytesPerSecond(Clock::time_point now) const {
  int64_t cur = SlotOf(now);
  uint64_t sum = 0;
  for (int i = 0; i < kSlots; ++i)
    if (slot_id_[i] > cur - kSlots && slot_id_[i] <= cur) sum += bytes_[i];
  return static_cast<double>(sum) / (kSlots / 10.0);
}

// ---- BandwidthLimiter ----------------------------------------------------------

namespace {
WeekTime SystemLocalTime() {
  time_t now = time(nullptr);
  struct tm tm {};
  localtime_r(&now, &tm);
  return WeekTime{tm.tm_wday, tm.tm_hour * 60 + tm.tm_min};
}
}  // namespace

const char* BandwidthLimiter::SourceName(Source s) {
  switch (s) {
    case Source::kOption:
      return "option";
    case Source::kSchedule:
      return "schedule";
    case Source::kSet:
      return "set";
  }
  return "option";
}

BandwidthLimiter::BandwidthLimiter(Options options) : options_(std::move(options)) {
  if (!options_.local_time) options_.local_time = SystemLocalTime;
  spec_ = options_.spec;
  source_ = spec_.timetable() ? Source::kSchedule : Source::kOption;
  std::lock_guard lk(mu_);
  auto now = Clock::now();
  bucket_.SetRate(RateAt(spec_, options_.local_time()), now);
  evaluated_ = now;
}

void BandwidthLimiter::Evaluate(Clock::time_point now, bool force) {
  if (!force && (!spec_.timetable() || now - evaluated_ < kReread)) return;
  evaluated_ = now;
  BytesPerSecond rate = RateAt(spec_, options_.local_time());
  if (rate == bucket_.rate() && !force) return;
  BytesPerSecond old = bucket_.rate();
  bucket_.SetRate(rate, now);
  ++generation_;
  cv_.notify_all();
  if (options_.on_change && rate != old) {
    options_.on_change("upload limit " + FormatRate(old) + " -> " + FormatRate(rate) + " (" +
                       (source_ == Source::kSet ? "set at run time: " : "timetable: ") +
                       spec_.text + ")");
  }
}

bool BandwidthLimiter::Acquire(uint64_t n) {
  std::unique_lock lk(mu_);
  if (cancelled_) return false;
  auto now = Clock::now();
  Evaluate(now, false);
  if (bucket_.rate() == 0 && next_ticket_ == serving_) {
    // Off and nobody waiting: the common case costs one lock.
    bytes_ += n;
    meter_.Add(n, now);
    return true;
  }
  const uint64_t ticket = next_ticket_++;
  for (;;) {
    if (cancelled_) return false;
    now = Clock::now();
    Evaluate(now, false);
    Clock::duration wait = kReread;  // re-read the timetable meanwhile
    if (serving_ == ticket) {
      Clock::duration d = bucket_.Take(n, now);
      if (d == Clock::duration::zero()) break;
      wait = std::min(wait, d);
    }
    cv_.wait_for(lk, wait);
  }
  ++serving_;
  bytes_ += n;
  meter_.Add(n, now);
  cv_.notify_all();  // the next in turn
  return true;
}

void BandwidthLimiter::Set(BandwidthSpec spec) {
  std::lock_guard lk(mu_);
  spec_ = std::move(spec);
  source_ = Source::kSet;
  Evaluate(Clock::now(), true);
}

void BandwidthLimiter::Cancel() {
  std::lock_guard lk(mu_);
  cancelled_ = true;
  cv_.notify_all();
}

void BandwidthLimiter::Resume() {
  std::lock_guard lk(mu_);
  cancelled_ = false;
}

BandwidthLimiter::State BandwidthLimiter::state() {
  std::lock_guard lk(mu_);
  auto now = Clock::now();
  Evaluate(now, false);
  State s;
  s.limit = bucket_.rate();
  s.schedule = spec_.timetable() ? spec_.text : "";
  s.source = source_;
  s.measured_bps = meter_.BytesPerSecond(now);
  s.bytes = bytes_;
  return s;
}

}  // namespace scribefs
