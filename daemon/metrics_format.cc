// The Prometheus text format of the daemon's figures (daemon/metrics_format.h).
#include "daemon/metrics_format.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace scribefs {

DurationHistogram::DurationHistogram(std::vector<double> bounds) {
  counts_.bounds = std::move(bounds);
  counts_.buckets.assign(counts_.bounds.size(), 0);
}

std::vector<double> DurationHistogram::HoldBounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

void DurationHistogram::Observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // NaN or a clock step: count it, as 0
  std::lock_guard lk(mu_);
  for (size_t i = 0; i < counts_.bounds.size(); ++i) {
    if (seconds <= counts_.bounds[i]) {
      counts_.buckets[i]++;
      break;
    }
  }
  counts_.count++;
  counts_.sum += seconds;
}

DurationHistogram::Counts DurationHistogram::Get() const {
  std::lock_guard lk(mu_);
  Counts c = counts_;
  uint64_t running = 0;
  for (uint64_t& b : c.buckets) {
    running += b;
    b = running;
  }
  return c;
}

namespace {

// Shortest text that reads back as the same double; the format's spellings
// of the special values.
std::string Num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}
std::string Num(uint64_t v) { return std::to_string(v); }
std::string Num(int64_t v) { return std::to_string(v); }
std::string Num(bool v) { return v ? "1" : "0"; }

class Writer {
 public:
  // HELP and TYPE of a family; its samples follow.
  void Family(const std::string& name, const char* type, const char* help) {
    out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  template <typename T>
  void Sample(const std::string& name, T value, const std::string& labels = "") {
    out_ += name + (labels.empty() ? "" : "{" + labels + "}") + " " + Num(value) + "\n";
  }
  template <typename T>
  void One(const std::string& name, const char* type, const char* help, T value) {
    Family(name, type, help);
    Sample(name, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

void WriteJournal(Writer& w, const MetricsSnapshot& m) {
  w.One("scribefs_journal_healthy", "gauge",
        "1 while journal commits succeed; 0 after a failed commit (mutations then get EIO)",
        m.journal_healthy);
  w.One("scribefs_journal_readable", "gauge",
        "1 when the journal figures below could be read for this scrape", m.journal.has_value());
  if (m.journal_size_bytes)
    w.One("scribefs_journal_size_bytes", "gauge", "Size of journal.db plus its write-ahead log",
          *m.journal_size_bytes);
  if (!m.journal) return;
  const auto& j = *m.journal;
  w.One("scribefs_journal_records", "gauge", "Records in the journal (all states)", j.records);
  w.One("scribefs_journal_last_seq", "gauge", "Highest sequence number in the journal",
        j.last_seq);
  if (!m.target) return;  // journal only: nothing is ever uploaded, nothing lags
  w.One("scribefs_replication_lag_seconds", "gauge",
        "Age of the oldest record not yet stored in the target (0 when none is pending)",
        j.lag_s);
  w.One("scribefs_pending_records", "gauge", "Records pending or uploading", j.pending_records);
  w.One("scribefs_pending_files", "gauge", "Distinct paths with a pending or uploading record",
        j.pending_files);
  w.One("scribefs_pending_bytes", "gauge",
        "Sum of the last known size of each path with a pending record", j.pending_bytes);
  w.One("scribefs_failed_records", "gauge",
        "Records failed for good (4xx); `scribectl retry` requeues them", j.failed_records);
}

void WriteUploader(Writer& w, const MetricsSnapshot::Uploader& u) {
  w.One("scribefs_uploads_total", "counter", "Objects stored (PUT or multipart) since start",
        u.uploads);
  w.One("scribefs_partial_uploads_total", "counter",
        "Multipart uploads that re-sent only changed parts since start", u.partial_uploads);
  w.One("scribefs_copies_total", "counter", "Server-side copies (renames) since start", u.copies);
  w.One("scribefs_deletes_total", "counter", "Objects deleted in the target since start",
        u.deletes);
  w.One("scribefs_sent_bytes_total", "counter", "Request body bytes sent to the target since start",
        u.bytes_sent);
  w.One("scribefs_upload_failures_total", "counter",
        "Paths whose records failed for good (4xx other than throttling) since start",
        u.failures);
  w.Family("scribefs_retries_total", "counter",
           "Failed attempts that were tried again since start, by cause");
  for (const auto& [cause, n] : u.retries_by_cause)
    w.Sample("scribefs_retries_total", n, "cause=\"" + EscapeLabelValue(cause) + "\"");
  w.One("scribefs_upload_queue_paths", "gauge", "Paths queued for the uploader", u.queued_paths);
  w.One("scribefs_uploads_in_flight", "gauge", "Paths being stored right now", u.in_flight);
  w.One("scribefs_upload_bwlimit_bytes_per_second", "gauge",
        "Upload bandwidth limit in force (--bwlimit, its timetable or scribectl set), 0 = "
        "unlimited",
        u.bwlimit_bps);
}

void WriteTargets(Writer& w, const std::vector<MetricsSnapshot::Target>& targets) {
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const MetricsSnapshot::Target&);
  };
  const Family families[] = {
      {"scribefs_target_uploads_total", "counter", "Objects stored on the target since start",
       [](const MetricsSnapshot::Target& t) { return double(t.uploads); }},
      {"scribefs_target_upload_failures_total", "counter",
       "Paths whose records failed for good on the target since start",
       [](const MetricsSnapshot::Target& t) { return double(t.failures); }},
      {"scribefs_target_sent_bytes_total", "counter",
       "Request body bytes sent to the target since start",
       [](const MetricsSnapshot::Target& t) { return double(t.bytes_sent); }},
      {"scribefs_target_upload_queue_paths", "gauge", "Paths queued for the target",
       [](const MetricsSnapshot::Target& t) { return double(t.queued_paths); }},
      {"scribefs_target_failing_since_seconds", "gauge",
       "Unix time of the target's first failed attempt since it last stored a path; 0 while "
       "it is not failing (what --on-failure watches)",
       [](const MetricsSnapshot::Target& t) { return t.failing_since_s; }},
  };
  // From the journal: present only when measured.
  struct Measured {
    const char* name;
    const char* type;
    const char* help;
    std::optional<double> (*value)(const MetricsSnapshot::Target&);
  };
  const Measured measured[] = {
      {"scribefs_target_pending_records", "gauge",
       "Journal records the target has not stored yet (pending or uploading)",
       [](const MetricsSnapshot::Target& t) -> std::optional<double> {
         if (!t.pending_records) return std::nullopt;
         return double(*t.pending_records);
       }},
      {"scribefs_target_failed_records", "gauge",
       "Journal records that failed for good on the target (scribectl retry)",
       [](const MetricsSnapshot::Target& t) -> std::optional<double> {
         if (!t.failed_records) return std::nullopt;
         return double(*t.failed_records);
       }},
      {"scribefs_target_lag_seconds", "gauge",
       "Age of the oldest change the target has not stored yet; 0 when it has everything",
       [](const MetricsSnapshot::Target& t) -> std::optional<double> { return t.lag_s; }},
  };
  for (const Measured& f : measured) {
    if (std::none_of(targets.begin(), targets.end(),
                     [&](const MetricsSnapshot::Target& t) { return f.value(t).has_value(); }))
      continue;
    w.Family(f.name, f.type, f.help);
    for (const auto& t : targets)
      if (auto v = f.value(t)) w.Sample(f.name, *v, "target=\"" + EscapeLabelValue(t.name) + "\"");
  }
  for (const Family& f : families) {
    w.Family(f.name, f.type, f.help);
    for (const auto& t : targets)
      w.Sample(f.name, f.value(t), "target=\"" + EscapeLabelValue(t.name) + "\"");
  }
}

void WriteHistory(Writer& w, const MetricsSnapshot::History& h) {
  w.One("scribefs_history_loaded", "gauge",
        "1 once the target's history was read at start (segments are written after that)",
        h.loaded);
  w.One("scribefs_history_stored_through_seq", "gauge",
        "Journal seq the stored timeline segments cover (restorable with restore --at); "
        "scribefs_journal_last_seq minus it is what history does not hold yet",
        h.stored_through_seq);
  w.One("scribefs_history_buffered_entries", "gauge",
        "History entries waiting for the next timeline segment", h.buffered_entries);
  w.One("scribefs_history_segments_written_total", "counter",
        "Timeline segments written since start", h.segments_written);
  w.One("scribefs_history_chunks_uploaded_total", "counter",
        "Content chunks uploaded to the history since start", h.chunks_uploaded);
  w.One("scribefs_history_chunk_bytes_uploaded_total", "counter",
        "Bytes of the content chunks uploaded since start", h.chunk_bytes_uploaded);
  w.One("scribefs_history_chunks_already_stored_total", "counter",
        "Chunks found already stored (identical content is stored once) since start",
        h.chunks_already_stored);
}

void WriteHistogram(Writer& w, const std::string& name, const char* help,
                    const DurationHistogram::Counts& h) {
  w.Family(name, "histogram", help);
  for (size_t i = 0; i < h.bounds.size() && i < h.buckets.size(); ++i)
    w.Sample(name + "_bucket", h.buckets[i], "le=\"" + Num(h.bounds[i]) + "\"");
  w.Sample(name + "_bucket", h.count, "le=\"+Inf\"");
  w.Sample(name + "_sum", h.sum);
  w.Sample(name + "_count", h.count);
}

}  // namespace

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string FormatMetrics(const MetricsSnapshot& m) {
  Writer w;
  w.Family("scribefs_build_info", "gauge", "Always 1; the version as a label");
  w.Sample("scribefs_build_info", int64_t{1}, "version=\"" + EscapeLabelValue(m.version) + "\"");
  w.One("scribefs_start_time_seconds", "gauge", "Unix time the daemon started", m.start_time_s);
  w.One("scribefs_target_configured", "gauge", "1 with a --target, 0 for a journal-only mount",
        m.target);
  WriteJournal(w, m);
  if (m.uploader) WriteUploader(w, *m.uploader);
  if (!m.targets.empty()) WriteTargets(w, m.targets);
  if (m.history) WriteHistory(w, *m.history);
  w.One("scribefs_paused", "gauge", "1 while a pause point holds writes", m.paused);
  w.One("scribefs_held_operations", "gauge", "Mutating operations held by the pause right now",
        m.held_ops);
  if (m.throttle) {
    const auto& t = *m.throttle;
    w.One("scribefs_throttle_state", "gauge",
          "Bounded lag (--max-lag/--max-pending): 0 writers pass, 1 slowed, 2 held",
          static_cast<int64_t>(t.state));
    w.One("scribefs_throttled_seconds_total", "counter",
          "Seconds writers were slowed or held by bounded lag since start", t.seconds_total);
    w.One("scribefs_throttle_delayed_operations_total", "counter",
          "Mutations delayed by bounded lag since start", t.delayed_ops_total);
    w.One("scribefs_throttle_held_operations", "gauge",
          "Mutations held by bounded lag right now", t.held_ops);
    w.One("scribefs_unstored_written_bytes", "gauge",
          "Bytes written through the mount not yet stored in the target (what --max-pending "
          "bounds)",
          t.written_bytes);
  }
  if (m.inodes) {
    w.One("scribefs_inode_table_inodes", "gauge",
          "Inodes the daemon keeps for the kernel's references (and their parent directories)",
          m.inodes->cached);
    w.One("scribefs_inode_table_active_inodes", "gauge",
          "Of those, inodes open, dirty or unlinked (with per-file journaling state)",
          m.inodes->active);
  }
  WriteHistogram(w, "scribefs_checkpoint_hold_seconds",
                 "How long checkpoints held writes, since start", m.checkpoint_hold);
  if (m.captured) {
    w.One("scribefs_checkpoints_captured", "gauge",
          "Checkpoints captured and not yet stored in the target", m.captured->checkpoints);
    w.One("scribefs_checkpoint_spool_bytes", "gauge",
          "Bytes the copy-on-write spools of captured checkpoints hold", m.captured->spool_bytes);
  }
  return w.Take();
}

}  // namespace scribefs
