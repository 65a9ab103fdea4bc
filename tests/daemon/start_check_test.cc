// The start-up decision of daemon/startup_checks.h, without I/O: how the
// previous run stopped (its run marker) and this boot's id decide whether the
// start-up reconciliation compares content, and from which time on.
#include <gtest/gtest.h>

#include <climits>
#include <cstdlib>
#include <unistd.h>

#include <fstream>

#include "daemon/startup_checks.h"

namespace scribefs {
namespace {

constexpr char kBootA[] = "aaaaaaaa-0000-0000-0000-000000000001";
constexpr char kBootB[] = "bbbbbbbb-0000-0000-0000-000000000002";
constexpr int64_t kStarted = int64_t{1765000000} * 1000000000;

RunMarker Marker(const char* boot, bool running) { return RunMarker{boot, kStarted, running}; }

TEST(StartCheck, CleanStopKeepsTheQuickCheckOnAnyBoot) {
  for (const char* now : {kBootA, kBootB}) {
    StartCheckPlan p = DecideStartCheck(Marker(kBootA, false), now);
    EXPECT_EQ(p.previous, PreviousStop::kClean);
    EXPECT_FALSE(p.content_since_ns.has_value()) << now;
  }
}

TEST(StartCheck, CrashOnTheSameBootKeepsTheQuickCheck) {
  StartCheckPlan p = DecideStartCheck(Marker(kBootA, true), kBootA);
  EXPECT_EQ(p.previous, PreviousStop::kCrashSameBoot);
  EXPECT_FALSE(p.content_since_ns.has_value());
}

TEST(StartCheck, UncleanStopOnAnotherBootComparesContentSinceThatRunStarted) {
  StartCheckPlan p = DecideStartCheck(Marker(kBootA, true), kBootB);
  EXPECT_EQ(p.previous, PreviousStop::kCrashOtherBoot);
  ASSERT_TRUE(p.content_since_ns.has_value());
  EXPECT_EQ(*p.content_since_ns, kStarted - kContentCheckSlackNs);
}

TEST(StartCheck, NoMarkerComparesEverything) {
  StartCheckPlan p = DecideStartCheck(std::nullopt, kBootA);
  EXPECT_EQ(p.previous, PreviousStop::kUnknown);
  ASSERT_TRUE(p.content_since_ns.has_value());
  EXPECT_EQ(*p.content_since_ns, INT64_MIN);
}

TEST(StartCheck, AStartTimeNearTheMinimumDoesNotOverflow) {
  RunMarker m{kBootA, INT64_MIN + 5, true};
  StartCheckPlan p = DecideStartCheck(m, kBootB);
  ASSERT_TRUE(p.content_since_ns.has_value());
  EXPECT_EQ(*p.content_since_ns, INT64_MIN);
}

TEST(StartCheck, BootIdComesFromTheKernelOrTheTestOverride) {
  unsetenv("SCRIBEFS_BOOT_ID_FILE");
  auto real = CurrentBootId();
  ASSERT_TRUE(real.ok()) << real.status().message();
  EXPECT_EQ(real->size(), 36u) << *real;  // a UUID
  std::string file = testing::TempDir() + "/boot_id_" + std::to_string(getpid());
  std::ofstream(file) << "  fake-boot \n";
  setenv("SCRIBEFS_BOOT_ID_FILE", file.c_str(), 1);
  auto fake = CurrentBootId();
  unsetenv("SCRIBEFS_BOOT_ID_FILE");
  unlink(file.c_str());
  ASSERT_TRUE(fake.ok()) << fake.status().message();
  EXPECT_EQ(*fake, "fake-boot");
}

}  // namespace
}  // namespace scribefs
