// MutationGate: the gate every mutating filesystem operation passes through,
// so that a pause can hold new mutations and wait for those in flight.
//
// Open (the normal state): Enter() returns at once and counts the operation
// as in flight until its Pass is destroyed. Closed (paused): Enter() blocks
// until the gate opens again, and DeferIfClosed() queues a continuation
// instead, so that a held FUSE request does not occupy a FUSE worker thread
// (reads must keep being served while writes are held). Close() shuts the
// gate and waits until every operation in flight has finished.
//
// A Pass covers only the local operation: callers must destroy it before any
// wait that may take long and does not change local state (the sync-mode wait
// for an upload), or a Close() could wait for that wait.
//
// Lock order: Enter() is called before any filesystem lock (TreeLock,
// Inode::mu), so a thread held at the gate holds no lock that a thread in
// flight could need. A thread holding a Pass must never call Enter() again.
//
// A deferred write must keep a copy of its data (it lives in the FUSE
// worker's buffer). The copies are bounded in total (max_held_bytes): a
// write whose copy would pass the bound is not deferred but waits at the gate
// in its worker, so that a long pause costs bounded memory and no write fails.
//
// Continuations queued while closed run, once the gate opens, on the gate's
// own threads (started on demand, at most release_threads at once). A
// continuation normally re-runs its operation from the top, so that it is
// deferred again if the gate closed again in the meantime.
//
// Bounded lag (fs/lag_policy.h) closes the gate for a second, independent
// reason: SetThrottle(kHeld) holds new *data* mutations (kData: writes,
// creates, namespace changes: whatever adds to the backlog) exactly as a
// pause does, while closes and fsyncs (kFinish) pass, since they add nothing
// to the backlog and the uploader waits for a close to store a file.
// SetThrottle(kSlowed, d) delays each new data mutation by d: DeferIfClosed
// queues it on a timer and a gate thread runs it once d has passed, so that a
// delay occupies no FUSE worker either. A pause and a throttle hold compose:
// Open() (resume) ends only the pause and SetThrottle(kNone) only the
// throttle; a held operation proceeds once neither holds it. Shutdown()
// (unmount) ends both for good.
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
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/status.h"
#include "fs/lag_policy.h"

namespace scribefs {

// What a mutation does to the backlog the uploader has not stored yet.
enum class MutationKind {
  kData,    // adds to it: throttled (bounded lag) and paused
  kFinish,  // close/fsync of a written file: paused, never throttled
};

class MutationGate {
 public:
  // One operation in flight; Exit()s the gate when destroyed. A
  // default-constructed Pass holds nothing (an ungated operation).
  class [[nodiscard]] Pass {
   public:
    Pass() = default;
    Pass(Pass&& o) noexcept : gate_(o.gate_) { o.gate_ = nullptr; }
    Pass& operator=(Pass&& o) noexcept;
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;
    ~Pass() { Release(); }
    // Ends the operation early (idempotent).
    void Release();

   private:
    friend class MutationGate;
    explicit Pass(MutationGate* gate) : gate_(gate) {}
    MutationGate* gate_ = nullptr;
  };

  struct Stats {
    bool closed = false;
    bool shut_down = false;
    uint64_t in_flight = 0;   // operations holding a Pass
    uint64_t blocked = 0;     // threads waiting in Enter()
    uint64_t deferred = 0;    // continuations queued, not yet released
    uint64_t held_total = 0;  // operations held (blocked or deferred) since construction
    uint64_t releasing = 0;   // released continuations queued or running on gate threads
    uint64_t held_bytes = 0;  // bytes of held write copies
    // Bounded lag (SetThrottle).
    ThrottleState throttle = ThrottleState::kNone;
    std::chrono::microseconds throttle_delay{0};
    uint64_t delayed = 0;        // continuations waiting out a delay now
    uint64_t delayed_total = 0;  // operations delayed since construction
    std::optional<uint64_t> paths_left;  // SetPathBudget's grant, what is left
  };

  static constexpr size_t kDefaultMaxHeldBytes = 64 << 20;
  explicit MutationGate(int release_threads = 8, size_t max_held_bytes = kDefaultMaxHeldBytes);
  // Opens the gate, runs every queued continuation and joins the gate threads.
  ~MutationGate();
  MutationGate(const MutationGate&) = delete;
  MutationGate& operator=(const MutationGate&) = delete;

  // Waits while the gate is closed for `kind` (paused; throttle-held for
  // kData), then counts the caller in flight. Never delays (see
  // DeferIfClosed): a caller that cannot defer is only held.
  Pass Enter(MutationKind kind = MutationKind::kData);
  // While closed for `kind`: queues fn to run on a gate thread once the gate
  // opens and returns true (fn now owns the operation). While slowed (kData
  // only): queues fn to run on a gate thread after the delay and returns
  // true; fn's re-run of this call on that thread then returns false, so that
  // each operation waits out one delay. Otherwise returns false and does
  // nothing (the caller proceeds, normally through Enter()).
  bool DeferIfClosed(std::function<void()> fn, MutationKind kind = MutationKind::kData);
  // Lock-free hint for the fast path: true while paused or throttled (exact
  // under DeferIfClosed's lock).
  bool closed() const { return closed_hint_.load(std::memory_order_acquire); }

  // Bounded lag: kHeld holds new kData mutations until another call ends
  // the hold; kSlowed delays each by `delay`; kNone lets them pass. Independent
  // of pauses (Close/Open). Ignored after Shutdown().
  void SetThrottle(ThrottleState state, std::chrono::microseconds delay = {});
  // Bounded bytes (--max-pending) between two measurements of the backlog,
  // which come every 100 ms while a writer can write at local speed: the
  // monitor grants the bytes that may still be written before the bound
  // (nullopt: no limit); every data write charges its length; once the grant
  // is spent, the gate holds data mutations as SetThrottle(kHeld) does, until
  // the monitor decides again.
  void SetWriteBudget(std::optional<uint64_t> bytes);
  void ChargeWrite(uint64_t bytes);
  // Bounded lag (--max-lag) between two measurements, in changed paths
  // (LagPolicy's ThrottleDecision::paths): the monitor grants how many new
  // changes may still start (nullopt: no limit); every mutation that gives
  // the uploader a path to store (a create, an O_TRUNC open, a namespace or
  // attribute change, the first write to a clean file) charges one with
  // ChargePath(); while the grant is spent (0 left) data mutations are held
  // as by SetThrottle(kHeld). Unlike the write budget the hold is the grant's
  // own: a grant of 0 holds at once, whatever the throttle state, and a new
  // grant releases what the spent one held.
  void SetPathBudget(std::optional<uint64_t> paths);
  void ChargePath();

  // Counts n bytes of a held write's copy against max_held_bytes: false
  // (nothing counted) when they would pass it. ReturnHeldBytes(n) when the
  // copy is freed.
  bool ReserveHeldBytes(size_t n);
  void ReturnHeldBytes(size_t n);
  size_t max_held_bytes() const { return max_held_bytes_; }

  // With the gate open, waits until nothing is in flight (or `until`): a
  // pause that closes then has nothing to drain, so the writers it holds do
  // not also wait for an operation the disk is stalling. True when idle.
  bool WaitIdle(std::chrono::steady_clock::time_point until);
  // Closes the gate and waits until nothing is in flight. If that does not
  // happen by `deadline`, reopens the gate and fails with ETIMEDOUT. EBUSY
  // when already closed, ESHUTDOWN after Shutdown().
  Status Close(std::chrono::steady_clock::time_point deadline);
  // Opens the gate: wakes the blocked threads and hands the queued
  // continuations to the gate threads. Returns how many operations were
  // held (blocked + deferred). No-op (0) when open.
  uint64_t Open();
  // Opens the gate for good (unmount): later Close() calls fail.
  uint64_t Shutdown();
  // Waits until every released continuation has finished running (tests,
  // shutdown), at most until deadline. True when none is left.
  bool WaitReleased(std::chrono::steady_clock::time_point deadline);

  Stats stats() const;

 private:
  using Clock = std::chrono::steady_clock;
  void Exit();
  // True when a `kind` operation must wait (requires mu_).
  bool HoldsLocked(MutationKind kind) const;
  bool PathsSpentLocked() const { return paths_left_.has_value() && *paths_left_ == 0; }
  void UpdateHintLocked();
  // Wakes the blocked threads and hands the deferred continuations to the
  // gate threads (requires mu_; the caller has updated closed_/throttle_).
  void ReleaseLocked(std::unique_lock<std::mutex>& lk);
  void StartThreadsLocked();
  void ReleaseLoop();

  const int release_threads_;
  const size_t max_held_bytes_;
  std::atomic<size_t> held_bytes_{0};
  std::atomic<bool> budgeted_{false};   // SetWriteBudget(bytes)
  std::atomic<int64_t> budget_{0};      // bytes left of the grant
  mutable std::mutex mu_;
  std::condition_variable open_cv_;              // Enter(): the gate opened
  std::condition_variable drained_cv_;           // Close(): in_flight_ reached 0
  std::condition_variable work_cv_;              // gate threads: continuations to run
  std::condition_variable idle_cv_;              // WaitReleased(): releasing_ reached 0
  bool closed_ = false;                          // GUARDED_BY(mu_)
  std::atomic<bool> closed_hint_{false};         // closed_, readable without mu_
  bool shut_down_ = false;                       // GUARDED_BY(mu_)
  bool stopping_ = false;                        // GUARDED_BY(mu_): destructor
  uint64_t in_flight_ = 0;                       // GUARDED_BY(mu_)
  uint64_t blocked_ = 0;                         // GUARDED_BY(mu_)
  uint64_t held_total_ = 0;                      // GUARDED_BY(mu_)
  uint64_t releasing_ = 0;                       // GUARDED_BY(mu_): queued in run_ + running
  std::vector<std::function<void()>> deferred_;  // GUARDED_BY(mu_)
  // GUARDED_BY(mu_): released, to run; .second: a delay was served.
  std::deque<std::pair<std::function<void()>, bool>> run_;
  ThrottleState throttle_ = ThrottleState::kNone;      // GUARDED_BY(mu_)
  std::chrono::microseconds throttle_delay_{0};        // GUARDED_BY(mu_)
  uint64_t delayed_total_ = 0;                         // GUARDED_BY(mu_)
  std::optional<uint64_t> paths_left_;                 // GUARDED_BY(mu_): SetPathBudget
  std::atomic<bool> paths_budgeted_{false};            // paths_left_ set, readable without mu_
  // GUARDED_BY(mu_): delayed continuations by when they may run (counted in
  // releasing_, moved to run_ when due).
  std::multimap<Clock::time_point, std::function<void()>> timed_;
  int idle_threads_ = 0;                         // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;             // GUARDED_BY(mu_)
};

}  // namespace scribefs
