// Running scribefs as a service: systemd's notification protocol (READY=1
// only once the mount serves, STATUS= lines, WATCHDOG=1, STOPPING=1), a
// mount(8) of type fuse.scribefs with every option as -o key=value (as fstab
// has it), a restart right after an unmount, `scribectl stop --wait`, and the
// line a successful start prints.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/state_dir.h"
#include "common/unique_fd.h"
#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

using Clock = std::chrono::steady_clock;

class ServiceTest : public MountTest {
 protected:
  std::string target() const { return root() + "/target"; }
  Options WithTarget() {
    Options o;
    o.args = {"--target", "file://" + target()};
    return o;
  }
};

// The niceness of each of the daemon's threads (field 19 of
// /proc/PID/task/TID/stat, after the parenthesized name).
std::vector<int> ThreadNices(pid_t pid) {
  std::vector<int> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(e.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19 && rest >> field; ++i)
      if (i == 19) out.push_back(std::stoi(field));
  }
  return out;
}

// A unix datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = UniqueFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    ok_ = fd_ && bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  bool ok() const { return ok_; }
  // The next message, or "" after timeout_s.
  std::string Next(double timeout_s) {
    pollfd p = {fd_.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout_s * 1000)) <= 0) return "";
    char buf[4096];
    ssize_t n = recv(fd_.get(), buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, n) : "";
  }
  // Messages until one contains `needle` (returned), or "" after timeout_s;
  // every message seen is appended to *seen.
  std::string WaitFor(const std::string& needle, double timeout_s, std::string* seen) {
    auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
    while (Clock::now() < deadline) {
      double left = std::chrono::duration<double>(deadline - Clock::now()).count();
      std::string m = Next(left);
      if (m.empty()) continue;
      *seen += "[" + m + "] ";
      if (m.find(needle) != std::string::npos) return m;
    }
    return "";
  }

 private:
  std::string path_;
  UniqueFd fd_;
  bool ok_ = false;
};

// Starts `scribefs -f ...` with the given environment additions; stdout and
// stderr go to out_path.
pid_t SpawnForeground(const std::vector<std::string>& args, const std::vector<std::string>& env,
                      const std::string& out_path) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (out >= 0) {
    dup2(out, 1);
    dup2(out, 2);
  }
  for (const auto& e : env) putenv(strdup(e.c_str()));
  std::vector<std::string> argv = {ScribefsBin(), "-f"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  execv(cargv[0], cargv.data());
  _exit(127);
}

TEST_F(ServiceTest, NotifiesReadyOnlyOnceTheMountServesThenStatusThenStopping) {
  ASSERT_TRUE(WriteFile(data("before.txt"), "served"));
  NotifySocket sock(root() + "/notify.sock");
  ASSERT_TRUE(sock.ok()) << strerror(errno);
  pid_t pid =
      SpawnForeground({"--state-dir", state(), "--target", "file://" + target(), data(), mnt()},
                      {"NOTIFY_SOCKET=" + root() + "/notify.sock", "WATCHDOG_USEC=1000000"},
                      root() + "/daemon.out");
  ASSERT_GT(pid, 0);
  std::string seen;
  std::string ready = sock.WaitFor("READY=1", 30, &seen);
  // At the moment READY=1 arrives the mount must already answer.
  bool mounted = MountType(mnt()) == "fuse.scribefs";
  auto through_mount = ReadFile(mnt("before.txt"));
  EXPECT_FALSE(ready.empty()) << "no READY=1; got " << seen << "; daemon output: "
                              << ReadFile(root() + "/daemon.out").value_or("");
  EXPECT_TRUE(mounted) << "READY=1 before the mount was there";
  EXPECT_EQ(through_mount.value_or("<unreadable>"), "served");
  EXPECT_EQ(seen.find("READY=1"), seen.rfind("READY=1")) << "READY=1 sent twice: " << seen;

  ASSERT_TRUE(WriteFile(mnt("pending.txt"), "x"));
  EXPECT_FALSE(sock.WaitFor("WATCHDOG=1", 5, &seen).empty()) << seen;
  std::string status = sock.WaitFor("STATUS=", 15, &seen);
  EXPECT_NE(status.find("pending records"), std::string::npos) << seen;
  EXPECT_NE(status.find("lag"), std::string::npos) << seen;

  RunResult u = RunCommand({"fusermount3", "-u", mnt()}, 20);
  EXPECT_EQ(u.exit_code, 0) << u.Describe();
  EXPECT_FALSE(sock.WaitFor("STOPPING=1", 20, &seen).empty()) << seen;
  auto st = WaitChild(pid, 30);
  if (!st) {
    kill(pid, SIGKILL);
    st = WaitChild(pid, 10);
    ADD_FAILURE() << "scribefs -f did not exit after the unmount";
  } else {
    EXPECT_EQ(*st, 0);
  }
  std::string out = ReadFile(root() + "/daemon.out").value_or("");
  EXPECT_NE(out.find("scribefs: mounted " + data() + " on " + mnt()), std::string::npos) << out;
}

// mount(8) runs mount.fuse3 (via /sbin/mount.fuse.scribefs or mount.fuse),
// which runs `scribefs DATADIR MOUNTPOINT -o OPTS` from a fixed PATH that
// starts with /usr/local/sbin, after mount(8) dropped noauto and x-systemd.*
// and mount.fuse3 dropped _netdev and nofail. Run in a private mount
// namespace where /usr/local/sbin holds only a link to the scribefs under
// test, so that nothing outside the test changes.
TEST_F(ServiceTest, MountTypeFuseScribefsTakesEveryOptionAsDashO) {
  std::string sbin = root() + "/sbin";
  ASSERT_EQ(mkdir(sbin.c_str(), 0755), 0);
  ASSERT_EQ(symlink(ScribefsBin().c_str(), (sbin + "/scribefs").c_str()), 0);
  std::string opts = "state_dir=" + state() + ",target=file://" + target() +
                     ",workers=2,stop-timeout=5,_netdev,nofail,noauto,x-systemd.requires=a.service,"
                     "default_permissions";
  std::string script =
      "set -e\nmount --bind '" + sbin + "' /usr/local/sbin\nmount -t fuse.scribefs '" + data() +
      "' '" + mnt() + "' -o '" + opts + "'\necho hello > '" + mnt("f.txt") + "'\ngrep ' " + mnt() +
      " ' /proc/self/mounts > '" + root() + "/mounts.txt'\numount '" + mnt() + "'\n";
  RunResult r = RunCommand({"unshare", "-m", "--propagation", "private", "sh", "-c", script}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  std::string mounts = ReadFile(root() + "/mounts.txt").value_or("");
  EXPECT_NE(mounts.find(" fuse.scribefs "), std::string::npos) << mounts;
  EXPECT_NE(mounts.find("default_permissions"), std::string::npos) << mounts;
  // The daemon (reparented to us) exits once its uploads drained.
  auto pid_text = ReadFile(state("lock"));
  ASSERT_TRUE(pid_text);
  auto st = WaitChild(static_cast<pid_t>(atoi(pid_text->c_str())), 30);
  ASSERT_TRUE(st.has_value()) << "daemon did not exit after umount";
  EXPECT_EQ(*st, 0);
  EXPECT_FALSE(Find(Records(), Op::kCreate, "f.txt").empty()) << "no create record for f.txt";
  // -o target= reached the uploader: the file is in the target.
  EXPECT_EQ(ReadFile(target() + "/f.txt").value_or("<missing>"), "hello\n");
}

// fusermount3 -u returns at once while the daemon drains; a start right
// after it waits for that daemon instead of failing with exit 3.
TEST_F(ServiceTest, RemountRightAfterUnmountWaitsForThePreviousDaemon) {
  Options o = WithTarget();
  Mount(o);
  ASSERT_TRUE(WriteFile(mp("a.txt"), "a"));
  RunResult u = RunCommand({"fusermount3", "-u", mnt()}, 20);
  ASSERT_EQ(u.exit_code, 0) << u.Describe();
  auto t0 = Clock::now();
  RunResult r = StartDaemon(o);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(MountType(mnt()), "fuse.scribefs");
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(30));
  EXPECT_EQ(Unmount(), 0);
}

// A daemon that still serves is refused at once, not waited for.
TEST_F(ServiceTest, SecondStartWhileServingIsRefusedAtOnce) {
  Mount();
  auto t0 = Clock::now();
  Options o;
  o.mountpoint = root() + "/mnt2";
  ASSERT_EQ(mkdir(o.mountpoint.c_str(), 0755), 0);
  RunResult r = StartDaemon(o);
  EXPECT_EQ(r.exit_code, 3) << r.Describe();
  EXPECT_NE(r.err.find("already uses state directory"), std::string::npos) << r.err;
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
}

TEST_F(ServiceTest, ScribectlStopWaitReturnsAfterTheDaemonExited) {
  Mount(WithTarget());
  ASSERT_TRUE(WriteFile(mp("b.txt"), "bee"));
  pid_t pid = daemon_pid();
  RunResult r =
      RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "stop", "--wait", "--timeout", "30"}, 60);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("stopped scribefs (pid " + std::to_string(pid) + ")"), std::string::npos)
      << r.out;
  EXPECT_FALSE(IsMounted(mnt())) << "still mounted after stop --wait";
  // Exited: a zombie until we, its subreaper, reap it.
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat").value_or("");
  auto paren = stat.rfind(')');
  ASSERT_NE(paren, std::string::npos) << stat;
  EXPECT_EQ(stat.substr(paren + 2, 1), "Z") << "daemon still running after stop --wait: " << stat;
  EXPECT_EQ(Unmount(), 0) << "daemon exit status";
  // Drained as on unmount: the write reached the target.
  EXPECT_EQ(ReadFile(target() + "/b.txt").value_or("<missing>"), "bee");
}

TEST_F(ServiceTest, SuccessfulStartPrintsOneLine) {
  RunResult r = StartDaemon(Options());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "scribefs: mounted " + data() + " on " + mnt() + " (state dir " + state() +
                       ", log " + state() + "/scribefs.log)\n");
  EXPECT_EQ(Unmount(), 0);
  RunResult v = RunCommand({ScribefsBin(), "--version"});
  EXPECT_EQ(v.exit_code, 0) << v.Describe();
  EXPECT_EQ(v.out.rfind("scribefs ", 0), 0u) << v.out;
}

}  // namespace
}  // namespace scribefs::it

namespace scribefs::it {
namespace {

// An S3 endpoint where nothing listens (connection refused at once).
class UnreachableTargetTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    setenv("AWS_ACCESS_KEY_ID", "scribefs-test", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "scribefs-test-secret", 1);
  }
  Options Unreachable(const std::string& mode) {
    Options o;
    o.args = {"--target", "s3://bucket/p", "--endpoint", "http://127.0.0.1:1", "--mode", mode};
    return o;
  }
};

TEST_F(UnreachableTargetTest, AsyncMountsWithAWarningAndStatusSaysSince) {
  RunResult r = StartDaemon(Unreachable("async"));
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("warning: target s3://bucket/p"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("does not answer"), std::string::npos) << r.err;
  RunResult s = RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "status"}, 30);
  EXPECT_EQ(s.exit_code, 0) << s.Describe();
  EXPECT_NE(s.out.find("target unreachable since "), std::string::npos) << s.out;
  RunResult j = RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "status", "--json"}, 30);
  EXPECT_NE(j.out.find("\"target_unreachable_since_ns\""), std::string::npos) << j.out;
  EXPECT_EQ(Unmount(), 0);
}

// A CA file that does not load fails the probe, with curl's reason. The
// endpoint is a socket that listens but never answers, so that only the CA
// file can fail the request quickly.
TEST_F(UnreachableTargetTest, MissingCaFileIsNamed) {
  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener.get(), 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  Options o;
  o.args = {"--target",   "s3://bucket/p",
            "--endpoint", "https://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)),
            "--ca-file",  root() + "/missing-ca.pem",
            "--mode",     "sync"};
  RunResult r = StartDaemon(o);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("missing-ca.pem"), std::string::npos) << r.err;
  EXPECT_FALSE(IsMounted(mnt()));
}

TEST_F(UnreachableTargetTest, SyncModeRefusesToStart) {
  RunResult r = StartDaemon(Unreachable("sync"));
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_NE(r.err.find("does not answer"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--mode sync"), std::string::npos) << r.err;
  EXPECT_FALSE(IsMounted(mnt()));
}

}  // namespace
}  // namespace scribefs::it

namespace scribefs::it {
namespace {

// scribectl -m takes the mount point as well as DATADIR. Uses the default
// state directory (derived from DATADIR), under a state root in the temp dir.
TEST_F(ServiceTest, ScribectlDashMTakesTheMountPoint) {
  setenv("SCRIBEFS_STATE_ROOT", (root() + "/state-root").c_str(), 1);
  std::string default_state = DefaultStateDir(data());
  RunResult r = RunCommand({ScribefsBin(), data(), mnt()}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  RunResult s = RunCommand({SCRIBECTL_BIN, "-m", mnt(), "status", "--json"}, 30);
  EXPECT_EQ(s.exit_code, 0) << s.Describe();
  EXPECT_NE(s.out.find("\"datadir\":\"" + data() + "\""), std::string::npos) << s.out;
  RunResult d = RunCommand({SCRIBECTL_BIN, "-m", data(), "status", "--json"}, 30);
  EXPECT_EQ(d.exit_code, 0) << d.Describe();
  pid_t pid = static_cast<pid_t>(atoi(ReadFile(default_state + "/lock").value_or("0").c_str()));
  RunResult u = RunCommand({"fusermount3", "-u", mnt()}, 20);
  EXPECT_EQ(u.exit_code, 0) << u.Describe();
  if (pid > 0) {
    auto st = WaitChild(pid, 30);
    EXPECT_TRUE(st.has_value() && *st == 0);
  }
  unsetenv("SCRIBEFS_STATE_ROOT");
}

// Paths with a space, a comma and a backslash: /proc/self/mountinfo shows
// them escaped (\040, \134) and libfuse splits -o at commas, so `-m` must
// find the mount by its unescaped mount point and the mount's source must be
// DATADIR unchanged (it names the state directory).
TEST_F(ServiceTest, ScribectlDashMWithSpacesCommasAndBackslashes) {
  setenv("SCRIBEFS_STATE_ROOT", (root() + "/state-root").c_str(), 1);
  std::string odd_data = root() + "/my data, 2\\x";
  std::string odd_mnt = root() + "/my mount, 2";
  ASSERT_EQ(mkdir(odd_data.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(odd_mnt.c_str(), 0755), 0);
  std::string default_state = DefaultStateDir(odd_data);
  RunResult r = RunCommand({ScribefsBin(), odd_data, odd_mnt}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  pid_t pid = static_cast<pid_t>(atoi(ReadFile(default_state + "/lock").value_or("0").c_str()));
  for (const std::string& m : {odd_mnt, odd_data}) {
    RunResult s = RunCommand({SCRIBECTL_BIN, "-m", m, "--json", "status"}, 30);
    EXPECT_EQ(s.exit_code, 0) << "-m " << m << ": " << s.Describe();
    auto j = nlohmann::json::parse(s.out, nullptr, false);
    EXPECT_EQ(j.is_object() ? j["daemon"].value("datadir", "") : "", odd_data) << s.out;
  }
  RunResult u = RunCommand({"fusermount3", "-u", odd_mnt}, 20);
  EXPECT_EQ(u.exit_code, 0) << u.Describe();
  if (pid > 0) {
    auto st = WaitChild(pid, 30);
    EXPECT_TRUE(st.has_value() && *st == 0);
  }
  unsetenv("SCRIBEFS_STATE_ROOT");
}

// A daemon killed with SIGKILL leaves a dead mount; the next start detaches
// it, also when the mount point's name has a space (escaped in mountinfo).
TEST_F(ServiceTest, RestartAfterKillDetachesADeadMountWithASpaceInItsName) {
  std::string odd_data = root() + "/dead data";
  ASSERT_EQ(mkdir(odd_data.c_str(), 0755), 0);
  Options o;
  o.over_mount = true;
  o.data_dir = odd_data;
  Mount(o);
  ASSERT_TRUE(WriteFile(mp("before"), "x"));
  KillDaemon();
  struct stat st;
  ASSERT_NE(stat((odd_data + "/before").c_str(), &st), 0);  // ENOTCONN: the dead mount
  Mount(o);
  EXPECT_EQ(stat(mp("before").c_str(), &st), 0) << strerror(errno);
  EXPECT_EQ(MountType(odd_data), "fuse.scribefs");
}

}  // namespace
}  // namespace scribefs::it

namespace scribefs::it {
namespace {

// Under systemd ($JOURNAL_STREAM names stderr's device and inode) the daemon
// logs to stderr in the background too, and writes no log file.
TEST_F(ServiceTest, LogsToTheJournalStreamWhenStderrIsIt) {
  std::string err_path = root() + "/journal-stream";
  UniqueFd err(open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ASSERT_TRUE(err);
  struct stat st;
  ASSERT_EQ(fstat(err.get(), &st), 0);
  std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(err.get(), 2);
    setenv("JOURNAL_STREAM", stream.c_str(), 1);
    std::string bin = ScribefsBin(), sd = state(), dd = data(), md = mnt();
    execl(bin.c_str(), bin.c_str(), "--state-dir", sd.c_str(), dd.c_str(), md.c_str(), nullptr);
    _exit(127);
  }
  auto rc = WaitChild(pid, 60);
  ASSERT_TRUE(rc.has_value());
  ASSERT_EQ(*rc, 0) << ReadFile(err_path).value_or("");
  ASSERT_EQ(MountType(mnt()), "fuse.scribefs");
  pid_t daemon = static_cast<pid_t>(atoi(ReadFile(state("lock")).value_or("0").c_str()));
  RunResult u = RunCommand({"fusermount3", "-u", mnt()}, 20);
  EXPECT_EQ(u.exit_code, 0) << u.Describe();
  if (daemon > 0) {
    auto st2 = WaitChild(daemon, 30);
    EXPECT_TRUE(st2.has_value() && *st2 == 0);
  }
  std::string log = ReadFile(err_path).value_or("");
  EXPECT_NE(log.find("scribefs serving " + data()), std::string::npos) << log;
  EXPECT_NE(log.find("scribefs stopped serving"), std::string::npos) << log;
  struct stat lst;
  EXPECT_NE(lstat(state("scribefs.log").c_str(), &lst), 0) << "a log file was written too";
}

// --upload-nice N (async mode): the upload threads (the dispatcher, each
// worker, history's recorder) run at nice N, so that a burst of writes goes
// first on a busy machine; the threads that serve the mount stay at the
// daemon's priority. By default, and in sync mode (the writer waits for the
// uploads), they run as the daemon does.
TEST_F(ServiceTest, UploadNiceLowersTheUploadThreadsInAsyncModeOnly) {
  std::vector<int> nices;
  auto count = [&](int n) { return std::count(nices.begin(), nices.end(), n); };
  Options o = WithTarget();
  o.args.insert(o.args.end(), {"--workers", "3"});
  Mount(o);
  ASSERT_TRUE(WriteFile(mp("e"), "x"));
  nices = ThreadNices(daemon_pid());
  EXPECT_EQ(count(0), static_cast<long>(nices.size())) << "default: all at the daemon's";
  ASSERT_EQ(Unmount(), 0);

  o.args.insert(o.args.end(), {"--upload-nice", "10"});
  Mount(o);
  ASSERT_TRUE(WriteFile(mp("f"), "x"));
  nices = ThreadNices(daemon_pid());
  EXPECT_GE(count(10), 5) << "dispatcher, 3 workers and the history recorder";
  EXPECT_GE(count(0), 2) << "the FUSE workers and the main thread";
  ASSERT_EQ(Unmount(), 0);

  o.args.insert(o.args.end(), {"--mode", "sync"});
  Mount(o);
  ASSERT_TRUE(WriteFile(mp("g"), "y"));
  nices = ThreadNices(daemon_pid());
  EXPECT_EQ(count(10), 0);
  EXPECT_GE(count(0), 5);
}

}  // namespace
}  // namespace scribefs::it
