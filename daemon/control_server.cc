#include "daemon/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <exception>

namespace scribefs {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

json ErrorAnswer(const std::string& code, const std::string& message) {
  return json{{"ok", false}, {"error", message}, {"code", code}};
}

std::string Line(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

// Removes `path` only if it is a socket (a stale one from a dead daemon).
Status RemoveStaleSocket(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0)
    return errno == ENOENT ? Status::Ok() : PosixError(path, errno);
  if (!S_ISSOCK(st.st_mode))
    return Status::Error(EEXIST, path +
                                     " exists and is not a socket; not removing it (move it "
                                     "away to let scribefs create its control socket)");
  auto c = ConnectUnix(path);
  if (c.ok())
    return Status::Error(EADDRINUSE, "another daemon answers on " + path + "; not replacing it");
  if (c.status().code() != ECONNREFUSED && c.status().code() != ENOENT)
    return c.status().WithContext("checking the existing control socket");
  if (unlink(path.c_str()) != 0 && errno != ENOENT)
    return PosixError("removing stale " + path, errno);
  return Status::Ok();
}

}  // namespace

// One client connection: its descriptor and the answer to Cancelled().
class ControlServer::Connection : public ControlRequest {
 public:
  Connection(int fd, const std::atomic<bool>* stopping) : fd_(fd), stopping_(stopping) {
    ucred cred = {};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      uid_ = cred.uid;
      pid_ = cred.pid;
    }
  }
  bool Cancelled() const override {
    if (stopping_->load()) return true;
    pollfd p = {fd_, POLLRDHUP, 0};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) return true;
    return false;
  }
  uid_t peer_uid() const override { return uid_; }
  pid_t peer_pid() const override { return pid_; }

 private:
  int fd_;
  const std::atomic<bool>* stopping_;
  uid_t uid_ = static_cast<uid_t>(-1);
  pid_t pid_ = 0;
};

Result<std::unique_ptr<ControlServer>> ControlServer::Start(
    const std::string& path, std::map<std::string, ControlHandler> handlers,
    ControlServerOptions options) {
  SCRIBEFS_RETURN_IF_ERROR(RemoveStaleSocket(path).WithContext("control socket"));
  // Bound under a temporary name, made owner-only, then renamed into place:
  // the socket never exists at its real path with looser permissions (the
  // daemon runs with umask 0).
  std::string tmp = path + ".new";
  SCRIBEFS_RETURN_IF_ERROR(RemoveStaleSocket(tmp).WithContext("control socket"));
  auto addr = ResolveSocketAddress(tmp);
  if (!addr.ok()) return addr.status().WithContext("control socket");
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return PosixError("control socket", errno);
  sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  addr->path.copy(sa.sun_path, sizeof sa.sun_path - 1);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return PosixError("control socket: bind " + tmp, errno);
  auto undo = [&](const std::string& what) {
    Status s = PosixError("control socket: " + what, errno);
    unlink(tmp.c_str());
    return s;
  };
  if (chmod(tmp.c_str(), 0600) != 0) return undo("chmod " + tmp);
  if (listen(fd.get(), 32) != 0) return undo("listen");
  if (rename(tmp.c_str(), path.c_str()) != 0) return undo("rename to " + path);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return PosixError("control socket " + path, errno);
  std::unique_ptr<ControlServer> server(
      new ControlServer(path, std::move(handlers), options, std::move(fd), st.st_dev, st.st_ino));
  server->accept_thread_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

ControlServer::ControlServer(std::string path, std::map<std::string, ControlHandler> handlers,
                             ControlServerOptions options, UniqueFd listen_fd, dev_t dev, ino_t ino)
    : path_(std::move(path)),
      handlers_(std::move(handlers)),
      options_(options),
      listen_fd_(std::move(listen_fd)),
      dev_(dev),
      ino_(ino) {}

ControlServer::~ControlServer() {
  Stop();
  struct stat st;
  if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    unlink(path_.c_str());
}

void ControlServer::Stop() {
  if (stopping_.exchange(true)) {
    if (accept_thread_.joinable()) accept_thread_.join();
    return;
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> all;
  {
    std::unique_lock lk(mu_);
    // Connection threads notice stopping_ within a poll tick; handlers see
    // Cancelled() and return.
    conn_cv_.wait(lk, [&] { return connections_ == 0; });
    for (auto& [id, t] : threads_) all.push_back(std::move(t));
    threads_.clear();
    for (auto& t : finished_) all.push_back(std::move(t));
    finished_.clear();
  }
  for (auto& t : all)
    if (t.joinable()) t.join();
  listen_fd_.Reset();
}

void ControlServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd p = {listen_fd_.get(), POLLIN, 0};
    int n = poll(&p, 1, 200);
    std::vector<std::thread> done;
    {
      std::lock_guard lk(mu_);
      done.swap(finished_);
    }
    for (auto& t : done) t.join();
    if (n <= 0) continue;
    int cfd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0) continue;
    std::lock_guard lk(mu_);
    if (connections_ >= options_.max_connections) {
      (void)SendAll(cfd, Line(ErrorAnswer("busy", "too many control connections; try again")), 100);
      close(cfd);
      continue;
    }
    connections_++;
    std::thread t([this, cfd] {
      Serve(cfd);
      close(cfd);
      std::lock_guard lk2(mu_);
      auto it = threads_.find(std::this_thread::get_id());
      if (it != threads_.end()) {
        finished_.push_back(std::move(it->second));
        threads_.erase(it);
      }
      connections_--;
      conn_cv_.notify_all();
    });
    threads_.emplace(t.get_id(), std::move(t));
  }
}

void ControlServer::Serve(int fd) {
  Connection conn(fd, &stopping_);
  std::string buf;
  auto last = Clock::now();  // last complete line (or connect)
  auto line_start = last;    // first byte of the current partial line
  char chunk[16384];
  while (!stopping_.load()) {
    // Complete lines first.
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank: ignore
      json answer = Dispatch(line, conn);
      if (!SendAll(fd, Line(answer), 10000).ok()) return;  // the client has gone
      last = line_start = Clock::now();
    }
    if (buf.size() > options_.max_line) {
      (void)SendAll(fd,
                    Line(ErrorAnswer("bad_request", "request line longer than " +
                                                        std::to_string(options_.max_line) +
                                                        " bytes; closing the connection")),
                    1000);
      return;
    }
    auto now = Clock::now();
    if (buf.empty() && now - last > options_.idle_timeout) return;
    if (!buf.empty() && now - line_start > options_.line_timeout) {
      (void)SendAll(fd, Line(ErrorAnswer("bad_request", "incomplete request line; closing")), 1000);
      return;
    }
    pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, 200);
    if (n < 0 && errno != EINTR) return;
    if (n <= 0) continue;
    ssize_t r = recv(fd, chunk, sizeof chunk, 0);
    if (r == 0) return;  // closed (a partial line is dropped: nobody to answer)
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;
    }
    if (buf.empty()) line_start = Clock::now();
    buf.append(chunk, static_cast<size_t>(r));
  }
}

json ControlServer::Dispatch(const std::string& line, const ControlRequest& ctx) {
  json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded()) return ErrorAnswer("bad_request", "malformed JSON request");
  if (!req.is_object()) return ErrorAnswer("bad_request", "a request must be a JSON object");
  auto cmd = req.find("cmd");
  if (cmd == req.end() || !cmd->is_string())
    return ErrorAnswer("bad_request", "missing \"cmd\" (a string naming the command)");
  const std::string verb = cmd->get<std::string>();
  auto h = handlers_.find(verb);
  if (h == handlers_.end()) {
    std::string known;
    for (const auto& [name, fn] : handlers_) known += (known.empty() ? "" : ", ") + name;
    return ErrorAnswer("unknown_command", "unknown command '" + verb + "' (known: " + known + ")");
  }
  try {
    json answer = h->second(req, ctx);
    if (!answer.is_object()) answer = json{{"result", answer}};
    if (!answer.contains("ok")) answer["ok"] = true;
    return answer;
  } catch (const json::exception& e) {
    return ErrorAnswer("bad_request", verb + ": bad argument: " + e.what());
  } catch (const std::exception& e) {
    spdlog::error("control: {} failed: {}", verb, e.what());
    return ErrorAnswer("failed", verb + ": " + e.what());
  }
}

}  // namespace scribefs
