// The `checkpoint` verb: the checkpoint procedure (README, "Checkpoints").
#include "uploader/checkpoint.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/unique_fd.h"
#include "daemon/checkpoint_storer.h"
#include "daemon/manifest_temp_file.h"
#include "daemon/startup_checks.h"
#include "daemon/verbs.h"
#include "journal/reader.h"
#include "journal/trim.h"

namespace scribefs::verbs {
namespace {

// Test hooks: $SCRIBEFS_TEST_MANIFEST_DELAY_MS (tests only) makes writing
// the manifest take that much longer, so that a test can see writers go on
// meanwhile; $SCRIBEFS_TEST_PAUSE_DELAY_MS waits between reading most of the
// frozen set and the pause, so that a test can write in between.
void TestDelay(const char* var) {
  const char* v = getenv(var);
  if (v && *v) std::this_thread::sleep_for(std::chrono::milliseconds(atoll(v)));
}

// How many paths the frozen set's journal watch keeps in memory; tests set
// $SCRIBEFS_TEST_WATCH_MAX_NAMES to see it overflow.
size_t WatchMaxNames() {
  const char* v = getenv("SCRIBEFS_TEST_WATCH_MAX_NAMES");
  return v && *v ? strtoull(v, nullptr, 10) : size_t{1} << 18;
}

// Writes the manifest of `snap` to a temporary file in the state directory
// (constant memory, whatever the number of paths) and stores it at key.
// (A named file: the stores refuse to upload a file without a name.)
StoreResult<PutResult> StoreManifest(const std::string& state_dir, ObjectStore& store,
                                     const std::string& key, ManifestSnapshot& snap,
                                     const ManifestHeader& header, uint64_t* bytes) {
  ManifestTempFile tmp(state_dir, std::string(kCheckpointTempStem) + header.name);
  if (tmp.fd() < 0) return StoreStatus(PosixError("temporary manifest in " + state_dir, errno));
  Status w = snap.WriteManifest(tmp.fd(), header, bytes);
  if (!w.ok()) return StoreStatus(w);
  TestDelay("SCRIBEFS_TEST_MANIFEST_DELAY_MS");
  Metadata meta = {{"scribefs-checkpoint", header.name}};
  return store.Put(key, Payload::FromFile(tmp.fd(), 0, *bytes), meta);
}

// The pause a checkpoint works under: its own (Begin pauses, Resume ends
// it) or the one already in place (left in place).
class Hold {
 public:
  explicit Hold(const ControlDeps& d) : d_(d) {}
  // Pauses, or joins the pause in place. An error answer, or nullopt.
  std::optional<json> Begin(double timeout_s, const std::string& name, json& out) {
    PauseState before = d_.pauser->state();
    since_ = Clock::now();
    owned_ = !before.paused;
    id_ = before.id;
    seq_ = before.seq;
    if (owned_) {
      // With a capture, the pause record is made durable after the resume
      // (CaptureUnderPause), with the capture: no fsync under the hold.
      auto p = d_.pauser->Pause(timeout_s, "checkpoint " + name, /*sync=*/false,
                                /*durable_record=*/d_.storer == nullptr);
      if (!p.ok()) return Error(p.status(), p.status().code() == EBUSY ? "paused" : "");
      id_ = p->id;
      seq_ = p->seq;
      record_write_ = p->record_write;
      out["writeback_ms"] = Tenths(p->writeback_ms);
      out["quiet_ms"] = Tenths(p->quiet_ms);
      out["drain_ms"] = Tenths(p->drain_ms);
      out["ranges_ms"] = Tenths(p->ranges_ms);
      out["pause_record_ms"] = Tenths(p->record_ms);
      since_ = p->since;
    } else {
      out["drain_ms"] = 0;
      out["within_pause"] = seq_;
    }
    out["seq"] = seq_;
    return std::nullopt;
  }
  // Once: the hold ends when the state is captured (or the checkpoint
  // fails before that); later calls return how long it was.
  double Resume() {
    if (held_) return *held_;
    if (!owned_) return *(held_ = MsSince(since_));
    auto r = d_.pauser->Resume("checkpoint", id_);
    held_ = r.ok() ? Tenths(r->held_ms) : MsSince(since_);
    return *held_;
  }
  // Waits until our pause record is written (its commit is queued under the
  // hold, and written meanwhile or after the resume).
  Status RecordWritten() const { return record_write_ ? record_write_->Wait() : Status::Ok(); }
  bool StillPaused() const { return d_.pauser->IsPaused(id_); }
  int64_t seq() const { return seq_; }

 private:
  const ControlDeps& d_;
  Clock::time_point since_;
  bool owned_ = false;
  uint64_t id_ = 0;
  int64_t seq_ = 0;
  std::optional<double> held_;
  std::shared_ptr<Journal::PendingCommit> record_write_;
};

json Failed(Hold& hold, const std::string& name, json err) {
  err["held_ms"] = hold.Resume();
  spdlog::warn("checkpoint {} failed: {}", name, err.value("error", ""));
  return err;
}

// Stores the manifest of one target's snapshot and commits its
// `checkpoint` record. The error answer, or nullopt.
std::optional<json> StoreOneManifest(const ControlDeps& d, size_t i, const std::string& name,
                                     int64_t pause_seq, int64_t time_ns, double held_ms,
                                     ManifestSnapshot& snap, json& out) {
  Replicator& r = d.targets->replicator(i);
  ObjectStore& store = r.store();
  const std::string key = CheckpointManifestKey(name);
  const std::string target = d.targets->name(i);
  auto mt = Clock::now();
  uint64_t bytes = 0;
  auto put = StoreManifest(d.info.state_dir, store, key, snap,
                           {name, time_ns, pause_seq, store.Describe()}, &bytes);
  if (!put.ok())
    return Error(put.status().status().WithContext("checkpoint " + name + ": storing " + key +
                                                   " on " + target));
  out["manifest_ms"] = out.value("manifest_ms", 0.0) + MsSince(mt);
  out["manifest_bytes"] = out.value("manifest_bytes", uint64_t{0}) + bytes;
  json detail = {{"name", name},          {"manifest_key", key}, {"pause_seq", pause_seq},
                 {"paths", snap.paths()}, {"held_ms", held_ms},  {"target", store.Describe()},
                 {"target_name", target}, {"etag", put->etag},   {"version_id", put->version_id}};
  Record rec = ControlRecord(Op::kCheckpoint, detail);
  if (Status s = d.journal->Commit(rec, /*durable=*/true); !s.ok()) {
    (void)store.Delete(key);
    return Error(s.WithContext("checkpoint " + name + ": journal"));
  }
  out["checkpoint_seq"] = rec.seq;
  return std::nullopt;
}

// Today's procedure, when no copy-on-write capture is possible: the
// uploads up to the mark are awaited under the pause, on every target.
json StoreUnderPause(const ControlDeps& d, const std::string& name, Hold& hold,
                     Clock::time_point deadline, const ControlRequest& ctx, json out) {
  const int64_t pause_seq = hold.seq();
  auto up = Clock::now();
  Status s = d.targets->WaitUploadedThrough(pause_seq, deadline, [&] { return ctx.Cancelled(); });
  out["upload_wait_ms"] = MsSince(up);
  if (!s.ok())
    return Failed(hold, name, Error(s.WithContext("checkpoint " + name + ": waiting for uploads")));

  // Each target's objects table as it stands at the pause, in snapshots that
  // outlive the pause; nothing more needs writers held.
  std::vector<std::unique_ptr<ManifestSnapshot>> snaps;
  for (size_t i = 0; i < d.targets->size(); ++i) {
    auto snap = ManifestSnapshot::Take(d.journal->path(), d.targets->replicator(i).target());
    if (!snap.ok()) return Failed(hold, name, Error(snap.status()));
    snaps.push_back(std::move(snap.value()));
  }
  if (!hold.StillPaused())
    return Failed(hold, name,
                  Error("timeout", "checkpoint " + name +
                                       ": the pause ended (timeout or resume) before the state "
                                       "was captured; no checkpoint taken"));
  int64_t time_ns = NowNs();
  const size_t paths = snaps[0]->paths();
  const double held_ms = hold.Resume();

  // The manifests, row by row, while the application writes again.
  json stored_on = json::array();
  for (size_t i = 0; i < snaps.size(); ++i) {
    std::optional<json> err =
        StoreOneManifest(d, i, name, pause_seq, time_ns, held_ms, *snaps[i], out);
    snaps[i].reset();  // ends the read transaction: the WAL may be checkpointed again
    if (err) {
      (*err)["stored_on"] = stored_on;
      return Failed(hold, name, *err);
    }
    stored_on.push_back(d.targets->name(i));
  }
  out["state"] = "stored";
  out["stored_on"] = stored_on;
  out["paths"] = paths;
  out["held_ms"] = held_ms;
  out["time_ns"] = time_ns;
  return out;
}

// The seq through which history's stored segments hold every record, or
// nullopt without history. The daemon's own figure, or the journal's note of
// it when the timeline is not loaded yet (lower, never higher: safe).
Result<std::optional<int64_t>> HistoryStoredThrough(const ControlDeps& d, JournalReader& reader) {
  // The least of the targets that keep history: a record is in a stored
  // segment only once it is in every one of them.
  std::optional<int64_t> least;
  bool loaded = true;
  for (size_t i = 0; d.targets && i < d.targets->size(); ++i) {
    std::optional<HistoryStats> h = d.targets->replicator(i).history_stats();
    if (!h) continue;
    loaded = loaded && h->loaded;
    auto through = static_cast<int64_t>(h->stored_through_seq);
    least = least ? std::min(*least, through) : through;
  }
  if (!least) return std::optional<int64_t>();
  if (loaded) return least;
  auto meta = reader.Meta(kMetaHistoryStoredThrough);
  if (!meta.ok()) return meta.status();
  int64_t through = 0;
  if (*meta) through = strtoll(meta->value().c_str(), nullptr, 10);
  return std::optional<int64_t>(through);
}

// The frozen set: every path (and new path) named by
//  - a record up to the mark not yet stored;
//  - with history, a record up to the mark stored whose history entry is not
//    in a stored segment yet: after a crash it is requeued and its path
//    looked at again (README, "History in the target"), so its state at the
//    mark must come from the capture too.
// Reading the unfinished records costs time in their number (thousands
// while the target is down), so all of it is read before the pause
// (ReadBefore); the records queued since are noted in memory by a journal
// watch, so that the hold reads nothing from the journal (ReadThrough): a
// disk busy writing back GiBs stalled that read for 8 ms.
class FrozenSetReader {
 public:
  // Before the pause: the journal's records up to the watch's start. States
  // only move forward (pending, done, in a stored history segment), so what
  // this finds for those records is a superset of what it would find at
  // the mark; a path stored meanwhile is frozen for nothing (its state is
  // stored once more).
  Status ReadBefore(const ControlDeps& d) {
    auto watch = d.journal->Watch(WatchMaxNames());
    if (!watch.ok()) return watch.status();
    watch_ = std::move(watch.value());
    through_ = watch_->from();  // every record up to it is committed: the queries see it
    auto reader = JournalReader::Open(d.journal->path());
    if (!reader.ok()) return reader.status();
    reader_ = std::move(reader.value());
    auto recs = reader_->Unfinished();
    if (!recs.ok()) return recs.status();
    for (const UnfinishedRecord& r : *recs) Name(r.path, r.new_path);
    auto history = HistoryStoredThrough(d, *reader_);
    if (!history.ok()) return history.status();
    if (*history && **history < through_) {
      JournalFilter f;
      f.since_seq = **history + 1;
      f.until_seq = through_;
      f.state = "done";
      return NameAll(f);
    }
    return Status::Ok();
  }
  // Under the pause: every record queued since ReadBefore, in any state
  // (those up to the mark; any after it are frozen too, a superset as
  // before); then each path as DATADIR holds it now ({0,0}: absent; sorted,
  // unique). Only if more records came than the watch keeps are they read
  // from the journal, after the pause record's write (hold.RecordWritten).
  Result<std::vector<FrozenPath>> ReadThrough(const ControlDeps& d, const Hold& hold) {
    if (!watch_->Names(&names_)) {
      spdlog::warn("checkpoint: too many changes since the journal was read; reading them now");
      read_journal_ = true;
      if (Status w = hold.RecordWritten(); !w.ok()) return w;
      JournalFilter f;
      f.since_seq = through_ + 1;
      if (Status s = NameAll(f); !s.ok()) return s;
    }
    std::vector<FrozenPath> out;
    out.reserve(names_.size());
    for (const std::string& p : names_) {
      struct stat st;
      if (fstatat(d.datadir_fd, p.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        out.push_back({p, {st.st_dev, st.st_ino}});
      else
        out.push_back({p, {0, 0}});
    }
    return out;
  }
  // Where ReadThrough found the records since ReadBefore.
  const char* source() const { return read_journal_ ? "journal" : "memory"; }

 private:
  void Name(const std::string& path, const std::optional<std::string>& new_path) {
    if (!path.empty()) names_.insert(path);
    if (new_path && !new_path->empty()) names_.insert(*new_path);
  }
  Status NameAll(const JournalFilter& f) {
    auto recs = reader_->Query(f);
    if (!recs.ok()) return recs.status();
    for (const Record& r : *recs) Name(r.path, r.new_path);
    return Status::Ok();
  }

  std::unique_ptr<Journal::RecordWatch> watch_;
  bool read_journal_ = false;
  std::unique_ptr<JournalReader> reader_;
  int64_t through_ = 0;
  std::set<std::string> names_;
};

// Writes a file of the state directory durably: write(fd) into path.tmp,
// fsync, rename, fsync of the directory.
Status WriteDurably(const std::string& dir, const std::string& path,
                    const std::function<Status(int)>& write_fn) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return PosixError("creating " + tmp, errno);
  Status s = write_fn(fd.get());
  if (s.ok() && fsync(fd.get()) != 0) s = PosixError("fsync " + tmp, errno);
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) s = PosixError("rename " + tmp, errno);
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  UniqueFd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd && fsync(dfd.get()) != 0) return PosixError("fsync " + dir, errno);
  return Status::Ok();
}

Status WriteString(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PosixError("write", errno);
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Issue 12: capture under the pause (frozen set, CowSpool::Capture, the
// objects table's snapshot), resume, then (writers running) the manifest
// rows and the durable "captured" state; the storer does the rest. nullopt:
// no capture possible (the caller falls back to StoreUnderPause, still
// paused).
std::optional<json> CaptureUnderPause(const ControlDeps& d, const std::string& name, Hold& hold,
                                      FrozenSetReader& frozen_set, json out) {
  CowSpool& spool = d.storer->spool();
  // Each step under the hold is timed: the answer says where a long hold went.
  auto step = Clock::now();
  auto lap = [&](const char* key) {
    out[key] = MsSince(step);
    step = Clock::now();
  };
  auto frozen = frozen_set.ReadThrough(d, hold);
  if (!frozen.ok()) return Failed(hold, name, Error(frozen.status()));
  lap("frozen_ms");
  out["frozen_source"] = frozen_set.source();
  Status cs = spool.Capture({name, hold.seq(), *frozen});
  if (!cs.ok()) {
    spdlog::warn("checkpoint {}: no copy-on-write capture ({}); uploading under the pause", name,
                 cs.message());
    return std::nullopt;
  }
  auto abandon = [&](json err) {
    (void)spool.Release(name);
    return Failed(hold, name, std::move(err));
  };
  lap("capture_ms");
  // Each target's objects (each holds its own objects, with its own etags
  // and versions): one snapshot per target.
  std::vector<std::unique_ptr<ManifestSnapshot>> snaps;
  for (size_t i = 0; i < d.targets->size(); ++i) {
    auto snap = ManifestSnapshot::Take(d.journal->path(), d.targets->replicator(i).target());
    if (!snap.ok()) return abandon(Error(snap.status()));
    snaps.push_back(std::move(snap.value()));
  }
  lap("snapshot_ms");
  if (!hold.StillPaused())
    return abandon(Error("timeout", "checkpoint " + name +
                                        ": the pause ended (timeout or resume) before the state "
                                        "was captured; no checkpoint taken"));
  const int64_t time_ns = NowNs();
  const double held_ms = hold.Resume();

  // Writers run again. Written, then durable before "captured" is
  // answered: the pause record (the mark) and the capture.
  Status durable = hold.RecordWritten();
  if (durable.ok()) durable = d.journal->SyncCommitted();
  if (durable.ok()) durable = spool.Persist(name);
  if (!durable.ok()) return abandon(Error(durable.WithContext("checkpoint " + name)));

  // What the snapshot says of the paths not frozen is
  // final; it goes to a file so that neither the snapshot (which holds the
  // WAL) nor a restart is needed to store the checkpoint.
  auto rt = Clock::now();
  std::set<std::string> frozen_names;
  json frozen_json = json::array();
  for (const FrozenPath& f : *frozen) {
    frozen_names.insert(f.path);
    frozen_json.push_back(f.path);
  }
  const std::string dir = d.storer->dir();
  CheckpointState c;
  c.name = name;
  c.seq = hold.seq();
  c.captured_ns = time_ns;
  c.held_ms = held_ms;
  c.frozen = frozen->size();
  c.targets = d.storer->TargetNames();
  Status s = WriteDurably(dir, d.storer->FrozenPath(name),
                          [&](int fd) { return WriteString(fd, frozen_json.dump()); });
  for (size_t i = 0; s.ok() && i < snaps.size(); ++i) {
    uint64_t rows = 0;
    s = WriteDurably(dir, d.storer->RowsPath(name, c.targets[i]), [&](int fd) {
      return snaps[i]->WriteRows(
          fd, [&](const std::string& p) { return frozen_names.count(p) != 0; }, &rows);
    });
    snaps[i].reset();  // ends the read transaction: the WAL may be checkpointed again
    c.target_rows[c.targets[i]] = rows;
  }
  snaps.clear();
  c.rows = c.target_rows[c.targets[0]];
  if (s.ok()) s = d.storer->Add(c);
  if (!s.ok()) {
    unlink(d.storer->FrozenPath(name).c_str());
    for (const std::string& t : c.targets) unlink(d.storer->RowsPath(name, t).c_str());
    return abandon(Error(s.WithContext("checkpoint " + name)));
  }
  out["state"] = "captured";
  out["rows_ms"] = MsSince(rt);
  out["frozen"] = frozen->size();
  out["paths"] = c.rows;  // known so far; the manifest adds the frozen paths present at the mark
  out["targets"] = c.targets;
  out["held_ms"] = held_ms;
  out["time_ns"] = time_ns;
  return out;
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
  const bool wait = req.value("wait", false);
  if (!d.replicator || !d.targets)
    return Error("no_target", "no --target: a checkpoint needs a target to store it in");
  // Serializes the captures only: stored ones go on in the background.
  std::unique_lock one(shared.checkpoint_mu, std::try_to_lock);
  if (!one.owns_lock()) return Error("busy", "another checkpoint is being captured");
  const std::string key = CheckpointManifestKey(name);

  // Names are never reused: not in the journal, not in flight, not in a target.
  auto recs = CheckpointRecords(d.journal->path());
  if (!recs.ok()) return Error(recs.status());
  for (const Record& r : *recs)
    if (Detail(r).value("name", "") == name)
      return Error("exists", "checkpoint " + name + " exists already (journal record " +
                                 std::to_string(r.seq) + ")");
  if (d.storer && d.storer->InFlight(name))
    return Error("exists", "checkpoint " + name + " exists already (captured, being stored)");
  json targets = json::array();
  for (size_t i = 0; i < d.targets->size(); ++i) {
    const std::string& t = d.targets->name(i);
    targets.push_back(t);
    auto head = d.targets->replicator(i).store().Head(key);
    if (head.ok())
      return Error("exists",
                   "checkpoint " + name + " exists already in target " + t + " (" + key + ")");
    // A target that is down (retryable) is not a reason to refuse: the
    // manifest waits for it (or, without a capture, the wait for the
    // uploads times out like any other, code "timeout").
    if (!head.status().not_found() && !head.status().retryable())
      return Error(head.status().status().WithContext("checking target " + t + " for " + key));
  }

  auto start = Clock::now();
  auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*t));
  json out = {{"name", name},
              {"manifest_key", key},
              {"target", d.replicator->store().Describe()},
              {"targets", targets}};
  FrozenSetReader frozen_set;
  if (d.storer) {
    auto rt = Clock::now();
    if (Status s = frozen_set.ReadBefore(d); !s.ok())
      return Error(s.WithContext("checkpoint " + name + ": reading the journal"));
    out["frozen_before_ms"] = MsSince(rt);
    TestDelay("SCRIBEFS_TEST_PAUSE_DELAY_MS");
  }
  Hold hold(d);
  if (auto err = hold.Begin(*t, name, out)) return *err;
  std::optional<json> answer;
  if (d.storer) answer = CaptureUnderPause(d, name, hold, frozen_set, out);
  if (!answer) {
    // No capture: the old procedure, under the pause; its record durable first.
    if (d.storer) {
      if (Status s = d.journal->Sync(); !s.ok())
        answer = Failed(hold, name, Error(s.WithContext("checkpoint " + name)));
    }
    if (!answer) answer = StoreUnderPause(d, name, hold, deadline, ctx, out);
  }
  one.unlock();
  if (answer->contains("error")) return *answer;
  if (d.checkpoint_hold) d.checkpoint_hold->Observe((*answer)["held_ms"].get<double>() / 1000);
  spdlog::info("checkpoint {} {}: journal seq {}, writes held {} ms", name,
               (*answer)["state"].get<std::string>(), hold.seq(),
               (*answer)["held_ms"].get<double>());
  if (!wait || (*answer)["state"] == "stored") return *answer;

  // --wait: until the storer is done with it, within the timeout.
  CheckpointState c = d.storer->Wait(name, deadline, [&] { return ctx.Cancelled(); });
  (*answer)["state"] = c.state;
  (*answer)["stored_on"] = c.stored_on;
  if (c.state == "stored") {
    (*answer)["stored_ns"] = c.stored_ns;
    (*answer)["paths"] = c.paths;
    (*answer)["manifest_ms"] = c.manifest_ms;
    (*answer)["manifest_bytes"] = c.manifest_bytes;
    return *answer;
  }
  json err = c.state == "failed"
                 ? Error("failed", c.error)
                 : Error("timeout", "checkpoint " + name + " is captured but not stored after " +
                                        std::to_string(static_cast<int64_t>(*t)) +
                                        " s; it stays captured and is stored in the background "
                                        "(see scribectl checkpoints)");
  for (auto& [k, v] : answer->items())
    if (!err.contains(k)) err[k] = v;
  return err;
}

}  // namespace scribefs::verbs
