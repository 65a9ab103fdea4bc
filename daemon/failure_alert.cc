#include "daemon/failure_alert.h"

#include <fcntl.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>

#include "journal/record.h"

namespace scribefs {

bool AlertDue(int64_t failing_since_ns, int64_t now_ns, int64_t alert_after_ns, int64_t* alerted) {
  if (failing_since_ns == 0) {
    *alerted = 0;  // the outage is over: the next one is told again
    return false;
  }
  if (*alerted == failing_since_ns) return false;  // this outage was told
  if (now_ns - failing_since_ns < alert_after_ns) return false;
  *alerted = failing_since_ns;
  return true;
}

std::vector<std::string> AlertEnvironment(const std::string& name, const std::string& url,
                                          const std::string& error, int64_t failing_since_ns,
                                          const std::string& datadir) {
  return {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          "SCRIBEFS_TARGET=" + name,
          "SCRIBEFS_TARGET_URL=" + url,
          "SCRIBEFS_ERROR=" + error,
          "SCRIBEFS_FAILING_SINCE=" + std::to_string(failing_since_ns / 1000000000),
          "SCRIBEFS_DATADIR=" + datadir};
}

FailureAlerts::FailureAlerts(std::vector<Watch> watches, std::string datadir)
    : datadir_(std::move(datadir)) {
  int64_t shortest = 1000000000;
  for (Watch& w : watches) {
    if (w.command.empty()) continue;
    shortest = std::min(shortest, w.alert_after_ns);
    watches_.push_back({std::move(w), 0});
  }
  // A tick well within the shortest wait, and at most a second.
  tick_ = std::chrono::milliseconds(std::clamp<int64_t>(shortest / 4000000, 50, 1000));
}

FailureAlerts::~FailureAlerts() { Stop(); }

void FailureAlerts::Start() {
  if (watches_.empty() || thread_.joinable()) return;
  thread_ = std::thread([this] { Loop(); });
}

void FailureAlerts::Stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  Reap();
}

void FailureAlerts::Loop() {
  std::unique_lock lk(mu_);
  while (!cv_.wait_for(lk, tick_, [&] { return stop_; })) {
    lk.unlock();
    for (Watched& w : watches_) Check(w);
    Reap();
    lk.lock();
  }
}

void FailureAlerts::Check(Watched& w) {
  ReplicatorStats st = w.watch.stats();
  if (!AlertDue(st.failing_since_ns, NowNs(), w.watch.alert_after_ns, &w.alerted)) return;
  double failing_s = static_cast<double>(NowNs() - st.failing_since_ns) / 1e9;
  spdlog::warn("target {} has been failing for {:.0f} s ({}): running its --on-failure command",
               w.watch.name, failing_s, st.last_error);
  std::vector<std::string> env =
      AlertEnvironment(w.watch.name, w.watch.url, st.last_error, st.failing_since_ns, datadir_);
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", command = w.watch.command;
  char* argv[] = {sh.data(), dash_c.data(), command.data(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, "/bin/sh", &actions, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    spdlog::error("target {}: --on-failure command did not start: {}", w.watch.name, strerror(rc));
    return;
  }
  children_.push_back({pid, w.watch.name});
}

void FailureAlerts::Reap() {
  for (auto it = children_.begin(); it != children_.end();) {
    int status = 0;
    pid_t r = waitpid(it->first, &status, WNOHANG);
    if (r == 0) {
      ++it;
      continue;
    }
    if (r == it->first && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
      spdlog::warn("target {}: --on-failure command ended with {} {}", it->second,
                   WIFEXITED(status) ? "exit status" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    it = children_.erase(it);
  }
}

}  // namespace scribefs
