// Replicator: replays the journal to an ObjectStore.
//
// A dispatcher thread reads pending records (woken by every journal commit) and
// groups them by path; N workers reconcile one path at a time with the target:
// the path's *current* local state is what gets stored, so many changes to one
// path collapse into one upload. Per path, records are handled in journal
// order; a path is never handled by two workers at once. A file still open for
// writing waits for its close (or `open_file_delay`, for files that stay open).
//
// Checkpoints (issue 12): a path frozen in a live capture of a checkpoint
// (uploader/marked_states.h) that has records <= the capture's mark S gets a
// pass for those records alone, which stores the path as it was at S, read
// from the capture (without waiting for the file's close); its later records
// get a live pass afterwards. With several captures, the smallest mark first.
// When the capture is abandoned, the path goes live.
//
// Errors: retryable ones (network, 5xx, throttling, a file changing during
// its upload) are retried with exponential backoff and jitter, without limit
// (each request first a few times on its own, see PlanExecutor),
// the attempts and last error visible in the journal; permanent ones mark the
// records failed with the server's code and message until RetryFailed().
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/unique_fd.h"
#include "journal/journal.h"
#include "journal/range_set.h"
#include "journal/record.h"
#include "journal/remote_index.h"
#include "journal/targets.h"
#include "journal/upload_waiter.h"
#include "uploader/bandwidth.h"
#include "uploader/exclude_filter.h"
#include "uploader/history_recorder.h"
#include "uploader/marked_states.h"
#include "uploader/object_store.h"
#include "uploader/plan_executor.h"

namespace scribefs {

struct ReplicatorOptions {
  // The target's id in the journal (journal/targets.h): its state of the
  // records and what it holds (the objects table).
  int64_t target = kFirstTarget;
  int workers = 4;
  uint64_t part_size = 8ull << 20;
  int part_parallelism = 4;   // parts of one file in flight at once
  bool delete_remote = true;  // --delete propagate (false: keep)
  std::vector<std::string> excludes = DefaultExcludes();
  std::chrono::milliseconds open_file_delay{10000};
  // Sync mode: every change is awaited by the operation that made it, so a
  // file being written is not held back until its close.
  bool sync_mode = false;
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds initial_backoff{250};
  // The upload limit the store applies (TargetOptions::bandwidth); the
  // replicator only holds it for status and cancels it when Stop's grace
  // ends, so that no worker waits for tokens past it. May be null.
  std::shared_ptr<BandwidthLimiter> bandwidth;
  // History in the target (--history, uploader/history_recorder.h): every
  // path stored also yields a timeline entry, and files' content is stored
  // as chunks. Off: the target is exactly as without history.
  bool history = false;
  std::chrono::milliseconds history_interval{5000};
  size_t history_max_entries = 10000;
  // The daemon's --prune-grace (HistoryRecorderOptions::prune_grace_ns).
  int64_t history_prune_grace_ns = history::kDefaultChunkGraceNs;
  // Niceness of the upload threads (dispatcher, workers, history; 0: as the
  // daemon): the daemon's --upload-nice in async mode, 0 in sync mode (see
  // its MakeReplicatorOptions).
  int nice = 0;
};

struct ReplicatorStats {
  uint64_t uploads = 0, copies = 0, deletes = 0, skipped_unchanged = 0;
  // retries: failed attempts that were tried again: one request (again
  // after a short backoff, a few times), or a path's upload as a whole
  // (later, with exponential backoff, without limit). failures: records
  // failed for good (4xx).
  uint64_t retries = 0, failures = 0, partial_uploads = 0;
  // unstorable: paths no store can hold (a key over 1,024 bytes), skipped:
  // their records are marked 'skipped' with the reason, so that they do not
  // block flush and checkpoints forever.
  uint64_t unstorable = 0;
  // The retries by cause; they add up to `retries`.
  struct RetryCauses {
    uint64_t server_error = 0;  // HTTP 5xx other than 503 (500 InternalError, ...)
    uint64_t throttled = 0;     // 503 (SlowDown, ServiceUnavailable), 429, throttling codes
    uint64_t network = 0;       // no HTTP answer: refused, reset, cut short, timed out
    uint64_t changed = 0;       // the local file changed while it was being stored
    uint64_t other = 0;         // other retryable errors (e.g. 400 RequestTimeout, BadDigest)
  } retry_causes;
  uint64_t bytes_sent = 0;  // request bodies sent to the store
  size_t queued_paths = 0, in_flight = 0;
  std::string last_error;
  // Since when the target fails (wall clock, ns): the first failed attempt
  // (a retry, or a record failed for good) after the last stored path; 0
  // while none failed since. What --on-failure watches (daemon/failure_alert.h).
  int64_t failing_since_ns = 0;
};

// The retry causes by name (server_error, throttled, network, changed,
// other), as StatsJson and the control socket's status show them.
std::map<std::string, uint64_t> RetryCauseCounts(const ReplicatorStats::RetryCauses& causes);

class Replicator : public UploadWaiter {
 public:
  // root_fd: a descriptor of DATADIR (the replicator dups it).
  static Result<std::unique_ptr<Replicator>> Create(Journal* journal, int root_fd,
                                                    std::unique_ptr<ObjectStore> store,
                                                    ReplicatorOptions options);
  ~Replicator() override;

  // Resets records left 'uploading' by an earlier daemon to 'pending', then
  // starts. Before its first upload, the uploader aborts the multipart
  // uploads an earlier daemon of this mount left unfinished.
  Status Start();
  // Stops taking new work and waits up to `grace` for uploads in flight.
  void Stop(std::chrono::milliseconds grace);
  // New records were committed (called from the journal's commit listener).
  void Notify();

  // Sync mode: waits for the record's own outcome. An async replicator keeps
  // no note of finished records (a backlog of millions would be millions of
  // notes): it waits as WaitUploadedThrough(seq) does.
  Status WaitUploaded(int64_t seq, std::chrono::steady_clock::time_point deadline) override;
  // Ok when nothing is pending or in flight (failed records do not count).
  Status WaitIdle(std::chrono::steady_clock::time_point deadline);
  // Requeues every failed record.
  Status RetryFailed();
  // The checkpoints' captures (null: none). Set before Start, or at any
  // time; `marked` must stay valid until Stop() returned.
  void SetMarkedStates(std::shared_ptr<const MarkedStates> marked);

  // ---- pause points (defined in replicator_drain.cc) ----
  // Waits until no record with seq <= `seq` is pending or uploading. While
  // it waits, files still open for writing are uploaded at once instead of
  // after open_file_delay (a pause holds their writes, so they are stable).
  // ETIMEDOUT at the deadline, ECANCELED when cancelled() turns true, EIO
  // when records <= seq failed (they stay failed; `scribectl retry`).
  // progress, if set, is called about every 200 ms.
  struct DrainProgress {
    int64_t pending = 0;        // records <= seq still pending or uploading
    int64_t pending_bytes = 0;  // last known sizes of their files
    int64_t failed = 0;
  };
  Status WaitUploadedThrough(int64_t seq, std::chrono::steady_clock::time_point deadline,
                             const std::function<bool()>& cancelled = {},
                             const std::function<void(const DrainProgress&)>& progress = {});

  // Bounded lag: while writers are throttled, files still open for writing
  // are stored at once instead of after open_file_delay (as during a drain),
  // so that the backlog that throttles them can shrink. Idempotent.
  void Hurry(bool on);

  ReplicatorStats stats();
  // nullopt when history is off.
  std::optional<HistoryStats> history_stats();
  // The daemon's prune deleted chunks: history asks the target again.
  void ForgetKnownChunks();
  // stats() as a JSON object (kept in the journal's meta table, key "uploader").
  std::string StatsJson();
  // Writes the counters to the journal (meta "uploader") under note_mu_.
  void NoteCounters();
  ObjectStore& store() { return *store_; }
  int64_t target() const { return options_.target; }
  BandwidthLimiter* bandwidth() { return options_.bandwidth.get(); }
  bool IsExcluded(const std::string& path) const { return filter_.Excluded(path); }

 private:
  struct Work;      // everything pending for one path
  struct Snapshot;  // what a worker takes from a Work
  Replicator(Journal* journal, UniqueFd root, std::unique_ptr<ObjectStore> store,
             ReplicatorOptions options);
  // Aborts the multipart uploads an earlier daemon left unfinished
  // (uploader/stale_uploads.h); runs once, before the first upload.
  void CleanStaleUploads();
  void DispatchLoop();
  void WorkerLoop(int id);
  // Once a backlog of kTrimAfterBacklog paths or more has drained, gives
  // malloc's freed pages back to the system (unlocking `lk` meanwhile).
  void GiveBackAfterABacklog(std::unique_lock<std::mutex>& lk);
  // Sync mode: notes the seqs' outcome for WaitUploaded and wakes its
  // waiters. Requires mu_.
  void NoteFinished(const std::vector<int64_t>& seqs, int err);
  // Takes w's records for one pass, all of them or (MarkFor) those up to
  // a capture's mark. Requires mu_.
  Snapshot TakeWork(const std::string& path, Work& w, std::vector<int64_t>& seqs);
  // The live capture whose state the next pass of `path` stores: the one
  // with the smallest mark that freezes the path and has a record of w at
  // or below its mark. Requires mu_.
  std::optional<MarkedCapture> MarkFor(const std::string& path, const Work& w);
  // The live capture with the smallest mark at or above `lowest` (a seq;
  // 0: none) that freezes `path`. Requires mu_.
  std::optional<MarkedCapture> FirstMarkFreezing(const std::string& path, int64_t lowest);
  // Whether a live capture freezes `path` with one of `seqs` at or below its
  // mark (a live pass of those was taken before the capture). Requires mu_.
  bool FrozenAtAMark(const std::string& path, const std::vector<int64_t>& seqs);
  // The smallest mark at which a pass of `path` is due or in flight: its
  // next pass's (MarkFor), the one in flight, or that of a live pass in
  // flight whose records a capture froze since (0: none). Requires mu_.
  int64_t DueMark(const std::string& path, const Work& w);
  // A record's time (the journal's), for history's entry of an at-mark pass.
  int64_t RecordTimeNs(int64_t seq, int64_t fallback);
  // Passes at a mark store states older than those of the live passes that
  // run after the capture, and history keeps entries in the order they
  // arrive: so that replay at the mark sees no later state, a pass of
  // records above the smallest mark with a pass due or in flight waits
  // (held_, not polled) until that mark's passes are done. All require mu_.
  bool HeldForMarks(const std::string& path, const Work& w);
  // Notices captures that appeared or went (then finds the paths due).
  void RefreshMarks();
  // A path's pass ended (or its records changed): is it still due, and at
  // which mark? Releases the held paths when the smallest due mark moved.
  void UpdateMarkDue(const std::string& path);
  // Sets (mark > 0) or clears (0) the mark a path's pass is due at.
  void SetDue(const std::string& path, int64_t mark);
  void ReleaseHeld();
  void Requeue(std::unique_lock<std::mutex>& lk, Work& w, const std::string& path,
               const Snapshot& snap, const std::vector<int64_t>& seqs, const PathOutcome& out);
  void Ingest(const Record& r);                     // requires mu_
  Work& WorkFor(const std::string& path);           // requires mu_
  void Schedule(const std::string& path, Work& w);  // requires mu_
  void RescheduleOpenFiles();                       // requires mu_: open files go now (drain mode)
  // True when no record up to seq is known to be in hand: everything up to
  // it was read and none of it is queued or in flight (the journal may still
  // disagree: records this replicator does not hold). Requires mu_.
  bool MayBeFinishedThrough(int64_t seq);
  // True when `from` waits, directly or through other renamed-from paths,
  // for `target` to be stored first. Requires mu_.
  bool WaitsOn(const std::string& from, const std::string& target);
  // A directory that was renamed (to or from: a "mover") is stored with
  // everything below it (its pass copies or uploads its children), so no
  // pass below it may run at the same time: the one that read a file first
  // could store last, and the mirror and history would keep the older state.
  // A pass below a mover waits (parked, not polled) until the mover's pass is
  // done; a mover's pass waits for passes below it that already run.
  // All require mu_.
  // Except a pass at a checkpoint's mark (AtMarkDue): it goes first, and a
  // mover above it waits for it as for a pass below that already runs.
  bool BelowAMover(const std::string& path);
  bool AtMarkDue(const std::string& path);
  bool MoverWithPassesBelow(const std::string& path);
  // Its pass is done and no other rename waits: schedules what was parked below it.
  void NoLongerAMover(const std::string& path);
  // `effects`: history's entries for what was stored (added first).
  void Finish(const std::vector<int64_t>& seqs, const PathOutcome& out, const std::string& path,
              std::vector<HistoryEffect> effects = {});
  // Counts a failed attempt that is tried again (stats_.retries, its cause).
  void CountRetry(const std::string& path, const StoreStatus& status);
  // Adds a path's counters to stats_. Requires mu_.
  void CountOutcome(const PathOutcome& out);
  // Between two tries of one store request (PlanExecutor): counts the retry
  // and backs off 250 ms, 500 ms, 1 s (with jitter); false when the
  // replicator stops meanwhile.
  bool RequestRetryWait(const std::string& path, int attempt, const StoreStatus& status);
  // Gathers the path's local and remote state, plans (uploader/upload_plan.h)
  // and executes the plan (uploader/plan_executor.h).
  // What was stored is appended to `effects` (history's entries).
  PathOutcome Reconcile(RemoteIndex& index, const std::string& path, const Snapshot& snap,
                        std::vector<HistoryEffect>& effects);
  // Reconcile's look at the path: its state now, or at the snapshot's mark
  // (then `content` reads the file at the mark); the index rows that the
  // plan needs for it. A returned outcome ends the pass.
  std::optional<PathOutcome> LookAtPath(RemoteIndex& index, const std::string& path,
                                        const Snapshot& snap, LocalState& local,
                                        RemoteState& remote, UniqueFd& file,
                                        std::shared_ptr<const PayloadSource>& content);
  // History: the entries for what Reconcile is about to store at `path`
  // (the renames its snapshot holds, then the path's state or absence);
  // a file's chunks are filled in once stored (StoreChunks).
  void PlanEntries(const std::string& path, const Snapshot& snap, bool exists,
                   const struct stat& st, const std::string& link_target,
                   std::vector<HistoryEffect>& effects);
  // Stores the chunks of `content` (the file as fstat'ed in `file_st`, or
  // at a mark: `at_mark`, which cannot change) and puts them in `effect`;
  // changed_during when the file changed meanwhile.
  void StoreChunks(const Payload& content, bool at_mark, const struct stat& file_st,
                   HistoryEffect& effect, PathOutcome& out);

  Journal* const journal_;
  UniqueFd root_;
  std::unique_ptr<ObjectStore> store_;
  const ReplicatorOptions options_;
  const ExcludeFilter filter_{options_.excludes};

  std::mutex mu_;
  // Held from reading the counters to writing them with a journal update, so
  // that a worker never writes a note older than another worker's (the
  // counters in the journal would go back).
  std::mutex note_mu_;
  std::condition_variable work_cv_;    // workers: something may be ready
  std::condition_variable notify_cv_;  // dispatcher: new records
  std::condition_variable done_cv_;    // waiters: records finished
  std::condition_variable stop_cv_;    // request retries back off here: Stop() ends the wait
  bool notified_ = false;
  bool stop_ = false;
  int64_t cursor_ = 0;    // highest seq ingested
  int64_t boot_seq_ = 0;  // highest seq when Start() ran: earlier ones are an earlier daemon's
  std::map<std::string, std::unique_ptr<Work>> work_;
  std::set<std::pair<std::chrono::steady_clock::time_point, std::string>> schedule_;
  // seq -> Works still holding it; ordered, for MayBeFinishedThrough.
  std::map<int64_t, int> seq_refs_;
  // Sync mode only (NoteFinished): seq -> errno (0 ok), for the last two
  // minutes, what WaitUploaded's waiters look at within seconds.
  std::unordered_map<int64_t, int> finished_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, int64_t>> finished_order_;
  size_t in_flight_ = 0;
  // The most paths queued since the backlog last emptied: at
  // kTrimAfterBacklog or more, emptying it gives the freed memory back.
  size_t backlog_peak_ = 0;
  static constexpr size_t kTrimAfterBacklog = 10'000;
  std::set<std::string> in_flight_paths_;
  // Paths with a rename to or from them that is not yet stored (BelowAMover).
  std::set<std::string> movers_;
  std::set<std::string> parked_;  // waiting below a mover, not scheduled
  int drain_depth_ = 0;           // WaitUploadedThrough calls running, or Hurry: no open_file_delay
  bool hurrying_ = false;         // Hurry(true) counted in drain_depth_
  ReplicatorStats stats_;
  std::vector<std::thread> threads_;
  std::unique_ptr<HistoryRecorder> history_;    // null: --history off
  std::shared_ptr<const MarkedStates> marked_;  // GUARDED_BY(mu_); null: no checkpoints
  std::vector<MarkedCapture> marks_seen_;       // the live captures last seen, by mark
  // Paths with a pass at a mark due or in flight -> that mark (the smallest,
  // when one is in flight and another due); and how many are due per mark.
  std::map<std::string, int64_t> at_mark_due_;
  std::map<int64_t, size_t> due_per_mark_;
  std::set<std::string> held_;  // live passes waiting for them
};

}  // namespace scribefs
