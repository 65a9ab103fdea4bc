// Replicator: waiting for the uploads up to a journal sequence number (pause
// points: checkpoints and flush). Kept apart from replicator.cc, whose replay
// engine it only observes (through the journal) and hurries (no
// open_file_delay while a drain runs).
#include <algorithm>
#include <string_view>

#include "uploader/replicator.h"

namespace scribefs {

using Clock = std::chrono::steady_clock;

Status Replicator::WaitUploadedThrough(int64_t seq, Clock::time_point deadline,
                                       const std::function<bool()>& cancelled,
                                       const std::function<void(const DrainProgress&)>& progress) {
  // The journal is the authority on what is still to do; a read-only
  // connection of our own sees every commit (WAL).
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(journal_->path().c_str(), &raw,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) return SqliteError("journal " + journal_->path(), raw, rc);
  sqlite3_busy_timeout(raw, 5000);
  // Served by the partial index records_unfinished.
  auto count = Prepare(raw,
                       "SELECT count(*), coalesce(sum(state='failed'),0) FROM records "
                       "WHERE state IN ('pending','uploading','failed') AND seq <= ?1");
  if (!count.ok()) return count.status();
  auto bytes = Prepare(raw,
                       "SELECT coalesce(sum((SELECT size FROM records r2 WHERE r2.path=p.path AND "
                       "r2.size IS NOT NULL ORDER BY seq DESC LIMIT 1)),0) FROM (SELECT DISTINCT "
                       "path FROM records WHERE state IN ('pending','uploading') AND seq <= ?1) p");
  if (!bytes.ok()) return bytes.status();

  {
    std::lock_guard lk(mu_);
    drain_depth_++;
    RescheduleOpenFiles();  // files held back because they are open for writing go now
    notified_ = true;
    notify_cv_.notify_one();
  }
  struct Undrain {
    Replicator* r;
    ~Undrain() {
      std::lock_guard lk(r->mu_);
      r->drain_depth_--;
    }
  } undrain{this};

  auto last_progress = Clock::now() - std::chrono::seconds(1);
  while (true) {
    DrainProgress p;
    {
      StmtResetter reset(count->get());
      sqlite3_bind_int64(count->get(), 1, seq);
      rc = sqlite3_step(count->get());
      if (rc != SQLITE_ROW) return SqliteError("journal query", raw, rc);
      int64_t unfinished = sqlite3_column_int64(count->get(), 0);
      p.failed = sqlite3_column_int64(count->get(), 1);
      p.pending = unfinished - p.failed;
    }
    if (p.failed > 0)
      return Status::Error(EIO, std::to_string(p.failed) + " record(s) up to journal seq " +
                                    std::to_string(seq) +
                                    " failed to upload (scribectl journal --state failed shows "
                                    "why; scribectl retry requeues them)");
    if (p.pending == 0) return Status::Ok();
    if (cancelled && cancelled()) return Status::Error(ECANCELED, "cancelled");
    auto now = Clock::now();
    if (now >= deadline)
      return Status::Error(ETIMEDOUT, std::to_string(p.pending) + " record(s) up to journal seq " +
                                          std::to_string(seq) + " still not uploaded");
    if (progress && now - last_progress >= std::chrono::milliseconds(200)) {
      StmtResetter reset(bytes->get());
      sqlite3_bind_int64(bytes->get(), 1, seq);
      if (sqlite3_step(bytes->get()) == SQLITE_ROW)
        p.pending_bytes = sqlite3_column_int64(bytes->get(), 0);
      progress(p);
      last_progress = now;
    }
    std::unique_lock lk(mu_);
    notified_ = true;  // records committed since the last read
    notify_cv_.notify_one();
    done_cv_.wait_until(lk, std::min(deadline, now + std::chrono::milliseconds(50)));
  }
}

}  // namespace scribefs
