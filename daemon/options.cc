// The scribefs command line (daemon/options.h).
#include "daemon/options.h"

#include <CLI/CLI.hpp>

#include "daemon/daemon.h"

namespace scribefs {
namespace {

// DATADIR, MOUNTPOINT and how the mount behaves (FUSE, kernel caches, logs).
void AddMountOptions(CLI::App& app, Config& cfg) {
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
}

}  // namespace

std::optional<int> ParseCommandLine(int argc, char** argv, Config& cfg) {
  CLI::App app{
      "scribefs - a FUSE passthrough filesystem that journals every change to SQLite.\n\n"
      "Mounts over DATADIR (or on MOUNTPOINT) and records every write, close and\n"
      "namespace change in STATE_DIR/journal.db before it reaches DATADIR. Inspect\n"
      "the journal with `scribectl -m DATADIR journal`. Stop with SIGTERM or\n"
      "`fusermount3 -u MOUNTPOINT`.",
      "scribefs"};
  AddMountOptions(app, cfg);
  AddReplicationOptions(app, cfg);
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
  app.footer(
      "Exit codes: 0 ok, 1 runtime failure, 2 bad usage or unusable DATADIR/state dir,\n"
      "3 another daemon already serves this DATADIR or state dir.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  return std::nullopt;
}

}  // namespace scribefs
