// Replicator: waiting for the uploads up to a journal sequence number (pause
// points: checkpoints and flush). Kept apart from replicator.cc, whose replay
// engine it only observes (through the journal) and hurries (no
// open_file_delay while a drain runs).
#include <algorithm>
#include <string_view>

#include "journal/reader.h"
#include "uploader/replicator.h"

namespace scribefs {

using Clock = std::chrono::steady_clock;

void Replicator::Hurry(bool on) {
  std::lock_guard lk(mu_);
  if (on == hurrying_) return;
  hurrying_ = on;
  drain_depth_ += on ? 1 : -1;
  if (!on) return;
  RescheduleOpenFiles();
  notified_ = true;
  notify_cv_.notify_one();
}

Status Replicator::WaitUploadedThrough(int64_t seq, Clock::time_point deadline,
                                       const std::function<bool()>& cancelled,
                                       const std::function<void(const DrainProgress&)>& progress) {
  // The journal is the authority on what is still to do; a read-only
  // connection of our own sees every commit (WAL).
  auto reader = JournalReader::Open(journal_->path());
  if (!reader.ok()) return reader.status();

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
      auto left = (*reader)->UnfinishedThrough(seq, options_.target);
      if (!left.ok()) return left.status();
      p.pending = left->pending;
      p.failed = left->failed;
    }
    if (p.failed > 0)
      return Status::Error(EIO, std::to_string(p.failed) + " record(s) up to journal seq " +
                                    std::to_string(seq) +
                                    " failed to upload (scribectl journal --state failed shows "
                                    "why; scribectl retry requeues them)");
    if (p.pending == 0) {
      // Flush and pause points include history: a segment covering seq is
      // stored before they return.
      if (history_) return history_->StoreThrough(seq, deadline);
      return Status::Ok();
    }
    if (cancelled && cancelled()) return Status::Error(ECANCELED, "cancelled");
    auto now = Clock::now();
    if (now >= deadline)
      return Status::Error(ETIMEDOUT, std::to_string(p.pending) + " record(s) up to journal seq " +
                                          std::to_string(seq) + " still not uploaded");
    if (progress && now - last_progress >= std::chrono::milliseconds(200)) {
      auto bytes = (*reader)->PendingBytesThrough(seq);
      if (bytes.ok()) p.pending_bytes = *bytes;
      progress(p);
      last_progress = now;
    }
    std::unique_lock lk(mu_);
    notified_ = true;  // records committed since the last read
    notify_cv_.notify_one();
    // The count above visits every unfinished record up to seq (about 30 ms
    // of CPU with 100,000 pending); it used to run at every path a worker
    // finished, hundreds of times a second while a flush drained a backlog
    // of small files. So the journal is asked again only when the
    // replicator's own state says every record up to seq may be finished, or
    // after kRecheck (what it does not hold in memory: failed or excluded
    // records). kMinGap keeps a state that already looks finished (excluded
    // records being marked) from spinning on the query; stopping does not
    // end the wait (as before: the deadline does).
    constexpr auto kMinGap = std::chrono::milliseconds(5);
    constexpr auto kRecheck = std::chrono::milliseconds(200);
    done_cv_.wait_until(lk, std::min(deadline, now + kMinGap), [] { return false; });
    done_cv_.wait_until(lk, std::min(deadline, now + kRecheck),
                        [&] { return MayBeFinishedThrough(seq); });
  }
}

bool Replicator::MayBeFinishedThrough(int64_t seq) {
  // seq_refs_ holds every ingested record until Finish: ordered, its first
  // key is the oldest still held.
  return cursor_ >= seq && (seq_refs_.empty() || seq_refs_.begin()->first > seq);
}

}  // namespace scribefs
