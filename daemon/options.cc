// The scribefs command line (daemon/options.h).
#include "daemon/options.h"

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>

#include "common/strings.h"
#include "common/units.h"
#include "daemon/daemon.h"
#include "daemon/journal_trim.h"
#include "daemon/metrics_server.h"
#include "daemon/prune_task.h"
#include "uploader/bandwidth.h"

namespace scribefs {
namespace {

// DATADIR, MOUNTPOINT and how the mount behaves (FUSE, kernel caches, logs).
void AddMountOptions(CLI::App& app, Config& cfg) {
  app.set_config(
      "--config", "",
      "Read options from a TOML/INI file (keys = long option names, plus datadir and "
      "mountpoint); a NAME without '/' that is no file here reads /etc/scribefs/NAME.conf");
  // Not required here: the --config file may name it (checked after parsing).
  app.add_option("DATADIR", cfg.datadir, "The directory to serve and journal");
  app.add_option("MOUNTPOINT", cfg.mountpoint,
                 "Where to mount (default: over DATADIR itself, hiding the raw directory)");
  app.add_flag("-f,--foreground", cfg.foreground, "Stay in the foreground, log to stderr");
  app.add_option("--state-dir", cfg.state_dir,
                 "Journal, control socket and lock (default derived from DATADIR; "
                 "see README)");
  app.add_option("-o", cfg.fuse_opts,
                 "Mount option, e.g. -o allow_other (repeatable, comma lists ok). A key that "
                 "names a long option is that option (-o target=s3://b,workers=8 as in fstab); "
                 "any other goes to FUSE")
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
}

// --target and how the uploader replicates to it.
void AddReplicationOptions(CLI::App& app, Config& cfg) {
  auto* repl = "Replication";
  app.add_option("--target", cfg.target,
                 "Where to replicate: s3://BUCKET[/PREFIX] or file:///PATH (default: none, "
                 "journal only)")
      ->group(repl);
  app.add_option("--endpoint", cfg.endpoint,
                 "S3 endpoint URL for S3-compatible services (MinIO, Ceph RGW); path-style")
      ->group(repl);
  app.add_option("--region", cfg.region, "S3 region (default AWS_REGION or us-east-1)")
      ->group(repl);
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
  app.add_option("--upload-nice", cfg.upload_nice,
                 "Async mode: niceness of the upload threads (0-19; 0: as the daemon). Higher "
                 "lets bursts of local writes go first on a busy machine, at the cost of "
                 "replication lag there (sync mode ignores it: the writer waits for uploads)")
      ->check(CLI::Range(0, 19))
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
  app.add_option("--max-lag", cfg.max_lag,
                 "Bounded lag (async mode): when the oldest change not yet stored in the "
                 "target is older than this (e.g. 2s, 500ms, 1m), new writes are slowed and "
                 "then held until the backlog is back under it (default: no bound)")
      ->group(repl);
  app.add_option("--max-pending", cfg.max_pending,
                 "Bounded lag (async mode): when more than this many written bytes (e.g. 8M, "
                 "1G) are not yet stored in the target, new writes are slowed and then held "
                 "(default: no bound)")
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
  app.add_option("--bwlimit", cfg.bwlimit,
                 "Upload bandwidth limit shared by all workers, as rclone's: a rate (2M, "
                 "512K; B K M G T = bytes/KiB/MiB/GiB/TiB per second, off = none) or a "
                 "timetable \"[DAY-]HH:MM,RATE ...\" (e.g. \"08:00,512K 19:00,10M 23:00,off\"); "
                 "`scribectl set bwlimit` changes it until restart (default off)")
      ->check([](const std::string& v) -> std::string {
        auto spec = ParseBandwidth(v);
        if (spec.ok()) return "";
        // CLI11 names the option already: "--bwlimit: bad rate ...".
        const std::string& msg = spec.status().message();
        return msg.rfind("bwlimit: ", 0) == 0 ? msg.substr(9) : msg;
      })
      ->group(repl);
  app.add_option("--history", cfg.history,
                 "History in the target (on|off; default on with a --target): every stored "
                 "change also goes to a timeline under .scribefs/, file content as "
                 "content-addressed chunks, so that any moment can be restored")
      ->check(CLI::IsMember({"on", "off"}))
      ->group(repl);
  app.add_option("--history-interval", cfg.history_interval,
                 "How often the history's timeline gets a new segment (e.g. 5s, 500ms, 1m; "
                 "default 5s; flush and pause points always write one)")
      ->group(repl);
}

// Prometheus metrics (README, "Monitoring (Prometheus)"); off by default.
void AddMonitoringOptions(CLI::App& app, Config& cfg) {
  auto* group = "Monitoring";
  app.add_option("--metrics-listen", cfg.metrics_listen,
                 "Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9108); "
                 "loopback addresses only unless --metrics-listen-any")
      ->group(group);
  app.add_flag("--metrics-listen-any", cfg.metrics_listen_any,
               "Allow --metrics-listen on a non-loopback address (the metrics carry no "
               "file names, but anyone who can reach the port can read them)")
      ->group(group);
  app.add_option("--metrics-file", cfg.metrics_file,
                 "Write the same metrics to this file (atomically, mode 0644) for "
                 "node_exporter's textfile collector, e.g. "
                 "/var/lib/prometheus/node-exporter/scribefs.prom")
      ->group(group);
  app.add_option("--metrics-interval", cfg.metrics_interval,
                 "Seconds between --metrics-file writes")
      ->check(CLI::Range(1.0, 3600.0))
      ->capture_default_str()
      ->group(group);
}

// The checks of the monitoring options that CLI11 cannot express.
std::optional<std::string> CheckMonitoringOptions(const Config& cfg) {
  if (cfg.metrics_listen.empty()) {
    if (cfg.metrics_listen_any) return "--metrics-listen-any needs --metrics-listen";
    return std::nullopt;
  }
  auto addr = ParseListenAddress(cfg.metrics_listen);
  if (!addr.ok()) return addr.status().message();
  if (!addr->loopback && !cfg.metrics_listen_any)
    return "--metrics-listen " + cfg.metrics_listen +
           " is not a loopback address: add --metrics-listen-any to serve metrics to the "
           "network";
  return std::nullopt;
}

// Long option names a -o key or a config key may use (no "--"); "help",
// "version" and "config" itself excluded.
std::set<std::string> LongNames(const CLI::App& app) {
  std::set<std::string> names;
  for (const CLI::Option* opt : app.get_options()) {
    for (const std::string& n : opt->get_lnames())
      if (n != "help" && n != "version") names.insert(n);
  }
  return names;
}

// Whether a -o item continues a bwlimit timetable that the -o list's commas
// cut: it starts with a rate ("512K 19:00", "off", "off Mon-08:00"), which
// no FUSE option and no option of ours does.
bool IsTimetableRest(const std::string& item) {
  if (std::isdigit(static_cast<unsigned char>(item[0]))) return true;
  std::string head = item.substr(0, item.find(' '));
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return head == "off";
}

// The config file path of `--config VALUE`: a VALUE without '/' that is no
// file in the working directory is a name under ConfigDir(), as systemd's
// scribefs@NAME passes it.
std::string ConfigPath(const std::string& value) {
  // A file of that name here wins, as before names existed.
  struct stat st;
  if (value.find('/') != std::string::npos || stat(value.c_str(), &st) == 0) return value;
  return ConfigDir() + "/" + value + ".conf";
}

}  // namespace

std::string ConfigDir() {
  const char* dir = getenv("SCRIBEFS_CONFIG_DIR");
  return dir && *dir ? dir : "/etc/scribefs";
}

std::string NearestName(const std::string& key, const std::set<std::string>& names) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& n : names) {
    size_t d = EditDistance(key, n);
    if (d < best_d) best_d = d, best = n;
  }
  // A suggestion only when it is plausibly a typo of that name.
  return best_d <= std::max<size_t>(2, key.size() / 3) ? best : "";
}

Result<std::vector<std::string>> ExpandArgs(const std::vector<std::string>& args,
                                            const std::set<std::string>& names) {
  std::vector<std::string> out;
  std::vector<std::string> fuse;  // -o items that are not ours, kept in order
  bool in_bwlimit = false;  // the last item was bwlimit=...: a timetable goes on
  auto add_items = [&](const std::string& list) {
    size_t start = 0;
    while (start <= list.size()) {
      size_t comma = list.find(',', start);
      std::string item = list.substr(start, comma == std::string::npos ? comma : comma - start);
      start = comma == std::string::npos ? list.size() + 1 : comma + 1;
      if (item.empty()) continue;
      if (in_bwlimit && IsTimetableRest(item)) {
        // -o bwlimit=08:00,512K 19:00,off: the timetable's own commas.
        out.back() += "," + item;
        continue;
      }
      in_bwlimit = false;
      size_t eq = item.find('=');
      std::string key = item.substr(0, eq);
      std::replace(key.begin(), key.end(), '_', '-');
      if (names.count(key)) {
        // fstab style: -o workers=8 is --workers=8, -o foreground is --foreground.
        std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
        if (key == "config") value = ConfigPath(value);
        out.push_back("--" + key + (eq == std::string::npos ? "" : "=" + value));
        in_bwlimit = key == "bwlimit" && eq != std::string::npos;
      } else {
        fuse.push_back(item);
      }
    }
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-o") {
      if (i + 1 == args.size()) return Status::Error(EINVAL, "-o needs a value");
      add_items(args[++i]);
    } else if (a.rfind("-o", 0) == 0 && a.size() > 2 && a[2] != '-') {
      add_items(a.substr(2));  // -oallow_other, as mount helpers may pass it
    } else if (a == "--config" && i + 1 < args.size()) {
      out.push_back(a);
      out.push_back(ConfigPath(args[++i]));
    } else if (a.rfind("--config=", 0) == 0) {
      out.push_back("--config=" + ConfigPath(a.substr(9)));
    } else {
      out.push_back(a);
    }
  }
  std::string joined;
  for (const auto& f : fuse) joined += (joined.empty() ? "" : ",") + f;
  if (!joined.empty()) {
    out.push_back("-o");
    out.push_back(joined);
  }
  return out;
}

Status CheckConfigFile(const std::string& path, const std::set<std::string>& names,
                       std::string* datadir, std::string* mountpoint) {
  std::ifstream in(path);
  if (!in) return Status::Error(ENOENT, "--config: cannot read " + path);
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_config(in);
  } catch (const CLI::ParseError& e) {
    return Status::Error(EINVAL, "--config " + path + ": " + e.what());
  }
  for (const auto& item : items) {
    // Section markers CLI11 adds around [section] contents: their keys are
    // reported below as section.key.
    if (item.name == "++" || item.name == "--") continue;
    std::string key = item.fullname();
    std::string value = item.inputs.empty() ? "" : item.inputs.front();
    if (key == "datadir" || key == "DATADIR") {
      *datadir = value;
      continue;
    }
    if (key == "mountpoint" || key == "MOUNTPOINT") {
      *mountpoint = value;
      continue;
    }
    if (names.count(key) && key != "config") continue;
    std::string msg = "unknown key '" + key + "' in " + path;
    std::string near = NearestName(key, names);
    if (!near.empty()) msg += " (did you mean '" + near + "'?)";
    return Status::Error(EINVAL, msg);
  }
  return Status::Ok();
}

Result<double> ParseDuration(const std::string& text) {
  static constexpr UnitScale kUnits[] = {
      {"", 1}, {"s", 1}, {"ms", 1e-3}, {"m", 60}, {"min", 60}, {"h", 3600}};
  auto v = ParseScaled(text, kUnits);
  if (!v || !(*v > 0) || !std::isfinite(*v))
    return Status::Error(EINVAL, "'" + text + "' is not a duration (e.g. 2s, 500ms, 1m, 1h)");
  return *v;
}

Result<uint64_t> ParseSize(const std::string& text) {
  // Binary multiples whichever way they are written (8M, 8MB, 8MiB, 8mb).
  static constexpr UnitScale kUnits[] = {
      {"", 1},       {"B", 1},        {"K", 0x1p10}, {"KB", 0x1p10}, {"KiB", 0x1p10},
      {"M", 0x1p20}, {"MB", 0x1p20},  {"MiB", 0x1p20}, {"G", 0x1p30}, {"GB", 0x1p30},
      {"GiB", 0x1p30}, {"T", 0x1p40}, {"TB", 0x1p40}, {"TiB", 0x1p40}};
  auto bytes = ParseScaled(text, kUnits, /*ignore_case=*/true);
  if (!bytes || !(*bytes >= 1) || *bytes > 9.2e18)
    return Status::Error(EINVAL, "'" + text + "' is not a size (e.g. 8M, 512K, 1G)");
  return static_cast<uint64_t>(*bytes);
}

std::optional<std::string> CheckLagOptions(Config& cfg) {
  if (!cfg.max_lag.empty()) {
    auto d = ParseDuration(cfg.max_lag);
    if (!d.ok()) return "--max-lag: " + d.status().message();
    cfg.max_lag_s = *d;
  }
  if (!cfg.max_pending.empty()) {
    auto n = ParseSize(cfg.max_pending);
    if (!n.ok()) return "--max-pending: " + n.status().message();
    cfg.max_pending_bytes = *n;
  }
  if (!cfg.max_lag_s && !cfg.max_pending_bytes) return std::nullopt;
  if (cfg.target.empty())
    return "--max-lag/--max-pending bound what is not yet stored in the --target; a "
           "journal-only mount (no --target) has nothing to bound";
  // Sync mode already bounds the lag to (nearly) zero: every close, fsync and
  // namespace operation waits for the target. A bound there would never act,
  // so a configuration that asks for one is most likely a mistake.
  if (cfg.mode == "sync")
    return "--max-lag/--max-pending apply to --mode async only: sync mode already waits for "
           "the target at every close, fsync and namespace operation";
  return std::nullopt;
}

std::optional<std::string> CheckHistoryOptions(Config& cfg) {
  if (!cfg.history_interval.empty()) {
    auto d = ParseDuration(cfg.history_interval);
    if (!d.ok()) return "--history-interval: " + d.status().message();
    cfg.history_interval_s = *d;
  }
  if (cfg.target.empty()) {
    if (!cfg.history.empty() || !cfg.history_interval.empty())
      return "--history/--history-interval store history in the --target; a journal-only "
             "mount (no --target) has none";
    cfg.history_on = false;
    return std::nullopt;
  }
  cfg.history_on = cfg.history != "off";
  return std::nullopt;
}

std::optional<int> ParseCommandLine(int argc, char** argv, Config& cfg) {
  CLI::App app{
      "scribefs - a FUSE passthrough filesystem that journals every change to SQLite.\n\n"
      "Mounts over DATADIR (or on MOUNTPOINT) and records every write, close and\n"
      "namespace change in STATE_DIR/journal.db before it reaches DATADIR. Inspect\n"
      "the journal with `scribectl -m DATADIR journal`. Stop with SIGTERM,\n"
      "`fusermount3 -u MOUNTPOINT` or `scribectl -m DATADIR stop`.",
      "scribefs"};
  app.set_version_flag("--version", std::string("scribefs ") + SCRIBEFS_VERSION_STRING,
                       "Print the version and exit");
  AddMountOptions(app, cfg);
  AddReplicationOptions(app, cfg);
  AddMonitoringOptions(app, cfg);
  AddPruneOptions(app, cfg);  // daemon/prune_task.h
  app.add_option("--max-pause", cfg.max_pause,
                 "Longest pause (seconds) that `scribectl pause --timeout` or a checkpoint "
                 "may ask for; every pause ends by itself after its timeout")
      ->check(CLI::Range(1.0, 7.0 * 86400))
      ->capture_default_str();
  // Issue 10, item 10: bounded memory while paused.
  app.add_option("--max-held-mib", cfg.max_held_mib,
                 "Total size (MiB) of the copies of writes held during a pause; beyond it a "
                 "held write waits in its FUSE worker instead of being copied")
      ->check(CLI::Range(1.0, 65536.0))
      ->capture_default_str();
  // Issue 12: the copy-on-write spool of a checkpoint capture (fs/cow_spool.h).
  app.add_option("--max-spool", cfg.max_spool,
                 "Most bytes a checkpoint's copy-on-write spool (in the state dir) may hold "
                 "(e.g. 512M, 1G); a capture that would need more is abandoned, writers are "
                 "never held or failed by it")
      ->capture_default_str();
  // Issue 11, item 5: a bounded local journal (daemon/journal_trim.h).
  app.add_option("--journal-retention", cfg.journal_retention,
                 "Delete done records from the local journal once the target's history holds "
                 "them and they are older than this (e.g. 7d, 12h, 0: as soon as stored). "
                 "Failed and pending records are never deleted; without history in the "
                 "target (no --target, or history off) nothing is deleted")
      ->capture_default_str();
  app.footer(
      "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or unusable DATADIR/state dir,\n"
      "3 another daemon already serves this DATADIR or state dir.");
  auto usage = [](const std::string& msg) {
    fprintf(stderr, "scribefs: %s\nRun with --help for more information.\n", msg.c_str());
    return kExitUsage;
  };
  const std::set<std::string> names = LongNames(app);
  auto args = ExpandArgs(std::vector<std::string>(argv + 1, argv + argc), names);
  if (!args.ok()) return usage(args.status().message());
  // Unknown keys in the config file are refused like unknown flags (CLI11
  // would ignore them); it may also name DATADIR and MOUNTPOINT.
  std::string conf_datadir, conf_mountpoint;
  for (size_t i = 0; i < args->size(); ++i) {
    const std::string& a = (*args)[i];
    std::string path;
    if (a == "--config" && i + 1 < args->size()) path = (*args)[i + 1];
    if (a.rfind("--config=", 0) == 0) path = a.substr(9);
    if (path.empty()) continue;
    Status checked = CheckConfigFile(path, names, &conf_datadir, &conf_mountpoint);
    if (!checked.ok()) return usage(checked.message());
  }
  std::vector<char*> cargv = {argv[0]};
  for (auto& a : *args) cargv.push_back(a.data());
  try {
    app.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (cfg.datadir.empty()) cfg.datadir = conf_datadir;
  if (cfg.mountpoint.empty()) cfg.mountpoint = conf_mountpoint;
  if (cfg.datadir.empty())
    return usage("DATADIR is required (on the command line or as datadir in the --config file)");
  if (auto bad = CheckMonitoringOptions(cfg)) {
    fprintf(stderr, "scribefs: %s\n", bad->c_str());
    return kExitUsage;
  }
  if (auto bad = CheckLagOptions(cfg)) {
    fprintf(stderr, "scribefs: %s\n", bad->c_str());
    return kExitUsage;
  }
  if (auto bad = CheckPruneOptions(cfg)) {
    fprintf(stderr, "scribefs: %s\n", bad->c_str());
    return kExitUsage;
  }
  if (auto r = ParseJournalRetention(cfg.journal_retention); r.ok())
    cfg.journal_retention_ns = *r;
  else
    return usage("--journal-retention: " + r.status().message());
  if (auto n = ParseSize(cfg.max_spool); n.ok())
    cfg.max_spool_bytes = *n;
  else
    return usage("--max-spool: " + n.status().message());
  if (auto bad = CheckHistoryOptions(cfg)) {
    fprintf(stderr, "scribefs: %s\n", bad->c_str());
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace scribefs
