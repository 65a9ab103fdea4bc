// scribectl stop (tools/stop_command.h).
#include "tools/stop_command.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tools/control_client.h"

namespace scribefs::ctl {
namespace {

using json = nlohmann::json;

// True while /proc/self/mounts lists a mount at exactly `path`.
bool Mounted(const std::string& path) {
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string src, mnt;
    ls >> src >> mnt;
    if (mnt == path) return true;
  }
  return false;
}

// The daemon has exited: no such process, or a zombie its parent has not
// reaped yet (kill(pid, 0) still succeeds on those).
bool Exited(pid_t pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

}  // namespace

int RunStop(const GlobalOptions& global, const StopOptions& options) {
  StateLocation loc;
  int code;
  auto client = ControlClient::Connect(global, &loc, &code);
  if (!client) return code;
  auto r = client->Call(json{{"cmd", "stop"}});
  if (!r.ok()) return Fail(kExitFailure, r.status().message());
  json answer = std::move(r.value());
  if (!answer.value("ok", false)) {
    if (global.json) printf("%s\n", answer.dump().c_str());
    return Fail(ExitCodeForAnswer(answer), AnswerError(answer));
  }
  pid_t pid = answer.value("pid", 0);
  std::string mountpoint = answer.value("mountpoint", "");
  if (options.wait && pid > 0) {
    // The daemon drains its uploads after the unmount (up to its
    // --stop-timeout): done once the process is gone, and the mount with it.
    auto start = std::chrono::steady_clock::now();
    while (!Exited(pid) || (!mountpoint.empty() && Mounted(mountpoint))) {
      double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (options.timeout_s && waited > *options.timeout_s)
        return Fail(kExitTimeout, "scribefs (pid " + std::to_string(pid) +
                                      ") is still stopping after " +
                                      std::to_string(static_cast<int>(waited)) + " s");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    answer["stopped"] = true;
  }
  if (global.json) {
    printf("%s\n", answer.dump().c_str());
  } else if (options.wait) {
    printf("stopped scribefs (pid %d) on %s\n", pid, mountpoint.c_str());
  } else {
    printf("stopping scribefs (pid %d) on %s; 'scribectl stop --wait' waits for the end\n", pid,
           mountpoint.c_str());
  }
  return FinishOutput();
}

}  // namespace scribefs::ctl
