// --bwlimit against a real S3 server (Ceph RGW, started by the CTest fixture
// "rgw"): the request bodies that curl sends are held to the limit.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "tests/replication/e2e_scenario.h"
#include "tests/replication/replication_fixture.h"

namespace scribefs::rep {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kMiB = 1024 * 1024;

class BwlimitRgw : public ReplicationTest {};

// 8 MiB at 2M: 4 s of body. One PUT (a part size above the file), so that
// the time is the body's and not RGW's assembly of parts on a busy machine.
TEST_F(BwlimitRgw, EightMiBAtTwoMiBPerSecond) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("bwlimit"));
  // (--history off: the rate is measured on the mirror; history sends file
  // content a second time, as chunks, through the same limit)
  ASSERT_NO_FATAL_FAILURE(MountS3({"--bwlimit", "2M", "--part-size", "64", "--history", "off"}));
  auto start = Clock::now();
  {
    int fd = open(mp("eight").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    std::string chunk = it::Pattern(kMiB, 3);
    for (int i = 0; i < 8; ++i)
      ASSERT_EQ(write(fd, chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
    ASSERT_EQ(close(fd), 0);
  }
  it::RunResult f =
      it::RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "flush", "--timeout", "60"}, 90);
  double took = std::chrono::duration<double>(Clock::now() - start).count();
  ASSERT_EQ(f.exit_code, 0) << f.Describe();
  printf("[ bwlimit  ] 8 MiB at 2M to RGW: %.2f s\n", took);
  EXPECT_GE(took, 3.5);
  EXPECT_LE(took, 5.0);
  ASSERT_NO_FATAL_FAILURE(
      VerifyS3Mirror(env_, bucket_, ExpectedObjects(data()), root() + "/download", {"eight"}));
}

}  // namespace
}  // namespace scribefs::rep
