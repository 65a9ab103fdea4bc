// Checkpoints under load (issue 12): a checkpoint holds writers only while
// it captures the state at its mark; the state is stored afterwards, from the
// copy-on-write spool, while the writers go on.
//
// Four writers each rewrite their own file set, one generation after the
// other (a generation is the application's unit of consistency: the writers
// pass a gate for each one, which the test's quiesce closes, as a --pre hook
// would). One more writer overwrites 4 KiB at
// random offsets of a large file, open all along, never quiesced. About every
// second the test takes a checkpoint, alternately:
//  - inside a pause of its own: it quiesces, pauses, records DATADIR's whole
//    tree (SHA-256 of every file, the large one included: the shadow copy),
//    takes the checkpoint within that pause and resumes;
//  - with the checkpoint's own pause, quiesced around the command.
// After the run `flush` waits until every captured checkpoint is stored, and
// `restore --checkpoint` of each must give: every file set at exactly one
// generation, each file's bytes those of that generation, and for the first
// kind the whole recorded tree exactly (the large file's bytes at the mark).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/replication/history_check.h"
#include "tests/replication/private_rgw.h"
#include "tests/replication/replication_fixture.h"

namespace scribefs::rep {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr int kSets = 4;
constexpr int kFilesPerSet = 8;

// The bytes of file i of set s at generation g: its header repeated to a size
// that differs per file and generation (kWriterScript makes the same).
std::string SetFile(int s, int g, int i) {
  char head[64];
  snprintf(head, sizeof head, "set %d gen %d file %d\n", s, g, i);
  size_t n = 1000 + static_cast<size_t>((i * 7919 + g * 104729) % 60000);
  std::string out;
  while (out.size() < n) out += head;
  out.resize(n);
  return out;
}

// argv: MOUNT SET  (a file set's writer) or MOUNT big PAUSE_MS (the large
// file's). Runs until MOUNT/../stop exists... (see kStopFile).
constexpr const char* kWriterScript = R"py(
import fcntl, os, random, sys, time
mnt, kind, ctl = sys.argv[1], sys.argv[2], sys.argv[3]
stop, gate, lock = ctl + "/stop", ctl + "/gate", ctl + "/lock"
if kind == "big":
    fd = os.open(mnt + "/big.bin", os.O_WRONLY)
    blocks = os.fstat(fd).st_size // 4096
    rng = random.Random(7)
    n = 0
    while not os.path.exists(stop):
        os.pwrite(fd, rng.randbytes(4096), rng.randrange(blocks) * 4096)
        n += 1
        time.sleep(int(sys.argv[4]) / 1000)
    os.close(fd)
    print(n)
    sys.exit(0)
s = int(kind)
lk = os.open(lock, os.O_RDONLY)
g = 0
while not os.path.exists(stop):
    if os.path.exists(gate):
        time.sleep(0.002)
        continue
    fcntl.flock(lk, fcntl.LOCK_SH)
    if os.path.exists(gate):
        fcntl.flock(lk, fcntl.LOCK_UN)
        continue
    g += 1
    for i in range(8):
        head = "set %d gen %d file %d\n" % (s, g, i)
        n = 1000 + (i * 7919 + g * 104729) % 60000
        data = (head * (n // len(head) + 1))[:n].encode()
        with open("%s/set%d/f%d" % (mnt, s, i), "wb") as f:
            f.write(data)
    fcntl.flock(lk, fcntl.LOCK_UN)
print(g)
)py";

// A writer process (python3 -c kWriterScript ARGS); Join() returns its stdout.
class WriterProcess {
 public:
  explicit WriterProcess(std::vector<std::string> args) {
    args.insert(args.begin(), {"python3", "-c", kWriterScript});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    out_ = tmpfile();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fileno(out_), 1);
    ok_ = posix_spawnp(&pid_, "python3", &fa, nullptr, argv.data(), environ) == 0;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~WriterProcess() {
    if (ok_ && pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_) fclose(out_);
  }
  // Waits for its end (after the stop file): its exit status and output.
  int Join(std::string* output) {
    int st = -1;
    if (!ok_ || waitpid(pid_, &st, 0) != pid_) return -1;
    pid_ = -1;
    rewind(out_);
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf - 1, out_);
    output->assign(buf, n);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
  FILE* out_ = nullptr;
};

std::string SetPath(const std::string& root, int s, int i) {
  return root + "/set" + std::to_string(s) + "/f" + std::to_string(i);
}

bool WriteWhole(const std::string& path, const std::string& bytes) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  return close(fd) == 0 && ok;
}

std::optional<std::string> ReadWhole(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  if (n < 0) return std::nullopt;
  return out;
}

// The generation every file of set s holds in a restored tree, or a
// description of what is wrong.
std::string CheckSet(const std::string& root, int s, int* generation) {
  int gen = -1;
  for (int i = 0; i < kFilesPerSet; ++i) {
    auto bytes = ReadWhole(SetPath(root, s, i));
    if (!bytes) return "f" + std::to_string(i) + " missing";
    int fs = -1, fg = -1, fi = -1;
    if (sscanf(bytes->c_str(), "set %d gen %d file %d", &fs, &fg, &fi) != 3 || fs != s || fi != i)
      return "f" + std::to_string(i) + ": no header";
    if (gen >= 0 && fg != gen)
      return "f" + std::to_string(i) + " at generation " + std::to_string(fg) + ", f0 at " +
             std::to_string(gen);
    gen = fg;
    if (*bytes != SetFile(s, fg, i))
      return "f" + std::to_string(i) + ": bytes differ from generation " + std::to_string(fg);
  }
  *generation = gen;
  return "";
}

// Differences between two trees, one line each (empty when equal).
std::vector<std::string> Diff(const Snapshot& want, const Snapshot& got) {
  std::vector<std::string> out;
  for (const auto& [path, n] : want) {
    auto it = got.find(path);
    if (it == got.end())
      out.push_back("missing " + path);
    else if (!(it->second == n))
      out.push_back("differs " + path + ": want " + Describe({{path, n}}) + " got " +
                    Describe({{path, it->second}}));
  }
  for (const auto& [path, n] : got)
    if (!want.count(path)) out.push_back("extra " + path);
  return out;
}

struct Taken {
  std::string name;
  std::optional<Snapshot> tree;  // recorded under the test's own pause
  double held_ms = 0;
};

class CheckpointLoad : public ReplicationTest {
 protected:
  // Writers run for `seconds`; a checkpoint about every `every` seconds.
  std::vector<Taken> RunAndCheckpoint(double seconds, double every) {
    // The gate: a file the writers look for before a generation, and a lock
    // they hold shared during one (kWriterScript).
    const std::string ctl = root() + "/writers";
    mkdir(ctl.c_str(), 0755);
    EXPECT_TRUE(WriteWhole(ctl + "/lock", ""));
    UniqueFd lock(open((ctl + "/lock").c_str(), O_RDONLY | O_CLOEXEC));
    auto close_gate = [&] {
      EXPECT_TRUE(WriteWhole(ctl + "/gate", ""));
      EXPECT_EQ(flock(lock.get(), LOCK_EX), 0);  // the generations under way end
    };
    auto open_gate = [&] {
      unlink((ctl + "/gate").c_str());
      flock(lock.get(), LOCK_UN);
    };
    std::vector<std::unique_ptr<WriterProcess>> writers;
    for (int s = 0; s < kSets; ++s)
      writers.push_back(
          std::make_unique<WriterProcess>(std::vector<std::string>{mp(), std::to_string(s), ctl}));
    writers.push_back(std::make_unique<WriterProcess>(
        std::vector<std::string>{mp(), "big", ctl, std::to_string(big_pause_ms_)}));

    std::vector<Taken> taken;
    auto start = Clock::now();
    for (int k = 0; Clock::now() - start < std::chrono::duration<double>(seconds); ++k) {
      std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(every * (k + 1))));
      Taken t;
      t.name = "load-" + std::to_string(k);
      bool own_pause = k % 2 == 0;
      close_gate();  // every file set at one generation
      if (own_pause) {
        it::RunResult p = Ctl({"--json", "pause", "--timeout", "120"});
        open_gate();
        EXPECT_EQ(p.exit_code, 0) << p.Describe();
        if (p.exit_code != 0) break;
        auto snap_start = Clock::now();
        t.tree = SnapshotOf(data());  // nothing changes in DATADIR while paused
        printf("[ snapshot ] %zu paths in %.2f s\n", t.tree->size(),
               std::chrono::duration<double>(Clock::now() - snap_start).count());
      }
      it::RunResult c = Ctl({"--json", "checkpoint", t.name, "--timeout", "120"});
      if (!own_pause) open_gate();
      EXPECT_EQ(c.exit_code, 0) << c.Describe();
      if (own_pause) {
        it::RunResult r = Ctl({"resume"});
        EXPECT_EQ(r.exit_code, 0) << r.Describe();
      }
      if (c.exit_code != 0) break;
      auto j = json::parse(c.out, nullptr, false);
      t.held_ms = j.is_object() ? j.value("held_ms", 0.0) : -1;
      printf("[ ckpt     ] %s at %.1f s (%s pause): held %.1f ms, answer %s\n", t.name.c_str(),
             std::chrono::duration<double>(Clock::now() - start).count(),
             own_pause ? "the test's" : "its own", t.held_ms,
             j.is_object() ? j.value("state", std::string("?")).c_str() : "?");
      taken.push_back(std::move(t));
    }
    EXPECT_TRUE(WriteWhole(ctl + "/stop", ""));
    std::string counts;
    for (auto& w : writers) {
      std::string out;
      EXPECT_EQ(w->Join(&out), 0) << "a writer failed (an error through the mount)";
      counts += (counts.empty() ? "" : ", ") + out.substr(0, out.find('\n'));
    }
    printf("[ writers  ] generations per set, then overwrites of big.bin: %s in %.1f s\n",
           counts.c_str(), std::chrono::duration<double>(Clock::now() - start).count());
    return taken;
  }

  void Run(double seconds) {
    for (int s = 0; s < kSets; ++s) {
      ASSERT_EQ(mkdir((mp() + "/set" + std::to_string(s)).c_str(), 0755), 0);
      for (int i = 0; i < kFilesPerSet; ++i)
        ASSERT_TRUE(WriteWhole(SetPath(mp(), s, i), SetFile(s, 0, i)));
    }
    {
      std::string block = it::Pattern(1 << 20, 99);
      int fd = open((mp() + "/big.bin").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      ASSERT_GE(fd, 0);
      for (uint64_t off = 0; off < big_size_; off += block.size())
        ASSERT_EQ(pwrite(fd, block.data(), block.size(), static_cast<off_t>(off)),
                  static_cast<ssize_t>(block.size()));
      ASSERT_EQ(close(fd), 0);
    }
    ASSERT_GE(CtlFlush(), 0);

    std::vector<Taken> taken = RunAndCheckpoint(seconds, 1.0);
    ASSERT_GE(taken.size(), static_cast<size_t>(seconds / 2));

    // flush returns when every captured checkpoint is stored too.
    it::RunResult f = Ctl({"flush", "--timeout", "600"}, 620);
    ASSERT_EQ(f.exit_code, 0) << f.Describe();
    it::RunResult list = Ctl({"--json", "checkpoints"});
    ASSERT_EQ(list.exit_code, 0) << list.Describe();
    auto lj = json::parse(list.out, nullptr, false);
    std::map<std::string, std::string> states;
    for (const auto& c : lj.is_object() ? lj.value("checkpoints", json::array()) : json::array())
      states[c.value("name", "")] = c.value("state", "");
    for (const Taken& t : taken) EXPECT_EQ(states[t.name], "stored") << t.name << ": " << list.out;

    for (const Taken& t : taken) {
      const std::string to = root() + "/restored-" + t.name;
      it::RunResult r = Ctl({"restore", "--same-owner", "--checkpoint", t.name, "--to", to}, 600);
      ASSERT_EQ(r.exit_code, 0) << t.name << ": " << r.Describe();
      for (int s = 0; s < kSets; ++s) {
        int gen = -1;
        std::string why = CheckSet(to, s, &gen);
        EXPECT_EQ(why, "") << t.name << ": set " << s;
      }
      if (t.tree) {
        std::vector<std::string> diff = Diff(*t.tree, SnapshotOf(to));
        EXPECT_TRUE(diff.empty()) << t.name << ": " << diff.size() << " differences from the "
                                  << "tree at the mark\n"
                                  << Head(diff);
      } else {
        struct stat st;
        ASSERT_EQ(stat((to + "/big.bin").c_str(), &st), 0) << t.name;
        EXPECT_EQ(static_cast<uint64_t>(st.st_size), big_size_) << t.name;
      }
      it::RemoveTree(to);
    }
  }

  uint64_t big_size_ = 512ull << 20;
  int big_pause_ms_ = 100;
};

TEST_F(CheckpointLoad, EveryStoredCheckpointRestoresOneGenerationAndTheBytesAtTheMarkFile) {
  ASSERT_NO_FATAL_FAILURE(MountWithTarget("file://" + root() + "/target", {}));
  Run(20.0);
}

// On a private RGW, with room for what the run stores, and a 64 MiB large
// file overwritten twice a second: every pass of a large file hashes it whole
// and has RGW copy its unchanged parts server-side (S3 has no partial
// update), so 40 passes of 512 MiB take longer here than a test may; the
// file:// run covers the 512 MiB file. RGW's garbage collector frees the
// replaced parts within seconds instead of hours (its memory is the OSD).
TEST_F(CheckpointLoad, EveryStoredCheckpointRestoresOneGenerationAndTheBytesAtTheMarkRgw) {
  PrivateRgw rgw(root() + "/rgw");
  std::string err;
  auto env = rgw.Start(&err, 4ull << 30, "rgw gc obj min wait = 0\nrgw gc processor period = 5\n");
  ASSERT_TRUE(env.has_value()) << err;
  ASSERT_NO_FATAL_FAILURE(SetUpS3On(*env, "ckptload"));
  big_size_ = 64ull << 20;
  big_pause_ms_ = 500;
  ASSERT_NO_FATAL_FAILURE(MountS3({}));
  Run(20.0);
  ASSERT_EQ(Unmount(), 0);  // before the private RGW goes
}

// kill -9 of the daemon between captured and stored: the next daemon finds
// the spool and the frozen set, stores the state at the mark (not the state
// after the overwrites that followed it) and completes the checkpoint.
TEST_F(CheckpointLoad, KilledBetweenCapturedAndStoredTheNextDaemonStoresTheStateAtTheMark) {
  const std::string target = "file://" + root() + "/target";
  ASSERT_NO_FATAL_FAILURE(MountWithTarget(target, {}));
  ASSERT_TRUE(WriteWhole(mp("big.bin"), it::Pattern(24 << 20, 1)));
  ASSERT_TRUE(WriteWhole(mp("old.txt"), "deleted after the mark"));
  ASSERT_GE(CtlFlush(), 0);
  ASSERT_EQ(Unmount(), 0);
  // A slow target: storing the frozen file takes seconds, the kill comes first.
  ASSERT_NO_FATAL_FAILURE(MountWithTarget(target, {"--bwlimit", "1M"}));

  // Changes not stored at the mark: the checkpoint freezes these paths.
  int fd = open(mp("big.bin").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::string a = it::Pattern(1 << 20, 2);
  ASSERT_EQ(pwrite(fd, a.data(), a.size(), 5 << 20), static_cast<ssize_t>(a.size()));
  ASSERT_TRUE(WriteWhole(mp("new.txt"), "new before the mark"));
  it::RunResult p = Ctl({"pause", "--timeout", "60"});
  ASSERT_EQ(p.exit_code, 0) << p.Describe();
  const Snapshot at_mark = SnapshotOf(data());
  it::RunResult c = Ctl({"--json", "checkpoint", "k", "--timeout", "60"});
  ASSERT_EQ(c.exit_code, 0) << c.Describe();
  ASSERT_EQ(Ctl({"resume"}).exit_code, 0);

  // After the mark: overwrite the frozen range and more, truncate, delete.
  std::string b = it::Pattern(3 << 20, 3);
  ASSERT_EQ(pwrite(fd, b.data(), b.size(), 4 << 20), static_cast<ssize_t>(b.size()));
  ASSERT_EQ(ftruncate(fd, 20 << 20), 0);
  ASSERT_EQ(close(fd), 0);
  ASSERT_EQ(truncate(mp("new.txt").c_str(), 3), 0);
  ASSERT_EQ(unlink(mp("old.txt").c_str()), 0);
  it::RunResult l = Ctl({"--json", "checkpoints"});
  ASSERT_EQ(l.exit_code, 0) << l.Describe();
  ASSERT_NE(l.out.find("captured"), std::string::npos) << "stored before the kill: " << l.out;
  ASSERT_NO_FATAL_FAILURE(KillDaemon());

  ASSERT_NO_FATAL_FAILURE(MountWithTarget(target, {"--crash-check-delay", "0"}));
  it::RunResult f = Ctl({"flush", "--timeout", "300"}, 320);
  ASSERT_EQ(f.exit_code, 0) << f.Describe();
  l = Ctl({"--json", "checkpoints"});
  auto lj = json::parse(l.out, nullptr, false);
  std::string state;
  for (const auto& e : lj.is_object() ? lj.value("checkpoints", json::array()) : json::array())
    if (e.value("name", "") == "k") state = e.value("state", "");
  EXPECT_EQ(state, "stored") << l.out;
  const std::string to = root() + "/restored";
  it::RunResult r = Ctl({"restore", "--same-owner", "--checkpoint", "k", "--to", to}, 300);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  std::vector<std::string> diff = Diff(at_mark, SnapshotOf(to));
  EXPECT_TRUE(diff.empty()) << diff.size() << " differences from the tree at the mark\n"
                            << Head(diff);
}

}  // namespace
}  // namespace scribefs::rep
