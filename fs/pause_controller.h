// PauseController: pause points of a mount (README, "Pause and checkpoints").
//
// Pause: pushes the kernel's cached writes of the mount to the daemon, closes
// the MutationGate (new mutations of any kind wait; reads, stat, readdir
// continue), waits until the mutations in flight have finished, commits every
// byte range still in memory, optionally syncs the backing filesystem, and
// appends a durable `pause` record. From then on the backing directory and the journal
// stand still until Resume: on request, when the pause's timeout expires
// (auto-thaw, so that a controller that dies cannot freeze the application
// forever), or when the daemon is asked to unmount. Every resume appends a
// `resume` record naming why ({"reason":"command"|"timeout"|"unmount"|
// "checkpoint"}), then opens the gate, so the records of the held operations
// follow it.
//
// Pauses do not nest: Pause while paused fails with EBUSY (the caller must
// resume first, or work inside the existing pause, as checkpoints do).
//
// Thread-safe. Pause and Resume are serialized; state() never waits for them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/status.h"
#include "fs/filesystem.h"
#include "fs/mutation_gate.h"
#include "journal/journal.h"

namespace scribefs {

struct PauseOptions {
  // Longest pause a caller may ask for, seconds (daemon option --max-pause).
  double max_pause_s = 3600;
  // Called before the gate closes: writes the kernel still caches for the
  // mount (writeback cache) are sent to the daemon, e.g. by syncfs() on the
  // mount. Bounded by writeback_timeout; may be empty.
  std::function<Status()> writeback;
  std::chrono::milliseconds writeback_timeout{30000};
  // Before the gate closes, how long to wait (the gate open) for a moment
  // with no mutation in flight, so that the drain is empty: an operation
  // that the disk stalls (ext4 under heavy writeback, tens of ms) then does
  // not hold every other writer too. Past it, the gate closes and drains.
  std::chrono::milliseconds quiet_wait{250};
  // Called once the mutations have drained, for pauses that ask for it:
  // makes the backing directory's data durable (syncfs() on DATADIR). May be
  // empty.
  std::function<Status()> sync_backing;
};

struct PauseResult {
  uint64_t id = 0;                              // identifies this pause (for Resume(only_id))
  int64_t seq = 0;                              // the pause record
  int64_t since_ns = 0;                         // wall clock when the gate closed
  std::chrono::steady_clock::time_point since;  // the same, steady clock
  int64_t until_ns = 0;                         // auto-thaw time
  double timeout_s = 0;
  double writeback_ms = 0, drain_ms = 0, sync_ms = 0;
  double quiet_ms = 0;  // waiting for no mutation in flight, the gate open (not held)
  // Under the hold after the drain: byte ranges still in memory committed,
  // and the pause record's commit (or, queued, both: record_ms).
  double ranges_ms = 0, record_ms = 0;
  // With durable_record false: the commit of the pause record (and the
  // ranges before it), queued and perhaps not written yet. Wait() for it
  // before relying on the record being in the journal.
  std::shared_ptr<Journal::PendingCommit> record_write;
  bool writeback_complete = true;  // false: the writeback hook did not finish in time
};

struct ResumeResult {
  int64_t seq = 0;  // the resume record (0 if it could not be written)
  int64_t pause_seq = 0;
  double held_ms = 0;     // how long the gate was closed
  uint64_t held_ops = 0;  // operations that waited and now proceed
  std::string reason;
};

struct PauseState {
  bool paused = false;
  bool shut_down = false;
  uint64_t id = 0;
  int64_t seq = 0;
  int64_t since_ns = 0;
  int64_t until_ns = 0;
  double timeout_s = 0;
  std::string by;  // who asked ("scribectl", "checkpoint NAME")
  MutationGate::Stats gate;
  std::optional<ResumeResult> last_resume;
};

class PauseController {
 public:
  // gate, fs and journal must outlive the controller; fs must use gate.
  PauseController(MutationGate* gate, Filesystem* fs, Journal* journal, PauseOptions options);
  ~PauseController();  // stops the auto-thaw timer (does not resume)
  PauseController(const PauseController&) = delete;
  PauseController& operator=(const PauseController&) = delete;

  // EINVAL for a timeout outside (0, max_pause_s]; EBUSY when already
  // paused; ESHUTDOWN after Shutdown(); ETIMEDOUT when the mutations in
  // flight did not finish within the timeout (the gate is open again); EIO
  // when the journal failed (the gate is open again).
  // sync: also make DATADIR's data durable (syncfs) before the pause record.
  // durable_record false (and sync false): the pause record, and the
  // records of the byte ranges before it, are queued for commit and not
  // waited for (PauseResult::record_write): a checkpoint gets its mark
  // without a journal write under the hold, and makes the journal durable
  // after it resumed. An fsync under the hold waits for every dirty page of
  // the disk's journal transaction, hundreds of ms after GiBs were written;
  // even the write alone was stalled 22.5 ms by such a disk.
  Result<PauseResult> Pause(double timeout_s, const std::string& by, bool sync = false,
                            bool durable_record = true);
  // Resumes with `reason`. ENOENT when not paused, or (with only_id) when
  // the current pause is not that one (it ended already).
  Result<ResumeResult> Resume(const std::string& reason,
                              std::optional<uint64_t> only_id = std::nullopt);
  // Unmount: resumes (reason "unmount") if paused, opens the gate for good.
  void Shutdown();

  // Runs fn while no mutation through the mount is in flight or can start:
  // closes the gate, waits for the mutations in flight (until `deadline`),
  // commits the byte ranges still in memory, runs fn, opens the gate. Unlike
  // a pause it writes no record and does not push the kernel's cached writes
  // (what the kernel still caches has not reached DATADIR either), so it is
  // for short looks at DATADIR and the journal that must not race the mount
  // (rescan). Serialized with Pause/Resume: a pause asked for meanwhile waits
  // for fn. EBUSY while paused (a pause promises that neither DATADIR nor the
  // journal changes, so the caller waits for its end), ESHUTDOWN when
  // unmounting, ETIMEDOUT when the mutations in flight did not finish in
  // time; otherwise fn's status. Returns how long the gate was closed (ms).
  Result<double> Hold(std::chrono::steady_clock::time_point deadline,
                      const std::function<Status()>& fn);

  PauseState state() const;
  // True while pause `id` is the current one.
  bool IsPaused(uint64_t id) const;
  double max_pause_s() const { return options_.max_pause_s; }

 private:
  Result<ResumeResult> ResumeLocked(const std::string& reason);  // requires ctl_mu_
  // Steps 3-4 of Pause, the gate closed: fills out.seq and the timings.
  Status RecordPause(const std::string& by, bool sync, bool durable_record, PauseResult& out);
  void ThawLoop();

  MutationGate* const gate_;
  Filesystem* const fs_;
  Journal* const journal_;
  const PauseOptions options_;

  std::mutex ctl_mu_;  // serializes Pause/Resume/Shutdown; taken before mu_

  mutable std::mutex mu_;  // guards what follows
  std::condition_variable thaw_cv_;
  bool paused_ = false;
  bool shut_down_ = false;
  bool stopping_ = false;
  uint64_t id_ = 0;
  int64_t seq_ = 0;
  int64_t since_ns_ = 0;
  std::chrono::steady_clock::time_point since_;
  std::chrono::steady_clock::time_point until_;
  int64_t until_ns_ = 0;
  double timeout_s_ = 0;
  std::string by_;
  std::optional<ResumeResult> last_resume_;
  std::thread thaw_thread_;
};

}  // namespace scribefs
