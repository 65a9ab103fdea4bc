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
  app.add_option("--compact-interval", cfg.compact_interval,
                 "Merge the history's small timeline segments into larger ones this often, in "
                 "levels (12 level-0 segments make one of level 1, 60 of those one of level 2, "
                 "24 of those one of level 3), in the background (e.g. 1m, 30s; off: never)")
      ->type_name("DURATION")
      ->capture_default_str()
      ->group(group);
  app.add_option("--base-interval", cfg.base_interval,
                 "Write a base (the whole tree) into the history when the newest one is this "
                 "much older than the newest change, so a restore replays only what follows it "
                 "(checked every --compact-interval; e.g. 1h, 6h; off: never)")
      ->type_name("DURATION")
      ->capture_default_str()
      ->group(group);
}

namespace {
// "off" or "0": 0; else a duration of at least `min_ns`.
std::optional<std::string> ParseIntervalOrOff(const std::string& flag, const std::string& text,
                                              int64_t min_ns, const char* example,
                                              int64_t* out_ns) {
  if (text == "off" || text == "0") {
    *out_ns = 0;
    return std::nullopt;
  }
  auto d = history::ParseRetentionDuration(text);
  if (!d.ok() || *d < min_ns) {
    return flag + ": '" + text + "' is not a duration of at least " +
           history::FormatRetentionDuration(min_ns) + " (e.g. " + example + ") or off";
  }
  *out_ns = *d;
  return std::nullopt;
}
}  // namespace

std::optional<std::string> CheckPruneOptions(Config& cfg) {
  int64_t compact_ns = 0;
  if (auto bad = ParseIntervalOrOff("--compact-interval", cfg.compact_interval, 100'000'000,
                                    "1m, 30s", &compact_ns)) {
    return bad;
  }
  cfg.compact_interval_s = static_cast<double>(compact_ns) / 1e9;
  if (auto bad = ParseIntervalOrOff("--base-interval", cfg.base_interval, 1'000'000'000, "1h, 6h",
                                    &cfg.base_interval_ns)) {
    return bad;
  }
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
  // Without history there is no timeline to compact.
  o.compact_interval =
      std::chrono::milliseconds(cfg.history_on ? std::llround(cfg.compact_interval_s * 1000) : 0);
  o.base.interval_ns = cfg.base_interval_ns;
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

PruneTask::Last PruneTask::last_compaction() const {
  std::lock_guard<std::mutex> l(mu_);
  return last_compaction_;
}

std::string PruneTask::CompactionSummary(const history::CompactionReport& c,
                                         const history::BaseReport& b, double seconds) {
  char buf[512];
  snprintf(buf, sizeof buf,
           "compaction: %llu -> %llu timeline segments (read %llu, wrote %llu, deleted %llu, "
           "%llu of them left over by an interrupted run)%s; %.1f s",
           static_cast<unsigned long long>(c.deltas_before),
           static_cast<unsigned long long>(c.deltas_after),
           static_cast<unsigned long long>(c.segments_read),
           static_cast<unsigned long long>(c.segments_written),
           static_cast<unsigned long long>(c.segments_deleted),
           static_cast<unsigned long long>(c.leftovers_deleted),
           b.written ? (", wrote base " + b.written->key).c_str() : "", seconds);
  return buf;
}

Result<PruneTask::Compacted> PruneTask::CompactNow() {
  const auto t0 = std::chrono::steady_clock::now();
  history::HistoryStore hs(*store_);
  history::CompactionOptions co;
  co.policy = options_.compaction;
  co.cancel = &cancel_;
  auto compacted = history::RunCompaction(hs, co);
  if (!compacted.ok()) return compacted.status().status();
  // The base after the compaction: building it reads the merged segments.
  Compacted out;
  out.compaction = *compacted;
  if (!cancel_) {
    auto b = history::WriteBaseIfDue(hs, options_.base);
    if (!b.ok()) return b.status().status();
    out.base = *b;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.summary = CompactionSummary(out.compaction, out.base, s);
  return out;
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

void PruneTask::PruneOnce() {
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
    last.summary = options_.label + Summary(*report, s);
    spdlog::info("{}", last.summary);
  } else if (report.status().code() != ECANCELED) {
    last.summary = options_.label + "prune failed (nothing retained was harmed; retried in " +
                   std::to_string(options_.interval.count() / 1000) +
                   " s): " + report.status().message();
    spdlog::warn("{}", last.summary);
  }
  std::lock_guard<std::mutex> l(mu_);
  last_ = std::move(last);
}

void PruneTask::CompactOnce() {
  auto done = CompactNow();
  Last last{NowNs(), done.ok(), ""};
  if (done.ok()) {
    last.summary = options_.label + done->summary;
    if (done->changed()) spdlog::info("{}", last.summary);  // quiet when idle: runs every minute
  } else if (done.status().code() != ECANCELED) {
    last.summary =
        options_.label +
        "compaction failed (nothing was lost; retried next interval): " + done.status().message();
    spdlog::warn("{}", last.summary);
  }
  std::lock_guard<std::mutex> l(mu_);
  last_compaction_ = std::move(last);
}

void PruneTask::Loop() {
  using Clock = std::chrono::steady_clock;
  // "Never": far enough not to come, near enough not to overflow wait_until.
  const auto never = Clock::now() + std::chrono::hours(24 * 365 * 10);
  auto next = [&](std::chrono::milliseconds every) {
    return every.count() > 0 ? Clock::now() + every : never;
  };
  auto next_prune = next(options_.interval);
  auto next_compact = next(options_.compact_interval);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (cv_.wait_until(lock, std::min(next_prune, next_compact), [this] { return stop_; })) break;
    lock.unlock();
    // Both on this one thread: a compaction never runs during a prune (a
    // prune deletes segments a compaction may be merging).
    if (Clock::now() >= next_compact) {
      CompactOnce();
      next_compact = next(options_.compact_interval);
    }
    if (!cancel_ && Clock::now() >= next_prune) {
      PruneOnce();
      next_prune = next(options_.interval);
    }
    lock.lock();
  }
}

}  // namespace scribefs
