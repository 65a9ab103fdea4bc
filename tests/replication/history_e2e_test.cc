// History end to end (issue 11): the random-instant property test on real
// mounts replicating to file:// and to RGW, and disaster recovery from the
// target alone.
//
// Writers create, overwrite, append, truncate, rename (files and
// directories), chmod, symlink and delete through the mount for a while; at
// random instants the test pauses writes, waits until the target holds
// everything up to the pause (`flush`), records DATADIR's tree (paths, types,
// SHA-256, modes, mtimes, link targets) and the time and the pause's journal
// seq, and resumes. After the run, `scribectl restore --at` each instant (by
// time and by seq, alternately) must reproduce each recorded tree exactly.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/replication/replication_fixture.h"

namespace scribefs::rep {
namespace {

using Clock = std::chrono::steady_clock;

int64_t RealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// What a restore must reproduce of one path. Directory mtimes change with
// every entry below them and are not part of the stored state (as for the
// mirror: replication_util.h CheckMetadata).
struct Node {
  mode_t mode = 0;  // st_mode, type bits included
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  std::string content;  // SHA-256 of a file, target of a symlink

  bool operator==(const Node&) const = default;
};
using Tree = std::map<std::string, Node>;

std::string Describe(const Node& n) {
  char buf[128];
  snprintf(buf, sizeof buf, "mode %o size %llu mtime %lld ", n.mode,
           static_cast<unsigned long long>(n.size), static_cast<long long>(n.mtime_ns));
  return buf + n.content;
}

Tree Snapshot(const std::string& root) {
  Tree tree;
  for (const auto& [rel, st] : it::ListTree(root)) {
    Node n;
    n.mode = st.st_mode;
    if (S_ISREG(st.st_mode)) {
      n.size = static_cast<uint64_t>(st.st_size);
      n.mtime_ns = it::MtimeNs(st);
      n.content = Sha256OfFile(root + "/" + rel);
    } else if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t len = readlink((root + "/" + rel).c_str(), buf, sizeof buf);
      n.content = len >= 0 ? std::string(buf, static_cast<size_t>(len)) : "?";
    }
    tree[rel] = n;
  }
  return tree;
}

// Differences between two trees, one line each (empty when equal).
std::vector<std::string> Diff(const Tree& want, const Tree& got) {
  std::vector<std::string> out;
  for (const auto& [path, n] : want) {
    auto it = got.find(path);
    if (it == got.end())
      out.push_back("missing " + path + " (" + Describe(n) + ")");
    else if (!(it->second == n))
      out.push_back("differs " + path + ": want " + Describe(n) + ", got " + Describe(it->second));
  }
  for (const auto& [path, n] : got)
    if (!want.count(path)) out.push_back("extra " + path + " (" + Describe(n) + ")");
  return out;
}

// One writer thread: random operations below mp/w<id>, until stop. Errors
// (a name another operation just removed) are part of the game and ignored.
void Writer(const std::string& base, int id, std::atomic<bool>& stop, std::atomic<int>& ops) {
  std::mt19937_64 rng(0x5eed0000u + static_cast<unsigned>(id));
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  const std::string dir = base + "/w" + std::to_string(id);
  mkdir(dir.c_str(), 0755);
  auto name = [&] {
    static const char* kDirs[] = {"", "a/", "b/", "a/c/"};
    return dir + "/" + kDirs[pick(4)] + "f" + std::to_string(pick(12));
  };
  std::string buf;
  while (!stop) {
    int op = pick(100);
    std::string p = name();
    if (op < 30) {  // create or overwrite
      buf = it::Pattern(static_cast<size_t>(pick(3) == 0 ? pick(300'000) : pick(5000)),
                        static_cast<uint32_t>(rng()));
      int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        (void)!write(fd, buf.data(), buf.size());
        close(fd);
      }
    } else if (op < 45) {  // append
      buf = it::Pattern(static_cast<size_t>(pick(4096) + 1), static_cast<uint32_t>(rng()));
      int fd = open(p.c_str(), O_WRONLY | O_APPEND);
      if (fd >= 0) {
        (void)!write(fd, buf.data(), buf.size());
        close(fd);
      }
    } else if (op < 52) {  // write in the middle
      buf = it::Pattern(100, static_cast<uint32_t>(rng()));
      int fd = open(p.c_str(), O_WRONLY);
      if (fd >= 0) {
        (void)!pwrite(fd, buf.data(), buf.size(), pick(2000));
        close(fd);
      }
    } else if (op < 58) {
      (void)!truncate(p.c_str(), pick(3000));
    } else if (op < 68) {
      rename(p.c_str(), name().c_str());
    } else if (op < 74) {
      unlink(p.c_str());
    } else if (op < 78) {
      chmod(p.c_str(), pick(2) ? 0600 : 0640);
    } else if (op < 84) {
      static const char* kSub[] = {"a", "b", "a/c"};
      mkdir((dir + "/" + kSub[pick(3)]).c_str(), 0755);
    } else if (op < 87) {  // rename a directory (and all below it)
      static const char* kFrom[] = {"a", "b", "a/c", "d"};
      static const char* kTo[] = {"b", "d", "a/c", "a"};
      int k = pick(4);
      rename((dir + "/" + kFrom[k]).c_str(), (dir + "/" + kTo[k]).c_str());
    } else if (op < 90) {
      symlink(("target-" + std::to_string(pick(100))).c_str(), (name() + "l").c_str());
    } else if (op < 93) {
      unlink((name() + "l").c_str());
    } else if (op < 95) {  // remove a directory with what is in it
      static const char* kSub[] = {"b", "d", "a/c"};
      it::RemoveTree(dir + "/" + kSub[pick(3)]);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ++ops;
  }
}

struct Instant {
  std::string at;  // the --at argument
  Tree tree;
};

class HistoryE2E : public ReplicationTest {
 protected:
  it::RunResult Ctl(const std::vector<std::string>& args, double timeout_s = 120) {
    std::vector<std::string> argv = {SCRIBECTL_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return it::RunCommand(argv, timeout_s);
  }
  it::RunResult CtlState(const std::vector<std::string>& args, double timeout_s = 120) {
    std::vector<std::string> argv = {"--state-dir", state()};
    argv.insert(argv.end(), args.begin(), args.end());
    return Ctl(argv, timeout_s);
  }

  // Runs writers for `seconds`, capturing `n` instants at random times.
  std::vector<Instant> RunAndCapture(double seconds, int n) {
    // The writers run in a process of their own. Threads of this process
    // would hold files open (with dirty pages) whenever it forks scribectl;
    // the child's copy of such a file is closed at its exec or exit, and that
    // close writes the pages back, which waits for the pause to end: a
    // `scribectl flush` inside a pause then hung until the pause's timeout
    // (seen in CI: killed after 120 s, its answer printed).
    struct Shared {
      std::atomic<bool> stop{false};
      std::atomic<int> ops{0};
    };
    void* mem = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                     -1, 0);
    EXPECT_NE(mem, MAP_FAILED) << strerror(errno);
    if (mem == MAP_FAILED) return {};
    Shared* sh = new (mem) Shared;
    struct Unmap {
      void* m;
      ~Unmap() { munmap(m, sizeof(Shared)); }
    } unmap{mem};
    std::atomic<bool>& stop = sh->stop;
    std::atomic<int>& ops = sh->ops;
    const std::string base = mp();
    pid_t child = fork();
    EXPECT_GE(child, 0) << strerror(errno);
    if (child < 0) return {};
    if (child == 0) {
      std::vector<std::thread> writers;
      for (int i = 0; i < 3; ++i)
        writers.emplace_back([&, i] { Writer(base, i, stop, ops); });
      for (auto& t : writers) t.join();
      _exit(0);
    }
    struct Reap {
      pid_t pid;
      std::atomic<bool>& stop;
      ~Reap() {  // an early return: the writers stop too
        if (pid <= 0) return;
        stop = true;
        waitpid(pid, nullptr, 0);
      }
    } reap{child, stop};
    std::vector<Instant> instants;
    std::mt19937 rng(42);
    const double gap = seconds / n;
    auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      auto at = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                            gap * i + gap * (0.2 + 0.6 * (rng() % 1000) / 1000.0)));
      std::this_thread::sleep_until(at);
      it::RunResult p = CtlState({"--json", "pause", "--timeout", "120"});
      EXPECT_EQ(p.exit_code, 0) << p.Describe();
      if (p.exit_code != 0) break;
      auto pj = nlohmann::json::parse(p.out, nullptr, false);
      int64_t pause_seq = pj.is_object() ? pj.value("seq", int64_t(0)) : 0;
      it::RunResult f = CtlState({"flush", "--timeout", "120"});
      EXPECT_EQ(f.exit_code, 0) << f.Describe();
      // Nothing changes in DATADIR while paused (the kernel's cached
      // writes were sent before the pause; later ones wait for the resume).
      Instant inst;
      inst.tree = Snapshot(data());
      int64_t now = RealtimeNs();
      char at_text[64];
      snprintf(at_text, sizeof at_text, "@%lld.%09lld", static_cast<long long>(now / 1'000'000'000),
               static_cast<long long>(now % 1'000'000'000));
      inst.at = i % 2 == 0 ? std::string(at_text) : std::to_string(pause_seq);
      it::RunResult r = CtlState({"resume"});
      EXPECT_EQ(r.exit_code, 0) << r.Describe();
      printf("[ instant  ] %d at %.1f s: --at %s, %zu paths, %d operations so far\n", i,
             std::chrono::duration<double>(Clock::now() - start).count(), inst.at.c_str(),
             inst.tree.size(), ops.load());
      instants.push_back(std::move(inst));
    }
    std::this_thread::sleep_until(
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)));
    stop = true;
    waitpid(child, nullptr, 0);
    reap.pid = -1;
    printf("[ writers  ] %d operations in %.1f s\n", ops.load(),
           std::chrono::duration<double>(Clock::now() - start).count());
    return instants;
  }

  // restore --at each instant into a fresh directory and compare.
  // `global` goes before the command (--state-dir), `source` after it
  // (--target URL).
  void CheckInstants(const std::vector<Instant>& instants, const std::vector<std::string>& global,
                     const std::vector<std::string>& source = {}) {
    for (size_t i = 0; i < instants.size(); ++i) {
      std::string to = root() + "/restored-" + std::to_string(i);
      std::vector<std::string> args = global;
      args.insert(args.end(), {"restore", "--at", instants[i].at, "--to", to});
      args.insert(args.end(), source.begin(), source.end());
      it::RunResult r = Ctl(args, 300);
      ASSERT_EQ(r.exit_code, 0) << "instant " << i << " (--at " << instants[i].at
                                << "): " << r.Describe();
      std::vector<std::string> diff = Diff(instants[i].tree, Snapshot(to));
      EXPECT_TRUE(diff.empty()) << "instant " << i << " (--at " << instants[i].at << "): "
                                << diff.size() << " differences\n"
                                << Head(diff);
    }
  }

  void PropertyTest() {
    std::vector<Instant> instants = RunAndCapture(30.0, 10);
    ASSERT_EQ(instants.size(), 10u);
    it::RunResult f = CtlState({"flush", "--timeout", "300"}, 320);
    ASSERT_EQ(f.exit_code, 0) << f.Describe();
    ASSERT_NO_FATAL_FAILURE(CheckInstants(instants, {"--state-dir", state()}));
  }
};

TEST_F(HistoryE2E, RestoreAtRandomInstantsReproducesEachTreeFile) {
  const std::string target = "file://" + root() + "/target";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget(target, {}));
  PropertyTest();
}

TEST_F(HistoryE2E, RestoreAtRandomInstantsReproducesEachTreeRgw) {
  ASSERT_NO_FATAL_FAILURE(SetUpS3("history"));
  ASSERT_NO_FATAL_FAILURE(MountS3({}));
  PropertyTest();
}

// Disaster recovery: the state directory (journal, config) is gone; the
// target alone gives back an instant and the latest state.
TEST_F(HistoryE2E, RestoreAtFromTheTargetAloneAfterTheStateDirIsGone) {
  const std::string target = "file://" + root() + "/target";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget(target, {}));
  std::vector<Instant> instants = RunAndCapture(6.0, 2);
  ASSERT_EQ(instants.size(), 2u);
  it::RunResult f = CtlState({"flush", "--timeout", "120"});
  ASSERT_EQ(f.exit_code, 0) << f.Describe();
  Tree latest = Snapshot(data());
  ASSERT_EQ(Unmount(), 0);
  it::RemoveTree(state());
  ASSERT_NE(access(state().c_str(), F_OK), 0);
  ASSERT_NO_FATAL_FAILURE(CheckInstants(instants, {}, {"--target", target}));
  std::string to = root() + "/restored-latest";
  it::RunResult r = Ctl({"restore", "--at", "now", "--to", to, "--target", target});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  std::vector<std::string> diff = Diff(latest, Snapshot(to));
  EXPECT_TRUE(diff.empty()) << diff.size() << " differences\n" << Head(diff);
}

}  // namespace
}  // namespace scribefs::rep
