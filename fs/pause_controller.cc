#include "fs/pause_controller.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>

namespace scribefs {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double Round1(double v) { return std::round(v * 10) / 10; }

// Runs the writeback hook (the mount's syncfs) for at most
// min(writeback_timeout, timeout), in a helper thread: syncfs on our own
// mount must never be able to hang the pause (e.g. when the session is
// ending).
void WriteBack(const PauseOptions& options, Clock::duration timeout, PauseResult& out) {
  auto t = Clock::now();
  auto task = std::make_shared<std::packaged_task<Status()>>(options.writeback);
  auto done = task->get_future();
  std::thread([task] { (*task)(); }).detach();
  auto limit = std::min<Clock::duration>(options.writeback_timeout, timeout);
  if (done.wait_for(limit) == std::future_status::ready) {
    Status s = done.get();
    if (!s.ok()) spdlog::warn("pause: writeback of the mount's cached writes: {}", s.message());
  } else {
    out.writeback_complete = false;
    spdlog::warn(
        "pause: the writeback of cached writes did not finish within {} ms; "
        "pausing anyway",
        std::chrono::duration_cast<std::chrono::milliseconds>(limit).count());
  }
  out.writeback_ms = MsSince(t);
}

Record ControlRecord(Op op, const nlohmann::json& detail) {
  Record r;
  r.op = op;
  r.path = "";
  // Control events need no upload.
  r.state = std::string(kStateDone);
  r.detail = detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

}  // namespace

PauseController::PauseController(MutationGate* gate, Filesystem* fs, Journal* journal,
                                 PauseOptions options)
    : gate_(gate), fs_(fs), journal_(journal), options_(std::move(options)) {
  thaw_thread_ = std::thread([this] { ThawLoop(); });
}

PauseController::~PauseController() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  thaw_cv_.notify_all();
  if (thaw_thread_.joinable()) thaw_thread_.join();
}

Result<PauseResult> PauseController::Pause(double timeout_s, const std::string& by, bool sync,
                                           bool durable_record) {
  if (!(timeout_s > 0) || timeout_s > options_.max_pause_s)
    return Status::Error(EINVAL, "timeout_s must be > 0 and at most " +
                                     std::to_string(static_cast<int64_t>(options_.max_pause_s)) +
                                     " (the daemon's --max-pause)");
  std::lock_guard ctl(ctl_mu_);
  {
    std::lock_guard lk(mu_);
    if (shut_down_) return Status::Error(ESHUTDOWN, "the mount is being unmounted");
    if (paused_)
      return Status::Error(EBUSY, "already paused by " + by_ + " (pause record " +
                                      std::to_string(seq_) + "); resume first");
  }
  PauseResult out;
  out.timeout_s = timeout_s;
  auto timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));

  // 1. Writes the kernel holds in its cache for the mount come to us while
  // the gate is still open.
  if (options_.writeback) WriteBack(options_, timeout, out);

  // 2. A moment with no mutation in flight (the gate still open), then
  // close the gate and let the mutations in flight finish.
  if (options_.quiet_wait.count() > 0) {
    auto t = Clock::now();
    gate_->WaitIdle(t + std::min<Clock::duration>(options_.quiet_wait, timeout));
    out.quiet_ms = MsSince(t);
  }
  auto closed_at = Clock::now();
  int64_t closed_ns = NowNs();
  Status s = gate_->Close(closed_at + timeout);
  if (!s.ok()) {
    if (s.code() == EBUSY || s.code() == ESHUTDOWN) return s;
    return s.WithContext("pause: draining mutations in flight");
  }
  out.drain_ms = MsSince(closed_at);

  // 3.-4. Byte ranges still in memory, the data itself (sync), the pause record.
  s = RecordPause(by, sync, durable_record, out);
  if (!s.ok()) {
    gate_->Open();
    return s;
  }

  {
    std::lock_guard lk(mu_);
    paused_ = true;
    id_++;
    seq_ = out.seq;
    since_ = closed_at;
    since_ns_ = closed_ns;
    until_ = closed_at + timeout;
    until_ns_ = closed_ns + static_cast<int64_t>(timeout_s * 1e9);
    timeout_s_ = timeout_s;
    by_ = by;
    out.id = id_;
    out.since_ns = since_ns_;
    out.since = since_;
    out.until_ns = until_ns_;
  }
  thaw_cv_.notify_all();
  spdlog::info("paused by {} (record {}): writes held for at most {} s; drain {:.1f} ms", by,
               out.seq, timeout_s, out.drain_ms);
  return out;
}

Status PauseController::RecordPause(const std::string& by, bool sync, bool durable_record,
                                    PauseResult& out) {
  nlohmann::json detail = {{"by", by},
                           {"timeout_s", out.timeout_s},
                           {"writeback_ms", Round1(out.writeback_ms)},
                           {"quiet_ms", Round1(out.quiet_ms)},
                           {"drain_ms", Round1(out.drain_ms)}};
  if (!durable_record && !sync) {
    // The ranges' records and the pause record, queued in one commit: the
    // mark is known without waiting for a write.
    auto t = Clock::now();
    auto q = fs_->QueueAllRanges({ControlRecord(Op::kPause, detail)});
    if (!q.ok()) return q.status().WithContext("pause: journal");
    out.record_write = std::move(q.value());
    out.seq = out.record_write->records().back().seq;
    out.record_ms = MsSince(t);
    return Status::Ok();
  }
  auto ranges_at = Clock::now();
  Status s = fs_->FlushAllRanges();
  if (!s.ok()) return s.WithContext("pause: committing pending byte ranges");
  out.ranges_ms = MsSince(ranges_at);
  if (sync && options_.sync_backing) {
    auto t = Clock::now();
    s = options_.sync_backing();
    if (!s.ok()) return s.WithContext("pause: syncing DATADIR");
    out.sync_ms = MsSince(t);
    detail["sync_ms"] = Round1(out.sync_ms);
  }
  // Durable (journal fsync) before we answer, unless the caller makes it
  // durable itself.
  Record rec = ControlRecord(Op::kPause, detail);
  auto record_at = Clock::now();
  s = journal_->Commit(rec, durable_record);
  if (!s.ok()) return Status::Error(EIO, "pause: journal: " + s.message());
  out.record_ms = MsSince(record_at);
  out.seq = rec.seq;
  return Status::Ok();
}

Result<ResumeResult> PauseController::Resume(const std::string& reason,
                                             std::optional<uint64_t> only_id) {
  std::lock_guard ctl(ctl_mu_);
  {
    std::lock_guard lk(mu_);
    if (!paused_) return Status::Error(ENOENT, "not paused");
    if (only_id && *only_id != id_) return Status::Error(ENOENT, "that pause has ended already");
  }
  return ResumeLocked(reason);
}

Result<ResumeResult> PauseController::ResumeLocked(const std::string& reason) {
  ResumeResult out;
  out.reason = reason;
  {
    std::lock_guard lk(mu_);
    out.pause_seq = seq_;
    out.held_ms = MsSince(since_);
  }
  MutationGate::Stats g = gate_->stats();
  out.held_ops = g.blocked + g.deferred;
  // The record first, then the gate: the held operations' records follow
  // it. The gate opens as soon as the record has its place in the journal's
  // queue; the write itself (which the disk may stall, e.g. while it writes
  // back gigabytes) no longer holds writers that need no journal commit.
  Record rec = ControlRecord(Op::kResume, {{"reason", reason},
                                           {"pause_seq", out.pause_seq},
                                           {"held_ms", Round1(out.held_ms)},
                                           {"held_ops", out.held_ops}});
  bool opened = false;
  auto open_gate = [&] {
    // Not paused any more before the held operations go on: one that returns
    // must not find state() still paused (PauseTest.AutoThawAfterTimeout, CI).
    {
      std::lock_guard lk(mu_);
      paused_ = false;
      out.held_ms = MsSince(since_);  // the record's held_ms could not count its own write
    }
    if (reason == "unmount")
      gate_->Shutdown();
    else
      gate_->Open();
    opened = true;
  };
  Status s = journal_->CommitQueued(rec, open_gate);
  if (s.ok()) {
    out.seq = rec.seq;
  } else {
    // Never stay frozen because the journal failed; the mutations will get
    // EIO from the failed journal anyway.
    spdlog::error("resume: cannot journal the resume record: {}", s.message());
  }
  if (!opened) open_gate();  // a journal that never queued the record
  {
    std::lock_guard lk(mu_);
    last_resume_ = out;
  }
  thaw_cv_.notify_all();
  spdlog::info("resumed ({}) after {:.1f} ms; {} held operation(s) proceed", reason, out.held_ms,
               out.held_ops);
  return out;
}

void PauseController::Shutdown() {
  std::lock_guard ctl(ctl_mu_);
  bool paused;
  {
    std::lock_guard lk(mu_);
    shut_down_ = true;
    paused = paused_;
  }
  if (paused) (void)ResumeLocked("unmount");
  gate_->Shutdown();
}

Result<double> PauseController::Hold(Clock::time_point deadline,
                                     const std::function<Status()>& fn) {
  std::lock_guard ctl(ctl_mu_);
  {
    std::lock_guard lk(mu_);
    if (shut_down_) return Status::Error(ESHUTDOWN, "the mount is being unmounted");
    if (paused_)
      return Status::Error(EBUSY, "paused by " + by_ + " (pause record " + std::to_string(seq_) +
                                      ")");
  }
  auto closed_at = Clock::now();
  Status s = gate_->Close(deadline);
  if (!s.ok()) {
    if (s.code() == EBUSY || s.code() == ESHUTDOWN) return s;
    return s.WithContext("draining mutations in flight");
  }
  s = fs_->FlushAllRanges();
  if (s.ok()) s = fn();
  else s = s.WithContext("committing pending byte ranges");
  gate_->Open();
  double held = MsSince(closed_at);
  if (!s.ok()) return s;
  return held;
}

PauseState PauseController::state() const {
  PauseState st;
  {
    std::lock_guard lk(mu_);
    st.paused = paused_;
    st.shut_down = shut_down_;
    st.id = id_;
    if (paused_) {
      st.seq = seq_;
      st.since_ns = since_ns_;
      st.until_ns = until_ns_;
      st.timeout_s = timeout_s_;
      st.by = by_;
    }
    st.last_resume = last_resume_;
  }
  st.gate = gate_->stats();
  return st;
}

bool PauseController::IsPaused(uint64_t id) const {
  std::lock_guard lk(mu_);
  return paused_ && id_ == id;
}

void PauseController::ThawLoop() {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    if (!paused_) {
      thaw_cv_.wait(lk);
      continue;
    }
    uint64_t id = id_;
    auto until = until_;
    if (Clock::now() < until) {
      thaw_cv_.wait_until(lk, until);
      continue;
    }
    // Expired: thaw, unless a resume got there first.
    lk.unlock();
    auto r = Resume("timeout", id);
    if (r.ok())
      spdlog::warn("pause timed out after {:.0f} ms: writes resumed (auto-thaw)", r->held_ms);
    lk.lock();
  }
}

}  // namespace scribefs
