// The daemon's figures for /metrics (daemon/metrics_collect.h).
#include "daemon/metrics_collect.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

namespace scribefs {
namespace {

std::optional<int64_t> FileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<int64_t>(st.st_size);
}

}  // namespace

void MetricsCollector::CollectTargets(MetricsSnapshot& m) {
  for (size_t i = 0; src_.targets && i < src_.targets->size(); ++i) {
    Replicator& r = src_.targets->replicator(i);
    ReplicatorStats st = r.stats();
    MetricsSnapshot::Target t{
        src_.targets->name(i), st.uploads,      st.failures,
        st.bytes_sent,         st.queued_paths, static_cast<double>(st.failing_since_ns) / 1e9};
    // What the journal says it lacks: with one target the journal's own
    // figures; with several, one count each (bounded by the pending work).
    if (src_.targets->size() == 1 && m.journal) {
      t.pending_records = m.journal->pending_records;
      t.failed_records = m.journal->failed_records;
      t.lag_s = m.journal->lag_s;
    } else if (src_.targets->size() > 1) {
      std::lock_guard lk(mu_);
      if (reader_) {
        auto left = reader_->UnfinishedThrough(INT64_MAX, r.target());
        if (left.ok()) {
          t.pending_records = left->pending;
          t.failed_records = left->failed;
          t.lag_s =
              left->oldest_pending_ns
                  ? std::max(0.0, static_cast<double>(NowNs() - *left->oldest_pending_ns) / 1e9)
                  : 0.0;
        }
      }
    }
    m.targets.push_back(std::move(t));
  }
}

bool ReuseJournalFigures(std::chrono::steady_clock::duration took,
                         std::chrono::steady_clock::duration age) {
  return age < took * kJournalFiguresReuse;
}

void MetricsCollector::CollectJournal(MetricsSnapshot& m) {
  const std::string& path = src_.journal->path();
  std::lock_guard lk(mu_);
  if (!reader_) {
    auto r = JournalReader::Open(path);
    if (r.ok()) reader_ = std::move(r.value());
  }
  const auto now = std::chrono::steady_clock::now();
  if (reader_ && (!stats_ || !ReuseJournalFigures(stats_took_, now - stats_at_))) {
    auto st = reader_->Stats();
    if (st.ok()) {
      stats_ = std::move(*st);
      stats_at_ = now;
      stats_took_ = std::chrono::steady_clock::now() - now;
    } else {
      spdlog::debug("metrics: journal stats: {}", st.status().message());
      reader_.reset();  // a fresh connection next time
      stats_.reset();
    }
  }
  if (stats_) {
    const JournalStats* st = &*stats_;
    MetricsSnapshot::Journal j;
    j.records = st->records;
    j.last_seq = st->max_seq;
    j.pending_records = st->pending_records;
    j.pending_files = st->pending_files;
    j.pending_bytes = st->pending_bytes;
    auto failed = st->by_state.find(std::string(kStateFailed));
    j.failed_records = failed == st->by_state.end() ? 0 : failed->second;
    if (st->oldest_pending_ns)
      j.lag_s = std::max(0.0, static_cast<double>(NowNs() - *st->oldest_pending_ns) / 1e9);
    m.journal = j;
  }
}

MetricsSnapshot MetricsCollector::Collect() {
  MetricsSnapshot m;
  m.version = src_.version;
  m.start_time_s = static_cast<double>(src_.started_ns) / 1e9;
  m.target = src_.replicator != nullptr;
  m.journal_healthy = src_.journal->health().ok();
  const std::string& path = src_.journal->path();
  if (auto db = FileSize(path)) m.journal_size_bytes = *db + FileSize(path + "-wal").value_or(0);
  CollectJournal(m);
  if (src_.replicator) {
    ReplicatorStats st = src_.replicator->stats();
    MetricsSnapshot::Uploader u;
    u.uploads = st.uploads;
    u.copies = st.copies;
    u.deletes = st.deletes;
    u.partial_uploads = st.partial_uploads;
    u.failures = st.failures;
    u.bytes_sent = st.bytes_sent;
    u.retries_by_cause = RetryCauseCounts(st.retry_causes);
    u.queued_paths = st.queued_paths;
    u.in_flight = st.in_flight;
    if (BandwidthLimiter* bw = src_.replicator->bandwidth()) u.bwlimit_bps = bw->state().limit;
    m.uploader = u;
    if (std::optional<HistoryStats> hs = src_.replicator->history_stats()) {
      MetricsSnapshot::History h;
      h.loaded = hs->loaded;
      h.stored_through_seq = hs->stored_through_seq;
      h.buffered_entries = hs->buffered_entries;
      h.segments_written = hs->segments_written;
      h.chunks_uploaded = hs->chunks_uploaded;
      h.chunk_bytes_uploaded = hs->chunk_bytes_uploaded;
      h.chunks_already_stored = hs->chunks_already_stored;
      m.history = h;
    }
  }
  CollectTargets(m);
  if (src_.pauser) {
    PauseState ps = src_.pauser->state();
    m.paused = ps.paused;
    m.held_ops = ps.gate.blocked + ps.gate.deferred;
  }
  if (src_.lag) {
    LagMonitor::Snapshot s = src_.lag->snapshot();
    MetricsSnapshot::Throttle t;
    t.state = static_cast<int>(s.state);
    t.seconds_total = s.throttled_seconds_total;
    t.delayed_ops_total = s.delayed_ops_total;
    t.held_ops = s.held_ops;
    t.written_bytes = s.backlog.pending_bytes;
    m.throttle = t;
  }
  if (src_.inodes) m.inodes = MetricsSnapshot::Inodes{src_.inodes->size(), Inode::ActiveCount()};
  if (src_.checkpoint_hold)
    m.checkpoint_hold = src_.checkpoint_hold->Get();
  else
    m.checkpoint_hold = DurationHistogram(DurationHistogram::HoldBounds()).Get();
  if (src_.storer) {
    MetricsSnapshot::Captured c;
    for (const CheckpointState& cs : src_.storer->List())
      if (cs.state == "captured") {
        c.checkpoints++;
        c.spool_bytes += cs.spool_bytes;
      }
    m.captured = c;
  }
  return m;
}

}  // namespace scribefs
