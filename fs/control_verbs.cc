#include "fs/control_verbs.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "fs/fuse_adapter.h"
#include "journal/reader.h"
#include "uploader/checkpoint.h"
#include "uploader/reconciler.h"

namespace scribefs {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double MsSince(Clock::time_point t) {
  return std::round(std::chrono::duration<double, std::milli>(Clock::now() - t).count() * 10) / 10;
}

// The "code" of an error answer, from the errno of the status.
std::string CodeOf(const Status& s) {
  switch (s.code()) {
    case ETIMEDOUT:
      return "timeout";
    case EBUSY:
      return "busy";
    case ENOENT:
      return "not_found";
    case EINVAL:
      return "invalid";
    case EEXIST:
      return "exists";
    case ESHUTDOWN:
      return "unmounting";
    case ECANCELED:
      return "cancelled";
    default:
      return "failed";
  }
}

json Error(const Status& s, const std::string& code = "") {
  return json{{"ok", false}, {"error", s.message()}, {"code", code.empty() ? CodeOf(s) : code}};
}

json Error(const std::string& code, const std::string& message) {
  return json{{"ok", false}, {"error", message}, {"code", code}};
}

// A positive number of seconds from request field `key`, or `def`.
Result<double> Seconds(const json& req, const char* key, double def, double max) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) return def;
  if (!it->is_number()) return Status::Error(EINVAL, std::string(key) + " must be a number");
  double v = it->get<double>();
  if (!(v > 0) || v > max)
    return Status::Error(EINVAL, std::string(key) + " must be > 0 and at most " +
                                     std::to_string(static_cast<int64_t>(max)));
  return v;
}

json Detail(const Record& r) {
  if (r.detail.empty()) return json::object();
  json d = json::parse(r.detail, nullptr, false);
  return d.is_object() ? d : json::object();
}

Record ControlRecord(Op op, const json& detail) {
  Record r;
  r.op = op;
  r.path = "";
  r.state = std::string(kStateDone);
  r.detail = detail.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

// Checkpoint records of the journal, oldest first.
Result<std::vector<Record>> CheckpointRecords(const std::string& journal_path) {
  auto reader = JournalReader::Open(journal_path);
  if (!reader.ok()) return reader.status();
  JournalFilter f;
  f.op = std::string(OpName(Op::kCheckpoint));
  return reader.value()->Query(f);
}

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
                        {"held_ms", std::round(st.last_resume->held_ms * 10) / 10},
                        {"held_ops", st.last_resume->held_ops}};
  }
  return j;
}

struct Shared {
  std::mutex checkpoint_mu;  // one checkpoint at a time
  std::mutex rescan_mu;      // one rescan at a time
};

json Status_(const ControlDeps& d, const json&, const ControlRequest&) {
  json j;
  j["pid"] = getpid();
  j["version"] = d.info.version;
  j["datadir"] = d.info.datadir;
  j["mountpoint"] = d.info.mountpoint;
  j["state_dir"] = d.info.state_dir;
  j["mode"] = d.info.mode;
  j["started_ns"] = d.info.started_ns;
  j["target"] = d.replicator ? json(d.replicator->store().Describe()) : json(nullptr);
  Status health = d.journal->health();
  j["journal_ok"] = health.ok();
  if (!health.ok()) j["journal_error"] = health.message();
  j["pause"] = PauseJson(d.pauser->state());
  j["max_pause_s"] = d.pauser->max_pause_s();
  if (d.replicator) {
    ReplicatorStats st = d.replicator->stats();
    j["uploader"] = {{"queued_paths", st.queued_paths},
                     {"in_flight", st.in_flight},
                     {"uploads", st.uploads},
                     {"copies", st.copies},
                     {"deletes", st.deletes},
                     {"partial_uploads", st.partial_uploads},
                     {"retries", st.retries},
                     {"retry_causes", RetryCauseCounts(st.retry_causes)},
                     {"failures", st.failures},
                     {"bytes_sent", st.bytes_sent},
                     {"upload_rate_bps", d.rate ? d.rate->BytesPerSecond() : 0.0},
                     {"last_error", st.last_error}};
  } else {
    j["uploader"] = nullptr;
  }
  return j;
}

json Pause(const ControlDeps& d, const json& req, const ControlRequest& ctx) {
  auto t = Seconds(req, "timeout_s", d.info.default_pause_s, d.pauser->max_pause_s());
  if (!t.ok()) return Error(t.status());
  std::string by = "scribectl";
  if (ctx.peer_pid() > 0) by += " (pid " + std::to_string(ctx.peer_pid()) + ")";
  auto sync = req.find("sync");
  if (sync != req.end() && !sync->is_boolean())
    return Error("invalid", "sync must be true or false");
  bool do_sync = sync != req.end() && sync->get<bool>();
  auto p = d.pauser->Pause(*t, by, do_sync);
  if (!p.ok()) return Error(p.status(), p.status().code() == EBUSY ? "paused" : "");
  return json{{"seq", p->seq},
              {"since_ns", p->since_ns},
              {"until_ns", p->until_ns},
              {"timeout_s", p->timeout_s},
              {"writeback_ms", std::round(p->writeback_ms * 10) / 10},
              {"drain_ms", std::round(p->drain_ms * 10) / 10},
              {"sync_ms", do_sync ? json(std::round(p->sync_ms * 10) / 10) : json(nullptr)},
              {"writeback_complete", p->writeback_complete}};
}

json Resume(const ControlDeps& d, const json&, const ControlRequest&) {
  auto r = d.pauser->Resume("command");
  if (!r.ok()) return Error(r.status(), r.status().code() == ENOENT ? "not_paused" : "");
  return json{{"seq", r->seq},
              {"pause_seq", r->pause_seq},
              {"held_ms", std::round(r->held_ms * 10) / 10},
              {"held_ops", r->held_ops}};
}

json Flush(const ControlDeps& d, const json& req, const ControlRequest& ctx) {
  if (!d.replicator) return Error("no_target", "no --target: nothing is uploaded");
  auto t = Seconds(req, "timeout_s", 60, 7 * 86400);
  if (!t.ok()) return Error(t.status());
  auto start = Clock::now();
  // Byte ranges still in memory belong to what must be uploaded.
  Status s = d.fs->FlushAllRanges();
  if (!s.ok()) return Error(s);
  auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*t));
  // After an unclean stop, what the earlier daemon left in the target is
  // part of "everything so far" (uploader/orphan_sweep.h).
  if (d.sweep) {
    s = d.sweep->Wait(deadline, [&] { return ctx.Cancelled(); });
    if (!s.ok()) return Error(s);
  }
  auto reader = JournalReader::Open(d.journal->path());
  if (!reader.ok()) return Error(reader.status());
  auto max = reader.value()->MaxSeq();
  if (!max.ok()) return Error(max.status());
  s = d.replicator->WaitUploadedThrough(*max, deadline, [&] { return ctx.Cancelled(); });
  if (!s.ok()) return Error(s);
  return json{{"seq", *max}, {"waited_ms", MsSince(start)}};
}

json Retry(const ControlDeps& d, const json&, const ControlRequest&) {
  if (!d.replicator) return Error("no_target", "no --target: nothing is uploaded");
  int64_t failed = 0;
  if (auto reader = JournalReader::Open(d.journal->path()); reader.ok()) {
    JournalFilter f;
    f.state = std::string(kStateFailed);
    if (auto rs = reader.value()->Query(f); rs.ok()) failed = static_cast<int64_t>(rs->size());
  }
  Status s = d.replicator->RetryFailed();
  if (!s.ok()) return Error(s);
  return json{{"requeued", failed}};
}

json Checkpoints(const ControlDeps& d, const json&, const ControlRequest&) {
  json j;
  auto recs = CheckpointRecords(d.journal->path());
  if (!recs.ok()) return Error(recs.status());
  json journal = json::array();
  for (const Record& r : *recs) {
    json det = Detail(r);
    json e = {{"name", det.value("name", "")}, {"seq", r.seq}, {"time_ns", r.time_ns}};
    for (const char* k : {"pause_seq", "manifest_key", "paths", "held_ms", "target"})
      if (det.contains(k)) e[k] = det[k];
    journal.push_back(std::move(e));
  }
  j["journal"] = std::move(journal);
  if (!d.replicator) {
    j["target"] = nullptr;
    j["target_error"] = "no --target";
    return j;
  }
  auto stored = ListStoredCheckpoints(d.replicator->store());
  if (!stored.ok()) {
    j["target"] = nullptr;
    j["target_error"] = stored.status().message();
    return j;
  }
  json target = json::array();
  for (const auto& c : *stored)
    target.push_back({{"name", c.name}, {"key", c.key}, {"size", c.size}, {"mtime", c.mtime}});
  j["target"] = std::move(target);
  return j;
}

json Checkpoint(const ControlDeps& d, Shared& shared, const json& req, const ControlRequest& ctx) {
  auto n = req.find("name");
  if (n == req.end() || !n->is_string()) return Error("invalid", "missing \"name\" (a string)");
  const std::string name = n->get<std::string>();
  if (Status v = ValidateCheckpointName(name); !v.ok()) return Error(v);
  auto t = Seconds(req, "timeout_s", d.info.default_pause_s, d.pauser->max_pause_s());
  if (!t.ok()) return Error(t.status());
  if (!d.replicator)
    return Error("no_target", "no --target: a checkpoint needs a target to store it in");
  std::unique_lock one(shared.checkpoint_mu, std::try_to_lock);
  if (!one.owns_lock()) return Error("busy", "another checkpoint is being taken");
  ObjectStore& store = d.replicator->store();
  const std::string key = CheckpointManifestKey(name);

  // Names are never reused: not in the journal, not in the target.
  auto recs = CheckpointRecords(d.journal->path());
  if (!recs.ok()) return Error(recs.status());
  for (const Record& r : *recs)
    if (Detail(r).value("name", "") == name)
      return Error("exists", "checkpoint " + name + " exists already (journal record " +
                                 std::to_string(r.seq) + ")");
  auto head = store.Head(key);
  if (head.ok())
    return Error("exists", "checkpoint " + name + " exists already in the target (" + key + ")");
  // A target that is down (retryable) is not a reason to refuse: the wait
  // for the uploads times out like any other (code "timeout").
  if (!head.status().not_found() && !head.status().retryable())
    return Error(head.status().status().WithContext("checking the target for " + key));

  // Pause, or work inside the pause that is already in place.
  auto start = Clock::now();
  PauseState before = d.pauser->state();
  auto held_since = Clock::now();
  bool owned = !before.paused;
  uint64_t pause_id = before.id;
  int64_t pause_seq = before.seq;
  json out = {{"name", name}, {"manifest_key", key}, {"target", store.Describe()}};
  if (owned) {
    auto p = d.pauser->Pause(*t, "checkpoint " + name);
    if (!p.ok()) return Error(p.status(), p.status().code() == EBUSY ? "paused" : "");
    pause_id = p->id;
    pause_seq = p->seq;
    out["writeback_ms"] = std::round(p->writeback_ms * 10) / 10;
    out["drain_ms"] = std::round(p->drain_ms * 10) / 10;
    held_since = p->since;
  } else {
    out["drain_ms"] = 0;
    out["within_pause"] = pause_seq;
  }
  out["seq"] = pause_seq;
  auto resume = [&]() -> double {
    if (!owned) return MsSince(held_since);
    auto r = d.pauser->Resume("checkpoint", pause_id);
    return r.ok() ? std::round(r->held_ms * 10) / 10 : MsSince(held_since);
  };
  auto fail = [&](json err) {
    err["held_ms"] = resume();
    spdlog::warn("checkpoint {} failed: {}", name, err.value("error", ""));
    return err;
  };

  // Everything up to the pause record must be in the target.
  auto up = Clock::now();
  auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*t));
  Status s =
      d.replicator->WaitUploadedThrough(pause_seq, deadline, [&] { return ctx.Cancelled(); });
  out["upload_wait_ms"] = MsSince(up);
  if (!s.ok()) return fail(Error(s.WithContext("checkpoint " + name + ": waiting for uploads")));

  // The manifest, from the objects table as it stands at the pause.
  auto mt = Clock::now();
  size_t paths = 0;
  int64_t time_ns = NowNs();
  auto manifest =
      BuildManifest(d.journal->path(), {name, time_ns, pause_seq, store.Describe()}, &paths);
  if (!manifest.ok()) return fail(Error(manifest.status()));
  if (!d.pauser->IsPaused(pause_id))
    return fail(Error("timeout", "checkpoint " + name +
                                     ": the pause ended (timeout or resume) before the manifest "
                                     "was complete; no checkpoint taken"));
  std::string body =
      manifest->dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  manifest = nlohmann::ordered_json();  // free it early
  Metadata meta = {{"scribefs-checkpoint", name}};
  auto put = store.Put(key, Payload::FromMemory(body), meta);
  if (!put.ok())
    return fail(
        Error(put.status().status().WithContext("checkpoint " + name + ": storing " + key)));
  out["manifest_ms"] = MsSince(mt);
  out["manifest_bytes"] = body.size();
  if (!d.pauser->IsPaused(pause_id)) {
    (void)store.Delete(key);
    return fail(Error("timeout", "checkpoint " + name +
                                     ": the pause ended (timeout or resume) before the checkpoint "
                                     "was complete; no checkpoint taken"));
  }
  json detail = {{"name", name},
                 {"manifest_key", key},
                 {"pause_seq", pause_seq},
                 {"paths", paths},
                 {"held_ms", MsSince(held_since)},
                 {"target", store.Describe()},
                 {"etag", put->etag},
                 {"version_id", put->version_id}};
  Record rec = ControlRecord(Op::kCheckpoint, detail);
  s = d.journal->Commit(rec, /*durable=*/true);
  if (!s.ok()) {
    (void)store.Delete(key);
    return fail(Error(s.WithContext("checkpoint " + name + ": journal")));
  }
  out["checkpoint_seq"] = rec.seq;
  out["paths"] = paths;
  out["held_ms"] = resume();
  out["time_ns"] = time_ns;
  spdlog::info("checkpoint {} taken: {} paths, journal seq {}, writes held {} ms", name, paths,
               pause_seq, out["held_ms"].get<double>());
  return out;
}

// Reconciliation on the live mount: what changed in DATADIR behind the
// mount's back (with a MOUNTPOINT, DATADIR stays reachable) is journaled as
// `reconcile` records and uploaded. The tree walk holds nothing; the final
// check of each difference runs with the mutation gate closed for a moment
// (PauseController::Hold): see ReconcileOptions::quiesce for why that, plus
// the journal order, neither reports what the mount itself did nor loses
// anything. During a pause that final check waits for the resume: a pause
// promises that the journal does not change.
json Rescan(const ControlDeps& d, Shared& shared, const json& req, const ControlRequest& ctx) {
  auto t = Seconds(req, "timeout_s", 7 * 86400, 7 * 86400);
  if (!t.ok()) return Error(t.status());
  if (!d.replicator)
    return Error("no_target", "no --target: rescan compares DATADIR with what the target holds");
  std::unique_lock one(shared.rescan_mu, std::try_to_lock);
  if (!one.owns_lock()) return Error("busy", "another rescan is running");
  auto start = Clock::now();
  auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*t));
  Replicator* rp = d.replicator;
  bool waited_for_pause = false;
  ReconcileOptions o;
  o.scan = "rescan";
  o.excluded = [rp](const std::string& p) { return rp->IsExcluded(p); };
  o.cancelled = [&] { return ctx.Cancelled() || Clock::now() > deadline; };
  o.quiesce = [&](const std::function<Status()>& check) -> Status {
    for (;;) {
      // Mutations in flight get at most 10 s to finish: the gate holds every
      // new one while it waits.
      auto drain = std::min(deadline, Clock::now() + std::chrono::seconds(10));
      auto h = d.pauser->Hold(drain, check);
      if (h.ok() || h.status().code() != EBUSY) return h.status();
      if (!waited_for_pause) spdlog::info("rescan: waiting for the pause to end");
      waited_for_pause = true;
      if (ctx.Cancelled()) return Status::Error(ECANCELED, "rescan cancelled");
      if (Clock::now() > deadline)
        return Status::Error(ETIMEDOUT, "rescan timed out waiting for the pause to end");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };
  auto rep = ReconcileTree(d.journal, d.datadir_fd, o);
  if (!rep.ok()) {
    Status s = rep.status();
    if (s.code() == ECANCELED && Clock::now() > deadline && !ctx.Cancelled())
      s = Status::Error(ETIMEDOUT, "rescan timed out");
    spdlog::warn("rescan failed: {}", s.message());
    return Error(s.WithContext("rescan"));
  }
  spdlog::info(
      "rescan: {} entries in {:.3f} s: {} new, {} changed, {} missing, {} left to pending "
      "records; writes held {:.1f} ms",
      rep->scanned, rep->seconds, rep->new_paths, rep->changed, rep->missing, rep->pending,
      rep->hold_ms);
  return json{{"scanned", rep->scanned},
              {"new", rep->new_paths},
              {"changed", rep->changed},
              {"missing", rep->missing},
              {"pending", rep->pending},
              {"records", rep->new_paths + rep->changed + rep->missing},
              {"seconds", std::round(rep->seconds * 1000) / 1000},
              {"hold_ms", std::round(rep->hold_ms * 10) / 10},
              {"waited_for_pause", waited_for_pause}};
}

}  // namespace

void UploadRate::Sample(uint64_t bytes_sent) {
  std::lock_guard lk(mu_);
  auto now = Clock::now();
  samples_.push_back({now, bytes_sent});
  while (samples_.size() > 2 && now - samples_.front().first > std::chrono::seconds(10))
    samples_.pop_front();
}

double UploadRate::BytesPerSecond() const {
  std::lock_guard lk(mu_);
  if (samples_.size() < 2) return 0;
  double dt = std::chrono::duration<double>(samples_.back().first - samples_.front().first).count();
  if (dt <= 0) return 0;
  return std::round(static_cast<double>(samples_.back().second - samples_.front().second) / dt);
}

std::map<std::string, ControlHandler> MakeControlHandlers(const ControlDeps* deps) {
  auto shared = std::make_shared<Shared>();
  const ControlDeps& d = *deps;
  std::map<std::string, ControlHandler> h;
  h["status"] = [&d](const json& r, const ControlRequest& c) { return Status_(d, r, c); };
  h["pause"] = [&d](const json& r, const ControlRequest& c) { return Pause(d, r, c); };
  h["resume"] = [&d](const json& r, const ControlRequest& c) { return Resume(d, r, c); };
  h["flush"] = [&d](const json& r, const ControlRequest& c) { return Flush(d, r, c); };
  h["retry"] = [&d](const json& r, const ControlRequest& c) { return Retry(d, r, c); };
  h["checkpoints"] = [&d](const json& r, const ControlRequest& c) { return Checkpoints(d, r, c); };
  h["checkpoint"] = [&d, shared](const json& r, const ControlRequest& c) {
    return Checkpoint(d, *shared, r, c);
  };
  h["rescan"] = [&d, shared](const json& r, const ControlRequest& c) {
    return Rescan(d, *shared, r, c);
  };
  return h;
}

namespace {

PauseOptions MakePauseOptions(const ControlPlane::Options& o) {
  PauseOptions po;
  po.max_pause_s = o.max_pause_s;
  // Writes the kernel still caches for the mount (writeback cache) reach us
  // before the gate closes: syncfs() on the mount itself.
  po.writeback = [mountpoint = o.info.mountpoint]() -> Status {
    UniqueFd m(open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!m) return PosixError("open " + mountpoint, errno);
    if (syncfs(m.get()) != 0) return PosixError("syncfs " + mountpoint, errno);
    return Status::Ok();
  };
  if (o.datadir_fd >= 0) {
    po.sync_backing = [fd = o.datadir_fd]() -> Status {
      if (syncfs(fd) != 0) return PosixError("syncfs DATADIR", errno);
      return Status::Ok();
    };
  }
  return po;
}

}  // namespace

ControlPlane::ControlPlane(MutationGate* gate, Filesystem* fs, Journal* journal,
                           Replicator* replicator, Options options)
    : gate_(gate),
      options_(std::move(options)),
      pauser_(gate, fs, journal, MakePauseOptions(options_)) {
  deps_.info = options_.info;
  deps_.journal = journal;
  deps_.fs = fs;
  deps_.pauser = &pauser_;
  deps_.replicator = replicator;
  deps_.rate = &rate_;
  deps_.sweep = options_.sweep;
  deps_.datadir_fd = options_.datadir_fd;
}

ControlPlane::~ControlPlane() { Stop(); }

Status ControlPlane::Start() {
  auto s = ControlServer::Start(options_.socket_path, MakeControlHandlers(&deps_));
  if (!s.ok()) return s.status();
  server_ = std::move(s.value());
  return Status::Ok();
}

void ControlPlane::WatchSession(FuseServer* server) {
  watcher_ = std::thread([this, server] {
    int tick = 0;
    while (!watch_stop_.load()) {
      if (server->Exiting()) {
        pauser_.Shutdown();
        return;
      }
      if (deps_.replicator && tick++ % 10 == 0)
        rate_.Sample(deps_.replicator->store().stats().bytes_sent);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

void ControlPlane::Stop() {
  watch_stop_ = true;
  if (watcher_.joinable()) watcher_.join();
  pauser_.Shutdown();
  if (!gate_->WaitReleased(Clock::now() + std::chrono::seconds(30)))
    spdlog::warn("held operations still running 30 s after the unmount");
  if (server_) server_->Stop();
  server_.reset();
}

}  // namespace scribefs
