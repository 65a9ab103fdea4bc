// Prometheus metrics on a real mount (README, "Monitoring (Prometheus)"):
// scrape GET /metrics with curl after writes, a checkpoint and a pause and
// check the values; `promtool check metrics` accepts the text; the server
// survives garbage; --metrics-file holds the same families; a non-loopback
// address is refused without --metrics-listen-any.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "daemon/metrics_server.h"
#include "tests/control/control_util.h"

namespace scribefs::ctltest {
namespace {

// A port nobody listens on right now (the kernel's choice for port 0).
int FreePort() {
  UniqueFd s(socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  socklen_t len = sizeof a;
  getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// sample name (with labels) -> value.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return out;
}

// Sends raw bytes to the port and returns what comes back until close.
std::string RawRequest(int port, const std::string& bytes) {
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "";
  timeval tv{10, 0};
  setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)send(s.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
  shutdown(s.get(), SHUT_WR);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = recv(s.get(), buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

class MetricsTest : public it::MountTest {
 protected:
  void MountWithMetrics(std::vector<std::string> extra = {}) {
    port_ = FreePort();
    ASSERT_GT(port_, 0);
    Options o;
    o.args = {"--target", "file://" + root() + "/target", "--metrics-listen",
              "127.0.0.1:" + std::to_string(port_), "--metrics-file", root() + "/scribefs.prom",
              "--metrics-interval", "1"};
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    Mount(o);
  }
  std::string Scrape(const std::string& path = "/metrics") {
    RunResult r = it::RunCommand(
        {"curl", "-sS", "--fail", "http://127.0.0.1:" + std::to_string(port_) + path});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    return r.out;
  }
  // promtool check metrics on text: FAILS under CI=true without promtool.
  void PromtoolAccepts(const std::string& text) {
    if (it::RunCommand({"sh", "-c", "command -v promtool"}).exit_code != 0) {
      const char* ci = getenv("CI");
      if (ci && std::string(ci) == "true")
        FAIL() << "promtool is missing (Debian package prometheus; scripts/install-deps.sh)";
      GTEST_SKIP() << "promtool not installed (apt-get install prometheus); outside CI";
    }
    std::string file = root() + "/scrape.txt";
    ASSERT_TRUE(it::WriteFile(file, text));
    RunResult r = it::RunCommand({"sh", "-c", "promtool check metrics < " + file});
    EXPECT_EQ(r.exit_code, 0) << r.Describe() << "\n" << text;
    EXPECT_EQ(r.out + r.err, "") << "promtool warnings";
  }
  RunResult Ctl(const std::vector<std::string>& args) { return Scribectl(state(), args); }
  int port_ = 0;
};

TEST_F(MetricsTest, ScrapeAfterWritesCheckpointAndPause) {
  MountWithMetrics();
  ASSERT_TRUE(it::WriteFile(mp("a"), std::string(10000, 'a')));
  ASSERT_TRUE(it::WriteFile(mp("b"), std::string(5000, 'b')));
  ASSERT_EQ(Ctl({"flush", "--timeout", "30"}).exit_code, 0);
  ASSERT_EQ(Ctl({"checkpoint", "one", "--wait"}).exit_code, 0);

  auto m = Samples(Scrape());
  EXPECT_EQ(m["scribefs_target_configured"], 1);
  EXPECT_EQ(m["scribefs_pending_records"], 0);
  EXPECT_EQ(m["scribefs_replication_lag_seconds"], 0);
  EXPECT_EQ(m["scribefs_failed_records"], 0);
  EXPECT_GE(m["scribefs_uploads_total"], 2);  // a, b (and the checkpoint manifest is not counted)
  EXPECT_GE(m["scribefs_sent_bytes_total"], 15000);
  EXPECT_GT(m["scribefs_journal_size_bytes"], 0);
  EXPECT_GT(m["scribefs_journal_records"], 0);
  EXPECT_EQ(m["scribefs_paused"], 0);
  EXPECT_EQ(m["scribefs_checkpoint_hold_seconds_count"], 1);
  EXPECT_EQ(m["scribefs_checkpoint_hold_seconds_bucket{le=\"+Inf\"}"], 1);
  EXPECT_TRUE(m.count("scribefs_retries_total{cause=\"network\"}"));

  // No --bwlimit: 0 = unlimited; `scribectl set bwlimit` shows at the next scrape.
  EXPECT_EQ(m["scribefs_upload_bwlimit_bytes_per_second"], 0);
  ASSERT_EQ(Ctl({"set", "bwlimit", "5M"}).exit_code, 0);
  EXPECT_EQ(Samples(Scrape())["scribefs_upload_bwlimit_bytes_per_second"], 5 * 1024 * 1024);

  ASSERT_EQ(Ctl({"pause", "--timeout", "30"}).exit_code, 0);
  EXPECT_EQ(Samples(Scrape())["scribefs_paused"], 1);
  ASSERT_EQ(Ctl({"resume"}).exit_code, 0);
  std::string text = Scrape();
  EXPECT_EQ(Samples(text)["scribefs_paused"], 0);
  PromtoolAccepts(text);
}

TEST_F(MetricsTest, PendingAndLagWhileAFileStaysOpen) {
  MountWithMetrics({"--open-file-delay", "60"});
  // A file that stays open for writing waits for its close (or
  // --open-file-delay): pending, and ageing.
  int fd = open(mp("open").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "x", 1), 1);
  usleep(1500 * 1000);
  auto m = Samples(Scrape());
  close(fd);
  EXPECT_GE(m["scribefs_pending_records"], 1);
  EXPECT_GE(m["scribefs_pending_files"], 1);
  EXPECT_GE(m["scribefs_replication_lag_seconds"], 1.0);
}

TEST_F(MetricsTest, AnswersGarbage404AndKeepsServing) {
  MountWithMetrics();
  EXPECT_EQ(RawRequest(port_, "\x01\x02\x03 nonsense\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(RawRequest(port_, "GET /other HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(RawRequest(port_, "DELETE /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(RawRequest(port_, "GET /" + std::string(20000, 'x')).rfind("HTTP/1.1 431", 0), 0u);
  EXPECT_EQ(RawRequest(port_, ""), "");  // connect and close: no answer, no crash
  RunResult r = it::RunCommand({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                "http://127.0.0.1:" + std::to_string(port_) + "/"});
  EXPECT_EQ(r.out, "404");
  EXPECT_NE(Scrape().find("scribefs_build_info"), std::string::npos);
  EXPECT_TRUE(it::ProcessAlive(daemon_pid()));
}

// Connections to the metrics port that never send anything (non-blocking
// connects: with a full backlog a blocking one would wait).
std::vector<UniqueFd> SilentConnections(int port, int n) {
  std::vector<UniqueFd> out;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < n; ++i) {
    UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    int r = connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    EXPECT_TRUE(r == 0 || errno == EINPROGRESS) << strerror(errno);
    out.push_back(std::move(s));
  }
  return out;
}

// Milliseconds a whole GET /metrics takes (answer checked).
double TimedScrape(int port) {
  auto t0 = std::chrono::steady_clock::now();
  std::string r = RawRequest(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r.substr(0, 200);
  EXPECT_NE(r.find("scribefs_build_info"), std::string::npos);
  return ms;
}

// The daemon's open sockets (the metrics clients among them). Only sockets
// are counted: other fds (a journal connection a render reopens, a file a
// worker opens) come and go with the daemon's own work, not with clients.
int OpenSockets(pid_t pid) {
  int n = 0;
  for (const auto& [fd, what] : it::OpenFds(pid)) n += what.rfind("socket:", 0) == 0;
  return n;
}

// Clients that connect and send nothing do not delay a scrape (each used to
// hold the one serving thread for its read timeout, 2 s), and a flood of
// connections holds at most kMaxClients of the daemon's sockets, all released.
TEST_F(MetricsTest, SilentClientsDoNotDelayAScrape) {
  MountWithMetrics();
  if (HasFatalFailure()) return;
  TimedScrape(port_);  // warm: the first render may open the journal
  int before = OpenSockets(daemon_pid());
  ASSERT_GT(before, 0);  // the listener at least
  {
    auto silent = SilentConnections(port_, 3);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_LT(TimedScrape(port_), 500) << "3 silent connections delayed a scrape";
  }
  {
    auto flood = SilentConnections(port_, 100);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    int during = OpenSockets(daemon_pid());
    EXPECT_LE(during, before + static_cast<int>(kMaxClients) + 1)
        << "100 connections at once: sockets " << before << " -> " << during;
    EXPECT_LT(TimedScrape(port_), 500) << "100 silent connections delayed a scrape";
  }
  // All closed by the clients (or dropped by the server): back to where it was.
  int after = -1;
  for (int i = 0; i < 60; ++i) {
    after = OpenSockets(daemon_pid());
    if (after <= before) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_LE(after, before) << "sockets " << before << " -> " << after;
  TimedScrape(port_);
}

TEST_F(MetricsTest, TextfileHasTheSameFamiliesAndFinalCounters) {
  MountWithMetrics();
  ASSERT_TRUE(it::WriteFile(mp("f"), "content"));
  ASSERT_EQ(Ctl({"flush", "--timeout", "30"}).exit_code, 0);
  std::string scraped = Scrape();
  ASSERT_EQ(Unmount(), 0);
  auto file = it::ReadFile(root() + "/scribefs.prom");
  ASSERT_TRUE(file.has_value());
  std::regex type_line("# TYPE (\\S+) ");
  auto families = [&](const std::string& text) {
    std::set<std::string> out;
    for (std::sregex_iterator i(text.begin(), text.end(), type_line), e; i != e; ++i)
      out.insert((*i)[1]);
    return out;
  };
  EXPECT_EQ(families(*file), families(scraped));
  EXPECT_GE(Samples(*file)["scribefs_uploads_total"], 1);  // written at the stop
  EXPECT_EQ(it::ListDir(root()).count(".scribefs.prom.tmp"), 0u);
  PromtoolAccepts(*file);
}

TEST_F(MetricsTest, NonLoopbackNeedsAny) {
  Options o;
  o.args = {"--metrics-listen", "0.0.0.0:" + std::to_string(FreePort())};
  RunResult r = StartDaemon(o);
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_NE(r.err.find("--metrics-listen-any"), std::string::npos) << r.err;
  o.args = {"--metrics-listen", "127.0.0.1:99999"};
  r = StartDaemon(o);
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
}

TEST_F(MetricsTest, PortInUseFailsTheStart) {
  UniqueFd s(socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(s.get(), 1), 0);
  socklen_t len = sizeof a;
  getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  Options o;
  o.args = {"--metrics-listen", "127.0.0.1:" + std::to_string(ntohs(a.sin_port))};
  RunResult r = StartDaemon(o);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("Address already in use"), std::string::npos) << r.err;
  EXPECT_FALSE(it::IsMounted(mnt()));
}

}  // namespace
}  // namespace scribefs::ctltest
