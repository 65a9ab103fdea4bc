// The `checkpoint` verb: the checkpoint procedure (README, "Checkpoints").
#include "uploader/checkpoint.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include "common/unique_fd.h"
#include "daemon/startup_checks.h"
#include "daemon/verbs.h"

namespace scribefs::verbs {
namespace {

// Test hook: $SCRIBEFS_TEST_MANIFEST_DELAY_MS (tests only) makes writing
// the manifest take that much longer, so that a test can see writers go on
// meanwhile.
void TestManifestDelay() {
  const char* v = getenv("SCRIBEFS_TEST_MANIFEST_DELAY_MS");
  if (v && *v) std::this_thread::sleep_for(std::chrono::milliseconds(atoll(v)));
}

// A file in the state directory, removed when this ends.
class TempFile {
 public:
  explicit TempFile(const std::string& dir, const std::string& stem)
      : path_(dir + "/." + stem + ".XXXXXX") {
    fd_ = UniqueFd(mkostemp(path_.data(), O_CLOEXEC));
    if (!fd_) path_.clear();
  }
  ~TempFile() {
    if (!path_.empty()) unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  int fd() const { return fd_.get(); }

 private:
  std::string path_;
  UniqueFd fd_;
};

// Writes the manifest of `snap` to a temporary file in the state directory
// (constant memory, whatever the number of paths) and stores it at key.
// (A named file: the stores refuse to upload a file without a name.)
StoreResult<PutResult> StoreManifest(const std::string& state_dir, ObjectStore& store,
                                     const std::string& key, ManifestSnapshot& snap,
                                     const ManifestHeader& header, uint64_t* bytes) {
  TempFile tmp(state_dir, std::string(kCheckpointTempStem) + header.name);
  if (tmp.fd() < 0) return StoreStatus(PosixError("temporary manifest in " + state_dir, errno));
  Status w = snap.WriteManifest(tmp.fd(), header, bytes);
  if (!w.ok()) return StoreStatus(w);
  TestManifestDelay();
  Metadata meta = {{"scribefs-checkpoint", header.name}};
  return store.Put(key, Payload::FromFile(tmp.fd(), 0, *bytes), meta);
}

}  // namespace

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
  // Once: the hold ends when the state is captured (or the checkpoint fails
  // before that); later calls return how long it was.
  std::optional<double> held;
  auto resume = [&]() -> double {
    if (held) return *held;
    if (!owned) return *(held = MsSince(held_since));
    auto r = d.pauser->Resume("checkpoint", pause_id);
    held = r.ok() ? std::round(r->held_ms * 10) / 10 : MsSince(held_since);
    return *held;
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

  // The objects table as it stands at the pause, in a snapshot that outlives
  // the pause; nothing more needs writers held.
  auto snap = ManifestSnapshot::Take(d.journal->path());
  if (!snap.ok()) return fail(Error(snap.status()));
  if (!d.pauser->IsPaused(pause_id))
    return fail(Error("timeout", "checkpoint " + name +
                                     ": the pause ended (timeout or resume) before the state was "
                                     "captured; no checkpoint taken"));
  int64_t time_ns = NowNs();
  const size_t paths = (*snap)->paths();
  const double held_ms = resume();

  // The manifest, row by row, while the application writes again.
  auto mt = Clock::now();
  uint64_t bytes = 0;
  auto put = StoreManifest(d.info.state_dir, store, key, **snap,
                           {name, time_ns, pause_seq, store.Describe()}, &bytes);
  snap->reset();  // ends the read transaction: the WAL may be checkpointed again
  if (!put.ok())
    return fail(
        Error(put.status().status().WithContext("checkpoint " + name + ": storing " + key)));
  out["manifest_ms"] = MsSince(mt);
  out["manifest_bytes"] = bytes;
  json detail = {{"name", name},
                 {"manifest_key", key},
                 {"pause_seq", pause_seq},
                 {"paths", paths},
                 {"held_ms", held_ms},
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
  out["held_ms"] = held_ms;
  out["time_ns"] = time_ns;
  if (d.checkpoint_hold) d.checkpoint_hold->Observe(out["held_ms"].get<double>() / 1000);
  spdlog::info("checkpoint {} taken: {} paths, journal seq {}, writes held {} ms", name, paths,
               pause_seq, out["held_ms"].get<double>());
  return out;
}

}  // namespace scribefs::verbs
