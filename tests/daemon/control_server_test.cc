// ControlServer: framing (one JSON object per line), error answers for bad
// requests, oversize lines, vanishing and stalling clients, the connection
// cap, cancellation of slow handlers, and safe creation of the socket.
#include "daemon/control_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

namespace scribefs {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Reads one line (without the newline) within timeout; nullopt on EOF/timeout.
std::optional<std::string> ReadLine(int fd, std::chrono::milliseconds timeout = 3000ms) {
  std::string line;
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    if (n <= 0) return std::nullopt;
    if (c == '\n') return line;
    line += c;
  }
  return std::nullopt;
}

json Ask(int fd, const std::string& line) {
  EXPECT_TRUE(SendAll(fd, line + "\n", 3000).ok());
  auto answer = ReadLine(fd);
  if (!answer) return json{{"closed", true}};
  return json::parse(*answer, nullptr, false);
}

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/scribefs-ctl-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/control.sock";
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::map<std::string, ControlHandler> Handlers() {
    std::map<std::string, ControlHandler> h;
    h["echo"] = [](const json& req, const ControlRequest&) { return json{{"got", req}}; };
    h["fail"] = [](const json&, const ControlRequest&) {
      return json{{"ok", false}, {"error", "nope"}, {"code", "failed"}};
    };
    h["throw"] = [](const json&, const ControlRequest&) -> json {
      throw std::runtime_error("boom");
    };
    h["need_int"] = [](const json& req, const ControlRequest&) {
      return json{{"n", req.at("n").get<int>()}};
    };
    h["slow"] = [this](const json&, const ControlRequest& ctx) {
      slow_started_ = true;
      auto until = Clock::now() + 10s;
      while (Clock::now() < until && !ctx.Cancelled()) std::this_thread::sleep_for(10ms);
      slow_cancelled_ = ctx.Cancelled();
      slow_done_ = true;
      return json{{"slow", true}};
    };
    return h;
  }
  void Start(ControlServerOptions o = {}) {
    auto s = ControlServer::Start(path_, Handlers(), o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s.value());
  }
  UniqueFd Connect() {
    auto fd = ConnectUnix(path_);
    EXPECT_TRUE(fd.ok()) << fd.status().ToString();
    return fd.ok() ? std::move(fd.value()) : UniqueFd();
  }
  void ExpectServing() {
    // Connections a test just dropped may still count against the cap for
    // a moment ("busy"): that is serving too, so ask again.
    json a;
    for (int i = 0; i < 50; ++i) {
      UniqueFd fd = Connect();
      a = Ask(fd.get(), R"({"cmd":"echo","x":1})");
      if (a.value("code", "") != "busy") break;
      std::this_thread::sleep_for(100ms);
    }
    EXPECT_EQ(a["ok"], true) << a.dump();
    EXPECT_EQ(a["got"]["x"], 1) << a.dump();
  }

  std::string dir_, path_;
  std::unique_ptr<ControlServer> server_;
  std::atomic<bool> slow_started_{false}, slow_cancelled_{false}, slow_done_{false};
};

TEST_F(ControlServerTest, SocketIsOwnerOnly) {
  Start();
  struct stat st;
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_NE(lstat((path_ + ".new").c_str(), &st), 0) << "temporary name left behind";
}

TEST_F(ControlServerTest, RequestsAndAnswersOnePerLine) {
  Start();
  UniqueFd fd = Connect();
  // Two requests in one write, answered in order.
  ASSERT_TRUE(
      SendAll(fd.get(), "{\"cmd\":\"echo\",\"i\":1}\n{\"cmd\":\"echo\",\"i\":2}\n", 1000).ok());
  auto a1 = ReadLine(fd.get()), a2 = ReadLine(fd.get());
  ASSERT_TRUE(a1 && a2);
  EXPECT_EQ(json::parse(*a1)["got"]["i"], 1);
  EXPECT_EQ(json::parse(*a2)["got"]["i"], 2);
  EXPECT_EQ(json::parse(*a1)["ok"], true);
  // A handler's own error answer passes through.
  EXPECT_EQ(Ask(fd.get(), R"({"cmd":"fail"})")["error"], "nope");
}

TEST_F(ControlServerTest, BadRequestsGetErrorAnswersAndTheConnectionStays) {
  Start();
  UniqueFd fd = Connect();
  struct Case {
    const char* line;
    const char* code;
  } cases[] = {
      {"{not json", "bad_request"},
      {"[1,2,3]", "bad_request"},
      {"\"pause\"", "bad_request"},
      {"{\"verb\":\"status\"}", "bad_request"},
      {"{\"cmd\":42}", "bad_request"},
      {"{\"cmd\":\"launch-missiles\"}", "unknown_command"},
      {"{\"cmd\":\"need_int\",\"n\":\"seven\"}", "bad_request"},
      {"{\"cmd\":\"need_int\"}", "bad_request"},
      {"{\"cmd\":\"throw\"}", "failed"},
      {"\xff\xfe{\"cmd\":\"echo\"}", "bad_request"},
  };
  for (const auto& c : cases) {
    json a = Ask(fd.get(), c.line);
    EXPECT_EQ(a["ok"], false) << c.line << " -> " << a.dump();
    EXPECT_EQ(a["code"], c.code) << c.line << " -> " << a.dump();
    EXPECT_TRUE(a["error"].is_string() && !a["error"].get<std::string>().empty()) << a.dump();
  }
  EXPECT_EQ(Ask(fd.get(), R"({"cmd":"echo"})")["ok"], true) << "connection unusable after errors";
  // Blank lines are ignored.
  EXPECT_EQ(Ask(fd.get(),
                "\n\r\n"
                R"({"cmd":"echo"})")["ok"],
            true);
}

TEST_F(ControlServerTest, OversizeLineGetsAnErrorAndIsClosed) {
  Start();
  UniqueFd fd = Connect();
  std::string big(10 << 20, 'x');
  // The server stops reading at the cap: our send may fail (EPIPE/ECONNRESET).
  std::thread sender(
      [&] { (void)SendAll(fd.get(), "{\"cmd\":\"echo\",\"x\":\"" + big + "\"}\n", 5000); });
  auto line = ReadLine(fd.get(), 5000ms);
  sender.join();
  ASSERT_TRUE(line.has_value()) << "no error answer before the close";
  json a = json::parse(*line, nullptr, false);
  EXPECT_EQ(a["ok"], false);
  EXPECT_EQ(a["code"], "bad_request");
  EXPECT_FALSE(ReadLine(fd.get(), 2000ms).has_value()) << "connection not closed";
  ExpectServing();
}

TEST_F(ControlServerTest, ClientVanishingMidRequestCostsNothing) {
  Start();
  for (int i = 0; i < 20; ++i) {
    UniqueFd fd = Connect();
    ASSERT_TRUE(SendAll(fd.get(), "{\"cmd\":\"ech", 1000).ok());  // no newline, then gone
  }
  {
    // Gone while its (complete) request is being answered.
    UniqueFd fd = Connect();
    ASSERT_TRUE(SendAll(fd.get(), "{\"cmd\":\"echo\"}\n", 1000).ok());
    shutdown(fd.get(), SHUT_RDWR);
  }
  ExpectServing();
}

TEST_F(ControlServerTest, StalledPartialLineIsDropped) {
  ControlServerOptions o;
  o.line_timeout = 300ms;
  Start(o);
  UniqueFd fd = Connect();
  ASSERT_TRUE(SendAll(fd.get(), "{\"cmd\":", 1000).ok());
  auto line = ReadLine(fd.get(), 3000ms);
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(json::parse(*line)["ok"], false);
  EXPECT_FALSE(ReadLine(fd.get(), 1000ms).has_value()) << "stalled connection not closed";
  ExpectServing();
}

TEST_F(ControlServerTest, SlowHandlerSeesTheClientLeave) {
  Start();
  {
    UniqueFd fd = Connect();
    ASSERT_TRUE(SendAll(fd.get(), "{\"cmd\":\"slow\"}\n", 1000).ok());
    auto until = Clock::now() + 2s;
    while (!slow_started_ && Clock::now() < until) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(slow_started_);
  }  // closed
  auto until = Clock::now() + 3s;
  while (!slow_done_ && Clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(slow_done_) << "handler did not notice the client left";
  EXPECT_TRUE(slow_cancelled_);
  // Meanwhile other clients were served.
  ExpectServing();
}

TEST_F(ControlServerTest, OtherClientsAreServedWhileAHandlerIsSlow) {
  Start();
  UniqueFd slow = Connect();
  ASSERT_TRUE(SendAll(slow.get(), "{\"cmd\":\"slow\"}\n", 1000).ok());
  auto t = Clock::now();
  ExpectServing();
  EXPECT_LT(Clock::now() - t, 1s);
}

TEST_F(ControlServerTest, ConnectionCap) {
  ControlServerOptions o;
  o.max_connections = 2;
  Start(o);
  UniqueFd a = Connect(), b = Connect();
  EXPECT_EQ(Ask(a.get(), R"({"cmd":"echo"})")["ok"], true);
  EXPECT_EQ(Ask(b.get(), R"({"cmd":"echo"})")["ok"], true);
  UniqueFd c = Connect();
  auto line = ReadLine(c.get());
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(json::parse(*line)["code"], "busy");
  a.Reset();
  b.Reset();
  std::this_thread::sleep_for(500ms);
  ExpectServing();
}

TEST_F(ControlServerTest, StopCancelsRunningHandlersAndRemovesTheSocket) {
  Start();
  UniqueFd fd = Connect();
  ASSERT_TRUE(SendAll(fd.get(), "{\"cmd\":\"slow\"}\n", 1000).ok());
  auto until = Clock::now() + 2s;
  while (!slow_started_ && Clock::now() < until) std::this_thread::sleep_for(10ms);
  auto t = Clock::now();
  server_.reset();
  EXPECT_LT(Clock::now() - t, 3s);
  EXPECT_TRUE(slow_cancelled_);
  struct stat st;
  EXPECT_NE(lstat(path_.c_str(), &st), 0) << "socket left behind";
}

TEST_F(ControlServerTest, ReplacesAStaleSocket) {
  {
    // A socket nobody listens on any more (a daemon that was killed).
    UniqueFd s(socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    path_.copy(sa.sun_path, sizeof sa.sun_path - 1);
    ASSERT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  }
  Start();
  ExpectServing();
}

TEST_F(ControlServerTest, RefusesToReplaceANonSocket) {
  {
    std::ofstream f(path_);
    f << "precious";
  }
  auto s = ControlServer::Start(path_, Handlers());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), EEXIST) << s.status().ToString();
  EXPECT_NE(s.status().message().find("not a socket"), std::string::npos);
  std::ifstream f(path_);
  std::string content;
  f >> content;
  EXPECT_EQ(content, "precious") << "the file was touched";
  // A directory, too.
  std::filesystem::remove(path_);
  ASSERT_EQ(mkdir(path_.c_str(), 0700), 0);
  EXPECT_FALSE(ControlServer::Start(path_, Handlers()).ok());
  struct stat st;
  EXPECT_EQ(stat(path_.c_str(), &st), 0);
}

TEST_F(ControlServerTest, RefusesASocketALiveDaemonOwns) {
  Start();
  auto second = ControlServer::Start(path_, Handlers());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), EADDRINUSE) << second.status().ToString();
  ExpectServing();  // the first one is untouched
}

TEST_F(ControlServerTest, LongPathsWork) {
  std::string deep = dir_;
  while (deep.size() < 150) {
    deep += "/a-rather-long-directory-name";
    ASSERT_EQ(mkdir(deep.c_str(), 0700), 0);
  }
  path_ = deep + "/control.sock";
  Start();
  ExpectServing();
}

}  // namespace
}  // namespace scribefs
