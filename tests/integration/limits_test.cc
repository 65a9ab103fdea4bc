// Resource limits (issue 10, items 5 and 10): what one user can do to the
// daemon's descriptors, memory and FUSE workers must fail that user's calls
// only, never everyone's. Every test runs the real daemon on a real mount.
#include <fcntl.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

constexpr uid_t kNobody = 65534;

// What the child that opened files as nobody saw.
struct OpenReport {
  int drop_err = 0;
  int opened = 0;        // files open (and written and fsynced) when it stopped
  int failed_step = -1;  // 0 open, 1 write, 2 fsync
  int err = 0;
};

// Writes one byte to a new file through the mount and fsyncs it: 0 or errno.
int WriteAndSync(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
  if (!fd) return errno;
  if (write(fd.get(), "x", 1) != 1) return errno;
  if (fsync(fd.get()) != 0) return errno;
  if (close(fd.Release()) != 0) return errno;
  return 0;
}

class LimitsTest : public MountTest {
 protected:
  // Starts the daemon with RLIMIT_NOFILE at `nofile`, soft and hard (so that
  // its raise to the hard limit stays there), through prlimit(1): this
  // process keeps its own limit (it could not raise it back).
  void MountWithFdLimit(rlim_t nofile, std::vector<std::string> args) {
    std::string real = ScribefsBin();
    std::string wrapper = root() + "/scribefs-fd-limited";
    ASSERT_TRUE(WriteFile(wrapper,
                          "#!/bin/sh\nexec prlimit --nofile=" + std::to_string(nofile) + ":" +
                              std::to_string(nofile) + " " + real + " \"$@\"\n",
                          0755));
    ASSERT_EQ(setenv("SCRIBEFS_IT_BIN", wrapper.c_str(), 1), 0);
    Options o;
    o.args = std::move(args);
    RunResult r = StartDaemon(o);
    if (real == SCRIBEFS_BIN)
      unsetenv("SCRIBEFS_IT_BIN");
    else
      setenv("SCRIBEFS_IT_BIN", real.c_str(), 1);
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
    ASSERT_GT(daemon_pid(), 0);
    struct rlimit got;
    ASSERT_EQ(prlimit(daemon_pid(), RLIMIT_NOFILE, nullptr, &got), 0) << strerror(errno);
    ASSERT_EQ(got.rlim_cur, nofile) << "the daemon does not run with the lowered limit";
  }
};

// Item 5: nobody opens files (each written and fsynced) until an open fails.
// The failure must be EMFILE/ENFILE for nobody's open, never EIO; while
// nobody holds them root can still write, fsync and close a file; once they
// are closed everything works again and the journal has every record.
TEST_F(LimitsTest, FdExhaustionFailsOnlyTheCallersOpen) {
  ASSERT_NO_FATAL_FAILURE(MountWithFdLimit(256, {"-o", "allow_other"}));
  ASSERT_EQ(mkdir(mp("pub").c_str(), 0777), 0) << strerror(errno);
  ASSERT_EQ(chmod(mp("pub").c_str(), 0777), 0) << strerror(errno);

  int report[2], release[2];
  ASSERT_EQ(pipe2(report, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(release, O_CLOEXEC), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child keeps this process's high limit: the daemon runs out first.
    close(release[1]);  // or the read below would never see EOF
    close(report[0]);
    OpenReport r;
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) {
      r.drop_err = errno;
    } else {
      std::vector<int> fds;
      for (int i = 0; i < 2000; ++i) {
        int fd = open(mp("pub/f" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644);
        if (fd < 0) {
          r.failed_step = 0, r.err = errno;
          break;
        }
        fds.push_back(fd);
        if (write(fd, "x", 1) != 1) {
          r.failed_step = 1, r.err = errno;
          break;
        }
        if (fsync(fd) != 0) {
          r.failed_step = 2, r.err = errno;
          break;
        }
        r.opened = static_cast<int>(fds.size());
      }
    }
    (void)!write(report[1], &r, sizeof r);
    char c;
    (void)!read(release[0], &c, 1);  // hold every descriptor until told
    _exit(0);
  }
  close(report[1]);
  close(release[0]);
  OpenReport r;
  ASSERT_EQ(read(report[0], &r, sizeof r), static_cast<ssize_t>(sizeof r));
  close(report[0]);

  // Root, while nobody holds everything nobody could get.
  int root_err = WriteAndSync(mp("root-while-full"));
  close(release[1]);
  ASSERT_TRUE(WaitChild(pid, 30).has_value());

  ASSERT_EQ(r.drop_err, 0) << strerror(r.drop_err);
  EXPECT_EQ(r.failed_step, 0) << "step " << r.failed_step << " failed with " << strerror(r.err)
                              << " after " << r.opened << " files";
  EXPECT_TRUE(r.err == EMFILE || r.err == ENFILE)
      << "the open that did not fit must fail with EMFILE/ENFILE, not " << strerror(r.err);
  EXPECT_GT(r.opened, 50) << "the budget is far too small";
  EXPECT_EQ(root_err, 0) << "root while users hold the budget: " << strerror(root_err);

  // Everything closed: writes work again, for root and for nobody.
  EXPECT_EQ(WriteAndSync(mp("after")), 0) << strerror(errno);
  pid_t again = fork();
  if (again == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) _exit(90);
    _exit(WriteAndSync(mp("pub/after")));
  }
  ASSERT_GT(again, 0);
  EXPECT_EQ(WaitChild(again, 30), std::optional<int>(0));
  ASSERT_EQ(Unmount(), 0);

  std::vector<Record> rs = Records();
  for (std::string f : {"pub/f0", "root-while-full", "after", "pub/after"})
    EXPECT_EQ(Find(rs, Op::kCreate, f).size(), 1u) << f;
  if (r.opened > 0) {
    std::string last = "pub/f" + std::to_string(r.opened - 1);
    EXPECT_EQ(Find(rs, Op::kCreate, last).size(), 1u) << last;
    EXPECT_FALSE(Find(rs, Op::kFsync, last).empty()) << last;
  }
  EXPECT_EQ(ReadFile(data("after")).value_or(""), "x");
}

}  // namespace
}  // namespace scribefs::it
