// The daemon's control plane: the control socket (control_server.h) with the
// verbs of README, "Control socket" (status, pause, resume, checkpoint,
// checkpoints, flush, retry, rescan; one file each, see verbs.h), wired to the
// daemon's Filesystem, PauseController, Journal and (when there is a target)
// Replicator. Part of daemon/, which alone depends on both fs/ and uploader/.
//
// Thread-safe: handlers run concurrently on control connection threads;
// checkpoints are serialized among themselves.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "daemon/checkpoint_storer.h"
#include "daemon/control_server.h"
#include "daemon/lag_monitor.h"
#include "daemon/metrics_format.h"
#include "daemon/target_probe.h"
#include "fs/filesystem.h"
#include "fs/pause_controller.h"
#include "journal/journal.h"
#include "uploader/orphan_sweep.h"
#include "uploader/replicator.h"
#include "uploader/target_set.h"

namespace scribefs {

// Bytes sent to the target over the last seconds, from samples taken by the
// daemon once a second.
class UploadRate {
 public:
  void Sample(uint64_t bytes_sent);
  double BytesPerSecond() const;  // over the samples kept (up to 10 s)

 private:
  mutable std::mutex mu_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>> samples_;
};

struct DaemonInfo {
  std::string datadir, mountpoint, state_dir, mode, version;
  int64_t started_ns = 0;
  double default_pause_s = 60;
};

struct ControlDeps {
  DaemonInfo info;
  Journal* journal = nullptr;
  Filesystem* fs = nullptr;
  PauseController* pauser = nullptr;
  Replicator* replicator = nullptr;  // nullptr: journal only (no --target)
  UploadRate* rate = nullptr;
  std::vector<OrphanSweep*> sweeps;  // one per target
  // Every target's uploader (flush, retry); replicator is the first's. Null
  // without a target.
  TargetSet* targets = nullptr;
  int datadir_fd = -1;  // DATADIR (rescan walks it); not owned
  DurationHistogram* checkpoint_hold = nullptr;  // checkpoints observe their hold; may be null
  // Ends the FUSE session (the `stop` verb); false before it serves. May be empty.
  std::function<bool()> stop;
  TargetProbe* probe = nullptr;  // the target's health (status); may be null
  LagMonitor* lag = nullptr;     // bounded lag (status); null without a target
  // Captured checkpoints stored in the background (issue 12); null without
  // a target or a spool: checkpoints then upload under the pause.
  CheckpointStorer* storer = nullptr;
};

// The handlers; deps and everything it points to must outlive the server.
std::map<std::string, ControlHandler> MakeControlHandlers(const ControlDeps* deps);

class FuseServer;

// Everything the daemon needs for pause points and the control socket, in
// the order of their lifetimes, so that daemon.cc only creates, starts and
// stops it:
//   MutationGate gate;  FsOptions::gate = &gate;  Filesystem fs(...);
//   ControlPlane plane(...);  plane.Start()  (before mounting)
//   mount;  plane.WatchSession(server)  ...  server->Run();  plane.Stop();
class ControlPlane {
 public:
  struct Options {
    DaemonInfo info;
    double max_pause_s = 3600;
    std::string socket_path;
    int datadir_fd = -1;  // DATADIR: syncfs (pause --sync), rescan; not owned
    std::vector<OrphanSweep*> sweeps;  // one per target: flush waits for them; not owned
    TargetSet* targets = nullptr;      // every target's uploader; not owned, may be null
    std::function<bool()> stop;    // ends the FUSE session as SIGTERM does
    TargetProbe* probe = nullptr;  // not owned, may be null
    LagMonitor* lag = nullptr;     // not owned, may be null
    CowSpool* spool = nullptr;     // copy-on-write captures; not owned, may be null
  };
  ControlPlane(MutationGate* gate, Filesystem* fs, Journal* journal, Replicator* replicator,
               Options options);
  ~ControlPlane();  // Stop()
  // Creates the control socket (errno EADDRINUSE: another daemon owns it).
  Status Start();
  // Watches the session: once it ends (SIGTERM, unmount), held operations
  // proceed, or the FUSE loop could not finish. Also samples the upload rate.
  void WatchSession(FuseServer* server);
  // After FuseServer::Run() returned: no pause survives, held operations have
  // answered, the socket is gone, the checkpoint storer has stopped (captured
  // checkpoints are stored after the next start). Idempotent.
  void Stop();
  PauseController& pauser() { return pauser_; }
  // How long checkpoints held writes (for /metrics).
  const DurationHistogram& checkpoint_hold() const { return checkpoint_hold_; }
  // Captured checkpoints (status, /metrics); null without target or spool.
  CheckpointStorer* storer() { return storer_.get(); }

 private:
  MutationGate* const gate_;
  const Options options_;
  PauseController pauser_;
  UploadRate rate_;
  DurationHistogram checkpoint_hold_{DurationHistogram::HoldBounds()};
  std::unique_ptr<CheckpointStorer> storer_;
  ControlDeps deps_;
  std::unique_ptr<ControlServer> server_;
  std::atomic<bool> watch_stop_{false};
  std::thread watcher_;
};

}  // namespace scribefs
