// systemd notification (daemon/service_notify.h).
#include "daemon/service_notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace scribefs {

ServiceNotifier::ServiceNotifier() : enabled_(getenv("NOTIFY_SOCKET") != nullptr) {
  uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0) watchdog_ = std::chrono::microseconds(usec);
}

ServiceNotifier::~ServiceNotifier() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ServiceNotifier::Send(const std::string& message) {
  if (!enabled_) return;
  int rc = sd_notify(0, message.c_str());
  if (rc < 0) spdlog::debug("sd_notify: {}", strerror(-rc));
}

void ServiceNotifier::Ready(const std::string& status, std::function<std::string()> status_fn,
                            std::chrono::milliseconds status_interval) {
  if (!enabled_) return;
  Send("READY=1\nSTATUS=" + status);
  status_fn_ = std::move(status_fn);
  status_interval_ = status_interval;
  thread_ = std::thread([this] { Heartbeat(); });
}

void ServiceNotifier::Stopping(const std::string& status) {
  stopping_ = true;
  Send("STOPPING=1\nSTATUS=" + status);
}

void ServiceNotifier::Heartbeat() {
  using Clock = std::chrono::steady_clock;
  auto next_status = Clock::now() + status_interval_;
  // Twice per watchdog interval, as sd_watchdog_enabled(3) recommends.
  auto wd_period = std::chrono::duration_cast<Clock::duration>(watchdog_ / 2);
  auto next_wd = Clock::now();
  std::unique_lock lk(mu_);
  while (!stop_) {
    auto now = Clock::now();
    if (watchdog_.count() > 0 && now >= next_wd) {
      Send("WATCHDOG=1");
      next_wd = now + wd_period;
    }
    if (!stopping_ && now >= next_status) {
      lk.unlock();
      std::string status = status_fn_ ? status_fn_() : "";
      lk.lock();
      if (!stopping_ && !status.empty()) Send("STATUS=" + status);
      next_status = now + status_interval_;
    }
    auto wake = stopping_ ? next_wd : next_status;
    if (watchdog_.count() > 0) wake = std::min(wake, next_wd);
    if (stopping_ && watchdog_.count() == 0) wake = Clock::now() + std::chrono::seconds(3600);
    cv_.wait_until(lk, wake, [&] { return stop_; });
  }
}

}  // namespace scribefs
