// Replication to a real S3 server (Ceph RGW, started by the CTest fixture
// "rgw"): the scribefs daemon on a real FUSE mount with --target s3://BUCKET,
// each test with a fresh bucket. What landed is checked with the AWS CLI as an
// independent client. Network outages come from TcpProxy (tcp_proxy.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "tests/replication/e2e_scenario.h"
#include "tests/replication/replication_fixture.h"
#include "tests/replication/tcp_proxy.h"

namespace scribefs::rep {
namespace {

using Clock = std::chrono::steady_clock;
using it::ReadFile;
using it::WriteFile;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

class ReplicationS3 : public ReplicationTest {};

// Records whose path is `path`.
std::vector<Record> Of(const std::vector<Record>& all, const std::string& path) {
  std::vector<Record> out;
  for (const auto& r : all)
    if (r.path == path) out.push_back(r);
  return out;
}

std::string Describe(const std::vector<Record>& recs) {
  std::string s;
  for (const auto& r : recs)
    s += "\n  " + it::Dump(r) + " attempts=" + std::to_string(r.attempts) +
         (r.error ? " error=" + *r.error : "");
  return s;
}

// ---- 1. end to end ---------------------------------------------------------

TEST_F(ReplicationS3, EndToEndMirrorsTreeInBucket) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("e2e"));
  ASSERT_NO_FATAL_FAILURE(MountS3({}));
  auto t0 = Clock::now();
  ASSERT_NO_FATAL_FAILURE(BuildTree(mp()));
  printf("[ phase 1  ] tree built in %.1f s\n", Seconds(Clock::now() - t0));
  ASSERT_TRUE(Flush(180));
  UploaderCounters c1 = ReadCounters(state());
  ASSERT_TRUE(c1.present) << "no uploader counters in the journal's meta table";
  EXPECT_GE(c1.bytes_sent, kBigFileSize) << c1.Describe();

  ASSERT_NO_FATAL_FAILURE(MutateTree(mp()));
  ASSERT_TRUE(Flush(180));
  UploaderCounters c2 = ReadCounters(state());
  printf("[ counters ] after phase 1: %s\n[ counters ] after phase 2: %s\n", c1.raw.c_str(),
         c2.raw.c_str());
  // Renames of unchanged content are server-side copies: moving the 100 MiB
  // file and a directory must not re-send their bytes.
  EXPECT_LT(c2.bytes_sent - c1.bytes_sent, 20ull << 20)
      << "phase 2 sent " << (c2.bytes_sent - c1.bytes_sent) << " bytes: renames were re-uploaded";
  EXPECT_GT(c2.copies, c1.copies) << c2.Describe();
  EXPECT_GT(c2.deletes, c1.deletes) << c2.Describe();
  auto states = CountStates(state());
  EXPECT_EQ(states["failed"], 0) << Describe(RecordsIn("failed"));

  auto want = ExpectedObjects(data());
  // Sanity of the scenario itself: it made what the test claims.
  EXPECT_GT(want.size(), size_t(kSmallFiles));
  ASSERT_TRUE(want.count("big/big-renamed.bin"));
  EXPECT_EQ(want["big/big-renamed.bin"].size, kBigFileSize);
  EXPECT_EQ(want["links/to-file"].type, 'l');
  EXPECT_EQ(want["empty1/"].type, 'd');
  EXPECT_EQ(want["small/d04/f000"].uid, 1234u);
  ASSERT_NO_FATAL_FAILURE(VerifyS3Mirror(env_, bucket_, want, root() + "/download"));
}

// ---- 3. partial update -----------------------------------------------------

TEST_F(ReplicationS3, PartialUpdateResendsOnlyChangedParts) {
  constexpr uint64_t kMiB = 1ull << 20, kSize = 256 * kMiB, kPart = 8 * kMiB;
  ASSERT_NO_FATAL_FAILURE(SetUpS3("partial"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--part-size", "8", "--history", "off"}));
  // (--history off: this counts the mirror's bytes; history sends the changed
  // part once more, as a chunk: replication.HistoryFile.StorageGrowsWithChangedBytes)
  {
    int fd = open(mp("big.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    for (uint64_t off = 0; off < kSize; off += kPart) {
      std::string chunk = RandomBytes(kPart, off / kPart + 7);
      ASSERT_EQ(write(fd, chunk.data(), chunk.size()), ssize_t(chunk.size())) << strerror(errno);
    }
    ASSERT_EQ(close(fd), 0) << strerror(errno);
  }
  ASSERT_TRUE(Flush(240));
  UploaderCounters c1 = ReadCounters(state());
  EXPECT_GE(c1.bytes_sent, kSize) << c1.Describe();
  auto store = OpenS3(env_, bucket_);
  ASSERT_NE(store, nullptr);
  auto h1 = store->Head("big.bin");
  ASSERT_TRUE(h1.ok()) << h1.status().ToString();
  EXPECT_NE(h1->etag.find("-32"), std::string::npos) << "not a 32-part upload: " << h1->etag;

  // 4 KiB in the middle (inside part 17).
  const uint64_t off = 128 * kMiB + 3 * kMiB + 123;
  {
    int fd = open(mp("big.bin").c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno);
    std::string patch = RandomBytes(4096, 4242);
    ASSERT_EQ(pwrite(fd, patch.data(), patch.size(), off), 4096) << strerror(errno);
    ASSERT_EQ(close(fd), 0) << strerror(errno);
  }
  ASSERT_TRUE(Flush(240));
  UploaderCounters c2 = ReadCounters(state());
  uint64_t sent = c2.bytes_sent - c1.bytes_sent;
  printf("[ partial  ] 4 KiB changed in a 256 MiB file: %llu bytes sent (%.2f MiB, %.3f%% of the "
         "file); partial_uploads %llu -> %llu\n",
         (unsigned long long)sent, sent / double(kMiB), 100.0 * sent / kSize,
         (unsigned long long)c1.partial_uploads, (unsigned long long)c2.partial_uploads);
  EXPECT_LE(sent, 2 * kPart) << "more than 2 parts re-sent; counters " << c2.Describe();
  EXPECT_GT(sent, 4096u) << "nothing sent for the change? counters " << c2.Describe();
  EXPECT_EQ(c2.partial_uploads, c1.partial_uploads + 1) << c2.Describe();
  EXPECT_EQ(CountStates(state())["failed"], 0) << Describe(RecordsIn("failed"));

  // The object is the new content: download with the AWS CLI and hash.
  std::string local_sha = Sha256OfFile(data("big.bin"));
  std::string dl = root() + "/big.download";
  it::RunResult r = Aws(env_, {"s3api", "get-object", "--bucket", bucket_, "--key", "big.bin", dl});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(Sha256OfFile(dl), local_sha) << "the object in the bucket is not the local file";
  auto h2 = store->Head("big.bin");
  ASSERT_TRUE(h2.ok()) << h2.status().ToString();
  EXPECT_NE(h2->etag, h1->etag);
  EXPECT_EQ(h2->size, kSize);
}

// ---- 4. sync mode ----------------------------------------------------------

// Regression: in sync mode a new file's create must not wait for the
// replicator's open-file delay (--open-file-delay, 10 s) and so fail with EIO
// after --sync-timeout.
TEST_F(ReplicationS3, SyncModeCreateReturnsPromptly) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("synccreate"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--mode", "sync", "--sync-timeout", "3"}));
  auto t0 = Clock::now();
  int fd = open(mp("new.txt").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  int err = errno;
  double took = Seconds(Clock::now() - t0);
  EXPECT_GE(fd, 0) << "create in sync mode failed after " << took << " s: " << strerror(err);
  EXPECT_LT(took, 2.0) << "create in sync mode took " << took << " s";
  if (fd >= 0) {
    ASSERT_EQ(write(fd, "hello\n", 6), 6);
    EXPECT_EQ(close(fd), 0) << strerror(errno);
  }
}

TEST_F(ReplicationS3, SyncModeCloseReturnsWhenStoredAndEioWhenTargetDown) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("sync"));
  std::string perr;
  auto proxy = TcpProxy::Start(env_.host, env_.port, 0, &perr);
  ASSERT_NE(proxy, nullptr) << perr;
  ASSERT_NO_FATAL_FAILURE(MountS3({"--mode", "sync", "--sync-timeout", "3"}, proxy->url()));

  // Up: when close() returns, another client sees the object.
  const std::string a = "stored before close returned\n";
  auto t0 = Clock::now();
  ASSERT_TRUE(WriteFile(mp("a.txt"), a)) << strerror(errno);
  printf("[ sync     ] create+write+close of a.txt: %.3f s\n", Seconds(Clock::now() - t0));
  ASSERT_EQ(mkdir(mp("dir1").c_str(), 0755), 0) << strerror(errno);
  std::string err;
  auto head = AwsHead(env_, bucket_, "a.txt", &err);
  ASSERT_TRUE(head.has_value()) << "a.txt not in the bucket right after close: " << err;
  EXPECT_EQ(head->value("ContentLength", uint64_t(0)), a.size());
  EXPECT_EQ(head->value("ETag", std::string()), "\"" + Md5Hex(a) + "\"");
  EXPECT_TRUE(AwsHead(env_, bucket_, "dir1/", &err).has_value()) << err;

  // Down: close of a written file returns EIO after the timeout, the record
  // stays pending, the local file has the data.
  int fd = open(mp("b.txt").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  proxy->Down();
  const std::string b = "written while the target was down\n";
  ASSERT_EQ(write(fd, b.data(), b.size()), ssize_t(b.size())) << strerror(errno);
  t0 = Clock::now();
  int rc = close(fd);
  int close_errno = errno;
  double took = Seconds(Clock::now() - t0);
  printf("[ sync     ] close with the target down: rc %d (%s) after %.2f s\n", rc,
         rc ? strerror(close_errno) : "ok", took);
  EXPECT_EQ(rc, -1) << "close succeeded although the target is unreachable";
  EXPECT_EQ(close_errno, EIO);
  EXPECT_GE(took, 2.5) << "close failed before --sync-timeout";
  EXPECT_LT(took, 10.0) << "close took far longer than --sync-timeout";
  EXPECT_EQ(ReadFile(data("b.txt")).value_or(""), b) << "the local write was lost";
  // A namespace operation too.
  t0 = Clock::now();
  EXPECT_EQ(mkdir(mp("dir2").c_str(), 0755), -1);
  EXPECT_EQ(errno, EIO);
  EXPECT_GE(Seconds(Clock::now() - t0), 2.5);
  struct stat st;
  EXPECT_EQ(stat(data("dir2").c_str(), &st), 0) << "the local mkdir was undone";
  // The change stays pending. (With the kernel's writeback cache the EIO comes
  // from the mtime setattr the kernel sends before FLUSH; the daemon then never
  // sees the FLUSH, so the pending record may be that setattr, not a close.)
  auto recs = Records();
  auto b_recs = Of(recs, "b.txt");
  ASSERT_FALSE(b_recs.empty());
  EXPECT_EQ(b_recs.back().state, "pending") << Describe(b_recs);
  for (const auto& r : b_recs) EXPECT_NE(r.state, "failed") << it::Dump(r);
  auto d2 = it::Find(recs, Op::kMkdir, "dir2");
  ASSERT_EQ(d2.size(), 1u);
  EXPECT_EQ(d2[0].state, "pending");
  // The bucket still has b.txt as created (empty), not the new content.
  head = AwsHead(env_, bucket_, "b.txt", &err);
  if (head) {
    EXPECT_EQ(head->value("ContentLength", uint64_t(0)), 0u) << "stored while unreachable?";
  }

  // Back: the pending records upload by themselves.
  std::string uerr;
  ASSERT_TRUE(proxy->Up(&uerr)) << uerr;
  ASSERT_TRUE(Flush(90));
  head = AwsHead(env_, bucket_, "b.txt", &err);
  ASSERT_TRUE(head.has_value()) << "b.txt never uploaded after the target came back: " << err;
  EXPECT_EQ(head->value("ETag", std::string()), "\"" + Md5Hex(b) + "\"");
  EXPECT_TRUE(AwsHead(env_, bucket_, "dir2/", &err).has_value()) << err;
  recs = Records();
  for (const auto& r : Of(recs, "b.txt")) EXPECT_EQ(r.state, "done") << it::Dump(r);
  // And sync mode works again.
  ASSERT_TRUE(WriteFile(mp("c.txt"), "after\n")) << strerror(errno);
  EXPECT_TRUE(AwsHead(env_, bucket_, "c.txt", &err).has_value()) << err;
}

// ---- 5. async mode with the target down ------------------------------------

struct WriterStats {
  int files = 0, errors = 0;
  std::string first_error;
  std::vector<double> latencies;  // seconds per create+write+close
};

// Writes files of 1..16 KiB into dir at `rate` files/s until `stop`.
void PacedWriter(const std::string& dir, double rate, double duration_s, uint64_t seed,
                 WriterStats* out) {
  auto start = Clock::now();
  auto period = std::chrono::duration<double>(1.0 / rate);
  for (int i = 0;; ++i) {
    auto due = start + std::chrono::duration_cast<Clock::duration>(period * i);
    if (Seconds(due - start) >= duration_s) break;
    std::this_thread::sleep_until(due);
    std::string content = RandomBytes(1024 + (seed * 7919 + i * 131) % 15360, seed * 100000 + i);
    auto t = Clock::now();
    std::string path = dir + "/f" + std::to_string(i);
    bool ok = WriteFile(path, content);
    out->latencies.push_back(Seconds(Clock::now() - t));
    if (!ok) {
      if (out->errors++ == 0) out->first_error = path + ": " + strerror(errno);
    }
    out->files++;
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

TEST_F(ReplicationS3, AsyncModeWritersUnaffectedByOutageNothingLost) {
  constexpr double kRate = 25, kBaseline = 4, kOutage = 20;
  ASSERT_NO_FATAL_FAILURE(SetUpS3("async"));
  std::string perr;
  auto proxy = TcpProxy::Start(env_.host, env_.port, 0, &perr);
  ASSERT_NE(proxy, nullptr) << perr;
  ASSERT_NO_FATAL_FAILURE(MountS3({}, proxy->url()));

  auto run_phase = [&](const std::string& name, double seconds, WriterStats* total) {
    std::vector<WriterStats> st(2);
    std::vector<std::thread> ts;
    for (int w = 0; w < 2; ++w) {
      std::string dir = mp(name + "/w" + std::to_string(w));
      ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << strerror(errno);
      ts.emplace_back(PacedWriter, dir, kRate, seconds, w + (name == "outage" ? 10 : 0), &st[w]);
    }
    // An appender on one file, like a log.
    std::atomic<bool> stop{false};
    WriterStats app;
    std::thread appender([&] {
      int fd = open(mp(name + "/app.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) {
        app.errors++;
        app.first_error = strerror(errno);
        return;
      }
      for (int i = 0; !stop; ++i) {
        std::string line = name + " line " + std::to_string(i) + "\n";
        auto t = Clock::now();
        if (write(fd, line.data(), line.size()) != ssize_t(line.size())) app.errors++;
        if (i % 10 == 9 && fsync(fd) != 0) app.errors++;
        app.latencies.push_back(Seconds(Clock::now() - t));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (close(fd) != 0) app.errors++;
    });
    for (auto& t : ts) t.join();
    stop = true;
    appender.join();
    for (auto& s : st) {
      total->files += s.files;
      total->errors += s.errors;
      if (total->first_error.empty()) total->first_error = s.first_error;
      total->latencies.insert(total->latencies.end(), s.latencies.begin(), s.latencies.end());
    }
    total->errors += app.errors;
    total->latencies.insert(total->latencies.end(), app.latencies.begin(), app.latencies.end());
  };

  ASSERT_EQ(mkdir(mp("baseline").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(mp("outage").c_str(), 0755), 0);
  WriterStats base, out;
  ASSERT_NO_FATAL_FAILURE(run_phase("baseline", kBaseline, &base));
  proxy->Down();
  auto down_at = Clock::now();
  ASSERT_NO_FATAL_FAILURE(run_phase("outage", kOutage, &out));
  double outage_s = Seconds(Clock::now() - down_at);
  printf("[ async    ] baseline: %d files, p50 %.2f ms p99 %.2f ms max %.2f ms\n", base.files,
         Percentile(base.latencies, .5) * 1e3, Percentile(base.latencies, .99) * 1e3,
         Percentile(base.latencies, 1) * 1e3);
  printf("[ async    ] target down %.1f s: %d files, p50 %.2f ms p99 %.2f ms max %.2f ms\n",
         outage_s, out.files, Percentile(out.latencies, .5) * 1e3,
         Percentile(out.latencies, .99) * 1e3, Percentile(out.latencies, 1) * 1e3);
  EXPECT_EQ(out.errors, 0) << out.first_error;
  EXPECT_EQ(base.errors, 0) << base.first_error;
  EXPECT_EQ(out.files, int(2 * kRate * kOutage));
  // Unaffected: no operation waited for the target.
  EXPECT_LT(Percentile(out.latencies, 1), 1.0) << "a write took a second or more during the outage";
  EXPECT_LT(Percentile(out.latencies, .99), std::max(0.25, 5 * Percentile(base.latencies, .99)));
  EXPECT_LT(outage_s, kOutage + 3) << "the writers were slowed down";

  // Held while down: the journal has them pending, with attempts recorded.
  auto states = CountStates(state());
  EXPECT_GT(states["pending"], 0) << "nothing pending after 20 s with the target down?";
  int64_t retried = 0;
  for (const auto& r : RecordsIn("pending")) retried += r.attempts > 0;
  EXPECT_GT(retried, 0) << "no pending record shows a failed attempt";
  printf("[ async    ] at restore: %lld pending records (%lld with failed attempts)\n",
         (long long)states["pending"], (long long)retried);

  std::string uerr;
  ASSERT_TRUE(proxy->Up(&uerr)) << uerr;
  auto up_at = Clock::now();
  ASSERT_TRUE(Flush(120));
  printf("[ async    ] caught up %.1f s after the target came back\n", Seconds(Clock::now() - up_at));
  EXPECT_EQ(CountStates(state())["failed"], 0) << Describe(RecordsIn("failed"));

  // Nothing lost: the listing equals the directory, every ETag is the MD5.
  auto want = ExpectedObjects(data());
  std::string err;
  auto listed = AwsList(env_, bucket_, &err);
  ASSERT_TRUE(listed.has_value()) << err;
  std::vector<std::string> problems;
  for (const auto& [key, e] : want) {
    auto it = listed->find(key);
    if (it == listed->end()) problems.push_back(key + ": missing");
    else if (e.type != 'd' && (it->second.size != e.size || it->second.etag != e.md5))
      problems.push_back(key + ": size " + std::to_string(it->second.size) + " etag " +
                         it->second.etag + ", local " + std::to_string(e.size) + " md5 " + e.md5);
  }
  for (const auto& [key, o] : *listed)
    if (!want.count(key)) problems.push_back(key + ": not local");
  EXPECT_TRUE(problems.empty()) << problems.size() << " problems:" << Head(problems);
  EXPECT_EQ(listed->size(), want.size());
  printf("[ async    ] bucket: %zu keys, local: %zu\n", listed->size(), want.size());
}

// ---- 6. wrong secret key ------------------------------------------------------

TEST_F(ReplicationS3, WrongSecretFailsRecordsWithSignatureDoesNotMatch) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("badkey"));
  setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-key-0123456789", 1);
  // With history (the default): its loader's LIST fails with the same 403,
  // which is not a retry either (shown in status, tried again in minutes).
  ASSERT_NO_FATAL_FAILURE(MountS3({}));
  setenv("AWS_SECRET_ACCESS_KEY", env_.secret_key.c_str(), 1);
  ASSERT_TRUE(WriteFile(mp("a.txt"), "a\n"));
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_TRUE(Flush(60));
  auto recs = Records();
  int failed = 0;
  for (const auto& r : recs) {
    if (r.path != "a.txt" && r.path != "d") continue;
    EXPECT_EQ(r.state, "failed") << it::Dump(r);
    EXPECT_NE(r.error.value_or("").find("SignatureDoesNotMatch"), std::string::npos)
        << it::Dump(r) << " error=" << r.error.value_or("(none)");
    EXPECT_LE(r.attempts, 2) << "retried a permanent error: " << it::Dump(r);
    failed += r.state == "failed";
  }
  EXPECT_GE(failed, 2) << Describe(recs);
  UploaderCounters c = ReadCounters(state());
  EXPECT_GE(c.failures, 1u) << c.Describe();
  EXPECT_LE(c.retries, 2u) << "a permanent error was retried: " << c.Describe();
  EXPECT_NE(c.last_error.find("SignatureDoesNotMatch"), std::string::npos) << c.Describe();
  // Not retried later either.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  auto later = Records();
  for (size_t i = 0; i < recs.size() && i < later.size(); ++i)
    EXPECT_EQ(later[i].attempts, recs[i].attempts) << "still retrying: " << it::Dump(later[i]);
  std::string err;
  auto listed = AwsList(env_, bucket_, &err);
  ASSERT_TRUE(listed.has_value()) << err;
  EXPECT_TRUE(listed->empty()) << listed->begin()->first << " was stored with a wrong secret?";
}

// ---- 7. excludes ----------------------------------------------------------------

TEST_F(ReplicationS3, ExcludedPathsAreJournaledNotUploaded) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("exclude"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--exclude", "*.tmp", "--exclude", "cache/*"}));
  ASSERT_EQ(mkdir(mp("sub").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(mp("cache").c_str(), 0755), 0);
  const std::vector<std::string> excluded = {"a.tmp", "sub/b.tmp", "cache/c.dat",
                                             "x.swp", "sub/.y.swp", ".#lock", "notes~"};
  for (const auto& p : excluded) ASSERT_TRUE(WriteFile(mp(p), "excluded " + p)) << p;
  ASSERT_TRUE(WriteFile(mp("keep.txt"), "kept\n"));
  ASSERT_TRUE(WriteFile(mp("sub/keep.dat"), "kept too\n"));
  ASSERT_TRUE(Flush(60));

  auto recs = Records();
  for (const auto& p : excluded) {
    auto mine = Of(recs, p);
    EXPECT_FALSE(mine.empty()) << p << " was not journaled";
    for (const auto& r : mine) EXPECT_EQ(r.state, "skipped") << it::Dump(r);
  }
  for (const auto& r : Of(recs, "keep.txt")) EXPECT_EQ(r.state, "done") << it::Dump(r);
  std::string err;
  auto listed = AwsList(env_, bucket_, &err);
  ASSERT_TRUE(listed.has_value()) << err;
  std::set<std::string> keys;
  for (const auto& [k, o] : *listed) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"cache/", "keep.txt", "sub/", "sub/keep.dat"}));
}

TEST_F(ReplicationS3, NoDefaultExcludesUploadsEditorFiles) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("noexcl"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--no-default-excludes", "--exclude", "*.tmp"}));
  ASSERT_TRUE(WriteFile(mp("x.swp"), "swap\n"));
  ASSERT_TRUE(WriteFile(mp("y.tmp"), "tmp\n"));
  ASSERT_TRUE(Flush(60));
  std::string err;
  auto listed = AwsList(env_, bucket_, &err);
  ASSERT_TRUE(listed.has_value()) << err;
  EXPECT_TRUE(listed->count("x.swp")) << "--no-default-excludes did not upload x.swp";
  EXPECT_FALSE(listed->count("y.tmp")) << "--exclude *.tmp ignored with --no-default-excludes";
}

// ---- 8. --delete keep ------------------------------------------------------------

TEST_F(ReplicationS3, DeleteKeepLeavesObjectsInBucket) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("keep"));
  ASSERT_NO_FATAL_FAILURE(MountS3({"--delete", "keep"}));
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(mp("f.txt"), "file\n"));
  ASSERT_TRUE(WriteFile(mp("d/g.txt"), "in d\n"));
  ASSERT_TRUE(Flush(60));
  ASSERT_EQ(unlink(mp("f.txt").c_str()), 0);
  ASSERT_EQ(unlink(mp("d/g.txt").c_str()), 0);
  ASSERT_EQ(rmdir(mp("d").c_str()), 0);
  ASSERT_TRUE(Flush(60));
  auto recs = Records();
  auto un = it::Find(recs, Op::kUnlink, "f.txt");
  ASSERT_EQ(un.size(), 1u);
  EXPECT_EQ(un[0].state, "done") << it::Dump(un[0]);
  EXPECT_EQ(ReadCounters(state()).deletes, 0u) << ReadCounters(state()).Describe();
  std::string err;
  auto listed = AwsList(env_, bucket_, &err);
  ASSERT_TRUE(listed.has_value()) << err;
  std::set<std::string> keys;
  for (const auto& [k, o] : *listed) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"d/", "d/g.txt", "f.txt"}));
  EXPECT_EQ(CountStates(state())["failed"], 0);
}

}  // namespace
}  // namespace scribefs::rep
