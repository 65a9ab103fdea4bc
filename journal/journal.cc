#include "journal/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "common/unique_fd.h"

namespace scribefs {

// One caller's share of a group commit: either records to insert or a record
// to mark skipped. Lives on the caller's stack until done.
struct Journal::Batch {
  std::span<Record> records;
  size_t hold_last = 0;
  int64_t skip_seq = 0;
  int skip_err = 0;
  const std::function<Status(sqlite3*)>* apply = nullptr;
  const std::function<void()>* queued = nullptr;  // see CommitQueued
  bool durable = false;
  bool done = false;
  Status status;
  std::condition_variable cv;
};

namespace {

void BindOptText(sqlite3_stmt* s, int i, const std::optional<std::string>& v) {
  if (v) sqlite3_bind_text(s, i, v->data(), static_cast<int>(v->size()), SQLITE_STATIC);
  else sqlite3_bind_null(s, i);
}
void BindOptInt(sqlite3_stmt* s, int i, const std::optional<int64_t>& v) {
  if (v) sqlite3_bind_int64(s, i, *v);
  else sqlite3_bind_null(s, i);
}

// Runs a prepared statement without results (BEGIN, COMMIT) and resets it,
// so that it holds no lock or state afterwards.
int StepOnce(sqlite3_stmt* s) {
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc;
}

}  // namespace

Result<std::unique_ptr<Journal>> Journal::Open(const std::string& path, Options options) {
  // Create the file ourselves so that it is 0600 from the first instant;
  // SQLite gives -wal and -shm the mode of the database file.
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return PosixError("journal " + path, errno);
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return PosixError("journal " + path, errno);
    if (!S_ISREG(st.st_mode)) return Status::Error(EINVAL, path + ": not a regular file");
    if ((st.st_mode & 077) != 0 && fchmod(fd.get(), 0600) != 0)
      return PosixError("journal " + path + ": chmod 0600", errno);
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                           nullptr);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) return SqliteError("journal " + path, raw, rc);
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 10000);
  // A damaged journal must be refused, never silently reset, extended or
  // "repaired": check every page once, before anything is written (the
  // schema statements below write page 1, and closing the connection would
  // then copy it into the damaged file).
  {
    int app_id = 0;
    rc = ReadIntPragma(raw, "PRAGMA application_id", &app_id);
    if (rc != SQLITE_OK) return SqliteError(path + ": not a readable SQLite database", raw, rc);
  }
  {
    auto qc = Prepare(raw, "PRAGMA quick_check(1)");
    if (!qc.ok()) return qc.status().WithContext("journal " + path);
    int qrc = sqlite3_step(qc->get());
    std::string verdict = qrc == SQLITE_ROW ? reinterpret_cast<const char*>(
                                                  sqlite3_column_text(qc->get(), 0))
                                            : sqlite3_errmsg(raw);
    if (verdict != "ok")
      return Status::Error(EUCLEAN, path + ": journal is corrupt (" + verdict +
                                        "); refusing to use it. Move it aside to start a new "
                                        "journal (pending changes in it would then be found by "
                                        "reconciliation)");
  }
  SCRIBEFS_RETURN_IF_ERROR(EnsureSchema(raw, path));
  // Checkpoints happen in the background thread (see CheckpointLoop).
  SCRIBEFS_RETURN_IF_ERROR(Exec(raw, "PRAGMA wal_autocheckpoint=0").WithContext(path));
  SCRIBEFS_RETURN_IF_ERROR(Exec(raw, "PRAGMA journal_size_limit=67108864").WithContext(path));
  sqlite3* ck = nullptr;
  rc = sqlite3_open_v2(path.c_str(), &ck,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, nullptr);
  SqliteDb ckpt(ck);
  if (rc != SQLITE_OK) return SqliteError("journal " + path, ck, rc);
  sqlite3_busy_timeout(ck, 10000);
  SCRIBEFS_RETURN_IF_ERROR(Exec(ck, "PRAGMA synchronous=NORMAL").WithContext(path));
  SCRIBEFS_RETURN_IF_ERROR(Exec(ck, "PRAGMA journal_size_limit=67108864").WithContext(path));
  std::unique_ptr<Journal> j(new Journal(path, std::move(options), std::move(db)));
  j->ckpt_db_ = std::move(ckpt);
  sqlite3_wal_hook(j->db_.get(), &Journal::WalHook, j.get());
  j->ckpt_thread_ = std::thread([jp = j.get()] { jp->CheckpointLoop(); });
  // Open the -wal descriptor now, while descriptors are plentiful (the
  // schema statements above created the file).
  if (UniqueFd wal(::open((path + "-wal").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)); wal)
    j->wal_fd_ = std::move(wal);
  auto ins = Prepare(j->db_.get(),
                     "INSERT INTO records(time_ns,op,path,new_path,ranges,size,mode,uid,gid,pid,"
                     "flags,detail,state,attempts,error,etag,sha256,version_id,state_ns,seq) "
                     "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,"
                     "?20)");
  if (!ins.ok()) return ins.status().WithContext(path);
  j->insert_ = std::move(ins.value());
  // BEGIN and COMMIT run once per group commit: parsed once, here, rather
  // than by sqlite3_exec on every transaction.
  auto begin = Prepare(j->db_.get(), "BEGIN IMMEDIATE");
  if (!begin.ok()) return begin.status().WithContext(path);
  j->begin_ = std::move(begin.value());
  auto commit = Prepare(j->db_.get(), "COMMIT");
  if (!commit.ok()) return commit.status().WithContext(path);
  j->commit_ = std::move(commit.value());
  auto skip = Prepare(j->db_.get(),
                      "UPDATE records SET state='skipped', error=?2, state_ns=?3 WHERE seq=?1");
  if (!skip.ok()) return skip.status().WithContext(path);
  j->skip_ = std::move(skip.value());
  {
    // Seqs are handed out here (CommitBatch), never reused: past the last
    // record, and past every seq AUTOINCREMENT ever gave (the records at the
    // end may have been trimmed).
    auto max = Prepare(j->db_.get(),
                       "SELECT max(coalesce((SELECT max(seq) FROM records),0),"
                       "coalesce((SELECT seq FROM sqlite_sequence WHERE name='records'),0))");
    if (!max.ok()) return max.status().WithContext(path);
    if (sqlite3_step(max->get()) == SQLITE_ROW) {
      j->assigned_seq_ = sqlite3_column_int64(max->get(), 0);
      j->last_seq_ = j->assigned_seq_;
    }
  }
  return j;
}

Journal::Journal(std::string path, Options options, SqliteDb db)
    : path_(std::move(path)), options_(std::move(options)), db_(std::move(db)) {}

Journal::~Journal() {
  {
    std::lock_guard lk(ckpt_mu_);
    ckpt_stop_ = true;
  }
  ckpt_cv_.notify_all();
  if (ckpt_thread_.joinable()) ckpt_thread_.join();
  // SQLite checkpoints what is left when the last connection closes.
  insert_.reset();
  skip_.reset();
  begin_.reset();
  commit_.reset();
}

int Journal::WalHook(void* self, sqlite3*, const char*, int pages) {
  auto* j = static_cast<Journal*>(self);
  if (pages >= j->options_.checkpoint_pages) {
    std::lock_guard lk(j->ckpt_mu_);
    if (!j->ckpt_wanted_) {
      j->ckpt_wanted_ = true;
      j->ckpt_cv_.notify_one();
    }
  }
  return SQLITE_OK;
}

void Journal::CheckpointLoop() {
  std::unique_lock lk(ckpt_mu_);
  while (true) {
    // Also every few seconds, so that an idle journal's WAL gets folded in.
    ckpt_cv_.wait_for(lk, std::chrono::seconds(5), [&] { return ckpt_wanted_ || ckpt_stop_; });
    if (ckpt_stop_) return;
    ckpt_wanted_ = false;
    lk.unlock();
    CheckpointPasses();
    ckpts_.fetch_add(1, std::memory_order_relaxed);
    lk.lock();
    // Not again before the interval (see Options::checkpoint_interval); the
    // commits meanwhile only set ckpt_wanted_.
    ckpt_cv_.wait_for(lk, options_.checkpoint_interval, [&] { return ckpt_stop_; });
  }
}

// One background checkpoint. PASSIVE never blocks the writer (a busy reader
// just means "later"), but the WAL is reset only by a commit that finds every
// frame copied, and under a steady stream of commits some land during every
// pass: the WAL then only grew (340 MB over 18,000 creates through the mount).
// So: copy without holding the writer until a pass finds few new frames (the
// next pass will be short), then copy those few with the writer held off
// (no I/O when there is nothing left; else 2 fdatasyncs of little). The next
// commit starts the WAL over, reusing its pages. A writer faster than the
// copies is not held: BoundWal bounds that WAL.
void Journal::CheckpointPasses() {
  constexpr int kPasses = 4;
  constexpr int kFinishFrames = 512;  // 2 MiB of 4 KiB pages
  int prev_log = 0;
  for (int pass = 0; pass < kPasses; ++pass) {
    int log = 0, done = 0;
    if (sqlite3_wal_checkpoint_v2(ckpt_db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log,
                                  &done) != SQLITE_OK)
      return;
    // Frames committed during the previous pass (all of them after a reset).
    int added = log >= prev_log ? log - prev_log : log;
    prev_log = log;
    if (pass > 0 && added <= kFinishFrames) {
      std::lock_guard leader(leader_mu_);
      sqlite3_wal_checkpoint_v2(ckpt_db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
      return;
    }
  }
}

Status Journal::health() const {
  std::lock_guard lk(mu_);
  return sticky_;
}

Status Journal::Commit(std::span<Record> records, bool durable, size_t hold_last) {
  Batch b;
  b.records = records;
  b.durable = durable;
  b.hold_last = std::min(hold_last, records.size());
  return CommitBatch(&b);
}

Status Journal::CommitQueued(std::span<Record> records, const std::function<void()>& queued) {
  Batch b;
  b.records = records;
  b.queued = &queued;
  return CommitBatch(&b);
}

Journal::PendingCommit::PendingCommit() : batch_(std::make_unique<Batch>()) {}

Journal::PendingCommit::~PendingCommit() { (void)Wait(); }

Status Journal::PendingCommit::Wait() {
  std::lock_guard lk(mu_);
  if (thread_.joinable()) thread_.join();
  return status_;
}

Result<std::unique_ptr<Journal::PendingCommit>> Journal::CommitAsync(std::vector<Record> records) {
  std::unique_ptr<PendingCommit> p(new PendingCommit());
  p->records_ = std::move(records);
  Batch* b = p->batch_.get();
  b->records = p->records_;
  {
    std::lock_guard lk(mu_);
    if (!sticky_.ok()) return sticky_;
    EnqueueLocked(b);
  }
  try {
    p->thread_ = std::thread([this, b, st = &p->status_] {
      std::unique_lock lk(mu_);
      *st = AwaitLocked(lk, b);
    });
  } catch (const std::system_error&) {
    // No thread: the batch is queued and must be written; here, then.
    std::unique_lock lk(mu_);
    p->status_ = AwaitLocked(lk, b);
  }
  return p;
}

Result<std::unique_ptr<Journal::RecordWatch>> Journal::Watch(size_t max_names) {
  std::unique_ptr<RecordWatch> w(new RecordWatch(this, max_names));
  {
    std::lock_guard lk(mu_);
    w->from_ = assigned_seq_;
    watches_.push_back(w.get());
  }
  // An empty batch: done once every batch queued before it is.
  Batch barrier;
  if (Status s = CommitBatch(&barrier); !s.ok()) return s;
  return w;
}

Journal::RecordWatch::~RecordWatch() {
  std::lock_guard lk(journal_->mu_);
  std::erase(journal_->watches_, this);
}

void Journal::RecordWatch::Note(std::span<const Record> records) {
  for (const Record& r : records) {
    if (overflowed_) return;
    if (names_.size() + 2 > max_names_) {
      overflowed_ = true;
      names_.clear();
      names_.shrink_to_fit();
      return;
    }
    if (!r.path.empty()) names_.push_back(r.path);
    if (r.new_path && !r.new_path->empty()) names_.push_back(*r.new_path);
  }
}

bool Journal::RecordWatch::Names(std::set<std::string>* out) const {
  std::lock_guard lk(journal_->mu_);
  if (overflowed_) return false;
  out->insert(names_.begin(), names_.end());
  return true;
}

void Journal::EndApply(int64_t seq) {
  {
    std::lock_guard lk(apply_mu_);
    unapplied_.erase(seq);
  }
  if (on_commit_) on_commit_();  // the uploader may read further now
}

int64_t Journal::AppliedThrough() {
  std::lock_guard lk(apply_mu_);
  int64_t now = NowNs();
  for (auto it = unapplied_.begin(); it != unapplied_.end();) {
    if (now - it->second > 30'000'000'000LL) {
      fprintf(stderr, "scribefs: journal record %lld was never marked applied; releasing it\n",
              static_cast<long long>(it->first));
      it = unapplied_.erase(it);
      continue;
    }
    return it->first - 1;
  }
  return last_seq_.load();
}

Status Journal::Sync() {
  Batch b;
  b.durable = true;
  return CommitBatch(&b);
}

Status Journal::Apply(const std::function<Status(sqlite3*)>& fn) {
  Batch b;
  b.apply = &fn;
  return CommitBatch(&b);
}

Status Journal::MarkSkipped(int64_t seq, int err) {
  Batch b;
  b.skip_seq = seq;
  b.skip_err = err;
  return CommitBatch(&b);
}

// Group commit, after leveldb's DBImpl::Write: queue, and let the head of the
// queue commit everything behind it in one transaction.
Status Journal::CommitBatch(Batch* b) {
  std::unique_lock lk(mu_);
  EnqueueLocked(b);
  if (b->queued) (*b->queued)();
  return AwaitLocked(lk, b);
}

void Journal::EnqueueLocked(Batch* b) {
  queue_.push_back(b);
  for (Record& r : b->records) r.seq = ++assigned_seq_;
  for (RecordWatch* w : watches_) w->Note(b->records);
}

Status Journal::AwaitLocked(std::unique_lock<std::mutex>& lk, Batch* b) {
  while (!b->done && b != queue_.front()) b->cv.wait(lk);
  if (b->done) return b->status;

  // Leader. Gather the group.
  std::vector<Batch*> group;
  size_t n = 0;
  for (Batch* q : queue_) {
    if (!group.empty() && n + q->records.size() > options_.max_group_records) break;
    group.push_back(q);
    n += q->records.size();
  }
  Status s = sticky_;
  if (s.ok()) {
    lk.unlock();
    bool transient = false;
    {
      std::lock_guard leader(leader_mu_);
      s = WriteGroup(group, &transient);
    }
    lk.lock();
    // A failure that may have lost a record (an insert, the COMMIT, or an
    // fdatasync that failed: the kernel may have dropped the dirty pages it
    // could not write, so a retry could "succeed" without the data) must stop
    // every later mutation. A transient failure of the sync path (no
    // descriptor or memory for it right now) lost nothing: the records are
    // committed and still in the WAL, and the next durable commit syncs them
    // too. Making it sticky would let one user who exhausts the daemon's
    // descriptors fail the mount for everyone until restart.
    if (!s.ok() && !transient) sticky_ = s;
  }
  for (Batch* q : group) {
    queue_.pop_front();
    q->status = s;
    q->done = true;
    if (q != b) q->cv.notify_one();
  }
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  lk.unlock();
  if (s.ok() && on_commit_ && n > 0) on_commit_();
  return s;
}

Status Journal::WriteGroup(std::span<Batch*> group, bool* transient) {
  if (options_.fault_hook) {
    Status f = options_.fault_hook();
    if (!f.ok()) return f.WithContext("journal commit " + path_);
  }
  bool durable = false;
  bool any_write = false;
  for (Batch* q : group) {
    durable |= q->durable;
    any_write |= !q->records.empty() || q->skip_seq != 0 || q->apply != nullptr;
  }
  sqlite3* db = db_.get();
  if (any_write) {
    int rc = StepOnce(begin_.get());
    if (rc != SQLITE_DONE) return SqliteError("journal commit " + path_, db, rc);
    int64_t now = NowNs();
    for (Batch* q : group) {
      for (Record& r : q->records) {
        if (r.time_ns == 0) r.time_ns = now;
        sqlite3_stmt* s = insert_.get();
        StmtResetter reset(s);
        std::string op(OpName(r.op));
        std::string ranges = r.ranges.empty() ? std::string() : RangesToJson(r.ranges);
        sqlite3_bind_int64(s, 1, r.time_ns);
        sqlite3_bind_text(s, 2, op.data(), static_cast<int>(op.size()), SQLITE_STATIC);
        sqlite3_bind_text(s, 3, r.path.data(), static_cast<int>(r.path.size()), SQLITE_STATIC);
        BindOptText(s, 4, r.new_path);
        if (!ranges.empty())
          sqlite3_bind_text(s, 5, ranges.data(), static_cast<int>(ranges.size()), SQLITE_STATIC);
        BindOptInt(s, 6, r.size);
        if (r.mode) sqlite3_bind_int64(s, 7, *r.mode);
        sqlite3_bind_int64(s, 8, r.uid);
        sqlite3_bind_int64(s, 9, r.gid);
        sqlite3_bind_int64(s, 10, r.pid);
        BindOptInt(s, 11, r.flags);
        if (!r.detail.empty())
          sqlite3_bind_text(s, 12, r.detail.data(), static_cast<int>(r.detail.size()),
                            SQLITE_STATIC);
        sqlite3_bind_text(s, 13, r.state.data(), static_cast<int>(r.state.size()), SQLITE_STATIC);
        sqlite3_bind_int64(s, 14, r.attempts);
        BindOptText(s, 15, r.error);
        BindOptText(s, 16, r.etag);
        BindOptText(s, 17, r.sha256);
        BindOptText(s, 18, r.version_id);
        sqlite3_bind_int64(s, 19, r.state_ns.value_or(now));
        sqlite3_bind_int64(s, 20, r.seq);  // assigned in the queue (EnqueueLocked)
        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE) {
          Status err = SqliteError("journal insert " + path_, db, rc);
          sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
          return err;
        }
      }
      // Held records are unapplied from before COMMIT makes them visible, so
      // that no reader can see one without seeing its hold.
      if (q->hold_last > 0) {
        std::lock_guard lk(apply_mu_);
        for (size_t i = q->records.size() - q->hold_last; i < q->records.size(); ++i)
          unapplied_[q->records[i].seq] = now;
      }
      if (q->apply) {
        Status as = (*q->apply)(db);
        if (!as.ok()) {
          sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
          return as.WithContext("journal update " + path_);
        }
      }
      if (q->skip_seq != 0) {
        sqlite3_stmt* s = skip_.get();
        StmtResetter reset(s);
        std::string msg = PosixError("local operation failed", q->skip_err).message();
        sqlite3_bind_int64(s, 1, q->skip_seq);
        sqlite3_bind_text(s, 2, msg.data(), static_cast<int>(msg.size()), SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, now);
        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE) {
          Status err = SqliteError("journal update " + path_, db, rc);
          sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
          return err;
        }
      }
    }
    rc = StepOnce(commit_.get());
    if (rc != SQLITE_DONE) {
      Status err = SqliteError("journal commit " + path_, db, rc);
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      std::lock_guard lk(apply_mu_);
      for (Batch* q : group)
        for (size_t i = q->records.size() - q->hold_last; i < q->records.size(); ++i)
          unapplied_.erase(q->records[i].seq);
      return err;
    }
    for (Batch* q : group)
      for (const Record& r : q->records)
        if (r.seq > last_seq_.load()) last_seq_.store(r.seq);
  }
  if (!durable) return Status::Ok();
  Status synced = SyncWal();
  *transient = !synced.ok() && IsTransientSyncErrno(synced.code());
  return synced;
}

// synchronous=NORMAL does not fsync the WAL on commit. Frames that a checkpoint
// already moved into the database file were synced by that checkpoint, so an
// fdatasync of the WAL file makes every committed transaction durable.
//
// The descriptor stays open between syncs: opening it each time made durable
// commits fail (EMFILE) as soon as users of the mount held every descriptor.
// SQLite keeps the -wal file while a connection is open (a restart of the
// log, journal_size_limit and TRUNCATE checkpoints truncate it in place), but
// if it was ever replaced, a sync of the old file would prove nothing: the
// path is compared with the descriptor (a stat, which needs no descriptor).
Status Journal::SyncWal() {
  std::string wal = path_ + "-wal";
  struct stat by_path;
  if (::stat(wal.c_str(), &by_path) != 0) {
    if (errno == ENOENT) {  // nothing uncheckpointed
      wal_fd_.Reset();
      return Status::Ok();
    }
    return PosixError("journal sync " + wal, errno);
  }
  struct stat by_fd;
  if (wal_fd_ && (fstat(wal_fd_.get(), &by_fd) != 0 || by_fd.st_ino != by_path.st_ino ||
                  by_fd.st_dev != by_path.st_dev))
    wal_fd_.Reset();
  if (!wal_fd_) {
    UniqueFd fd(::open(wal.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
      if (errno == ENOENT) return Status::Ok();
      return PosixError("journal sync " + wal, errno);
    }
    wal_fd_ = std::move(fd);
  }
  if (fdatasync(wal_fd_.get()) != 0) return PosixError("journal sync " + wal, errno);
  return Status::Ok();
}

Status Journal::SyncCommitted() {
  // Its own descriptor (wal_fd_ belongs to the commit leader). Frames moved
  // into the database file were synced by their checkpoint; the WAL file
  // must be the one the committed frames went to, as in SyncWal.
  std::string wal = path_ + "-wal";
  UniqueFd fd(::open(wal.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) return Status::Ok();  // nothing uncheckpointed
    return PosixError("journal sync " + wal, errno);
  }
  if (fdatasync(fd.get()) != 0) return PosixError("journal sync " + wal, errno);
  struct stat by_path, by_fd;
  if (::stat(wal.c_str(), &by_path) == 0 && fstat(fd.get(), &by_fd) == 0 &&
      by_fd.st_ino == by_path.st_ino && by_fd.st_dev == by_path.st_dev)
    return Status::Ok();
  return Sync();  // replaced meanwhile: through the queue
}

bool Journal::IsTransientSyncErrno(int err) {
  // Failing to get a descriptor or memory, or being interrupted, says nothing
  // about the data already written: EIO, ENOSPC, EDQUOT and the like do.
  return err == EMFILE || err == ENFILE || err == ENOMEM || err == EAGAIN || err == EINTR;
}

Result<bool> Journal::BoundWal(uint64_t max_bytes) {
  struct stat st;
  if (::stat((path_ + "-wal").c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return PosixError("journal " + path_ + "-wal", errno);
  }
  if (static_cast<uint64_t>(st.st_size) <= max_bytes) return false;
  // Between group commits: the writer's connection is free (leader_mu_).
  std::lock_guard leader(leader_mu_);
  // SQLITE_BUSY: the background checkpointer is at it; let it finish (a few
  // ms at most), then copy what is left. Otherwise the next pass tries again.
  for (int attempt = 0;; ++attempt) {
    int log = 0, done = 0;
    int rc =
        sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc == SQLITE_OK) return true;
    if (rc != SQLITE_BUSY) return SqliteError("journal checkpoint " + path_, db_.get(), rc);
    if (attempt == 3) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Status Journal::SetMeta(const std::string& key, const std::string& value) {
  std::lock_guard leader(leader_mu_);
  auto st = Prepare(db_.get(), "INSERT INTO meta(key,value) VALUES(?1,?2) "
                               "ON CONFLICT(key) DO UPDATE SET value=excluded.value");
  if (!st.ok()) return st.status().WithContext(path_);
  sqlite3_bind_text(st->get(), 1, key.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st->get(), 2, value.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st->get());
  if (rc != SQLITE_DONE) return SqliteError("journal meta " + path_, db_.get(), rc);
  return Status::Ok();
}

Result<std::string> Journal::GetMeta(const std::string& key) {
  std::lock_guard leader(leader_mu_);
  auto st = Prepare(db_.get(), "SELECT value FROM meta WHERE key=?1");
  if (!st.ok()) return st.status().WithContext(path_);
  sqlite3_bind_text(st->get(), 1, key.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st->get());
  if (rc == SQLITE_ROW)
    return std::string(reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
  if (rc == SQLITE_DONE) return Status::Error(ENOENT, "no meta key " + key);
  return SqliteError("journal meta " + path_, db_.get(), rc);
}

}  // namespace scribefs
