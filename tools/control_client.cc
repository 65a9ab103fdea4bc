#include "tools/control_client.h"

#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>

#include "common/unix_socket.h"

namespace scribefs::ctl {
namespace {

using Clock = std::chrono::steady_clock;

std::string Which(const StateLocation& loc) {
  return loc.datadir.empty() ? "state directory " + loc.paths.dir : loc.datadir;
}

}  // namespace

std::unique_ptr<ControlClient> ControlClient::Connect(const GlobalOptions& options,
                                                      StateLocation* location, int* exit_code,
                                                      bool quiet) {
  auto fail = [&](int code, const std::string& msg) -> std::unique_ptr<ControlClient> {
    *exit_code = quiet ? code : Fail(code, msg);
    return nullptr;
  };
  auto loc = LocateState(options, getenv("SCRIBEFS_STATE_DIR"));
  if (!loc.ok()) {
    int err = loc.status().code();
    if (err == EINVAL) return fail(kExitUsage, loc.status().message());
    if (err == ENOENT || err == ENOTDIR) return fail(kExitNoState, loc.status().message());
    return fail(kExitFailure, loc.status().message());
  }
  *location = *loc;
  struct stat st;
  if (stat(loc->paths.dir.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return fail(kExitNoState, "no scribefs state for " + Which(*loc) + " (looked in " +
                                    loc->paths.dir + "); is it mounted?");
    if (errno == EACCES)
      return fail(kExitFailure, "cannot reach " + loc->paths.dir +
                                    ": permission denied; run scribectl as the user that runs "
                                    "scribefs (try sudo)");
    return fail(kExitFailure, PosixError(loc->paths.dir, errno).message());
  }
  const std::string sock = loc->paths.socket();
  auto fd = ConnectUnix(sock);
  if (!fd.ok()) {
    int err = fd.status().code();
    if (err == ENOENT)
      return fail(kExitNoDaemon, "scribefs is not running for " + Which(*loc) +
                                     " (no control socket " + sock + ")");
    if (err == ECONNREFUSED)
      return fail(kExitNoDaemon, "scribefs is not running for " + Which(*loc) +
                                     " (nobody answers on " + sock + ")");
    if (err == EACCES || err == EPERM)
      return fail(kExitFailure, "cannot connect to " + sock +
                                    ": permission denied; the control socket is for the user "
                                    "that runs scribefs (try sudo)");
    return fail(kExitFailure, fd.status().message());
  }
  *exit_code = kExitOk;
  return std::unique_ptr<ControlClient>(new ControlClient(std::move(fd.value()), sock));
}

Result<nlohmann::json> ControlClient::Call(const nlohmann::json& request,
                                           const std::function<bool()>& tick, int timeout_ms) {
  if (!fd_) return Status::Error(ENOTCONN, "not connected");
  std::string line = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  Status s = SendAll(fd_.get(), line, 10000);
  if (!s.ok()) return s.WithContext("control socket");
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  char chunk[65536];
  while (true) {
    auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string answer = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      auto j = nlohmann::json::parse(answer, nullptr, false);
      if (j.is_discarded() || !j.is_object())
        return Status::Error(EPROTO, "control socket: malformed answer from the daemon");
      return j;
    }
    if (tick) {
      if (!tick()) {
        fd_.Reset();
        return Status::Error(ECANCELED, "cancelled");
      }
    } else if (Clock::now() >= deadline) {
      return Status::Error(ETIMEDOUT, "no answer from the daemon within " +
                                          std::to_string(timeout_ms / 1000) + " s");
    }
    pollfd p = {fd_.get(), POLLIN, 0};
    int n = poll(&p, 1, 250);
    if (n < 0 && errno != EINTR) return PosixError("control socket", errno);
    if (n <= 0) continue;
    ssize_t r = recv(fd_.get(), chunk, sizeof chunk, 0);
    if (r == 0) return Status::Error(ECONNRESET, "the daemon closed the control connection");
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return PosixError("control socket", errno);
    }
    buf_.append(chunk, static_cast<size_t>(r));
  }
}

int ExitCodeForAnswer(const nlohmann::json& answer) {
  if (answer.value("ok", false)) return kExitOk;
  std::string code = answer.value("code", "");
  if (code == "timeout") return kExitTimeout;
  if (code == "invalid") return kExitUsage;
  return kExitFailure;
}

std::string AnswerError(const nlohmann::json& answer) {
  auto it = answer.find("error");
  if (it == answer.end() || !it->is_string()) return "the daemon refused the request";
  // The daemon names the request's fields; the person typed the options.
  std::string msg = it->get<std::string>();
  static const std::pair<const char*, const char*> kFields[] = {{"timeout_s", "--timeout"}};
  for (const auto& [field, option] : kFields)
    for (size_t at = msg.find(field); at != std::string::npos; at = msg.find(field, at))
      msg.replace(at, strlen(field), option);
  return msg;
}

}  // namespace scribefs::ctl
