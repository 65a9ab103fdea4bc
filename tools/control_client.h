// ControlClient: scribectl's side of the daemon's control socket
// (STATE_DIR/control.sock; one JSON object per line each way).
//
// Connecting maps every way of failing onto scribectl's exit codes: no state
// for that mount (3), the daemon not running: no socket or nobody listening
// (4), anything else (1). Answers with "ok":false map through their "code":
// timeout -> 5, invalid -> 2, everything else -> 1.
//
// Not thread-safe; one request at a time.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"
#include "tools/ctl_common.h"

namespace scribefs::ctl {

class ControlClient {
 public:
  // Locates the mount's state (as OpenJournalOrFail does) and connects. On
  // failure prints the reason (unless quiet) and returns nullptr with
  // *exit_code set; *location is filled whenever the state was located.
  static std::unique_ptr<ControlClient> Connect(const GlobalOptions& options,
                                                StateLocation* location, int* exit_code,
                                                bool quiet = false);

  // Sends one request and waits for its answer. While waiting, tick() is
  // called about every 250 ms; when it returns false the connection is
  // closed (the daemon cancels what it can) and ECANCELED is returned.
  // Without tick, waits at most `timeout_ms` (ETIMEDOUT). EPIPE/ECONNRESET
  // when the daemon went away.
  Result<nlohmann::json> Call(const nlohmann::json& request, const std::function<bool()>& tick = {},
                              int timeout_ms = 30000);

  const std::string& socket_path() const { return path_; }

 private:
  ControlClient(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::string path_;
  std::string buf_;
};

// Exit code for an {"ok":false,...} answer.
int ExitCodeForAnswer(const nlohmann::json& answer);
// "error" of an answer (or a generic text), with the request's field names
// (timeout_s) spelled as the options that set them (--timeout).
std::string AnswerError(const nlohmann::json& answer);

}  // namespace scribefs::ctl
