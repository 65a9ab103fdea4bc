// The `status` verb: what the daemon serves, the pause, the uploader.
#include <unistd.h>

#include <cmath>

#include "daemon/verbs.h"

namespace scribefs::verbs {
namespace {

json PauseJson(const PauseState& st) {
  json j;
  j["paused"] = st.paused;
  if (st.paused) {
    j["seq"] = st.seq;
    j["since_ns"] = st.since_ns;
    j["until_ns"] = st.until_ns;
    j["timeout_s"] = st.timeout_s;
    j["by"] = st.by;
  }
  j["held_ops"] = st.gate.blocked + st.gate.deferred;
  j["in_flight"] = st.gate.in_flight;
  j["held_total"] = st.gate.held_total;
  if (st.last_resume) {
    j["last_resume"] = {{"seq", st.last_resume->seq},
                        {"reason", st.last_resume->reason},
                        {"pause_seq", st.last_resume->pause_seq},
                        {"held_ms", Tenths(st.last_resume->held_ms)},
                        {"held_ops", st.last_resume->held_ops}};
  }
  return j;
}

// Bounded lag: the backlog, the bounds, whether writers are throttled and why.
json LagJson(LagMonitor& lag) {
  LagMonitor::Snapshot s = lag.snapshot();
  auto opt = [](const auto& v) { return v ? json(*v) : json(nullptr); };
  json j;
  j["oldest_pending_s"] = std::round(s.backlog.oldest_pending_s * 1000) / 1000;
  j["expected_lag_s"] = std::round(s.expected_lag_s * 1000) / 1000;
  // The uploader's pace the expected lag is computed from (null: not
  // measured yet, the policy then assumes a slow one).
  j["queued_paths"] = s.backlog.queued_paths;
  j["seconds_per_path"] = s.backlog.seconds_per_path
                              ? json(std::round(*s.backlog.seconds_per_path * 1000) / 1000)
                              : json(nullptr);
  j["pending_bytes"] = s.backlog.pending_bytes;
  j["max_lag_s"] = opt(s.bounds.max_lag_s);
  j["max_pending_bytes"] = opt(s.bounds.max_pending_bytes);
  j["throttle"] = std::string(ThrottleStateName(s.state));
  j["reason"] = s.reason;
  j["delay_ms"] = static_cast<double>(s.delay.count()) / 1000;
  j["throttled_since_ns"] = s.throttled_since_ns;
  j["held_ops"] = s.held_ops;
  j["delayed_ops_total"] = s.delayed_ops_total;
  j["throttled_s_total"] = std::round(s.throttled_seconds_total * 1000) / 1000;
  // Several bounded targets: each one's (the fields above are the one that binds).
  if (!s.targets.empty()) {
    json lanes = json::array();
    for (const LagMonitor::LaneSnapshot& l : s.targets)
      lanes.push_back({{"name", l.name},
                       {"oldest_pending_s", std::round(l.backlog.oldest_pending_s * 1000) / 1000},
                       {"expected_lag_s", std::round(l.expected_lag_s * 1000) / 1000},
                       {"queued_paths", l.backlog.queued_paths},
                       {"pending_bytes", l.backlog.pending_bytes},
                       {"max_lag_s", opt(l.bounds.max_lag_s)},
                       {"max_pending_bytes", opt(l.bounds.max_pending_bytes)},
                       {"throttle", std::string(ThrottleStateName(l.state))},
                       {"reason", l.reason}});
    j["targets"] = std::move(lanes);
  }
  return j;
}

// One uploader's counters; the upload rate is sampled for the first only.
json UploaderJson(Replicator& r, UploadRate* rate) {
  ReplicatorStats st = r.stats();
  return {{"queued_paths", st.queued_paths},
          {"in_flight", st.in_flight},
          {"uploads", st.uploads},
          {"copies", st.copies},
          {"deletes", st.deletes},
          {"partial_uploads", st.partial_uploads},
          {"retries", st.retries},
          {"retry_causes", RetryCauseCounts(st.retry_causes)},
          {"failures", st.failures},
          {"bytes_sent", st.bytes_sent},
          {"requests", r.store().stats().requests},
          {"upload_rate_bps", rate ? rate->BytesPerSecond() : 0.0},
          {"last_error", st.last_error},
          {"failing_since_ns", st.failing_since_ns}};
}

}  // namespace

json StatusVerb(const ControlDeps& d, const json&, const ControlRequest&) {
  json j;
  j["pid"] = getpid();
  j["version"] = d.info.version;
  j["datadir"] = d.info.datadir;
  j["mountpoint"] = d.info.mountpoint;
  j["state_dir"] = d.info.state_dir;
  j["mode"] = d.info.mode;
  j["started_ns"] = d.info.started_ns;
  j["target"] = d.replicator ? json(d.replicator->store().Describe()) : json(nullptr);
  if (d.probe) {
    TargetProbe::Health h = d.probe->health();
    if (h.unreachable_since_ns != 0) {
      j["target_unreachable_since_ns"] = h.unreachable_since_ns;
      j["target_error"] = h.error;
    }
  }
  Status health = d.journal->health();
  j["journal_ok"] = health.ok();
  if (!health.ok()) j["journal_error"] = health.message();
  j["pause"] = PauseJson(d.pauser->state());
  j["max_pause_s"] = d.pauser->max_pause_s();
  j["uploader"] = d.replicator ? UploaderJson(*d.replicator, d.rate) : json(nullptr);
  // Each target's uploader (issue 16): the first is "uploader" above.
  json uploaders = json::array();
  for (size_t i = 0; d.targets && i < d.targets->size(); ++i) {
    json u = UploaderJson(d.targets->replicator(i), nullptr);
    u["name"] = d.targets->name(i);
    u["target"] = d.targets->replicator(i).store().Describe();
    u["mode"] = d.targets->sync(i) ? "sync" : "async";
    uploaders.push_back(std::move(u));
  }
  j["uploaders"] = std::move(uploaders);
  // History in the target (uploader/history_recorder.h); null when off.
  std::optional<HistoryStats> hs = d.replicator ? d.replicator->history_stats() : std::nullopt;
  if (hs) {
    j["history"] = {{"enabled", true},
                    {"loaded", hs->loaded},
                    {"stored_through_seq", hs->stored_through_seq},
                    {"buffered_entries", hs->buffered_entries},
                    {"segments_written", hs->segments_written},
                    {"chunks_uploaded", hs->chunks_uploaded},
                    {"chunk_bytes_uploaded", hs->chunk_bytes_uploaded},
                    {"chunks_already_stored", hs->chunks_already_stored},
                    {"chunks_refreshed", hs->chunks_refreshed},
                    {"last_error", hs->last_error}};
  } else {
    j["history"] = {{"enabled", false}};
  }
  BandwidthLimiter* bw = d.replicator ? d.replicator->bandwidth() : nullptr;
  j["bandwidth"] = bw ? BandwidthJson(bw->state()) : json(nullptr);
  j["lag"] = d.lag ? LagJson(*d.lag) : json(nullptr);
  // Captured checkpoints, not stored yet (issue 12).
  json captured = json::array();
  if (d.storer)
    for (const CheckpointState& c : d.storer->List())
      if (c.state == "captured") captured.push_back(CheckpointStateJson(c));
  j["checkpoints_captured"] = std::move(captured);
  return j;
}

}  // namespace scribefs::verbs
