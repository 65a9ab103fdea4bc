// Start-up checks of the daemon: paths, the state directory, its lock, a
// stale mount left by a daemon that died (daemon/startup_checks.h).
#include "daemon/startup_checks.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "common/mountinfo.h"
#include "common/state_dir.h"
#include "daemon/daemon.h"

namespace scribefs {

// Canonical form of a path that may not exist yet: realpath of the longest
// existing ancestor plus the rest, lexically normalized.
std::string CanonicalMaybeMissing(const std::string& path) {
  std::string abs = path;
  if (abs.empty() || abs[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd)) abs = std::string(cwd) + "/" + abs;
  }
  std::vector<std::string> parts;
  std::stringstream ss(abs);
  std::string item;
  while (std::getline(ss, item, '/')) {
    if (item.empty() || item == ".") continue;
    if (item == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(item);
  }
  // Find the longest prefix that exists and resolve it.
  for (size_t n = parts.size();; --n) {
    std::string prefix = "/";
    for (size_t i = 0; i < n; ++i) prefix += (i ? "/" : "") + parts[i];
    auto c = CanonicalDir(prefix);
    if (c.ok() || n == 0) {
      std::string out = c.ok() ? c.value() : prefix;
      for (size_t i = n; i < parts.size(); ++i) out += (out == "/" ? "" : "/") + parts[i];
      return out;
    }
  }
}

// A scribefs mount at exactly `path`, per /proc/self/mountinfo.
bool IsScribefsMount(const std::string& path) {
  return ScribefsMountAt(ReadMountInfo(), path) != nullptr;
}

std::string FsName(const std::string& datadir) { return datadir; }

bool DatadirMounted(const std::string& datadir) {
  const std::string source = FsName(datadir);
  for (const MountEntry& m : ScribefsMounts(ReadMountInfo()))
    if (m.source == source) return true;
  return false;
}

// A daemon killed with SIGKILL leaves its mount behind ("Transport endpoint
// is not connected"). Detach it so that DATADIR is reachable again. Asked
// with statfs, which always goes to the daemon: a stat of the mount point may
// be answered from the kernel's attribute cache long after the daemon died.
void ClearStaleMount(const std::string& path) {
  if (!IsScribefsMount(path)) return;
  struct statfs sf;
  if (statfs(path.c_str(), &sf) == 0) return;  // alive: the lock check reports it
  if (errno != ENOTCONN) return;
  if (umount2(path.c_str(), MNT_DETACH) == 0)
    spdlog::warn("detached the stale scribefs mount on {} left by a daemon that died", path);
}

std::optional<StartError> PrepareStateDir(const std::string& dir) {
  // Parents as usual, the state dir itself owner-only.
  std::string partial;
  std::stringstream ss(dir);
  std::string item;
  while (std::getline(ss, item, '/')) {
    if (item.empty()) continue;
    partial += "/" + item;
    if (mkdir(partial.c_str(), partial == dir ? 0700 : 0755) != 0 && errno != EEXIST)
      return StartError{kExitUsage,
                        "cannot create state directory " + partial + ": " + strerror(errno)};
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return StartError{kExitUsage, "state directory " + dir + " is not a directory"};
  if (st.st_uid != geteuid())
    return StartError{kExitUsage, "state directory " + dir + " belongs to another user"};
  if ((st.st_mode & 07777) != 0700 && chmod(dir.c_str(), 0700) != 0)
    return StartError{kExitUsage,
                      "cannot make state directory " + dir + " owner-only: " + strerror(errno)};
  if (access(dir.c_str(), W_OK | X_OK) != 0)
    return StartError{kExitUsage,
                      "state directory " + dir + " is not writable: " + strerror(errno)};
  return std::nullopt;
}

namespace {

// A file:// target inside DATADIR would replicate into itself (each upload a
// new change to upload); inside MOUNTPOINT or the state directory likewise.
// `what` names the target in the message.
std::optional<StartError> CheckFileTargetPlacement(const Config& cfg, const std::string& url,
                                                   const std::string& what) {
  const std::string scheme = "file://";
  if (url.rfind(scheme, 0) != 0) return std::nullopt;
  std::string path = CanonicalMaybeMissing(url.substr(scheme.size()));
  for (const auto& [where, dir] : {std::pair<std::string, std::string>{"DATADIR", cfg.datadir},
                                   {"MOUNTPOINT", cfg.mountpoint},
                                   {"the state directory", cfg.state_dir}}) {
    if (dir.empty()) continue;
    if (PathIsWithin(path, dir))
      return StartError{kExitUsage, what + " must not be inside " + where + " " + dir +
                                        " (it would replicate into itself)"};
  }
  return std::nullopt;
}

}  // namespace

// --endpoint means nothing without a target: refused rather than ignored.
std::optional<StartError> CheckTargetPlacement(const Config& cfg) {
  if (cfg.target.empty() && cfg.targets.empty()) {
    if (!cfg.endpoint.empty())
      return StartError{kExitUsage, "--endpoint " + cfg.endpoint +
                                        " given without --target (e.g. --target s3://BUCKET)"};
    return std::nullopt;
  }
  // A Config filled by hand may have cfg.target only.
  if (cfg.targets.size() <= 1)
    return CheckFileTargetPlacement(cfg, cfg.target, "--target " + cfg.target);
  for (const TargetConfig& t : cfg.targets)
    if (auto e = CheckFileTargetPlacement(cfg, t.url, "target " + t.name + " (" + t.url + ")"))
      return e;
  return std::nullopt;
}

std::optional<StartError> CheckCommandLine(Config& cfg) {
  struct stat st;
  if (stat(cfg.datadir.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      // A stale mount of ours: cleared below once we know the path.
    } else {
      return StartError{kExitUsage, "DATADIR " + cfg.datadir + ": " + strerror(errno)};
    }
  } else if (!S_ISDIR(st.st_mode)) {
    return StartError{kExitUsage, "DATADIR " + cfg.datadir + " is not a directory"};
  }
  std::string datadir = CanonicalMaybeMissing(cfg.datadir);
  if (datadir == "/") return StartError{kExitUsage, "refusing to serve / itself"};
  cfg.datadir = datadir;
  if (!cfg.mountpoint.empty()) {
    cfg.mountpoint = CanonicalMaybeMissing(cfg.mountpoint);
    struct stat mst;
    if (stat(cfg.mountpoint.c_str(), &mst) != 0 && errno != ENOTCONN)
      return StartError{kExitUsage, "MOUNTPOINT " + cfg.mountpoint + ": " + strerror(errno)};
    if (cfg.mountpoint == cfg.datadir) cfg.mountpoint.clear();
  }
  if (cfg.state_dir.empty()) cfg.state_dir = DefaultStateDir(cfg.datadir);
  cfg.state_dir = CanonicalMaybeMissing(cfg.state_dir);
  if (PathIsWithin(cfg.state_dir, cfg.datadir))
    return StartError{kExitUsage, "state directory " + cfg.state_dir +
                                      " must not be inside DATADIR " + cfg.datadir +
                                      " (the journal would journal itself)"};
  if (PathIsWithin(cfg.datadir, cfg.state_dir))
    return StartError{kExitUsage, "DATADIR " + cfg.datadir +
                                      " must not be inside the state directory " + cfg.state_dir};
  if (!cfg.mountpoint.empty() && PathIsWithin(cfg.state_dir, cfg.mountpoint))
    return StartError{kExitUsage,
                      "state directory " + cfg.state_dir + " must not be inside MOUNTPOINT"};
  if (!cfg.mountpoint.empty() &&
      (PathIsWithin(cfg.mountpoint, cfg.datadir) || PathIsWithin(cfg.datadir, cfg.mountpoint)))
    return StartError{kExitUsage,
                      "MOUNTPOINT and DATADIR must not contain each other "
                      "(omit MOUNTPOINT to mount over DATADIR)"};
  if (auto e = CheckTargetPlacement(cfg)) return e;
  if (geteuid() != 0 && access("/dev/fuse", R_OK | W_OK) != 0)
    return StartError{kExitFailure, "/dev/fuse is not accessible: " + std::string(strerror(errno))};
  return std::nullopt;
}

namespace {

// The pid an earlier daemon wrote into the lock file, as text ("?" if none).
std::string LockHolder(int fd) {
  char buf[32] = {};
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  std::string pid = n > 0 ? std::string(buf, n) : "?";
  while (!pid.empty() && isspace(static_cast<unsigned char>(pid.back()))) pid.pop_back();
  return pid.empty() ? "?" : pid;
}

}  // namespace

std::optional<StartError> LockStateDir(const Config& cfg, const std::string& lock_path,
                                       UniqueFd& lock) {
  // One daemon per state dir: an flock held for the daemon's lifetime.
  lock = UniqueFd(open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock)
    return StartError{kExitUsage, "cannot open lock file " + lock_path + ": " + strerror(errno)};
  // A daemon whose mount is gone (fusermount3 -u, scribectl stop) still holds
  // the lock while it drains its uploads, up to its --stop-timeout: a new
  // start waits for it instead of failing. One that still serves is refused.
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>((cfg.stop_timeout + 10) * 1000));
  bool said = false;
  while (flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    std::string pid = LockHolder(lock.get());
    if (DatadirMounted(cfg.datadir) || std::chrono::steady_clock::now() > deadline)
      return StartError{kExitBusy, "another scribefs daemon (pid " + pid +
                                       ") already uses state directory " + cfg.state_dir + " for " +
                                       cfg.datadir};
    if (!said) {
      said = true;
      spdlog::info("waiting for the previous daemon (pid {}) to stop", pid);
      // In the background the log is a file: say it where the user looks too.
      if (!cfg.foreground)
        fprintf(stderr, "scribefs: waiting for the previous daemon (pid %s) to stop\n",
                pid.c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(lock.get(), 0) != 0 || pwrite(lock.get(), pid.data(), pid.size(), 0) < 0)
    return StartError{kExitFailure, "cannot write lock file " + lock_path};
  return std::nullopt;
}

bool IsCheckpointTempName(std::string_view name) {
  // mkostemp replaces the six X of ".XXXXXX" (daemon/manifest_temp_file.h).
  const std::string prefix = "." + std::string(kCheckpointTempStem);
  constexpr size_t kSuffix = 7;
  return name.size() > prefix.size() + kSuffix && name.substr(0, prefix.size()) == prefix &&
         name[name.size() - kSuffix] == '.';
}

int RemoveStaleCheckpointTemps(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(dir.c_str()), closedir);
  if (!d) {
    spdlog::warn("cannot list state directory {}: {}", dir, strerror(errno));
    return 0;
  }
  int removed = 0;
  while (struct dirent* e = readdir(d.get())) {
    if (!IsCheckpointTempName(e->d_name)) continue;
    struct stat st;
    if (fstatat(dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (unlinkat(dirfd(d.get()), e->d_name, 0) != 0) {
      spdlog::warn("cannot remove stale temporary manifest {}/{}: {}", dir, e->d_name,
                   strerror(errno));
      continue;
    }
    removed++;
    spdlog::info(
        "removed {}/{} ({} bytes): the temporary manifest of a checkpoint that a "
        "previous daemon did not finish",
        dir, e->d_name, st.st_size);
  }
  return removed;
}

const char* PreviousStopName(PreviousStop p) {
  switch (p) {
    case PreviousStop::kUnknown:
      return "unknown";
    case PreviousStop::kClean:
      return "clean";
    case PreviousStop::kCrashSameBoot:
      return "crash on this boot";
    case PreviousStop::kCrashOtherBoot:
      return "unclean stop on an earlier boot (power loss or kernel crash)";
  }
  return "?";
}

StartCheckPlan DecideStartCheck(const std::optional<RunMarker>& previous,
                                const std::string& boot_id_now) {
  StartCheckPlan plan;
  if (!previous) {
    plan.previous = PreviousStop::kUnknown;
    plan.content_since_ns = INT64_MIN;
  } else if (!previous->running) {
    plan.previous = PreviousStop::kClean;
  } else if (previous->boot_id == boot_id_now) {
    plan.previous = PreviousStop::kCrashSameBoot;
  } else {
    plan.previous = PreviousStop::kCrashOtherBoot;
    plan.content_since_ns = previous->started_ns > INT64_MIN + kContentCheckSlackNs
                                ? previous->started_ns - kContentCheckSlackNs
                                : INT64_MIN;
  }
  return plan;
}

Result<std::string> CurrentBootId() {
  const char* env = getenv("SCRIBEFS_BOOT_ID_FILE");
  std::string path = env && *env ? env : "/proc/sys/kernel/random/boot_id";
  std::ifstream in(path);
  std::string id;
  if (!in || !std::getline(in, id)) return PosixError("boot id " + path, errno ? errno : EIO);
  auto space = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!id.empty() && space(id.back())) id.pop_back();
  size_t b = 0;
  while (b < id.size() && space(id[b])) ++b;
  id.erase(0, b);
  if (id.empty() || id.find_first_of(" \t") != std::string::npos)
    return Status::Error(EINVAL, "boot id " + path + " is malformed");
  return id;
}

}  // namespace scribefs
