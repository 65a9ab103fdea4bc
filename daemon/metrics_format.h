// The Prometheus text exposition format (version 0.0.4) of the daemon's
// figures: MetricsSnapshot holds the values, FormatMetrics turns them into
// the text that GET /metrics answers and --metrics-file holds (README,
// "Monitoring (Prometheus)"). Pure: no I/O, no clocks; the collector
// (daemon/metrics_collect.h) fills the snapshot, the server
// (daemon/metrics_server.h) sends the text.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace scribefs {

// A Prometheus histogram of durations in seconds with fixed upper bounds.
// Thread-safe: Observe and Get may run concurrently.
class DurationHistogram {
 public:
  struct Counts {
    std::vector<double> bounds;     // upper bounds, ascending (+Inf implied)
    std::vector<uint64_t> buckets;  // cumulative count per bound
    uint64_t count = 0;             // all observations (the +Inf bucket)
    double sum = 0;                 // seconds
  };
  // bounds: ascending upper bounds in seconds.
  explicit DurationHistogram(std::vector<double> bounds);
  void Observe(double seconds);
  Counts Get() const;

  // The bounds of the checkpoint hold time: a hold is meant to last
  // milliseconds; seconds mean writers stalled.
  static std::vector<double> HoldBounds();

 private:
  mutable std::mutex mu_;
  Counts counts_;  // buckets not cumulative here: Get() sums them
};

// Everything /metrics reports. Optional parts are left out of the text when
// unset (a journal-only mount has no uploader; a journal that could not be
// read has no journal figures, and scribefs_journal_readable says so).
struct MetricsSnapshot {
  std::string version;
  double start_time_s = 0;  // Unix time the daemon started
  bool target = false;      // a --target is configured

  struct Journal {
    int64_t records = 0;
    int64_t last_seq = 0;
    int64_t pending_records = 0;  // pending or uploading
    int64_t pending_files = 0;
    int64_t pending_bytes = 0;
    int64_t failed_records = 0;
    double lag_s = 0;  // age of the oldest pending record, 0 when none
  };
  std::optional<Journal> journal;
  std::optional<int64_t> journal_size_bytes;  // journal.db plus its WAL
  bool journal_healthy = true;                // the daemon's journal commits work

  struct Uploader {
    uint64_t uploads = 0, copies = 0, deletes = 0, partial_uploads = 0;
    uint64_t failures = 0, bytes_sent = 0;
    std::map<std::string, uint64_t> retries_by_cause;
    uint64_t queued_paths = 0, in_flight = 0;
    uint64_t bwlimit_bps = 0;  // the upload limit in force, 0 = unlimited
  };
  std::optional<Uploader> uploader;
  // Each target's uploader (issue 16), labelled target="NAME"; the families
  // above are the first target's.
  struct Target {
    std::string name;
    uint64_t uploads = 0, failures = 0, bytes_sent = 0, queued_paths = 0;
    double failing_since_s = 0;  // Unix seconds; 0 while not failing
    // What the journal says the target lacks (unset: not measured).
    std::optional<int64_t> pending_records, failed_records;
    std::optional<double> lag_s;  // age of the oldest change not stored on it (0: none)
  };
  std::vector<Target> targets;

  // History in the target (uploader/history_recorder.h); unset when off.
  struct History {
    bool loaded = false;
    uint64_t stored_through_seq = 0;
    uint64_t buffered_entries = 0;
    uint64_t segments_written = 0;
    uint64_t chunks_uploaded = 0, chunk_bytes_uploaded = 0, chunks_already_stored = 0;
  };
  std::optional<History> history;

  bool paused = false;
  uint64_t held_ops = 0;

  // Bounded lag (daemon/lag_monitor.h); unset without a target.
  struct Throttle {
    int state = 0;  // 0 none, 1 slowed, 2 held
    double seconds_total = 0;
    uint64_t delayed_ops_total = 0;
    uint64_t held_ops = 0;
    uint64_t written_bytes = 0;  // what --max-pending bounds
  };
  std::optional<Throttle> throttle;

  // The FUSE layer's inode table (fs/inode_table.h); unset when not wired.
  struct Inodes {
    uint64_t cached = 0;  // inodes the kernel references, plus their parents
    uint64_t active = 0;  // of those, with open/dirty/unlinked state (InodeActive)
  };
  std::optional<Inodes> inodes;
  DurationHistogram::Counts checkpoint_hold;
  // Captured checkpoints not stored yet, and the bytes their copy-on-write
  // spools hold (daemon/checkpoint_storer.h); unset without a storer.
  struct Captured {
    uint64_t checkpoints = 0;
    uint64_t spool_bytes = 0;
  };
  std::optional<Captured> captured;
};

// The text exposition format: HELP and TYPE before every family, counters
// ending in _total, names prefixed scribefs_, one trailing newline.
std::string FormatMetrics(const MetricsSnapshot& m);

// A label value escaped as the format requires (\\, \", \n).
std::string EscapeLabelValue(const std::string& v);

}  // namespace scribefs
