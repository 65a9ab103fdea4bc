#include "daemon/daemon.h"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "common/state_dir.h"
#include "common/unique_fd.h"
#include "daemon/bdi.h"
#include "daemon/config.h"
#include "daemon/control_plane.h"
#include "daemon/daemonize.h"
#include "daemon/failure_alert.h"
#include "daemon/journal_trim.h"
#include "daemon/lag_monitor.h"
#include "daemon/metrics_collect.h"
#include "daemon/metrics_server.h"
#include "daemon/options.h"
#include "daemon/prune_task.h"
#include "daemon/service_notify.h"
#include "daemon/spool_states.h"
#include "daemon/startup_checks.h"
#include "daemon/target_probe.h"
#include "fs/cow_spool.h"
#include "fs/filesystem.h"
#include "fs/fuse_adapter.h"
#include "journal/journal.h"
#include "journal/reader.h"
#include "journal/run_marker.h"
#include "journal/targets.h"
#include "uploader/bandwidth.h"
#include "uploader/orphan_sweep.h"
#include "uploader/reconciler.h"
#include "uploader/replicator.h"
#include "uploader/store_factory.h"
#include "uploader/target_set.h"

namespace scribefs {
namespace {

// The log file of a daemon in the background: rotated by size, so that a
// mount that runs for months keeps at most kLogFiles x kLogFileBytes
// (scribefs.log, then scribefs.1.log .. scribefs.3.log, oldest last).
constexpr size_t kLogFileBytes = 10 * 1024 * 1024;
constexpr size_t kLogFiles = 3;  // scribefs.log.1 .. .3 besides scribefs.log

// Test hook: $SCRIBEFS_TEST_LOG_FILE_BYTES (tests only) lowers the size at
// which the log file is rotated, so that a test sees a rotation after a few
// lines.
size_t LogFileBytes() {
  const char* v = getenv("SCRIBEFS_TEST_LOG_FILE_BYTES");
  long long n = v && *v ? atoll(v) : 0;
  return n > 0 ? static_cast<size_t>(n) : kLogFileBytes;
}

void SetupLogging(const Config& cfg, bool to_file, const std::string& log_path) {
  std::shared_ptr<spdlog::logger> logger;
  if (to_file) {
    // Owner-only from the first byte: spdlog creates each file it opens (the
    // first, and a new one after every rotation) with fopen, that is mode
    // 0666 less the daemon's umask, which is 0. So the file is created 0600
    // just before spdlog opens it; rotated files are renames and keep it.
    spdlog::file_event_handlers handlers;
    handlers.before_open = [](const spdlog::filename_t& name) {
      UniqueFd fd(open(name.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
    };
    logger = spdlog::rotating_logger_mt("scribefs", log_path, LogFileBytes(), kLogFiles,
                                        /*rotate_on_open=*/false, handlers);
  } else {
    logger = spdlog::stderr_color_mt("scribefs");
  }
  logger->set_level(spdlog::level::from_str(cfg.log_level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// waiter: the targets close/fsync wait for (the sync ones), or nullptr.
FsOptions MakeFsOptions(const Config& cfg, UploadWaiter* waiter) {
  FsOptions fso;
  if (waiter) {
    fso.waiter = waiter;
    fso.sync_timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.sync_timeout * 1000));
  }
  fso.xattr = cfg.xattr == "on";
  fso.writeback_cache = cfg.writeback == "on";
  fso.range_flush_ms = cfg.range_flush_ms;
  return fso;
}

FuseOptions MakeFuseOptions(const Config& cfg, const std::string& mountpoint) {
  FuseOptions fo;
  fo.mountpoint = mountpoint;
  fo.fsname = FsName(cfg.datadir);
  fo.fuse_opts = cfg.fuse_opts;
  fo.cache_timeout = cfg.cache_timeout;
  fo.max_threads = cfg.threads;
  return fo;
}

// The uploaders and what belongs to them. Members are destroyed in reverse
// order: the probes and the sweeps use the replicators' stores.
struct Replication {
  std::unique_ptr<TargetSet> set;
  std::vector<std::unique_ptr<OrphanSweep>> sweeps;
  std::vector<std::unique_ptr<TargetProbe>> probes;
  Replicator* first() const { return set ? &set->replicator(0) : nullptr; }
};

// Shutdown of the uploaders, after the unmount: lets the uploads finish, up
// to --stop-timeout (the rest stays pending), and records a clean stop.
void StopReplication(const Config& cfg, Journal* journal, Replication& rep) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(cfg.stop_timeout * 1000));
  Status idle = rep.set->WaitIdle(deadline);
  if (!idle.ok()) spdlog::warn("stopping with uploads pending: {}", idle.message());
  bool sweep_pending = false;
  for (const auto& sweep : rep.sweeps) sweep_pending = sweep_pending || sweep->pending();
  rep.sweeps.clear();
  rep.set->Stop(std::chrono::milliseconds(0));
  // Every request has ended (the workers are joined): the next daemon need
  // not look for objects this one left in flight, unless a check it
  // inherited has not run yet.
  if (!sweep_pending) (void)journal->SetMeta("clean_stop", "1");
}

// How the previous daemon stopped (the run marker it left) decides how
// closely start-up compares DATADIR with the target (daemon/startup_checks.h).
// *marker gets this run's boot id.
Result<StartCheckPlan> PreviousRun(Journal& journal, RunMarker* marker) {
  auto boot_id = CurrentBootId();
  if (!boot_id.ok())
    spdlog::warn("{}: every unclean stop counts as a power loss", boot_id.status().message());
  *marker = {boot_id.ok() ? *boot_id : "unreadable-" + std::to_string(NowNs()), 0, true};
  auto previous = ReadRunMarker(journal);
  if (!previous.ok()) return previous.status().WithContext("journal");
  StartCheckPlan plan = DecideStartCheck(*previous, marker->boot_id);
  if (plan.previous == PreviousStop::kCrashOtherBoot)
    spdlog::warn(
        "the previous scribefs did not stop cleanly, on an earlier boot (power loss or "
        "kernel crash?): files it may have changed are compared by content");
  return plan;
}

// Changes made while nobody journaled them (unmounted, or bypassing the
// mount) are found before the mount serves. held_by: see ReconcileOptions.
Status ReconcileAtStart(Journal* journal, int root_fd, Replicator* rp, const StartCheckPlan& plan,
                        std::vector<int64_t> held_by = {}) {
  ReconcileOptions rco;
  rco.held_by = std::move(held_by);
  rco.excluded = [rp](const std::string& p) { return rp->IsExcluded(p); };
  rco.scan = "start";
  rco.target = rp->target();
  rco.content_since_ns = plan.content_since_ns;
  auto rec = ReconcileTree(journal, root_fd, rco);
  if (!rec.ok()) return rec.status().WithContext("start-up reconciliation");
  spdlog::info(
      "start-up reconciliation (previous stop: {}): {} entries in {:.3f} s: {} new, {} changed "
      "({} of {} compared by content), {} missing, {} left to pending records",
      PreviousStopName(plan.previous), rec->scanned, rec->seconds, rec->new_paths, rec->changed,
      rec->content, rec->hashed, rec->missing, rec->pending);
  return Status::Ok();
}

ReplicatorOptions MakeReplicatorOptions(const Config& cfg) {
  ReplicatorOptions ro;
  ro.workers = cfg.workers;
  ro.part_size = static_cast<uint64_t>(cfg.part_size_mib * 1024 * 1024);
  ro.delete_remote = cfg.delete_mode == "propagate";
  if (cfg.no_default_excludes) ro.excludes.clear();
  for (const auto& e : cfg.excludes) ro.excludes.push_back(e);
  ro.open_file_delay = std::chrono::milliseconds(static_cast<int64_t>(cfg.open_file_delay * 1000));
  ro.sync_mode = cfg.mode == "sync";
  ro.history = cfg.history_on;
  ro.history_interval =
      std::chrono::milliseconds(static_cast<int64_t>(cfg.history_interval_s * 1000));
  ro.history_prune_grace_ns = cfg.prune_grace_ns;
  // --upload-nice (async mode): the upload threads below the FUSE requests,
  // so that a burst of writes goes first on a busy machine. Not the default:
  // it trades replication lag for it, and with a server on the same cores
  // (RGW) the lag grew more than the burst gained (bench/README.md). Sync
  // mode: the writer waits for the uploads, so they run as it does.
  ro.nice = ro.sync_mode ? 0 : cfg.upload_nice;
  return ro;
}

// The upload limit of --bwlimit (checked by the parser; off when empty).
// There is always one, so that `scribectl set bwlimit` can start limiting.
std::shared_ptr<BandwidthLimiter> MakeBandwidthLimiter(const Config& cfg) {
  BandwidthLimiter::Options bo;
  if (!cfg.bwlimit.empty()) {
    if (auto spec = ParseBandwidth(cfg.bwlimit); spec.ok()) bo.spec = *spec;
  }
  bo.on_change = [](const std::string& message) { spdlog::info("{}", message); };
  auto limiter = std::make_shared<BandwidthLimiter>(std::move(bo));
  auto st = limiter->state();
  if (st.limit != 0 || !st.schedule.empty())
    spdlog::info("upload limit {}{}", FormatRate(st.limit),
                 st.schedule.empty() ? "" : " (timetable " + st.schedule + ")");
  return limiter;
}

// The start-up probe of an S3 target (daemon/target_probe.h). Sync mode
// cannot serve without the target: an error. Async mode serves and uploads
// once it answers: a warning, on stderr too when the log is a file.
std::optional<StartError> ProbeAtStart(const Config& cfg, TargetProbe& probe,
                                       const std::string& target) {
  // A file:// target is a local directory, created on the first upload.
  if (cfg.target.rfind("s3://", 0) != 0) return std::nullopt;
  StoreStatus s = probe.ProbeNow();
  if (s.ok()) return std::nullopt;
  std::string msg = "target " + target + " does not answer: " + s.message();
  if (cfg.mode == "sync")
    return StartError{kExitFailure, msg + " (--mode sync cannot serve without it)"};
  spdlog::warn("{}; serving anyway, uploads wait for it (--mode async)", msg);
  if (!cfg.foreground)
    fprintf(stderr, "scribefs: warning: %s; serving anyway, uploads wait for it\n", msg.c_str());
  probe.StartRechecks();
  return std::nullopt;
}

// The targets as the start-up line names them.
std::string TargetsLine(const Config& cfg, TargetSet* targets) {
  if (!targets) return "target none (journal only), mode " + cfg.mode;
  if (targets->size() == 1)
    return "target " + targets->replicator(0).store().Describe() + ", mode " + cfg.mode;
  std::string line = "targets";
  for (size_t i = 0; i < targets->size(); ++i)
    line +=
        fmt::format("{} {} {} ({})", i ? "," : "", targets->name(i),
                    targets->replicator(i).store().Describe(), targets->sync(i) ? "sync" : "async");
  return line;
}

// The mode status shows: the targets', "mixed" when they differ.
std::string ModeName(const Config& cfg) {
  std::string mode = cfg.targets.empty() ? cfg.mode : cfg.targets.front().mode;
  for (const TargetConfig& t : cfg.targets)
    if (t.mode != mode) return "mixed";
  return mode;
}

// The control plane's settings, but for the pointers Serve fills in.
ControlPlane::Options MakeControlOptions(const Config& cfg, const std::string& mountpoint,
                                         const Replication& rep, const std::atomic<bool>* serving) {
  const bool has_target = rep.set != nullptr;
  ControlPlane::Options cpo;
  for (const auto& sweep : rep.sweeps) cpo.sweeps.push_back(sweep.get());
  cpo.probe = rep.probes.empty() ? nullptr : rep.probes.front().get();
  cpo.targets = rep.set.get();
  cpo.info = {cfg.datadir,
              mountpoint,
              cfg.state_dir,
              has_target ? ModeName(cfg) : "journal-only",
              SCRIBEFS_VERSION_STRING,
              NowNs(),
              60.0};
  cpo.max_pause_s = cfg.max_pause;
  cpo.socket_path = StatePaths{cfg.state_dir}.socket();
  // SIGTERM aimed at the thread that runs the FUSE loop (this one, Serve's):
  // a signal sent to the process may land on a control thread, and then the
  // loop waits on. Not before the mount: only then does SIGTERM end a session
  // (fs/fuse_adapter.h installs its handler) instead of the process.
  cpo.stop = [serve_thread = pthread_self(), serving] {
    if (!serving->load()) return false;
    pthread_kill(serve_thread, SIGTERM);
    return true;
  };
  return cpo;
}

// The STATUS= line systemd shows for the unit: pending work and lag.
std::string ServiceStatus(const std::string& journal_path, bool has_target) {
  auto reader = JournalReader::Open(journal_path);
  if (!reader.ok()) return "";
  auto st = reader.value()->Stats();
  if (!st.ok()) return "";
  if (!has_target) return fmt::format("journal only: {} records", st->records);
  double lag = 0;
  if (st->oldest_pending_ns)
    lag = std::max(0.0, static_cast<double>(NowNs() - *st->oldest_pending_ns) / 1e9);
  return fmt::format("{} pending records ({} bytes in {} files), lag {:.0f} s", st->pending_records,
                     st->pending_bytes, st->pending_files, lag);
}

// The targets to store to: cfg.targets, or the single-target fields of a
// Config filled without them.
std::vector<Config> TargetViews(const Config& cfg) {
  std::vector<Config> views;
  for (const TargetConfig& t : cfg.targets) views.push_back(ForTarget(cfg, t));
  if (views.empty() && !cfg.target.empty()) views.push_back(cfg);
  return views;
}

// What the journal keeps of a target for scribectl verify/restore to reach
// it without being told again (never the credentials: those stay in the
// environment).
std::string TargetSettings(const Config& view, const ReplicatorOptions& ro) {
  nlohmann::json settings = {{"endpoint", view.endpoint},
                             {"region", view.region},
                             {"ca_file", view.ca_file},
                             {"excludes", ro.excludes},
                             {"delete", view.delete_mode}};
  return settings.dump();
}

// One target's store, opened and probed, and its uploader's options.
struct OpenedTarget {
  std::string name;
  bool sync = false;
  std::unique_ptr<ObjectStore> store;
  ReplicatorOptions options;
};

std::optional<StartError> OpenTarget(const Config& view, const std::string& name,
                                     const std::shared_ptr<BandwidthLimiter>& bandwidth,
                                     OpenedTarget* out, Replication& rep) {
  TargetOptions to;
  to.endpoint = view.endpoint;
  to.region = view.region;
  to.ca_file = view.ca_file;
  to.bandwidth = bandwidth;  // one --bwlimit for all the uploads
  auto store = OpenStore(view.target, to);
  if (!store.ok())
    return StartError{kExitUsage, "--target " + name + ": " + store.status().message()};
  rep.probes.push_back(std::make_unique<TargetProbe>(store.value().get()));
  if (auto e = ProbeAtStart(view, *rep.probes.back(), store.value()->Describe())) return e;
  out->name = name;
  out->sync = view.mode == "sync";
  out->store = std::move(store.value());
  out->options = MakeReplicatorOptions(view);
  out->options.bandwidth = bandwidth;
  return std::nullopt;
}

// Each target compared with the tree. The targets the journal knew come
// first: what changed while unmounted is for every target. Then each new
// one, whose records are for it alone: the others hold the tree already.
std::optional<StartError> ReconcileTargets(Journal* journal, int root_fd,
                                           const StartCheckPlan& plan, TargetSet& set,
                                           const std::set<int64_t>& added) {
  std::vector<int64_t> known;
  for (size_t i = 0; i < set.size(); ++i)
    if (!added.count(set.replicator(i).target())) known.push_back(set.replicator(i).target());
  for (bool new_ones : {false, true}) {
    for (size_t i = 0; i < set.size(); ++i) {
      Replicator* rp = &set.replicator(i);
      if (added.count(rp->target()) != new_ones) continue;
      Status rs =
          ReconcileAtStart(journal, root_fd, rp, plan, new_ones ? known : std::vector<int64_t>{});
      if (!rs.ok())
        return StartError{kExitFailure,
                          (set.size() > 1 ? "target " + set.name(i) + ": " : "") + rs.message()};
    }
  }
  return std::nullopt;
}

// An earlier daemon that did not stop cleanly may have left requests in
// flight that the server completes after this start (uploader/orphan_sweep.h).
// A new target: nothing of an earlier daemon's can be in it.
void ScheduleOrphanSweeps(const Config& cfg, Journal* journal, Replication& rep,
                          const std::set<int64_t>& added) {
  auto clean = journal->GetMeta("clean_stop");
  const bool unclean = !clean.ok() || *clean != "1";
  bool warned = false;
  for (size_t i = 0; i < rep.set->size(); ++i) {
    Replicator* rp = &rep.set->replicator(i);
    rep.sweeps.push_back(
        std::make_unique<OrphanSweep>(journal, &rp->store(), rp->target(),
                                      [rp](const std::string& p) { return rp->IsExcluded(p); }));
    if (!unclean || added.count(rp->target())) continue;
    if (!warned)
      spdlog::warn(
          "the previous scribefs did not stop cleanly: the target{} will be checked for "
          "objects it left in flight in {:.0f} s (--crash-check-delay)",
          rep.set->size() > 1 ? "s" : "", cfg.crash_check_delay);
    warned = true;
    rep.sweeps.back()->Schedule(
        std::chrono::milliseconds(static_cast<int64_t>(cfg.crash_check_delay * 1000)));
  }
}

// Starts uploading to every target: the stores, the start-up probes, the
// journal's targets, the start-up reconciliations, the workers and the
// checks after an unclean stop. One Replicator per target (uploader/
// target_set.h): a slow or dead target never holds back another.
std::optional<StartError> StartReplication(const Config& cfg, Journal* journal, int root_fd,
                                           const StartCheckPlan& plan, Replication& rep) {
  std::vector<Config> views = TargetViews(cfg);
  auto bandwidth = MakeBandwidthLimiter(cfg);
  std::vector<OpenedTarget> opened(views.size());
  std::vector<TargetSpec> specs;
  for (size_t i = 0; i < views.size(); ++i) {
    // A Config filled without targets names its one target by its URL.
    std::string name = cfg.targets.empty() ? views[i].target : cfg.targets[i].name;
    if (auto e = OpenTarget(views[i], name, bandwidth, &opened[i], rep)) return e;
    specs.push_back(
        {name, opened[i].store->Describe(), TargetSettings(views[i], opened[i].options)});
  }
  // The journal's targets are the ones configured (journal/targets.h): what
  // each holds and what is pending for it stay with it across restarts; a
  // new target starts from nothing, a removed one is forgotten.
  auto targets = Targets::Sync(*journal, specs);
  if (!targets.ok()) return StartError{kExitFailure, targets.status().message()};
  for (const TargetEntry& gone : targets->removed)
    spdlog::warn("target {} ({}) is no longer configured: its state is forgotten", gone.name,
                 gone.url);
  std::set<int64_t> added;
  for (const TargetEntry& t : targets->added) {
    added.insert(t.id);
    spdlog::info("target {} ({}) is new: it is filled from the tree", t.name, t.url);
  }
  std::vector<TargetSet::Member> members;
  for (size_t i = 0; i < opened.size(); ++i) {
    opened[i].options.target = targets->targets[i].id;
    auto r = Replicator::Create(journal, root_fd, std::move(opened[i].store), opened[i].options);
    if (!r.ok())
      return StartError{kExitFailure, "target " + opened[i].name + ": " + r.status().message()};
    members.push_back({opened[i].name, opened[i].sync, std::move(r.value())});
  }
  rep.set = std::make_unique<TargetSet>(std::move(members));
  // The first target in meta too, where scribectl read it before targets.
  Replicator* first = rep.first();
  (void)journal->SetMeta("target", first->store().Describe());
  (void)journal->SetMeta("endpoint", views[0].endpoint);
  (void)journal->SetMeta("region", views[0].region);
  (void)journal->SetMeta("ca_file", views[0].ca_file);
  (void)journal->SetMeta("excludes", nlohmann::json(opened[0].options.excludes).dump());
  (void)journal->SetMeta("delete", views[0].delete_mode);
  if (auto e = ReconcileTargets(journal, root_fd, plan, *rep.set, added)) return e;
  journal->SetCommitListener([set = rep.set.get()] { set->Notify(); });
  Status started = rep.set->Start();
  if (!started.ok()) return StartError{kExitFailure, "uploader: " + started.message()};
  ScheduleOrphanSweeps(cfg, journal, rep, added);
  (void)journal->SetMeta("clean_stop", "0");
  return std::nullopt;
}

// Lets the kernel cache the mount like it does a local disk (see daemon/bdi.h).
void TuneKernelCache(const Config& cfg, const std::string& mountpoint) {
  auto dev = MountDevice(mountpoint);
  if (!dev.ok()) return;
  Status tuned = TuneBdi(*dev, cfg.max_dirty_ratio, cfg.read_ahead_kb);
  if (!tuned.ok()) spdlog::warn("kernel cache tuning: {}", tuned.message());
  // --max-pending counts what reaches the daemon: cap what the kernel may
  // hold before that (README, "Bounded lag").
  // With several targets, the least of their bounds.
  std::optional<uint64_t> max_pending;
  for (const Config& v : TargetViews(cfg))
    if (v.max_pending_bytes && v.mode != "sync")
      max_pending = std::min(max_pending.value_or(UINT64_MAX), *v.max_pending_bytes);
  if (max_pending && cfg.writeback == "on") {
    auto limit = LimitBdiDirtyBytes(*dev, KernelDirtyShare(*max_pending));
    if (limit.ok())
      spdlog::info("bounded lag: the mount's dirty page cache is capped ({})", *limit);
    else
      spdlog::warn("bounded lag: capping the mount's dirty page cache: {}",
                   limit.status().message());
  }
}

// Automatic prune, compaction and periodic bases of each target's history
// (daemon/prune_task.h): one task per target, each on its own thread, never
// holding writers; stopped before the replicators' stores go. Empty when
// there is nothing to do.
Result<std::vector<std::unique_ptr<PruneTask>>> StartPruneTasks(const Config& cfg,
                                                                TargetSet* targets) {
  std::vector<std::unique_ptr<PruneTask>> tasks;
  if (!targets || !(cfg.prune_interval_s > 0 || (cfg.history_on && cfg.compact_interval_s > 0)))
    return tasks;
  for (size_t i = 0; i < targets->size(); ++i) {
    Replicator* replicator = &targets->replicator(i);
    PruneTask::Options po = PruneTask::FromConfig(cfg);
    po.chunks_deleted = [replicator] { replicator->ForgetKnownChunks(); };
    if (targets->size() > 1) po.label = "target " + targets->name(i) + ": ";
    auto prune = std::make_unique<PruneTask>(&replicator->store(), std::move(po));
    if (Status ps = prune->Start(); !ps.ok()) return ps;
    tasks.push_back(std::move(prune));
  }
  return tasks;
}

// Bounded lag (daemon/lag_monitor.h): with a target, also without bounds
// (status and /metrics show the backlog). Null without a target.
Result<std::unique_ptr<LagMonitor>> StartLagMonitor(const Config& cfg, MutationGate* gate,
                                                    TargetSet* targets,
                                                    const std::string& journal_path,
                                                    int datadir_fd) {
  if (!targets) return std::unique_ptr<LagMonitor>();
  // One lane per async target with bounds (its section's, or the global ones).
  std::vector<Config> views = TargetViews(cfg);
  std::vector<LagMonitor::Lane> lanes;
  for (size_t i = 0; i < targets->size() && i < views.size(); ++i) {
    LagBounds b{views[i].max_lag_s, views[i].max_pending_bytes};
    if (views[i].mode == "sync" || !b.any()) continue;
    Replicator* rp = &targets->replicator(i);
    lanes.push_back({targets->name(i), rp->target(), rp, b});
  }
  auto lag = std::make_unique<LagMonitor>(gate, std::move(lanes),
                                          LagMonitor::Options{journal_path, datadir_fd});
  if (Status ls = lag->Start(); !ls.ok()) return ls;
  return lag;
}

// --on-failure (daemon/failure_alert.h): a watch per target that has a
// command. Null when none has.
std::unique_ptr<FailureAlerts> StartFailureAlerts(const Config& cfg, TargetSet* targets) {
  if (!targets) return nullptr;
  std::vector<Config> views = TargetViews(cfg);
  std::vector<FailureAlerts::Watch> watches;
  for (size_t i = 0; i < targets->size() && i < views.size(); ++i) {
    Replicator* rp = &targets->replicator(i);
    watches.push_back({targets->name(i), rp->store().Describe(), views[i].on_failure,
                       static_cast<int64_t>(views[i].alert_after_s * 1e9),
                       [rp] { return rp->stats(); }});
  }
  auto alerts = std::make_unique<FailureAlerts>(std::move(watches), cfg.datadir);
  if (alerts->empty()) return nullptr;
  alerts->Start();
  return alerts;
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

  UniqueFd lock;
  if (auto e = LockStateDir(cfg, paths.lock(), lock)) return fail(e->exit_code, e->message);
  // Ours now: no other daemon writes a manifest here.
  RemoveStaleCheckpointTemps(cfg.state_dir);

  ClearStaleMount(mountpoint);
  if (IsScribefsMount(mountpoint))
    return fail(kExitBusy, mountpoint + " is already a scribefs mount (served by another daemon)");

  // Opened before mounting: with the mount over DATADIR this descriptor is the
  // daemon's only way to the real files.
  UniqueFd root(open(cfg.datadir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return fail(kExitUsage, "cannot open DATADIR " + cfg.datadir + ": " + strerror(errno));

  auto journal = Journal::Open(paths.journal());
  if (!journal.ok())
    return fail(kExitFailure, "cannot open journal: " + journal.status().message());
  (void)journal.value()->SetMeta("datadir", cfg.datadir);
  RunMarker marker;
  auto start_check = PreviousRun(*journal.value(), &marker);
  if (!start_check.ok()) return fail(kExitFailure, start_check.status().message());

  Replication rep;
  if (!cfg.target.empty() || !cfg.targets.empty()) {
    if (auto e = StartReplication(cfg, journal.value().get(), root.get(), *start_check, rep))
      return fail(e->exit_code, e->message);
  }
  // The first target's uploader: what checkpoints, the lag monitor,
  // metrics and prune use (README, "Several targets").
  Replicator* replicator = rep.first();
  TargetSet* targets = rep.set.get();

  // Running, durably, before the mount changes anything. Its fsync also makes
  // durable the records of an earlier daemon of this boot (kill -9) and the
  // reconcile records above: a later content check need only go back to now.
  marker.started_ns = NowNs();
  if (Status m = WriteRunMarker(*journal.value(), marker); !m.ok())
    return fail(kExitFailure, m.message());

  FsOptions fso = MakeFsOptions(cfg, targets && targets->any_sync() ? targets : nullptr);
  // Pause points and the control socket (daemon/control_plane.h): every mutation
  // passes the gate, declared before fs so that it outlives it.
  MutationGate gate(8, static_cast<size_t>(cfg.max_held_mib * (1 << 20)));
  fso.gate = &gate;
  UniqueFd sync_fd(fcntl(root.get(), F_DUPFD_CLOEXEC, 3));  // syncfs for pause --sync
  auto spool = CowSpool::Open(cfg.state_dir + "/spool", sync_fd.get(), cfg.max_spool_bytes);
  if (!spool.ok()) return fail(kExitFailure, "spool: " + spool.status().message());
  fso.cow = spool.value().get();  // fs/cow_spool.h: checkpoints capture (issue 12)
  if (targets) targets->SetMarkedStates(std::make_shared<SpoolStates>(spool.value().get()));
  // The uploader reads frozen paths through the spool: on every way out of
  // here (an early failure too) it stops before the spool goes. (Stop is
  // idempotent: the normal path has stopped it already.)
  struct StopUploaderFirst {
    TargetSet* targets;
    ~StopUploaderFirst() {
      if (targets) targets->Stop(std::chrono::milliseconds(0));
    }
  } stop_uploader_first{targets};
  Filesystem fs(std::move(root), journal.value().get(), fso);
  // Bounded journal (daemon/journal_trim.h): deletes nothing until the
  // target's history holds the records.
  JournalTrimTask trim(journal.value().get(), {cfg.journal_retention_ns});
  trim.Start();
  // Bounded lag (daemon/lag_monitor.h).
  auto lag = StartLagMonitor(cfg, &gate, targets, paths.journal(), sync_fd.get());
  if (!lag.ok()) return fail(kExitFailure, lag.status().message());
  std::unique_ptr<FailureAlerts> alerts = StartFailureAlerts(cfg, targets);
  auto prune = StartPruneTasks(cfg, targets);
  if (!prune.ok()) return fail(kExitFailure, prune.status().message());
  std::atomic<bool> serving{false};  // the FUSE session is up (the `stop` verb)
  ControlPlane::Options cpo = MakeControlOptions(cfg, mountpoint, rep, &serving);
  cpo.datadir_fd = sync_fd.get();
  cpo.lag = lag->get();
  cpo.spool = spool.value().get();  // captured checkpoints (daemon/checkpoint_storer.h)
  ControlPlane plane(&gate, &fs, journal.value().get(), replicator, cpo);
  if (Status cs = plane.Start(); !cs.ok())
    return fail(cs.code() == EADDRINUSE ? kExitBusy : kExitUsage, cs.message());

  // Prometheus metrics (README, "Monitoring (Prometheus)"): started before
  // the mount so that a port in use fails the start; stopped before the plane.
  MetricsCollector::Sources sources{
      journal.value().get(),   replicator,          &plane.pauser(), &plane.checkpoint_hold(),
      SCRIBEFS_VERSION_STRING, cpo.info.started_ns, lag->get(),      &fs.inodes(),
      plane.storer()};
  sources.targets = targets;
  MetricsCollector metrics(std::move(sources));
  auto exporter = MetricsExport::Start(
      {cfg.metrics_listen, cfg.metrics_file,
       std::chrono::milliseconds(static_cast<int64_t>(cfg.metrics_interval * 1000))},
      [&metrics] { return metrics.Render(); });
  if (!exporter.ok()) return fail(kExitFailure, exporter.status().message());

  auto server = FuseServer::Mount(MakeFuseOptions(cfg, mountpoint), &fs);
  if (!server.ok()) return fail(kExitFailure, server.status().message());
  serving = true;

  spdlog::info("scribefs serving {} on {} (state {}, {}, xattr {}, writeback {})", cfg.datadir,
               mountpoint, cfg.state_dir, TargetsLine(cfg, targets), cfg.xattr, cfg.writeback);
  TuneKernelCache(cfg, mountpoint);
  plane.WatchSession(server.value().get());
  ready(nullptr);
  ServiceNotifier notifier;
  notifier.Ready(
      "serving " + cfg.datadir + " on " + mountpoint,
      [path = paths.journal(), has_target = replicator != nullptr] {
        return ServiceStatus(path, has_target);
      },
      std::chrono::seconds(5));
  Status run = server.value()->Run();
  notifier.Stopping("stopping: unmounted, draining uploads (--stop-timeout)");
  exporter.value()->server.reset();
  if (alerts) alerts->Stop();
  if (*lag) (*lag)->Stop();      // lifts the throttle: held writes answer before the unmount
  for (auto& p : *prune) p->Stop();  // cancels a run at its next step (as safe as a crash)
  plane.Stop();  // no pause outlives the session; held operations have answered
  // Stop: no new requests; commit what is pending, then unmount.
  fs.Shutdown();
  Status flushed = fs.FlushAllRanges();
  server.value()->Unmount();
  server.value().reset();
  if (targets) StopReplication(cfg, journal.value().get(), rep);
  exporter.value().reset();  // the metrics file's last write: the final counters
  spdlog::info("scribefs stopped serving {}", cfg.datadir);
  if (!run.ok()) {
    spdlog::error("{}", run.message());
    return kExitFailure;
  }
  if (!flushed.ok()) {
    spdlog::error("final journal commit failed: {}", flushed.message());
    return kExitFailure;
  }
  // Every record is committed; the marker's fsync makes them durable.
  marker.running = false;
  if (Status m = WriteRunMarker(*journal.value(), marker); !m.ok()) {
    spdlog::error("recording the clean stop: {}", m.message());
    return kExitFailure;
  }
  return kExitOk;
}

// The one line a successful start prints.
std::string MountedLine(const Config& cfg, const std::string& log) {
  return "scribefs: mounted " + cfg.datadir + " on " +
         (cfg.mountpoint.empty() ? cfg.datadir : cfg.mountpoint) + " (state dir " + cfg.state_dir +
         ", log " + log + ")";
}

// glibc keeps freed memory at the top of each thread's arena up to its
// dynamic trim threshold, twice the largest block freed so far (tens of MB
// once history has decoded a timeline segment), and malloc_trim does not
// reach a thread arena's top. A fixed threshold gives it back as it is
// freed: 62 -> 32 MB after history's load of 200,000 paths, with no change
// in create or upload rates measured (bench/README.md, "A million files").
// A threshold the user set (GLIBC_TUNABLES, MALLOC_TRIM_THRESHOLD_) stays.
void GiveFreedMemoryBack() {
  const char* tunables = getenv("GLIBC_TUNABLES");
  if (getenv("MALLOC_TRIM_THRESHOLD_") != nullptr ||
      (tunables != nullptr && strstr(tunables, "trim_threshold") != nullptr))
    return;
  mallopt(M_TRIM_THRESHOLD, 1 << 20);
}

}  // namespace

int DaemonMain(int argc, char** argv) {
  GiveFreedMemoryBack();
  Config cfg;
  if (auto exit_code = ParseCommandLine(argc, argv, cfg)) return *exit_code;
  // Validate before anything changes on disk.
  if (auto e = CheckCommandLine(cfg)) {
    fprintf(stderr, "scribefs: %s\n", e->message.c_str());
    return e->exit_code;
  }

  // Modes reach the backing files exactly as the kernel computed them.
  umask(0);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  const std::string log_path = cfg.state_dir + "/scribefs.log";
  if (cfg.foreground) {
    SetupLogging(cfg, false, "");
    return Serve(cfg, [&](const StartError* e) {
      if (e) {
        spdlog::error("{}", e->message);
      } else {
        printf("%s\n", MountedLine(cfg, "stderr").c_str());
        fflush(stdout);
      }
    });
  }
  const std::string shown_log = StderrIsJournal() ? "stderr (the journal)" : log_path;
  return RunInBackground(cfg, MountedLine(cfg, shown_log),
                         [&cfg, &log_path](const ReadyFn& report) {
                           // The log goes to the state dir; create it first (PrepareStateDir
                           // repeats this harmlessly) so the log has somewhere to be.
                           if (auto e = PrepareStateDir(cfg.state_dir)) {
                             report(&*e);
                             return e->exit_code;
                           }
                           // Under systemd the journal takes the log, as in the foreground.
                           SetupLogging(cfg, !StderrIsJournal(), log_path);
                           int rc = Serve(cfg, report);
                           spdlog::shutdown();
                           return rc;
                         });
}

}  // namespace scribefs
