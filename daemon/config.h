// The daemon's settings, as the command line (daemon/options.h) leaves them
// and the start-up checks (daemon/startup_checks.h) canonicalize them, and the
// error that ends start-up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace scribefs {

// One place to replicate to (issue 16): a --target URL with the global
// replication options, or a [target NAME] section of the --config file with
// its own (daemon/options.h, ResolveTargets). Same meaning and defaults as
// the Config fields of the same names.
struct TargetConfig {
  std::string name;  // [A-Za-z0-9._-]{1,64}: the section's, or derived from url
  std::string url, endpoint, region, ca_file;
  std::string mode = "async";
  std::vector<std::string> excludes;
  bool no_default_excludes = false;
  std::string delete_mode = "propagate";
  double part_size_mib = 8;
  int workers = 4;
  // --on-failure: run (sh -c) once a target has been failing for alert_after_s.
  std::string on_failure;
  double alert_after_s = 300;
  // Bounded lag (--max-lag, --max-pending) on this target; a section may set
  // its own or "off". Async targets only.
  std::optional<double> max_lag_s;
  std::optional<uint64_t> max_pending_bytes;
};

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
  int upload_nice = 0;  // async mode: niceness of the upload threads
  std::vector<std::string> excludes;
  bool no_default_excludes = false;
  std::string delete_mode = "propagate";
  double part_size_mib = 8;
  // Every target, resolved from --target and the [target NAME] sections. With
  // exactly one, the fields above (target, endpoint, ..., part_size_mib) hold
  // it too; with several, each target's uploader starts from ForTarget's
  // view of the Config (daemon/options.h).
  // A failing target's hook (daemon/failure_alert.h); alert_after as given
  // (checked by the parser), alert_after_s parsed.
  std::string on_failure, alert_after;
  double alert_after_s = 300;
  std::vector<TargetConfig> targets;
  double stop_timeout = 10.0;
  double crash_check_delay = 30.0;
  double max_pause = 3600.0;  // pause points (control socket)
  double max_held_mib = 64;   // copies of writes held during a pause
  // Copy-on-write capture (fs/cow_spool.h): the bound of one capture's
  // spool, as given and parsed.
  std::string max_spool = "1G";
  uint64_t max_spool_bytes = 1ull << 30;
  double open_file_delay = 10.0;
  // Bounded journal (daemon/journal_trim.h): as given, and parsed.
  std::string journal_retention = "7d";
  int64_t journal_retention_ns = 7LL * 86400 * 1'000'000'000;
  // Upload bandwidth: a rate or a timetable (uploader/bandwidth.h); "" or off: none.
  std::string bwlimit;
  // Bounded lag (README, "Bounded lag (recovery point)"): as given, and
  // parsed (unset: no bound).
  std::string max_lag, max_pending;
  std::optional<double> max_lag_s;
  std::optional<uint64_t> max_pending_bytes;
  // History in the target (README, "History in the target"): as given
  // ("on", "off"; empty: on whenever there is a target), and as checked.
  std::string history, history_interval;
  bool history_on = false;
  double history_interval_s = 5.0;
  // Monitoring (daemon/metrics_server.h): both off when empty.
  std::string metrics_listen;       // ADDR:PORT for GET /metrics
  bool metrics_listen_any = false;  // allow a non-loopback ADDR
  std::string metrics_file;         // textfile collector output
  double metrics_interval = 15.0;   // seconds between --metrics-file writes
  // History retention and automatic prune (daemon/prune_task.h): as given,
  // and parsed by CheckPruneOptions.
  std::string retention = "7d";
  int keep_hourly = 0, keep_daily = 0, keep_checkpoints = 0;
  std::string prune_interval = "1h";  // "off": no automatic prune
  std::string prune_grace = "1h";
  int64_t retention_ns = 7LL * 24 * 3600 * 1'000'000'000;
  double prune_interval_s = 3600;  // 0: off
  int64_t prune_grace_ns = 3600LL * 1'000'000'000;
  // Compaction and periodic bases (history/compact.h), on the prune task's
  // thread: as given, and parsed by CheckPruneOptions.
  std::string compact_interval = "1m";                // "off": no background compaction
  std::string base_interval = "1h";                   // "off": no periodic base
  double compact_interval_s = 60;                     // 0: off
  int64_t base_interval_ns = 3600LL * 1'000'000'000;  // 0: off
};

// An error that ends start-up, with the exit code to report.
struct StartError {
  int exit_code;
  std::string message;
};

}  // namespace scribefs
