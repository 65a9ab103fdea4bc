// CheckpointStorer: the background half of a checkpoint (issue 12; README,
// "Pause points and checkpoints").
//
// The `checkpoint` verb captures under the pause (CowSpool::Capture of the
// frozen paths, a snapshot of the objects table), resumes, writes the rows of
// the manifest it already knows to a file and hands the checkpoint over
// (Add): it is then *captured*. This thread waits until no journal record
// with seq <= the mark is unfinished, then writes the manifest (those rows +
// one entry per frozen path, from CowSpool::OpenAtMark and the journal's
// last done record of the path), stores it, commits the `checkpoint` record,
// and releases the capture: *stored*. A failed record <= the mark, an
// abandoned capture (CowSpool::Captures) or a capture lost across a restart
// make it *failed*, with the reason; writers are never affected.
//
// Persistent state (one owner: this class):
//   - the journal's meta key "checkpoints": a JSON object name -> {state
//     (captured | failed), seq, captured_ns, held_ms, frozen, rows, error,
//     failed_ns}; made durable (Journal::Sync) at every change. A stored
//     checkpoint leaves it: its `checkpoint` record says the rest.
//   - <state dir>/checkpoints/NAME.frozen (JSON array of the frozen paths)
//     and NAME.rows (manifest rows, uploader/checkpoint.h), written durably
//     before the checkpoint is recorded as captured; deleted once it is
//     stored or failed.
// After kill -9, Start() reloads the captured checkpoints and stores them.
//
// Several targets (issue 16): a checkpoint is for every target the daemon
// stores to. The capture writes one rows file per target (NAME@TARGET.rows:
// each target holds its own objects) and is held until every target has
// the manifest or cannot have it. Each target's manifest is stored, and its
// `checkpoint` record committed (detail.target_name), as soon as that
// target has everything up to the mark: a target that is down never delays
// the others' copy. The checkpoint is *stored* once every target has it;
// *failed* if one cannot (its record failed, the capture was abandoned),
// the meta entry then naming the targets that have it (stored_on).
//
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "fs/cow_spool.h"
#include "journal/journal.h"
#include "uploader/target_set.h"

namespace scribefs {

struct CheckpointState {
  std::string name;
  std::string state;  // captured | stored | failed
  int64_t seq = 0;    // the mark (the pause record)
  int64_t captured_ns = 0;
  int64_t stored_ns = 0;  // stored or failed: when
  double held_ms = 0;
  uint64_t frozen = 0;          // frozen paths
  uint64_t rows = 0;            // manifest rows known at the capture
  uint64_t paths = 0;           // stored: the manifest's entries
  uint64_t manifest_bytes = 0;  // stored: its size
  double manifest_ms = 0;       // stored: how long writing and storing it took
  uint64_t spool_bytes = 0;
  std::string error;  // failed: why
  // The targets it is for, by name, in the daemon's order; those that have
  // its manifest; those that cannot (name -> why).
  std::vector<std::string> targets;
  std::vector<std::string> stored_on;
  std::map<std::string, std::string> failed_on;
  std::map<std::string, uint64_t> target_rows;  // manifest rows known at the capture, per target
  // The targets still to store it on.
  std::vector<std::string> Pending() const;
};

class CheckpointStorer {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::string state_dir;
    std::string datadir;  // for log lines only
  };
  CheckpointStorer(Journal* journal, TargetSet* targets, CowSpool* spool, Options options);
  ~CheckpointStorer();  // Stop()
  CheckpointStorer(const CheckpointStorer&) = delete;
  CheckpointStorer& operator=(const CheckpointStorer&) = delete;

  // Reloads what a previous run left (captured checkpoints, captures no
  // checkpoint owns) and starts the thread.
  Status Start();
  // Stops the thread (a checkpoint being stored is finished or left captured).
  void Stop();

  CowSpool& spool() { return *spool_; }
  // The directory of the .frozen/.rows files (created by Start).
  std::string dir() const { return state_dir_ + "/checkpoints"; }
  std::string FrozenPath(const std::string& name) const { return dir() + "/" + name + ".frozen"; }
  std::string RowsPath(const std::string& name, const std::string& target) const {
    return dir() + "/" + name + "@" + target + ".rows";
  }
  // Every target's name, in the daemon's order.
  std::vector<std::string> TargetNames() const;

  // A captured checkpoint whose NAME.frozen file and the rows file of each
  // of c.targets are written: records it durably and wakes the thread.
  Status Add(CheckpointState c);
  // Whether a checkpoint of that name is captured (not yet stored).
  bool InFlight(const std::string& name);
  // Captured and failed ones, oldest mark first (stored ones are journal records).
  std::vector<CheckpointState> List();
  // Waits until `name` is stored or failed (its state), or the deadline
  // (its state stays captured), or cancelled.
  CheckpointState Wait(const std::string& name, Clock::time_point deadline,
                       const std::function<bool()>& cancelled);
  // Waits until no checkpoint is captured. ETIMEDOUT / ECANCELED.
  Status WaitAll(Clock::time_point deadline, const std::function<bool()>& cancelled);

 private:
  void Loop();
  // One attempt at a captured checkpoint on each target it is pending on,
  // but those in *waiting (an older checkpoint waits for them there: each
  // target stores its manifests in mark order); the targets that are not
  // ready are added to it. false: nothing done.
  bool Step(const CheckpointState& c, std::set<std::string>* waiting);
  // *retry: the failure is the target's, retryable (the checkpoint stays captured).
  // On success *stored gets paths, manifest_bytes and manifest_ms.
  Status Store(const CheckpointState& c, const std::string& target, Replicator& r, bool* retry,
               CheckpointState* stored);
  // The outcome on one target; once none is pending, the checkpoint is
  // stored (or failed) and its capture released.
  void FinishOn(const std::string& name, const std::string& target, const Status& result,
                const CheckpointState* stored = nullptr);
  // The outcome on every target still pending (the capture is gone).
  void FailPending(const std::string& name, const Status& why);
  // The files and the capture of a checkpoint no target needs any more.
  void Discard(const CheckpointState& c);
  Replicator* Find(const std::string& target);
  Status Persist();  // the meta key, durably; under mu_
  // Failed checkpoints are listed until kMaxFailedKept newer ones failed; under mu_.
  void ForgetOldFailures();
  static constexpr size_t kMaxFailedKept = 100;
  void Load();

  Journal* const journal_;
  TargetSet* const targets_;
  CowSpool* const spool_;
  const std::string state_dir_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, CheckpointState> list_;  // GUARDED_BY(mu_): captured and failed
  std::map<std::string, CheckpointState> done_;  // GUARDED_BY(mu_): stored by this run
  bool stop_ = false;                            // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace scribefs
