// Resource bounds of pauses and sync mode (issue 10, item 10), on real
// mounts: the copies of writes held during a pause are bounded in total (a
// write beyond the bound waits in its worker, and still lands after the
// resume), and in sync mode writers waiting for an unreachable target leave
// FUSE workers free for reads.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/control/control_util.h"

namespace scribefs::ctltest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Resident memory of pid, KiB (0 when unknown).
long RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return 0;
}

constexpr size_t kMiB = 1 << 20;

// Child body (after fork: plain syscalls): one O_DIRECT write of `len` bytes
// of byte `fill` at offset 0 of an existing file. O_DIRECT makes it one
// synchronous WRITE request, which a pause holds (the page cache would
// absorb it instead).
int DirectWrite(const char* path, size_t len, char fill) {
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, len) != 0) return ENOMEM;
  memset(buf, fill, len);
  int fd = open(path, O_WRONLY | O_DIRECT);
  if (fd < 0) return errno;
  ssize_t n = pwrite(fd, buf, len, 0);
  if (n != static_cast<ssize_t>(len)) return n < 0 ? errno : EIO;
  return close(fd) == 0 ? 0 : errno;
}

using LimitsTest = it::MountTest;

// 96 writers of 1 MiB each while paused, with the bound on held copies at
// 8 MiB: the daemon must not grow by the 96 MiB (on main it kept a copy of
// each), and every write lands after the resume.
TEST_F(LimitsTest, HeldWritesDuringAPauseUseBoundedMemory) {
  constexpr int kWriters = 96;
  for (int i = 0; i < kWriters; ++i) ASSERT_TRUE(it::WriteFile(data("f" + std::to_string(i)), ""));
  ASSERT_TRUE(it::WriteFile(data("read-me"), "still readable"));
  Options o;
  o.args = {"--max-held-mib", "8"};
  Mount(o);
  long before = RssKib(daemon_pid());
  ASSERT_GT(before, 0);
  ASSERT_EQ(Scribectl(state(), {"pause", "--timeout", "120"}).exit_code, 0);

  std::vector<std::string> paths;
  for (int i = 0; i < kWriters; ++i) paths.push_back(mp("f" + std::to_string(i)));
  std::vector<std::unique_ptr<Child>> writers;
  for (int i = 0; i < kWriters; ++i) {
    const char* p = paths[i].c_str();
    char fill = static_cast<char>('A' + i % 26);
    writers.push_back(std::make_unique<Child>([p, fill] { return DirectWrite(p, kMiB, fill); }));
  }
  // Every write has reached the daemon (held or waiting at the gate).
  std::this_thread::sleep_for(3s);
  long during = RssKib(daemon_pid());
  json st = JsonOut(Scribectl(state(), {"--json", "status"}));
  for (auto& w : writers) EXPECT_FALSE(w->Exited()) << "a write completed during the pause";
  ASSERT_EQ(Scribectl(state(), {"resume"}).exit_code, 0);
  for (auto& w : writers) {
    auto s = w->Wait(60);
    ASSERT_TRUE(s.has_value()) << "a held write did not complete after the resume";
    EXPECT_EQ(*s, 0) << strerror(*s);
  }
  // Bound + slack (worker buffers, allocator): far below the 96 MiB that a
  // copy per write costs.
  long grown_mib = (during - before) / 1024;
  std::cout << "daemon RSS while paused: " << before / 1024 << " MiB -> " << during / 1024
            << " MiB (" << kWriters << " held 1 MiB writes, bound 8 MiB)\n";
  EXPECT_LT(grown_mib, 8 + 40) << "daemon RSS " << before / 1024 << " MiB -> " << during / 1024
                               << " MiB while paused; status " << st.dump();
  for (int i = 0; i < kWriters; ++i) {
    auto content = it::ReadFile(data("f" + std::to_string(i)));
    ASSERT_TRUE(content.has_value());
    EXPECT_EQ(*content, std::string(kMiB, static_cast<char>('A' + i % 26))) << "f" << i;
  }
}

// Sync mode with the target stalled: the target is a file:// replica on a
// second scribefs mount that is paused, so uploads hang (as with a target
// that stopped answering). 20 writers wait in fsync for their upload; a
// reader of a file never read before (lookup, open, read all go to the
// daemon) must still be served at once: at most threads - 2 workers wait,
// the other waits are answered from the reply pool. On main the 16 workers
// all waited and the reader hung until the sync timeout.
TEST_F(LimitsTest, SyncWaitsLeaveWorkersForReads) {
  const std::string tdata = root() + "/tdata", tstate = root() + "/tstate", tmnt = root() + "/tmnt";
  ASSERT_EQ(mkdir(tdata.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((tdata + "/replica").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(tmnt.c_str(), 0755), 0);
  Options target;
  target.data_dir = tdata;
  target.state_dir = tstate;
  target.mountpoint = tmnt;
  Mount(target);

  constexpr int kWriters = 20;
  for (int i = 0; i < kWriters; ++i)
    ASSERT_TRUE(it::WriteFile(data("w" + std::to_string(i)), "old"));
  ASSERT_TRUE(it::WriteFile(data("read-me"), "served"));
  Options o;
  o.args = {"--target", "file://" + tmnt + "/replica", "--mode", "sync", "--sync-timeout", "60"};
  Mount(o);
  RunResult flushed = Scribectl(state(), {"flush"}, 60);
  ASSERT_EQ(flushed.exit_code, 0) << flushed.Describe();

  ASSERT_EQ(Scribectl(tstate, {"pause", "--timeout", "120"}).exit_code, 0);
  std::vector<std::string> paths;
  for (int i = 0; i < kWriters; ++i) paths.push_back(mp("w" + std::to_string(i)));
  std::vector<std::unique_ptr<Child>> writers;
  for (int i = 0; i < kWriters; ++i) {
    const char* p = paths[i].c_str();
    writers.push_back(std::make_unique<Child>([p] {
      int fd = open(p, O_WRONLY | O_TRUNC);
      if (fd < 0) return errno;
      if (write(fd, "new", 3) != 3) return errno;
      if (fsync(fd) != 0) return errno;
      return close(fd) == 0 ? 0 : errno;
    }));
  }
  std::this_thread::sleep_for(3s);
  int stuck = 0;
  for (auto& w : writers) stuck += w->Exited() ? 0 : 1;
  EXPECT_EQ(stuck, kWriters) << "the writers did not wait for the stalled target";

  auto t = Clock::now();
  RunResult cat = it::RunCommand({"cat", mp("read-me")}, 15);
  double cat_s = SecondsSince(t);
  t = Clock::now();
  RunResult ls = it::RunCommand({"ls", "-l", mp()}, 15);
  double ls_s = SecondsSince(t);

  ASSERT_EQ(Scribectl(tstate, {"resume"}).exit_code, 0);
  EXPECT_FALSE(cat.timed_out) << "a read starved behind the sync waits";
  EXPECT_EQ(cat.out, "served") << cat.Describe();
  EXPECT_LT(cat_s, 5.0);
  EXPECT_FALSE(ls.timed_out) << "ls starved behind the sync waits";
  EXPECT_LT(ls_s, 5.0);
  for (auto& w : writers) {
    auto s = w->Wait(90);
    ASSERT_TRUE(s.has_value()) << "a writer still waits after the target came back";
    EXPECT_EQ(*s, 0) << strerror(*s);
  }
  for (int i = 0; i < kWriters; ++i)
    EXPECT_EQ(it::ReadFile(tdata + "/replica/w" + std::to_string(i)).value_or("?"), "new")
        << "w" << i << " in the target";
  ASSERT_EQ(Unmount(), 0);
}

}  // namespace
}  // namespace scribefs::ctltest
