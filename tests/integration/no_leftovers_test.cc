// Runs after every other integration test (CTest FIXTURES_CLEANUP): no test may
// leave a mount or a temp dir behind. A temp dir is /tmp/scribefs-it-<pid>-*,
// so the check is safe while other test processes still run (ctest -j): only
// dirs whose test process is gone count.
#include <dirent.h>
#include <signal.h>
#include <sys/mount.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

// The pid in "/tmp/scribefs-it-<pid>-XXXXXX[/...]", or -1.
pid_t OwnerPid(const std::string& path) {
  std::string prefix = kTempPrefix;
  if (path.compare(0, prefix.size(), prefix) != 0) return -1;
  return static_cast<pid_t>(atoi(path.c_str() + prefix.size()));
}

bool Gone(pid_t pid) { return pid > 0 && kill(pid, 0) != 0 && errno == ESRCH; }

// Both tests report leftovers and then clear them (lazy unmount, remove), so
// that one broken run does not fail every later one.
TEST(NoLeftovers, NoMountsFromFinishedTests) {
  std::ifstream in("/proc/self/mounts");
  std::string line, leftovers;
  std::vector<std::string> points;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string src, point, type;
    ls >> src >> point >> type;
    if (point.find("scribefs-it-") == std::string::npos) continue;
    if (Gone(OwnerPid(point))) {
      leftovers += "\n  " + point + " (" + type + ")";
      points.push_back(point);
    }
  }
  EXPECT_TRUE(leftovers.empty()) << "mounts left behind by finished integration tests:"
                                 << leftovers;
  // Innermost first.
  std::sort(points.begin(), points.end(),
            [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& p : points) {
    if (RunCommand({"fusermount3", "-uz", p}, 10).exit_code != 0) umount2(p.c_str(), MNT_DETACH);
  }
}

TEST(NoLeftovers, NoTempDirsFromFinishedTests) {
  std::string leftovers;
  DIR* d = opendir("/tmp");
  ASSERT_NE(d, nullptr);
  while (struct dirent* e = readdir(d)) {
    std::string path = std::string("/tmp/") + e->d_name;
    if (Gone(OwnerPid(path))) leftovers += "\n  " + path;
  }
  closedir(d);
  EXPECT_TRUE(leftovers.empty()) << "temp dirs left behind by finished integration tests:"
                                 << leftovers;
  std::istringstream paths(leftovers);
  std::string p;
  while (paths >> p)
    if (MountsUnder(p).empty()) RemoveTree(p);
}

}  // namespace
}  // namespace scribefs::it
