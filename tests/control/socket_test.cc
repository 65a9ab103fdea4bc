// The daemon's control socket: mode 0600 in a 0700 state directory; bad
// input (malformed JSON, a 10 MiB line, unknown verbs, clients that close
// mid-request) gets an error answer or a closed connection and the daemon
// keeps serving; start-up never removes a path that is not a socket, and
// replaces a stale socket.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <thread>

#include "common/unix_socket.h"
#include "tests/control/control_util.h"

namespace scribefs::ctltest {
namespace {

using namespace std::chrono_literals;

class SocketTest : public it::MountTest {
 protected:
  std::string sock() { return state("control.sock"); }
  // The daemon still answers status, and the mount still works.
  void ExpectAlive() {
    // Connections the abuse left are closed within moments; until then the
    // daemon may answer "busy" (the connection cap), which is serving too.
    json j;
    for (int i = 0; i < 50; ++i) {
      j = Ask(state(), R"({"cmd":"status"})");
      if (!j.is_object() || j.value("code", "") != "busy") break;
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(j.is_object()) << "no answer after the abuse";
    EXPECT_EQ(j["ok"], true) << j.dump();
    EXPECT_TRUE(it::ProcessAlive(daemon_pid()));
    EXPECT_TRUE(it::WriteFile(mp("still-works"), "yes"));
  }
};

TEST_F(SocketTest, OwnerOnly) {
  Mount();
  struct stat st;
  ASSERT_EQ(lstat(sock().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
  ASSERT_EQ(stat(state().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(SocketTest, BadRequestsGetErrorsAndTheDaemonKeepsServing) {
  Mount();
  json a = Ask(state(), "{\"cmd\": \"status\"");
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(a["code"], "bad_request");
  a = Ask(state(), "this is not json");
  EXPECT_EQ(a["ok"], false);
  a = Ask(state(), R"({"cmd":"format-the-disk"})");
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(a["code"], "unknown_command");
  a = Ask(state(), R"({"cmd":"pause","timeout_s":"soon"})");
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(a["code"], "invalid");
  a = Ask(state(), R"({"cmd":"checkpoint","name":"../../etc"})");
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(a["code"], "invalid");
  a = Ask(state(), R"({"cmd":"rescan"})");  // journal only: nothing to compare with
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(a["code"], "no_target");
  a = Ask(state(), R"({"cmd":"rescan","timeout_s":-1})");
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(a["code"], "invalid");
  ExpectAlive();
}

TEST_F(SocketTest, TenMiBLine) {
  Mount();
  auto fd = ConnectUnix(sock());
  ASSERT_TRUE(fd.ok());
  std::string line = "{\"cmd\":\"status\",\"pad\":\"" + std::string(10 << 20, 'a') + "\"}\n";
  std::thread sender([&] { (void)SendAll(fd->get(), line, 10000); });
  std::string got;
  char buf[4096];
  while (true) {
    ssize_t n = recv(fd->get(), buf, sizeof buf, 0);
    if (n <= 0) break;  // closed (or reset)
    got.append(buf, n);
  }
  sender.join();
  // An error answer (if it arrived before the reset), then a closed connection.
  if (!got.empty()) {
    json a = json::parse(got.substr(0, got.find('\n')), nullptr, false);
    EXPECT_EQ(a["ok"], false) << got.substr(0, 200);
  }
  ExpectAlive();
}

TEST_F(SocketTest, ClientsClosingMidRequest) {
  Mount();
  for (int i = 0; i < 50; ++i) {
    auto fd = ConnectUnix(sock());
    ASSERT_TRUE(fd.ok());
    std::string part = i % 2 ? "{\"cmd\":\"sta" : "{\"cmd\":\"status\"}\n";
    Status sent = SendAll(fd->get(), part, 1000);
    if (!sent.ok()) {
      // Only the connection limit closes a connection before its request
      // (the threads of the connections closed just before may still run, on
      // a loaded machine): its answer, queued before the close, says so.
      std::string got;
      char buf[512];
      ssize_t n;
      while ((n = recv(fd->get(), buf, sizeof buf, MSG_DONTWAIT)) > 0) got.append(buf, size_t(n));
      EXPECT_NE(got.find("\"busy\""), std::string::npos)
          << "connection " << i << ": " << sent.ToString() << "; answer: " << got;
    }
    if (i % 3 == 0) shutdown(fd->get(), SHUT_RDWR);
  }
  // A flush whose client goes away is cancelled, not left running.
  {
    auto fd = ConnectUnix(sock());
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(SendAll(fd->get(), "{\"cmd\":\"flush\",\"timeout_s\":3600}\n", 1000).ok());
  }
  ExpectAlive();
}

TEST_F(SocketTest, ManyConnectionsAtOnce) {
  Mount();
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 40; ++i) {
    auto fd = ConnectUnix(sock());
    ASSERT_TRUE(fd.ok());
    idle.push_back(std::move(fd.value()));
  }
  idle.clear();
  std::this_thread::sleep_for(500ms);
  ExpectAlive();
}

TEST_F(SocketTest, RefusesToStartOverANonSocket) {
  ASSERT_EQ(mkdir(state().c_str(), 0700), 0);
  ASSERT_TRUE(it::WriteFile(sock(), "not a socket"));
  RunResult r = StartDaemon(Options());
  EXPECT_NE(r.exit_code, 0) << "scribefs started although control.sock is a regular file";
  EXPECT_NE(r.err.find("not a socket"), std::string::npos) << r.Describe();
  EXPECT_EQ(it::ReadFile(sock()).value_or(""), "not a socket") << "the file was touched";
  EXPECT_NE(it::MountType(mnt()), "fuse.scribefs");
}

TEST_F(SocketTest, ReplacesAStaleSocket) {
  ASSERT_EQ(mkdir(state().c_str(), 0700), 0);
  {
    // What a daemon killed with SIGKILL leaves behind.
    UniqueFd s(socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    sock().copy(sa.sun_path, sizeof sa.sun_path - 1);
    ASSERT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  }
  Mount();
  ExpectAlive();
}

TEST_F(SocketTest, SocketIsRemovedOnUnmountAndReplacedAfterAKill) {
  Mount();
  ASSERT_EQ(Unmount(), 0);
  struct stat st;
  EXPECT_NE(lstat(sock().c_str(), &st), 0) << "control.sock left after a clean stop";
  Mount();
  KillDaemon();
  EXPECT_EQ(lstat(sock().c_str(), &st), 0);
  RunResult r = Scribectl(state(), {"status"});
  EXPECT_EQ(r.exit_code, 4) << "stale socket: " << r.Describe();
  Unmount();  // the dead mount
  Mount();    // replaces the stale socket
  ExpectAlive();
}

}  // namespace
}  // namespace scribefs::ctltest
