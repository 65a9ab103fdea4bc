// Faults from the target and from the backing filesystem, on real mounts
// replicating to real S3 (Ceph RGW):
//  - the S3 server stopped and started while writers write (a private RGW
//    cluster of this test, whose gateway it stops and starts);
//  - 500 InternalError, 503 SlowDown, transfers cut mid-body and slow answers
//    from the FaultProxy (fault_proxy.h) between the uploader and RGW;
//  - DATADIR on a small tmpfs that fills up (ENOSPC).
// Each ends with the bucket equal to the local tree (listing, sizes, SHA-256
// of every body downloaded with the AWS CLI, metadata) and no failed record.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
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

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

class Faults : public ReplicationTest {
 protected:
  // scribectl --state-dir STATE --json ARGS: the parsed answer (null when
  // the output is not JSON); *exit_code its exit status.
  nlohmann::json Ctl(const std::vector<std::string>& args, int* exit_code = nullptr) {
    std::vector<std::string> argv = {SCRIBECTL_BIN, "--state-dir", state(), "--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    it::RunResult r = it::RunCommand(argv, 60);
    if (exit_code) *exit_code = r.exit_code;
    auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      ADD_FAILURE() << "scribectl " << args[0] << ": not JSON: " << r.Describe();
      return nullptr;
    }
    return j;
  }
  // The bucket holds exactly DATADIR: listing, sizes, SHA-256, metadata.
  void VerifyBucket() {
    auto want = ExpectedObjects(data());
    ASSERT_NO_FATAL_FAILURE(VerifyS3Mirror(env_, bucket_, want, root() + "/download", {}));
  }
  void ExpectNoFailedRecords() {
    auto failed = RecordsIn("failed");
    std::string s;
    for (const auto& r : failed) s += "\n  " + it::Dump(r) + (r.error ? " error=" + *r.error : "");
    EXPECT_TRUE(failed.empty()) << failed.size() << " failed records:" << s;
  }
};

// Writes `size` deterministic bytes to path through the mount in one go
// (open, write, close); the errno of the first failure, 0 when it worked.
int Put(const std::string& path, size_t size, uint32_t seed) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  std::string data = it::Pattern(size, seed);
  int err = 0;
  if (write(fd, data.data(), data.size()) != ssize_t(data.size())) err = errno ? errno : EIO;
  if (close(fd) != 0 && err == 0) err = errno;
  return err;
}

// A writer that keeps creating and rewriting small files in `dir` (about
// 20 per second) until told to stop.
class Writer {
 public:
  Writer(std::string dir, uint32_t seed) : dir_(std::move(dir)), seed_(seed) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Writer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int files() const { return files_; }
  int errors() const { return errors_; }
  const std::string& first_error() const { return first_error_; }

 private:
  void Run() {
    if (mkdir(dir_.c_str(), 0755) != 0) {
      Fail("mkdir", errno);
      return;
    }
    for (int i = 0; !stop_; ++i) {
      // Every 5th write rewrites an earlier file; sizes 0 B .. 48 KiB.
      int n = (i % 5 == 4) ? i / 2 : i;
      size_t size =
          (static_cast<size_t>(seed_) * 7919 + static_cast<size_t>(i) * 104729) % (48 << 10);
      if (int e = Put(dir_ + "/f" + std::to_string(n), size, seed_ * 1000 + i)) Fail("write", e);
      files_++;
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  void Fail(const char* what, int e) {
    if (errors_++ == 0) first_error_ = std::string(what) + ": " + strerror(e);
  }

  const std::string dir_;
  const uint32_t seed_;
  std::atomic<bool> stop_{false};
  std::atomic<int> files_{0}, errors_{0};
  std::string first_error_;
  std::thread thread_;
};

// ---- the S3 server stopped and started during uploads --------------------------

TEST_F(Faults, RgwStoppedAndStartedDuringUploadsBucketEndsExact) {
  PrivateRgw rgw(root() + "/rgw");
  std::string err;
  auto t_setup = Clock::now();
  auto env = rgw.Start(&err);
  ASSERT_TRUE(env.has_value()) << err;
  printf("[ rgw      ] private cluster up in %.1f s at %s\n", Seconds(Clock::now() - t_setup),
         env->endpoint.c_str());
  ASSERT_NO_FATAL_FAILURE(SetUpS3On(*env, "restart"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--part-size", "5"}));

  ASSERT_EQ(mkdir(mp("big").c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(Put(mp("big/before.bin"), 12 << 20, 1), 0);  // 3 parts of 5, 5 and 2 MiB
  int errors = 0;
  std::string first_error;
  {
    Writer w1(mp("w1"), 1), w2(mp("w2"), 2);
    std::this_thread::sleep_for(milliseconds(1500));
    // Stop the gateway while uploads run: a large one is in flight.
    ASSERT_EQ(Put(mp("big/stopping.bin"), 12 << 20, 2), 0);
    auto t_stop = Clock::now();
    ASSERT_EQ(rgw.Gateway("stop"), "");
    printf("[ rgw      ] gateway stopped in %.1f s\n", Seconds(Clock::now() - t_stop));
    ASSERT_EQ(Put(mp("big/while-down.bin"), 12 << 20, 3), 0);
    ASSERT_EQ(rename(mp("w1/f1").c_str(), mp("w1/renamed-while-down").c_str()), 0)
        << strerror(errno);
    std::this_thread::sleep_for(milliseconds(2000));
    // Held while down: pending records with failed attempts.
    int64_t retried = 0;
    for (const auto& r : RecordsIn("pending")) retried += r.attempts > 0;
    EXPECT_GT(retried, 0) << "no pending record shows a failed attempt while RGW was down";
    ASSERT_EQ(rgw.Gateway("start"), "");
    printf("[ rgw      ] gateway back after %.1f s\n", Seconds(Clock::now() - t_stop));
    std::this_thread::sleep_for(milliseconds(1500));
    w1.Stop();
    w2.Stop();
    errors = w1.errors() + w2.errors();
    first_error = w1.first_error() + w2.first_error();
    printf("[ writers  ] %d files written\n", w1.files() + w2.files());
  }
  EXPECT_EQ(errors, 0) << "local writes failed while the target was down: " << first_error;
  ASSERT_TRUE(Flush(90));
  ExpectNoFailedRecords();
  UploaderCounters c = ReadCounters(state());
  printf("[ counters ] %s\n", c.raw.c_str());
  EXPECT_GT(c.retries, 0u) << c.Describe();
  EXPECT_GT(c.retry_causes["network"], 0u) << c.Describe();
  EXPECT_EQ(c.failures, 0u) << c.Describe();
  ASSERT_NO_FATAL_FAILURE(VerifyBucket());
}

// ---- 500, 503, cut transfers and delays -------------------------------------------

TEST_F(Faults, ServerErrorsCutTransfersAndDelaysAreRetriedBucketEndsExact) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("faults"));
  std::string err;
  auto proxy = FaultProxy::Start(env_.host, env_.port, 0, &err);
  ASSERT_NE(proxy, nullptr) << err;
  // Rules are consulted in order; each counts the requests that reach it.
  // About one request in four fails.
  proxy->policy()
      .EveryNth(7, Fault::DropRequestBody(), IsUpload())
      .EveryNth(10, Fault::InternalError())
      .EveryNth(13, Fault::SlowDown())
      .EveryNth(17, Fault::DropResponse())
      .WithProbability(0.1, 42, Fault::Delay(milliseconds(200)));
  // With history (the default): its chunk and segment requests meet the
  // faults too, and each failed one is counted like the mirror's.
  ASSERT_NO_FATAL_FAILURE(MountS3({"--part-size", "5"}, proxy->url()));

  // Phase 1: many small files, two multipart files, a symlink.
  for (int d = 0; d < 4; ++d) {
    std::string dir = mp("d" + std::to_string(d));
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << strerror(errno);
    for (int f = 0; f < 25; ++f)
      ASSERT_EQ(Put(dir + "/f" + std::to_string(f), (d * 25 + f) * 1021 % (40 << 10), d * 100 + f),
                0);
  }
  ASSERT_EQ(Put(mp("multi-a.bin"), 12 << 20, 11), 0);
  ASSERT_EQ(Put(mp("multi-b.bin"), 11 << 20, 12), 0);
  ASSERT_EQ(symlink("d0/f1", mp("link").c_str()), 0) << strerror(errno);
  ASSERT_TRUE(Flush(90));

  // Phase 2: a directory rename (server-side copies and deletes), deletes,
  // a chmod (metadata copy), a small change inside a multipart file (the
  // other parts are copied server-side), a rewrite.
  ASSERT_EQ(rename(mp("d0").c_str(), mp("d0-moved").c_str()), 0) << strerror(errno);
  for (int f = 0; f < 5; ++f) ASSERT_EQ(unlink(mp("d1/f" + std::to_string(f)).c_str()), 0);
  ASSERT_EQ(chmod(mp("d2/f3").c_str(), 0600), 0) << strerror(errno);
  {
    int fd = open(mp("multi-a.bin").c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno);
    std::string patch = it::Pattern(4096, 99);
    ASSERT_EQ(pwrite(fd, patch.data(), patch.size(), (6 << 20) + 17), 4096) << strerror(errno);
    ASSERT_EQ(close(fd), 0) << strerror(errno);
  }
  ASSERT_EQ(Put(mp("d3/f7"), 30000, 777), 0);
  ASSERT_TRUE(Flush(90));
  // History's segment comes after the uploads (every --history-interval):
  // `scribectl flush` returns once it is stored, so that no request is still
  // to come when the faults injected are compared with the retries counted.
  int flush_rc = -1;
  Ctl({"flush", "--timeout", "120"}, &flush_rc);
  ASSERT_EQ(flush_rc, 0);

  for (int k = 1; k < kFaultKinds; ++k)
    printf("[ injected ] %-16s %llu\n", FaultName(static_cast<FaultKind>(k)),
           (unsigned long long)proxy->injected(static_cast<FaultKind>(k)));
  printf("[ injected ] of %llu requests\n", (unsigned long long)proxy->requests());
  UploaderCounters c = ReadCounters(state());
  printf("[ counters ] %s\n", c.raw.c_str());
  ExpectNoFailedRecords();
  EXPECT_EQ(c.failures, 0u) << c.Describe();
  // Every kind of fault was injected and the uploader saw (and retried) each.
  for (int k = 1; k < kFaultKinds; ++k)
    EXPECT_GT(proxy->injected(static_cast<FaultKind>(k)), 0u)
        << FaultName(static_cast<FaultKind>(k)) << " never injected: the workload is too small";
  EXPECT_GT(c.retry_causes["server_error"], 0u) << c.Describe();
  EXPECT_GT(c.retry_causes["throttled"], 0u) << c.Describe();
  EXPECT_GT(c.retry_causes["network"], 0u) << c.Describe();
  // Every injected 500 and 503 failed one request, and each failed request
  // was tried again (on its own, or with its whole upload) and counted once.
  // (Only a request failing 4 times in a row whose failure the uploader then
  // does without, e.g. the HEAD before a partial upload, would not count:
  // with these rates, practically never.)
  EXPECT_EQ(c.retry_causes["server_error"], proxy->injected(FaultKind::kInternalError))
      << c.Describe();
  EXPECT_EQ(c.retry_causes["throttled"], proxy->injected(FaultKind::kSlowDown)) << c.Describe();
  // A cut request is sometimes sent again by curl itself (a reused connection
  // that dies before any answer), unseen by the uploader.
  EXPECT_LE(c.retry_causes["network"], proxy->injected(FaultKind::kDropRequestBody) +
                                           proxy->injected(FaultKind::kDropResponse))
      << c.Describe();
  uint64_t causes = 0;
  for (const auto& [name, n] : c.retry_causes) causes += n;
  EXPECT_EQ(causes, c.retries) << c.Describe();
  // Retried records show it: done, with attempts.
  int64_t retried_done = 0;
  for (const auto& r : RecordsIn("done")) retried_done += r.attempts > 0;
  EXPECT_GT(retried_done, 0) << "no done record shows its failed attempts";

  // The same counters through scribectl: status (daemon) and stats (journal).
  nlohmann::json status = Ctl({"status"});
  ASSERT_TRUE(status.is_object());
  const nlohmann::json& daemon = status.contains("daemon") ? status["daemon"] : status;
  ASSERT_TRUE(daemon.contains("uploader")) << status.dump();
  EXPECT_EQ(daemon["uploader"].value("retries", uint64_t(0)), c.retries) << status.dump();
  EXPECT_GT(daemon["uploader"]["retry_causes"].value("throttled", uint64_t(0)), 0u)
      << status.dump();
  nlohmann::json stats = Ctl({"stats"});
  ASSERT_TRUE(stats.is_object());
  ASSERT_TRUE(stats["uploader"].is_object()) << stats.dump();
  EXPECT_EQ(stats["uploader"].value("retries", uint64_t(0)), c.retries) << stats.dump();

  proxy->policy().Clear();  // the checks below go to RGW directly anyway
  ASSERT_NO_FATAL_FAILURE(VerifyBucket());
}

// ---- the backing filesystem full ------------------------------------------------------

TEST_F(Faults, BackingFilesystemFullGivesEnospcAndKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("enospc"));
  ASSERT_NO_FATAL_FAILURE(MountTmpfs(data(), "size=16m"));
  // A close(2) that fails because the data could not be written back
  // (ENOSPC) never reaches the daemon (the kernel sends no FLUSH), so no
  // close record is journaled and the uploader treats the file as open:
  // uploaded after --open-file-delay (default 10 s), shortened here.
  ASSERT_NO_FATAL_FAILURE(MountS3({"--part-size", "5", "--open-file-delay", "2"}));
  // The journal is not on the filesystem that fills up.
  struct stat sd, ss;
  ASSERT_EQ(stat(data().c_str(), &sd), 0);
  ASSERT_EQ(stat(state().c_str(), &ss), 0);
  ASSERT_NE(sd.st_dev, ss.st_dev) << "the state dir is on DATADIR's filesystem";

  for (int i = 0; i < 5; ++i) ASSERT_EQ(Put(mp("small" + std::to_string(i)), 4096, i), 0);
  ASSERT_EQ(Put(mp("filler.bin"), 6 << 20, 7), 0);

  // Fill it: 1 MiB writes, each fsync'ed, until one fails.
  int first_errno = 0;
  uint64_t written = 0;
  {
    int fd = open(mp("partial.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    for (int i = 0; i < 64 && first_errno == 0; ++i) {
      std::string chunk = it::Pattern(1 << 20, 100 + i);
      ssize_t n = write(fd, chunk.data(), chunk.size());
      if (n < 0) {
        first_errno = errno;
      } else {
        written += n;
        if (fsync(fd) != 0) first_errno = errno;
      }
    }
    if (close(fd) != 0 && first_errno == 0) first_errno = errno;
  }
  EXPECT_EQ(first_errno, ENOSPC) << "filling DATADIR ended with " << strerror(first_errno)
                                 << " after " << written << " bytes";
  printf("[ enospc   ] DATADIR full after %llu bytes of partial.bin (local size %lld)\n",
         (unsigned long long)written, (long long)it::ListTree(data())["partial.bin"].st_size);
  // More data does not fit either.
  EXPECT_EQ(Put(mp("more.bin"), 1 << 20, 8), ENOSPC);

  // The daemon serves on, the journal is healthy.
  EXPECT_TRUE(it::ProcessAlive(daemon_pid()));
  EXPECT_EQ(it::ReadFile(mp("small3")), it::Pattern(4096, 3));
  int rc = -1;
  nlohmann::json stats = Ctl({"stats"}, &rc);
  EXPECT_EQ(rc, 0);
  nlohmann::json status = Ctl({"status"}, &rc);
  EXPECT_EQ(rc, 0);
  ASSERT_TRUE(status.is_object());
  const nlohmann::json& daemon = status.contains("daemon") ? status["daemon"] : status;
  EXPECT_EQ(daemon.value("journal_ok", false), true) << status.dump();
  // Metadata operations need no data blocks: still fine.
  ASSERT_EQ(mkdir(mp("dir-when-full").c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(Put(mp("dir-when-full/empty"), 0, 0), 0);

  // Room again: new writes work. (The uploader may be sending filler.bin
  // right now; it stops reading a deleted file at once, so the space comes
  // back without waiting for that upload.)
  ASSERT_EQ(unlink(mp("filler.bin").c_str()), 0) << strerror(errno);
  auto t_unlink = Clock::now();
  int after_err = Put(mp("after.bin"), 2 << 20, 9);
  while (after_err == ENOSPC && Clock::now() - t_unlink < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(milliseconds(100));
    after_err = Put(mp("after.bin"), 2 << 20, 9);
  }
  EXPECT_EQ(after_err, 0) << strerror(after_err);
  printf("[ enospc   ] a new 2 MiB file fits %.2f s after the delete\n",
         Seconds(Clock::now() - t_unlink));
  EXPECT_LT(Clock::now() - t_unlink, std::chrono::seconds(3));
  EXPECT_EQ(it::ReadFile(mp("after.bin")), it::Pattern(2 << 20, 9));

  ASSERT_TRUE(Flush(60));
  ExpectNoFailedRecords();
  auto status_after = Ctl({"status"});
  ASSERT_TRUE(status_after.is_object());
  const nlohmann::json& d2 =
      status_after.contains("daemon") ? status_after["daemon"] : status_after;
  EXPECT_EQ(d2.value("journal_ok", false), true) << status_after.dump();
  // What was written, partly written files included, is in the bucket as it is locally.
  ASSERT_NO_FATAL_FAILURE(VerifyBucket());
}

}  // namespace
}  // namespace scribefs::rep
