// Load tests on a real mount: many threads changing the namespace at once
// (the journal's namespace records replay to the final tree), kill -9 of the
// daemon during heavy writes (everything that reached the backing dir has a
// record), and more files than the daemon's fd limit.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/unique_fd.h"
#include "tests/integration/mount_fixture.h"

namespace scribefs::it {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Tree {
  std::set<std::string> files;  // every non-directory
  std::set<std::string> dirs;
};

// Moves every entry below `from/` to below `to/`.
void MovePrefix(std::set<std::string>& s, const std::string& from, const std::string& to) {
  std::string p = from + "/";
  std::vector<std::string> moved;
  for (auto it = s.lower_bound(p); it != s.end() && it->compare(0, p.size(), p) == 0;) {
    moved.push_back(*it);
    it = s.erase(it);
  }
  for (const auto& m : moved) s.insert(to + m.substr(from.size()));
}

// Replays the journal's namespace records onto an empty tree, ignoring
// records whose local operation failed ("skipped"). Inconsistencies (a rename
// of a path the replay does not know, ...) go to *problems.
Tree Replay(const std::vector<Record>& rs, std::string* problems) {
  Tree t;
  auto note = [&](const Record& r, const char* what) {
    if (problems->size() < 4000) *problems += std::string("\n  ") + what + ": " + Dump(r);
  };
  for (const auto& r : rs) {
    if (r.state == kStateSkipped) continue;
    switch (r.op) {
      case Op::kCreate:
      case Op::kMknod:
      case Op::kSymlink:
        if (!t.files.insert(r.path).second) note(r, "created twice");
        break;
      case Op::kMkdir:
        if (!t.dirs.insert(r.path).second) note(r, "mkdir twice");
        break;
      case Op::kLink:
        if (r.new_path) t.files.insert(*r.new_path);
        break;
      case Op::kUnlink:
        if (!t.files.erase(r.path)) note(r, "unlink of unknown path");
        break;
      case Op::kRmdir:
        if (!t.dirs.erase(r.path)) note(r, "rmdir of unknown dir");
        break;
      case Op::kRename: {
        if (!r.new_path) break;
        const std::string from = r.path, to = *r.new_path;
        bool from_dir = t.dirs.count(from) > 0;
        if (!from_dir && !t.files.count(from)) {
          note(r, "rename of unknown path");
          break;
        }
        if (r.flags && (*r.flags & RENAME_EXCHANGE)) {
          bool to_dir = t.dirs.count(to) > 0;
          const std::string tmp = "\x01swap";
          auto move = [&](const std::string& a, const std::string& b, bool dir) {
            if (dir) {
              t.dirs.erase(a);
              t.dirs.insert(b);
              MovePrefix(t.files, a, b);
              MovePrefix(t.dirs, a, b);
            } else {
              t.files.erase(a);
              t.files.insert(b);
            }
          };
          move(from, tmp, from_dir);
          move(to, from, to_dir);
          move(tmp, to, from_dir);
          break;
        }
        t.files.erase(to);  // replaced
        if (from_dir) {
          t.dirs.erase(to);
          t.dirs.erase(from);
          t.dirs.insert(to);
          MovePrefix(t.files, from, to);
          MovePrefix(t.dirs, from, to);
        } else {
          t.files.erase(from);
          t.files.insert(to);
        }
        break;
      }
      default:
        break;
    }
  }
  return t;
}

Tree ActualTree(const std::string& root) {
  Tree t;
  for (const auto& [rel, st] : ListTree(root)) (S_ISDIR(st.st_mode) ? t.dirs : t.files).insert(rel);
  return t;
}

std::string Diff(const std::set<std::string>& want, const std::set<std::string>& got) {
  std::string s;
  int n = 0;
  for (const auto& w : want)
    if (!got.count(w) && n++ < 20) s += "\n  missing: " + w;
  for (const auto& g : got)
    if (!want.count(g) && n++ < 20) s += "\n  extra:   " + g;
  return s;
}

using StressTest = MountTest;

// 8 threads x 2,000 files: create + write, rename half (across directories,
// some shared by all threads), delete a quarter, plus a few directories and
// symlinks, and finally each thread renames its own directory.
TEST_F(StressTest, ConcurrentNamespaceOpsReplayToFinalTree) {
  constexpr int kThreads = 8, kFiles = 2000;
  ASSERT_NO_FATAL_FAILURE(Mount());
  const std::string shared[2] = {"s0", "s1"};
  for (const auto& s : shared) ASSERT_EQ(mkdir(mp(s).c_str(), 0755), 0);
  for (int i = 0; i < kThreads; ++i) ASSERT_EQ(mkdir(mp("t" + std::to_string(i)).c_str(), 0755), 0);

  std::mutex mu;
  std::vector<std::string> created;  // every path that ever existed (as created or renamed to)
  std::atomic<int> failures{0};
  std::string first_failure;
  auto fail = [&](const std::string& what) {
    std::lock_guard lk(mu);
    if (failures++ == 0) first_failure = what + ": " + strerror(errno);
  };
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      const std::string own = "t" + std::to_string(i);
      std::vector<std::string> mine;
      std::vector<std::string> remove_dirs;
      for (int j = 0; j < kFiles; ++j) {
        const std::string dir = j % 3 == 0 ? own : shared[j % 2];
        const std::string base = "t" + std::to_string(i) + "-" + std::to_string(j);
        const std::string rel = dir + "/" + base;
        int fd = open(mp(rel).c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
        if (fd < 0) {
          fail("create " + rel);
          continue;
        }
        std::string bytes = Pattern(1 + j % 300, j);
        if (write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
          fail("write " + rel);
        if (close(fd) != 0) fail("close " + rel);
        mine.push_back(rel);
        if (j % 2 == 0) {
          const std::string to = (dir == own ? shared[(j / 2) % 2] : own) + "/" + base + ".mv";
          if (rename(mp(rel).c_str(), mp(to).c_str()) != 0) fail("rename " + rel);
          mine.push_back(to);
        } else if (j % 4 == 1) {
          if (unlink(mp(rel).c_str()) != 0) fail("unlink " + rel);
        }
        if (j % 500 == 0) {
          const std::string sub = own + "/d" + std::to_string(j);
          if (mkdir(mp(sub).c_str(), 0755) != 0) fail("mkdir " + sub);
          if (symlink("target", mp(sub + "/link").c_str()) != 0) fail("symlink " + sub);
          mine.push_back(sub);
          mine.push_back(sub + "/link");
          if (j % 1000 == 0) remove_dirs.push_back(sub);
        }
      }
      for (const auto& sub : remove_dirs) {
        if (unlink(mp(sub + "/link").c_str()) != 0) fail("unlink " + sub + "/link");
        if (rmdir(mp(sub).c_str()) != 0) fail("rmdir " + sub);
      }
      if (rename(mp(own).c_str(), mp(own + ".done").c_str()) != 0) fail("rename " + own);
      mine.push_back(own + ".done");
      std::lock_guard lk(mu);
      created.insert(created.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  double secs = Since(start);
  EXPECT_EQ(failures.load(), 0) << "first failure: " << first_failure;
  ASSERT_EQ(Unmount(), 0);  // the journal is complete once the daemon has exited
  printf("[   INFO   ] %d threads x %d files through the mount in %.1f s\n", kThreads, kFiles,
         secs);

  auto rs = Records();
  std::set<std::string> named;
  for (const auto& r : rs) {
    named.insert(r.path);
    if (r.new_path) named.insert(*r.new_path);
  }
  int unnamed = 0;
  std::string unnamed_list;
  for (const auto& c : created)
    if (!named.count(c) && unnamed++ < 10) unnamed_list += "\n  " + c;
  EXPECT_EQ(unnamed, 0) << "paths created through the mount but never named in the journal:"
                        << unnamed_list;

  std::string problems;
  Tree replayed = Replay(rs, &problems);
  EXPECT_TRUE(problems.empty()) << "replay inconsistencies:" << problems;
  Tree actual = ActualTree(data());
  EXPECT_EQ(replayed.files.size(), actual.files.size());
  EXPECT_TRUE(replayed.files == actual.files)
      << "journal replay (want) vs backing dir (got):" << Diff(replayed.files, actual.files);
  EXPECT_TRUE(replayed.dirs == actual.dirs)
      << "journal replay (want) vs backing dir (got):" << Diff(replayed.dirs, actual.dirs);
  // Per thread: 1,000 renamed + 500 kept files, 2 symlinks; 3 dirs.
  EXPECT_EQ(actual.files.size(), size_t(kThreads) * 1502);
  EXPECT_EQ(actual.dirs.size(), 2 + size_t(kThreads) * 3);
}

// 8 threads create, write, close and read back files, deleting every second
// one at once. The backing fs hands the inode numbers of deleted files to new
// ones straight away; every new file must still read back through the mount
// exactly as written, and close must not fail. (The daemon must give the
// kernel a new node id for a new file; if it reuses the deleted file's id the
// kernel serves that file's cached size, pages and write-back errors.)
TEST_F(StressTest, ReusedInodeNumbersKeepFilesApart) {
  constexpr int kThreads = 8, kFiles = 1500;
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(mkdir(mp("d0").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(mp("d1").c_str(), 0755), 0);
  std::mutex mu;
  int close_errors = 0, wrong_mount = 0, wrong_backing = 0, other = 0;
  std::string examples;
  auto note = [&](int* counter, const std::string& what) {
    std::lock_guard lk(mu);
    if ((*counter)++ < 3 && examples.size() < 2000) examples += "\n  " + what;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < kFiles; ++j) {
        const std::string rel =
            "d" + std::to_string(i % 2) + "/w" + std::to_string(i) + "-" + std::to_string(j);
        const size_t size = 1 + (size_t(j) * 7919 + size_t(i) * 104729) % 9000;
        const std::string content(size, static_cast<char>('A' + (i + j) % 26));
        int fd = open(mp(rel).c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644);
        if (fd < 0) {
          note(&other, "create " + rel + ": " + strerror(errno));
          continue;
        }
        if (write(fd, content.data(), size) != static_cast<ssize_t>(size))
          note(&other, "write " + rel + ": " + strerror(errno));
        if (close(fd) != 0) note(&close_errors, "close " + rel + ": " + strerror(errno));
        struct stat st;
        auto got = ReadFile(mp(rel));
        if (stat(mp(rel).c_str(), &st) != 0 || st.st_size != static_cast<off_t>(size) ||
            got != content)
          note(&wrong_mount, rel + ": wrote " + std::to_string(size) + " bytes, the mount shows " +
                                 std::to_string(st.st_size) + " and reads " +
                                 std::to_string(got ? got->size() : 0) + " (backing ino " +
                                 std::to_string(st.st_ino) + ")");
        if (ReadFile(data(rel)) != content) note(&wrong_backing, rel + ": backing file differs");
        if (j % 2 && unlink(mp(rel).c_str()) != 0) note(&other, "unlink " + rel);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(close_errors, 0) << examples;
  EXPECT_EQ(wrong_mount, 0) << "files that read back wrong through the mount" << examples;
  EXPECT_EQ(wrong_backing, 0) << examples;
  EXPECT_EQ(other, 0) << examples;
  EXPECT_EQ(Unmount(), 0);
}

// Kills its forked children (if still running) when a test returns early.
struct Children {
  std::vector<pid_t> pids;
  ~Children() {
    for (pid_t p : pids)
      if (p > 0) {
        kill(p, SIGKILL);
        waitpid(p, nullptr, 0);
      }
  }
};

// Per-writer progress shared with the forked writers.
struct WriterStats {
  std::atomic<int64_t> ops;
  std::atomic<int> last_errno;
};

// kill -9 of the daemon while 4 processes create, append to and overwrite
// files. Afterwards every file whose mtime says it changed since the mount
// has a journal record, and every file whose content changed has a
// create/write/truncate record. The state dir must then serve a new mount.
TEST_F(StressTest, KillDashNineDuringHeavyWrites) {
  constexpr int kWriters = 4, kPre = 40;
  const std::string pre_content(65536, 'p');
  ASSERT_EQ(mkdir(data("pre").c_str(), 0755), 0);
  struct timespec old_times[2] = {{978307200, 0}, {978307200, 0}};  // 2001
  for (int k = 0; k < kPre; ++k) {
    std::string p = data("pre/f" + std::to_string(k));
    ASSERT_TRUE(WriteFile(p, pre_content));
    ASSERT_EQ(utimensat(AT_FDCWD, p.c_str(), old_times, 0), 0);
  }
  const int64_t mount_start_ns = NowNs();
  ASSERT_NO_FATAL_FAILURE(Mount());
  for (int n = 0; n < kWriters; ++n) ASSERT_EQ(mkdir(mp("w" + std::to_string(n)).c_str(), 0755), 0);

  void* shm = mmap(nullptr, sizeof(WriterStats) * kWriters, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(shm, MAP_FAILED);
  auto* stats = new (shm) WriterStats[kWriters]();
  const std::string chunk = Pattern(65536, 9);
  Children children;
  for (int n = 0; n < kWriters; ++n) {
    std::vector<std::string> paths;  // built before fork
    for (int i = 0; i < 4096; ++i) {
      switch (i % 4) {
        case 0:
          paths.push_back(mp("w" + std::to_string(n) + "/new" + std::to_string(i)));
          break;
        case 1:
        case 3:
          paths.push_back(mp("w" + std::to_string(n) + "/app" + std::to_string(i % 16)));
          break;
        case 2:
          paths.push_back(mp("pre/f" + std::to_string((i * 7 + n) % kPre)));
          break;
      }
    }
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // A writer: loops until the mount fails under it (or 60 s pass).
      WriterStats& me = stats[n];
      auto deadline = Clock::now() + std::chrono::seconds(60);
      for (int64_t i = 0; Clock::now() < deadline; ++i) {
        const std::string& path = paths[i % paths.size()];
        int fd;
        bool ok = true;
        switch (i % 4) {
          case 0:  // create
            fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
            ok = fd >= 0 && write(fd, chunk.data(), 16384) == 16384;
            break;
          case 1:  // append
            fd = open(path.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644);
            ok = fd >= 0 && write(fd, chunk.data(), 4096) == 4096;
            break;
          case 2:  // overwrite part of an existing file
            fd = open(path.c_str(), O_WRONLY);
            ok = fd >= 0 && pwrite(fd, chunk.data(), 8192, (i * 4096) % 65536) == 8192;
            break;
          default:  // append and fsync
            fd = open(path.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644);
            ok = fd >= 0 && write(fd, chunk.data(), 8192) == 8192 && fsync(fd) == 0;
            break;
        }
        int e = errno;
        if (fd >= 0 && close(fd) != 0 && ok) {
          ok = false;
          e = errno;
        }
        if (!ok) {
          me.last_errno = e;
          _exit(0);
        }
        me.ops++;
      }
      _exit(3);  // the daemon was never killed?
    }
    children.pids.push_back(pid);
  }
  // Let every writer get going, then kill the daemon in the middle of it.
  auto t0 = Clock::now();
  auto min_ops = [&] {
    int64_t m = INT64_MAX;
    for (int n = 0; n < kWriters; ++n) m = std::min<int64_t>(m, stats[n].ops);
    return m;
  };
  while (min_ops() < 50 && Since(t0) < 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int64_t ops_before_kill = 0;
  for (int n = 0; n < kWriters; ++n) ops_before_kill += stats[n].ops;
  ASSERT_NO_FATAL_FAILURE(KillDaemon());

  // The writers must end (ENOTCONN), not hang.
  for (auto& pid : children.pids) {
    auto s = WaitChild(pid, 20);
    EXPECT_TRUE(s.has_value()) << "writer " << pid << " still running 20 s after the daemon died";
    if (s) {
      EXPECT_EQ(*s, 0) << "writer " << pid << " ended without an error";
      pid = -1;
    }
  }
  for (int n = 0; n < kWriters; ++n)
    printf("[   INFO   ] writer %d: %ld ops, ended with %s\n", n, long(stats[n].ops.load()),
           strerror(stats[n].last_errno));
  EXPECT_GE(ops_before_kill, kWriters * 50);

  // The mount is dead (a name the kernel has not cached needs the daemon).
  struct stat st;
  EXPECT_EQ(stat(mp("not-cached").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOTCONN) << strerror(errno);
  // As a user would: unmount the dead mount.

  Unmount();
  ASSERT_FALSE(IsMounted(mnt()));

  auto rs = Records();
  std::map<std::string, std::vector<Record>> by_path;
  for (const auto& r : rs) {
    by_path[r.path].push_back(r);
    if (r.new_path) by_path[*r.new_path].push_back(r);
  }
  int changed = 0, content_changed = 0;
  for (const auto& [rel, bst] : ListTree(data())) {
    if (!S_ISREG(bst.st_mode)) continue;
    bool is_pre = rel.rfind("pre/", 0) == 0;
    bool touched = MtimeNs(bst) > mount_start_ns - 1000000000;  // coarse fs clock
    bool content = !is_pre || ReadFile(data(rel)) != pre_content;
    if (is_pre && !touched && !content) continue;
    ++changed;
    auto it = by_path.find(rel);
    ASSERT_TRUE(it != by_path.end())
        << rel << " changed (mtime " << MtimeNs(bst) << ") but no journal record names it";
    if (content) {
      ++content_changed;
      bool data_record = false;
      for (const auto& r : it->second)
        if ((r.op == Op::kCreate || r.op == Op::kWrite || r.op == Op::kTruncate) &&
            r.state != kStateSkipped)
          data_record = true;
      EXPECT_TRUE(data_record) << rel << " has new content but no create/write/truncate record";
    }
  }
  printf("[   INFO   ] %d files changed, %d with new content, %zu journal records\n", changed,
         content_changed, rs.size());
  EXPECT_GT(content_changed, kWriters);

  // The same state dir serves a new mount.
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto again = ReadFile(mp("pre/f0"));
  EXPECT_TRUE(again.has_value() && *again == ReadFile(data("pre/f0")));
  ASSERT_TRUE(WriteFile(mp("after-restart"), "ok"));
  EXPECT_EQ(Unmount(), 0);
  EXPECT_EQ(Find(Records(), Op::kCreate, "after-restart").size(), 1u);
  munmap(shm, sizeof(WriterStats) * kWriters);
}

// After kill -9 the mount is dead; starting again without unmounting first
// works (the daemon detaches its own stale mount).
TEST_F(StressTest, RestartAfterKillDetachesStaleMount) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_TRUE(WriteFile(mp("a"), "a"));
  ASSERT_NO_FATAL_FAILURE(KillDaemon());
  struct stat st;
  EXPECT_EQ(stat(mp("not-cached").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOTCONN) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(ReadFile(mp("a")).value_or(""), "a");
  EXPECT_EQ(Unmount(), 0);
  EXPECT_EQ(MountsUnder(root()).size(), 0u);
}

// 25,000 files, more than the daemon's fd limit (20,000 here): every one can
// be created, stat'ed and read, and the daemon's open fds stay few while the
// kernel holds all those inodes.
TEST_F(StressTest, MoreFilesThanTheFdLimit) {
  constexpr int kFiles = 25000, kDirs = 5;
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  printf("[   INFO   ] fd limit here: soft %lu hard %lu\n", (unsigned long)rl.rlim_cur,
         (unsigned long)rl.rlim_max);
  ASSERT_NO_FATAL_FAILURE(Mount());
  int base_fds = CountOpenFds(daemon_pid());
  for (int d = 0; d < kDirs; ++d) ASSERT_EQ(mkdir(mp("d" + std::to_string(d)).c_str(), 0755), 0);
  auto path = [&](int i) { return "d" + std::to_string(i % kDirs) + "/f" + std::to_string(i); };
  auto content = [](int i) { return "content of " + std::to_string(i); };
  auto t0 = Clock::now();
  for (int i = 0; i < kFiles; ++i) {
    UniqueFd fd(open(mp(path(i)).c_str(), O_CREAT | O_WRONLY | O_EXCL, 0644));
    ASSERT_TRUE(fd) << "create #" << i << " " << path(i) << ": " << strerror(errno);
    if (i % 1000 == 0) {
      std::string c = content(i);
      ASSERT_EQ(write(fd.get(), c.data(), c.size()), static_cast<ssize_t>(c.size()));
    }
    ASSERT_EQ(close(fd.Release()), 0) << path(i);
  }
  double create_s = Since(t0);
  int fds_after_create = CountOpenFds(daemon_pid());
  t0 = Clock::now();
  for (int i = 0; i < kFiles; ++i) {
    struct stat st;
    ASSERT_EQ(stat(mp(path(i)).c_str(), &st), 0) << path(i) << ": " << strerror(errno);
    ASSERT_EQ(st.st_size, i % 1000 == 0 ? static_cast<off_t>(content(i).size()) : 0) << path(i);
  }
  double stat_s = Since(t0);
  for (int i = 0; i < kFiles; i += 1000) EXPECT_EQ(ReadFile(mp(path(i))).value_or("?"), content(i));
  int fds = CountOpenFds(daemon_pid());
  printf(
      "[   INFO   ] %d creates in %.1f s, stat all in %.1f s; daemon fds: %d at start, %d after "
      "creates, %d after stats\n",
      kFiles, create_s, stat_s, base_fds, fds_after_create, fds);
  EXPECT_LT(fds_after_create, 1000);
  EXPECT_LT(fds, 1000);
  EXPECT_EQ(Unmount(), 0);
  int files = 0;
  for (const auto& [rel, st] : ListTree(data())) files += S_ISREG(st.st_mode) ? 1 : 0;
  EXPECT_EQ(files, kFiles);
  int creates = 0;
  for (const auto& r : Records()) creates += r.op == Op::kCreate ? 1 : 0;
  EXPECT_EQ(creates, kFiles);
}

}  // namespace
}  // namespace scribefs::it
