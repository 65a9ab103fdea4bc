#include "tools/time_spec.h"

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <optional>

#include "common/strings.h"

namespace scribefs::ctl {

const char* const kTimeFormsHelp =
    "A plain integer is a\nsequence number; anything else is a time:\n"
    "ISO 8601 (2026-11-21T10:00:00, 2026-11-21T10:00:00.250Z,\n"
    "2026-11-21T10:00:00+01:00, \"2026-11-21 10:00:00\"; local time\n"
    "unless Z or an offset is given; a date alone is local midnight),\n"
    "an age (30s, 10m, 2h, 3d, 1w, 1.5h: that long ago),\n"
    "@EPOCH_SECONDS, or now, today, yesterday";

namespace {

constexpr int64_t kNsPerSec = 1'000'000'000;

Status Invalid(std::string_view text, const std::string& why) {
  return Status::Error(EINVAL, "invalid time '" + std::string(text) + "': " + why +
                                   " (expected e.g. 2026-11-21T10:00:00, "
                                   "\"2026-11-21 10:00:00\", 2026-11-21T10:00:00Z, 10m, 2h, "
                                   "3d, @1795255200, or a sequence number)");
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Local midnight `days_back` days before the day of now_ns.
Result<int64_t> LocalMidnight(int64_t now_ns, int days_back) {
  time_t now = static_cast<time_t>(now_ns / kNsPerSec);
  struct tm tm;
  if (!localtime_r(&now, &tm)) return Status::Error(EINVAL, "cannot convert the current time");
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_mday -= days_back;
  tm.tm_isdst = -1;
  time_t t = mktime(&tm);
  return static_cast<int64_t>(t) * kNsPerSec;
}

// "10m", "1.5h": now minus that long; nullopt when text is not of this form.
std::optional<Result<int64_t>> ParseRelative(std::string_view text, int64_t now_ns) {
  size_t unit_pos = 0;
  while (unit_pos < text.size() && (IsDigit(text[unit_pos]) || text[unit_pos] == '.')) ++unit_pos;
  if (unit_pos == 0 || unit_pos == text.size() || !IsDigit(text[0])) return std::nullopt;
  std::string unit = AsciiLower(text.substr(unit_pos));
  double unit_s;
  if (unit == "s" || unit == "sec")
    unit_s = 1;
  else if (unit == "m" || unit == "min")
    unit_s = 60;
  else if (unit == "h")
    unit_s = 3600;
  else if (unit == "d")
    unit_s = 86400;
  else if (unit == "w")
    unit_s = 7 * 86400;
  else
    return std::nullopt;
  double amount = 0;
  auto [p, ec] =
      std::from_chars(text.data(), text.data() + unit_pos, amount, std::chars_format::fixed);
  if (ec != std::errc() || p != text.data() + unit_pos || !std::isfinite(amount))
    return Result<int64_t>(Invalid(text, "bad number"));
  double ago_ns = amount * unit_s * static_cast<double>(kNsPerSec);
  // Further back than the epoch means "everything": clamp rather than fail.
  if (ago_ns >= static_cast<double>(now_ns)) return Result<int64_t>(int64_t{0});
  return Result<int64_t>(now_ns - static_cast<int64_t>(ago_ns));
}

// "@1795255200[.5]"
Result<int64_t> ParseEpoch(std::string_view text) {
  std::string_view num = text.substr(1);
  if (num.empty() || !IsDigit(num[0])) return Invalid(text, "expected seconds after '@'");
  double secs = 0;
  auto [p, ec] =
      std::from_chars(num.data(), num.data() + num.size(), secs, std::chars_format::fixed);
  if (ec != std::errc() || p != num.data() + num.size() || !std::isfinite(secs) || secs > 9.0e9)
    return Invalid(text, "bad epoch seconds");
  double whole = std::floor(secs);
  return static_cast<int64_t>(whole) * kNsPerSec +
         static_cast<int64_t>(std::llround((secs - whole) * 1e9));
}

// A cursor over the ISO 8601 text.
class IsoScanner {
 public:
  explicit IsoScanner(std::string_view t) : t_(t) {}
  bool Done() const { return i_ == t_.size(); }
  bool Peek(char c) const { return i_ < t_.size() && t_[i_] == c; }
  bool Accept(char c) {
    if (!Peek(c)) return false;
    ++i_;
    return true;
  }
  // Exactly n digits.
  bool Digits(size_t n, int* out) {
    if (t_.size() - i_ < n) return false;
    int v = 0;
    for (size_t k = 0; k < n; ++k) {
      char c = t_[i_ + k];
      if (!IsDigit(c)) return false;
      v = v * 10 + (c - '0');
    }
    i_ += n;
    *out = v;
    return true;
  }
  // 1-9 fraction digits as nanoseconds.
  bool Fraction(int64_t* ns) {
    size_t start = i_;
    int64_t v = 0;
    while (i_ < t_.size() && IsDigit(t_[i_]) && i_ - start < 9) v = v * 10 + (t_[i_++] - '0');
    if (i_ == start || (i_ < t_.size() && IsDigit(t_[i_]))) return false;
    for (size_t k = i_ - start; k < 9; ++k) v *= 10;
    *ns = v;
    return true;
  }
  char Next() { return i_ < t_.size() ? t_[i_++] : '\0'; }

 private:
  std::string_view t_;
  size_t i_ = 0;
};

Result<int64_t> ParseIso(std::string_view text) {
  IsoScanner s(text);
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  int64_t frac_ns = 0;
  if (!s.Digits(4, &year) || !s.Accept('-') || !s.Digits(2, &month) || !s.Accept('-') ||
      !s.Digits(2, &day))
    return Invalid(text, "not a sequence number, age or ISO 8601 time");
  std::chrono::year_month_day ymd{std::chrono::year(year),
                                  std::chrono::month(static_cast<unsigned>(month)),
                                  std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return Invalid(text, "no such date");
  std::optional<int> offset_min;  // east of UTC; set when a zone is given
  if (s.Accept('T') || s.Accept('t') || s.Accept(' ')) {
    if (!s.Digits(2, &hour) || !s.Accept(':') || !s.Digits(2, &minute))
      return Invalid(text, "expected HH:MM after the date");
    if (s.Accept(':')) {
      if (!s.Digits(2, &second)) return Invalid(text, "expected two-digit seconds");
      if (s.Accept('.') || s.Accept(',')) {
        if (!s.Fraction(&frac_ns)) return Invalid(text, "expected 1-9 fraction digits");
      }
    }
    if (hour > 23 || minute > 59 || second > 59) return Invalid(text, "time of day out of range");
    if (s.Accept('Z') || s.Accept('z')) {
      offset_min = 0;
    } else if (s.Peek('+') || s.Peek('-')) {
      int sign = s.Next() == '-' ? -1 : 1;
      int oh = 0, om = 0;
      if (!s.Digits(2, &oh)) return Invalid(text, "expected a zone offset like +01:00");
      if (s.Accept(':')) {
        if (!s.Digits(2, &om)) return Invalid(text, "expected a zone offset like +01:00");
      } else if (!s.Done() && !s.Digits(2, &om)) {
        return Invalid(text, "expected a zone offset like +01:00");
      }
      if (oh > 23 || om > 59) return Invalid(text, "zone offset out of range");
      offset_min = sign * (oh * 60 + om);
    }
  }
  if (!s.Done()) return Invalid(text, "unexpected text after the time");

  if (offset_min) {
    auto days = std::chrono::sys_days(ymd).time_since_epoch().count();
    int64_t secs = static_cast<int64_t>(days) * 86400 + hour * 3600 + minute * 60 + second -
                   static_cast<int64_t>(*offset_min) * 60;
    return secs * kNsPerSec + frac_ns;
  }
  // Local time; a date alone is local midnight (the time fields stay 0).
  struct tm tm = {};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  tm.tm_isdst = -1;  // let the zone rules decide
  errno = 0;
  time_t t = mktime(&tm);
  if (t == static_cast<time_t>(-1) && errno != 0) return Invalid(text, "cannot convert local time");
  return static_cast<int64_t>(t) * kNsPerSec + frac_ns;
}

// Splits ns into whole seconds (floor) and the millisecond remainder.
void SplitNs(int64_t ns, time_t* secs, int* ms) {
  int64_t s = ns / kNsPerSec;
  int64_t rem = ns % kNsPerSec;
  if (rem < 0) {
    rem += kNsPerSec;
    --s;
  }
  *secs = static_cast<time_t>(s);
  *ms = static_cast<int>(rem / 1'000'000);
}

std::string FormatTm(const struct tm& tm, const char* fmt, int ms, const char* suffix) {
  char buf[64];
  size_t n = strftime(buf, sizeof buf, fmt, &tm);
  char frac[16];
  snprintf(frac, sizeof frac, ".%03d%s", ms, suffix);
  return std::string(buf, n) + frac;
}

}  // namespace

Result<int64_t> ParseTime(std::string_view text, int64_t now_ns) {
  if (text.empty()) return Invalid(text, "empty");
  std::string lower = AsciiLower(text);
  if (lower == "now") return now_ns;
  if (lower == "today") return LocalMidnight(now_ns, 0);
  if (lower == "yesterday") return LocalMidnight(now_ns, 1);
  if (text[0] == '@') return ParseEpoch(text);
  if (auto rel = ParseRelative(text, now_ns)) return std::move(*rel);
  return ParseIso(text);
}

Result<SeqOrTime> ParseSeqOrTime(std::string_view text, int64_t now_ns) {
  bool all_digits = !text.empty();
  for (char c : text) all_digits &= IsDigit(c);
  if (all_digits) {
    int64_t seq = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), seq);
    if (ec != std::errc() || p != text.data() + text.size())
      return Status::Error(EINVAL, "sequence number '" + std::string(text) + "' is out of range");
    return SeqOrTime{SeqOrTime::Kind::kSeq, seq};
  }
  auto t = ParseTime(text, now_ns);
  if (!t.ok()) return t.status();
  return SeqOrTime{SeqOrTime::Kind::kTime, *t};
}

std::string FormatLocalTime(int64_t ns) {
  time_t secs;
  int ms;
  SplitNs(ns, &secs, &ms);
  struct tm tm;
  if (!localtime_r(&secs, &tm)) return std::to_string(ns);
  return FormatTm(tm, "%Y-%m-%d %H:%M:%S", ms, "");
}

std::string FormatUtcIso(int64_t ns) {
  time_t secs;
  int ms;
  SplitNs(ns, &secs, &ms);
  struct tm tm;
  if (!gmtime_r(&secs, &tm)) return std::to_string(ns);
  return FormatTm(tm, "%Y-%m-%dT%H:%M:%S", ms, "Z");
}

}  // namespace scribefs::ctl
