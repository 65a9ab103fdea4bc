// The background daemon's log file (STATE/scribefs.log) is rotated by size:
// once it would grow past the limit it becomes scribefs.1.log (older ones
// shift to scribefs.2.log and scribefs.3.log, the oldest is dropped), a new
// scribefs.log is started, owner-only as the first, and the daemon keeps
// logging into it. The limit (10 MiB) is lowered for
// the test with $SCRIBEFS_TEST_LOG_FILE_BYTES; every pause and resume logs
// one line.
#include <sys/stat.h>

#include <cstdlib>

#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

constexpr int kLimit = 2048;

class LogRotationTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    ASSERT_EQ(setenv("SCRIBEFS_TEST_LOG_FILE_BYTES", std::to_string(kLimit).c_str(), 1), 0);
  }
  void TearDown() override {
    unsetenv("SCRIBEFS_TEST_LOG_FILE_BYTES");
    MountTest::TearDown();
  }
  void PauseAndResume() {
    RunResult p = RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "pause", "--timeout", "30"});
    ASSERT_EQ(p.exit_code, 0) << p.Describe();
    RunResult r = RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "resume"});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  }
  static std::optional<struct stat> Stat(const std::string& path) {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return std::nullopt;
    return st;
  }
};

TEST_F(LogRotationTest, RotatesBySizeKeepsThreeAndGoesOnLogging) {
  Mount();
  ASSERT_TRUE(Stat(state("scribefs.log")).has_value());
  // Until the file would pass the limit: no rotation.
  EXPECT_FALSE(Stat(state("scribefs.1.log")).has_value());

  // Far more than four files' worth of lines.
  for (int i = 0; i < 80 && !HasFatalFailure(); ++i) ASSERT_NO_FATAL_FAILURE(PauseAndResume());

  for (const char* name : {"scribefs.log", "scribefs.1.log", "scribefs.2.log", "scribefs.3.log"}) {
    auto st = Stat(state(name));
    ASSERT_TRUE(st.has_value()) << name << " missing";
    EXPECT_TRUE(S_ISREG(st->st_mode)) << name;
    EXPECT_EQ(st->st_mode & 07777, 0600u) << name << ": the log stays owner-only";
    EXPECT_LE(st->st_size, kLimit) << name << " grew past the limit";
    if (std::string(name) != "scribefs.log") {
      EXPECT_GT(st->st_size, kLimit / 2) << name;
    }
  }
  EXPECT_FALSE(Stat(state("scribefs.4.log")).has_value()) << "more than three old files kept";

  // The daemon goes on logging into the new file.
  RunResult p = RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "pause", "--timeout", "30"});
  ASSERT_EQ(p.exit_code, 0) << p.Describe();
  auto current = ReadFile(state("scribefs.log"));
  ASSERT_TRUE(current.has_value());
  auto last_line = current->substr(current->rfind('\n', current->size() - 2) + 1);
  EXPECT_NE(last_line.find("paused by"), std::string::npos) << "last line: " << last_line;
  RunResult r = RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "resume"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(Unmount(), 0);
}

}  // namespace
}  // namespace scribefs::it
