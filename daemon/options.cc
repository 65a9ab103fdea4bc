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
#include <initializer_list>
#include <map>
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
  app.set_config("--config", "",
                 "Read options from a TOML/INI file (keys = long option names, plus datadir and "
                 "mountpoint; a [target NAME] section per target: url and its own options); a "
                 "NAME without '/' that is no file here reads /etc/scribefs/NAME.conf");
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

// --target and how the uploader replicates to it. The --target URLs go to
// `urls` (ResolveTargets makes them cfg.targets).
void AddReplicationOptions(CLI::App& app, Config& cfg, std::vector<std::string>& urls) {
  auto* repl = "Replication";
  app.add_option("--target", urls,
                 "Where to replicate: s3://BUCKET[/PREFIX] or file:///PATH (repeatable; each "
                 "target uses the options below, or its own in a [target NAME] section of the "
                 "--config file; --target on the command line replaces the file's targets; "
                 "default: none, journal only)")
      // One URL per --target: without this CLI11 would take DATADIR as a
      // second URL in `--target URL DATADIR`.
      ->allow_extra_args(false)
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
}

// When and how fast the uploader stores (open files, bounded lag, stop,
// bandwidth) and the history it keeps in the target.
void AddUploadPacingOptions(CLI::App& app, Config& cfg) {
  auto* repl = "Replication";
  app.add_option("--open-file-delay", cfg.open_file_delay,
                 "Seconds after which a file that stays open for writing is uploaded anyway")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str()
      ->group(repl);
  app.add_option("--max-lag", cfg.max_lag,
                 "Bounded lag (async mode): when the oldest change not yet stored in the "
                 "target is older than this (e.g. 2s, 500ms, 1m), new writes are slowed and "
                 "then held until the backlog is back under it (default: no bound); every "
                 "async target's, unless its [target NAME] section sets max_lag (or off)")
      ->group(repl);
  app.add_option("--max-pending", cfg.max_pending,
                 "Bounded lag (async mode): when more than this many written bytes (e.g. 8M, "
                 "1G) are not yet stored in the target, new writes are slowed and then held "
                 "(default: no bound); every async target's, unless its [target NAME] section "
                 "sets max_pending (or off)")
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
  app.add_option("--on-failure", cfg.on_failure,
                 "Command (run with sh -c) when a target has been failing for --alert-after: "
                 "once per outage, with SCRIBEFS_TARGET, SCRIBEFS_TARGET_URL, SCRIBEFS_ERROR, "
                 "SCRIBEFS_FAILING_SINCE and SCRIBEFS_DATADIR in a clean environment (no "
                 "credentials); a [target NAME] section may set its own (on_failure)")
      ->group(group);
  app.add_option("--alert-after", cfg.alert_after,
                 "How long a target fails (no upload succeeds, and one is retried or failed) "
                 "before --on-failure runs (e.g. 30s, 5m; default 5m)")
      ->check([](const std::string& v) -> std::string {
        auto d = ParseDuration(v);
        if (!d.ok()) return d.status().message();
        return *d > 0 ? "" : "'" + v + "' is not a duration above zero";
      })
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

// ---- [target NAME] sections (issue 16) -------------------------------------

std::string TrimBlanks(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// The NAME of a [target NAME] section from the parents CLI11 reports for its
// items: CLI11 splits a header at each '.' (and keeps blanks), so the header
// is the parents joined with '.' again; NAME may contain '.'. "" for a bare
// [target]; nullopt for a section that is no target section ([targets] too).
std::optional<std::string> TargetSectionName(const std::vector<std::string>& parents) {
  if (parents.empty()) return std::nullopt;
  std::string header = parents.front();
  for (size_t i = 1; i < parents.size(); ++i) header += "." + parents[i];
  std::string h = TrimBlanks(header);
  if (h.rfind("target", 0) != 0) return std::nullopt;
  std::string rest = h.substr(6);
  if (!rest.empty() && rest[0] != ' ' && rest[0] != '\t') return std::nullopt;
  return TrimBlanks(rest);
}

// Whether a "++" item (CLI11 opening a section) is only the outer part of
// the next one: [target a.b] opens as {"target a"} and then {"target a", "b"}.
bool OpensOuterPart(const CLI::ConfigItem& item, const CLI::ConfigItem* next) {
  return next && next->name == "++" && next->parents.size() > item.parents.size() &&
         std::equal(item.parents.begin(), item.parents.end(), next->parents.begin());
}

// One item CLI11 read inside [target NAME] of path (`next` the item after
// it, if any): opens a section or adds a key to it. Only the key's name is
// checked here.
Status AddTargetItem(const std::string& path, const std::string& name, const CLI::ConfigItem& item,
                     const CLI::ConfigItem* next, const std::set<std::string>& names,
                     std::vector<TargetSection>& sections) {
  if (item.name == "--" || (item.name == "++" && OpensOuterPart(item, next))) return Status::Ok();
  if (name.empty())
    return Status::Error(EINVAL, "a [target] section in " + path + " needs a name: [target NAME]");
  // CLI11 opens every section with a "++" item, also a repeated one: two
  // [target usb] are two sections here, which ResolveTargets refuses.
  if (item.name == "++") {
    sections.push_back({path, name, {}});
    return Status::Ok();
  }
  std::string key = item.name;
  std::replace(key.begin(), key.end(), '-', '_');
  if (!TargetSectionKeys().count(key)) {
    std::string msg = "unknown key '" + key + "' in [target " + name + "] of " + path;
    std::string near = NearestName(key, TargetSectionKeys());
    std::string dashed = key;
    std::replace(dashed.begin(), dashed.end(), '_', '-');
    if (!near.empty())
      msg += " (did you mean '" + near + "'?)";
    else if (key.front() == '[')  // CLI11 reads "[target x]  # note" as a key
      msg += " (a section header takes no comment after it)";
    else if (names.count(dashed))
      msg += " (" + dashed + " applies to every target: set it above the first section)";
    return Status::Error(EINVAL, msg);
  }
  if (sections.empty() || sections.back().name != name || sections.back().file != path)
    sections.push_back({path, name, {}});  // CLI11 always opens it first; this is a safety net
  sections.back().items.emplace_back(key, item.inputs);
  return Status::Ok();
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
                       std::string* datadir, std::string* mountpoint,
                       std::vector<TargetSection>* sections) {
  std::vector<TargetSection> ignored;
  if (!sections) sections = &ignored;
  std::ifstream in(path);
  if (!in) return Status::Error(ENOENT, "--config: cannot read " + path);
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_config(in);
  } catch (const CLI::ParseError& e) {
    return Status::Error(EINVAL, "--config " + path + ": " + e.what());
  }
  for (size_t i = 0; i < items.size(); ++i) {
    const CLI::ConfigItem& item = items[i];
    if (auto name = TargetSectionName(item.parents)) {
      const CLI::ConfigItem* next = i + 1 < items.size() ? &items[i + 1] : nullptr;
      Status added = AddTargetItem(path, *name, item, next, names, *sections);
      if (!added.ok()) return added;
      continue;
    }
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

namespace {

// Strict scalar values of a [target NAME] section, checked as the global
// flags check them. Each returns the problem, or nullopt once `out` is set.
std::optional<std::string> SetChoice(std::string& out, const std::string& v,
                                     std::initializer_list<const char*> choices) {
  for (const char* c : choices)
    if (v == c) return out = v, std::nullopt;
  std::string list;
  for (const char* c : choices) list += (list.empty() ? "" : "|") + std::string(c);
  return "'" + v + "' is not " + list;
}

std::optional<std::string> SetBool(bool& out, const std::string& v) {
  const std::string l = AsciiLower(v);
  if (l == "true" || l == "on" || l == "yes" || l == "1") return out = true, std::nullopt;
  if (l == "false" || l == "off" || l == "no" || l == "0") return out = false, std::nullopt;
  return "'" + v + "' is not true or false";
}

// A number in [lo, hi]; an integer when `integer`.
std::optional<std::string> SetNumber(double& out, const std::string& v, double lo, double hi,
                                     bool integer) {
  char* end = nullptr;
  double d = v.empty() ? NAN : strtod(v.c_str(), &end);
  if (std::isnan(d) || *end != '\0' || (integer && d != std::floor(d)) || d < lo || d > hi)
    return "'" + v + "' is not " + (integer ? "an integer" : "a number") + " in [" +
           std::to_string(static_cast<int>(lo)) + ", " + std::to_string(static_cast<int>(hi)) + "]";
  out = d;
  return std::nullopt;
}

// max_lag / max_pending of a section: a duration / size, or "off" (no bound
// on that target whatever the global option says).
std::optional<std::string> SetLagBound(TargetConfig& t, const std::string& key,
                                       const std::string& v) {
  const bool lag = key == "max_lag";
  if (v == "off") {
    if (lag)
      t.max_lag_s.reset();
    else
      t.max_pending_bytes.reset();
    return std::nullopt;
  }
  if (lag) {
    auto d = ParseDuration(v);
    if (!d.ok()) return d.status().message() + " (or off)";
    if (*d <= 0) return "'" + v + "' is not a duration above zero (or off)";
    t.max_lag_s = *d;
  } else {
    auto n = ParseSize(v);
    if (!n.ok()) return n.status().message() + " (or off)";
    t.max_pending_bytes = *n;
  }
  return std::nullopt;
}

// One key of a [target NAME] section onto t; the problem when its value is
// bad. The keys and ranges are those of the global flags (AddReplicationOptions).
std::optional<std::string> SetTargetKey(TargetConfig& t, const std::string& key,
                                        const std::vector<std::string>& values) {
  // CLI11 2.1 ends a value at '#' even inside quotes and leaves the opening
  // quote: `url = "s3://b/a#b"` comes back as `"s3://b/a`. Refused, not
  // used cut short.
  for (const auto& v : values)
    if (!v.empty() && (v.front() == '"' || v.front() == '\''))
      return key + ": unterminated quoted value " + v + " (a '#' starts a comment, even in quotes)";
  if (key == "exclude") {
    t.excludes.insert(t.excludes.end(), values.begin(), values.end());
    return std::nullopt;
  }
  if (key == "on_failure") {  // a command: CLI11 hands an unquoted one over as its words
    t.on_failure.clear();
    for (const auto& v : values) t.on_failure += (t.on_failure.empty() ? "" : " ") + v;
    return std::nullopt;
  }
  if (values.size() != 1) return key + " takes one value";
  const std::string& v = values.front();
  const std::pair<const char*, std::string*> kStrings[] = {
      {"url", &t.url}, {"endpoint", &t.endpoint}, {"region", &t.region}, {"ca_file", &t.ca_file}};
  for (const auto& [name, field] : kStrings)
    if (key == name) return *field = v, std::nullopt;
  std::optional<std::string> bad;
  double workers = 0;
  if (key == "mode") {
    bad = SetChoice(t.mode, v, {"async", "sync"});
  } else if (key == "delete") {
    bad = SetChoice(t.delete_mode, v, {"keep", "propagate"});
  } else if (key == "no_default_excludes") {
    bad = SetBool(t.no_default_excludes, v);
  } else if (key == "part_size") {
    bad = SetNumber(t.part_size_mib, v, 5, 5120, /*integer=*/false);
  } else if (key == "alert_after") {
    auto d = ParseDuration(v);
    if (!d.ok())
      bad = d.status().message();
    else if (*d <= 0)
      bad = "'" + v + "' is not a duration above zero";
    else
      t.alert_after_s = *d;
  } else if (key == "workers") {
    bad = SetNumber(workers, v, 1, 256, /*integer=*/true);
    if (!bad) t.workers = static_cast<int>(workers);
  } else if (key == "max_lag" || key == "max_pending") {
    bad = SetLagBound(t, key, v);
  }
  if (bad) return key + ": " + *bad;
  return std::nullopt;
}

// The target of one section: `defaults` with the section's keys applied.
Result<TargetConfig> ApplyTargetSection(const TargetSection& s, const TargetConfig& defaults) {
  const std::string where = "[target " + s.name + "] of " + s.file;
  TargetConfig t = defaults;
  t.name = s.name;
  std::set<std::string> seen;
  for (const auto& [key, values] : s.items) {
    // The section's exclude list replaces the global one; it may be given
    // several times (CLI11 merges repeats into one item only when adjacent).
    if (key == "exclude" && !seen.count(key)) t.excludes.clear();
    if (key != "exclude" && seen.count(key))
      return Status::Error(EINVAL, where + ": " + key + " is given twice");
    seen.insert(key);
    if (auto bad = SetTargetKey(t, key, values)) return Status::Error(EINVAL, where + ": " + *bad);
  }
  if (t.url.empty())
    return Status::Error(EINVAL,
                         where + " has no url (url = s3://BUCKET[/PREFIX] or file:///PATH)");
  return t;
}

// The global replication options, as every target's defaults.
TargetConfig GlobalTargetDefaults(const Config& cfg) {
  TargetConfig t;
  t.endpoint = cfg.endpoint;
  t.region = cfg.region;
  t.ca_file = cfg.ca_file;
  t.mode = cfg.mode;
  t.excludes = cfg.excludes;
  t.no_default_excludes = cfg.no_default_excludes;
  t.delete_mode = cfg.delete_mode;
  t.part_size_mib = cfg.part_size_mib;
  t.workers = cfg.workers;
  t.on_failure = cfg.on_failure;
  t.alert_after_s = cfg.alert_after_s;
  t.max_lag_s = cfg.max_lag_s;
  t.max_pending_bytes = cfg.max_pending_bytes;
  return t;
}

// The single-target fields the daemon reads today.
void CopyToSingleTargetFields(const TargetConfig& t, Config& cfg) {
  cfg.target = t.url;
  cfg.endpoint = t.endpoint;
  cfg.region = t.region;
  cfg.ca_file = t.ca_file;
  cfg.mode = t.mode;
  cfg.excludes = t.excludes;
  cfg.no_default_excludes = t.no_default_excludes;
  cfg.delete_mode = t.delete_mode;
  cfg.part_size_mib = t.part_size_mib;
  cfg.workers = t.workers;
  cfg.on_failure = t.on_failure;
  cfg.alert_after_s = t.alert_after_s;
  cfg.max_lag_s = t.max_lag_s;
  cfg.max_pending_bytes = t.max_pending_bytes;
}

// base, or base-2, base-3, ... : the first not in taken (at most 64 bytes).
std::string UniqueTargetName(const std::string& base, const std::set<std::string>& taken) {
  if (!taken.count(base)) return base;
  for (int n = 2;; ++n) {
    std::string suffix = "-" + std::to_string(n);
    std::string name = base.substr(0, 64 - suffix.size()) + suffix;
    if (!taken.count(name)) return name;
  }
}

// The first two targets with the same url, a trailing '/' aside: they would
// store into the same place twice.
std::optional<std::string> SameUrl(const std::vector<TargetConfig>& targets) {
  std::map<std::string, const TargetConfig*> seen;
  for (const auto& t : targets) {
    std::string url = t.url;
    while (!url.empty() && url.back() == '/') url.pop_back();
    auto [it, fresh] = seen.emplace(url, &t);
    if (!fresh)
      return "targets '" + it->second->name + "' and '" + t.name + "' have the same url " + t.url;
  }
  return std::nullopt;
}

// Whether the arguments (as ExpandArgs left them) name --target: then its
// URLs replace the config file's targets, as the command line wins over the
// file for every option.
bool NamesTarget(const std::vector<std::string>& args) {
  for (const auto& a : args)
    if (a == "--target" || a.rfind("--target=", 0) == 0) return true;
  return false;
}

// A target to replicate to: one given (cfg.targets), or a Config filled by
// hand with cfg.target only.
bool HasTarget(const Config& cfg) { return !cfg.targets.empty() || !cfg.target.empty(); }

}  // namespace

const std::set<std::string>& TargetSectionKeys() {
  static const std::set<std::string> keys = {"url",
                                             "endpoint",
                                             "region",
                                             "ca_file",
                                             "mode",
                                             "exclude",
                                             "no_default_excludes",
                                             "delete",
                                             "part_size",
                                             "workers",
                                             "on_failure",
                                             "alert_after",
                                             "max_lag",
                                             "max_pending"};
  return keys;
}

bool IsValidTargetName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

std::string DefaultTargetName(const std::string& url) {
  size_t scheme = url.find("://");
  std::string rest = scheme == std::string::npos ? url : url.substr(scheme + 3);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  size_t slash = rest.rfind('/');
  std::string name = slash == std::string::npos ? rest : rest.substr(slash + 1);
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_') c = '-';
  if (name.size() > 64) name.resize(64);
  return IsValidTargetName(name) ? name : "target";
}

Config ForTarget(const Config& cfg, const TargetConfig& t) {
  Config view = cfg;
  CopyToSingleTargetFields(t, view);
  return view;
}

Status ResolveTargets(Config& cfg, const std::vector<std::string>& urls,
                      const std::vector<TargetSection>& sections) {
  // --alert-after was checked by its validator; every target's default.
  if (auto d = ParseDuration(cfg.alert_after); !cfg.alert_after.empty() && d.ok())
    cfg.alert_after_s = *d;
  // --max-lag / --max-pending likewise (a bad value is CheckLagOptions' to report).
  if (auto d = ParseDuration(cfg.max_lag); !cfg.max_lag.empty() && d.ok()) cfg.max_lag_s = *d;
  if (auto n = ParseSize(cfg.max_pending); !cfg.max_pending.empty() && n.ok())
    cfg.max_pending_bytes = *n;
  const TargetConfig defaults = GlobalTargetDefaults(cfg);
  std::set<std::string> taken;  // section names first: a derived name avoids them
  for (const auto& s : sections) {
    if (!IsValidTargetName(s.name))
      return Status::Error(EINVAL, "bad target name '" + s.name + "' in " + s.file +
                                       " (1 to 64 of A-Z a-z 0-9 . _ -)");
    if (!taken.insert(s.name).second)
      return Status::Error(EINVAL, "two [target " + s.name + "] sections in " + s.file);
  }
  std::vector<TargetConfig> targets;
  for (const auto& url : urls) {
    if (url.empty()) continue;  // --target "": journal only, as before
    TargetConfig t = defaults;
    t.url = url;
    t.name = UniqueTargetName(DefaultTargetName(url), taken);
    taken.insert(t.name);
    targets.push_back(std::move(t));
  }
  for (const auto& s : sections) {
    auto t = ApplyTargetSection(s, defaults);
    if (!t.ok()) return t.status();
    targets.push_back(std::move(*t));
  }
  if (auto bad = SameUrl(targets)) return Status::Error(EINVAL, *bad);
  if (targets.size() == 1) CopyToSingleTargetFields(targets.front(), cfg);
  cfg.targets = std::move(targets);
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
  // Parsed by ResolveTargets (every target's default); reported here.
  if (!cfg.max_lag.empty()) {
    auto d = ParseDuration(cfg.max_lag);
    if (!d.ok()) return "--max-lag: " + d.status().message();
  }
  if (!cfg.max_pending.empty()) {
    auto n = ParseSize(cfg.max_pending);
    if (!n.ok()) return "--max-pending: " + n.status().message();
  }
  const bool global =
      cfg.max_lag_s || cfg.max_pending_bytes || !cfg.max_lag.empty() || !cfg.max_pending.empty();
  if (!global && std::none_of(cfg.targets.begin(), cfg.targets.end(), [](const TargetConfig& t) {
        return t.max_lag_s || t.max_pending_bytes;
      }))
    return std::nullopt;
  if (!HasTarget(cfg))
    return "--max-lag/--max-pending bound what is not yet stored in the --target; a "
           "journal-only mount (no --target) has nothing to bound";
  // Sync mode already bounds the lag to (nearly) zero: every close, fsync and
  // namespace operation waits for the target. A bound there would never act,
  // so a configuration that asks for one is most likely a mistake. With
  // several targets a global bound acts on the async ones (refused when none
  // is); a section's own bound on a sync target is refused.
  if (cfg.targets.size() > 1) {
    bool any_async = false;
    for (const TargetConfig& t : cfg.targets) {
      const bool own = t.max_lag_s != cfg.max_lag_s || t.max_pending_bytes != cfg.max_pending_bytes;
      if (t.mode == "sync" && own && (t.max_lag_s || t.max_pending_bytes))
        return "[target " + t.name +
               "]: max_lag/max_pending apply to async targets only: a "
               "sync target is waited for at every close, fsync and namespace operation";
      any_async = any_async || t.mode != "sync";
    }
    if (global && !any_async)
      return "--max-lag/--max-pending apply to async targets only: every target is sync, and "
             "sync mode already waits for the target at every close, fsync and namespace "
             "operation";
    return std::nullopt;
  }
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
  if (!HasTarget(cfg)) {
    if (!cfg.history.empty() || !cfg.history_interval.empty())
      return "--history/--history-interval store history in the --target; a journal-only "
             "mount (no --target) has none";
    cfg.history_on = false;
    return std::nullopt;
  }
  cfg.history_on = cfg.history != "off";
  return std::nullopt;
}

namespace {

// Pause points, checkpoints and the bounded journal.
void AddPauseAndJournalOptions(CLI::App& app, Config& cfg) {
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
}

// The checks of option values that CLI11 cannot make (they read several
// options, or parse units): the message for the first that fails.
std::optional<std::string> CheckParsedOptions(Config& cfg) {
  if (auto bad = CheckMonitoringOptions(cfg)) return bad;
  if (!HasTarget(cfg) && (!cfg.on_failure.empty() || !cfg.alert_after.empty()))
    return "--on-failure/--alert-after watch the --target; a journal-only mount (no --target) "
           "has none";
  if (auto bad = CheckLagOptions(cfg)) return bad;
  if (auto bad = CheckPruneOptions(cfg)) return bad;
  if (auto r = ParseJournalRetention(cfg.journal_retention); r.ok())
    cfg.journal_retention_ns = *r;
  else
    return "--journal-retention: " + r.status().message() +
           "\nRun with --help for more information.";
  if (auto n = ParseSize(cfg.max_spool); n.ok())
    cfg.max_spool_bytes = *n;
  else
    return "--max-spool: " + n.status().message() + "\nRun with --help for more information.";
  return CheckHistoryOptions(cfg);
}

}  // namespace

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
  std::vector<std::string> target_urls;
  AddReplicationOptions(app, cfg, target_urls);
  AddUploadPacingOptions(app, cfg);
  AddMonitoringOptions(app, cfg);
  AddPruneOptions(app, cfg);  // daemon/prune_task.h
  AddPauseAndJournalOptions(app, cfg);
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
  // would ignore them); it may also name DATADIR and MOUNTPOINT, and has the
  // [target NAME] sections, which CLI11 ignores too.
  std::string conf_datadir, conf_mountpoint;
  std::vector<TargetSection> sections;
  for (size_t i = 0; i < args->size(); ++i) {
    const std::string& a = (*args)[i];
    std::string path;
    if (a == "--config" && i + 1 < args->size()) path = (*args)[i + 1];
    if (a.rfind("--config=", 0) == 0) path = a.substr(9);
    if (path.empty()) continue;
    Status checked = CheckConfigFile(path, names, &conf_datadir, &conf_mountpoint, &sections);
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
  if (NamesTarget(*args)) sections.clear();
  if (Status t = ResolveTargets(cfg, target_urls, sections); !t.ok()) return usage(t.message());
  if (auto bad = CheckParsedOptions(cfg)) {
    fprintf(stderr, "scribefs: %s\n", bad->c_str());
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace scribefs
