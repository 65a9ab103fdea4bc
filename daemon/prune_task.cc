#include "daemon/prune_task.h"

#include <spdlog/spdlog.h>
#include <time.h>

#include <cmath>

#include "history/retention.h"

namespace scribefs {
namespace {

int64_t NowNs() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string Bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

// N >= 0, with no validator name in --help.
const CLI::Validator kCount(
    [](std::string& v) {
      return !v.empty() && v.size() < 8 && v.find_first_not_of("0123456789") == std::string::npos
                 ? std::string()
                 : std::string("must be a whole number >= 0");
    },
    "");

}  // namespace

void AddPruneOptions(CLI::App& app, Config& cfg) {
  const char* group = "History";
  app.add_option("--retention", cfg.retention,
                 "Keep every state of the target's history stored within this long (e.g. 7d, "
                 "12h, 2w; 0: only the latest state and the --keep-* points)")
      ->type_name("DURATION")
      ->capture_default_str()
      ->group(group);
  app.add_option("--keep-hourly", cfg.keep_hourly,
                 "Also keep the last state of each of the last N hours that have one")
      ->type_name("N")
      ->check(kCount)
      ->capture_default_str()
      ->group(group);
  app.add_option("--keep-daily", cfg.keep_daily,
                 "Also keep the last state of each of the last N days (local time) that have one")
      ->type_name("N")
      ->check(kCount)
      ->capture_default_str()
      ->group(group);
  app.add_option("--keep-checkpoints", cfg.keep_checkpoints,
                 "Also keep the state of each of the N newest checkpoints")
      ->type_name("N")
      ->check(kCount)
      ->capture_default_str()
      ->group(group);
  app.add_option("--prune-interval", cfg.prune_interval,
                 "Prune the history that the retention no longer needs this often, in the "
                 "background without holding writers (e.g. 1h, 30m; off: never; "
                 "`scribectl prune` runs one by hand)")
      ->type_name("DURATION")
      ->capture_default_str()
      ->group(group);
  app.add_option("--prune-grace", cfg.prune_grace,
                 "A prune deletes an unreferenced chunk only when it is older than this (it may "
                 "belong to an upload whose timeline segment is not written yet)")
      ->type_name("DURATION")
      ->capture_default_str()
      ->group(group);
}

std::optional<std::string> CheckPruneOptions(Config& cfg) {
  auto retention = history::ParseRetentionDuration(cfg.retention);
  if (!retention.ok()) return "--retention: " + retention.status().message();
  cfg.retention_ns = *retention;
  auto grace = history::ParseRetentionDuration(cfg.prune_grace);
  if (!grace.ok()) return "--prune-grace: " + grace.status().message();
  cfg.prune_grace_ns = *grace;
  if (cfg.prune_interval == "off" || cfg.prune_interval == "0") {
    cfg.prune_interval_s = 0;
    return std::nullopt;
  }
  auto interval = history::ParseRetentionDuration(cfg.prune_interval);
  if (!interval.ok() || *interval < 1'000'000'000) {
    return "--prune-interval: '" + cfg.prune_interval +
           "' is not a duration of at least 1s (e.g. 1h, 30m) or off";
  }
  cfg.prune_interval_s = static_cast<double>(*interval) / 1e9;
  return std::nullopt;
}

PruneTask::Options PruneTask::FromConfig(const Config& cfg) {
  Options o;
  o.prune.policy.retention_ns = cfg.retention_ns;
  o.prune.policy.keep_hourly = cfg.keep_hourly;
  o.prune.policy.keep_daily = cfg.keep_daily;
  o.prune.policy.keep_checkpoints = cfg.keep_checkpoints;
  o.prune.grace_ns = cfg.prune_grace_ns;
  o.interval = std::chrono::milliseconds(std::llround(cfg.prune_interval_s * 1000));
  return o;
}

PruneTask::PruneTask(ObjectStore* store, Options options)
    : store_(store), options_(std::move(options)) {}

PruneTask::~PruneTask() { Stop(); }

Status PruneTask::Start() {
  try {
    thread_ = std::thread([this] { Loop(); });
  } catch (const std::system_error& e) {
    return Status::Error(EAGAIN, std::string("prune thread: ") + e.what());
  }
  return Status::Ok();
}

void PruneTask::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cancel_ = true;
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

PruneTask::Last PruneTask::last() const {
  std::lock_guard<std::mutex> l(mu_);
  return last_;
}

std::string PruneTask::Summary(const history::PruneReport& r, double seconds) {
  char buf[512];
  snprintf(buf, sizeof buf,
           "prune: deleted %zu segments (%s) and %llu chunks (%s), wrote %zu bases; kept %zu "
           "older points, %llu chunks (%s); %llu unreferenced chunks within the grace; %.1f s",
           r.segments_deleted.size(), Bytes(r.segment_bytes_deleted).c_str(),
           static_cast<unsigned long long>(r.chunks_deleted), Bytes(r.chunk_bytes_deleted).c_str(),
           r.bases_written.size(), r.decision.older.size(),
           static_cast<unsigned long long>(r.chunks_kept), Bytes(r.chunk_bytes_kept).c_str(),
           static_cast<unsigned long long>(r.chunks_in_grace), seconds);
  return buf;
}

void PruneTask::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (cv_.wait_for(lock, options_.interval, [this] { return stop_; })) break;
    lock.unlock();
    history::PruneOptions o = options_.prune;
    o.cancel = &cancel_;
    const auto t0 = std::chrono::steady_clock::now();
    auto report = history::Prune(*store_, o);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if ((!report.ok() || report->chunks_deleted > 0) && options_.chunks_deleted) {
      options_.chunks_deleted();
    }
    Last last{NowNs(), report.ok(), ""};
    if (report.ok()) {
      last.summary = Summary(*report, s);
      spdlog::info("{}", last.summary);
    } else if (report.status().code() != ECANCELED) {
      last.summary = "prune failed (nothing retained was harmed; retried in " +
                     std::to_string(options_.interval.count() / 1000) +
                     " s): " + report.status().message();
      spdlog::warn("{}", last.summary);
    }
    lock.lock();
    last_ = std::move(last);
  }
}

}  // namespace scribefs
