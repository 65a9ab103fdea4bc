// Journal: the write side of the SQLite journal (STATE_DIR/journal.db).
//
// One connection, used by one committing thread at a time. Callers that commit
// concurrently queue up; the caller at the head of the queue becomes the leader,
// commits every queued record in one transaction (group commit) and wakes the
// others. Commit() returns only once its records are committed: visible to
// readers and preserved if the daemon is killed. With durable=true the WAL is
// also fsynced (an application's fsync must not be weaker than its data).
//
// A record's seq is assigned when it joins the queue, so the order of the
// queue is the order of the seqs, and a caller can know its seq before the
// write (CommitAsync).
//
// A failed commit is sticky: every later Commit() fails with the same status,
// so that the mount refuses mutations rather than let one slip by unrecorded.
// Transient errors of the WAL sync (out of descriptors or memory, EAGAIN,
// EINTR) are not: they fail that one commit, and the next one syncs again.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "journal/record.h"
#include "journal/schema.h"
#include "journal/sqlite_util.h"

namespace scribefs {

class Journal {
 public:
  struct Options {
    // Called by the leader before each group commit; a non-ok result makes the
    // commit fail as if SQLite had failed. Fault injection for tests.
    std::function<Status()> fault_hook;
    // Upper bound on records committed in one transaction.
    size_t max_group_records = 4096;
    // WAL pages after which the background checkpointer copies the WAL into
    // the database. Checkpoints fsync; running them off the commit path keeps
    // commits at memory speed.
    int checkpoint_pages = 4000;
    // Least time between two background checkpoints. Without it, under a
    // steady stream of commits the WAL stayed past checkpoint_pages (a commit
    // landed during every checkpoint, so it was never reset) and every commit
    // asked for another: the thread ran back to back, two fdatasyncs each
    // (1,000 per 5,000 unlinks), competing with the commits for the disk and
    // the CPU. Now each checkpoint ends by copying the frames added during it
    // with the writer held off, so the WAL starts over (CheckpointPasses).
    std::chrono::milliseconds checkpoint_interval{250};
  };

  // Opens (creating when absent, mode 0600) and migrates the journal at path.
  // A file that is not a scribefs journal, or is corrupt, is an error naming
  // the file: never a silent reset.
  static Result<std::unique_ptr<Journal>> Open(const std::string& path, Options options);
  static Result<std::unique_ptr<Journal>> Open(const std::string& path) {
    return Open(path, Options());
  }
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  class PendingCommit;
  class RecordWatch;

  // Commits records in order and fills in their seq (and time_ns when 0).
  // The last `hold_last` records announce operations that are not applied yet
  // (the record comes first, by the journal invariant): they count as
  // unapplied until EndApply(seq), see AppliedThrough().
  Status Commit(std::span<Record> records, bool durable = false, size_t hold_last = 0);
  Status Commit(Record& record, bool durable = false) { return Commit({&record, 1}, durable); }
  // Commit(records), calling `queued` once the records have their place
  // (and their seqs) in the commit queue and before they are written. Every
  // commit that starts after `queued` gets later seqs, so a resume opens the
  // gate from `queued`: the operations it held follow its record without
  // waiting for its write. `queued` runs under the queue's lock, in the
  // caller's thread: it must not call the journal.
  Status CommitQueued(std::span<Record> records, const std::function<void()>& queued);
  Status CommitQueued(Record& record, const std::function<void()>& queued) {
    return CommitQueued({&record, 1}, queued);
  }
  // Queues records for commit and returns without waiting for the write,
  // which a thread of its own waits for: their seqs are assigned on return
  // (PendingCommit::records()), and every commit that starts later gets
  // later seqs. A checkpoint's pause so knows its mark without waiting under
  // the hold for a write the disk may stall (a disk writing back GiBs
  // stalled it for 22.5 ms). Fails at once when the journal has failed.
  Result<std::unique_ptr<PendingCommit>> CommitAsync(std::vector<Record> records);
  // Starts noting the paths of every record queued from now on (in memory,
  // at most max_names of them), once every record queued before is
  // committed: a reader then sees those, and the watch the rest. A
  // checkpoint's frozen set so needs no journal read under the hold.
  Result<std::unique_ptr<RecordWatch>> Watch(size_t max_names = 1 << 18);
  // Makes everything committed so far durable on disk (fsync of the WAL).
  Status Sync();
  // The same, outside the commit queue: commits by other threads go on
  // during the fsync instead of queueing behind it (a checkpoint makes its
  // pause record durable so, once writers run again).
  Status SyncCommitted();
  // Runs fn with the writer's connection inside the next group transaction:
  // the uploader's state changes share the one writer (no SQLITE_BUSY). For
  // the typed calls of journal/ (UploadStateStore, RemoteIndex), which own
  // the statements; other folders call those rather than write SQL. A
  // failure of fn rolls back the group and is sticky like any commit failure,
  // so fn must only run statements that cannot fail for logical reasons.
  Status Apply(const std::function<Status(sqlite3*)>& fn);
  // Marks a committed record as not applied: the local operation it announced
  // failed with err. Waits for the update to commit.
  Status MarkSkipped(int64_t seq, int err);

  // The operation a held record announced is done (or failed): readers that
  // act on local state may look at it now.
  void EndApply(int64_t seq);
  // The highest seq S such that every committed record up to S is applied:
  // the uploader reconciles local state and must not act on a record whose
  // operation has not happened yet. A hold older than 30 s is ignored (and
  // logged once): a forgotten EndApply must not stall replication forever.
  int64_t AppliedThrough();

  // Called after every group commit that inserted records (by the committing
  // thread, no lock held). Set once, before concurrent use.
  void SetCommitListener(std::function<void()> fn) { on_commit_ = std::move(fn); }

  // The sticky failure, ok while the journal is healthy.
  Status health() const;
  const std::string& path() const { return path_; }

  // Keeps the -wal file near max_bytes: when it is larger, runs a checkpoint
  // between two group commits (holding the writer for as long as copying the
  // frames the background checkpointer has not copied yet takes), so that it
  // copies the whole WAL and the next commit starts it over (truncated to 64
  // MiB, journal_size_limit). Under a steady stream of commits the
  // background PASSIVE checkpoints never catch up with the writer and the
  // WAL grew without bound: 512 MiB after 1,000,000 changes with a 1 MiB
  // database (tests/journal/trim_test.cc). Called by the journal trimmer
  // (daemon/journal_trim.h). Returns whether a checkpoint ran.
  Result<bool> BoundWal(uint64_t max_bytes);

  // Background checkpoints run so far (CheckpointLoop).
  uint64_t checkpoints_run() const { return ckpts_.load(std::memory_order_relaxed); }

  // Key/value pairs of the meta table (schema_version, datadir, ...).
  Status SetMeta(const std::string& key, const std::string& value);
  Result<std::string> GetMeta(const std::string& key);

 private:
  struct Batch;  // one caller's share of a group
  Journal(std::string path, Options options, SqliteDb db);
  Status CommitBatch(Batch* batch);
  // Joins the queue: seqs assigned, watches told. Requires mu_.
  void EnqueueLocked(Batch* batch);
  // Waits for the batch's group to be written, or writes it as the leader.
  Status AwaitLocked(std::unique_lock<std::mutex>& lk, Batch* batch);
  // *transient is set when the group's records are all committed and only
  // the WAL sync failed, for a reason a retry can overcome: see CommitBatch.
  Status WriteGroup(std::span<Batch*> group, bool* transient);
  Status SyncWal();
  // Errors of the sync path that lose nothing (see CommitBatch).
  static bool IsTransientSyncErrno(int err);
  void CheckpointLoop();
  void CheckpointPasses();
  static int WalHook(void* self, sqlite3* db, const char* name, int pages);

  const std::string path_;
  const Options options_;
  mutable std::mutex mu_;
  std::deque<Batch*> queue_;  // GUARDED_BY(mu_); the front is the leader
  Status sticky_;             // GUARDED_BY(mu_)
  int64_t assigned_seq_ = 0;  // GUARDED_BY(mu_); the last seq handed out
  std::vector<RecordWatch*> watches_;  // GUARDED_BY(mu_)
  // Only touched by the current leader (or under mu_ for meta calls, which go
  // through the same queue discipline by holding leader_mu_).
  std::mutex leader_mu_;
  SqliteDb db_;
  SqliteStmt insert_;
  SqliteStmt skip_;
  SqliteStmt begin_;   // BEGIN IMMEDIATE
  SqliteStmt commit_;  // COMMIT
  std::function<void()> on_commit_;
  // Held (committed, not yet applied) seqs and when they were committed.
  std::mutex apply_mu_;
  std::map<int64_t, int64_t> unapplied_;  // GUARDED_BY(apply_mu_)
  std::atomic<int64_t> last_seq_{0};
  // The -wal file, kept open so that a durable commit needs no new descriptor
  // (one user opening files until the daemon runs out must not make the
  // journal fail). Reopened when SQLite replaced the file (compared by
  // device and inode). Only touched by the leader (leader_mu_).
  UniqueFd wal_fd_;

  // Background checkpointer: its own connection, woken by the WAL hook.
  SqliteDb ckpt_db_;
  std::mutex ckpt_mu_;
  std::condition_variable ckpt_cv_;
  bool ckpt_wanted_ = false;  // GUARDED_BY(ckpt_mu_)
  bool ckpt_stop_ = false;    // GUARDED_BY(ckpt_mu_)
  std::atomic<uint64_t> ckpts_{0};  // background checkpoints run
  std::thread ckpt_thread_;
};

// An asynchronous commit (Journal::CommitAsync). The journal must outlive it.
class Journal::PendingCommit {
 public:
  ~PendingCommit();  // waits for the write
  PendingCommit(const PendingCommit&) = delete;
  PendingCommit& operator=(const PendingCommit&) = delete;
  // The records, with their seqs.
  const std::vector<Record>& records() const { return records_; }
  // Waits until the records are written; their commit's status.
  Status Wait();

 private:
  friend class Journal;
  PendingCommit();
  std::vector<Record> records_;
  std::unique_ptr<Batch> batch_;
  std::mutex mu_;  // one Wait() joins the thread
  std::thread thread_;
  Status status_;
};

// The paths of the records queued since it started (Journal::Watch).
// Unregisters when destroyed; the journal must outlive it.
class Journal::RecordWatch {
 public:
  ~RecordWatch();
  RecordWatch(const RecordWatch&) = delete;
  RecordWatch& operator=(const RecordWatch&) = delete;
  // Records after this seq are noted here; every record up to it was
  // committed when Watch() returned.
  int64_t from() const { return from_; }
  // Adds each path and new path noted so far to out. False when more than
  // max_names were queued: out is then incomplete (read the journal).
  bool Names(std::set<std::string>* out) const;

 private:
  friend class Journal;
  RecordWatch(Journal* journal, size_t max_names) : journal_(journal), max_names_(max_names) {}
  void Note(std::span<const Record> records);  // requires journal_->mu_

  Journal* const journal_;
  const size_t max_names_;
  int64_t from_ = 0;
  std::vector<std::string> names_;  // GUARDED_BY(journal_->mu_)
  bool overflowed_ = false;         // GUARDED_BY(journal_->mu_)
};

}  // namespace scribefs
