#include "tools/time_spec.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <string>

#include "tools/human.h"

namespace scribefs::ctl {
namespace {

constexpr int64_t kSec = 1'000'000'000;
// 2026-11-21T10:00:00Z
constexpr int64_t kT0 = 1795255200LL * kSec;
// "Now" for the tests: 2026-11-21T12:34:56.789Z.
constexpr int64_t kNow = kT0 + (2 * 3600 + 34 * 60 + 56) * kSec + 789'000'000;

// Sets the process time zone for one test and restores it afterwards.
class ScopedTz {
 public:
  explicit ScopedTz(const char* tz) {
    if (const char* old = getenv("TZ")) old_ = old;
    setenv("TZ", tz, 1);
    tzset();
  }
  ~ScopedTz() {
    if (old_)
      setenv("TZ", old_->c_str(), 1);
    else
      unsetenv("TZ");
    tzset();
  }

 private:
  std::optional<std::string> old_;
};

int64_t Time(const std::string& text) {
  auto r = ParseTime(text, kNow);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().message();
  return r.ok() ? *r : -1;
}

TEST(TimeSpecTest, RelativeAgesCountBackFromNow) {
  EXPECT_EQ(Time("30s"), kNow - 30 * kSec);
  EXPECT_EQ(Time("10m"), kNow - 600 * kSec);
  EXPECT_EQ(Time("10min"), kNow - 600 * kSec);
  EXPECT_EQ(Time("2h"), kNow - 7200 * kSec);
  EXPECT_EQ(Time("1.5h"), kNow - 5400 * kSec);
  EXPECT_EQ(Time("3d"), kNow - 3 * 86400 * kSec);
  EXPECT_EQ(Time("1w"), kNow - 7 * 86400 * kSec);
  EXPECT_EQ(Time("0s"), kNow);
  // Further back than the epoch: everything.
  EXPECT_EQ(Time("1000000w"), 0);
}

TEST(TimeSpecTest, IsoWithZoneIsExact) {
  EXPECT_EQ(Time("2026-11-21T10:00:00Z"), kT0);
  EXPECT_EQ(Time("2026-11-21t10:00:00z"), kT0);
  EXPECT_EQ(Time("2026-11-21T10:00Z"), kT0);
  EXPECT_EQ(Time("2026-11-21T10:00:00.250Z"), kT0 + 250'000'000);
  EXPECT_EQ(Time("2026-11-21T10:00:00.123456789Z"), kT0 + 123'456'789);
  EXPECT_EQ(Time("2026-11-21T11:00:00+01:00"), kT0);
  EXPECT_EQ(Time("2026-11-21T11:30:00+0130"), kT0);
  EXPECT_EQ(Time("2026-11-21T05:00:00-05:00"), kT0);
  EXPECT_EQ(Time("2026-11-21T12:00:00+02"), kT0);
  EXPECT_EQ(Time("2026-11-21 10:00:00Z"), kT0);
  EXPECT_EQ(Time("2024-02-29T00:00:00Z"), 1709164800LL * kSec);  // leap day
}

TEST(TimeSpecTest, IsoWithoutZoneIsLocalTime) {
  {
    ScopedTz tz("UTC0");
    EXPECT_EQ(Time("2026-11-21 10:00:00"), kT0);
    EXPECT_EQ(Time("2026-11-21T10:00:00"), kT0);
    EXPECT_EQ(Time("2026-11-21T10:00"), kT0);
    EXPECT_EQ(Time("2026-11-21"), kT0 - 10 * 3600 * kSec);
  }
  {
    ScopedTz tz("XST-3");  // POSIX sign: three hours east of UTC
    EXPECT_EQ(Time("2026-11-21 13:00:00"), kT0);
    EXPECT_EQ(Time("2026-11-21 13:00:00.5"), kT0 + 500'000'000);
  }
}

TEST(TimeSpecTest, KeywordsAndEpoch) {
  ScopedTz tz("UTC0");
  EXPECT_EQ(Time("now"), kNow);
  EXPECT_EQ(Time("NOW"), kNow);
  EXPECT_EQ(Time("today"), kT0 - 10 * 3600 * kSec);
  EXPECT_EQ(Time("yesterday"), kT0 - 34 * 3600 * kSec);
  EXPECT_EQ(Time("@1795255200"), kT0);
  EXPECT_EQ(Time("@1795255200.5"), kT0 + 500'000'000);
}

TEST(TimeSpecTest, RejectsMalformedTimes) {
  for (const char* bad : {"",
                          "abc",
                          "10x",
                          "10m5",
                          "m",
                          "-10m",
                          "1e3s",
                          "2026",
                          "2026-11",
                          "2026-13-01",
                          "2026-02-30",
                          "2026-11-21T25:00",
                          "2026-11-21T10:60",
                          "2026-11-21T10:00:61",
                          "2026-11-21T10",
                          "2026-11-21T10:00:00+25:00",
                          "2026-11-21T10:00:00+01:",
                          "2026-11-21T10:00:00.Z",
                          "2026-11-21T10:00:00.1234567890Z",
                          "2026-11-21T10:00:00Zjunk",
                          "2026-11-21X10:00",
                          "@",
                          "@abc",
                          "@12x",
                          "todayish",
                          "inf s"}) {
    auto r = ParseTime(bad, kNow);
    EXPECT_FALSE(r.ok()) << "accepted '" << bad << "'";
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), EINVAL);
      EXPECT_NE(r.status().message().find("invalid time"), std::string::npos)
          << r.status().message();
    }
  }
}

TEST(TimeSpecTest, PlainIntegersAreSequenceNumbers) {
  auto r = ParseSeqOrTime("42", kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, SeqOrTime::Kind::kSeq);
  EXPECT_EQ(r->value, 42);
  r = ParseSeqOrTime("0", kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, SeqOrTime::Kind::kSeq);
  EXPECT_EQ(r->value, 0);

  r = ParseSeqOrTime("10m", kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, SeqOrTime::Kind::kTime);
  EXPECT_EQ(r->value, kNow - 600 * kSec);

  r = ParseSeqOrTime("2026-11-21T10:00:00Z", kNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, SeqOrTime::Kind::kTime);
  EXPECT_EQ(r->value, kT0);

  EXPECT_FALSE(ParseSeqOrTime("99999999999999999999", kNow).ok());
  EXPECT_FALSE(ParseSeqOrTime("-5", kNow).ok());
  EXPECT_FALSE(ParseSeqOrTime("", kNow).ok());
}

TEST(TimeSpecTest, FormatsUtcAndLocalTimes) {
  EXPECT_EQ(FormatUtcIso(kT0 + 123'456'789), "2026-11-21T10:00:00.123Z");
  EXPECT_EQ(FormatUtcIso(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatUtcIso(-1'000'000), "1969-12-31T23:59:59.999Z");
  {
    ScopedTz tz("UTC0");
    EXPECT_EQ(FormatLocalTime(kT0 + 5'000'000), "2026-11-21 10:00:00.005");
  }
  {
    ScopedTz tz("XST-3");
    EXPECT_EQ(FormatLocalTime(kT0), "2026-11-21 13:00:00.000");
  }
}

TEST(TimeSpecTest, FormattedTimesParseBack) {
  ScopedTz tz("XST-3");
  int64_t t = kT0 + 42'000'000;
  EXPECT_EQ(Time(FormatUtcIso(t)), t);
  EXPECT_EQ(Time(FormatLocalTime(t)), t);
}

TEST(HumanTest, FormatsBytes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1.0 KiB");
  EXPECT_EQ(FormatBytes(12288), "12.0 KiB");
  EXPECT_EQ(FormatBytes(1536 * 1024), "1.5 MiB");
  EXPECT_EQ(FormatBytes(5ULL << 40), "5.0 TiB");
}

TEST(HumanTest, FormatsDurations) {
  EXPECT_EQ(FormatDuration(3.21), "3.2 s");
  EXPECT_EQ(FormatDuration(0.04), "0.0 s");
  EXPECT_EQ(FormatDuration(-5), "0.0 s");
  EXPECT_EQ(FormatDuration(90), "1.5 min");
  EXPECT_EQ(FormatDuration(2 * 3600 + 360), "2.1 h");
  EXPECT_EQ(FormatDuration(3 * 86400), "3.0 d");
}

TEST(HumanTest, EscapesControlCharacters) {
  EXPECT_EQ(EscapeControl("plain/path.txt"), "plain/path.txt");
  EXPECT_EQ(EscapeControl("a\nb\tc\rd"), "a\\nb\\tc\\rd");
  EXPECT_EQ(EscapeControl(std::string("x\x01y\x1b[31m\x7f", 9)), "x\\x01y\\x1b[31m\\x7f");
  EXPECT_EQ(EscapeControl("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 kept
}

}  // namespace
}  // namespace scribefs::ctl
