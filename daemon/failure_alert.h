// FailureAlerts: tells an operator that a target is failing without polling
// (issue 16, --on-failure/--alert-after). Each target's uploader reports
// since when it fails (ReplicatorStats::failing_since_ns: the first failed
// attempt after the last path it stored); once that has lasted alert_after,
// the target's command runs with `sh -c`, once per outage. A path stored
// ends the outage; the next failure starts a new one, told again.
//
// The command gets a clean environment, never the daemon's (which may hold
// S3 credentials): PATH, and SCRIBEFS_TARGET (the name), SCRIBEFS_TARGET_URL,
// SCRIBEFS_ERROR (the last error, as `scribectl status` shows it),
// SCRIBEFS_FAILING_SINCE (Unix seconds) and SCRIBEFS_DATADIR. Its stdin is
// /dev/null; the daemon does not wait for it (it is reaped and its exit
// status logged on a later tick).
//
// Thread-safe: one thread of its own between Start and Stop.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "uploader/replicator.h"

namespace scribefs {

// The decision, apart from the I/O: whether a target's hook runs now. An
// outage is known by when it started (failing_since_ns, 0: not failing);
// *alerted holds the start of the outage already told (0: none).
bool AlertDue(int64_t failing_since_ns, int64_t now_ns, int64_t alert_after_ns, int64_t* alerted);

// The environment of a hook (KEY=VALUE strings), as described above.
std::vector<std::string> AlertEnvironment(const std::string& name, const std::string& url,
                                          const std::string& error, int64_t failing_since_ns,
                                          const std::string& datadir);

class FailureAlerts {
 public:
  struct Watch {
    std::string name, url;
    std::string command;  // run with sh -c; a Watch without one is not kept
    int64_t alert_after_ns = 0;
    std::function<ReplicatorStats()> stats;
  };
  FailureAlerts(std::vector<Watch> watches, std::string datadir);
  ~FailureAlerts();  // Stop()
  FailureAlerts(const FailureAlerts&) = delete;
  FailureAlerts& operator=(const FailureAlerts&) = delete;

  bool empty() const { return watches_.empty(); }
  void Start();
  void Stop();  // idempotent; hooks still running are not waited for

 private:
  struct Watched {
    Watch watch;
    int64_t alerted = 0;
  };
  void Loop();
  void Check(Watched& w);
  void Reap();

  std::vector<Watched> watches_;
  const std::string datadir_;
  std::chrono::milliseconds tick_;
  std::vector<std::pair<pid_t, std::string>> children_;  // pid, target name (the thread's)
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace scribefs
