// Bounded lag (README, "Bounded lag (recovery point)") on real mounts
// replicating to real S3 (Ceph RGW):
//  - --max-pending 8M with the gateway stopped: a writer of 64 MiB is held
//    after about 8 MiB (never failed), reads go on meanwhile, status and the
//    log say why; once the gateway is back the writer finishes by itself and
//    the bucket equals DATADIR.
//  - the same with the default writeback cache (its dirty-page cap is the
//    slack), the writer in a process of its own;
//  - --max-lag 2s with a target slowed to a trickle (FaultProxy delaying every
//    request): no change stays pending longer than the bound plus one upload's
//    duration (measured), over the whole run, on every record of the journal.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <new>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/replication/e2e_scenario.h"
#include "tests/replication/fault_proxy.h"
#include "tests/replication/private_rgw.h"
#include "tests/replication/replication_fixture.h"

namespace scribefs::rep {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
constexpr uint64_t kMiB = 1 << 20;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

class MaxLagRgw : public ReplicationTest {
 protected:
  // `scribectl status --json`: the daemon's part.
  nlohmann::json DaemonStatus() {
    it::RunResult r =
        it::RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "--json", "status"}, 30);
    auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) {
      ADD_FAILURE() << "scribectl status: not JSON: " << r.Describe();
      return nlohmann::json::object();
    }
    return j.contains("daemon") ? j["daemon"] : j;
  }
  // Its "lag" object ({} when absent, e.g. the daemon is gone).
  nlohmann::json Lag() {
    nlohmann::json d = DaemonStatus();
    return d.contains("lag") && d["lag"].is_object() ? d["lag"] : nlohmann::json::object();
  }
  void VerifyBucket() {
    auto want = ExpectedObjects(data());
    ASSERT_NO_FATAL_FAILURE(VerifyS3Mirror(env_, bucket_, want, root() + "/download", {}));
  }
  void ExpectNoFailedRecords() {
    auto failed = RecordsIn("failed");
    EXPECT_TRUE(failed.empty()) << failed.size() << " failed records";
  }
  void HoldAWriterWhileTheTargetIsDown(const std::vector<std::string>& mount_args,
                                       uint64_t slack);
};

// Writes `size` deterministic bytes to path through the mount (open, write,
// close); the errno of the first failure, 0 when it worked.
int Put(const std::string& path, size_t size, uint32_t seed) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  std::string data = it::Pattern(size, seed);
  int err = 0;
  if (write(fd, data.data(), data.size()) != ssize_t(data.size())) err = errno ? errno : EIO;
  if (close(fd) != 0 && err == 0) err = errno;
  return err;
}

// The gateway stops while a 64 MiB writer runs under --max-pending 8M; the
// writer must block after 8 MiB plus `slack` (what the daemon cannot count:
// the kernel's writeback cache), and finish once the gateway is back.
void MaxLagRgw::HoldAWriterWhileTheTargetIsDown(const std::vector<std::string>& mount_args,
                                                uint64_t slack) {
  PrivateRgw rgw(root() + "/rgw");
  std::string err;
  auto env = rgw.Start(&err);
  ASSERT_TRUE(env.has_value()) << err;
  ASSERT_NO_FATAL_FAILURE(SetUpS3On(*env, "maxpending"));
  std::vector<std::string> args = {"--part-size", "5", "--max-pending", "8M"};
  args.insert(args.end(), mount_args.begin(), mount_args.end());
  ASSERT_NO_FATAL_FAILURE(MountS3(args));
  ASSERT_EQ(Put(mp("other.txt"), 4096, 7), 0);
  ASSERT_TRUE(Flush(60));

  ASSERT_EQ(rgw.Gateway("stop"), "");
  auto t_stop = Clock::now();
  // The writer is a child process, not a thread: with the writeback cache
  // every close() of a descriptor of a file with dirty pages first writes
  // those pages back to the daemon (FUSE flush), which it holds while the
  // bound holds. Held open by a thread of this process, big.bin would be
  // closed (O_CLOEXEC) by every child this process forks at its exec
  // (scribectl status, the gateway's control), which would block there: this
  // is how the test used to hang. Progress goes through shared memory.
  struct Shared {
    std::atomic<uint64_t> written{0};
    std::atomic<int> errors{0};
    std::atomic<bool> done{false};
    char first_error[128] = {};
  };
  void* mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
  ASSERT_NE(mem, MAP_FAILED) << strerror(errno);
  Shared* sh = new (mem) Shared;
  struct Unmap {
    void* m;
    ~Unmap() { munmap(m, sizeof(Shared)); }
  } unmap{mem};
  std::atomic<uint64_t>& written = sh->written;
  std::atomic<int>& errors = sh->errors;
  std::atomic<bool>& done = sh->done;
  const std::string big = mp("big.bin");
  pid_t writer = fork();
  ASSERT_GE(writer, 0) << strerror(errno);
  if (writer == 0) {
    auto fail = [&](const char* what) {
      if (sh->errors++ == 0)
        snprintf(sh->first_error, sizeof(sh->first_error), "%s: %s", what, strerror(errno));
    };
    int fd = open(big.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      fail("open");
      sh->done = true;
      _exit(1);
    }
    for (uint32_t i = 0; i < 64; ++i) {
      std::string chunk = it::Pattern(kMiB, 1000 + i);
      if (write(fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
        fail("write");
        break;
      }
      sh->written += kMiB;
    }
    if (close(fd) != 0) fail("close");
    sh->done = true;
    _exit(0);
  }
  // Reaps the writer; one still running when the test gives up is killed.
  struct Reap {
    pid_t pid;
    std::atomic<bool>& done;
    ~Reap() {
      if (!done) kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reap{writer, done};

  // The writer blocks: no progress for 3 s.
  uint64_t last = 0;
  auto last_change = Clock::now();
  while (Clock::now() - last_change < std::chrono::seconds(3) && !done &&
         Clock::now() - t_stop < std::chrono::seconds(90)) {
    std::this_thread::sleep_for(milliseconds(100));
    if (written != last) last = written, last_change = Clock::now();
  }
  uint64_t stalled_at = written;
  printf("[ maxlag   ] with the target down the writer got %.1f MiB through, then blocked\n",
         static_cast<double>(stalled_at) / kMiB);
  ASSERT_FALSE(done) << "the writer was never held: " << stalled_at << " bytes";
  // The bound is 8 MiB: slowed from 6 MiB on, held when the journal shows
  // more than 8 MiB or, between two measurements, as soon as the bytes the
  // daemon saw since the last one pass it; the write that crosses it (1 MiB)
  // completes; plus the slack.
  EXPECT_GE(stalled_at, 6 * kMiB);
  EXPECT_LE(stalled_at, 8 * kMiB + kMiB + slack);

  // Status says so, and why.
  nlohmann::json lag = Lag();
  ASSERT_TRUE(lag.is_object()) << lag.dump();
  EXPECT_EQ(lag.value("throttle", ""), "held") << lag.dump();
  EXPECT_NE(lag.value("reason", "").find("pending"), std::string::npos) << lag.dump();
  EXPECT_EQ(lag.value("max_pending_bytes", uint64_t(0)), 8 * kMiB) << lag.dump();
  EXPECT_GE(lag.value("pending_bytes", uint64_t(0)), 6 * kMiB) << lag.dump();
  EXPECT_GT(lag.value("throttled_since_ns", int64_t(0)), 0) << lag.dump();
  EXPECT_GE(lag.value("held_ops", 0), 1) << lag.dump();
  // And so does `scribectl stats` (the daemon's live figures).
  it::RunResult stats =
      it::RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "--json", "stats"}, 30);
  auto sj = nlohmann::json::parse(stats.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(sj.is_object()) << stats.Describe();
  ASSERT_TRUE(sj["live"].is_object()) << stats.out;
  EXPECT_EQ(sj["live"]["lag"].value("throttle", ""), "held") << stats.out;
  stats = it::RunCommand({SCRIBECTL_BIN, "--state-dir", state(), "stats"}, 30);
  EXPECT_NE(stats.out.find("lag:"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("writers held"), std::string::npos) << stats.out;

  // Reads never wait: another file, its metadata and the directory.
  auto t_read = Clock::now();
  EXPECT_EQ(it::ReadFile(mp("other.txt")), it::Pattern(4096, 7));
  struct stat st;
  EXPECT_EQ(stat(mp("big.bin").c_str(), &st), 0);
  EXPECT_EQ(it::ListTree(mp()).count("other.txt"), 1u);
  double read_s = Seconds(Clock::now() - t_read);
  printf("[ maxlag   ] reads while the writer is held: %.3f s\n", read_s);
  EXPECT_LT(read_s, 1.0);

  // The target returns: the writer finishes by itself.
  ASSERT_EQ(rgw.Gateway("start"), "");
  auto t_start = Clock::now();
  while (!done && Clock::now() - t_start < std::chrono::seconds(200))
    std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(done) << "the writer is still held " << Seconds(Clock::now() - t_start)
                    << " s after the gateway returned, at " << written << " bytes";
  printf("[ maxlag   ] the writer finished %.1f s after the gateway returned\n",
         Seconds(Clock::now() - t_start));
  EXPECT_EQ(errors.load(), 0) << "a write or close failed: " << sh->first_error;
  EXPECT_EQ(written.load(), 64 * kMiB);

  ASSERT_TRUE(Flush(120));
  ExpectNoFailedRecords();
  // The log says when throttling started and ended, once per transition.
  auto log = it::ReadFile(state("scribefs.log")).value_or("");
  EXPECT_NE(log.find("bounded lag: writers held"), std::string::npos) << log;
  EXPECT_NE(log.find("bounded lag: writers no longer throttled"), std::string::npos) << log;
  nlohmann::json after = Lag();
  EXPECT_EQ(after.value("throttle", ""), "none") << after.dump();
  EXPECT_GT(after.value("throttled_s_total", 0.0), 1.0) << after.dump();
  ASSERT_NO_FATAL_FAILURE(VerifyBucket());
}

TEST_F(MaxLagRgw, MaxPendingHoldsAWriterWhileTheTargetIsDownAndLetsItFinishAfter) {
  // Without the kernel's writeback cache every write() reaches the daemon, so
  // the buffer between the writer and the bound is zero.
  HoldAWriterWhileTheTargetIsDown({"--writeback", "off"}, 0);
}

TEST_F(MaxLagRgw, MaxPendingHoldsAWriterWithTheDefaultWritebackCache) {
  // With the writeback cache (the default) written data waits in the page
  // cache until the kernel sends it to the daemon, which cannot count it
  // before; --max-pending caps the mount's dirty cache at a quarter of the
  // bound (daemon/bdi.h: the bdi's max_bytes), the documented slack.
  HoldAWriterWhileTheTargetIsDown({}, 2 * kMiB);
}

TEST_F(MaxLagRgw, MaxLagBoundsHowLongChangesStayPendingOnASlowTarget) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("maxlag"));
  std::string err;
  auto proxy = FaultProxy::Start(env_.host, env_.port, 0, &err);
  ASSERT_NE(proxy, nullptr) << err;
  // A trickle: every request's answer is held back 300 ms, and one worker.
  constexpr auto kRequestDelay = milliseconds(300);
  proxy->policy().EveryNth(1, Fault::Delay(kRequestDelay));
  // --history off: the yardstick below is one mirror upload; with history
  // each path also costs its chunk's HEAD and PUT through the slowed proxy
  // (bounded lag with history on is not measured yet).
  ASSERT_NO_FATAL_FAILURE(
      MountS3({"--max-lag", "2s", "--workers", "1", "--history", "off"}, proxy->url()));
  ASSERT_EQ(mkdir(mp("w").c_str(), 0755), 0) << strerror(errno);

  // A writer far faster than the target: small files, 20 a second.
  int files = 0, errors = 0;
  std::string throttle_seen;
  auto t0 = Clock::now();
  const int64_t t0_ns = NowNs();
  for (int i = 0; Clock::now() - t0 < std::chrono::seconds(15); ++i) {
    if (int e = Put(mp("w/f" + std::to_string(i % 200)), 2000 + i % 5000, i)) {
      if (errors++ == 0) ADD_FAILURE() << "write failed: " << strerror(e);
    }
    files++;
    std::this_thread::sleep_for(milliseconds(50));
    if (i % 20 == 0) {
      std::string t = Lag().value("throttle", "");
      if (t != "none" && throttle_seen.find(t) == std::string::npos) throttle_seen += t + " ";
    }
  }
  const int64_t t_end_ns = NowNs();
  printf("[ maxlag   ] %d files written in %.1f s; throttle seen: %s\n", files,
         Seconds(Clock::now() - t0), throttle_seen.c_str());
  EXPECT_EQ(errors, 0);
  ASSERT_TRUE(Flush(120));
  ExpectNoFailedRecords();
  nlohmann::json lag = Lag();
  EXPECT_GT(lag.value("delayed_ops_total", uint64_t(0)), 0u)
      << "the writer was never slowed: the target is not slow enough for this test "
      << lag.dump();

  // One upload's duration, the yardstick of the bound: how long a lone small
  // change stays pending with nothing else queued (its requests through the
  // proxy, RGW's own time, the uploader picking it up), the longest of three.
  // Measured after the run: before it, they would tell the monitor the pace,
  // and the start of the run, before any pace is known, would go untested.
  double one_upload = 0;
  for (int i = 0; i < 3; ++i) {
    std::string probe = "probe" + std::to_string(i);
    ASSERT_EQ(Put(mp(probe), 3000, 900 + i), 0);
    ASSERT_TRUE(Flush(60));
    double lone = 0;
    for (const Record& r : Records())
      if (r.path == probe && r.state == "done" && r.state_ns)
        lone = std::max(lone, static_cast<double>(*r.state_ns - r.time_ns) / 1e9);
    ASSERT_GT(lone, 0) << "no done record of " << probe;
    one_upload = std::max(one_upload, lone);
  }
  // The proxy alone holds each request back 300 ms: an upload that took
  // less did not go through it.
  ASSERT_GE(one_upload, std::chrono::duration<double>(kRequestDelay).count());

  // How long each change the writer made stayed pending: done time - record
  // time, over the whole run, the start included. The first second is shown
  // apart: before the first upload tells the monitor the pace, a burst queued
  // whole between two of its looks went up to 3.7 s (the monitor now grants
  // paths between looks, one at a time before the first upload).
  constexpr int64_t kFirstNs = 1'000'000'000;
  std::vector<double> ages;
  double first_max = 0, after_max = 0;
  for (const Record& r : Records()) {
    if (r.path.empty() || r.state != "done" || !r.state_ns || r.time_ns < t0_ns ||
        r.time_ns > t_end_ns)
      continue;
    double age = static_cast<double>(*r.state_ns - r.time_ns) / 1e9;
    ages.push_back(age);
    double& max = r.time_ns < t0_ns + kFirstNs ? first_max : after_max;
    max = std::max(max, age);
  }
  ASSERT_GT(ages.size(), 20u);
  std::sort(ages.begin(), ages.end());
  auto pct = [&](double p) { return ages[static_cast<size_t>(p * (ages.size() - 1))]; };
  printf("[ maxlag   ] %zu records pending for p50 %.3f s, p99 %.3f s, max %.3f s "
         "(bound 2 s, one upload %.3f s); max of those made in the first second %.3f s "
         "(0: none made), after it %.3f s\n",
         ages.size(), pct(0.5), pct(0.99), ages.back(), one_upload, first_max, after_max);
  // The bound, over the whole run: --max-lag plus one upload.
  EXPECT_LE(ages.back(), 2.0 + one_upload)
      << "first second " << first_max << " s, after it " << after_max << " s";
  ASSERT_NO_FATAL_FAILURE(VerifyBucket());
}

}  // namespace
}  // namespace scribefs::rep
