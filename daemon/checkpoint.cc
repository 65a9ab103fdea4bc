// The `checkpoint` verb: the checkpoint procedure (README, "Checkpoints").
#include "uploader/checkpoint.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <mutex>

#include "daemon/verbs.h"

namespace scribefs::verbs {

json CheckpointVerb(const ControlDeps& d, VerbLocks& shared, const json& req,
                    const ControlRequest& ctx) {
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
  if (d.checkpoint_hold) d.checkpoint_hold->Observe(out["held_ms"].get<double>() / 1000);
  spdlog::info("checkpoint {} taken: {} paths, journal seq {}, writes held {} ms", name, paths,
               pause_seq, out["held_ms"].get<double>());
  return out;
}

}  // namespace scribefs::verbs
