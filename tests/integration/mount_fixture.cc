#include "tests/integration/mount_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/mountinfo.h"
#include "common/unique_fd.h"
#include "journal/reader.h"

namespace scribefs::it {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

bool Within(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

void ListTreeAt(const std::string& root, const std::string& rel, dev_t dev,
                std::map<std::string, struct stat>* out) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> subdirs;
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    std::string r = rel.empty() ? e->d_name : rel + "/" + e->d_name;
    struct stat st;
    if (lstat((root + "/" + r).c_str(), &st) != 0) continue;
    (*out)[r] = st;
    if (S_ISDIR(st.st_mode) && st.st_dev == dev) subdirs.push_back(r);
  }
  closedir(d);
  for (const auto& s : subdirs) ListTreeAt(root, s, dev, out);
}

void RemoveAt(int dirfd, dev_t dev) {
  DIR* d = fdopendir(dirfd);
  if (!d) {
    close(dirfd);
    return;
  }
  std::vector<std::pair<std::string, bool>> entries;
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode) && st.st_dev != dev) continue;  // a mount: leave it alone
    entries.push_back({e->d_name, S_ISDIR(st.st_mode) != 0});
  }
  for (const auto& [name, is_dir] : entries) {
    if (is_dir) {
      int sub = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) RemoveAt(sub, dev);
      unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
    } else {
      unlinkat(dirfd, name.c_str(), 0);
    }
  }
  closedir(d);
}

}  // namespace

std::string ScribefsBin() {
  const char* env = getenv("SCRIBEFS_IT_BIN");
  return env && *env ? env : SCRIBEFS_BIN;
}

std::string RunResult::Describe() const {
  std::string s = timed_out ? "timed out" : "exit " + std::to_string(exit_code);
  if (!out.empty()) s += ", stdout: " + out;
  if (!err.empty()) s += ", stderr: " + err;
  return s;
}

RunResult RunCommand(const std::vector<std::string>& argv, double timeout_s) {
  RunResult r;
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  int outp[2], errp[2];
  if (pipe2(outp, O_CLOEXEC) != 0) return r;
  if (pipe2(errp, O_CLOEXEC) != 0) {
    close(outp[0]);
    close(outp[1]);
    return r;
  }
  pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    dup2(outp[1], 1);
    dup2(errp[1], 2);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    signal(SIGPIPE, SIG_DFL);
    execvp(cargs[0], cargs.data());
    const char msg[] = "exec failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  close(outp[1]);
  close(errp[1]);
  UniqueFd out(outp[0]), err(errp[0]);
  if (pid < 0) return r;
  fcntl(out.get(), F_SETFL, O_NONBLOCK);
  fcntl(err.get(), F_SETFL, O_NONBLOCK);
  auto start = Clock::now();
  std::optional<Clock::time_point> exited_at;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    struct pollfd p[2] = {{out_open ? out.get() : -1, POLLIN, 0},
                          {err_open ? err.get() : -1, POLLIN, 0}};
    poll(p, 2, 20);
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      int fd = i == 0 ? out.get() : err.get();
      bool& open = i == 0 ? out_open : err_open;
      std::string& dst = i == 0 ? r.out : r.err;
      while (open) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
          dst.append(buf, n);
        } else if (n == 0 || errno != EAGAIN) {
          open = false;
        } else {
          break;
        }
      }
    }
    if (!exited_at) {
      int status;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited_at = Clock::now();
        r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      } else if (SecondsSince(start) > timeout_s) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        r.timed_out = true;
        r.exit_code = 128 + SIGKILL;
        break;
      }
    } else if (SecondsSince(*exited_at) > 2) {
      break;  // a background child still holds the pipes
    }
  }
  if (!exited_at && !r.timed_out) {
    // Both pipes closed before the exit was seen.
    auto s = WaitChild(pid, std::max(1.0, timeout_s - SecondsSince(start)));
    if (s) {
      r.exit_code = *s;
    } else {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      r.timed_out = true;
      r.exit_code = 128 + SIGKILL;
    }
  }
  return r;
}

std::vector<std::string> MountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  for (const MountEntry& m : ReadMountInfo())
    if (Within(m.mountpoint, dir)) out.push_back(m.mountpoint);
  return out;
}

bool IsMounted(const std::string& path) { return !MountType(path).empty(); }

std::string MountType(const std::string& path) {
  std::string type;
  for (const MountEntry& m : ReadMountInfo())
    if (m.mountpoint == path) type = m.fstype;  // the last one is on top
  return type;
}

std::optional<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    out.append(buf, n);
  }
  return out;
}

bool WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return false;
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) return false;
    done += n;
  }
  int e = close(fd.Release());
  return e == 0;
}

std::map<std::string, struct stat> ListTree(const std::string& root) {
  std::map<std::string, struct stat> out;
  struct stat st;
  if (lstat(root.c_str(), &st) != 0) return out;
  ListTreeAt(root, "", st.st_dev, &out);
  return out;
}

std::set<std::string> ListDir(const std::string& dir) {
  std::set<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (struct dirent* e = readdir(d))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) out.insert(e->d_name);
  closedir(d);
  return out;
}

void RemoveTree(const std::string& root) {
  struct stat st;
  if (lstat(root.c_str(), &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    unlink(root.c_str());
    return;
  }
  int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) RemoveAt(fd, st.st_dev);
  rmdir(root.c_str());
}

int CountOpenFds(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  int n = 0;
  while (struct dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

std::map<std::string, std::string> OpenFds(pid_t pid) {
  std::map<std::string, std::string> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char buf[512];
    ssize_t n = readlink((dir + "/" + e->d_name).c_str(), buf, sizeof buf - 1);
    out[e->d_name] = n < 0 ? "?" : std::string(buf, static_cast<size_t>(n));
  }
  closedir(d);
  return out;
}

bool ProcessAlive(pid_t pid) {
  // A zombie still answers kill(0); look at its state instead.
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= line.size()) return false;
  char state = line[close_paren + 2];
  return state != 'Z' && state != 'X';
}

std::optional<int> WaitChild(pid_t pid, double timeout_s) {
  auto start = Clock::now();
  while (true) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return errno == ECHILD ? std::optional<int>(-1) : std::nullopt;
    if (SecondsSince(start) > timeout_s) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int64_t MtimeNs(const struct stat& st) {
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 12345;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>('a' + (x >> 16) % 26);
  }
  return s;
}

std::vector<ByteRange> WrittenRanges(const std::vector<Record>& records, const std::string& path) {
  std::vector<ByteRange> all;
  for (const auto& r : records)
    if (r.op == Op::kWrite && r.path == path && r.state != kStateSkipped)
      all.insert(all.end(), r.ranges.begin(), r.ranges.end());
  std::sort(all.begin(), all.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<ByteRange> merged;
  for (const auto& r : all) {
    if (!merged.empty() && r.offset <= merged.back().end()) {
      uint64_t end = std::max(merged.back().end(), r.end());
      merged.back().length = end - merged.back().offset;
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

bool Covers(const std::vector<ByteRange>& merged, uint64_t offset, uint64_t length) {
  for (const auto& r : merged)
    if (r.offset <= offset && r.end() >= offset + length) return true;
  return length == 0;
}

bool DataCovered(const std::vector<Record>& records, const std::string& path, uint64_t offset,
                 uint64_t length) {
  if (Covers(WrittenRanges(records, path), offset, length)) return true;
  std::optional<int64_t> whole_since;
  for (const auto& r : records) {
    if (r.path != path || r.state == kStateSkipped) continue;
    if (r.op == Op::kCreate || (r.op == Op::kTruncate && r.size == 0)) whole_since = r.seq;
    if (r.op == Op::kClose && whole_since && r.size &&
        static_cast<uint64_t>(*r.size) >= offset + length)
      return true;
  }
  return false;
}

std::vector<Record> Find(const std::vector<Record>& records, Op op, const std::string& path,
                         std::optional<std::string> new_path) {
  std::vector<Record> out;
  for (const auto& r : records)
    if (r.op == op && r.path == path && (!new_path || r.new_path == new_path)) out.push_back(r);
  return out;
}

std::vector<Record> Naming(const std::vector<Record>& records, const std::string& path) {
  std::vector<Record> out;
  for (const auto& r : records)
    if (r.path == path || r.new_path == path) out.push_back(r);
  return out;
}

std::string Dump(const Record& r) {
  std::string s =
      "#" + std::to_string(r.seq) + " " + std::string(OpName(r.op)) + " '" + r.path + "'";
  if (r.new_path) s += " -> '" + *r.new_path + "'";
  if (!r.ranges.empty()) s += " ranges=" + RangesToJson(r.ranges);
  if (r.size) s += " size=" + std::to_string(*r.size);
  if (r.mode)
    s += " mode=0" + [&] {
      char b[16];
      snprintf(b, sizeof b, "%o", *r.mode);
      return std::string(b);
    }();
  if (r.flags) s += " flags=" + std::to_string(*r.flags);
  s += " uid=" + std::to_string(r.uid) + " gid=" + std::to_string(r.gid) +
       " pid=" + std::to_string(r.pid);
  if (!r.detail.empty()) s += " detail=" + r.detail;
  s += " state=" + r.state;
  return s;
}

// ---- the fixture -------------------------------------------------------------

void MountTest::SetUp() {
  // The daemon detaches from the scribefs process that starts it; as a
  // subreaper we inherit it and can reap it (and see its exit status).
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0) << strerror(errno);
  ASSERT_EQ(geteuid(), 0u) << "the integration tests mount filesystems and must run as root";
  ASSERT_EQ(access("/dev/fuse", R_OK | W_OK), 0) << "/dev/fuse: " << strerror(errno);
  umask(022);
  std::string tmpl = std::string(kTempPrefix) + std::to_string(getpid()) + "-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << strerror(errno);
  root_ = tmpl;
  // mkdtemp makes it 0700; other users (PermissionsTest) must reach the mount.
  ASSERT_EQ(chmod(root_.c_str(), 0755), 0) << strerror(errno);
  data_ = root_ + "/data";
  state_ = root_ + "/state";  // created by the daemon
  mnt_ = root_ + "/mnt";
  ASSERT_EQ(mkdir(data_.c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(mkdir(mnt_.c_str(), 0755), 0) << strerror(errno);
}

void MountTest::TearDown() {
  if (root_.empty()) return;
  for (auto& d : daemons_) StopDaemon(d);
  daemon_ = nullptr;
  if (HasFailure()) {
    // The daemon's own account helps to tell a daemon bug from a test bug.
    for (const auto& log : log_paths_) {
      auto text = ReadFile(log);
      if (!text || text->empty()) continue;
      size_t from = text->size() > 6000 ? text->rfind('\n', text->size() - 6000) : 0;
      printf("---- %s (end) ----\n%s\n----\n", log.c_str(),
             text->substr(from == std::string::npos ? 0 : from).c_str());
    }
  }
  // Anything still mounted below root_: dead FUSE mounts, tmpfs we made, or
  // mounts a test left behind. Innermost first.
  auto left = MountsUnder(root_);
  std::sort(left.begin(), left.end(),
            [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& m : left) {
    bool ours = std::find(tmpfs_.begin(), tmpfs_.end(), m) != tmpfs_.end();
    if (!ours) ADD_FAILURE() << "left mounted at teardown: " << m << " (" << MountType(m) << ")";
    if (MountType(m).rfind("fuse", 0) == 0) RunCommand({"fusermount3", "-uz", m}, 10);
    if (IsMounted(m)) umount2(m.c_str(), MNT_DETACH);
  }
  auto still = MountsUnder(root_);
  EXPECT_TRUE(still.empty()) << "could not unmount " << still.front();
  if (still.empty()) {
    RemoveTree(root_);
    struct stat st;
    EXPECT_NE(lstat(root_.c_str(), &st), 0) << "could not remove " << root_;
  }
}

RunResult MountTest::StartDaemon(const Options& o) {
  std::string data_dir = o.data_dir.empty() ? data_ : o.data_dir;
  std::string state_dir = o.state_dir.empty() ? state_ : o.state_dir;
  std::string mountpoint = o.mountpoint.empty() ? (o.over_mount ? data_dir : mnt_) : o.mountpoint;
  std::vector<std::string> argv = {ScribefsBin()};
  argv.insert(argv.end(), o.args.begin(), o.args.end());
  argv.insert(argv.end(), {"--state-dir", state_dir, data_dir});
  if (!o.over_mount) argv.push_back(mountpoint);
  const bool was_mounted = MountType(mountpoint) == "fuse.scribefs";
  RunResult r = RunCommand(argv, 60);
  std::string log = state_dir + "/scribefs.log";
  if (std::find(log_paths_.begin(), log_paths_.end(), log) == log_paths_.end())
    log_paths_.push_back(log);
  if (r.exit_code != 0) {
    // Refused as expected, or a failure; either way a daemon that mounted
    // anyway must not outlive the test.
    if (!was_mounted && MountType(mountpoint) == "fuse.scribefs") {
      ADD_FAILURE() << "scribefs exited " << r.exit_code << " but mounted " << mountpoint;
      auto pid_text = ReadFile(state_dir + "/lock");
      daemons_.push_back(
          Daemon{pid_text ? static_cast<pid_t>(atoi(pid_text->c_str())) : -1, mountpoint, false});
    }
    return r;
  }
  // Serving: the lock file names the daemon.
  auto pid_text = ReadFile(state_dir + "/lock");
  pid_t pid = pid_text ? static_cast<pid_t>(atoi(pid_text->c_str())) : -1;
  daemons_.push_back(Daemon{pid, mountpoint, false});
  daemon_ = &daemons_.back();
  mp_ = mountpoint;
  if (pid <= 0) ADD_FAILURE() << "no pid in " << state_dir << "/lock";
  return r;
}

void MountTest::Mount(const Options& o) {
  RunResult r = StartDaemon(o);
  ASSERT_EQ(r.exit_code, 0) << "scribefs did not start: " << r.Describe();
  ASSERT_EQ(MountType(mp_), "fuse.scribefs") << mp_ << " is not a scribefs mount after start";
  ASSERT_TRUE(ProcessAlive(daemon_pid())) << "daemon pid " << daemon_pid() << " is not running";
}

void MountTest::Mount() { Mount(Options()); }

int MountTest::Unmount() {
  if (!daemon_) {
    ADD_FAILURE() << "Unmount without a daemon";
    return -1;
  }
  return StopDaemon(*daemon_);
}

int MountTest::StopDaemon(Daemon& d) {
  if (d.pid == 0) return d.killed ? 128 + SIGKILL : -1;  // already stopped
  int status = -1;
  // A killed daemon's mount point may serve a newer daemon by now (it
  // detaches the dead mount itself): that one is unmounted as its own.
  bool taken_over = false;
  for (const auto& other : daemons_)
    if (&other != &d && other.pid > 0 && !other.killed && other.mountpoint == d.mountpoint)
      taken_over = d.killed;
  if (!taken_over && IsMounted(d.mountpoint)) {
    RunResult u = RunCommand({"fusermount3", "-u", d.mountpoint}, 20);
    // The daemon may have unmounted itself meanwhile (it was told to stop):
    // only a mount that is still there is a failure.
    if (u.exit_code != 0 && IsMounted(d.mountpoint)) {
      ADD_FAILURE() << "fusermount3 -u " << d.mountpoint << ": " << u.Describe();
      if (d.pid > 0 && !d.killed) kill(d.pid, SIGTERM);
    }
  }
  if (d.pid > 0) {
    auto s = WaitChild(d.pid, 20);
    if (!s) {
      ADD_FAILURE() << "scribefs pid " << d.pid << " did not exit within 20 s of the unmount; "
                    << "killing it";
      kill(d.pid, SIGKILL);
      s = WaitChild(d.pid, 10);
      status = -1;
    } else {
      status = *s;
    }
  }
  if (!taken_over && MountType(d.mountpoint) == "fuse.scribefs")
    RunCommand({"fusermount3", "-uz", d.mountpoint}, 10);
  if (d.killed) status = 128 + SIGKILL;
  d.pid = 0;
  return status;
}

void MountTest::KillDaemon() {
  ASSERT_NE(daemon_, nullptr);
  ASSERT_GT(daemon_->pid, 0);
  ASSERT_EQ(kill(daemon_->pid, SIGKILL), 0) << strerror(errno);
  auto s = WaitChild(daemon_->pid, 20);
  ASSERT_TRUE(s.has_value()) << "daemon did not die after SIGKILL";
  daemon_->killed = true;
  daemon_->pid = -1;  // reaped; StopDaemon still unmounts
}

std::vector<Record> MountTest::Records(const std::string& state_dir) {
  std::string path = (state_dir.empty() ? state_ : state_dir) + "/journal.db";
  auto reader = JournalReader::Open(path);
  if (!reader.ok()) {
    ADD_FAILURE() << "cannot open journal: " << reader.status().message();
    return {};
  }
  auto records = reader.value()->Query(JournalFilter{});
  if (!records.ok()) {
    ADD_FAILURE() << "cannot read journal: " << records.status().message();
    return {};
  }
  return std::move(records.value());
}

void MountTest::MountTmpfs(const std::string& path, const std::string& options) {
  ASSERT_TRUE(mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) << strerror(errno);
  RunResult r = RunCommand({"mount", "-t", "tmpfs", "-o", options, "scribefs-it", path}, 20);
  ASSERT_EQ(r.exit_code, 0) << "mount -t tmpfs -o " << options << " " << path << ": "
                            << r.Describe();
  tmpfs_.push_back(path);
}

}  // namespace scribefs::it
