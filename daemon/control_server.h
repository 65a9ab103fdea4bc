// ControlServer: the daemon's control socket (README, "Control socket").
//
// A Unix stream socket, STATE_DIR/control.sock, mode 0600 (in the 0700 state
// directory). The protocol is one JSON object per line each way: a request
// {"cmd":"VERB", ...arguments} gets exactly one answer {"ok":true, ...} or
// {"ok":false,"error":"...","code":"..."}; a connection may carry several
// requests, one after the other.
//
// The server knows no verbs: it takes a map verb -> handler and only does the
// framing and the defence. Request lines are capped (max_line bytes): a longer
// one gets an error answer and the connection is closed. Malformed JSON, a
// non-object, a missing or unknown "cmd" get an error answer. A client that
// stalls mid-line is dropped after line_timeout; an idle one after
// idle_timeout; one that vanishes costs nothing (writes use MSG_NOSIGNAL).
// Each connection has its own thread, at most max_connections at once
// (further ones get an error answer and are closed), so a slow handler (a
// checkpoint) never blocks the others.
//
// Creating the socket never removes anything but a stale socket: if the path
// exists and is not a socket, Start fails; if it is a socket that a live
// process answers on, Start fails ("another daemon owns it"); a socket nobody
// answers on is removed and replaced.
//
// Thread-safe. Handlers run on connection threads, concurrently.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"

namespace scribefs {

// What a handler may ask about the request it serves.
class ControlRequest {
 public:
  virtual ~ControlRequest() = default;
  // True once the server is stopping or the client has gone away (hung up or
  // closed its end): long handlers poll this and give up early.
  virtual bool Cancelled() const = 0;
  // Credentials of the client (SO_PEERCRED).
  virtual uid_t peer_uid() const = 0;
  virtual pid_t peer_pid() const = 0;
};

// Returns the answer; "ok" is set to true when the handler did not set it.
// A handler may throw: the client gets {"ok":false,"error":what()}.
using ControlHandler =
    std::function<nlohmann::json(const nlohmann::json& request, const ControlRequest& ctx)>;

struct ControlServerOptions {
  size_t max_line = 64 * 1024;
  int max_connections = 16;
  std::chrono::milliseconds line_timeout{10000};
  std::chrono::milliseconds idle_timeout{300000};
};

class ControlServer {
 public:
  // Creates the socket at `path` (see above) and starts accepting.
  static Result<std::unique_ptr<ControlServer>> Start(
      const std::string& path, std::map<std::string, ControlHandler> handlers,
      ControlServerOptions options = {});
  // Stop() and remove the socket (if it is still ours).
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Stops accepting, tells running handlers to give up (Cancelled()), and
  // waits for the connection threads. Idempotent.
  void Stop();
  const std::string& path() const { return path_; }

  // One request line -> one answer, without a socket (tests).
  nlohmann::json Dispatch(const std::string& line, const ControlRequest& ctx);

 private:
  class Connection;
  ControlServer(std::string path, std::map<std::string, ControlHandler> handlers,
                ControlServerOptions options, UniqueFd listen_fd, dev_t dev, ino_t ino);
  void AcceptLoop();
  void Serve(int fd);

  const std::string path_;
  const std::map<std::string, ControlHandler> handlers_;
  const ControlServerOptions options_;
  UniqueFd listen_fd_;
  const dev_t dev_;  // of the socket file we created (removed only if unchanged)
  const ino_t ino_;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;

  std::mutex mu_;
  std::condition_variable conn_cv_;
  int connections_ = 0;                             // GUARDED_BY(mu_)
  std::vector<std::thread> finished_;               // GUARDED_BY(mu_): to join
  std::map<std::thread::id, std::thread> threads_;  // GUARDED_BY(mu_)
};

}  // namespace scribefs
