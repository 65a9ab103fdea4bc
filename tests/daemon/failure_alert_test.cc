// The decision of daemon/failure_alert.h: once per outage, after the delay.
// (The hook run by a real daemon: replication.SeveralTargetsS3.)
#include "daemon/failure_alert.h"

#include <gtest/gtest.h>

namespace scribefs {
namespace {

constexpr int64_t kS = 1000000000;

TEST(AlertDueTest, OncePerOutageAfterTheDelay) {
  int64_t alerted = 0;
  EXPECT_FALSE(AlertDue(0, 100 * kS, 5 * kS, &alerted)) << "not failing";
  EXPECT_FALSE(AlertDue(100 * kS, 104 * kS, 5 * kS, &alerted)) << "failing for 4 s of 5";
  EXPECT_TRUE(AlertDue(100 * kS, 105 * kS, 5 * kS, &alerted)) << "5 s: told";
  EXPECT_FALSE(AlertDue(100 * kS, 106 * kS, 5 * kS, &alerted)) << "the same outage: once";
  EXPECT_FALSE(AlertDue(100 * kS, 900 * kS, 5 * kS, &alerted)) << "however long it lasts";
  EXPECT_FALSE(AlertDue(0, 901 * kS, 5 * kS, &alerted)) << "over";
  EXPECT_EQ(alerted, 0);
  EXPECT_FALSE(AlertDue(902 * kS, 903 * kS, 5 * kS, &alerted)) << "a new outage, 1 s old";
  EXPECT_TRUE(AlertDue(902 * kS, 907 * kS, 5 * kS, &alerted)) << "told again";
}

TEST(AlertDueTest, AnOutageThatEndsBeforeTheDelayIsNeverTold) {
  int64_t alerted = 0;
  EXPECT_FALSE(AlertDue(10 * kS, 12 * kS, 5 * kS, &alerted));
  EXPECT_FALSE(AlertDue(0, 13 * kS, 5 * kS, &alerted));
  EXPECT_FALSE(AlertDue(20 * kS, 24 * kS, 5 * kS, &alerted));
  EXPECT_TRUE(AlertDue(20 * kS, 25 * kS, 5 * kS, &alerted));
}

TEST(AlertEnvironmentTest, NamesTheTargetAndErrorAndNothingElse) {
  auto env = AlertEnvironment("offsite", "s3://b/h", "a: connection refused", 1700000000LL * kS,
                              "/srv/data");
  EXPECT_EQ(env, (std::vector<std::string>{
                     "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "SCRIBEFS_TARGET=offsite", "SCRIBEFS_TARGET_URL=s3://b/h",
                     "SCRIBEFS_ERROR=a: connection refused", "SCRIBEFS_FAILING_SINCE=1700000000",
                     "SCRIBEFS_DATADIR=/srv/data"}));
}

}  // namespace
}  // namespace scribefs
