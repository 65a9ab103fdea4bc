// Crash loop (issue 5): ten rounds of {writers creating, appending to,
// overwriting, renaming and deleting files through the mount; kill -9 of the
// daemon at a random moment; unmount; remount; flush}. After every round:
//   - every file whose close() (and every rename/unlink that) returned before
//     the kill is in DATADIR with the content the writer knows, and in the
//     bucket with that content;
//   - the bucket equals DATADIR exactly: `scribectl verify` (downloads and
//     hashes every object) exits 0, and an independent listing with
//     scribefs's S3 client agrees (keys, sizes, ETag = MD5).
// Each restart finds that the previous daemon was killed and checks the
// target for objects its last requests left (--crash-check-delay 3 here):
// without that check this test fails within a few rounds when RGW is slow,
// with a deleted file's object still in the bucket (a PUT of the killed
// daemon that RGW completed after the new daemon's DELETE).
// The seed of each round is printed, so a failing round can be replayed
// (SCRIBEFS_CRASH_SEED=N runs the rounds from seed N).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/durability/mirror_check.h"
#include "tests/replication/replication_fixture.h"

namespace scribefs::dur {
namespace {

constexpr int kRounds = 10;
constexpr int kWriters = 3;

// What the writers know for certain: content of every file whose last
// operation returned success. A path touched by a failed operation is
// uncertain (the kill may have landed before or after the change).
struct Ledger {
  std::mutex mu;
  std::map<std::string, std::string> files;  // relative path -> content
  std::set<std::string> uncertain;
  uint64_t ops = 0;
};

bool WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

// Writes `content` to path with `flags`; true only when open, write and close
// all succeeded.
bool PutFile(const std::string& path, int flags, const std::string& content) {
  int fd = open(path.c_str(), flags | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = WriteAll(fd, content);
  if (close(fd) != 0) ok = false;
  return ok;
}

// One writer: works only below its own directory wN/ (so that its view of
// its files is the truth), until `stop` or until an operation fails (the
// daemon was killed).
void Writer(int id, const std::string& mp, uint64_t seed, Ledger* ledger,
            std::atomic<bool>* stop) {
  std::mt19937_64 rng(seed);
  const std::string dir = "w" + std::to_string(id);
  // This writer's files as the ledger has them (continuing earlier rounds).
  std::map<std::string, std::string> mine;
  {
    std::lock_guard lk(ledger->mu);
    for (auto& [p, c] : ledger->files)
      if (p.starts_with(dir + "/")) mine[p] = c;
  }
  mkdir((mp + "/" + dir).c_str(), 0755);  // EEXIST after the first round
  uint64_t counter = seed % 1000000 * 1000;
  uint64_t ops = 0;
  auto pick = [&]() {
    auto it = mine.begin();
    std::advance(it, static_cast<long>(rng() % mine.size()));
    return it->first;
  };
  auto content = [&](size_t max) { return rep::RandomBytes(rng() % max + 1, rng()); };
  std::vector<std::string> uncertain;
  while (!stop->load()) {
    int op = static_cast<int>(rng() % 10);
    bool ok = true;
    if (mine.empty() || op < 3) {  // create
      std::string p = dir + "/f" + std::to_string(counter++);
      std::string c = content(rng() % 4 == 0 ? 256 * 1024 : 4096);
      ok = PutFile(mp + "/" + p, O_CREAT | O_EXCL, c);
      if (ok) mine[p] = c; else uncertain.push_back(p);
    } else if (op < 5) {  // append
      std::string p = pick();
      std::string c = content(8192);
      ok = PutFile(mp + "/" + p, O_APPEND, c);
      if (ok) mine[p] += c; else { mine.erase(p); uncertain.push_back(p); }
    } else if (op < 6) {  // overwrite (truncate)
      std::string p = pick();
      std::string c = content(16384);
      ok = PutFile(mp + "/" + p, O_TRUNC, c);
      if (ok) mine[p] = c; else { mine.erase(p); uncertain.push_back(p); }
    } else if (op < 8) {  // rename
      std::string p = pick();
      std::string q = dir + "/r" + std::to_string(counter++);
      ok = rename((mp + "/" + p).c_str(), (mp + "/" + q).c_str()) == 0;
      if (ok) {
        mine[q] = std::move(mine[p]);
        mine.erase(p);
      } else {
        mine.erase(p);
        uncertain.push_back(p);
        uncertain.push_back(q);
      }
    } else {  // delete
      std::string p = pick();
      ok = unlink((mp + "/" + p).c_str()) == 0;
      mine.erase(p);
      if (!ok) uncertain.push_back(p);
    }
    ++ops;
    if (!ok) break;  // the daemon is gone (ENOTCONN / ECONNABORTED)
    // A little pause now and then, so that the kill lands among operations
    // of every kind rather than always in the middle of a burst.
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
  }
  std::lock_guard lk(ledger->mu);
  for (auto it = ledger->files.begin(); it != ledger->files.end();)
    it = it->first.starts_with(dir + "/") ? ledger->files.erase(it) : std::next(it);
  for (auto& [p, c] : mine) ledger->files[p] = c;
  for (auto& p : uncertain) {
    ledger->uncertain.insert(p);
    ledger->files.erase(p);
  }
  ledger->ops += ops;
}

class CrashLoopTest : public rep::ReplicationTest {
 protected:
  // The target is checked for objects a killed daemon left in flight 3 s
  // after each restart (flush waits for that check).
  const std::vector<std::string> kArgs = {"--workers", "4", "--stop-timeout", "5",
                                          "--crash-check-delay", "3"};
};

TEST_F(CrashLoopTest, KillDashNineTenTimesNothingLostBucketEqualsDirectory) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("crash"));
  ASSERT_NO_FATAL_FAILURE(MountS3(kArgs));
  uint64_t seed0 = std::random_device{}();
  if (const char* s = getenv("SCRIBEFS_CRASH_SEED")) seed0 = std::stoull(s);
  Ledger ledger;
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t seed = seed0 + static_cast<uint64_t>(round);
    std::mt19937_64 rng(seed);
    const auto kill_after = std::chrono::milliseconds(150 + rng() % 900);
    printf("[ round %2d ] seed %llu, kill -9 after %lld ms\n", round,
           static_cast<unsigned long long>(seed), static_cast<long long>(kill_after.count()));
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w)
      writers.emplace_back(Writer, w, mp(), seed * 31 + static_cast<uint64_t>(w), &ledger, &stop);
    std::this_thread::sleep_for(kill_after);
    ASSERT_NO_FATAL_FAILURE(KillDaemon());
    stop = true;
    for (auto& t : writers) t.join();
    Unmount();  // the dead mount
    ASSERT_NO_FATAL_FAILURE(MountS3(kArgs));
    auto flushed = Scribectl(state(), {"flush", "--timeout", "180"}, 200);
    ASSERT_EQ(flushed.exit_code, 0) << "round " << round << ": flush: " << flushed.Describe();

    // Nothing whose close()/rename()/unlink() returned is lost, locally or remotely.
    auto store = rep::OpenS3(env_, bucket_);
    ASSERT_TRUE(store);
    auto listed = store->ListAll(ListOptions{});
    ASSERT_TRUE(listed.ok()) << listed.status().ToString();
    std::map<std::string, std::string> etags;
    for (const auto& e : *listed) etags[e.key] = e.etag;
    size_t checked = 0;
    for (const auto& [path, content] : ledger.files) {
      auto local = it::ReadFile(data(path));
      ASSERT_TRUE(local.has_value()) << "round " << round << ": " << path
                                     << " (closed before the kill) is missing in DATADIR";
      ASSERT_EQ(rep::Sha256Hex(*local), rep::Sha256Hex(content))
          << "round " << round << ": " << path << " lost data in DATADIR";
      ASSERT_TRUE(etags.count(path)) << "round " << round << ": " << path
                                     << " (closed before the kill) is not in the bucket";
      EXPECT_EQ(etags[path], rep::Md5Hex(content)) << "round " << round << ": " << path;
      ++checked;
    }
    auto problems = MirrorProblems(env_, bucket_, data());
    if (!problems.empty()) {
      // The journal's account of each path named, for the post-mortem.
      auto records = Records();
      std::string history;
      for (const auto& p : problems) {
        std::string key = p.substr(p.rfind(' ') + 1);
        if (key.ends_with("/")) key.pop_back();
        for (const auto& r : it::Naming(records, key)) history += "  " + it::Dump(r) + "\n";
      }
      FAIL() << "round " << round << ": bucket differs from DATADIR:\n"
             << rep::Head(problems) << "\njournal:\n" << history;
    }
    auto verify = Scribectl(state(), {"verify"}, 300);
    ASSERT_EQ(verify.exit_code, 0) << "round " << round << ": scribectl verify: "
                                   << verify.Describe() << "\n" << verify.out;
    printf("[ round %2d ] %zu files checked, %zu uncertain so far, %llu operations so far\n",
           round, checked, ledger.uncertain.size(), static_cast<unsigned long long>(ledger.ops));
  }
  EXPECT_GT(ledger.ops, 100u) << "the writers hardly ran: the test proves little";
}

}  // namespace
}  // namespace scribefs::dur
