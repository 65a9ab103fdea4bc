// The check of the target after an unclean stop (uploader/orphan_sweep.h),
// made deterministic: objects that no upload of this mount recorded are put
// into the bucket by another client, standing in for PUTs that a killed
// daemon had in flight and that the server completed after the next start.
#include <gtest/gtest.h>

#include "tests/durability/mirror_check.h"
#include "tests/replication/replication_fixture.h"

namespace scribefs::dur {
namespace {

class CrashCheckTest : public rep::ReplicationTest {
 protected:
  void PutForeign(const std::string& key, const std::string& body) {
    auto store = rep::OpenS3(env_, bucket_);
    ASSERT_TRUE(store);
    auto put = store->Put(key, Payload::FromMemory(body), {});
    ASSERT_TRUE(put.ok()) << put.status().ToString();
  }
  bool InBucket(const std::string& key) {
    auto store = rep::OpenS3(env_, bucket_);
    return store && store->Head(key).ok();
  }
};

TEST_F(CrashCheckTest, AfterKillDashNineUnaccountedObjectsOfGonePathsAreRemoved) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("crashcheck"));
  ASSERT_TRUE(it::WriteFile(data("kept.txt"), "kept"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--crash-check-delay", "0"}));
  ASSERT_TRUE(it::WriteFile(mp("a.txt"), "hello"));
  auto flushed = Scribectl(state(), {"flush", "--timeout", "60"});
  ASSERT_EQ(flushed.exit_code, 0) << flushed.Describe();

  ASSERT_NO_FATAL_FAILURE(KillDaemon());
  Unmount();
  // "Landed after the crash": a deleted file's object, one below a deleted
  // directory, a directory marker, and an object for a file that does exist
  // but whose upload was never recorded (stale content).
  ASSERT_NO_FATAL_FAILURE(PutForeign("ghost.txt", "from a dead daemon"));
  ASSERT_NO_FATAL_FAILURE(PutForeign("gone/deep.txt", "x"));
  ASSERT_NO_FATAL_FAILURE(PutForeign("gonedir/", ""));
  ASSERT_TRUE(it::WriteFile(data("late.txt"), "the real content"));
  ASSERT_NO_FATAL_FAILURE(PutForeign("late.txt", "stale"));
  // Scribefs's own keys are never touched.
  ASSERT_NO_FATAL_FAILURE(PutForeign(".scribefs/checkpoints/keep.json", "{}"));

  ASSERT_NO_FATAL_FAILURE(MountS3({"--crash-check-delay", "0"}));
  flushed = Scribectl(state(), {"flush", "--timeout", "60"});
  ASSERT_EQ(flushed.exit_code, 0) << flushed.Describe();
  EXPECT_FALSE(InBucket("ghost.txt"));
  EXPECT_FALSE(InBucket("gone/deep.txt"));
  EXPECT_FALSE(InBucket("gonedir/"));
  EXPECT_TRUE(InBucket(".scribefs/checkpoints/keep.json"));
  auto problems = MirrorProblems(env_, bucket_, data());
  EXPECT_TRUE(problems.empty()) << rep::Head(problems);
  auto verify = Scribectl(state(), {"verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.Describe() << verify.out;
  int unaccounted = 0;
  for (const auto& r : Records())
    if (r.op == Op::kReconcile && r.detail.find("unaccounted") != std::string::npos)
      ++unaccounted;
  EXPECT_EQ(unaccounted, 4) << "ghost.txt, gone/deep.txt, gonedir, late.txt";
}

TEST_F(CrashCheckTest, AfterACleanStopTheTargetIsNotListed) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("cleanstop"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--crash-check-delay", "0"}));
  ASSERT_TRUE(it::WriteFile(mp("a.txt"), "hello"));
  auto flushed = Scribectl(state(), {"flush", "--timeout", "60"});
  ASSERT_EQ(flushed.exit_code, 0) << flushed.Describe();
  ASSERT_EQ(Unmount(), 0);
  // Another client's object: a clean stop left nothing in flight, so the
  // next start has no reason to list the target and leaves it alone.
  ASSERT_NO_FATAL_FAILURE(PutForeign("other-client.txt", "not ours"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--crash-check-delay", "0"}));
  flushed = Scribectl(state(), {"flush", "--timeout", "60"});
  ASSERT_EQ(flushed.exit_code, 0) << flushed.Describe();
  EXPECT_TRUE(InBucket("other-client.txt"));
  for (const auto& r : Records())
    EXPECT_FALSE(r.op == Op::kReconcile && r.detail.find("unaccounted") != std::string::npos)
        << it::Dump(r);
}

}  // namespace
}  // namespace scribefs::dur
