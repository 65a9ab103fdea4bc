// kill -9 of the real `scribectl prune` at random moments: after each kill
// the window's states and the latest state restore exactly, and a prune run
// to the end afterwards leaves every point it retains restorable exactly (by
// seq and by time, every chunk checked) and points outside retention failing
// cleanly.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "tests/history/prune_test_util.h"

namespace scribefs::history {
namespace {

using namespace history::testing;  // NOLINT: the builders

constexpr int64_t kMin = 60 * kNsPerSecond;

// Starts `scribectl --json prune ...` on `url` with stdout to `out`; kills
// it with SIGKILL after `kill_after_ms` (< 0: never). True when it was killed
// before it finished; *exit_code is its exit code otherwise.
bool RunPrune(const std::string& url, const std::string& out, int kill_after_ms, int* exit_code) {
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || dup2(fd, 1) < 0) _exit(127);
    execl(SCRIBECTL_BIN, "scribectl", "--json", "prune", "--target", url.c_str(), "--retention",
          "2h", "--keep-hourly", "6", "--prune-grace", "0", static_cast<char*>(nullptr));
    _exit(127);
  }
  EXPECT_GT(pid, 0);
  if (kill_after_ms >= 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms));
    kill(pid, SIGKILL);
  }
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return true;
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return false;
}

TEST(PruneCrashTest, KillNineAtRandomMomentsThenPruneAgainRestoresEveryRetainedPoint) {
  testing_util::TempDir dir;
  PruneHistory h(dir.path());
  // 600 entries, one a minute over 10 hours, in 120 segments, compacted.
  h.Build(600, kMin, 5, true);
  const std::string out = dir.path() + "/prune.json";

  // `scribectl prune --dry-run` (for people) changes nothing and says what it would do.
  {
    const auto files = h.Files();
    pid_t pid = fork();
    if (pid == 0) {
      int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0 || dup2(fd, 1) < 0) _exit(127);
      execl(SCRIBECTL_BIN, "scribectl", "prune", "--dry-run", "--target", h.url().c_str(),
            "--retention", "2h", "--keep-hourly", "6", "--prune-grace", "0",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    const std::string text = testing_util::ReadFile(out);
    EXPECT_NE(text.find("Would delete: "), std::string::npos) << text;
    EXPECT_NE(text.find("window start"), std::string::npos) << text;
    EXPECT_NE(text.find("hourly"), std::string::npos) << text;
    EXPECT_EQ(h.Files(), files);
  }

  // How long an uninterrupted prune takes, on a copy of the history.
  auto t0 = std::chrono::steady_clock::now();
  int code = -1;
  {
    testing_util::TempDir copy;
    std::filesystem::copy(h.target_dir(), copy.path() + "/t",
                          std::filesystem::copy_options::recursive);
    t0 = std::chrono::steady_clock::now();  // the prune's time, not the copy's
    ASSERT_FALSE(RunPrune("file://" + copy.path() + "/t", out, -1, &code));
    ASSERT_EQ(code, 0);
  }
  const int full_ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count());
  ASSERT_GT(full_ms, 20) << "too fast to interrupt";

  std::mt19937 rng(20261206);
  int killed = 0;
  // Until three prunes were killed (at most 20 tries: a kill may come after
  // the prune finished, more often the less an interrupted one left to do).
  for (int round = 0; round < 20 && killed < 3; ++round) {
    // In the first half of an uninterrupted prune's time: each interrupted
    // prune leaves the next one less to do, so later moments may find it done.
    const int after = 5 + static_cast<int>(rng() % static_cast<unsigned>(full_ms / 2));
    if (RunPrune(h.url(), out, after, &code)) {
      ++killed;
    } else {
      EXPECT_EQ(code, 0);
    }
    // Whatever the moment, the window's states and the latest state restore.
    const int64_t cutoff = NowNs() - 2 * 60 * kMin + kMin;  // a minute of slack
    for (const StatePoint& p : h.states()) {
      if (p.time_ns > cutoff && p.seq % 5 == 0) {  // a sample: the full check comes last
        h.ExpectRestores(Instant::AtSeq(p.seq),
                         "round " + std::to_string(round) + " seq " + std::to_string(p.seq));
      }
    }
    h.ExpectRestores(Instant::Latest(), "latest after round " + std::to_string(round));
    if (::testing::Test::HasFailure()) break;
  }
  // The first kill comes within the first half of a whole prune's time, so
  // it interrupts one; later ones find less to do (and a loaded machine
  // makes the measured time an overestimate).
  printf("[ prune    ] %d prunes killed (an uninterrupted one took %d ms)\n", killed, full_ms);
  EXPECT_GE(killed, 2) << "the prune took " << full_ms << " ms";

  // Then a prune to the end.
  ASSERT_FALSE(RunPrune(h.url(), out, -1, &code));
  ASSERT_EQ(code, 0);
  const auto j = nlohmann::json::parse(testing_util::ReadFile(out));
  RetentionDecision d;
  d.cutoff_ns = j.at("cutoff_ns").get<int64_t>();
  for (const auto& p : j.at("points")) {
    d.older.push_back({{p.at("seq").get<uint64_t>(), p.at("time_ns").get<int64_t>()}, {}});
  }
  ASSERT_GE(d.older.size(), 3u);
  h.ExpectRetainedRestore(d);
  // Nothing the final prune kept refers to a chunk it lacks, and what it did
  // not keep fails cleanly.
  const uint64_t window_start = d.older.back().state.seq;
  int failed = 0;
  for (const StatePoint& p : h.states()) {
    if (p.seq >= window_start) break;
    auto tl = h.history().LoadTimeline(Instant::AtSeq(p.seq));
    if (!tl.ok()) {
      EXPECT_EQ(tl.status().code(), ENODATA) << tl.status().ToString();
      ++failed;
    } else {
      EXPECT_EQ(States(Replay(*tl, Instant::AtSeq(p.seq))),
                States(Replay(h.truth(), Instant::AtSeq(p.seq))));
    }
  }
  EXPECT_GT(failed, 400);
}

}  // namespace
}  // namespace scribefs::history
