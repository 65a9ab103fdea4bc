#include "fs/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/state_dir.h"
#include "common/unique_fd.h"
#include "fs/bdi.h"
#include "fs/control_verbs.h"
#include "fs/filesystem.h"
#include "fs/fuse_adapter.h"
#include "journal/journal.h"
#include "journal/remote_index.h"
#include "uploader/orphan_sweep.h"
#include "uploader/reconciler.h"
#include "uploader/replicator.h"
#include "uploader/store_factory.h"

namespace scribefs {
namespace {

struct Config {
  std::string datadir;
  std::string mountpoint;  // empty: mount over DATADIR
  std::string state_dir;
  bool foreground = false;
  std::vector<std::string> fuse_opts;
  std::string xattr = "off";
  std::string writeback = "on";
  double cache_timeout = 60.0;
  unsigned threads = 16;
  int range_flush_ms = 5;
  std::string log_level = "info";
  int max_dirty_ratio = 40;
  int read_ahead_kb = 1024;
  // Replication (uploader/).
  std::string target;  // empty: journal only
  std::string endpoint, region, ca_file;
  std::string mode = "async";
  double sync_timeout = 30.0;
  int workers = 4;
  std::vector<std::string> excludes;
  bool no_default_excludes = false;
  std::string delete_mode = "propagate";
  double part_size_mib = 8;
  double stop_timeout = 10.0;
  double crash_check_delay = 30.0;
  double max_pause = 3600.0;  // pause points (control socket)
  double open_file_delay = 10.0;
};

// An error that ends start-up, with the exit code to report.
struct StartError {
  int exit_code;
  std::string message;
};

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
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent maj:min root mountpoint opts ... - fstype source superopts
    std::istringstream ls(line);
    std::string id, parent, majmin, root, mnt;
    ls >> id >> parent >> majmin >> root >> mnt;
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream rest(line.substr(dash + 3));
    std::string fstype;
    rest >> fstype;
    if (mnt == path && fstype == "fuse.scribefs") return true;
  }
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
      return StartError{kExitUsage, "cannot create state directory " + partial + ": " +
                                        strerror(errno)};
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return StartError{kExitUsage, "state directory " + dir + " is not a directory"};
  if (st.st_uid != geteuid())
    return StartError{kExitUsage, "state directory " + dir + " belongs to another user"};
  if ((st.st_mode & 07777) != 0700 && chmod(dir.c_str(), 0700) != 0)
    return StartError{kExitUsage, "cannot make state directory " + dir + " owner-only: " +
                                      strerror(errno)};
  if (access(dir.c_str(), W_OK | X_OK) != 0)
    return StartError{kExitUsage, "state directory " + dir + " is not writable: " +
                                      strerror(errno)};
  return std::nullopt;
}

void SetupLogging(const Config& cfg, bool to_file, const std::string& log_path) {
  std::shared_ptr<spdlog::logger> logger;
  if (to_file) {
    // Owner-only from the first byte (the daemon's umask is 0).
    UniqueFd fd(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    logger = spdlog::basic_logger_mt("scribefs", log_path);
  } else {
    logger = spdlog::stderr_color_mt("scribefs");
  }
  logger->set_level(spdlog::level::from_str(cfg.log_level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// Runs the daemon proper. `ready` is called once the mount serves (or with
// the error that stopped start-up).
int Serve(const Config& cfg, const std::function<void(const StartError*)>& ready) {
  auto fail = [&](int code, const std::string& msg) {
    StartError e{code, msg};
    ready(&e);
    return code;
  };
  std::string mountpoint = cfg.mountpoint.empty() ? cfg.datadir : cfg.mountpoint;

  if (auto e = PrepareStateDir(cfg.state_dir)) return fail(e->exit_code, e->message);
  StatePaths paths{cfg.state_dir};

  // One daemon per state dir: an flock held for the daemon's lifetime.
  UniqueFd lock(open(paths.lock().c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock) return fail(kExitUsage, "cannot open lock file " + paths.lock() + ": " + strerror(errno));
  if (flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    ssize_t n = pread(lock.get(), buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, n) : "?";
    while (!pid.empty() && isspace(static_cast<unsigned char>(pid.back()))) pid.pop_back();
    return fail(kExitBusy, "another scribefs daemon (pid " + pid + ") already uses state directory " +
                               cfg.state_dir + " for " + cfg.datadir);
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(lock.get(), 0) != 0 || pwrite(lock.get(), pid.data(), pid.size(), 0) < 0)
    return fail(kExitFailure, "cannot write lock file " + paths.lock());

  ClearStaleMount(mountpoint);
  if (IsScribefsMount(mountpoint))
    return fail(kExitBusy, mountpoint + " is already a scribefs mount (served by another daemon)");

  // Opened before mounting: with the mount over DATADIR this descriptor is the
  // daemon's only way to the real files.
  UniqueFd root(open(cfg.datadir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return fail(kExitUsage, "cannot open DATADIR " + cfg.datadir + ": " + strerror(errno));

  auto journal = Journal::Open(paths.journal());
  if (!journal.ok()) return fail(kExitFailure, "cannot open journal: " + journal.status().message());
  (void)journal.value()->SetMeta("datadir", cfg.datadir);

  std::unique_ptr<Replicator> replicator;
  std::unique_ptr<OrphanSweep> sweep;  // declared after replicator: destroyed first
  if (!cfg.target.empty()) {
    TargetOptions to;
    to.endpoint = cfg.endpoint;
    to.region = cfg.region;
    to.ca_file = cfg.ca_file;
    auto store = OpenStore(cfg.target, to);
    if (!store.ok()) return fail(kExitUsage, "--target: " + store.status().message());
    ReplicatorOptions ro;
    ro.workers = cfg.workers;
    ro.part_size = static_cast<uint64_t>(cfg.part_size_mib * 1024 * 1024);
    ro.delete_remote = cfg.delete_mode == "propagate";
    if (cfg.no_default_excludes) ro.excludes.clear();
    for (const auto& e : cfg.excludes) ro.excludes.push_back(e);
    ro.open_file_delay = std::chrono::milliseconds(static_cast<int64_t>(cfg.open_file_delay * 1000));
    ro.sync_mode = cfg.mode == "sync";
    auto r = Replicator::Create(journal.value().get(), root.get(), std::move(store.value()), ro);
    if (!r.ok()) return fail(kExitFailure, r.status().message());
    replicator = std::move(r.value());
    Replicator* rp = replicator.get();
    // What the objects table says was stored belongs to the target it was
    // stored in: a new target starts from nothing.
    std::string target = replicator->store().Describe();
    auto last = journal.value()->GetMeta("target");
    if (last.ok() && *last != target) {
      spdlog::warn("target changed from {} to {}: uploading everything again", *last, target);
      Status cleared = RemoteIndex::ForgetAll(*journal.value());
      if (!cleared.ok()) return fail(kExitFailure, cleared.message());
    }
    (void)journal.value()->SetMeta("target", target);
    // What scribectl verify/restore need to reach the same target without
    // being told again (never the credentials: those stay in the environment).
    (void)journal.value()->SetMeta("endpoint", cfg.endpoint);
    (void)journal.value()->SetMeta("region", cfg.region);
    (void)journal.value()->SetMeta("ca_file", cfg.ca_file);
    (void)journal.value()->SetMeta("excludes", nlohmann::json(ro.excludes).dump());
    (void)journal.value()->SetMeta("delete", cfg.delete_mode);
    // Changes made while nobody journaled them (unmounted, or bypassing the
    // mount) are found before the mount serves.
    ReconcileOptions rco;
    rco.excluded = [rp](const std::string& p) { return rp->IsExcluded(p); };
    rco.scan = "start";
    auto rec = ReconcileTree(journal.value().get(), root.get(), rco);
    if (!rec.ok()) return fail(kExitFailure, "start-up reconciliation: " + rec.status().message());
    spdlog::info(
        "start-up reconciliation: {} entries in {:.3f} s: {} new, {} changed, {} missing, "
        "{} left to pending records",
        rec->scanned, rec->seconds, rec->new_paths, rec->changed, rec->missing, rec->pending);
    journal.value()->SetCommitListener([rp] { rp->Notify(); });
    Status started = replicator->Start();
    if (!started.ok()) return fail(kExitFailure, "uploader: " + started.message());
    // An earlier daemon that did not stop cleanly may have left requests in
    // flight that the server completes after this start (uploader/orphan_sweep.h).
    sweep = std::make_unique<OrphanSweep>(journal.value().get(), &replicator->store(),
                                          [rp](const std::string& p) { return rp->IsExcluded(p); });
    if (!last.ok() || *last != target) {
      // A new target: nothing of an earlier daemon's can be in it.
    } else if (auto clean = journal.value()->GetMeta("clean_stop"); !clean.ok() || *clean != "1") {
      spdlog::warn("the previous scribefs did not stop cleanly: the target will be checked for "
                   "objects it left in flight in {:.0f} s (--crash-check-delay)",
                   cfg.crash_check_delay);
      sweep->Schedule(std::chrono::milliseconds(static_cast<int64_t>(cfg.crash_check_delay * 1000)));
    }
    (void)journal.value()->SetMeta("clean_stop", "0");
  }

  FsOptions fso;
  if (replicator && cfg.mode == "sync") {
    fso.waiter = replicator.get();
    fso.sync_timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.sync_timeout * 1000));
  }
  fso.xattr = cfg.xattr == "on";
  fso.writeback_cache = cfg.writeback == "on";
  fso.range_flush_ms = cfg.range_flush_ms;
  // Pause points and the control socket (fs/control_verbs.h): every mutation
  // passes the gate, declared before fs so that it outlives it.
  MutationGate gate;
  fso.gate = &gate;
  UniqueFd sync_fd(fcntl(root.get(), F_DUPFD_CLOEXEC, 3));  // syncfs for pause --sync
  Filesystem fs(std::move(root), journal.value().get(), fso);
  ControlPlane::Options cpo;
  cpo.info = {cfg.datadir, mountpoint, cfg.state_dir, replicator ? cfg.mode : "journal-only",
              SCRIBEFS_VERSION_STRING, NowNs(), 60.0};
  cpo.max_pause_s = cfg.max_pause;
  cpo.sweep = sweep.get();
  cpo.socket_path = paths.socket();
  cpo.datadir_fd = sync_fd.get();
  ControlPlane plane(&gate, &fs, journal.value().get(), replicator.get(), cpo);
  if (Status cs = plane.Start(); !cs.ok())
    return fail(cs.code() == EADDRINUSE ? kExitBusy : kExitUsage, cs.message());

  FuseOptions fo;
  fo.mountpoint = mountpoint;
  fo.fsname = cfg.datadir;
  for (char& c : fo.fsname)
    if (c == ',' || c == ' ' || c == '\\') c = '_';
  fo.fuse_opts = cfg.fuse_opts;
  fo.cache_timeout = cfg.cache_timeout;
  fo.max_threads = cfg.threads;
  auto server = FuseServer::Mount(fo, &fs);
  if (!server.ok()) return fail(kExitFailure, server.status().message());

  spdlog::info("scribefs serving {} on {} (state {}, target {}, mode {}, xattr {}, writeback {})",
               cfg.datadir, mountpoint, cfg.state_dir,
               replicator ? replicator->store().Describe() : "none (journal only)", cfg.mode,
               cfg.xattr, cfg.writeback);
  // Let the kernel cache like it does for a local disk (see fs/bdi.h).
  if (auto dev = MountDevice(mountpoint); dev.ok()) {
    Status tuned = TuneBdi(*dev, cfg.max_dirty_ratio, cfg.read_ahead_kb);
    if (!tuned.ok()) spdlog::warn("kernel cache tuning: {}", tuned.message());
  }
  plane.WatchSession(server.value().get());
  ready(nullptr);
  Status run = server.value()->Run();
  plane.Stop();  // no pause outlives the session; held operations have answered
  // Stop: no new requests; commit what is pending, then unmount.
  fs.Shutdown();
  Status flushed = fs.FlushAllRanges();
  server.value()->Unmount();
  server.value().reset();
  if (replicator) {
    // Let the uploads finish, up to --stop-timeout; the rest stays pending.
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(cfg.stop_timeout * 1000));
    Status idle = replicator->WaitIdle(deadline);
    if (!idle.ok()) spdlog::warn("stopping with uploads pending: {}", idle.message());
    bool sweep_pending = sweep->pending();
    sweep.reset();
    replicator->Stop(std::chrono::milliseconds(0));
    // Every request has ended (the workers are joined): the next daemon need
    // not look for objects this one left in flight, unless a check it
    // inherited has not run yet.
    if (!sweep_pending) (void)journal.value()->SetMeta("clean_stop", "1");
  }
  spdlog::info("scribefs stopped serving {}", cfg.datadir);
  if (!run.ok()) {
    spdlog::error("{}", run.message());
    return kExitFailure;
  }
  if (!flushed.ok()) {
    spdlog::error("final journal commit failed: {}", flushed.message());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

int DaemonMain(int argc, char** argv) {
  Config cfg;
  CLI::App app{
      "scribefs - a FUSE passthrough filesystem that journals every change to SQLite.\n\n"
      "Mounts over DATADIR (or on MOUNTPOINT) and records every write, close and\n"
      "namespace change in STATE_DIR/journal.db before it reaches DATADIR. Inspect\n"
      "the journal with `scribectl -m DATADIR journal`. Stop with SIGTERM or\n"
      "`fusermount3 -u MOUNTPOINT`.",
      "scribefs"};
  app.set_config("--config", "", "Read options from a TOML/INI file (keys = long option names)");
  app.add_option("DATADIR", cfg.datadir, "The directory to serve and journal")->required();
  app.add_option("MOUNTPOINT", cfg.mountpoint,
                 "Where to mount (default: over DATADIR itself, hiding the raw directory)");
  app.add_flag("-f,--foreground", cfg.foreground, "Stay in the foreground, log to stderr");
  app.add_option("--state-dir", cfg.state_dir,
                 "Journal, control socket and lock (default derived from DATADIR; "
                 "see README)");
  app.add_option("-o", cfg.fuse_opts,
                 "Mount option passed to FUSE, e.g. -o allow_other (repeatable, comma lists ok)")
      ->delimiter(',')
      ->allow_extra_args(false);
  app.add_option("--xattr", cfg.xattr,
                 "Extended attributes: on = supported (the kernel then asks for "
                 "security.capability before every write), off = ENOTSUP (faster small writes)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--writeback", cfg.writeback,
                 "Kernel writeback cache: on (fast buffered writes) or off (every write() "
                 "reaches the daemon at once)")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--cache-timeout", cfg.cache_timeout,
                 "Seconds the kernel may cache names and attributes")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--threads", cfg.threads, "Maximum FUSE worker threads")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  app.add_option("--range-flush-ms", cfg.range_flush_ms,
                 "Milliseconds dirty byte ranges may wait before their group commit")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--max-dirty-ratio", cfg.max_dirty_ratio,
                 "Percent of the kernel's dirty-page threshold this mount may use (the kernel "
                 "default for FUSE is 1; 0 leaves it)")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--read-ahead-kb", cfg.read_ahead_kb,
                 "Kernel read-ahead for the mount in KiB (FUSE default 128; 0 leaves it)")
      ->check(CLI::Range(0, 65536))
      ->capture_default_str();
  app.add_option("--log-level", cfg.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  auto* repl = "Replication";
  app.add_option("--target", cfg.target,
                 "Where to replicate: s3://BUCKET[/PREFIX] or file:///PATH (default: none, "
                 "journal only)")
      ->group(repl);
  app.add_option("--endpoint", cfg.endpoint,
                 "S3 endpoint URL for S3-compatible services (MinIO, Ceph RGW); path-style")
      ->group(repl);
  app.add_option("--region", cfg.region, "S3 region (default AWS_REGION or us-east-1)")->group(repl);
  app.add_option("--ca-file", cfg.ca_file, "CA bundle to verify the S3 endpoint's TLS certificate")
      ->group(repl);
  app.add_option("--mode", cfg.mode,
                 "async: writes return at local speed, uploads follow; sync: close, fsync and "
                 "namespace operations return once stored in the target")
      ->check(CLI::IsMember({"async", "sync"}))
      ->capture_default_str()
      ->group(repl);
  app.add_option("--sync-timeout", cfg.sync_timeout,
                 "Sync mode: seconds to wait for the target before answering EIO (the change "
                 "stays pending)")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str()
      ->group(repl);
  app.add_option("--workers", cfg.workers, "Parallel uploads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str()
      ->group(repl);
  app.add_option("--exclude", cfg.excludes,
                 "Glob of paths to journal but not upload (repeatable; matched against the "
                 "relative path and the file name). Always excluded unless "
                 "--no-default-excludes: *.swp *.swx *~ .#*")
      ->group(repl);
  app.add_flag("--no-default-excludes", cfg.no_default_excludes,
               "Upload editor temporary files too")
      ->group(repl);
  app.add_option("--delete", cfg.delete_mode,
                 "propagate: delete objects of deleted files; keep: never delete in the target")
      ->check(CLI::IsMember({"propagate", "keep"}))
      ->capture_default_str()
      ->group(repl);
  app.add_option("--part-size", cfg.part_size_mib,
                 "Multipart part size in MiB; larger files upload in parts and re-send only "
                 "changed parts")
      ->check(CLI::Range(5.0, 5120.0))
      ->capture_default_str()
      ->group(repl);
  app.add_option("--open-file-delay", cfg.open_file_delay,
                 "Seconds after which a file that stays open for writing is uploaded anyway")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str()
      ->group(repl);
  app.add_option("--stop-timeout", cfg.stop_timeout,
                 "On unmount/SIGTERM, seconds to let pending uploads finish before exiting")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str()
      ->group(repl);
  app.add_option("--crash-check-delay", cfg.crash_check_delay,
                 "After an unclean stop (crash, kill -9), list the target this many seconds "
                 "after start and delete objects that the earlier daemon's last requests "
                 "left behind for files deleted since")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str()
      ->group(repl);
  app.add_option("--max-pause", cfg.max_pause,
                 "Longest pause (seconds) that `scribectl pause --timeout` or a checkpoint "
                 "may ask for; every pause ends by itself after its timeout")
      ->check(CLI::Range(1.0, 7.0 * 86400))
      ->capture_default_str();
  app.footer(
      "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or unusable DATADIR/state dir,\n"
      "3 another daemon already serves this DATADIR or state dir.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  auto err = [](int code, const std::string& msg) {
    fprintf(stderr, "scribefs: %s\n", msg.c_str());
    return code;
  };
  // Validate before anything changes on disk.
  struct stat st;
  if (stat(cfg.datadir.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      // A stale mount of ours: cleared below once we know the path.
    } else {
      return err(kExitUsage, "DATADIR " + cfg.datadir + ": " + strerror(errno));
    }
  } else if (!S_ISDIR(st.st_mode)) {
    return err(kExitUsage, "DATADIR " + cfg.datadir + " is not a directory");
  }
  std::string datadir = CanonicalMaybeMissing(cfg.datadir);
  if (datadir == "/") return err(kExitUsage, "refusing to serve / itself");
  cfg.datadir = datadir;
  if (!cfg.mountpoint.empty()) {
    cfg.mountpoint = CanonicalMaybeMissing(cfg.mountpoint);
    struct stat mst;
    if (stat(cfg.mountpoint.c_str(), &mst) != 0 && errno != ENOTCONN)
      return err(kExitUsage, "MOUNTPOINT " + cfg.mountpoint + ": " + strerror(errno));
    if (cfg.mountpoint == cfg.datadir) cfg.mountpoint.clear();
  }
  if (cfg.state_dir.empty()) cfg.state_dir = DefaultStateDir(cfg.datadir);
  cfg.state_dir = CanonicalMaybeMissing(cfg.state_dir);
  if (PathIsWithin(cfg.state_dir, cfg.datadir))
    return err(kExitUsage, "state directory " + cfg.state_dir + " must not be inside DATADIR " +
                               cfg.datadir + " (the journal would journal itself)");
  if (PathIsWithin(cfg.datadir, cfg.state_dir))
    return err(kExitUsage, "DATADIR " + cfg.datadir + " must not be inside the state directory " +
                               cfg.state_dir);
  if (!cfg.mountpoint.empty() && PathIsWithin(cfg.state_dir, cfg.mountpoint))
    return err(kExitUsage, "state directory " + cfg.state_dir + " must not be inside MOUNTPOINT");
  if (!cfg.mountpoint.empty() && (PathIsWithin(cfg.mountpoint, cfg.datadir) ||
                                  PathIsWithin(cfg.datadir, cfg.mountpoint)))
    return err(kExitUsage, "MOUNTPOINT and DATADIR must not contain each other "
                           "(omit MOUNTPOINT to mount over DATADIR)");
  if (geteuid() != 0 && access("/dev/fuse", R_OK | W_OK) != 0)
    return err(kExitFailure, "/dev/fuse is not accessible: " + std::string(strerror(errno)));

  // Modes reach the backing files exactly as the kernel computed them.
  umask(0);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  if (cfg.foreground) {
    SetupLogging(cfg, false, "");
    return Serve(cfg, [&](const StartError* e) {
      if (e) spdlog::error("{}", e->message);
    });
  }

  // Background: the child does all the work and tells the parent, through a
  // pipe, whether the mount came up; the parent reports and exits with the
  // right code. Threads start only in the child.
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return err(kExitFailure, "pipe: " + std::string(strerror(errno)));
  pid_t pid = fork();
  if (pid < 0) return err(kExitFailure, "fork: " + std::string(strerror(errno)));
  if (pid > 0) {
    close(pfd[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = read(pfd[0], buf, sizeof buf)) > 0) msg.append(buf, n);
    close(pfd[0]);
    if (msg.empty()) return err(kExitFailure, "the daemon died during start-up (see the log in " +
                                                  cfg.state_dir + "/scribefs.log)");
    int code = msg[0] - '0';
    if (code == 0) return kExitOk;
    return err(code, msg.substr(2));
  }
  close(pfd[0]);
  setsid();
  if (chdir("/") != 0) _exit(kExitFailure);
  int report_fd = pfd[1];
  auto report = [&](const StartError* e) {
    std::string msg = e ? std::to_string(e->exit_code) + " " + e->message : "0";
    if (report_fd >= 0) {
      (void)!write(report_fd, msg.data(), msg.size());
      close(report_fd);
      report_fd = -1;
    }
    if (e) spdlog::error("{}", e->message);
    // Detach from the terminal once start-up is over.
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
      close(null);
    }
  };
  // The log goes to the state dir; create it first (PrepareStateDir repeats
  // this harmlessly) so the log has somewhere to be.
  if (auto e = PrepareStateDir(cfg.state_dir)) {
    report(&*e);
    _exit(e->exit_code);
  }
  SetupLogging(cfg, true, cfg.state_dir + "/scribefs.log");
  int rc = Serve(cfg, report);
  spdlog::shutdown();
  _exit(rc);
}

}  // namespace scribefs
