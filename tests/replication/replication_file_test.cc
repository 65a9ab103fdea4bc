// Replication to a file:// target (no S3 server needed): the end-to-end
// scenario, namespace operations racing the uploader, and the TcpProxy
// fault-injection tool the S3 tests rely on.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "journal/reader.h"
#include "journal/remote_index.h"
#include "journal/targets.h"
#include "tests/replication/e2e_scenario.h"
#include "tests/replication/replication_fixture.h"
#include "tests/replication/tcp_proxy.h"

namespace scribefs::rep {
namespace {

class ReplicationFile : public ReplicationTest {};

// ---- 2. end to end, file:// -------------------------------------------------

TEST_F(ReplicationFile, EndToEndMirrorsTreeInDirectory) {
  std::string target = root() + "/target";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + target, {}));
  ASSERT_NO_FATAL_FAILURE(BuildTree(mp()));
  ASSERT_TRUE(Flush(120));
  UploaderCounters c1 = ReadCounters(state());
  ASSERT_TRUE(c1.present) << "no uploader counters in the journal's meta table";
  ASSERT_NO_FATAL_FAILURE(MutateTree(mp()));
  ASSERT_TRUE(Flush(120));
  UploaderCounters c2 = ReadCounters(state());
  printf("[ counters ] after phase 1: %s\n[ counters ] after phase 2: %s\n", c1.raw.c_str(),
         c2.raw.c_str());
  // Renames of unchanged content are copies. (Not checked through bytes_sent
  // here: LocalStore counts the bytes a copy writes as sent.)
  EXPECT_GT(c2.copies, c1.copies) << c2.Describe();
  EXPECT_EQ(CountStates(state())["failed"], 0) << Head([&] {
    std::vector<std::string> v;
    for (auto& r : RecordsIn("failed")) v.push_back(it::Dump(r) + " error=" + r.error.value_or(""));
    return v;
  }());
  auto want = ExpectedObjects(data());
  EXPECT_GT(want.size(), size_t(kSmallFiles));
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(target, want));
}

// Namespace operations in quick succession (mkdir -p, renames right after a
// create): each must reach the target. The journal records an operation
// before it is applied to DATADIR, so an uploader that reconciles a path as
// soon as its record is committed can look before the operation happened,
// find nothing (or the old state), mark the record done, and never look again.
TEST_F(ReplicationFile, RapidNamespaceOpsAllReachTarget) {
  std::string target = root() + "/target";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + target, {}));
  for (int round = 0; round < 100; ++round) {
    std::string r = mp("r" + std::to_string(round));
    for (const char* d : {"", "/a", "/a/b", "/a/b/c", "/s1", "/s2", "/s3"}) {
      ASSERT_EQ(mkdir((r + d).c_str(), 0755), 0) << r + d << ": " << strerror(errno);
      if (round % 2) std::this_thread::sleep_for(std::chrono::milliseconds(3));  // uploader idle
    }
    ASSERT_TRUE(it::WriteFile(r + "/a/b/c/f.txt", "f" + std::to_string(round)));
    ASSERT_TRUE(it::WriteFile(r + "/x", "x" + std::to_string(round)));
    ASSERT_EQ(rename((r + "/x").c_str(), (r + "/a/x-moved").c_str()), 0) << strerror(errno);
    ASSERT_EQ(rename((r + "/s3").c_str(), (r + "/s3-moved").c_str()), 0) << strerror(errno);
  }
  ASSERT_TRUE(Flush(60));
  auto want = ExpectedObjects(data());
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(target, want));
}

// The journal keeps what each target holds (schema version 5, journal/
// targets.h): a restart with the same target sends nothing again, and a
// different target starts from nothing and is filled from the tree, while
// the target it replaced is forgotten.
TEST_F(ReplicationFile, ARestartKeepsTheTargetsStateAndANewTargetGetsEverything) {
  std::string first = root() + "/first", second = root() + "/second";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + first, {}));
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(it::WriteFile(mp("f" + std::to_string(i)), "content " + std::to_string(i)));
  ASSERT_TRUE(Flush(60));
  ASSERT_EQ(Unmount(), 0);
  UploaderCounters before = ReadCounters(state());
  ASSERT_EQ(before.uploads, 20u) << before.Describe();

  // A daemon's counters start at zero and are noted with every upload: the
  // note of the first daemon stays when the second stores nothing.
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + first, {}));
  ASSERT_TRUE(Flush(60));
  UploaderCounters again = ReadCounters(state());
  EXPECT_TRUE(again.updated_ns == before.updated_ns || again.uploads == 0) << again.Describe();
  ASSERT_EQ(Unmount(), 0);

  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + second, {}));
  ASSERT_TRUE(Flush(60));
  UploaderCounters moved = ReadCounters(state());
  EXPECT_GT(moved.updated_ns, before.updated_ns) << moved.Describe();
  EXPECT_GE(moved.uploads, 20u) << moved.Describe();
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(second, ExpectedObjects(data())));
  auto reader = JournalReader::Open(state("journal.db"));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto targets = Targets::List(**reader);
  ASSERT_TRUE(targets.ok()) << targets.status().ToString();
  ASSERT_EQ(targets->size(), 1u);
  EXPECT_EQ((*targets)[0].url, "file://" + second);
  auto held = RemoteIndex::Over(**reader, (*targets)[0].id)->Count(true);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 20u);
}

// The other side of the same race: unlink, rmdir and renames of paths that
// are already in the target. Reconciled before the operation is applied, the
// path still exists, looks unchanged, and its object is never deleted.
TEST_F(ReplicationFile, RapidDeletesAndRenamesOfUploadedPathsReachTarget) {
  constexpr int kDirs = 160;
  std::string target = root() + "/target";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + target, {}));
  for (int d = 0; d < kDirs; ++d) {
    std::string dir = mp("d" + std::to_string(d));
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << strerror(errno);
    ASSERT_EQ(mkdir((dir + "/empty").c_str(), 0755), 0) << strerror(errno);
    for (int f = 0; f < 5; ++f)
      ASSERT_TRUE(it::WriteFile(dir + "/f" + std::to_string(f), dir + std::to_string(f)));
  }
  ASSERT_TRUE(Flush(60));
  // Four threads at once (their records share group commits, so a thread may
  // apply its operation well after the commit that announced it), pausing
  // between operations so that the uploader is idle and quick to react.
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); };
      for (int d = t; d < kDirs; d += 4) {
        std::string dir = mp("d" + std::to_string(d));
        errors += unlink((dir + "/f0").c_str()) != 0;
        pause();
        errors += rmdir((dir + "/empty").c_str()) != 0;
        pause();
        errors += rename((dir + "/f1").c_str(), (dir + "/f1-moved").c_str()) != 0;
        pause();
        errors += rename((dir + "/f2").c_str(), (dir + "/f3").c_str()) != 0;
        pause();
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(errors, 0);
  ASSERT_TRUE(Flush(60));
  auto want = ExpectedObjects(data());
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(target, want));
}

// Renames that come back to where they started (a -> b -> a, and a swap of
// two names through a third) must not leave the uploader waiting forever:
// each old name waits until its content was copied to the new name, and here
// the new name waits for the old one in turn. And the swapped names must end
// up with their new content.
TEST_F(ReplicationFile, RenamesInACycleReachTarget) {
  std::string target = root() + "/target";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + target, {}));
  ASSERT_TRUE(it::WriteFile(mp("a"), "a"));
  ASSERT_TRUE(it::WriteFile(mp("x"), "x"));
  ASSERT_TRUE(it::WriteFile(mp("y"), "y"));
  // x and y alike in size and mtime (as two files written within one clock
  // tick are): only the inode tells the uploader that x's content changed.
  struct timespec same[2] = {{1700000000, 0}, {1700000000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, mp("x").c_str(), same, 0), 0);
  ASSERT_EQ(utimensat(AT_FDCWD, mp("y").c_str(), same, 0), 0);
  ASSERT_TRUE(Flush(30));
  ASSERT_EQ(rename(mp("a").c_str(), mp("b").c_str()), 0);
  ASSERT_EQ(rename(mp("b").c_str(), mp("a").c_str()), 0);
  ASSERT_EQ(rename(mp("x").c_str(), mp("t").c_str()), 0);
  ASSERT_EQ(rename(mp("y").c_str(), mp("x").c_str()), 0);
  ASSERT_EQ(rename(mp("t").c_str(), mp("y").c_str()), 0);
  ASSERT_TRUE(Flush(30));
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(target, ExpectedObjects(data())));
}

// ---- TcpProxy ------------------------------------------------------------------

// A one-connection-at-a-time echo server on 127.0.0.1.
class EchoServer {
 public:
  EchoServer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 16);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        std::thread([c] {
          char buf[4096];
          ssize_t n;
          while ((n = read(c, buf, sizeof buf)) > 0)
            if (write(c, buf, n) != n) break;
          close(c);
        }).detach();
      }
    });
  }
  ~EchoServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  int fd_ = -1, port_ = 0;
  std::thread thread_;
};

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

std::string RoundTrip(int fd, const std::string& msg) {
  if (write(fd, msg.data(), msg.size()) != ssize_t(msg.size())) return "(write failed)";
  std::string got;
  char buf[4096];
  while (got.size() < msg.size()) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return got + "(read " + std::to_string(n) + ")";
    got.append(buf, n);
  }
  return got;
}

TEST(TcpProxy, ForwardsRefusesWhenDownCutsOpenConnectionsAndComesBack) {
  EchoServer echo;
  std::string err;
  auto proxy = TcpProxy::Start("127.0.0.1", echo.port(), 0, &err);
  ASSERT_NE(proxy, nullptr) << err;
  int port = proxy->port();
  int c1 = Connect(port);
  ASSERT_GE(c1, 0) << strerror(errno);
  EXPECT_EQ(RoundTrip(c1, "hello"), "hello");
  std::string big(1 << 20, 'x');
  EXPECT_EQ(RoundTrip(c1, big).size(), big.size());

  proxy->Down();
  EXPECT_FALSE(proxy->is_up());
  // The open connection was cut.
  char b;
  EXPECT_LE(read(c1, &b, 1), 0);
  close(c1);
  // New connections are refused.
  EXPECT_EQ(Connect(port), -1);
  EXPECT_EQ(errno, ECONNREFUSED);

  ASSERT_TRUE(proxy->Up(&err)) << err;
  EXPECT_EQ(proxy->port(), port);
  int c2 = Connect(port);
  ASSERT_GE(c2, 0) << strerror(errno);
  EXPECT_EQ(RoundTrip(c2, "again"), "again");
  close(c2);
  EXPECT_GE(proxy->accepted(), 2u);
}

}  // namespace
}  // namespace scribefs::rep
