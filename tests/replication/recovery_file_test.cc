// Recovery on real mounts replicating to a file:// target (no S3 server):
// `scribectl rescan` finds what was changed in DATADIR behind the mount, and
// reports nothing the mount itself did, even while the mount is busy; after
// kill -9, a file with a write intent and no close goes up whole.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/replication/e2e_scenario.h"
#include "tests/replication/replication_fixture.h"

namespace scribefs::rep {
namespace {

using Clock = std::chrono::steady_clock;
using it::ReadFile;
using it::WriteFile;

class RecoveryFile : public ReplicationTest {
 protected:
  std::string target() { return root() + "/target"; }
  // `scribectl --json rescan`, which must succeed.
  nlohmann::json Rescan() {
    it::RunResult r = Ctl({"--json", "rescan"});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out;
    return j.is_object() ? j : nlohmann::json::object();
  }
  static int64_t Reported(const nlohmann::json& j) {
    return j.value("new", -1) + j.value("changed", -1) + j.value("missing", -1);
  }
};

TEST_F(RecoveryFile, RescanUploadsChangesMadeBehindTheMount) {
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + target(), {}));
  ASSERT_TRUE(WriteFile(mp("a.txt"), "alpha"));
  ASSERT_TRUE(WriteFile(mp("b.txt"), "bravo"));
  ASSERT_TRUE(WriteFile(mp("keep.txt"), "keep"));
  ASSERT_EQ(mkdir(mp("d").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(mp("d/c.txt"), "charlie"));
  ASSERT_TRUE(Flush(60));
  nlohmann::json j = Rescan();
  EXPECT_EQ(Reported(j), 0) << j.dump();

  // Behind the mount: with a separate MOUNTPOINT, DATADIR stays reachable.
  ASSERT_TRUE(WriteFile(data("a.txt"), "alpha, rewritten behind the mount"));
  ASSERT_EQ(unlink(data("b.txt").c_str()), 0);
  ASSERT_TRUE(WriteFile(data("new.txt"), "new"));
  ASSERT_EQ(mkdir(data("newdir").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(data("newdir/x"), "x"));
  ASSERT_EQ(chmod(data("d/c.txt").c_str(), 0600), 0);

  j = Rescan();
  EXPECT_EQ(j.value("scanned", 0), 7) << j.dump();
  EXPECT_EQ(j.value("new", 0), 3) << j.dump();  // new.txt, newdir, newdir/x
  EXPECT_EQ(j.value("changed", 0), 2) << j.dump();  // a.txt, d/c.txt
  EXPECT_EQ(j.value("missing", 0), 1) << j.dump();  // b.txt
  EXPECT_EQ(j.value("records", 0), 6) << j.dump();
  EXPECT_TRUE(j.contains("seconds") && j.contains("hold_ms")) << j.dump();
  int rescan_records = 0;
  for (const Record& r : Records())
    if (r.op == Op::kReconcile && r.detail.find("\"scan\":\"rescan\"") != std::string::npos)
      rescan_records++;
  EXPECT_EQ(rescan_records, 6);

  it::RunResult f = Ctl({"flush", "--timeout", "60"});
  ASSERT_EQ(f.exit_code, 0) << f.Describe();
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(target(), ExpectedObjects(data())));
  struct stat st;
  EXPECT_NE(lstat((target() + "/b.txt").c_str(), &st), 0) << "b.txt was not deleted in the target";

  // Nothing left to find; the human form says so too.
  it::RunResult h = Ctl({"rescan"});
  EXPECT_EQ(h.exit_code, 0) << h.Describe();
  EXPECT_NE(h.out.find("0 new, 0 changed, 0 missing"), std::string::npos) << h.out;
}

// While processes create, write, rename and delete through the mount and the
// uploader stores their changes, rescans find nothing: every difference
// between DATADIR and the target is covered by a record still to upload.
TEST_F(RecoveryFile, RescanReportsNothingTheMountDidWhileBusy) {
  ASSERT_NO_FATAL_FAILURE(
      MountWithTarget("file://" + target(), {"--open-file-delay", "0.2", "--workers", "2"}));
  constexpr int kThreads = 3;
  for (int t = 0; t < kThreads; ++t)
    ASSERT_EQ(mkdir(mp("t" + std::to_string(t)).c_str(), 0755), 0);
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0}, ops{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string dir = mp("t" + std::to_string(t));
      for (int i = 0; !stop; ++i) {
        std::string f = dir + "/f" + std::to_string(i % 16);
        switch (i % 6) {
          case 0:
          case 1:
            errors += !WriteFile(f, it::Pattern(100 + i % 5000, i));
            break;
          case 2: {
            int fd = open(f.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
            if (fd < 0) {
              errors++;
              break;
            }
            for (int k = 0; k < 3; ++k) errors += write(fd, "more", 4) != 4;
            errors += close(fd) != 0;
            break;
          }
          case 3:
            if (rename(f.c_str(), (f + ".moved").c_str()) == 0)
              errors += rename((f + ".moved").c_str(), f.c_str()) != 0;
            break;
          case 4:
            (void)unlink(f.c_str());
            break;
          case 5: {
            std::string d = dir + "/sub" + std::to_string(i % 4);
            if (mkdir(d.c_str(), 0755) == 0) {
              errors += !WriteFile(d + "/inner", "x");
              errors += rename(d.c_str(), (d + ".r").c_str()) != 0;
              errors += unlink((d + ".r/inner").c_str()) != 0;
              errors += rmdir((d + ".r").c_str()) != 0;
            }
            break;
          }
        }
        ops++;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  // A file that stays open and keeps growing (uploaded while open, after
  // --open-file-delay; its later byte ranges are still in memory).
  std::thread appender([&] {
    int fd = open(mp("growing.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
      errors++;
      return;
    }
    while (!stop) {
      errors += write(fd, "line of log\n", 12) != 12;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    errors += close(fd) != 0;
  });
  auto t0 = Clock::now();
  int rescans = 0;
  while (Clock::now() - t0 < std::chrono::seconds(4)) {
    nlohmann::json j = Rescan();
    EXPECT_EQ(Reported(j), 0) << "rescan #" << rescans << " reported what the mount did: "
                              << j.dump();
    rescans++;
  }
  stop = true;
  for (auto& th : threads) th.join();
  appender.join();
  EXPECT_EQ(errors, 0);
  printf("[   INFO   ] %d rescans during %d operations through the mount\n", rescans, ops.load());
  EXPECT_GE(rescans, 3);
  ASSERT_TRUE(Flush(60));
  nlohmann::json j = Rescan();
  EXPECT_EQ(Reported(j), 0) << j.dump();
  EXPECT_EQ(j.value("pending", -1), 0) << j.dump();
  for (const Record& r : Records())
    EXPECT_NE(r.op, Op::kReconcile) << it::Dump(r);
  ASSERT_NO_FATAL_FAILURE(VerifyFileMirror(target(), ExpectedObjects(data())));
}

// kill -9 after a write's intent record and before the file's close: the
// bytes written later were only in the daemon's memory as byte ranges (never
// committed), so the next daemon must upload the file whole, not just the
// parts the journal names (a multipart file could otherwise be patched part
// by part from the stale object).
TEST_F(RecoveryFile, KillAfterWriteIntentUploadsTheWholeFile) {
  constexpr size_t kSize = 12 << 20;  // 3 parts of 5 MiB
  const std::vector<std::string> opts = {"--part-size", "5", "--writeback", "off",
                                         "--range-flush-ms", "10000"};
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + target(), opts));
  ASSERT_TRUE(WriteFile(mp("big.bin"), RandomBytes(kSize, 1)));
  // Its close record waits for the next group commit (10 s here) or the
  // next namespace operation: this one.
  ASSERT_EQ(mkdir(mp("nudge").c_str(), 0755), 0);
  ASSERT_TRUE(Flush(60));
  ASSERT_EQ(Sha256OfFile(target() + "/big.bin"), Sha256OfFile(data("big.bin")));

  int fd = open(mp("big.bin").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::string head(4096, 'H'), tail(4096, 'T');
  ASSERT_EQ(pwrite(fd, head.data(), head.size(), 0), 4096);  // the intent: [0, 4096)
  ASSERT_EQ(pwrite(fd, tail.data(), tail.size(), 11 << 20), 4096);  // in memory only
  // The scenario: the journal names the first range and nothing else.
  std::vector<Record> recs = Records();
  auto ranges = it::WrittenRanges(recs, "big.bin");
  EXPECT_TRUE(it::Covers(ranges, 0, 4096));
  EXPECT_FALSE(it::Covers(ranges, 11 << 20, 4096)) << "the range was committed before the kill";
  EXPECT_TRUE(it::Find(recs, Op::kClose, "big.bin").size() == 1) << "only the first close";
  ASSERT_NO_FATAL_FAILURE(KillDaemon());
  close(fd);  // the dead mount's file: nothing more reaches DATADIR
  std::string want = Sha256OfFile(data("big.bin"));
  ASSERT_NE(want, Sha256OfFile(target() + "/big.bin"));

  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + target(), {"--part-size", "5"}));
  ASSERT_TRUE(Flush(60));
  EXPECT_EQ(Sha256OfFile(target() + "/big.bin"), want) << "the target lacks bytes written before "
                                                           "the kill";
  auto content = ReadFile(target() + "/big.bin");
  ASSERT_TRUE(content.has_value());
  EXPECT_EQ(content->substr(11 << 20, 4096), tail);
  // Not deferred by --open-file-delay: the file is not open in this daemon.
  for (const Record& r : Records()) {
    if (r.path != "big.bin") continue;
    EXPECT_EQ(r.state, "done") << it::Dump(r);
  }
}

}  // namespace
}  // namespace scribefs::rep
