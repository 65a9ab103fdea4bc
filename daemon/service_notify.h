// The daemon's side of systemd's service notification protocol (sd_notify(3)),
// for a unit of Type=notify (packaging/scribefs@.service): READY=1 once the
// mount serves, a STATUS= line every few seconds while it does, STOPPING=1 at
// shutdown, and WATCHDOG=1 keep-alives when the unit sets WatchdogSec=.
// Without $NOTIFY_SOCKET (not started by systemd) every call does nothing.
//
// Thread-safe; the heartbeat runs on its own thread until destruction.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace scribefs {

class ServiceNotifier {
 public:
  ServiceNotifier();
  ~ServiceNotifier();  // stops the heartbeat
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  // READY=1 with STATUS=status, then the heartbeat: STATUS=status_fn() every
  // status_interval, and WATCHDOG=1 every half watchdog interval when
  // systemd asked for it (sd_watchdog_enabled).
  void Ready(const std::string& status, std::function<std::string()> status_fn,
             std::chrono::milliseconds status_interval);
  // STOPPING=1 with STATUS=status. The heartbeat goes on with WATCHDOG=1 only
  // (draining the uploads may take --stop-timeout), status_fn is not called
  // again.
  void Stopping(const std::string& status);

 private:
  void Send(const std::string& message);
  void Heartbeat();

  const bool enabled_;
  std::chrono::microseconds watchdog_{0};  // 0: no watchdog
  std::function<std::string()> status_fn_;
  std::chrono::milliseconds status_interval_{5000};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace scribefs
