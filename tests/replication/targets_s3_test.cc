// Several targets at once (issue 16) with a real S3 server: a sync file://
// copy and an async RGW one behind TcpProxy. With the gateway unreachable
// the local copy stays current, the writers do not wait for RGW, a kill -9
// loses nothing, the backlog drains once it is back, and --on-failure runs
// once per outage with the target's name and error.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/replication/e2e_scenario.h"
#include "tests/replication/replication_fixture.h"
#include "tests/replication/tcp_proxy.h"

namespace scribefs::rep {
namespace {

using Clock = std::chrono::steady_clock;

// Objects also checked with `aws s3api head-object`: one of each phase.
const std::vector<std::string> kHeadKeys = {"dir/a0", "dir/b5", "a1-moved", "c3"};

class SeveralTargetsS3 : public ReplicationTest {
 protected:
  // The files the hook wrote (one per run), each one's content.
  std::vector<std::string> HookRuns() {
    std::vector<std::string> out;
    DIR* d = opendir(hooks_.c_str());
    if (!d) return out;
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream f(hooks_ + "/" + e->d_name);
      std::stringstream ss;
      ss << f.rdbuf();
      out.push_back(ss.str());
    }
    closedir(d);
    return out;
  }
  static std::string Joined(const std::vector<std::string>& runs) {
    std::string all;
    for (const auto& r : runs) all += "---\n" + r;
    return all;
  }
  // Waits up to timeout_s for `n` hook runs; then returns how many there are.
  size_t WaitForHookRuns(size_t n, double timeout_s) {
    auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    while (HookRuns().size() < n && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return HookRuns().size();
  }
  void MountBoth(const std::string& endpoint) {
    std::ofstream(conf_) << "[target usb]\nurl = file://" << usb_ << "\nmode = sync\n"
                         << "[target offsite]\nurl = s3://" << bucket_
                         << "\nendpoint = " << endpoint << "\nmode = async\n";
    Options o;
    o.args = {"--config",           conf_,
              "--alert-after",      "1s",
              "--on-failure",       "env > \"$(mktemp -p " + hooks_ + " run.XXXXXX)\"",
              "--metrics-file",     root() + "/scribefs.prom",
              "--metrics-interval", "1"};
    ASSERT_NO_FATAL_FAILURE(Mount(o));
  }
  void WriteSome(const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i)
      ASSERT_TRUE(it::WriteFile(mp(prefix + std::to_string(i)), prefix + " " + std::to_string(i)));
  }

  // A bucket on RGW, reached through proxy_ (which can take it away), and
  // the paths of the local target, the config and the hook's output.
  void SetUpBehindProxy(const std::string& tag) {
    ASSERT_NO_FATAL_FAILURE(SetUpS3(tag));
    usb_ = root() + "/usb";
    conf_ = root() + "/scribefs.conf";
    hooks_ = root() + "/hooks";
    ASSERT_EQ(mkdir(hooks_.c_str(), 0700), 0);
    std::string err;
    proxy_ = TcpProxy::Start(env_.host, env_.port, 0, &err);
    ASSERT_NE(proxy_, nullptr) << err;
  }

  std::string usb_, conf_, hooks_;
  std::unique_ptr<TcpProxy> proxy_;
};

TEST_F(SeveralTargetsS3, TheLocalCopyStaysCurrentWhileRgwIsDownAndNothingIsLostOnEither) {
  ASSERT_NO_FATAL_FAILURE(SetUpBehindProxy("targets"));
  TcpProxy* proxy = proxy_.get();
  std::string err;
  ASSERT_NO_FATAL_FAILURE(MountBoth(proxy->url()));
  ASSERT_EQ(mkdir(mp("dir").c_str(), 0755), 0);
  WriteSome("dir/a", 20);
  ASSERT_TRUE(Flush(60));

  // RGW unreachable: the sync local copy has every file as its close returns.
  proxy->Down();
  WriteSome("dir/b", 30);
  ASSERT_EQ(rename(mp("dir/a1").c_str(), mp("a1-moved").c_str()), 0);
  ASSERT_EQ(unlink(mp("dir/a2").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(usb_, ExpectedObjects(data())));
  // Told once, by name and error, in an environment without credentials.
  ASSERT_EQ(WaitForHookRuns(1, 20), 1u) << "no --on-failure run within 20 s";
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::vector<std::string> runs = HookRuns();
  ASSERT_EQ(runs.size(), 1u) << "one outage, one run:\n" << Joined(runs);
  EXPECT_NE(runs[0].find("SCRIBEFS_TARGET=offsite\n"), std::string::npos) << runs[0];
  EXPECT_NE(runs[0].find("SCRIBEFS_TARGET_URL=s3://" + bucket_), std::string::npos) << runs[0];
  EXPECT_NE(runs[0].find("SCRIBEFS_ERROR=dir/"), std::string::npos) << runs[0];
  EXPECT_EQ(runs[0].find("AWS_"), std::string::npos) << runs[0];
  EXPECT_EQ(runs[0].find(env_.secret_key), std::string::npos) << "the secret key reached the hook";
  // /metrics (the textfile, rewritten every second): what each target lacks.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::string prom = it::ReadFile(root() + "/scribefs.prom").value_or("");
  EXPECT_NE(prom.find("scribefs_target_pending_records{target=\"usb\"} 0\n"), std::string::npos)
      << prom;
  EXPECT_EQ(prom.find("scribefs_target_pending_records{target=\"offsite\"} 0\n"), std::string::npos)
      << "offsite lacks the outage's changes: " << prom;
  EXPECT_NE(prom.find("scribefs_target_pending_records{target=\"offsite\"} "), std::string::npos)
      << prom;
  EXPECT_NE(prom.find("scribefs_target_lag_seconds{target=\"usb\"} 0\n"), std::string::npos)
      << prom;
  // status: the same per target, with the age of the oldest change each lacks.
  it::RunResult st = Ctl({"--json", "status"});
  auto sj = nlohmann::json::parse(st.out, nullptr, false);
  ASSERT_TRUE(sj.is_object() && sj["journal"]["targets"].is_array()) << st.Describe();
  for (const auto& t : sj["journal"]["targets"]) {
    if (t["name"] == "usb") {
      EXPECT_EQ(t["pending_records"], 0) << t.dump();
      EXPECT_TRUE(t["oldest_pending_age_s"].is_null()) << t.dump();
    } else {
      EXPECT_GT(t.value("pending_records", 0), 0) << t.dump();
      EXPECT_GT(t.value("oldest_pending_age_s", 0.0), 0.0) << t.dump();
    }
  }
  EXPECT_NE(Ctl({"status"}).out.find("records pending (oldest "), std::string::npos);

  // kill -9 in the middle of the outage; the next daemon serves without RGW
  // (async), keeps the local copy current and is told of the outage too.
  ASSERT_NO_FATAL_FAILURE(KillDaemon());
  ASSERT_NO_FATAL_FAILURE(MountBoth(proxy->url()));
  WriteSome("c", 10);
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(usb_, ExpectedObjects(data())));
  ASSERT_EQ(WaitForHookRuns(2, 20), 2u) << "the new daemon did not tell of the outage";

  // Back: the backlog drains; both equal DATADIR; no further run.
  ASSERT_TRUE(proxy->Up(&err)) << err;
  ASSERT_TRUE(Flush(120));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(HookRuns().size(), 2u) << "a run after the outage ended";
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(usb_, ExpectedObjects(data())));
  ASSERT_NO_FATAL_FAILURE(
      VerifyS3Mirror(env_, bucket_, ExpectedObjects(data()), root() + "/download", kHeadKeys));

  // A second outage is told again.
  proxy->Down();
  WriteSome("d", 3);
  EXPECT_EQ(WaitForHookRuns(3, 20), 3u) << "a second outage was not told";
  ASSERT_TRUE(proxy->Up(&err)) << err;
  ASSERT_TRUE(Flush(120));
  ASSERT_EQ(Unmount(), 0);
  ASSERT_NO_FATAL_FAILURE(
      VerifyS3Mirror(env_, bucket_, ExpectedObjects(data()), root() + "/download2", kHeadKeys));
}

// The files of a restored tree (path -> content; directories skipped).
std::map<std::string, std::string> FilesIn(const std::string& dir, const std::string& rel = "") {
  std::map<std::string, std::string> out;
  DIR* d = opendir((dir + "/" + rel).c_str());
  if (!d) return out;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string p = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (lstat((dir + "/" + p).c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      out.merge(FilesIn(dir, p));
    } else {
      out[p] = it::ReadFile(dir + "/" + p).value_or("<unreadable>");
    }
  }
  closedir(d);
  return out;
}

// Issue 16, item 3: a checkpoint is stored on each target as soon as that
// target has everything up to its mark. With RGW down, the local copy has
// it at once and restores the tree at the mark; the capture is held for
// RGW, which gets the state at the mark (not the later one) once it is
// back; the journal names both targets.
TEST_F(SeveralTargetsS3, ACheckpointIsStoredOnEachTargetAsThatTargetHasTheMark) {
  ASSERT_NO_FATAL_FAILURE(SetUpBehindProxy("targetscp"));
  // The checkpoint's state as `scribectl checkpoints --json` gives it.
  auto CheckpointState = [this](const std::string& name) -> nlohmann::json {
    it::RunResult r = Ctl({"--json", "checkpoints"});
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    if (!j.is_object() || !j["checkpoints"].is_array()) return nullptr;
    for (const auto& c : j["checkpoints"])
      if (c.value("name", "") == name) return c;
    return nullptr;
  };
  TcpProxy* proxy = proxy_.get();
  std::string err;
  ASSERT_NO_FATAL_FAILURE(MountBoth(proxy->url()));
  std::map<std::string, std::string> at_mark;
  for (int i = 0; i < 10; ++i) {
    std::string p = "f" + std::to_string(i);
    at_mark[p] = "v1 " + p;
    ASSERT_TRUE(it::WriteFile(mp(p), at_mark[p]));
  }
  ASSERT_TRUE(Flush(60));

  // RGW down: changes, then the checkpoint.
  proxy->Down();
  for (int i = 0; i < 5; ++i) {
    std::string p = "f" + std::to_string(i);
    at_mark[p] = "v2 " + p + std::string(static_cast<size_t>(1000 * i), 'x');
    ASSERT_TRUE(it::WriteFile(mp(p), at_mark[p]));
  }
  at_mark["g"] = "g at the mark";
  ASSERT_TRUE(it::WriteFile(mp("g"), at_mark["g"]));
  it::RunResult cp = Ctl({"--json", "checkpoint", "cp1"});
  ASSERT_EQ(cp.exit_code, 0) << cp.Describe();
  auto answer = nlohmann::json::parse(cp.out, nullptr, false);
  ASSERT_TRUE(answer.is_object()) << cp.out;
  EXPECT_EQ(answer["state"], "captured") << cp.out;
  EXPECT_EQ(answer["targets"], nlohmann::json({"usb", "offsite"})) << cp.out;

  // The local copy has it within seconds, while RGW is still down.
  nlohmann::json st;
  auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    st = CheckpointState("cp1");
    if (st.is_object() && st["stored_on"] == nlohmann::json({"usb"})) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(st.is_object());
  ASSERT_EQ(st["stored_on"], nlohmann::json({"usb"})) << st.dump();
  EXPECT_EQ(st["state"], "captured") << "not on offsite yet: " << st.dump();
  it::RunResult r1 =
      Ctl({"restore", "--target", "usb", "--checkpoint", "cp1", "--to", root() + "/r-usb"});
  ASSERT_EQ(r1.exit_code, 0) << r1.Describe();
  EXPECT_EQ(FilesIn(root() + "/r-usb"), at_mark);

  // After the mark, still with RGW down: every frozen path changes.
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(it::WriteFile(mp("f" + std::to_string(i)), "v3 after the mark"));
  ASSERT_EQ(unlink(mp("g").c_str()), 0);
  ASSERT_TRUE(it::WriteFile(mp("h"), "after the mark"));

  // RGW back: the checkpoint is stored there too.
  ASSERT_TRUE(proxy->Up(&err)) << err;
  deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    st = CheckpointState("cp1");
    if (st.is_object() && st["state"] != "captured") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_TRUE(st.is_object());
  ASSERT_EQ(st["state"], "stored") << st.dump();
  EXPECT_EQ(st["stored_on"], nlohmann::json({"usb", "offsite"})) << st.dump();
  it::RunResult table = Ctl({"checkpoints"});
  EXPECT_NE(table.out.find("usb,offsite"), std::string::npos) << table.out;
  ASSERT_TRUE(Flush(120));
  ASSERT_EQ(Unmount(), 0);

  // One record per target, each naming it.
  std::vector<std::string> recorded;
  for (const Record& rec : Records())
    if (rec.op == Op::kCheckpoint)
      recorded.push_back(nlohmann::json::parse(rec.detail).value("target_name", ""));
  EXPECT_EQ(recorded, (std::vector<std::string>{"usb", "offsite"}));

  // RGW holds the state at the mark, not the later one, with no daemon.
  it::RunResult r2 =
      Ctl({"restore", "--target", "offsite", "--checkpoint", "cp1", "--to", root() + "/r-offsite"});
  ASSERT_EQ(r2.exit_code, 0) << r2.Describe();
  EXPECT_EQ(FilesIn(root() + "/r-offsite"), at_mark);
}

// The daemon's bounded-lag status (`scribectl status --json`: daemon.lag).
nlohmann::json LagOf(const std::string& state_dir) {
  it::RunResult r =
      it::RunCommand({SCRIBECTL_BIN, "--state-dir", state_dir, "--json", "status"}, 30);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (!j.is_object() || !j["daemon"].is_object() || !j["daemon"]["lag"].is_object())
    return nlohmann::json::object();
  return j["daemon"]["lag"];
}

// A child process that writes `n` files of 1 MiB through the mount
// (prefix0, prefix1, ...), counting them in shared memory. A child, not a
// thread: a file this process held open while it forks scribectl would be
// closed at that exec (O_CLOEXEC), and that close waits for a held flush.
class Writer {
 public:
  Writer(const std::string& prefix, int n) {
    void* m =
        mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return;
    sh_ = new (m) Shared;
    pid_ = fork();
    if (pid_ != 0) return;
    for (int i = 0; i < n; ++i) {
      std::string p = prefix + std::to_string(i);
      int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      std::string data(1 << 20, static_cast<char>('a' + i % 26));
      if (fd < 0 || write(fd, data.data(), data.size()) != ssize_t(data.size()) || close(fd) != 0)
        _exit(1);
      sh_->written.fetch_add(1);
    }
    _exit(0);
  }
  ~Writer() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (sh_) munmap(sh_, sizeof(Shared));
  }
  bool started() const { return sh_ && pid_ > 0; }
  int written() const { return sh_->written.load(); }
  // Its exit status once it ended within timeout_s; -1 if still running.
  int Wait(double timeout_s) {
    auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    while (Clock::now() < deadline) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }

 private:
  struct Shared {
    std::atomic<int> written{0};
  };
  Shared* sh_ = nullptr;
  pid_t pid_ = -1;
};

// Issue 16: bounded lag per target. --max-pending 2M is every target's
// default; usb sets its own 256M. With RGW down, offsite's bound holds a
// writer (status says which target) while usb, far from its bound, stores
// what was written; with offsite's `max_pending = off`, RGW down holds no
// writer at all.
TEST_F(SeveralTargetsS3, ABoundHoldsWritersForItsOwnTargetOnly) {
  ASSERT_NO_FATAL_FAILURE(SetUpBehindProxy("targetslag"));
  TcpProxy* proxy = proxy_.get();
  std::string err;
  auto mount = [&](const std::string& offsite_extra) {
    std::ofstream(conf_) << "[target usb]\nurl = file://" << usb_
                         << "\nmode = async\nmax_pending = 256M\n"
                         << "[target offsite]\nurl = s3://" << bucket_
                         << "\nendpoint = " << proxy->url() << "\nmode = async\n"
                         << offsite_extra;
    Options o;
    o.args = {"--config", conf_, "--max-pending", "2M", "--part-size", "5"};
    ASSERT_NO_FATAL_FAILURE(Mount(o));
  };
  ASSERT_NO_FATAL_FAILURE(mount(""));
  ASSERT_TRUE(it::WriteFile(mp("first"), "first"));
  ASSERT_TRUE(Flush(60));

  proxy->Down();
  {
    Writer w(mp("big"), 16);
    ASSERT_TRUE(w.started());
    nlohmann::json lag;
    auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline) {
      lag = LagOf(state());
      if (lag.value("throttle", "") == "held") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_EQ(lag.value("throttle", ""), "held") << lag.dump();
    EXPECT_NE(lag.value("reason", "").find("target offsite"), std::string::npos) << lag.dump();
    ASSERT_TRUE(lag["targets"].is_array() && lag["targets"].size() == 2) << lag.dump();
    EXPECT_EQ(lag["targets"][0]["name"], "usb");
    EXPECT_EQ(lag["targets"][0]["throttle"], "none") << lag.dump();
    EXPECT_EQ(lag["targets"][1]["throttle"], "held") << lag.dump();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    int held_at = w.written();
    EXPECT_LT(held_at, 16) << "the writer was not held";
    struct stat st;
    EXPECT_EQ(stat((usb_ + "/big0").c_str(), &st), 0) << "usb did not store what was written";
    EXPECT_EQ(w.Wait(0.5), -1) << "the writer ended while offsite was down";

    ASSERT_TRUE(proxy->Up(&err)) << err;
    EXPECT_EQ(w.Wait(120), 0) << "the writer did not finish once RGW was back";
    EXPECT_EQ(w.written(), 16);
  }
  ASSERT_TRUE(Flush(120));
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(usb_, ExpectedObjects(data())));
  ASSERT_NO_FATAL_FAILURE(
      VerifyS3Mirror(env_, bucket_, ExpectedObjects(data()), root() + "/download", {}));
  ASSERT_EQ(Unmount(), 0);

  // offsite without a bound: RGW down holds nobody.
  ASSERT_NO_FATAL_FAILURE(mount("max_pending = off\n"));
  proxy->Down();
  {
    Writer w(mp("more"), 16);
    ASSERT_TRUE(w.started());
    EXPECT_EQ(w.Wait(60), 0) << "a writer was held by a target without a bound";
    nlohmann::json lag = LagOf(state());
    EXPECT_EQ(lag.value("throttle", ""), "none") << lag.dump();
    EXPECT_FALSE(lag.contains("targets")) << "one bounded target: " << lag.dump();
  }
  ASSERT_TRUE(proxy->Up(&err)) << err;
  ASSERT_TRUE(Flush(120));
  ASSERT_EQ(Unmount(), 0);
}

}  // namespace
}  // namespace scribefs::rep
